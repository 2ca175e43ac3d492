"""What REINFORCE and REINFORCE with baseline share: the grader-owned CartPole-v1 episodes the
student trains on, the greedy evaluation, and the unit checks of returns and policy losses.

The submission exposes `parse_args(argv)`, `compute_returns(rewards, gamma)`,
`policy_loss(probs, actions, returns[, baselines])`, `Agent(observation_size, num_actions, args)`
with `predict(states)`, and `train(agent, episodes, args)`. During training the child gets a
stand-in for its `Episodes` class whose `reset(n)` and `step(actions)` run here, on the grader's
own CartPole-v1 vector environment: the grader counts the episodes, records the learning curve,
and stops handing out episodes when the budget (episodes or time) is used up.
"""
import time

import gymnasium as gym
import numpy as np

from ..sandbox import Service, SubmissionError, expect_array, expect_handle
from ..spec import Outcome

OBSERVATION_SIZE, NUM_ACTIONS = 4, 2
EVALUATION_EPISODES = 100


def make_env(n):
    return gym.make_vec("CartPole-v1", num_envs=n, vectorization_mode="vector_entry_point")


class TrainingEpisodes:
    """Parent side of the student's `Episodes`: batches of CartPole-v1 episodes side by side.
    reset(n) -> observations [n, 4]; step(actions [n]) -> (observations, rewards, done);
    a finished episode stays finished (reward 0, observation frozen)."""

    MAX_BATCH = 1024

    def __init__(self, rng, budget=None, time_limit=None):
        self.rng, self.budget = rng, budget
        self.deadline = time.monotonic() + time_limit if time_limit else None
        self.env = None
        self.started = 0
        self.curve = []  # return of each finished training episode, in order of finishing
        self.stop_reason = None

    def service(self):
        return Service("episodes", reset=self.reset, step=self.step)

    def reset(self, n):
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= self.MAX_BATCH:
            raise SubmissionError("invalid", f"episodes.reset(n) needs an int n in 1..{self.MAX_BATCH}, got {n!r}")
        if self.budget is not None and self.started + n > self.budget:
            self.stop_reason = f"the budget of {self.budget} training episodes is used up"
            raise Service.Stop(self.stop_reason)
        if self.deadline is not None and time.monotonic() > self.deadline:
            self.stop_reason = "the training time limit is reached"
            raise Service.Stop(self.stop_reason)
        self.flush()
        if self.env is None or self.env.num_envs != n:
            self.env = make_env(n)
        self.started += n
        observations, _ = self.env.reset(seed=int(self.rng.integers(2**31)))
        self.observations = observations.astype(np.float32)
        self.done = np.zeros(n, bool)
        self.returns = np.zeros(n)
        return self.observations.copy()

    def flush(self):
        """Adds the finished episodes of the current batch to the learning curve, in batch order."""
        if self.env is not None and len(self.done):
            self.curve.extend(self.returns[self.done].tolist())
            self.done = self.done[:0]

    def step(self, actions):
        if self.env is None:
            raise SubmissionError("invalid", "episodes.step() was called before episodes.reset(n)")
        n = self.env.num_envs
        actions = expect_array(actions, "the actions given to episodes.step", kind="i", shape=(n,),
                               low=0, high=NUM_ACTIONS - 1)
        observations, rewards, terminated, truncated, _ = self.env.step(actions.astype(np.int64))
        active = ~self.done
        rewards = np.where(active, rewards, 0.0).astype(np.float32)
        self.returns += rewards
        self.observations[active] = observations[active]
        finished = active & (terminated | truncated)
        self.done |= finished
        return [self.observations.copy(), rewards, self.done.copy()]


def evaluate(ctx, agent, seed, episodes=EVALUATION_EPISODES):
    """Greedy returns of `episodes` episodes run as one batch on the grader's environments:
    one `predict` call per step for all of them."""
    env = make_env(episodes)
    observations, _ = env.reset(seed=seed)
    done, returns = np.zeros(episodes, bool), np.zeros(episodes)
    while not done.all():
        probs = expect_probabilities(ctx.sandbox.call(agent.method("predict"), observations.astype(np.float32)),
                                     episodes)
        observations, rewards, terminated, truncated, _ = env.step(np.argmax(probs, axis=1))
        returns += np.where(done, 0.0, rewards)
        done |= terminated | truncated
    return returns


