"""Multi-armed bandits: the 10-armed testbed with an epsilon-greedy agent.

The submission's `Agent(bandits, episodes, epsilon, alpha, initial, seed)` plays many
episodes at once (`select_actions()` -> int [episodes], `update(actions, rewards)`,
attribute `estimates` [episodes, bandits]); the template's grader interface adds
`set_estimates(agent, estimates)`, so that action selection is checked on estimates the
grader chooses, without going through `update`. The grader owns the testbed: it draws the
arm values and the rewards with its own (secret) generator, and the agent only sees the
rewards of the arms it pulled.

Each unit check names the function it checks, and the likely bug when it recognises the
answer (`bugs`, `likely_bug`). For the testbed configurations the grader compares the mean
of the per-episode average rewards with EXPECTED, the reference solution's mean over
REFERENCE_EPISODES episodes (`python bench/bandits.py`, in the course's repository, re-measures
them and the reference's pass rate); `SUMMARY` states the thresholds and what they mean, from the constants below.

Plots (--plots DIR): DIR/bandits-average-reward.png, the average reward at each step of the
testbed configurations graded so far (like the lecture's epsilon-greedy figure), with the
reference's mean as a dashed line.
"""

import numpy as np

from ..answers import expect_array, expect_handle
from ..spec import Assignment, Check, Limits, Outcome
from ._shared import figure, likely_bug, save
from ._stats import chi2_tail, false_fail, mean_tolerance, normal_tail, rate_tolerance, sci
from .bandits_constants import (  # (mean reward, per-episode SD) by (epsilon, alpha, initial)
    EXPECTED,
    REFERENCE_EPISODES,
)

BANDITS, EPISODE_LENGTH, EPISODES = 10, 1000, 2000
Z = 5.0  # tolerance of a testbed configuration, in standard errors
UPDATE_EPISODES, UPDATE_STEPS, UPDATE_ARMS = 8, 6, 3  # few arms, so that an arm is pulled several times
UPDATE_RULES = {"sample averaging": (0.0, 2.0), "constant step size": (0.25, 1.0)}  # (alpha, initial)
UPDATE_ATOL = 1e-5
GREEDY_EPISODES, GREEDY_ROUNDS = 64, 5
EXPLORE_EPISODES, EXPLORE_ROUNDS, EXPLORE_EPSILON = 4000, 5, 0.2
EXPLORE_P = EXPLORE_EPSILON * (BANDITS - 1) / BANDITS  # a uniformly random arm is the greedy one 1 time in 10
EXPLORE_TOLERANCE = rate_tolerance(EXPLORE_P, EXPLORE_EPISODES * EXPLORE_ROUNDS, z=5)
CHI2_MAX = 50  # the exploring arms' spread over the 9 non-greedy arms (8 degrees of freedom)
SELECT, UPDATE = "Agent.select_actions", "Agent.update"
BOTH = (SELECT, UPDATE)


def testbed_tolerance(config):
    """Z standard errors of the difference between the graded mean and the reference's mean."""
    return mean_tolerance(EXPECTED[config][1], EPISODES, z=Z, reference_n=REFERENCE_EPISODES)


def false_failure_probability():
    """How often a correct submission fails a grading: the three testbed configurations and
    the exploration rate (5 standard errors each, two-sided) and the chi-square test."""
    return false_fail(*[normal_tail(Z)] * (len(EXPECTED) + 1), chi2_tail(CHI2_MAX, BANDITS - 2))


def describe(epsilon, alpha, initial):
    return (
        f"epsilon {epsilon:g}"
        + (f", optimistic initial estimates {initial:g}" if initial else "")
        + (", sample averages" if alpha == 0 else f", alpha {alpha:g}")
    )


