"""Multi-armed bandits: the 10-armed testbed with an epsilon-greedy agent.

The submission's `Agent(bandits, episodes, epsilon, alpha, initial, seed)` plays many
episodes at once (`select_actions()` -> int [episodes], `update(actions, rewards)`,
attribute `estimates` [episodes, bandits]). The grader owns the testbed: it draws the arm
values and the rewards with its own generator, and the agent only sees the rewards of the
arms it pulled.

Thresholds. For each configuration the grader plays EPISODES episodes and compares the
mean of the per-episode average rewards with EXPECTED, the same quantity measured for the
reference solution over 20,000 episodes (`python bench/bandits.py` recomputes them). The
per-episode average reward has a standard deviation SD (0.52 to 0.61) across episodes, so the
mean of EPISODES episodes has a standard error SD / sqrt(EPISODES) ~ 0.013; a correct agent
lands within Z = 5 standard errors (of the difference to the reference mean) with probability
1 - 6e-7 per configuration, while the typical bugs the unit checks name move it by far more.

Plots (--plots DIR): DIR/bandits-average-reward.png, the average reward at each step of the
testbed configurations graded so far (like the lecture's epsilon-greedy figure), with the
reference's mean as a dashed line.
"""
from pathlib import Path

import numpy as np

from ..sandbox import expect_array, expect_handle
from ..spec import Assignment, Check, Limits, Outcome

BANDITS, EPISODE_LENGTH, EPISODES = 10, 1000, 2000
Z = 5.0
# (epsilon, alpha, initial) -> (expected mean reward, per-episode SD), from bench/bandits.py
EXPECTED = {
    (0.1, 0.0, 0.0): (1.3062, 0.5427),
    (0.0, 0.15, 1.0): (1.4540, 0.6086),
    (0.1, 0.15, 0.0): (1.2846, 0.5243),
}
REFERENCE_EPISODES = 20000


def new_agent(ctx, episodes, epsilon, alpha, initial, label):
    seed = int(ctx.rng("agent-seed", label).integers(2**31))
    return expect_handle(ctx.sandbox.call("Agent", BANDITS, episodes, float(epsilon), float(alpha),
                                          float(initial), seed), "Agent(...)")


def select(ctx, agent, episodes):
    actions = ctx.sandbox.call(agent.method("select_actions"))
    return expect_array(actions, "Agent.select_actions", kind="i", shape=(episodes,), low=0, high=BANDITS - 1)


def estimates(ctx, agent, episodes):
    return expect_array(ctx.sandbox.getattr(agent, "estimates"), "Agent.estimates",
                        shape=(episodes, BANDITS), finite=False)


# ------------------------------------------------------------------ the update rule
def simulate(actions, rewards, initial, step):
    """Estimates after the updates, for a step-size rule step(n) where n counts this pull."""
    q = np.full((actions.shape[1], BANDITS), initial, dtype=np.float64)
    n = np.zeros_like(q)
    rows = np.arange(actions.shape[1])
    for a, r in zip(actions, rewards):
        n[rows, a] += 1
        q[rows, a] += step(n[rows, a]) * (r - q[rows, a])
    return q


def check_update(ctx, alpha, initial):
    episodes, steps = 8, 6
    rng = ctx.rng("update", alpha)
    actions = rng.integers(0, 3, size=(steps, episodes))  # few arms, so that arms repeat
    rewards = rng.normal(0.0, 2.0, size=(steps, episodes))
    agent = new_agent(ctx, episodes, 0.0, alpha, initial, ("update", alpha))
    for a, r in zip(actions, rewards):
        ctx.sandbox.call(agent.method("update"), a, r)
    got = estimates(ctx, agent, episodes)
    rule = "sample averaging, step 1/N(a)" if alpha == 0 else f"constant step size alpha={alpha}"
    expected = simulate(actions, rewards, initial, (lambda n: 1 / n) if alpha == 0 else (lambda n: alpha))
    if not np.all(np.isfinite(got)):
        return Outcome(False, f"with {rule} the estimates contain NaN or infinity; "
                              "likely bug: dividing by a count that is still 0 (increment N(a) first)",
                       value="non-finite", threshold="finite")
    error = float(np.max(np.abs(got - expected)))
    if error <= 1e-5 * max(1.0, float(np.max(np.abs(expected)))):
        return Outcome(True, f"{rule}: estimates match after {steps} updates", value=error, threshold="<= 1e-5")
    candidates = {
        "the step size is 1/(N(a)+1): the count is incremented after the update, or the initial "
        "estimate is counted as a sample": lambda n: 1 / (n + 1),
        "the estimate is simply replaced by the last reward (step size 1)": lambda n: np.ones_like(n),
        "the estimates never change (step size 0)": lambda n: np.zeros_like(n),
        "sample averaging (1/N) is used although alpha > 0": lambda n: 1 / n,
        f"a constant step size is used although alpha == 0 (sample averaging)": lambda n: np.full_like(n, 0.1),
    }
    hint = next((bug for bug, step in candidates.items()
                 if np.allclose(got, simulate(actions, rewards, initial, step), atol=1e-4)), None)
    pulled = np.zeros((episodes, BANDITS), bool)
    pulled[np.arange(episodes)[None, :].repeat(steps, 0), actions] = True
    if hint is None and not np.allclose(got[~pulled], initial, atol=1e-6):
        hint = f"arms that were never pulled changed from their initial estimate {initial}"
    e, a = np.unravel_index(np.argmax(np.abs(got - expected)), got.shape)
    return Outcome(False, f"with {rule} and initial={initial}, after {steps} updates the estimate of arm {a} "
                          f"in episode {e} is {got[e, a]:.4f}, expected {expected[e, a]:.4f}"
                          + (f"; likely bug: {hint}" if hint else ""),
                   value=error, threshold="<= 1e-5")


