"""REINFORCE with a learned value baseline on CartPole-v1 (see _reinforce.py).

The rule. Training i (i = 1, 2, ...) runs the submission's `train` in a fresh child with
`--seed 1000 * SEED + i` (SEED: the grader's --seed) on the grader's episodes, under a secret
relabelling of CartPole, on at most BUDGET episodes (every episode handed out counts, greedy
evaluations included) and within the training time limit; then the greedy policy's mean return
over 100 evaluation episodes (the same relabelling) must reach THRESHOLD, CartPole-v1's own
`reward_threshold` (gymnasium: "solved"). REQUIRED of at most TRAININGS trainings must pass; the
check stops as soon as the outcome is known (usually after REQUIRED trainings).

Measured error rate of the rule with the grader's measuring of issue 15 (the policy rebuilt from
its Keras config and weights by grader/measured.py, each state on its own row), with
bench/reinforce.py of the course's repository (`--which reinforce_baseline --gradings 40 --rules
1/1,2/2`: trained the way the grader trains, with a random relabelling per training, grader
seeds 0..; the first two trainings of every grading always run), on 2026-11-29, 2 cores shared
with other jobs (load average 10 to 28), 40 gradings:
- the reference (which stops at its own greedy check: 10 greedy episodes, counted, with a mean
  of 500): 80 of 80 trainings reach 475, 40 of 40 gradings pass;
  training time median 22 s, max 93 s (141 episodes median, max 290)
- a variant a student might write, batches of 4 episodes (grader seeds 300..): 10 of 11 trainings, 5 of 5
  gradings (median 26 s, 202 episodes).
With no failed training in 80, the per-training failure rate is below 0.037 (95%, rule of
three), so a grading's false failure under 2 of 3 is below 0.004 (1 in 243).

Before issue 15 (the submission's own predict() asked, stopping at a sampled mean of 500):
measured with bench/reinforce.py of the course's repository (`--which
reinforce_baseline --gradings 40 --rules 1/1,2/2`: trained the way the grader trains, with a random
relabelling per training, grader seeds 0..39; the first two trainings of every grading always
run, a third one when the rule needs it), on 2026-11-28, 2 cores shared with other jobs:
- the reference: 86 of 92 trainings (93.5%) reach 475 within 300 episodes (82 of 92 reach 490);
  40 of 40 gradings pass under 2 of 3 (the same data under 2 of 2: 34 of 40; under 1 of 1: 36
  of 40). Binomial with the measured per-training rate p, a grading fails with probability
  3p(1-p)^2 + (1-p)^3 = 0.012 (1 in 85). Training time median 26 s, max 47 s; 158 episodes
  median. The failed trainings did not learn within the budget, or stopped when the sampled
  policy reached 500 while the greedy one did not quite.
- two variants a student might write (10 gradings each, grader seeds 200.. and 300..): 32 hidden
  units: 24 of 24 trainings, 10 of 10 gradings; batches of 4 episodes: 20 of 21 trainings, 10
  of 10 gradings (binomial: 0.7% per grading).
- the former rule (490 within 200 episodes, 2 of 2 trainings; the reference of that time, which
  checked its greedy policy before stopping), same bench with the relabelling, grader seeds
  0..29: 55 of 60 trainings, 25 of 30 gradings (83%); without the relabelling, same seeds: 54
  of 60 and 24 of 30.
A full grading of the reference solution took 49 s and 66 s: two trainings, and a third one
only when one of them fails.
"""

import numpy as np

from ..answers import expect_array
from ..spec import Assignment, Check, Limits, Outcome
from . import _reinforce as common

THRESHOLD = 475  # CartPole-v1's reward_threshold
BUDGET = 300
TRAININGS, REQUIRED = 3, 2
LIMITS = Limits(time=60, train_time=300, start_time=120, memory_mb=4096, threads=2)


def check_baseline_gradient(ctx):
    """The policy loss with a baseline: REINFORCE gradient with returns - baselines, and no
    gradient into the baselines (they come from the value network, trained by its own loss)."""
    probs, actions, returns = common.policy_batch(ctx, "baseline-gradient")
    baselines = ctx.rng("baselines").normal(0, 1, size=len(actions)).astype(np.float32)
    value, (grad, into_baseline) = ctx.sandbox.grad("policy_loss", [probs, actions, returns, baselines], wrt=[0, 3])
    expect_array(value, "policy_loss", shape=())
    into_baseline = expect_array(
        into_baseline, "the gradient of policy_loss with respect to baselines", shape=baselines.shape
    )
    leak = float(np.max(np.abs(into_baseline)))
    if leak > 1e-6:
        return Outcome(
            False,
            "the policy loss propagates gradients into the baseline (largest "
            f"{leak:.3g}); likely bug: the baseline is not wrapped in tf.stop_gradient, "
            "so the policy loss would train the value network",
            value=leak,
            threshold="0",
        )
    grad = expect_array(grad, "the gradient of policy_loss", shape=probs.shape)
    outcome = common.compare_gradient(
        grad, common.reinforce_gradient(probs, actions, returns - baselines), "with a baseline, d policy_loss / d probs"
    )
    if not outcome.passed:
        for weights, bug in (
            (
                returns + baselines,
                "the baseline is added to the returns instead of subtracted (the advantage is returns - baselines)",
            ),
            (returns, "the baseline is not subtracted from the returns in the policy loss"),
            (baselines - returns, "sign error: the advantage is returns - baselines, not baselines - returns"),
        ):
            if common.compare_gradient(grad, common.reinforce_gradient(probs, actions, weights), "").passed:
                outcome.message = f"{outcome.message.split(';')[0]}; likely bug: {bug}"
                break
    return outcome