SUMMARY = (
    f"Unit checks, 1 point each, each naming the function it checks: {UPDATE}, after {UPDATE_STEPS} steps "
    f"of {UPDATE_EPISODES} episodes, must give the estimates of the incremental sample average "
    f"(alpha {UPDATE_RULES['sample averaging'][0]:g}, initial {UPDATE_RULES['sample averaging'][1]:g}) and of "
    f"the constant step size (alpha {UPDATE_RULES['constant step size'][0]:g}, initial "
    f"{UPDATE_RULES['constant step size'][1]:g}) to within {sci(UPDATE_ATOL)}; {SELECT}, on estimates the grader "
    f"sets (set_estimates), must pick the greedy arm every time with epsilon 0 ({GREEDY_ROUNDS} x "
    f"{GREEDY_EPISODES} choices), and with epsilon {EXPLORE_EPSILON:g} a non-greedy arm in "
    f"{EXPLORE_P:.1%} ± {EXPLORE_TOLERANCE:.1%} of {EXPLORE_ROUNDS * EXPLORE_EPISODES} choices (epsilon x "
    f"{BANDITS - 1}/{BANDITS}: the random arm may be the greedy one), spread uniformly over the other arms "
    f"(chi-square at most {CHI2_MAX}). Then {len(EXPECTED)} testbed configurations, 2 points each: the "
    f"grader's own {BANDITS}-armed testbed, {EPISODES} episodes of {EPISODE_LENGTH} steps, whose mean reward "
    f"per step must lie within the tolerance of the reference solution's mean over {REFERENCE_EPISODES} "
    f"episodes: "
    + "; ".join(
        f"{describe(*config)}: {EXPECTED[config][0]:.3f} ± {testbed_tolerance(config):.3f}" for config in EXPECTED
    )
    + f". Each tolerance is {Z:g} standard errors of the difference between the two means (the average "
    f"reward of an episode has a standard deviation of about {np.mean([sd for _, sd in EXPECTED.values()]):.2f} "
    f"across episodes), so a correct agent fails a grading with a probability of about "
    f"{sci(false_failure_probability())}."
)


# ------------------------------------------------------------------ talking to the agent
def new_agent(ctx, episodes, epsilon, alpha, initial, label):
    seed = int(ctx.secret_rng("agent-seed", *label).integers(2**31))
    return expect_handle(
        ctx.sandbox.call("Agent", BANDITS, episodes, float(epsilon), float(alpha), float(initial), seed), "Agent(...)"
    )


def select(ctx, agent, episodes):
    actions = ctx.sandbox.call(agent.method("select_actions"))
    return expect_array(actions, SELECT, kind="i", shape=(episodes,), low=0, high=BANDITS - 1)


def estimates(ctx, agent, episodes):
    return expect_array(
        ctx.sandbox.getattr(agent, "estimates"), "Agent.estimates", shape=(episodes, BANDITS), finite=False
    )


# ------------------------------------------------------------------ the update rule
def simulate(actions, rewards, initial, step):
    """Estimates after the updates, for a step-size rule step(n), n the arm's count of rewards
    including the current one."""
    q = np.full((actions.shape[1], BANDITS), initial, dtype=np.float64)
    n = np.zeros_like(q)
    rows = np.arange(actions.shape[1])
    for a, r in zip(actions, rewards):
        n[rows, a] += 1
        q[rows, a] += step(n[rows, a]) * (r - q[rows, a])
    return q


def bugs(alpha):
    """{likely bug: step-size rule} of the update rule, for likely_bug."""
    named = {
        "the count N(a) is incremented after the update (the n-th reward gets step 1/(n-1), "
        "the first one 1)": lambda n: 1 / np.maximum(n - 1, 1),
        "the step size is 1/(N(a)+1): the initial estimate is counted as a sample, or N(a) starts at 1": lambda n: (
            1 / (n + 1)
        ),
        "the estimate is simply replaced by the last reward (step size 1)": np.ones_like,
        "the estimates never change (step size 0)": np.zeros_like,
        "the estimate moves away from the reward (the sign of R - Q is flipped)": (lambda n: -1 / n)
        if alpha == 0
        else (lambda n: np.full_like(n, -alpha)),
    }
    if alpha:
        named["sample averaging (1/N) is used although alpha > 0"] = lambda n: 1 / n
        named[f"the step size is 1 - alpha = {1 - alpha:g} instead of alpha"] = lambda n: np.full_like(n, 1 - alpha)
    return named