# ------------------------------------------------------------------ action selection
def agent_with_best_arms(ctx, episodes, epsilon, label):
    """An agent whose estimates are 0 except +1 on one random arm per episode."""
    best = ctx.rng("best-arms", label).integers(BANDITS, size=episodes)
    agent = new_agent(ctx, episodes, epsilon, 0.0, 0.0, label)
    ctx.sandbox.call(agent.method("update"), best, np.ones(episodes))
    got = estimates(ctx, agent, episodes)
    if not np.array_equal(np.argmax(got, axis=1), best):
        return agent, best, "after one update with reward 1 on an arm, that arm should have the largest estimate"
    return agent, best, None


def check_greedy(ctx):
    episodes = 64
    agent, best, problem = agent_with_best_arms(ctx, episodes, 0.0, "greedy")
    if problem:
        return Outcome(False, problem + " (see the update checks)")
    wrong = sum(np.count_nonzero(select(ctx, agent, episodes) != best) for _ in range(5))
    if wrong:
        return Outcome(False, f"with epsilon=0 the agent must always pick the arm with the largest estimate; "
                              f"it picked another arm {wrong} times in {5 * episodes}",
                       value=wrong, threshold="0 non-greedy")
    return Outcome(True, "with epsilon=0 the agent always picks the greedy arm", value=0, threshold="0 non-greedy")


def check_exploration(ctx):
    episodes, rounds, epsilon = 4000, 5, 0.2
    agent, best, problem = agent_with_best_arms(ctx, episodes, epsilon, "explore")
    if problem:
        return Outcome(False, problem + " (see the update checks)")
    actions = np.concatenate([select(ctx, agent, episodes) for _ in range(rounds)])
    best = np.tile(best, rounds)
    n = len(actions)
    p = epsilon * (BANDITS - 1) / BANDITS  # a random arm is non-greedy 9 times in 10
    fraction = np.count_nonzero(actions != best) / n
    tolerance = 5 * np.sqrt(p * (1 - p) / n)
    threshold = f"{p:.3f} ± {tolerance:.3f}"
    if abs(fraction - p) > tolerance:
        hint = ""
        if abs(fraction - epsilon) <= tolerance:
            hint = ("; likely bug: the random arm excludes the greedy one (epsilon-greedy draws "
                    "uniformly from all arms)")
        elif abs(fraction - (1 - epsilon) * (BANDITS - 1) / BANDITS) <= tolerance:
            hint = "; likely bug: exploring with probability 1 - epsilon instead of epsilon"
        return Outcome(False, f"with epsilon={epsilon} a non-greedy arm should be picked in "
                              f"{p:.0%} of the steps (epsilon * 9/10), observed {fraction:.1%}{hint}",
                       value=fraction, threshold=threshold)
    # Relative to the greedy arm, random arms must be uniform over the other 9.
    offsets = ((actions - best) % BANDITS)[actions != best]
    counts = np.bincount(offsets, minlength=BANDITS)[1:]
    expected = len(offsets) / (BANDITS - 1)
    chi2 = float(np.sum((counts - expected) ** 2 / expected))
    if chi2 > 50:  # 8 degrees of freedom: P(chi2 > 50) < 1e-7 for a uniform choice
        return Outcome(False, f"the exploring actions are not uniform over the arms (chi-square {chi2:.0f} "
                              f"with 8 degrees of freedom)", value=chi2, threshold="chi2 <= 50")
    return Outcome(True, f"non-greedy arm in {fraction:.1%} of the steps, uniformly spread",
                   value=fraction, threshold=threshold)


