"""REINFORCE on CartPole-v1 (the grader's own environments and seeds; see _reinforce.py).

Thresholds: the greedy policy's mean return over 100 evaluation episodes must reach THRESHOLD
after training, on each of SEEDS training seeds, within the training time limit (Limits.train_time;
after it the grader hands out no more episodes). `python bench/reinforce.py` measures the
reference solution's pass rate and time over many seeds.
"""
from ..spec import Assignment, Check, Limits
from . import _reinforce as common

THRESHOLD = 490
SEEDS = 2

ASSIGNMENT = Assignment(
    name="reinforce",
    title="REINFORCE on CartPole-v1",
    tensorflow=True,
    limits=Limits(time=60, train_time=300, start_time=120, memory_mb=4096, threads=2),
    checks=(
        Check("returns: undiscounted", common.check_returns(1.0), description="G_t = sum of rewards from t on"),
        Check("returns: discounted", common.check_returns(0.9), description="G_t = r_t + gamma G_t+1"),
        Check("policy: probabilities", common.check_probabilities,
              description="Agent.predict gives a distribution over actions"),
        Check("policy loss: REINFORCE gradient", common.check_policy_gradient,
              description="d policy_loss / d probs matches -G grad log pi(a|s)"),
    ) + tuple(
        Check(f"training {i + 1}: greedy mean return", common.check_training(i + 1, THRESHOLD), points=3,
              description=f"mean return of 100 greedy episodes >= {THRESHOLD} after training")
        for i in range(SEEDS)),
)
