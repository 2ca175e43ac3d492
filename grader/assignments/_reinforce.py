"""What REINFORCE and REINFORCE with baseline share: the grader-owned CartPole-v1 episodes the
student trains on, the greedy evaluation, the training check and the unit checks.

The submission exposes `parse_args(argv)`, `compute_returns(rewards, gamma)`,
`policy_loss(probs, actions, returns[, baselines])`, `sample_with_seed(probs, seed)` (its
`sample_actions` with a generator of that seed), `Agent(observation_size, num_actions, args)`
with `predict(states)` and `train(states, actions, returns)`, `train(agent, episodes, args)` and
`evaluate(agent, episodes, n)`. During training the child gets a stand-in for its `Episodes`
class whose `reset(n)` and `step(actions)` run here, on the grader's own CartPole-v1 vector
environment: the grader counts the episodes, records the learning curve, and stops handing out
episodes when the budget (episodes or time) is used up.

Learned, not hand-coded: for each training the grader draws a secret relabelling of CartPole
(`Transform`: the 4 observation features permuted and their signs flipped, the 2 actions swapped
or not) from `ctx.secret_rng` (the grader's key, the seed, the training and the submission's
digest), and applies it to the training episodes and to that training's greedy evaluation alike.
A controller written by hand for CartPole's usual coordinates (e.g. push right when
theta + 0.5 theta_dot > 0) meets it in scrambled coordinates, and cannot carry what one grading
revealed into the next (any change of the file draws another relabelling). The relabelling is
symmetric for a network initialized at random, so it does not change how hard it is to learn.

Measured by the grader's own code: after a training the policy leaves the child as its Keras
config and weights (`Agent.policy.to_json()`, `get_weights()`), is rebuilt in a measurement
sandbox that never imports the submission (grader/measured.py: built-in layers only), must answer
PROBES secret states as `Agent.predict` did, and plays the greedy evaluation with each state on
its own row. A controller in `predict` (even one that identifies the relabelling online from the
states it is shown) is never asked; the episodes' seeds come from the grader's key.

Every function the student writes has a unit check that names it: the returns, the loss's
gradient, `sample_actions` (the distribution of many samples), the policy's probabilities,
`Agent.train` (one step on a batch the grader builds: do the log-probabilities move in the
direction of their returns?), the training loop `train` and `evaluate` (run with the grader's
own stand-in agent, whose every answer is recorded: are the actions played sampled, and are
the states, actions and returns trained on the ones played?). The training check then says
what it saw, and names the unit checks that failed.
"""

import hashlib
import time

import gymnasium as gym
import numpy as np

from .. import measured
from ..answers import expect_array, expect_handle
from ..sandbox import Service, SubmissionError
from ..spec import Check, Outcome
from ._shared import figure, save, trainings_until_decided

OBSERVATION_SIZE, NUM_ACTIONS = 4, 2
EVALUATION_EPISODES = 100


def make_env(n):
    return gym.make_vec("CartPole-v1", num_envs=n, vectorization_mode="vector_entry_point")


def prepare():
    """Imports gymnasium's CartPole and makes its environments in the parent before any child
    starts: nothing a submission could touch on disk is loaded by the grader afterwards."""
    make_env(2).close()
    gym.make("CartPole-v1").close()


class Transform:
    """A relabelling of CartPole: the submission sees `observations(o)` = the features of `o`
    in the order `order`, times `signs`; its action a is the environment's action `actions[a]`."""

    def __init__(self, rng):
        self.order = rng.permutation(OBSERVATION_SIZE)
        self.signs = rng.choice(np.array([-1.0, 1.0], np.float32), size=OBSERVATION_SIZE)
        self.actions = rng.permutation(NUM_ACTIONS)

    def observations(self, observations):
        return (np.asarray(observations, np.float32)[:, self.order] * self.signs).astype(np.float32)

    def env_actions(self, actions):
        return self.actions[np.asarray(actions, np.int64)]


class Identity(Transform):
    def __init__(self):
        self.order, self.signs = np.arange(OBSERVATION_SIZE), np.ones(OBSERVATION_SIZE, np.float32)
        self.actions = np.arange(NUM_ACTIONS)


def secret_transform(ctx, index):
    """The secret relabelling of training `index` (see the module's docstring)."""
    source = getattr(ctx, "source", None)
    digest = hashlib.sha256(ctx.submission.read_bytes() if source is None else source).hexdigest()
    return Transform(ctx.secret_rng("cartpole-relabelling", index, digest))


