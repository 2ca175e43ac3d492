"""Value iteration on FrozenLake-v1: the optimal state values v* and a greedy policy.

The submission's functions get gymnasium's transition model as it is, `env.unwrapped.P`
(P[s][a]: a list of (probability, next_state, reward, terminated) tuples), from environments the
grader makes: `q_values(P, v, state, gamma)` -> float [actions], `sweep(P, v, gamma)` -> float
[states], `value_iteration(P, gamma, theta)` -> float [states], `greedy_policy(P, v, gamma)` ->
int [states]. The grader computes everything it compares with from the same P, in numpy
(`Model`): the backup q = R + gamma C v (R the expected rewards, C the probabilities of moving
on to a next state without the episode ending), v* (iterated until the largest change is below
1e-14), the exact value of a policy (a linear solve) and its exact probability of reaching the
goal within the environment's time limit (the undiscounted expected reward of that many steps).

Unit checks (a random UNIT_SIZE x UNIT_SIZE slippery map and random values v drawn with the
grader's secret generator, so nothing can be precomputed; gamma UNIT_GAMMA). The exact answers
are sums of a few float64 products, so they must match to ATOL (float32 arithmetic passes too);
a wrong answer is compared with what the typical bugs give (`likely_bug`) and the match is
named. v is random at every state, terminal ones included, so that bootstrapping from a
terminal state shows (from v_0 = 0 it would not: a terminal state's backup is gamma v(s) = 0).
A sweep is the synchronous backup v_(k+1) = B v_k of the lecture's definition of value
iteration (Sutton & Barto's in-place variant also converges to v*, but then a sweep's result
depends on the order of the states and cannot be checked on its own): the template asks for
a new array computed from v_k alone. The sweep's v arrives read-only from the grader, so
writing into it fails with that name; if it did not, the in-place result (states backed up in
order) is one of the named candidates.

Stopping rule. value_iteration's v must satisfy its own stopping rule as the grader measures
it: one more (exact) sweep changes no value by theta or more, max_s |(Bv)(s) - v(s)| < theta,
whatever the submission's start values. The answer of a correct loop, v_K (the first sweep
whose change is below theta) or the v_(K-1) it was compared with, always does (B is a
gamma-contraction: |Bv_K - v_K| <= gamma |v_K - v_(K-1)|), while a loop that stops at any
earlier sweep k < K-1 does not (|v_(k+1) - v_k| >= theta by the definition of K). So the rule
has no false failures and catches every early stop but the last one; the answer of a wrong
loop is compared with the v_k of the grader's own sweeps to say when it stopped (after the
first sweep, on the mean change, after k sweeps). The residual also bounds the error:
|v - v*| <= residual / (1 - gamma) < theta / (1 - gamma), the second threshold (implied by the
first, shown because it is what a student wants to know). A policy greedy on a v within e of
v* loses at most 2 gamma e / (1 - gamma) of value at any state (Singh & Yee 1994), the
threshold of the policy's exact value, 2 gamma theta / (1 - gamma)^2. Measured on 2026-11-28
over 200 random unit maps (bench/value_iteration.py in the course's repository): the
reference's residual is at most 0.88 theta on the unit maps and 0.95 theta on the graded maps;
stopping on the mean change stops 3 to 15 sweeps early on the unit maps, with a residual of at
least 1.26 theta.

Maps. FrozenLake-v1's 4x4 and 8x8 maps, slippery and not (MAPS: gamma, theta). Besides the
value and policy thresholds above, the grader plays EPISODES episodes (EPISODES_DETERMINISTIC on
the non-slippery maps, where every episode is the same) with the greedy policy on its own
gymnasium environment (seeds from ctx.rng), and the success rate must be at least the exact
success probability of an optimal policy (greedy on v*) minus Z standard errors. For a policy
as good as the optimal one the exact binomial probability of falling below is 4.8e-7 (4x4
slippery, p 0.740) and 3.9e-7 (8x8 slippery, p 0.632), FALSE_FAILURE ~ 1e-6 per grading
together; a policy that loses a few percent of success fails almost surely. The model's
success probability is tested against real episodes (the course's repository: its tests/).

Plots (--plots DIR): DIR/value_iteration-maps.png, each map graded so far: the submission's
values as a heat map, its policy as arrows (red where the action is not optimal), holes and
goal marked, and the measured success rate.
"""