def update_check(rule):
    alpha, initial = UPDATE_RULES[rule]
    text = "sample averaging, step 1/N(a)" if alpha == 0 else f"constant step size alpha={alpha:g}"

    def update(ctx):
        rng = ctx.secret_rng("update", rule)
        actions = rng.integers(0, UPDATE_ARMS, size=(UPDATE_STEPS, UPDATE_EPISODES))
        rewards = rng.normal(0.0, 2.0, size=(UPDATE_STEPS, UPDATE_EPISODES))
        agent = new_agent(ctx, UPDATE_EPISODES, 0.0, alpha, initial, ("update", rule))
        for a, r in zip(actions, rewards):
            ctx.sandbox.call(agent.method("update"), a, r)
        got = estimates(ctx, agent, UPDATE_EPISODES)
        expected = simulate(actions, rewards, initial, (lambda n: 1 / n) if alpha == 0 else (lambda n: alpha))
        where = f"{UPDATE} with {text} and initial estimates {initial:g}"
        if not np.all(np.isfinite(got)):
            return Outcome(
                False,
                f"{where}: after {UPDATE_STEPS} updates the estimates contain NaN or infinity; "
                "likely bug: dividing by a count N(a) that is still 0 (the count N(a) is "
                "incremented after the update)",
                value="non-finite",
                threshold="finite",
            )
        error = float(np.max(np.abs(got - expected)))
        if error <= UPDATE_ATOL * max(1.0, float(np.max(np.abs(expected)))):
            return Outcome(
                True,
                f"{where}: estimates match after {UPDATE_STEPS} updates",
                value=error,
                threshold=f"<= {sci(UPDATE_ATOL)}",
            )
        hint = likely_bug(
            got,
            {bug: (lambda step=step: simulate(actions, rewards, initial, step)) for bug, step in bugs(alpha).items()},
        )
        pulled = np.zeros((UPDATE_EPISODES, BANDITS), bool)
        pulled[np.arange(UPDATE_EPISODES)[None, :].repeat(UPDATE_STEPS, 0), actions] = True
        if hint is None and not np.allclose(got[~pulled], initial, atol=1e-6):
            hint = f"arms that were never pulled changed from their initial estimate {initial:g}"
        e, a = np.unravel_index(np.argmax(np.abs(got - expected)), got.shape)
        return Outcome(
            False,
            f"{where}: after {UPDATE_STEPS} updates the estimate of arm {a} in episode {e} "
            f"is {got[e, a]:.4f}, expected {expected[e, a]:.4f}" + (f"; likely bug: {hint}" if hint else ""),
            value=error,
            threshold=f"<= {sci(UPDATE_ATOL)}",
        )

    return update


# ------------------------------------------------------------------ action selection
def agent_with_estimates(ctx, episodes, epsilon, label):
    """An agent whose estimates the grader set (random, one largest per episode), and its greedy
    arms; or an Outcome saying why that was not possible."""
    if "set_estimates" not in ctx.sandbox.names:
        return (
            None,
            None,
            Outcome(
                False, "set_estimates is missing: the grader interface at the end of the template must stay in the file"
            ),
        )
    values = ctx.secret_rng("estimates", label).normal(0.0, 1.0, size=(episodes, BANDITS))
    agent = new_agent(ctx, episodes, epsilon, 0.0, 0.0, (label,))
    ctx.sandbox.call("set_estimates", agent, values)
    got = estimates(ctx, agent, episodes)
    if not np.allclose(got, values, rtol=1e-6, atol=1e-6):
        return (
            None,
            None,
            Outcome(
                False,
                "Agent.estimates does not hold the estimates set by set_estimates: "
                "keep Q(a) in self.estimates [episodes, bandits] and the grader "
                "interface as in the template",
            ),
        )
    return agent, np.argmax(got, axis=1), None


def check_greedy(ctx):
    agent, greedy, problem = agent_with_estimates(ctx, GREEDY_EPISODES, 0.0, "greedy")
    if problem:
        return problem
    wrong = sum(np.count_nonzero(select(ctx, agent, GREEDY_EPISODES) != greedy) for _ in range(GREEDY_ROUNDS))
    total = GREEDY_ROUNDS * GREEDY_EPISODES
    if wrong:
        hint = ""
        if wrong == total:
            hint = "; likely bug: it never picks the largest estimate (the smallest one?)"
        elif abs(wrong / total - (BANDITS - 1) / BANDITS) < 0.1:
            hint = "; likely bug: exploring with probability 1 - epsilon instead of epsilon"
        return Outcome(
            False,
            f"{SELECT} with epsilon=0 must always pick the arm with the largest estimate; "
            f"it picked another arm {wrong} times in {total}{hint}",
            value=wrong,
            threshold="0 non-greedy",
        )
    return Outcome(True, f"{SELECT} with epsilon=0 always picks the greedy arm", value=0, threshold="0 non-greedy")