class TrainingEpisodes:
    """Parent side of the student's `Episodes`: batches of CartPole-v1 episodes side by side.
    reset(n) -> observations [n, 4]; step(actions [n]) -> (observations, rewards, done);
    a finished episode stays finished (reward 0, observation frozen). With `record`, `batches`
    keeps every batch: the observations the actions were chosen in, the actions, the rewards
    and which episodes were still running, step by step."""

    MAX_BATCH = 1024
    PROGRESS_SECONDS = 5

    def __init__(self, rng, transform, budget=None, time_limit=None, progress=None, record=False):
        self.rng, self.transform, self.budget, self.progress = rng, transform, budget, progress
        # time_limit: the sandbox's Deadline (CPU seconds, wall-clock backstop), or wall seconds (the
        # course's repository's bench/)
        self.deadline = (
            time_limit if hasattr(time_limit, "exceeded") else (time.monotonic() + time_limit if time_limit else None)
        )
        self.env = None
        self.done = np.zeros(0, bool)  # the current batch's finished episodes (none before the first reset)
        self.started = 0
        self.curve = []  # return of each finished training episode, in order of finishing
        self.stop_reason = None
        self.last_progress = time.monotonic()
        self.batches = [] if record else None

    def service(self):
        return Service("episodes", reset=self.reset, step=self.step)

    def stop(self, reason):
        self.stop_reason = reason
        raise Service.Stop(reason)

    def check_time(self, fresh=True):
        """Stops the training once its time limit is reached."""
        over = (
            None
            if self.deadline is None
            else (
                self.deadline.exceeded(fresh)
                if hasattr(self.deadline, "exceeded")
                else time.monotonic() > self.deadline and "wall-clock seconds"
            )
        )
        if over:
            self.stop(f"the training time limit is reached ({over})")

    def reset(self, n):
        if isinstance(n, np.ndarray) and n.shape == () and n.dtype.kind in "iu":
            n = int(n)  # a numpy integer
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= self.MAX_BATCH:
            raise SubmissionError("invalid", f"episodes.reset(n) needs an int n in 1..{self.MAX_BATCH}, got {n!r}")
        if self.budget is not None and self.started + n > self.budget:
            self.stop(f"the budget of {self.budget} training episodes is used up")
        self.check_time()
        self.flush()
        if self.progress is not None and time.monotonic() - self.last_progress >= self.PROGRESS_SECONDS:
            self.last_progress = time.monotonic()
            recent = self.curve[-20:]
            self.progress(
                f"{self.started} episodes handed out"
                + (f", mean return of the last {len(recent)}: {np.mean(recent):.1f}" if recent else "")
            )
        if self.env is None or self.env.num_envs != n:
            self.env = make_env(n)
        self.started += n
        observations, _ = self.env.reset(seed=int(self.rng.integers(2**31)))
        self.observations = self.transform.observations(observations)
        self.done = np.zeros(n, bool)
        self.returns = np.zeros(n)
        if self.batches is not None:
            self.batches.append({"states": [], "actions": [], "rewards": [], "running": []})
        return self.observations.copy()

    def flush(self):
        """Adds the finished episodes of the current batch to the learning curve, in batch order."""
        if len(self.done):
            self.curve.extend(self.returns[self.done].tolist())
            self.done = self.done[:0]

    def step(self, actions):
        if self.env is None or not len(self.done):
            raise SubmissionError("invalid", "episodes.step() was called before episodes.reset(n)")
        self.check_time(fresh=False)  # in every call, not only reset() (usage measured 10 times a second)
        n = self.env.num_envs
        actions = expect_array(
            actions, "the actions given to episodes.step", kind="i", shape=(n,), low=0, high=NUM_ACTIONS - 1
        )
        before = self.observations.copy()
        observations, rewards, terminated, truncated, _ = self.env.step(self.transform.env_actions(actions))
        active = ~self.done
        rewards = np.where(active, rewards, 0.0).astype(np.float32)
        self.returns += rewards
        self.observations[active] = self.transform.observations(observations)[active]
        finished = active & (terminated | truncated)
        self.done |= finished
        if self.batches is not None:
            for name, value in zip(("states", "actions", "rewards", "running"), (before, actions, rewards, active)):
                self.batches[-1][name].append(np.array(value))
        return [self.observations.copy(), rewards, self.done.copy()]


def evaluate(predict, transform, seed, episodes=EVALUATION_EPISODES):
    """Greedy returns of `episodes` episodes run as one batch on the grader's environments, seen
    through `transform`: one `predict(observations)` call per step for all of them."""
    env = make_env(episodes)
    observations, _ = env.reset(seed=seed)
    done, returns = np.zeros(episodes, bool), np.zeros(episodes)
    while not done.all():
        probs = expect_probabilities(predict(transform.observations(observations)), episodes)
        observations, rewards, terminated, truncated, _ = env.step(transform.env_actions(np.argmax(probs, axis=1)))
        returns += np.where(done, 0.0, rewards)
        done |= terminated | truncated
    return returns


def expect_probabilities(value, batch, actions=NUM_ACTIONS, name="Agent.predict"):
    probs = expect_array(value, name, shape=(batch, actions), low=0.0, high=1.0)
    worst = float(np.max(np.abs(probs.sum(axis=1) - 1.0)))
    if worst > 1e-3:
        raise SubmissionError(
            "invalid",
            f"{name} must return a distribution per state (rows summing "
            f"to 1), a row sums to {1 + worst:.3f} or {1 - worst:.3f}: softmax missing?",
        )
    return probs


def agent_argv(seed):
    """The command line the grader gives the submission's `parse_args` (and the benchmark)."""
    return ["--seed", str(seed)]


def training_seed(grader_seed, index):
    """The seed a training gets (parse_args --seed): from the grader's seed and the training's number."""
    return 1000 * grader_seed + index


def new_agent(ctx, seed):
    args = expect_handle(ctx.sandbox.call("parse_args", agent_argv(seed)), "parse_args(argv)")
    return args, expect_handle(ctx.sandbox.call("Agent", OBSERVATION_SIZE, NUM_ACTIONS, args), "Agent(4, 2, args)")


def evaluation_summary(threshold, trainings, required):
    """How a training is measured and passes, for the specs' grading paragraphs."""
    return f"""The greedy policy (the most probable action) is then evaluated on
{EVALUATION_EPISODES} episodes by the grader's own code: your Agent.policy leaves your
process as its Keras config and weights (to_json(), get_weights(); built-in layers only), is rebuilt
by the grader, must give the probabilities Agent.predict gave on {PROBES} secret states, and
plays each state on its own. A training passes at a mean return of at least
{threshold}, and {required} of at most {trainings} trainings must pass (the grader stops as soon as
the outcome is known)."""