def expect_probabilities(value, batch):
    probs = expect_array(value, "Agent.predict", shape=(batch, NUM_ACTIONS), low=0.0, high=1.0)
    worst = float(np.max(np.abs(probs.sum(axis=1) - 1.0)))
    if worst > 1e-3:
        raise SubmissionError("invalid", f"Agent.predict must return a distribution per state (rows summing "
                                         f"to 1), a row sums to {1 + worst:.3f} or {1 - worst:.3f}: softmax missing?")
    return probs


def new_agent(ctx, seed):
    args = expect_handle(ctx.sandbox.call("parse_args", ["--seed", str(seed), "--threads", str(ctx.limits.threads)]),
                         "parse_args(argv)")
    return args, expect_handle(ctx.sandbox.call("Agent", OBSERVATION_SIZE, NUM_ACTIONS, args),
                               "Agent(4, 2, args)")


def check_training(index, threshold, budget=None):
    """Trains in a fresh child on the grader's episodes, then evaluates greedily here."""
    def run(ctx):
        seed = 1000 * ctx.seed + index
        ctx.fresh_sandbox()
        args, agent = new_agent(ctx, seed)
        episodes = TrainingEpisodes(ctx.rng("training", index), budget=budget, time_limit=ctx.limits.train_time)
        started, service = time.monotonic(), episodes.service()
        try:  # a soft limit: after train_time no more episodes; the child is killed 60 s later
            ctx.sandbox.call("train", agent, service, args, phase="training",
                             timeout=ctx.limits.train_time + 60, services=[service])
        except SubmissionError as failure:
            if failure.kind != "stopped":
                if failure.kind == "timeout":
                    failure.message += f" (after {episodes.started} episodes)"
                raise
        train_s = time.monotonic() - started
        episodes.flush()
        returns = evaluate(ctx, agent, seed=int(ctx.rng("evaluation", index).integers(2**31)))
        mean = float(returns.mean())
        limit = f"{budget} episodes and {ctx.limits.train_time:.0f} s" if budget else f"{ctx.limits.train_time:.0f} s"
        message = (f"seed {seed}: trained on {episodes.started} episodes in {train_s:.0f} s "
                   f"(limit {limit}{'; ' + episodes.stop_reason if episodes.stop_reason else ''}), "
                   f"greedy mean return {mean:.1f} over {len(returns)} evaluation episodes")
        if mean < threshold:
            message += f", below {threshold}"
            if len(episodes.curve) and np.mean(episodes.curve[-20:]) < threshold / 2:
                message += "; the training returns stay low too: check the loss (see the unit checks)"
        details = {"seed": seed, "training_episodes": episodes.started, "training_s": round(train_s, 2),
                   "learning_curve": episodes.curve, "evaluation_returns": returns.tolist()}
        if ctx.plots_dir:
            details["plot"] = plot_curve(ctx, index, episodes.curve, returns, threshold)
        return Outcome(mean >= threshold, message, value=mean, threshold=f">= {threshold}", details=details)
    return run


def plot_curve(ctx, index, curve, returns, threshold):
    from matplotlib.figure import Figure  # no pyplot: figures are drawn from several threads in a batch
    ctx.plots_dir.mkdir(parents=True, exist_ok=True)
    path = ctx.plots_dir / f"{ctx.assignment.name}-training-{index}.png"
    figure = Figure(figsize=(10, 3.5), layout="constrained")
    left, right = figure.subplots(1, 2, gridspec_kw={"width_ratios": [3, 1]})
    left.plot(np.arange(1, len(curve) + 1), curve, lw=0.5, alpha=0.5, label="return per training episode")
    if len(curve) >= 20:
        left.plot(np.arange(20, len(curve) + 1), np.convolve(curve, np.ones(20) / 20, "valid"), lw=1.5,
                  label="mean of the last 20")
    left.axhline(threshold, color="gray", ls="--", lw=0.8, label=f"threshold {threshold}")
    left.set(xlabel="training episode", ylabel="return", title=f"{ctx.assignment.name}: training {index}")
    left.legend(loc="lower right")
    right.hist(returns, bins=20, range=(0, 500))
    right.set(xlabel="greedy evaluation return", ylabel="episodes", title=f"mean {np.mean(returns):.1f}")
    figure.savefig(path, dpi=80)
    return str(path)