def check_exploration(ctx):
    agent, greedy, problem = agent_with_estimates(ctx, EXPLORE_EPISODES, EXPLORE_EPSILON, "explore")
    if problem:
        return problem
    actions = np.concatenate([select(ctx, agent, EXPLORE_EPISODES) for _ in range(EXPLORE_ROUNDS)])
    greedy = np.tile(greedy, EXPLORE_ROUNDS)
    fraction = np.count_nonzero(actions != greedy) / len(actions)
    threshold = f"{EXPLORE_P:.3f} ± {EXPLORE_TOLERANCE:.3f}"
    if abs(fraction - EXPLORE_P) > EXPLORE_TOLERANCE:
        hint = likely_bug(
            fraction,
            {
                "the random arm excludes the greedy one (epsilon-greedy draws uniformly from all arms)": EXPLORE_EPSILON,
                "exploring with probability 1 - epsilon instead of epsilon": (1 - EXPLORE_EPSILON)
                * (BANDITS - 1)
                / BANDITS,
                "it never explores": 0.0,
            },
            atol=EXPLORE_TOLERANCE,
            rtol=0,
        )
        return Outcome(
            False,
            f"{SELECT} with epsilon={EXPLORE_EPSILON:g} should pick a non-greedy arm in "
            f"{EXPLORE_P:.0%} of the steps (epsilon x {BANDITS - 1}/{BANDITS}), observed "
            f"{fraction:.1%}" + (f"; likely bug: {hint}" if hint else ""),
            value=fraction,
            threshold=threshold,
        )
    # Relative to the greedy arm, random arms must be uniform over the other 9.
    offsets = ((actions - greedy) % BANDITS)[actions != greedy]
    counts = np.bincount(offsets, minlength=BANDITS)[1:]
    expected = len(offsets) / (BANDITS - 1)
    chi2 = float(np.sum((counts - expected) ** 2 / expected))
    if chi2 > CHI2_MAX:
        return Outcome(
            False,
            f"{SELECT}: the exploring actions are not uniform over the arms (chi-square "
            f"{chi2:.0f} with {BANDITS - 2} degrees of freedom)",
            value=chi2,
            threshold=f"chi2 <= {CHI2_MAX}",
        )
    return Outcome(
        True,
        f"{SELECT}: non-greedy arm in {fraction:.1%} of the steps, uniformly spread",
        value=fraction,
        threshold=threshold,
    )


# ------------------------------------------------------------------ the testbed
class Testbed:
    """The grader's own 10-armed testbed for `episodes` episodes."""

    def __init__(self, episodes, rng):
        self.rng = rng
        self.values = rng.normal(0.0, 1.0, size=(episodes, BANDITS))

    def step(self, actions):
        return self.rng.normal(self.values[np.arange(len(actions)), actions], 1.0)


def diagnosis(ctx):
    """What to look at when a testbed configuration is off, from the unit checks run so far."""
    failed = ctx.failed_units(SELECT, UPDATE)
    if failed:
        return "see the failed unit check(s): " + ", ".join(failed)
    if ctx.unit_functions() >= {SELECT, UPDATE}:
        return (
            f"{SELECT} and {UPDATE} pass their unit checks, so the difference builds up over an "
            "episode: check what carries over from step to step (each episode's estimates Q(a) and counts "
            "N(a), the random generator) and that Agent(...) uses the epsilon, alpha and initial it is given"
        )
    return f"check {SELECT} and {UPDATE} (their unit checks did not run)"