import gymnasium as gym
import numpy as np
from gymnasium.envs.toy_text.frozen_lake import MAPS as MAPS_OF_GYMNASIUM
from gymnasium.envs.toy_text.frozen_lake import generate_random_map

from ..answers import expect_array
from ..sandbox import SubmissionError
from ..spec import Assignment, Check, Limits, Outcome
from ._shared import figure, likely_bug, save
from ._stats import rate_tolerance, sci

ACTIONS = 4  # FrozenLake: 0 left, 1 down, 2 right, 3 up
ARROWS = "←↓→↑"
UNIT_SIZE, UNIT_HOLES, UNIT_GAMMA = 6, 0.25, 0.9  # the unit checks' random map: size, fraction of holes, gamma
UNIT_THETA = 1e-6  # value_iteration's unit check: small enough for a few hundred sweeps
ATOL = 1e-6  # q_values, sweep: float64 sums of a few products (float32 arithmetic is within 1e-6 too)
TIE = 1e-9  # a policy's action counts as greedy if its q is within TIE of the best one
# (map, slippery, gamma, theta)
MAPS = (("4x4", False, 0.9, 1e-8), ("4x4", True, 0.99, 1e-8), ("8x8", False, 0.9, 1e-8), ("8x8", True, 0.99, 1e-8))
EPISODES, EPISODES_DETERMINISTIC = 1000, 10  # played with the greedy policy on the slippery / other maps
Z = 5.0  # the success rate's tolerance, in standard errors
FALSE_FAILURE = 1e-6  # P(a correct submission fails a grading): exact binomial tails (see above)
MAP_NAMES = {name: MAPS_OF_GYMNASIUM[name] for name in ("4x4", "8x8")}
Q, SWEEP, VI, GREEDY = "q_values", "sweep", "value_iteration", "greedy_policy"


def map_name(name, slippery):
    return f"FrozenLake {name}" + (" slippery" if slippery else "")


SUMMARY = (
    f"Unit checks, 1 point each, on a random {UNIT_SIZE}x{UNIT_SIZE} slippery FrozenLake map with random values v "
    f"at every state (terminal ones included) and gamma {UNIT_GAMMA:g}: {Q} for every state, and one {SWEEP} "
    f"(a new array from v alone), must match the grader's Bellman backups to within {sci(ATOL)}; {GREEDY} must "
    f"pick an action with the largest q(s, a) in every state; {VI} with theta {sci(UNIT_THETA)} must return "
    f"values that satisfy its stopping rule: one more sweep changes no value by theta or more. Then "
    f"{len(MAPS)} maps, 2 points each: "
    + "; ".join(
        f"{map_name(name, slippery)} (gamma {gamma:g}, theta {sci(theta)})" for name, slippery, gamma, theta in MAPS
    )
    + f". On each, {VI}'s v must satisfy the stopping rule and be within theta / (1 - gamma) of the grader's v*, "
    f"the policy {GREEDY} computes from it must lose at most 2 gamma theta / (1 - gamma)^2 of value at any state "
    f"(exact policy evaluation), and in the grader's own episodes ({EPISODES} on the slippery maps, "
    f"{EPISODES_DETERMINISTIC} on the others) reach the goal at least as often as an optimal policy's exact "
    f"success probability minus {Z:g} standard errors (a correct submission fails a grading with a probability "
    f"of about {sci(FALSE_FAILURE)}). Each failure names the function and, where it recognises it, the likely bug."
)