def check_value_loss(ctx):
    rng = ctx.rng("value-loss")
    values, returns = rng.normal(0, 3, size=16).astype(np.float32), rng.normal(0, 3, size=16).astype(np.float32)
    value, (grad,) = ctx.sandbox.grad("value_loss", [values, returns], wrt=[0])
    loss = float(expect_array(value, "value_loss", shape=()))
    grad = expect_array(grad, "the gradient of value_loss", shape=values.shape)
    mse = float(np.mean((values - returns) ** 2))
    cosine = common.cosine_of(grad, values - returns)
    if abs(loss - mse) > 1e-3 * mse or cosine < 0.999:
        return Outcome(
            False,
            f"value_loss should be the mean squared error of the predicted values towards the "
            f"returns ({mse:.3f} here), got {loss:.3f} (gradient cosine {cosine:.3f})",
            value=loss,
            threshold=f"{mse:.3f}",
        )
    return Outcome(True, "value_loss is the mean squared error towards the returns", value=loss, threshold=f"{mse:.3f}")


VALUE_ALIGNMENT = 0.5  # least cosine between the change of V(s) in one step and (target - V(s))


def predicted_values(ctx, agent, states):
    return expect_array(
        ctx.sandbox.call(agent.method("predict_values"), states), "Agent.predict_values", shape=(len(states),)
    ).astype(np.float64)


def check_value_training(ctx):
    """The value network is trained towards the returns: one Agent.train step with returns like
    CartPole's must move V(s) towards them; and on a fresh agent, one step with returns
    1.5 V(s) must move V(s) up along V(s), where a network trained towards the advantages
    returns - V(s) = 0.5 V(s) would move it down."""
    threshold = f">= {VALUE_ALIGNMENT}"
    args, agent = common.new_agent(ctx, 4)
    rng, states, actions = common.training_batch(ctx, "value-train")
    before = predicted_values(ctx, agent, states)
    returns = rng.uniform(20, 200, size=len(states))
    common.train_step(ctx, agent, states, actions, returns)
    after = predicted_values(ctx, agent, states)
    if np.array_equal(after, before):
        return Outcome(
            False,
            "one Agent.train step left the value network's predictions V(s) unchanged: the value "
            "network is never updated (apply the gradient of value_loss to its variables with "
            "its optimizer)",
            value=0.0,
            threshold=threshold,
        )
    towards = common.cosine_of(after - before, returns - before)
    if towards < VALUE_ALIGNMENT:
        return Outcome(
            False,
            f"one Agent.train step moved V(s) with cosine {towards:.2f} towards the returns "
            f"{'(away from them)' if towards < 0 else ''}: train the value network on value_loss "
            "of its predictions and the returns, by gradient descent",
            value=towards,
            threshold=threshold,
        )
    args, agent = common.new_agent(ctx, 4)
    before = predicted_values(ctx, agent, states)
    if np.max(np.abs(before)) < 1e-6:
        return Outcome(
            True,
            f"V(s) moves towards the returns (cosine {towards:.2f}); V(s) = 0 for every state of a "
            "new agent, so the second step (returns 1.5 V(s)) cannot be judged",
            value=towards,
            threshold=threshold,
        )
    returns = 1.5 * before
    common.train_step(ctx, agent, states, actions, returns)
    scaled = common.cosine_of(predicted_values(ctx, agent, states) - before, returns - before)
    if scaled >= VALUE_ALIGNMENT:
        return Outcome(
            True,
            f"one Agent.train step moves V(s) towards the returns (cosine {towards:.2f}; with "
            f"returns 1.5 V(s), {scaled:.2f})",
            value=min(towards, scaled),
            threshold=threshold,
        )
    hint = (
        "likely bug: the value network is trained towards the advantages (returns - V(s)) instead of the returns"
        if scaled <= -VALUE_ALIGNMENT
        else "train the value network towards the returns"
    )
    return Outcome(
        False,
        f"with returns 1.5 V(s), one Agent.train step moved V(s) with cosine {scaled:.2f} towards them; {hint}",
        value=scaled,
        threshold=threshold,
    )