# ------------------------------------------------------------------ the checks, in the order students meet them
def checks(losses, train_steps, training):
    """A REINFORCE assignment's checks: the returns, its `losses` (policy_loss, value_loss), the
    policy's probabilities, its `train_steps` (Agent.train), sampling, the training loop and
    evaluate, and last `training`, the end-to-end check."""
    return (
        Check(
            "returns: undiscounted",
            check_returns(1.0),
            functions=("compute_returns",),
            description="G_t = sum of rewards from t on",
        ),
        Check(
            "returns: discounted",
            check_returns(0.9),
            functions=("compute_returns",),
            description="G_t = r_t + gamma G_t+1",
        ),
        *losses,
        Check(
            "policy: probabilities",
            check_probabilities,
            functions=("Agent.__init__", "Agent.predict"),
            description="Agent.predict gives a distribution over actions",
        ),
        *train_steps,
        Check(
            "sample_actions: frequencies",
            check_sample_actions,
            functions=("sample_actions",),
            description="many sampled actions follow their probabilities; same seed, same actions",
        ),
        Check(
            "train: the steps played are the steps trained on",
            check_train_loop,
            functions=("train",),
            description="actions sampled; agent.train gets the states and actions played and their returns",
        ),
        Check(
            "evaluate: greedy returns",
            check_evaluate,
            functions=("evaluate",),
            description="the most probable action in every state; the total reward of each episode",
        ),
        training,
    )


# ------------------------------------------------------------------ the training check
def check_training(threshold, trainings, required, budget=None):
    """Trains up to `trainings` times, each in a fresh child on the grader's episodes (under a
    secret relabelling), evaluates each greedily here; passes when `required` of them reach
    `threshold` (it stops as soon as the outcome is known)."""

    def run(ctx):
        results = trainings_until_decided(
            ctx, trainings, required, lambda index: train_once(ctx, index, threshold, budget), f"reach {threshold}"
        )
        passed = sum(r["passed"] for r in results)
        ok = passed >= required
        lines = [r["message"] for r in results]
        message = (
            f"{passed} of {len(results)} trainings reached a greedy mean return of {threshold} "
            f"({required} needed): " + "; ".join(lines)
        )
        if not ok:
            message += "; " + diagnosis(ctx, results, threshold)
        details = {"trainings": [{k: v for k, v in r.items() if k != "message"} for r in results]}
        return Outcome(
            ok,
            message,
            value=passed,
            threshold=f">= {required} trainings",
            score=min(1, passed / required),
            details=details,
        )

    return run


def train_once(ctx, index, threshold, budget):
    seed = training_seed(ctx.seed, index)
    ctx.fresh_sandbox()
    args, agent = new_agent(ctx, seed)
    transform = secret_transform(ctx, index)
    deadline = ctx.sandbox.deadline(ctx.limits.train_time)
    episodes = TrainingEpisodes(
        ctx.secret_rng("training", index),
        transform,
        budget=budget,
        time_limit=deadline,
        progress=lambda text: ctx.progress(f"training {index}: {text}"),
    )
    started, service = time.monotonic(), episodes.service()
    result = {"index": index, "seed": seed}
    try:  # a soft limit: after train_time no more episodes; the child is killed 60 s later
        ctx.sandbox.call(
            "train", agent, service, args, phase="training", timeout=ctx.limits.train_time + 60, services=[service]
        )
    except SubmissionError as failure:
        if failure.kind in ("todo", "syntax", "import"):
            raise
        if failure.kind != "stopped":
            ctx.close()
            episodes.flush()
            return dict(
                result,
                passed=False,
                greedy_mean=None,
                training_episodes=episodes.started,
                learning_curve=episodes.curve,
                error=failure.kind,
                message=f"training {index} (seed {seed}) failed after {episodes.started} episodes: {failure.message}",
            )
    train_s, train_cpu_s = time.monotonic() - started, deadline.cpu()
    episodes.flush()
    try:
        returns = measured_evaluation(ctx, agent, transform, index)
    except SubmissionError as failure:
        if failure.kind in ("todo", "syntax", "import"):
            raise
        ctx.close()
        return dict(
            result,
            passed=False,
            greedy_mean=None,
            training_episodes=episodes.started,
            learning_curve=episodes.curve,
            error=failure.kind,
            message=f"training {index} (seed {seed}): {episodes.started} episodes, then the trained policy "
            f"could not be measured: {failure.message}",
        )
    mean = float(returns.mean())
    limit = (
        f"{budget} episodes and {ctx.limits.train_time:.0f} CPU s" if budget else f"{ctx.limits.train_time:.0f} CPU s"
    )
    message = (
        f"training {index} (seed {seed}): {episodes.started} episodes in {train_cpu_s:.0f} CPU s ({train_s:.0f} s) "
        f"(limit {limit}{'; ' + episodes.stop_reason if episodes.stop_reason else ''}), "
        f"greedy mean return {mean:.1f}{'' if mean >= threshold else f' < {threshold}'}"
    )
    result.update(
        passed=mean >= threshold,
        greedy_mean=round(mean, 2),
        training_episodes=episodes.started,
        training_s=round(train_s, 2),
        training_cpu_s=round(train_cpu_s, 2),
        stop_reason=episodes.stop_reason,
        learning_curve=episodes.curve,
        evaluation_returns=returns.tolist(),
        message=message,
    )
    if ctx.plots_dir:
        result["plot"] = plot_curve(ctx, index, episodes.curve, returns, threshold)
    return result


PROBES = 64  # secret states on which the rebuilt policy must answer as the trained agent did


def probe_states(rng, transform):
    """States like CartPole's (wider than its start), seen through the training's relabelling."""
    return transform.observations(rng.normal(0, [1.0, 1.0, 0.1, 1.0], size=(PROBES, OBSERVATION_SIZE)))