# ------------------------------------------------------------------ the testbed
class Testbed:
    """The grader's own 10-armed testbed for `episodes` episodes."""

    def __init__(self, episodes, rng):
        self.rng = rng
        self.values = rng.normal(0.0, 1.0, size=(episodes, BANDITS))

    def step(self, actions):
        return self.rng.normal(self.values[np.arange(len(actions)), actions], 1.0)


def check_testbed(epsilon, alpha, initial):
    def run(ctx):
        label = ("testbed", epsilon, alpha, initial)
        testbed = Testbed(EPISODES, ctx.rng(*label))
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
        expected, sd = EXPECTED[(epsilon, alpha, initial)]
        tolerance = Z * sd * np.sqrt(1 / EPISODES + 1 / REFERENCE_EPISODES)
        passed = abs(mean - expected) <= tolerance
        message = f"mean reward {mean:.3f} over {EPISODES} episodes of {EPISODE_LENGTH} steps"
        if not passed:
            message += (f", expected {expected:.3f} ± {tolerance:.3f}: "
                        + ("lower" if mean < expected else "higher") + " than the reference; "
                        "check action selection and the update rule (see the unit checks)")
        details = {"average_reward_per_step": np.round(per_step, 4).tolist()}
        curves = ctx.shared.setdefault("average_reward", {})
        curves[(epsilon, alpha, initial)] = per_step
        if ctx.plots_dir:
            details["plot"] = plot_average_reward(ctx.plots_dir / f"{ctx.assignment.name}-average-reward.png", curves)
        return Outcome(passed, message, value=mean, threshold=f"{expected:.3f} ± {tolerance:.3f}", details=details)
    return run


def plot_average_reward(path, curves):
    """Average reward at each step over the episodes, a line per configuration {(epsilon, alpha,
    initial): per-step averages}, and the reference's mean (dashed). Returns the file's path."""
    from matplotlib.figure import Figure  # no pyplot: figures are drawn from several threads in a batch
    figure = Figure(figsize=(9, 4.8), layout="constrained")
    axes = figure.subplots()
    for index, ((epsilon, alpha, initial), curve) in enumerate(curves.items()):
        label = (f"ε = {epsilon:g}, " + ("sample averages" if alpha == 0 else f"α = {alpha:g}")
                 + (f", initial {initial:g}" if initial else "") + f": mean {np.mean(curve):.3f}")
        axes.plot(np.arange(1, len(curve) + 1), curve, color=f"C{index}", lw=0.7, label=label)
        if (epsilon, alpha, initial) in EXPECTED:
            axes.axhline(EXPECTED[(epsilon, alpha, initial)][0], color=f"C{index}", ls="--", lw=1)
    axes.set(xlabel="step", ylabel="average reward", xlim=(0, EPISODE_LENGTH),
             title=f"10-armed testbed: average reward per step over {EPISODES} episodes (dashed: reference's mean over all steps)")
    axes.legend(loc="lower right")
    axes.grid(alpha=0.3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return str(path)


ASSIGNMENT = Assignment(
    name="bandits",
    title="Multi-armed bandits: epsilon-greedy on the 10-armed testbed",
    limits=Limits(time=30, start_time=30, memory_mb=1024, threads=1),
    checks=(
        Check("update: sample averaging", lambda ctx: check_update(ctx, 0.0, 2.0),
              description="alpha=0: each estimate is the mean of its arm's rewards"),
        Check("update: constant step size", lambda ctx: check_update(ctx, 0.25, 1.0),
              description="alpha=0.25: Q <- Q + alpha (R - Q), starting from initial=1"),
        Check("select: greedy", check_greedy, description="epsilon=0 picks the largest estimate"),
        Check("select: epsilon exploration", check_exploration,
              description="epsilon=0.2 picks a uniformly random arm 20% of the time"),
        Check("testbed: epsilon 0.1, averaging", check_testbed(0.1, 0.0, 0.0), points=2),
        Check("testbed: epsilon 0, optimistic initial 1, alpha 0.15", check_testbed(0.0, 0.15, 1.0), points=2),
        Check("testbed: epsilon 0.1, alpha 0.15", check_testbed(0.1, 0.15, 0.0), points=2),
    ),
)