# ------------------------------------------------------------------ the grader's own model
class Model:
    """The dynamics of a FrozenLake environment as arrays, from its P: R [S, A] expected rewards,
    T [S, A, S'] transition probabilities, C [S, A, S'] the same for the transitions after which
    the episode goes on (the backup bootstraps only from those)."""

    def __init__(self, desc, slippery):
        self.map, self.slippery = desc, slippery
        env = gym.make("FrozenLake-v1", desc=desc, is_slippery=slippery)
        self.P = env.unwrapped.P
        self.desc = env.unwrapped.desc
        self.horizon = env.spec.max_episode_steps
        self.start = int(np.argmax(env.unwrapped.initial_state_distrib))
        S = self.states = len(self.P)
        self.R, self.T, self.C = np.zeros((S, ACTIONS)), np.zeros((S, ACTIONS, S)), np.zeros((S, ACTIONS, S))
        self.unweighted_R, self.unweighted_C = np.zeros((S, ACTIONS)), np.zeros((S, ACTIONS, S))  # for a bug
        for s, actions in self.P.items():
            for a, outcomes in actions.items():
                for p, s2, r, terminated in outcomes:
                    self.R[s, a] += p * r
                    self.T[s, a, s2] += p
                    self.C[s, a, s2] += 0.0 if terminated else p
                    self.unweighted_R[s, a] += r
                    self.unweighted_C[s, a, s2] += 0.0 if terminated else 1.0
        self.terminal = np.array(
            [
                all(t for outcomes in self.P[s].values() for *_, t in outcomes)
                and all(s2 == s for outcomes in self.P[s].values() for _, s2, *_ in outcomes)
                for s in range(S)
            ]
        )
        self._optimal = {}

    def q(self, v, gamma, masked=True):
        return self.R + gamma * ((self.C if masked else self.T) @ v)

    def backup(self, v, gamma):
        return self.q(v, gamma).max(axis=1)

    def sweeps(self, gamma, theta, limit=100000):
        """v_0 = 0, v_1, ... v_K of value iteration, K the first sweep that changed no value by theta."""
        values = [np.zeros(self.states)]
        while len(values) < limit:
            values.append(self.backup(values[-1], gamma))
            if np.max(np.abs(values[-1] - values[-2])) < theta:
                break
        return values

    def optimal(self, gamma):
        if gamma not in self._optimal:
            self._optimal[gamma] = self.sweeps(gamma, 1e-14)[-1]
        return self._optimal[gamma]

    def policy_value(self, policy, gamma):
        """v_pi exactly: (I - gamma C_pi) v = R_pi."""
        rows = np.arange(self.states)
        return np.linalg.solve(np.eye(self.states) - gamma * self.C[rows, policy], self.R[rows, policy])

    def success_probability(self, policy):
        """P(the goal is reached within the time limit) from the start state: the reward is 1 on
        reaching the goal and 0 otherwise, so it is the expected undiscounted reward of that many steps."""
        rows = np.arange(self.states)
        R, C = self.R[rows, policy], self.C[rows, policy]
        f = np.zeros(self.states)
        for _ in range(self.horizon):
            f = R + C @ f
        return float(f[self.start])

    def greedy_ok(self, policy, v, gamma):
        """Whether each state's action has (within TIE) the largest q(s, a) computed from v."""
        q = self.q(v, gamma)
        return q[np.arange(self.states), policy] >= q.max(axis=1) - TIE * np.maximum(1, np.abs(q).max(axis=1))

    def intended(self):
        """(next state, reward, terminated) [S, A] of the move each action aims at (the one outcome
        of the non-slippery lake)."""
        plain = gym.make("FrozenLake-v1", desc=self.map, is_slippery=False).unwrapped.P
        outcome = [[plain[s][a][0] for a in range(ACTIONS)] for s in range(self.states)]
        return tuple(np.array([[o[i] for o in row] for row in outcome]) for i in (1, 2, 3))


def unit_model(ctx):
    """The unit checks' MDP: a random slippery map, secret, the same for all unit checks."""
    if "unit model" not in ctx.shared:
        seed = int(ctx.secret_rng("unit map").integers(2**31))
        desc = generate_random_map(size=UNIT_SIZE, p=1 - UNIT_HOLES, seed=seed)
        ctx.shared["unit model"] = Model(desc, slippery=True)
    return ctx.shared["unit model"]


def random_values(ctx, label, states):
    return ctx.secret_rng("values", label).uniform(0.0, 1.0, size=states)