def measured_evaluation(ctx, agent, transform, index):
    """The greedy returns of the trained policy, measured by the grader's own code: the policy
    leaves the submission's process as its Keras config and weights (`Agent.policy`), is rebuilt
    in a measurement sandbox that never imports the submission (grader/measured.py), must answer
    secret probes as `Agent.predict` did, and then plays the evaluation episodes, each state on
    its own row."""
    secret = ctx.secret_rng("evaluation", index)
    policy = ctx.sandbox.getattr(agent, "policy", timeout=ctx.limits.time)
    config, weights = measured.take(ctx.sandbox, policy, "Agent.policy")
    probes = probe_states(secret, transform)
    expected = expect_probabilities(ctx.sandbox.call(agent.method("predict"), probes), PROBES)
    ctx.close()  # the submission's process is done: nothing it keeps can take part in the evaluation
    with measured.Measurement(ctx, "the policy (Agent.policy)") as measure:
        handle = measure.rebuild(config, weights)
        measure.matches(handle, probes, [expected], "the action probabilities")
        return evaluate(lambda states: measure.predict(handle, states), transform, seed=int(secret.integers(2**31)))


def diagnosis(ctx, results, threshold):
    """What the grader saw in the failed trainings, and where to look."""
    units = ctx.failed_units()
    if units:
        return f"look first at the unit checks that failed: {', '.join(units)}"
    if all(r.get("error") for r in results if not r["passed"]):
        return "each failed training says why above (fix that first)"
    checked = "every unit check passed" if ctx.unit_functions() else "(the unit checks were not run in this grading)"
    peaks = [
        max(np.convolve(r["learning_curve"], np.ones(20) / 20, "valid"), default=0.0)
        if len(r["learning_curve"]) >= 20
        else float(np.mean(r["learning_curve"] or [0.0]))
        for r in results
        if not r["passed"]
    ]
    seen = ", ".join(f"{p:.0f}" for p in peaks)
    if all(p < 100 for p in peaks):
        return (
            f"{checked}, but the training returns never rose (best mean of 20 consecutive "
            f"training episodes: {seen}): the policy did not learn. Look at the training loop `train`: "
            f"how often Agent.train is called and on what, and the hyperparameters"
        )
    return (
        f"{checked} and the training returns rose (best mean of 20 consecutive training "
        f"episodes: {seen}), but the greedy policy did not reach {threshold}. Look at the training loop "
        f"`train`: when it stops (the budget includes every episode it plays), and whether it trains long "
        f"and steadily enough (learning rate, batch size)"
    )


def plot_curve(ctx, index, curve, returns, threshold):
    fig, (left, right) = figure(10, 3.5, nrows=1, ncols=2, gridspec_kw={"width_ratios": [3, 1]})
    left.plot(np.arange(1, len(curve) + 1), curve, lw=0.5, alpha=0.5, label="return per training episode")
    if len(curve) >= 20:
        left.plot(
            np.arange(20, len(curve) + 1),
            np.convolve(curve, np.ones(20) / 20, "valid"),
            lw=1.5,
            label="mean of the last 20",
        )
    left.axhline(threshold, color="gray", ls="--", lw=0.8, label=f"threshold {threshold}")
    left.set(xlabel="training episode", ylabel="return", title=f"{ctx.assignment.name}: training {index}")
    left.legend(loc="lower right")
    right.hist(returns, bins=20, range=(0, 500))
    right.set(xlabel="greedy evaluation return", ylabel="episodes", title=f"mean {np.mean(returns):.1f}")
    return save(fig, ctx.plots_dir / f"{ctx.assignment.name}-training-{index}.png", dpi=80)


# ------------------------------------------------------------------ returns and losses
def returns_of(rewards, gamma):
    """G_t = sum_k gamma^k r_{t+k}, as a discounted sum (not the recursion the students write)."""
    rewards = np.asarray(rewards, np.float64)
    powers = gamma ** np.arange(len(rewards))
    return np.array([np.dot(powers[: len(rewards) - t], rewards[t:]) for t in range(len(rewards))])


def check_returns(gamma):
    def run(ctx):
        rng = ctx.rng("returns", gamma)
        rewards = rng.integers(-2, 5, size=9).astype(np.float32) if gamma < 1 else np.ones(9, np.float32)
        got = expect_array(
            ctx.sandbox.call("compute_returns", rewards, gamma), "compute_returns", shape=(len(rewards),)
        )
        expected = returns_of(rewards, gamma)
        error = float(np.max(np.abs(got - expected)))
        threshold = "<= 1e-4"
        if error <= 1e-4 * max(1, np.abs(expected).max()):
            return Outcome(
                True,
                f"returns of {len(rewards)} rewards with gamma={gamma} are correct",
                value=error,
                threshold=threshold,
            )
        forward = np.array([sum(gamma ** (t - k) * rewards[k] for k in range(t + 1)) for t in range(len(rewards))])
        bug = likely_returns_bug(got, rewards, gamma)
        hint = f"; likely bug: {bug}" if bug else ""
        if not bug and np.allclose(got, forward, atol=1e-4):
            hint = "; likely bug: cumulated from the start of the episode, not reversed (G_t = r_t + gamma G_t+1)"
        return Outcome(
            False,
            f"compute_returns({rewards.tolist()}, gamma={gamma}) gave {np.round(got, 3).tolist()}, "
            f"expected {np.round(expected, 3).tolist()}{hint}",
            value=error,
            threshold=threshold,
        )

    return run


def likely_returns_bug(got, rewards, gamma):
    from ._shared import likely_bug

    expected = returns_of(rewards, gamma)
    return likely_bug(
        got,
        {
            "every step gets the return of the whole episode, not the reward-to-go": np.full(len(rewards), expected[0]),
            "gamma is ignored": lambda: returns_of(rewards, 1.0),
            "the rewards themselves, not the returns that follow them": rewards,
            "the returns are shifted by one step: G_t must include r_t itself (G_t = r_t + gamma G_t+1), here it "
            "starts at r_t+1": np.append(expected[1:], 0.0),
            "the returns are shifted by one step: G_t is the return from the step before (G_t-1)": np.insert(
                expected[:-1], 0, expected[0] if len(expected) else 0.0
            ),
            "the episode's last reward is left out (the loop stops one step early)": lambda: np.append(
                returns_of(rewards[:-1], gamma), 0.0
            ),
            "the returns are in reverse order": expected[::-1],
            "cumulated from the start of the episode, not reversed (G_t = r_t + gamma G_t+1)": lambda: np.array(
                [sum(gamma ** (t - k) * rewards[k] for k in range(t + 1)) for t in range(len(rewards))]
            ),
        },
        atol=1e-3,
    )


