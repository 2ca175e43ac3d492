"""REINFORCE on CartPole-v1 (the grader's own environments and seeds; see _reinforce.py).

The rule. Training i (i = 1, 2, ...) runs the submission's `train` in a fresh child with
`--seed 1000 * SEED + i` (SEED: the grader's --seed) on the grader's episodes, under a secret
relabelling of CartPole, until it returns or the training time limit (LIMITS.train_time) has
passed (then no more episodes are handed out); then the greedy policy's mean return over 100
evaluation episodes (the same relabelling) must reach THRESHOLD, CartPole-v1's own
`reward_threshold` (gymnasium: "solved"). REQUIRED of at most TRAININGS trainings must pass; the
check stops as soon as the outcome is known (usually after REQUIRED trainings).

Measured error rate of the rule with the grader's measuring of issue 15 (the policy rebuilt from
its Keras config and weights by grader/measured.py, each state on its own row), with
bench/reinforce.py of the course's repository (`--which reinforce --gradings 40 --rules
1/1,2/2`: trained the way the grader trains, with a random relabelling per training, grader
seeds 0..; the first two trainings of every grading always run), on 2026-11-29, 2 cores shared
with other jobs (load average 10 to 28), 40 gradings:
- the reference (which stops at its own greedy check: 10 greedy episodes, counted, with a mean
  of 500): 80 of 80 trainings reach 475, 40 of 40 gradings pass;
  training time median 16 s, max 70 s (467 episodes median, max 830)
- a variant a student might write, 32 hidden units (grader seeds 200..): 10 of 10 trainings, 5 of 5
  gradings (median 34 s, 638 episodes).
With no failed training in 80, the per-training failure rate is below 0.037 (95%, rule of
three), so a grading's false failure under 2 of 3 is below 0.004 (1 in 243).

Before issue 15 (the submission's own predict() asked, stopping at a sampled mean of 500):
measured with bench/reinforce.py of the course's repository (`--which
reinforce --gradings 40 --rules 1/1,2/2`: trained the way the grader trains, with a random
relabelling per training, grader seeds 0..39; the first two trainings of every grading always
run, a third one when the rule needs it), on 2026-11-28, 2 cores shared with other jobs:
- the reference: 93 of 93 trainings reach 475 (92 of 93 reach 490), so 40 of 40 gradings pass
  (2 of 2 trainings would too); training time median 27 s, max 61 s (832 episodes median).
- two variants a student might write (10 gradings each, grader seeds 200.. and 300..):
  32 hidden units: 20 of 20 trainings, 10 of 10 gradings (median 35 s, max 77 s);
  learning rate 0.005: 20 of 20 trainings, 10 of 10 gradings (median 21 s, max 40 s).
With every training passing, a grading's false failure is far below 1 in 20 (binomial with the
measured per-training rate: under 1e-3). A full grading of the reference solution took 74 s and
80 s: two trainings, and a third one only when one of them fails.
"""

from ..spec import Assignment, Check, Limits
from . import _reinforce as common

THRESHOLD = 475  # CartPole-v1's reward_threshold
TRAININGS, REQUIRED = 3, 2
LIMITS = Limits(time=60, train_time=300, start_time=120, memory_mb=4096, threads=2)

SUMMARY = f"""
Unit checks first, each naming the function it is about: compute_returns, the gradient of
policy_loss, sample_actions (the frequencies of many samples), the policy's probabilities, one
Agent.train step on a batch the grader builds (the log-probabilities must move in the direction of
the returns), and train() and evaluate() run with the grader's own stand-in agent (are the actions
played sampled, and does Agent.train get the steps played with their actions and returns?). Then
the training check: training i runs train(agent, episodes, args) in a fresh process, with args from
your parse_args(["--seed", str(1000 * S + i)]) (S: the grader's --seed, 42 by default), on the
grader's CartPole-v1 episodes seen through a secret relabelling (the observation features permuted
and sign-flipped, the actions possibly swapped; the same for the evaluation), so only a policy
learned from those episodes can pass. After {LIMITS.train_time:g} CPU seconds no more episodes are handed
out. {common.evaluation_summary(THRESHOLD, TRAININGS, REQUIRED)}
"""

ASSIGNMENT = Assignment(
    name="reinforce",
    title="REINFORCE on CartPole-v1",
    tensorflow=True,
    prepare=common.prepare,
    limits=LIMITS,
    summary=SUMMARY,
    expected_time="about 1 minute (2 trainings; a third one only if one fails)",
    checks=common.checks(
        losses=[
            Check(
                "policy loss: REINFORCE gradient",
                common.check_policy_gradient,
                functions=("policy_loss",),
                description="d policy_loss / d probs matches -G grad log pi(a|s)",
            )
        ],
        train_steps=[
            Check(
                "Agent.train: one step follows the returns",
                common.check_agent_train,
                functions=("Agent.train",),
                description="log pi(a|s) of a fixed batch moves in the direction of the returns",
            )
        ],
        training=Check(
            "training: greedy mean return",
            common.check_training(THRESHOLD, TRAININGS, REQUIRED),
            points=6,
            training=True,
            description=f"mean return of 100 greedy episodes >= {THRESHOLD} in {REQUIRED} of at most "
            f"{TRAININGS} trainings",
        ),
    ),
)