# ------------------------------------------------------------------ q_values
def q_bugs(model, v, gamma):
    """{likely bug: the action values [S, A] it gives}, for likely_bug."""
    S = model.states
    once = np.zeros((S, ACTIONS))  # a next state listed in several outcomes, with the probability of the last one
    for s in range(S):
        for a in range(ACTIONS):
            last = {s2: (p, r, terminated) for p, s2, r, terminated in model.P[s][a]}
            once[s, a] = sum(p * (r + (0.0 if t else gamma * v[s2])) for s2, (p, r, t) in last.items())
    return {
        "terminal states are not masked: the backup adds gamma v(s') after an outcome that ends the episode "
        "(the value of a terminal state is 0, whatever v says)": lambda: model.q(v, gamma, masked=False),
        "gamma is missing: the next states' values are not discounted": lambda: model.q(v, 1.0),
        "the reward is missing: only gamma v(s') is averaged": lambda: model.q(v, gamma) - model.R,
        "the outcomes are not weighted by their probabilities (summed instead of averaged)": lambda: (
            model.unweighted_R + gamma * (model.unweighted_C @ v)
        ),
        "a next state listed in several outcomes is counted once (the probabilities of the outcomes that "
        "lead to the same state add up)": once,
        "v(s) of the state itself is used instead of v(s') of the next state": lambda: (
            model.R + gamma * model.C.sum(axis=2) * v[:, None]
        ),
        "terminal states are not masked and gamma is missing": lambda: model.q(v, 1.0, masked=False),
        "every outcome is treated as terminal (only the rewards are averaged)": model.R,
    }


def ask_q(ctx, P, v, state, gamma):
    return expect_array(ctx.sandbox.call(Q, P, v, state, gamma), f"{Q}(P, v, {state}, gamma)", shape=(ACTIONS,))


def check_q_values(ctx):
    model = unit_model(ctx)
    v = random_values(ctx, Q, model.states)
    got = np.stack([ask_q(ctx, model.P, v, s, UNIT_GAMMA) for s in range(model.states)])
    expected = model.q(v, UNIT_GAMMA)
    error = float(np.max(np.abs(got - expected)))
    threshold = f"<= {sci(ATOL)}"
    where = f"{Q} on a random {UNIT_SIZE}x{UNIT_SIZE} slippery map with random v, gamma {UNIT_GAMMA:g}"
    if error <= ATOL:
        return Outcome(
            True, f"{where}: q(s, a) matches for all {model.states} states", value=f"{error:.1e}", threshold=threshold
        )
    hint = likely_bug(got, q_bugs(model, v, UNIT_GAMMA))
    s, a = np.unravel_index(np.argmax(np.abs(got - expected)), got.shape)
    kind = (
        "a terminal state"
        if model.terminal[s]
        else "a state next to a terminal one"
        if (model.T[s] - model.C[s]).any()
        else "a state"
    )
    return Outcome(
        False,
        f"{where}: q({s}, {a}) ({kind}) is {got[s, a]:.5f}, expected {expected[s, a]:.5f}"
        + (f"; likely bug: {hint}" if hint else ""),
        value=f"{error:.1e}",
        threshold=threshold,
    )


# ------------------------------------------------------------------ sweep
def gauss_seidel(model, v, gamma):
    """The sweep done in place, states in order: each backup sees the states already updated."""
    v = v.copy()
    for s in range(model.states):
        v[s] = np.max(model.R[s] + gamma * model.C[s] @ v)
    return v


def in_place_message(where):
    return (
        f"{where}: likely bug: the values are updated in place during the sweep (Gauss-Seidel): a state "
        f"backed up later in the sweep sees values already updated; the synchronous backup computes "
        f"v_(k+1) as a new array from v_k alone"
    )