def tangent(gradient):
    """Removes the part of a gradient that changes the sum of a row of probabilities: only
    directions along the simplex matter for a loss of a distribution."""
    return gradient - gradient.mean(axis=1, keepdims=True)


def policy_batch(ctx, label, batch=8):
    rng = ctx.rng(label)
    logits = rng.normal(size=(batch, NUM_ACTIONS + 1))  # 3 actions: a sharper test than 2
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    probs = (0.1 + 0.7 * probs).astype(np.float32)
    probs /= probs.sum(axis=1, keepdims=True)
    actions = rng.integers(NUM_ACTIONS + 1, size=batch).astype(np.int64)
    returns = rng.normal(0, 2, size=batch).astype(np.float32)
    return probs, actions, returns


def reinforce_gradient(probs, actions, weights):
    """d/dprobs of -mean_i weights_i log probs_i[actions_i]."""
    expected = np.zeros_like(probs, dtype=np.float64)
    rows = np.arange(len(actions))
    expected[rows, actions] = -weights / probs[rows, actions] / len(actions)
    return expected


def cosine_of(a, b):
    a, b = np.ravel(np.asarray(a, np.float64)), np.ravel(np.asarray(b, np.float64))
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


def compare_gradient(got, expected, what):
    """Cosine of the two gradients along the simplex; any positive scale is accepted (a sum or a
    mean over the batch, the learning rate absorbs it)."""
    cosine = cosine_of(tangent(np.asarray(got, np.float64)), tangent(expected))
    if cosine >= 0.999:
        return Outcome(
            True, f"{what} matches the REINFORCE gradient (cosine {cosine:.4f})", value=cosine, threshold=">= 0.999"
        )
    if cosine <= -0.999:
        hint = (
            "sign error: minimising this loss makes actions with high returns LESS likely; minimise the "
            "negative log-likelihood of the sampled actions weighted by the returns"
        )
    elif abs(cosine) > 0.1:
        hint = (
            "the gradient is not proportional to the REINFORCE gradient: weight each sampled action's "
            "negative log-likelihood by its return"
        )
    else:
        hint = "the loss barely depends on the probabilities of the sampled actions weighted by the returns"
    return Outcome(
        False,
        f"{what}: cosine similarity with the REINFORCE gradient is {cosine:.3f}; {hint}",
        value=cosine,
        threshold=">= 0.999",
    )


def check_policy_gradient(ctx):
    probs, actions, returns = policy_batch(ctx, "policy-gradient")
    value, (grad,) = ctx.sandbox.grad("policy_loss", [probs, actions, returns], wrt=[0])
    expect_array(value, "policy_loss", shape=())
    grad = expect_array(grad, "the gradient of policy_loss", shape=probs.shape)
    return compare_gradient(
        grad,
        reinforce_gradient(probs, actions, returns),
        "the gradient of policy_loss(probs, actions, returns) with respect to probs",
    )


# ------------------------------------------------------------------ sample_actions
SAMPLED_ROWS = np.array([[0.2, 0.5, 0.3], [0.7, 0.1, 0.2], [0.05, 0.05, 0.9], [1 / 3, 1 / 3, 1 / 3]])
SAMPLES_PER_ROW = 3000


def check_sample_actions(ctx):
    """Many rows of a few distributions (3 actions), sampled at once: the frequencies must match
    the probabilities (within 5 standard errors), and the same seed must give the same actions."""
    rng = ctx.rng("sample-actions")
    kinds = rng.permutation(np.repeat(np.arange(len(SAMPLED_ROWS)), SAMPLES_PER_ROW))
    probs = SAMPLED_ROWS[kinds].astype(np.float32)
    seed = int(rng.integers(2**31))

    def sample(seed):
        return expect_array(
            ctx.sandbox.call("sample_with_seed", probs, seed),
            "sample_actions",
            kind="i",
            shape=(len(probs),),
            low=0,
            high=probs.shape[1] - 1,
        )

    actions = sample(seed)
    frequencies = np.array(
        [np.bincount(actions[kinds == k], minlength=3) / SAMPLES_PER_ROW for k in range(len(SAMPLED_ROWS))]
    )
    errors = np.abs(frequencies - SAMPLED_ROWS) / np.sqrt(SAMPLED_ROWS * (1 - SAMPLED_ROWS) / SAMPLES_PER_ROW)
    worst = float(errors.max())
    table = "; ".join(
        f"probabilities {np.round(p, 2).tolist()} -> frequencies {np.round(f, 3).tolist()}"
        for p, f in zip(SAMPLED_ROWS, frequencies)
    )
    if worst > 5:
        if np.array_equal(actions, np.argmax(probs, axis=1)):
            hint = "it picks the most probable action (argmax) instead of sampling"
        elif all(len(np.unique(actions[kinds == k])) == 1 for k in range(len(SAMPLED_ROWS))):
            hint = "rows with the same probabilities always get the same action: draw one random number per row"
        elif np.abs(frequencies - SAMPLED_ROWS[:, ::-1]).max() < 0.03:
            hint = "the actions are reversed (action a is chosen with the probability of action A-1-a)"
        elif not np.any(actions == 2):
            hint = "it never chooses the last of 3 actions: it must work for any number of actions A"
        else:
            hint = "the frequencies do not follow the probabilities"
        return Outcome(
            False,
            f"sample_actions on {len(probs)} rows: {table}; {hint}",
            value=worst,
            threshold="<= 5 standard errors",
        )
    if not np.array_equal(sample(seed), actions):
        return Outcome(
            False,
            "sample_actions gave other actions for a generator with the same seed: take every "
            "random number from the generator `rng` it is given (reproducible runs)",
            value=worst,
            threshold="same seed, same actions",
        )
    if np.array_equal(sample(seed + 1), actions):
        return Outcome(
            False,
            f"sample_actions gave the same {len(probs)} actions for generators of two different "
            "seeds: it ignores the generator `rng` it is given (e.g. a generator of its own made "
            "with a fixed seed), so it draws the same numbers at every call",
            value=worst,
            threshold="other seed, other actions",
        )
    return Outcome(
        True,
        f"sample_actions on {len(probs)} rows follows the probabilities (largest deviation "
        f"{worst:.1f} standard errors) and is reproducible",
        value=worst,
        threshold="<= 5 standard errors",
    )