def check_policy_with_baseline(ctx):
    """The policy's step uses the advantages returns - V(s): with returns 0.5 V(s) (V(s): a fresh
    agent's predictions), the advantages are -0.5 V(s), so log pi(a|s) must move along -V(s) (see
    common.policy_alignment); with the baseline added, or not subtracted, it would move along
    +V(s). Returns -0.5 V(s) then tell these two bugs apart."""
    threshold = f">= {common.ALIGNMENT}"

    def scaled(scale):
        def batch_returns(rng, agent, states):
            values = predicted_values(ctx, agent, states)
            if np.max(np.abs(values)) < 1e-6:
                return None
            return scale * values, (scale - 1) * values

        return common.policy_alignment(ctx, "baseline-train", 5, batch_returns)

    moved = scaled(0.5)
    if moved is None:
        return Outcome(
            True, "V(s) = 0 for every state of a new agent: the baseline's use cannot be judged", threshold=threshold
        )
    cosine, largest = moved
    if largest == 0:
        return Outcome(
            False,
            "one Agent.train step did not change the policy's probabilities: is the gradient of "
            "policy_loss applied to the policy's variables?",
            value=cosine,
            threshold=threshold,
        )
    if cosine >= common.ALIGNMENT:
        return Outcome(
            True,
            f"with returns 0.5 V(s), one Agent.train step moves log pi(a|s) along the advantages "
            f"returns - V(s) (mean cosine {cosine:.2f} over {common.AGENTS} batches)",
            value=cosine,
            threshold=threshold,
        )
    message = (
        f"with returns 0.5 V(s) (advantages -0.5 V(s)), one Agent.train step moved log pi(a|s) with a mean "
        f"cosine of {cosine:.2f} along the advantages"
    )
    if cosine <= -common.ALIGNMENT:
        other, _ = scaled(-0.5)
        if other <= -common.ALIGNMENT:
            message += "; likely bug: the baseline is added to the returns instead of subtracted"
        elif other >= common.ALIGNMENT:
            message += "; likely bug: the baseline is not subtracted from the returns (the policy follows the returns)"
        else:
            message += "; the policy's step must weight each action's log-probability by returns - V(s)"
    else:
        message += "; the policy's step must weight each action's log-probability by returns - V(s)"
    if ctx.failed_units("policy_loss"):
        message += " (policy_loss failed its own check: fix that first)"
    return Outcome(False, message, value=cosine, threshold=threshold)


SUMMARY = f"""
Unit checks first, each naming the function it is about: compute_returns, the gradient of
policy_loss (returns minus the baseline, no gradient into the baseline), value_loss, the policy's
probabilities, Agent.train on batches the grader builds (the value network must move towards the
returns, and the policy's log-probabilities along returns - V(s)), sample_actions (the frequencies
of many samples), and train() and evaluate() run with the grader's own stand-in agent (are the
actions played sampled, and does Agent.train get the steps played with their actions and
returns?). Then the training check: training i runs train(agent, episodes, args) in a fresh
process, with args from your parse_args(["--seed", str(1000 * S + i)]) (S: the grader's --seed, 42
by default), on the grader's CartPole-v1 episodes seen through a secret relabelling (the
observation features permuted and sign-flipped, the actions possibly swapped; the same for the
evaluation), so only a policy learned from those episodes can pass. At most {BUDGET} episodes are
handed out (every episode train() plays counts, greedy checks included), and none after
{LIMITS.train_time:g} CPU seconds. {common.evaluation_summary(THRESHOLD, TRAININGS, REQUIRED)}
"""

ASSIGNMENT = Assignment(
    name="reinforce_baseline",
    title="REINFORCE with a learned value baseline on CartPole-v1",
    tensorflow=True,
    prepare=common.prepare,
    limits=LIMITS,
    summary=SUMMARY,
    expected_time="about 1.2 minutes (2 trainings; a third one only if one fails)",
    checks=common.checks(
        losses=[
            Check(
                "policy loss: gradient with baseline",
                check_baseline_gradient,
                functions=("policy_loss",),
                description="REINFORCE gradient with G - b, and no gradient into the baseline",
            ),
            Check(
                "value loss: mean squared error",
                check_value_loss,
                functions=("value_loss",),
                description="the baseline is fit by MSE",
            ),
        ],
        train_steps=[
            Check(
                "Agent.train: the value network moves towards the returns",
                check_value_training,
                functions=("Agent.train",),
                description="V(s) of a fixed batch moves towards the returns, not the advantages",
            ),
            Check(
                "Agent.train: the policy follows returns - V(s)",
                check_policy_with_baseline,
                functions=("Agent.train",),
                description="log pi(a|s) of a fixed batch moves along the advantages returns - V(s)",
            ),
        ],
        training=Check(
            "training: greedy mean return",
            common.check_training(THRESHOLD, TRAININGS, REQUIRED, budget=BUDGET),
            points=6,
            training=True,
            description=f"mean return of 100 greedy episodes >= {THRESHOLD} within {BUDGET} episodes, "
            f"in {REQUIRED} of at most {TRAININGS} trainings",
        ),
    ),
)