def check_sweep(ctx):
    model = unit_model(ctx)
    v = random_values(ctx, SWEEP, model.states)
    where = f"{SWEEP} on a random {UNIT_SIZE}x{UNIT_SIZE} slippery map with random v, gamma {UNIT_GAMMA:g}"
    threshold = f"<= {sci(ATOL)}"
    try:
        got = ctx.sandbox.call(SWEEP, model.P, v, UNIT_GAMMA)
    except SubmissionError as failure:
        if failure.kind == "exception" and "read-only" in failure.message:
            return Outcome(
                False,
                f"{in_place_message(where)} ({failure.message}; v arrives read-only from the grader)",
                value="writes into v",
                threshold=threshold,
                details={"traceback": failure.details},
            )
        raise
    got = expect_array(got, f"{SWEEP}(P, v, gamma)", shape=(model.states,))
    expected = model.backup(v, UNIT_GAMMA)
    error = float(np.max(np.abs(got - expected)))
    if error <= ATOL:
        return Outcome(
            True, f"{where}: v_(k+1) matches for all {model.states} states", value=f"{error:.1e}", threshold=threshold
        )
    q = model.q(v, UNIT_GAMMA)
    candidates = {
        "a mean over the actions instead of the max (that is the backup of the uniformly random policy, the "
        "Bellman expectation equation; the optimality equation takes the best action)": q.mean(axis=1),
        "the values are updated in place during the sweep (Gauss-Seidel): a state backed up later in the sweep "
        "sees values already updated; the synchronous backup computes v_(k+1) from v_k alone": lambda: gauss_seidel(
            model, v, UNIT_GAMMA
        ),
        "a sum over the actions instead of the max": q.sum(axis=1),
        "the min over the actions instead of the max": q.min(axis=1),
        "the greedy action (argmax) instead of the largest value (max)": q.argmax(axis=1),
        "the sweep returns v unchanged": v,
    }
    candidates |= {
        f"in the backup, {bug}": (lambda bugged=bugged: np.max(bugged() if callable(bugged) else bugged, axis=1))
        for bug, bugged in q_bugs(model, v, UNIT_GAMMA).items()
    }
    hint = likely_bug(got, candidates)
    if ctx.failed_units(Q):
        hint = (f"{hint}; " if hint else "") + f"{Q}, which {SWEEP} may use, fails its own check: fix it first"
    s = int(np.argmax(np.abs(got - expected)))
    return Outcome(
        False,
        f"{where}: v_(k+1)({s}) is {got[s]:.5f}, expected max_a q({s}, a) = {expected[s]:.5f}"
        + (f"; likely bug: {hint}" if hint else ""),
        value=f"{error:.1e}",
        threshold=threshold,
    )


# ------------------------------------------------------------------ value_iteration
def stopping_diagnosis(ctx, model, v, gamma, theta):
    """Why v does not satisfy the stopping rule: the sweep or where the loop stopped."""
    try:
        own = expect_array(ctx.sandbox.call(SWEEP, model.P, v, gamma), f"{SWEEP}(P, v, gamma)", shape=(model.states,))
    except SubmissionError:
        own = None
    if own is not None and np.max(np.abs(own - model.backup(v, gamma))) > ATOL:
        return (
            f"the result is close to a fixed point of the submission's {SWEEP}, which is not the Bellman "
            f"optimality backup here: see the {SWEEP} check"
            if np.max(np.abs(own - v)) < theta
            else f"the submission's {SWEEP} is not the Bellman optimality backup here: see the {SWEEP} check"
        )
    values = model.sweeps(gamma, theta)
    K = len(values) - 1
    changes = [np.abs(b - a) for a, b in zip(values, values[1:])]
    distances = [np.max(np.abs(v - vk)) for vk in values]
    k = int(np.argmin(distances)) if min(distances) <= theta / 100 else None  # consecutive v_k differ by >= theta
    mean_stop = next((i + 1 for i, c in enumerate(changes) if c.mean() < theta), None)
    if k == 0:
        return "the loop returns the initial values v_0 = 0: no sweep was done"
    if k == 1:
        return (
            "stopping too early: the values are those after the first sweep; is the change measured between "
            "an array and itself (v overwritten before the comparison, or a sweep that writes into v)?"
        )
    if k is not None and k == mean_stop:
        return (
            f"stopping too early: the loop stopped after {k} sweeps, when the mean change fell below theta; "
            f"the rule is on the largest change, max_s |v_(k+1)(s) - v_k(s)| < theta (after {K} sweeps here)"
        )
    if k is not None:
        return (
            f"stopping too early: the values are those after {k} sweeps, whose largest change was "
            f"{changes[k - 1].max():.2e}, not yet below theta = {theta:g}; that happens after {K} sweeps"
        )
    if ctx.failed_units(Q, SWEEP):
        return f"see the failed check(s): {', '.join(ctx.failed_units(Q, SWEEP))}"
    return "stopping too early, or the loop does not repeat the sweep from the previous sweep's values"