# ------------------------------------------------------------------ the agent
def check_probabilities(ctx):
    args, agent = new_agent(ctx, 1)
    states = ctx.rng("states").normal(0, 0.5, size=(32, OBSERVATION_SIZE)).astype(np.float32)
    probs = expect_probabilities(ctx.sandbox.call(agent.method("predict"), states), 32)
    return Outcome(
        True,
        "Agent.predict returns a distribution over the 2 actions for each of 32 states",
        value=float(probs.min()),
        threshold="rows sum to 1, entries in [0, 1]",
    )


TRAIN_BATCH = 64
AGENTS = 3  # the policy's step is judged on the mean over this many fresh agents and batches
ALIGNMENT = 0.15  # least mean cosine between the change of log pi(a|s) and the weights it should follow


def training_batch(ctx, label, k=0):
    """States like CartPole's, random actions: a fixed batch of the Agent.train checks."""
    rng = ctx.rng(label, k)
    states = rng.normal(0, [0.5, 0.5, 0.1, 0.5], size=(TRAIN_BATCH, OBSERVATION_SIZE)).astype(np.float32)
    actions = rng.integers(NUM_ACTIONS, size=TRAIN_BATCH).astype(np.int64)
    return rng, states, actions


def log_probabilities(ctx, agent, states, actions):
    probs = expect_probabilities(ctx.sandbox.call(agent.method("predict"), states), len(states))
    return np.log(np.maximum(probs[np.arange(len(actions)), actions], 1e-30).astype(np.float64))


def train_step(ctx, agent, states, actions, returns):
    ctx.sandbox.call(agent.method("train"), states, actions, returns.astype(np.float32), phase="Agent.train")


def policy_alignment(ctx, label, seed, batch_returns):
    """One Agent.train step on each of AGENTS fresh agents, each with its own batch and returns
    (`batch_returns(rng, agent, states)` -> (returns, weights), or None when it cannot judge):
    the mean cosine between the change of log pi(a_i|s_i) and the weights, and the largest
    change. To first order a gradient step on -mean_i w_i log pi(a_i|s_i) raises
    sum_i w_i log pi(a_i|s_i): the cosine is positive (about 0.3 for the reference, whose Adam
    moves every weight, relevant or not, by about the learning rate), negative for a sign error,
    near 0 for an update that does not follow the weights."""
    cosines, largest = [], 0.0
    for k in range(AGENTS):
        args, agent = new_agent(ctx, seed + k)
        rng, states, actions = training_batch(ctx, label, k)
        chosen = batch_returns(rng, agent, states)
        if chosen is None:
            return None
        returns, weights = chosen
        before = log_probabilities(ctx, agent, states, actions)
        train_step(ctx, agent, states, actions, returns)
        change = log_probabilities(ctx, agent, states, actions) - before
        cosines.append(cosine_of(change, weights))
        largest = max(largest, float(np.abs(change).max()))
    return float(np.mean(cosines)), largest


def check_agent_train(ctx):
    """One Agent.train step on fixed batches with returns of both signs: the log-probabilities
    of the actions must move in the direction of their returns (see policy_alignment)."""

    def signed_returns(rng, agent, states):
        returns = rng.choice([-1.0, 1.0], size=len(states)) * rng.uniform(1, 3, size=len(states))
        return returns, returns

    cosine, largest = policy_alignment(ctx, "agent-train", 2, signed_returns)
    threshold = f">= {ALIGNMENT}"
    if largest == 0:
        return Outcome(
            False,
            "one Agent.train step did not change the policy's probabilities at all: is the "
            "gradient applied (optimizer.apply_gradients) to the policy's variables?",
            value=cosine,
            threshold=threshold,
        )
    if cosine >= ALIGNMENT:
        return Outcome(
            True,
            f"one Agent.train step moves the log-probabilities of the actions in the direction "
            f"of their returns (mean cosine {cosine:.2f} over {AGENTS} batches)",
            value=cosine,
            threshold=threshold,
        )
    hint = (
        "they moved AGAINST the returns: gradient ascent instead of descent on the loss, or a sign error"
        if cosine < -ALIGNMENT
        else "they barely follow the returns: is the loss computed on the batch's "
        "actions and returns (not, e.g., on the most probable actions)?"
    )
    if ctx.failed_units("policy_loss"):
        hint += " (policy_loss failed its own check: fix that first)"
    return Outcome(
        False,
        f"one Agent.train step on batches of {TRAIN_BATCH} steps with returns of both signs: the "
        f"change of log pi(a|s) has a mean cosine of {cosine:.2f} with the returns; {hint}",
        value=cosine,
        threshold=threshold,
    )