def check_testbed(epsilon, alpha, initial):
    config = (epsilon, alpha, initial)

    def run(ctx):
        label = ("testbed",) + config
        testbed = Testbed(EPISODES, ctx.secret_rng(*label))
        agent = new_agent(ctx, EPISODES, epsilon, alpha, initial, label)
        per_step = np.zeros(EPISODE_LENGTH)
        total = np.zeros(EPISODES)
        for t in range(EPISODE_LENGTH):
            actions = select(ctx, agent, EPISODES)
            rewards = testbed.step(actions)
            ctx.sandbox.call(agent.method("update"), actions, rewards)
            total += rewards
            per_step[t] = rewards.mean()
        mean = float(total.mean() / EPISODE_LENGTH)
        expected, tolerance = EXPECTED[config][0], testbed_tolerance(config)
        passed = abs(mean - expected) <= tolerance
        message = f"mean reward {mean:.3f} over {EPISODES} episodes of {EPISODE_LENGTH} steps"
        if not passed:
            message += (
                f", expected {expected:.3f} ± {tolerance:.3f}: "
                + ("lower" if mean < expected else "higher")
                + f" than the reference; {diagnosis(ctx)}"
            )
        details = {"average_reward_per_step": np.round(per_step, 4).tolist()}
        curves = ctx.shared.setdefault("average_reward", {})
        curves[config] = per_step
        if ctx.plots_dir:
            details["plot"] = plot_average_reward(ctx.plots_dir / f"{ctx.assignment.name}-average-reward.png", curves)
        return Outcome(passed, message, value=mean, threshold=f"{expected:.3f} ± {tolerance:.3f}", details=details)

    return run


def draw_average_reward(curves):
    """The figure of plot_average_reward."""
    fig, axes = figure(9, 4.8)
    for index, (config, curve) in enumerate(curves.items()):
        axes.plot(
            np.arange(1, len(curve) + 1),
            curve,
            color=f"C{index}",
            lw=0.7,
            label=f"{describe(*config)}: mean {np.mean(curve):.3f}",
        )
        if config in EXPECTED:
            axes.axhline(EXPECTED[config][0], color=f"C{index}", ls="--", lw=1)
    axes.plot([], [], color="gray", ls="--", lw=1, label="dashed: the reference's mean over all steps")
    axes.set(
        xlabel="step",
        ylabel="average reward",
        xlim=(0, EPISODE_LENGTH),
        title=f"{BANDITS}-armed testbed: average reward per step over {EPISODES} episodes",
    )
    axes.legend(loc="lower right")
    axes.grid(alpha=0.3)
    return fig


def plot_average_reward(path, curves):
    """Average reward at each step over the episodes, a line per configuration {(epsilon, alpha,
    initial): per-step averages}, and the reference's mean (dashed). Returns the file's path."""
    return save(draw_average_reward(curves), path)


TESTBEDS = {  # check name: (epsilon, alpha, initial), each a configuration of EXPECTED
    "testbed: epsilon 0.1, averaging": (0.1, 0.0, 0.0),
    "testbed: epsilon 0, optimistic initial 1, alpha 0.15": (0.0, 0.15, 1.0),
    "testbed: epsilon 0.1, alpha 0.15": (0.1, 0.15, 0.0),
}

ASSIGNMENT = Assignment(
    name="bandits",
    title="Multi-armed bandits: epsilon-greedy on the 10-armed testbed",
    limits=Limits(time=30, start_time=30, memory_mb=1024, threads=1),
    summary=SUMMARY,
    expected_time="about 4 seconds",
    checks=(
        Check(
            "update: sample averaging",
            functions=(UPDATE,),
            run=update_check("sample averaging"),
            description="alpha=0: each estimate is the mean of its arm's rewards",
        ),
        Check(
            "update: constant step size",
            functions=(UPDATE,),
            run=update_check("constant step size"),
            description="alpha=0.25: Q <- Q + alpha (R - Q), starting from initial=1",
        ),
        Check(
            "select: greedy", functions=(SELECT,), run=check_greedy, description="epsilon=0 picks the largest estimate"
        ),
        Check(
            "select: epsilon exploration",
            functions=(SELECT,),
            run=check_exploration,
            description="epsilon=0.2 picks a uniformly random arm 20% of the time",
        ),
    )
    + tuple(
        Check(
            name,
            check_testbed(*config),
            points=2,
            functions=BOTH,
            end_to_end=True,
            description=describe(*config),
        )
        for name, config in TESTBEDS.items()
    ),
)