def judge_values(ctx, model, v, gamma, theta):
    """(passed, message, residual, error) for value_iteration's answer v."""
    residual = float(np.max(np.abs(model.backup(v, gamma) - v)))
    error = float(np.max(np.abs(v - model.optimal(gamma))))
    bound = theta / (1 - gamma)
    passed = residual < theta * (1 + 1e-6) and error <= bound * (1 + 1e-6)
    need = "" if passed else "must be "
    message = (
        f"one more sweep changes v by at most {residual:.1e} ({need}< theta = {theta:g}, the stopping "
        f"rule); max |v - v*| = {error:.1e} ({need}< theta / (1 - gamma) = {bound:.1e})"
    )
    if not passed:
        message += f"; likely bug: {stopping_diagnosis(ctx, model, v, gamma, theta)}"
    return passed, message, residual, error


def ask_values(ctx, model, gamma, theta):
    return expect_array(ctx.sandbox.call(VI, model.P, gamma, theta), f"{VI}(P, gamma, theta)", shape=(model.states,))


def check_value_iteration(ctx):
    model = unit_model(ctx)
    v = ask_values(ctx, model, UNIT_GAMMA, UNIT_THETA)
    passed, message, residual, _ = judge_values(ctx, model, v, UNIT_GAMMA, UNIT_THETA)
    return Outcome(
        passed,
        f"{VI} on a random {UNIT_SIZE}x{UNIT_SIZE} slippery map, gamma {UNIT_GAMMA:g}, theta {UNIT_THETA:g}: {message}",
        value=f"{residual:.1e}",
        threshold=f"residual < {UNIT_THETA:g}",
    )


# ------------------------------------------------------------------ greedy_policy
def ask_policy(ctx, model, v, gamma):
    return expect_array(
        ctx.sandbox.call(GREEDY, model.P, v, gamma),
        f"{GREEDY}(P, v, gamma)",
        kind="i",
        shape=(model.states,),
        low=0,
        high=ACTIONS - 1,
    ).astype(np.int64)


def policy_hint(model, policy, v, gamma):
    """The likely bug of a policy that is not greedy with respect to q computed from v.

    Each bug is a rule "the action with the largest (or smallest) score", and a policy follows the
    rule when, in every non-terminal state, its action's score is the best score (within TIE): so
    ties are followed whichever of the tied actions the submission picked, and the diagnosis does
    not depend on the secret map (a state whose actions all have equal scores follows every rule)."""
    active = ~model.terminal
    q = model.q(v, gamma)
    intended, reward, terminated = model.intended()
    aims = reward + gamma * np.where(terminated, 0.0, v[intended])
    scores = {  # bug: scores [S, A] whose argmax the buggy policy takes
        "argmin instead of argmax": -q,
        "the action whose intended next state has the largest value, ignoring the transition probabilities "
        "(on the slippery lake q(s, a) averages over all the outcomes of a)": aims,
        "the policy follows the largest v(s') without the backup (q(s, a) = sum p [r + gamma v(s')])": v[intended],
        "terminal states are not masked in q": model.q(v, gamma, masked=False),
    }
    rows = np.flatnonzero(active)
    for bug, score in scores.items():
        score = score[rows]
        best, taken = score.max(axis=1), score[np.arange(len(rows)), policy[rows]]
        if np.all(taken >= best - TIE * np.maximum(1, np.abs(score).max(axis=1))):
            return bug
    if len(rows) and np.all(policy[rows] == policy[rows[0]]):
        return "the same action in every state"
    return None


def check_greedy_policy(ctx):
    model = unit_model(ctx)
    v = random_values(ctx, GREEDY, model.states)
    policy = ask_policy(ctx, model, v, UNIT_GAMMA)
    wrong = np.flatnonzero(~model.greedy_ok(policy, v, UNIT_GAMMA))
    where = f"{GREEDY} on a random {UNIT_SIZE}x{UNIT_SIZE} slippery map with random v, gamma {UNIT_GAMMA:g}"
    if not len(wrong):
        return Outcome(
            True,
            f"{where}: an action with the largest q(s, a) in every state",
            value=0,
            threshold="0 non-greedy states",
        )
    q = model.q(v, UNIT_GAMMA)
    s = wrong[0]
    hint = policy_hint(model, policy, v, UNIT_GAMMA)
    if ctx.failed_units(Q):
        hint = (f"{hint}; " if hint else "") + f"{Q}, which {GREEDY} may use, fails its own check: fix it first"
    return Outcome(
        False,
        f"{where}: {len(wrong)} of {model.states} states get an action without the largest "
        f"q(s, a), e.g. state {s}: action {policy[s]} ({ARROWS[policy[s]]}, q {q[s, policy[s]]:.4f})"
        f" instead of {q[s].argmax()} ({ARROWS[q[s].argmax()]}, q {q[s].max():.4f})"
        + (f"; likely bug: {hint}" if hint else ""),
        value=len(wrong),
        threshold="0 non-greedy states",
    )