# ------------------------------------------------------------------ train and evaluate, with a stand-in agent
class StandInAgent:
    """The grader's agent, standing in for the submission's in the checks of `train` and
    `evaluate`: a fixed stochastic policy (the action that pushes towards the side the pole
    leans to has probability P_LEAN) whose answers are recorded, and a `train` that only
    records the batches it is given."""

    P_LEAN = 0.75

    def __init__(self):
        self.trained = []

    def service(self):
        return Service("agent", predict=self.predict, train=self.train)

    def probs(self, states):
        lean = (states[:, 2] > 0).astype(int)
        probs = np.full((len(states), NUM_ACTIONS), 1 - self.P_LEAN, np.float32)
        probs[np.arange(len(states)), lean] = self.P_LEAN
        return probs

    def predict(self, states):
        states = expect_array(states, "the states given to agent.predict", shape=(None, OBSERVATION_SIZE))
        return self.probs(states)

    def train(self, states, actions, returns):
        states = expect_array(states, "the states given to agent.train", shape=(None, OBSERVATION_SIZE))
        n = len(states)
        actions = expect_array(actions, "the actions given to agent.train", kind="i", shape=(n,))
        returns = expect_array(returns, "the returns given to agent.train", shape=(n,))
        self.trained.append((states, actions, returns))


class OneBatchEpisodes(TrainingEpisodes):
    """Recorded episodes in CartPole's own coordinates, handed out until the agent has been
    trained twice (two batches: what a training loop carries over from one batch to the next is
    seen too) on at least MIN_STEPS steps played (at most `limit` episodes)."""

    MIN_STEPS = 100

    def __init__(self, rng, agent, limit=160):
        super().__init__(rng, Identity(), record=True)
        self.agent, self.limit = agent, limit

    def steps_played(self):
        return int(sum(np.sum(b["running"]) for b in self.batches))

    def reset(self, n):
        if len(self.agent.trained) >= 2 and self.steps_played() >= self.MIN_STEPS:
            self.stop("the check of train() has seen enough")
        if isinstance(n, int) and self.started + n > self.limit:
            self.stop(f"train() played {self.limit} episodes without calling agent.train")
        return super().reset(n)


def played_steps(episodes, gamma):
    """{state bytes: (action, return, reward)} of every step the episodes played while running."""
    steps = {}
    for batch in (b for b in episodes.batches if b["states"]):
        states, actions = np.array(batch["states"]), np.array(batch["actions"])
        rewards, running = np.array(batch["rewards"]), np.array(batch["running"])
        for i in range(states.shape[1]):
            length = int(running[:, i].sum())
            returns = returns_of(rewards[:length, i], gamma)
            for t in range(length):
                steps[states[t, i].tobytes()] = (int(actions[t, i]), float(returns[t]), float(rewards[t, i]))
    return steps


def terminal_states(episodes):
    found = set()
    for batch in (b for b in episodes.batches if b["states"]):
        states, running = np.array(batch["states"]), np.array(batch["running"])
        for i in range(states.shape[1]):
            found.update(states[t, i].tobytes() for t in range(len(states)) if not running[t, i])
    return found


