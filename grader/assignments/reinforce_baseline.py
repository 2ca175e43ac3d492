"""REINFORCE with a learned value baseline on CartPole-v1 (see _reinforce.py).

Thresholds: the greedy policy's mean return over 100 evaluation episodes must reach THRESHOLD
on each of SEEDS training seeds, training on at most BUDGET episodes (the grader hands out no
more) and within the training time limit. `python bench/reinforce.py --which reinforce_baseline`
measures the reference solution's pass rate at this budget over many seeds.
"""
import numpy as np

from ..sandbox import expect_array
from ..spec import Assignment, Check, Limits, Outcome
from . import _reinforce as common

THRESHOLD = 490
BUDGET = 200
SEEDS = 2


def check_baseline_gradient(ctx):
    """The policy loss with a baseline: REINFORCE gradient with returns - baselines, and no
    gradient into the baselines (they come from the value network, trained by its own loss)."""
    probs, actions, returns = common.policy_batch(ctx, "baseline-gradient")
    baselines = ctx.rng("baselines").normal(0, 1, size=len(actions)).astype(np.float32)
    value, (grad, into_baseline) = ctx.sandbox.grad("policy_loss", [probs, actions, returns, baselines], wrt=[0, 3])
    expect_array(value, "policy_loss", shape=())
    into_baseline = expect_array(into_baseline, "the gradient of policy_loss with respect to baselines",
                                 shape=baselines.shape)
    leak = float(np.max(np.abs(into_baseline)))
    if leak > 1e-6:
        return Outcome(False, "the policy loss propagates gradients into the baseline (largest "
                              f"{leak:.3g}); likely bug: the baseline is not wrapped in tf.stop_gradient, "
                              "so the policy loss would train the value network", value=leak, threshold="0")
    grad = expect_array(grad, "the gradient of policy_loss", shape=probs.shape)
    outcome = common.compare_gradient(grad, common.reinforce_gradient(probs, actions, returns - baselines),
                                      "with a baseline, d policy_loss / d probs")
    if not outcome.passed:
        plain = common.compare_gradient(grad, common.reinforce_gradient(probs, actions, returns), "")
        if plain.passed:
            outcome.message = "the baseline is not subtracted from the returns in the policy loss"
    return outcome


def check_value_loss(ctx):
    rng = ctx.rng("value-loss")
    values, returns = rng.normal(0, 3, size=16).astype(np.float32), rng.normal(0, 3, size=16).astype(np.float32)
    value, (grad,) = ctx.sandbox.grad("value_loss", [values, returns], wrt=[0])
    loss = float(expect_array(value, "value_loss", shape=()))
    grad = expect_array(grad, "the gradient of value_loss", shape=values.shape)
    mse = float(np.mean((values - returns) ** 2))
    cosine = float(np.dot(grad, values - returns) / (np.linalg.norm(grad) * np.linalg.norm(values - returns)))
    if abs(loss - mse) > 1e-3 * mse or cosine < 0.999:
        return Outcome(False, f"value_loss should be the mean squared error of the predicted values towards the "
                              f"returns ({mse:.3f} here), got {loss:.3f} (gradient cosine {cosine:.3f})",
                       value=loss, threshold=f"{mse:.3f}")
    return Outcome(True, "value_loss is the mean squared error towards the returns", value=loss,
                   threshold=f"{mse:.3f}")


ASSIGNMENT = Assignment(
    name="reinforce_baseline",
    title="REINFORCE with a learned value baseline on CartPole-v1",
    tensorflow=True,
    limits=Limits(time=60, train_time=300, start_time=120, memory_mb=4096, threads=2),
    checks=(
        Check("returns: undiscounted", common.check_returns(1.0), description="G_t = sum of rewards from t on"),
        Check("returns: discounted", common.check_returns(0.9), description="G_t = r_t + gamma G_t+1"),
        Check("policy: probabilities", common.check_probabilities,
              description="Agent.predict gives a distribution over actions"),
        Check("policy loss: gradient with baseline", check_baseline_gradient,
              description="REINFORCE gradient with G - b, and no gradient into the baseline"),
        Check("value loss: mean squared error", check_value_loss, description="the baseline is fit by MSE"),
    ) + tuple(
        Check(f"training {i + 1}: greedy mean return", common.check_training(i + 1, THRESHOLD, budget=BUDGET),
              points=3, description=f"mean return of 100 greedy episodes >= {THRESHOLD} within {BUDGET} episodes")
        for i in range(SEEDS)),
)