# ------------------------------------------------------------------ the maps
def play(model, policy, episodes, seed):
    """(successes, episodes): `episodes` episodes of the grader's own FrozenLake-v1 (gymnasium's
    environment with its time limit) played with `policy`, one after the other. gymnasium has no
    vectorized FrozenLake, and its synchronous vector environment is slower than this loop for it
    (half the speed, measured by bench/value_iteration.py in the course's repository)."""
    env = gym.make("FrozenLake-v1", desc=model.map, is_slippery=model.slippery)
    successes = 0
    for episode in range(episodes):
        state, _ = env.reset(seed=seed if episode == 0 else None)
        done = False
        while not done:
            state, reward, terminated, truncated, _ = env.step(int(policy[state]))
            done = terminated or truncated
        successes += reward == 1
    env.close()
    return int(successes), episodes


def check_map(name, slippery, gamma, theta):
    title = map_name(name, slippery)

    def run(ctx):
        model = Model(MAP_NAMES[name], slippery)
        try:
            v = ask_values(ctx, model, gamma, theta)
            policy = ask_policy(ctx, model, v, gamma)
        except SubmissionError as failure:
            if failure.kind == "todo":  # the message keeps ending in "TODO: <function>" for the report's list
                raise SubmissionError(
                    "todo", f"the map needs {VI} and {GREEDY}: {failure.message}", failure.details
                ) from None
            raise
        values_ok, message, residual, error = judge_values(ctx, model, v, gamma, theta)
        optimal = model.optimal(gamma)
        best_policy = model.q(optimal, gamma).argmax(axis=1)
        loss = float(np.max(optimal - model.policy_value(policy, gamma)))
        loss_bound = 2 * gamma * theta / (1 - gamma) ** 2
        policy_ok = loss <= loss_bound + 1e-9
        p_policy, p_best = model.success_probability(policy), model.success_probability(best_policy)
        episodes = EPISODES if slippery else EPISODES_DETERMINISTIC
        ctx.progress(f"{title}: {episodes} episodes with the greedy policy")
        successes, played = play(model, policy, episodes, int(ctx.rng("episodes", name, slippery).integers(2**31)))
        rate = successes / played
        rate_min = p_best - rate_tolerance(p_best, played, z=Z) - 1e-9
        rate_ok = rate >= rate_min
        parts = [f"values: {message}"]
        parts.append(
            f"policy: loses at most {loss:.1e} of value at any state ({'' if policy_ok else 'must be '}"
            f"<= 2 gamma theta / (1 - gamma)^2 = {loss_bound:.1e}); reaches the goal within "
            f"{model.horizon} steps with probability {p_policy:.3f} (optimal {p_best:.3f}), in "
            f"{successes} of {played} episodes ({rate:.1%}, at least {max(rate_min, 0):.1%} needed)"
        )
        if not (policy_ok and rate_ok):
            greedy_here = model.greedy_ok(policy, v, gamma)
            if not greedy_here.all():
                hint = policy_hint(model, policy, v, gamma)
                parts.append(
                    f"likely bug: {GREEDY} is not greedy with respect to q computed from {VI}'s values in "
                    f"{np.count_nonzero(~greedy_here)} states" + (f" ({hint})" if hint else "")
                )
            elif not values_ok:
                parts.append(f"the policy is greedy on {VI}'s values, which are off (see above)")
        passed = values_ok and policy_ok and rate_ok
        score = None if passed else 0.5 * values_ok + 0.5 * (policy_ok and rate_ok)
        not_optimal = ~model.greedy_ok(policy, optimal, gamma) & ~model.terminal
        details = {
            "values": np.round(v, 6).tolist(),
            "policy": policy.tolist(),
            "residual": residual,
            "error": error,
            "value_loss": loss,
            "success_probability": p_policy,
            "optimal_success_probability": p_best,
            "success_rate": rate,
            "episodes": played,
        }
        maps = ctx.shared.setdefault("maps", {})
        maps[title] = (model.desc, v, policy, not_optimal, rate, gamma)
        if ctx.plots_dir:
            details["plot"] = save(draw_maps(maps), ctx.plots_dir / f"{ctx.assignment.name}-maps.png")
        return Outcome(
            passed,
            f"{title}, gamma {gamma:g}, theta {theta:g}: " + "; ".join(parts),
            value=round(rate, 4),
            threshold=f">= {max(rate_min, 0):.3f}",
            score=score,
            details=details,
        )

    return run