def check_train_loop(ctx):
    """Runs the submission's `train` with the grader's stand-in agent and recorded episodes for
    one training step: the actions played must be sampled from the agent's probabilities, and
    the batch given to agent.train must be the steps played (each once), with the actions played
    in them and the returns that followed."""
    args = expect_handle(ctx.sandbox.call("parse_args", agent_argv(3)), "parse_args(argv)")
    gamma = ctx.sandbox.getattr(args, "gamma")
    gamma = float(gamma) if isinstance(gamma, (int, float)) and 0 <= gamma <= 1 else 1.0
    agent = StandInAgent()
    episodes = OneBatchEpisodes(ctx.rng("train-loop"), agent)
    services = [agent.service(), episodes.service()]
    try:
        ctx.sandbox.call("train", services[0], services[1], args, phase="train", services=services)
    except SubmissionError as failure:
        if failure.kind == "protocol" and "unknown service" in failure.message:
            ctx.close()
            return Outcome(
                False,
                "train() used something of the agent other than agent.predict(states) and "
                "agent.train(states, actions, returns) (the grader's stand-in agent has only "
                "these)",
                threshold="one training step",
            )
        if failure.kind != "stopped":
            raise
    if not agent.trained:
        return Outcome(
            False,
            f"train() played {episodes.started} episodes and returned without calling agent.train",
            threshold="one training step",
        )
    if not episodes.steps_played():
        return Outcome(
            False,
            "train() called agent.train without playing a step (episodes.reset(n) and "
            "episodes.step(actions)): it must train on the steps it plays",
            threshold="one training step",
        )
    # the actions played: sampled from the probabilities?
    played = [
        (np.array(b["states"])[np.array(b["running"])], np.array(b["actions"])[np.array(b["running"])])
        for b in episodes.batches
        if b["states"]
    ]
    states = np.concatenate([s for s, _ in played])
    actions = np.concatenate([a for _, a in played])
    greedy = np.argmax(agent.probs(states), axis=1)
    share = float(np.mean(actions == greedy))
    expected, n = StandInAgent.P_LEAN, len(actions)
    z = (share - expected) / np.sqrt(expected * (1 - expected) / n)
    if abs(z) > 5 or (share == 1.0 and expected**n < 1e-6):
        hint = (
            "it plays the most probable action (argmax) in every state: during training the actions must be "
            "sampled from the policy (sample_actions), or it never explores"
            if share == 1.0
            else "the actions played do not follow the agent's probabilities (see the check of sample_actions)"
        )
        return Outcome(
            False,
            f"train() played {n} steps with the grader's agent, whose most probable action has "
            f"probability {expected}: {100 * share:.1f}% of the actions played were the most "
            f"probable one; {hint}",
            value=share,
            threshold=f"{expected} ± 5 standard errors",
        )
    # the batch trained on: the steps played, each once, with their actions and returns
    trained_states = np.concatenate([t[0] for t in agent.trained]).astype(np.float32)
    trained_actions = np.concatenate([t[1] for t in agent.trained])
    trained_returns = np.concatenate([t[2] for t in agent.trained]).astype(np.float64)
    steps, terminal = played_steps(episodes, gamma), terminal_states(episodes)
    keys = [s.tobytes() for s in trained_states]
    unknown = [k for k in keys if k not in steps]
    where = f"train() played {len(steps)} steps and gave agent.train {len(keys)} rows"
    if unknown:
        if all(k in terminal for k in unknown):
            hint = (
                "it includes the steps after an episode had ended (their observation is the episode's final "
                "one); train only on the steps each episode was still running"
            )
        else:
            hint = (
                "some states given to agent.train are not states the actions were chosen in (the observation "
                "after the step instead of before it?)"
            )
        return Outcome(
            False,
            f"{where}: {len(unknown)} of them are not steps played; {hint}",
            value=len(unknown),
            threshold="the steps played",
        )
    if len(set(keys)) != len(keys) or len(keys) != len(steps):
        first = {s.tobytes() for s in agent.trained[0][0].astype(np.float32)}
        again = len(agent.trained) > 1 and any(s.tobytes() in first for s in agent.trained[1][0].astype(np.float32))
        hint = (
            "; likely bug: the second call of agent.train got steps of the first batch again (the lists of a "
            "batch are not emptied between batches)"
            if again
            else ""
        )
        return Outcome(
            False,
            f"{where} in {len(agent.trained)} calls: agent.train must get every step played exactly "
            f"once ({len(set(keys))} distinct steps given){hint}",
            value=len(keys),
            threshold=str(len(steps)),
        )
    expected_actions = np.array([steps[k][0] for k in keys])
    if not np.array_equal(trained_actions, expected_actions):
        wrong = float(np.mean(trained_actions != expected_actions))
        greedy = np.argmax(agent.probs(trained_states), axis=1)
        hint = (
            "likely bug: it trains on the most probable (argmax) actions instead of the actions played"
            if np.array_equal(trained_actions, greedy)
            else "they must be the actions played in those states"
        )
        return Outcome(
            False,
            f"{where}: {100 * wrong:.1f}% of the actions given to agent.train differ from the actions played; {hint}",
            value=wrong,
            threshold="0",
        )
    expected_returns = np.array([steps[k][1] for k in keys])
    if not np.allclose(trained_returns, expected_returns, rtol=1e-4, atol=1e-3):
        rewards = np.array([steps[k][2] for k in keys])
        hint = (
            "likely bug: the rewards themselves instead of the returns that follow them"
            if np.allclose(trained_returns, rewards, atol=1e-3)
            else "compute them with compute_returns over the steps each episode ran (if compute_returns failed "
            "its own check, fix that first)"
        )
        error = float(np.max(np.abs(trained_returns - expected_returns)))
        return Outcome(
            False,
            f"{where}: the returns given to agent.train differ from the returns that followed "
            f"the steps (by up to {error:.3g}); {hint}",
            value=error,
            threshold="<= 1e-3",
        )
    return Outcome(
        True,
        f"{where}: the actions played were sampled ({100 * share:.1f}% most probable, expected "
        f"{100 * expected:.0f}%), and agent.train got the steps played with their actions and "
        f"returns",
        value=share,
        threshold=f"{expected} ± 5 standard errors",
    )


def check_evaluate(ctx):
    """Runs the submission's `evaluate` with the grader's stand-in agent on recorded episodes:
    every action must be the most probable one, and the returns the episodes' total rewards."""
    agent, n = StandInAgent(), 5
    episodes = TrainingEpisodes(ctx.rng("evaluate"), Identity(), budget=n, record=True)
    services = [agent.service(), episodes.service()]
    try:
        got = ctx.sandbox.call("evaluate", services[0], services[1], n, phase="evaluate", services=services)
    except SubmissionError as failure:
        if failure.kind == "stopped":
            return Outcome(
                False, f"evaluate(agent, episodes, {n}) asked for more than {n} episodes", threshold=f"{n} episodes"
            )
        if failure.kind == "protocol" and "unknown service" in failure.message:
            ctx.close()
            return Outcome(
                False,
                "evaluate() used something of the agent other than agent.predict(states) (the "
                "grader's stand-in agent has only predict and train)",
                threshold="greedy actions",
            )
        raise
    got = expect_array(got, "evaluate", shape=(n,))
    episodes.flush()
    if not any(np.any(b["running"]) for b in episodes.batches):
        return Outcome(
            False,
            f"evaluate(agent, episodes, {n}) returned {n} numbers without playing a step: it "
            "must play the episodes (episodes.reset(n), then episodes.step(actions) until every "
            "episode is done) and return their total rewards",
            threshold=f"{n} episodes played",
        )
    batches = [b for b in episodes.batches if b["states"]]
    states = np.concatenate([np.array(b["states"])[np.array(b["running"])] for b in batches])
    actions = np.concatenate([np.array(b["actions"])[np.array(b["running"])] for b in batches])
    share = float(np.mean(actions == np.argmax(agent.probs(states), axis=1)))
    if share < 1:
        return Outcome(
            False,
            f"evaluate played {100 * share:.1f}% of its {len(actions)} steps with the most probable "
            "action: the greedy policy chooses the most probable action (argmax) in every state, "
            "it does not sample",
            value=share,
            threshold="100%",
        )
    totals = np.sort(np.array(episodes.curve))
    if len(totals) != n or not np.allclose(np.sort(got), totals, atol=1e-3):
        return Outcome(
            False,
            f"evaluate(agent, episodes, {n}) returned {np.round(got, 2).tolist()}, but the "
            f"{len(totals)} episodes it played had total rewards {totals.tolist()}",
            value=float(np.abs(np.sort(got) - totals).max()) if len(totals) == n else None,
            threshold="the total reward of each episode",
        )
    return Outcome(
        True,
        f"evaluate played {n} episodes greedily and returned their total rewards {totals.tolist()}",
        value=share,
        threshold="100%",
    )