# ------------------------------------------------------------------ unit checks
def check_returns(gamma):
    def run(ctx):
        rng = ctx.rng("returns", gamma)
        rewards = rng.integers(-2, 5, size=9).astype(np.float32) if gamma < 1 else np.ones(9, np.float32)
        got = expect_array(ctx.sandbox.call("compute_returns", rewards, gamma), "compute_returns",
                           shape=(len(rewards),))
        expected = np.zeros(len(rewards))
        running = 0.0
        for t in reversed(range(len(rewards))):
            running = rewards[t] + gamma * running
            expected[t] = running
        error = float(np.max(np.abs(got - expected)))
        threshold = "<= 1e-4"
        if error <= 1e-4 * max(1, np.abs(expected).max()):
            return Outcome(True, f"returns of {len(rewards)} rewards with gamma={gamma} are correct",
                           value=error, threshold=threshold)
        hint = ""
        forward = np.array([sum(gamma ** (t - k) * rewards[k] for k in range(t + 1)) for t in range(len(rewards))])
        if np.allclose(got, forward, atol=1e-4):
            hint = "; likely bug: cumulated from the start of the episode, not reversed (G_t = r_t + gamma G_t+1)"
        elif np.allclose(got, expected[0]):
            hint = "; likely bug: every step gets the return of the whole episode, not the reward-to-go"
        elif np.allclose(got, np.cumsum(rewards[::-1])[::-1], atol=1e-4):
            hint = "; likely bug: gamma is ignored"
        return Outcome(False, f"compute_returns({rewards.tolist()}, gamma={gamma}) gave {np.round(got, 3).tolist()}, "
                              f"expected {np.round(expected, 3).tolist()}{hint}", value=error, threshold=threshold)
    return run


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


def compare_gradient(got, expected, what):
    """Cosine of the two gradients along the simplex; any positive scale is accepted (a sum or a
    mean over the batch, the learning rate absorbs it)."""
    got, expected = tangent(np.asarray(got, np.float64)), tangent(expected)
    cosine = float(np.sum(got * expected) / (np.linalg.norm(got) * np.linalg.norm(expected) + 1e-12))
    if cosine >= 0.999:
        return Outcome(True, f"{what} matches the REINFORCE gradient (cosine {cosine:.4f})",
                       value=cosine, threshold=">= 0.999")
    if cosine <= -0.999:
        hint = ("sign error: minimising this loss makes actions with high returns LESS likely; minimise the "
                "negative log-likelihood of the sampled actions weighted by the returns")
    elif abs(cosine) > 0.1:
        hint = ("the gradient is not proportional to the REINFORCE gradient: weight each sampled action's "
                "negative log-likelihood by its return")
    else:
        hint = "the loss barely depends on the probabilities of the sampled actions weighted by the returns"
    return Outcome(False, f"{what}: cosine similarity with the REINFORCE gradient is {cosine:.3f}; {hint}",
                   value=cosine, threshold=">= 0.999")


def check_policy_gradient(ctx):
    probs, actions, returns = policy_batch(ctx, "policy-gradient")
    value, (grad,) = ctx.sandbox.grad("policy_loss", [probs, actions, returns], wrt=[0])
    expect_array(value, "policy_loss", shape=())
    grad = expect_array(grad, "the gradient of policy_loss", shape=probs.shape)
    return compare_gradient(grad, reinforce_gradient(probs, actions, returns),
                            "the gradient of policy_loss(probs, actions, returns) with respect to probs")


def check_probabilities(ctx):
    args, agent = new_agent(ctx, 1)
    states = ctx.rng("states").normal(0, 0.5, size=(32, OBSERVATION_SIZE)).astype(np.float32)
    probs = expect_probabilities(ctx.sandbox.call(agent.method("predict"), states), 32)
    return Outcome(True, "Agent.predict returns a distribution over the 2 actions for each of 32 states",
                   value=float(probs.min()), threshold="rows sum to 1, entries in [0, 1]")