def draw_maps(maps):
    """A panel per map {title: (desc, v, policy, not_optimal, rate, gamma)}: v as a heat map, the policy
    as arrows (red: not optimal), holes and the goal marked."""
    fig, axes = figure(4.2 * len(maps), 4.9, ncols=len(maps), squeeze=False)
    for axis, (title, (desc, v, policy, not_optimal, rate, gamma)) in zip(axes[0], maps.items()):
        rows, columns = desc.shape
        top = max(1e-9, float(v.max()))
        image = axis.imshow(v.reshape(rows, columns), cmap="viridis", vmin=0, vmax=top)
        small = rows <= 4
        for s in range(rows * columns):
            r, c = divmod(s, columns)
            letter = desc[r, c].decode()
            ink = "black" if v[s] > 0.6 * top else "white"  # readable on viridis' yellow end
            if letter in "HG":
                axis.add_patch(_square(r, c, "black" if letter == "H" else "gold"))
                axis.text(
                    c,
                    r,
                    letter,
                    ha="center",
                    va="center",
                    color="white" if letter == "H" else "black",
                    fontsize=12,
                    weight="bold",
                )
                continue
            axis.text(
                c,
                r + (0.15 if small else 0),
                ARROWS[policy[s]],
                ha="center",
                va="center",
                fontsize=16 if small else 12,
                weight="bold",
                color="red" if not_optimal[s] else ink,
            )
            if small:
                axis.text(c, r - 0.3, f"{v[s]:.3f}", ha="center", va="center", color=ink, fontsize=8)
            if letter == "S":
                axis.text(c - 0.42, r - 0.42, "S", ha="left", va="top", color=ink, fontsize=8)
        axis.set(title=f"{title} (γ {gamma:g})\nsuccess in {rate:.1%} of the episodes", xticks=[], yticks=[])
        fig.colorbar(image, ax=axis, shrink=0.8, label="v(s)")
    fig.suptitle("value_iteration's values v(s) and greedy_policy's actions (red: not optimal); H hole, G goal")
    return fig


def _square(row, column, color):
    from matplotlib.patches import Rectangle

    return Rectangle((column - 0.5, row - 0.5), 1, 1, color=color)


ASSIGNMENT = Assignment(
    name="value_iteration",
    title="Value iteration: optimal values and a greedy policy on FrozenLake-v1",
    limits=Limits(time=60, start_time=30, memory_mb=1024, threads=1),
    summary=SUMMARY,
    expected_time="about 2 seconds",
    checks=(
        Check(
            "q_values: one-state Bellman backup",
            functions=(Q,),
            run=check_q_values,
            description="q(s, a) = sum p(s', r | s, a) [r + gamma v(s')], terminal outcomes without v(s')",
        ),
        Check(
            "sweep: synchronous Bellman optimality backup",
            functions=(SWEEP,),
            run=check_sweep,
            description="v_(k+1)(s) = max_a q_k(s, a) for every state, from v_k alone",
        ),
        Check(
            "greedy_policy: argmax of q",
            functions=(GREEDY,),
            run=check_greedy_policy,
            description="pi(s) = argmax_a q(s, a)",
        ),
        Check(
            "value_iteration: stopping rule",
            functions=(VI,),
            run=check_value_iteration,
            description="stops once max_s |v_(k+1)(s) - v_k(s)| < theta, not before",
        ),
    )
    + tuple(
        Check(
            f"{map_name(name, slippery)}: v* and greedy policy",
            check_map(name, slippery, gamma, theta),
            points=2,
            description=f"gamma {gamma:g}, theta {theta:g}",
            functions=(Q, SWEEP, VI, GREEDY),
            end_to_end=True,
        )
        for name, slippery, gamma, theta in MAPS
    ),
)
