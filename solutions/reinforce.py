#!/usr/bin/env python3
"""REINFORCE (Monte-Carlo policy gradient) on CartPole-v1.

The agent plays whole batches of episodes side by side on a vectorized
environment, then performs one policy-gradient step on all the visited states:

    loss = - mean_t  G_t * log pi(a_t | s_t),    G_t = sum_k gamma^k r_{t+k}.

Run `python reinforce.py --help` to see the options.

How it is graded (written from the grader's spec, grader/assignments/reinforce.py):
    Unit checks first, each naming the function it is about: compute_returns, the gradient
    of policy_loss, sample_actions (the frequencies of many samples), the policy's
    probabilities, one Agent.train step on a batch the grader builds (the log-probabilities
    must move in the direction of the returns), and train() and evaluate() run with the
    grader's own stand-in agent (are the actions played sampled, and does Agent.train get
    the steps played with their actions and returns?). Then the training check: training i
    runs train(agent, episodes, args) in a fresh process, with args from your
    parse_args(["--seed", str(1000 * S + i)]) (S: the grader's --seed, 42 by default), on
    the grader's CartPole-v1 episodes seen through a secret relabelling (the observation
    features permuted and sign-flipped, the actions possibly swapped; the same for the
    evaluation), so only a policy learned from those episodes can pass. After 300 CPU
    seconds no more episodes are handed out. The greedy policy (the most probable action) is
    then evaluated on 100 episodes by the grader's own code: your Agent.policy leaves your
    process as its Keras config and weights (to_json(), get_weights(); built-in layers
    only), is rebuilt by the grader, must give the probabilities Agent.predict gave on 64
    secret states, and plays each state on its own. A training passes at a mean return of at
    least 475, and 2 of at most 3 trainings must pass (the grader stops as soon as the
    outcome is known). Limits: 300 CPU seconds per training run, 60 CPU seconds for any
    other question (and at most 3 times as many seconds of wall-clock time), 4 GiB of
    memory, 2 compute thread(s), and a file of at most 128 KiB. A grading takes about 1
    minute (2 trainings; a third one only if one fails) on 2 idle cores (longer on a busy
    machine).
"""
import argparse
import collections
import time

import gymnasium as gym
import keras
import numpy as np
import tensorflow as tf


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command-line options; the defaults are tuned to solve CartPole-v1."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch_size", default=16, type=int, help="Episodes per training batch.")
    parser.add_argument("--episodes", default=4000, type=int, help="Training episodes in total (at most).")
    parser.add_argument("--evaluate_episodes", default=100, type=int, help="Greedy evaluation episodes.")
    parser.add_argument("--hidden_layer_size", default=64, type=int, help="Size of the hidden layer.")
    parser.add_argument("--learning_rate", default=0.01, type=float, help="Adam learning rate.")
    parser.add_argument("--gamma", default=1.0, type=float, help="Discount factor.")
    parser.add_argument("--check_return", default=250.0, type=float,
                        help="Check the greedy policy once the mean return of the last episodes reaches this.")
    parser.add_argument("--check_episodes", default=10, type=int, help="Episodes of a greedy check (they count).")
    parser.add_argument("--target_return", default=500.0, type=float,
                        help="Stop training once a greedy check's mean return reaches this.")
    parser.add_argument("--target_episodes", default=32, type=int,
                        help="Episodes averaged before a greedy check.")
    parser.add_argument("--seed", default=42, type=int, help="Random seed.")
    return parser.parse_args(argv)


class Episodes:
    """A batch of CartPole-v1 episodes run side by side on a gymnasium vector environment.

    - `reset(n)` starts `n` new episodes and returns their initial observations,
      a float32 array of shape [n, 4].
    - `step(actions)` takes an int array of shape [n] (one action per episode),
      advances the unfinished episodes and returns `(observations, rewards, done)`:
      float32 [n, 4], float32 [n] and bool [n]. An episode that has finished stays
      finished: from then on its reward is 0, its `done` stays True and its
      observation is not changed any more.
    """

    def __init__(self, seed: int | None = None) -> None:
        # Every `reset` draws a fresh environment seed from this generator,
        # so a given `seed` always produces the same sequence of episodes.
        self._rng = np.random.default_rng(seed)
        self._envs = {}  # One vector environment per batch size `n`, created on demand.

    def reset(self, n: int) -> np.ndarray:
        if n not in self._envs:
            self._envs[n] = gym.make_vec("CartPole-v1", num_envs=n, vectorization_mode="vector_entry_point")
        self._env = self._envs[n]
        observations, _ = self._env.reset(seed=int(self._rng.integers(2**31)))
        self._observations = np.asarray(observations, dtype=np.float32)
        self._done = np.zeros(n, dtype=bool)
        return self._observations.copy()

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # The vector environment restarts a finished episode on its next step: what it
        # returns for the episodes that were already done is ignored.
        observations, rewards, terminated, truncated, _ = self._env.step(np.asarray(actions, dtype=np.int64))
        running = ~self._done
        self._observations = np.where(running[:, None], observations, self._observations).astype(np.float32)
        rewards = np.where(running, rewards, 0.0).astype(np.float32)
        self._done = self._done | (running & (terminated | truncated))
        return self._observations.copy(), rewards, self._done.copy()


def compute_returns(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """Return the float32 array of returns G_t = sum_k gamma^k r_{t+k} of ONE episode.

    `rewards` is the float array [T] of the rewards of the episode.
    """
    # TODO: Compute the return G_t of every step t of the episode (one backward pass is
    # enough: G_t = r_t + gamma G_{t+1}).
    ### BEGIN SOLUTION
    returns = np.zeros(len(rewards), dtype=np.float64)
    following = 0.0
    for t in reversed(range(len(rewards))):
        following = rewards[t] + gamma * following
        returns[t] = following
    return returns.astype(np.float32)
    ### END SOLUTION


def policy_loss(probs: tf.Tensor, actions: tf.Tensor, returns: tf.Tensor) -> tf.Tensor:
    """The REINFORCE loss of a batch of B steps, a scalar tensor.

    - `probs`: float32 [B, A], the action probabilities predicted by the policy,
    - `actions`: int [B], the actions taken,
    - `returns`: float32 [B], the returns that followed them.

    The loss is the return-weighted negative log-likelihood of the actions,
    averaged over the batch: - mean_i returns_i * log probs[i, actions_i].
    """
    # TODO: Compute the loss: the negative log-probability of each action taken, weighted
    # by its return and averaged over the batch. Any way of computing it is fine (a sparse
    # categorical cross-entropy with the returns as sample weights is one).
    ### BEGIN SOLUTION
    taken = tf.gather(probs, tf.cast(actions, tf.int32), batch_dims=1)
    return -tf.reduce_mean(returns * tf.math.log(tf.maximum(taken, 1e-7)))
    ### END SOLUTION


class Agent:
    """The policy network pi(a | s) and its training.

    The grader measures the policy `self.policy` itself: after training it takes its
    architecture and weights (`self.policy.to_json()`, `self.policy.get_weights()`) and
    rebuilds it with its own code, so it must be a keras.Model of built-in Keras layers and
    activations (no Lambda layer, no custom layer or model class), whose answer for a state
    depends only on that state; `predict` must give its probabilities.
    """

    def __init__(self, observation_size: int, num_actions: int, args: argparse.Namespace) -> None:
        keras.utils.set_random_seed(args.seed)

        # TODO: Create the policy network `self.policy`, a `keras.Model` mapping states
        # [B, observation_size] to the probabilities of the actions [B, num_actions]: one
        # hidden layer of `args.hidden_layer_size` ReLU units and a softmax output. Create
        # its optimizer `self.optimizer`: Adam with `args.learning_rate`.
        ### BEGIN SOLUTION
        inputs = keras.Input(shape=[observation_size])
        hidden = keras.layers.Dense(args.hidden_layer_size, activation="relu")(inputs)
        outputs = keras.layers.Dense(num_actions, activation="softmax")(hidden)
        self.policy = keras.Model(inputs=inputs, outputs=outputs)
        self.optimizer = keras.optimizers.Adam(learning_rate=args.learning_rate)
        ### END SOLUTION

    def predict(self, states: np.ndarray) -> np.ndarray:
        """The action probabilities [B, num_actions] of a batch of states [B, observation_size]."""
        return self.policy(states)

    def train(self, states: np.ndarray, actions: np.ndarray, returns: np.ndarray) -> None:
        """One training step on a batch of B steps: states [B, observation_size], the actions
        taken in them [B] and the returns that followed [B]."""
        # TODO: Perform one gradient descent step of the policy on `policy_loss` of the
        # batch (a `tf.GradientTape` gives the gradient, `self.optimizer` applies it).
        ### BEGIN SOLUTION
        with tf.GradientTape() as tape:
            loss = policy_loss(self.policy(states, training=True), actions, returns)
        gradients = tape.gradient(loss, self.policy.trainable_variables)
        self.optimizer.apply_gradients(zip(gradients, self.policy.trainable_variables))
        ### END SOLUTION


def sample_actions(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sample one action per row of `probs` [B, A], returning an int array [B]."""
    # TODO: Sample the action of every row from the distribution the row gives, all rows
    # at once (no Python loop over the rows), taking every random number from `rng`.
    ### BEGIN SOLUTION
    cumulative = np.cumsum(probs, axis=1)
    uniform = rng.random(len(probs)) * cumulative[:, -1]
    actions = (uniform[:, None] >= cumulative).sum(axis=1)
    return np.minimum(actions, probs.shape[1] - 1)
    ### END SOLUTION


def train(agent: Agent, episodes: Episodes, args: argparse.Namespace) -> None:
    """Train the agent on at most `args.episodes` episodes, `args.batch_size` at a time.

    Once the mean return of the last `args.target_episodes` episodes reaches
    `args.check_return`, the greedy policy is checked on `args.check_episodes` episodes;
    training stops when the check's mean return reaches `args.target_return`.
    """
    rng = np.random.default_rng(args.seed)  # The random numbers of the sampled actions.
    recent_returns = collections.deque(maxlen=args.target_episodes)
    trained, batches, start = 0, 0, time.time()
    while trained < args.episodes:
        n = min(args.batch_size, args.episodes - trained)

        # TODO: Play a batch of `n` episodes with the current policy (every action sampled
        # from it), compute the return G_t of every step the episodes played, and perform
        # one training step of the agent on all these steps together. Append the total
        # reward of each episode to `recent_returns`.
        ### BEGIN SOLUTION
        states = episodes.reset(n)
        done = np.zeros(n, dtype=bool)
        all_states, all_actions, all_rewards, all_running = [], [], [], []
        while not done.all():
            actions = sample_actions(agent.predict(states), rng)
            all_states.append(states)
            all_actions.append(actions)
            all_running.append(~done)
            states, rewards, done = episodes.step(actions)
            all_rewards.append(rewards)
        # Time-major [T, n, ...] -> episode-major [n, T, ...].
        all_states, all_actions = np.stack(all_states, axis=1), np.stack(all_actions, axis=1)
        all_rewards, lengths = np.stack(all_rewards, axis=1), np.stack(all_running, axis=1).sum(axis=1)

        batch_states, batch_actions, batch_returns = [], [], []
        for i, length in enumerate(lengths):
            batch_states.append(all_states[i, :length])
            batch_actions.append(all_actions[i, :length])
            batch_returns.append(compute_returns(all_rewards[i, :length], args.gamma))
            recent_returns.append(all_rewards[i, :length].sum())
        agent.train(np.concatenate(batch_states), np.concatenate(batch_actions), np.concatenate(batch_returns))
        ### END SOLUTION

        trained += n
        batches += 1
        mean_return = np.mean(recent_returns)
        if batches % 10 == 0 or trained >= args.episodes:
            print(f"Episodes {trained}, mean return of the last {len(recent_returns)} episodes "
                  f"{mean_return:.1f}, {time.time() - start:.1f} s", flush=True)
        if len(recent_returns) == recent_returns.maxlen and mean_return >= args.check_return:
            # The policy that is graded is the greedy one: check it on a few episodes (which
            # count as training episodes) and stop as soon as it is good enough.
            greedy = evaluate(agent, episodes, args.check_episodes)
            trained += args.check_episodes
            print(f"Episodes {trained}, greedy check: mean return {greedy.mean():.1f} over "
                  f"{args.check_episodes} episodes ({time.time() - start:.1f} s)", flush=True)
            if greedy.mean() >= args.target_return:
                break
            recent_returns.clear()  # the next check after as many new episodes


def evaluate(agent: Agent, episodes: Episodes, n: int) -> np.ndarray:
    """Play `n` episodes as one batch with the greedy policy; return their total rewards [n]."""
    # TODO: Play the `n` episodes choosing in every state the most probable action of the
    # policy, and return the total reward of each episode.
    ### BEGIN SOLUTION
    states = episodes.reset(n)
    done = np.zeros(n, dtype=bool)
    returns = np.zeros(n, dtype=np.float32)
    while not done.all():
        actions = np.argmax(agent.predict(states), axis=1)
        states, rewards, done = episodes.step(actions)
        returns += rewards
    return returns
    ### END SOLUTION


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    episodes = Episodes(seed=args.seed)
    agent = Agent(4, 2, args)
    train(agent, episodes, args)

    returns = evaluate(agent, episodes, args.evaluate_episodes)
    print(f"Evaluation of {args.evaluate_episodes} episodes: mean return {returns.mean():.2f}, "
          f"std {returns.std():.2f}")


# ======================================================================================
# Grader interface: what the grader calls. You need not read or change anything below.
# ======================================================================================
def compiled(method):
    """`method` of the Agent compiled into one TensorFlow graph for batches of every size
    (traced at its first call), taking numpy arrays and returning numpy arrays. The agent
    works the same without it, only slower."""
    import functools

    @functools.wraps(method)
    def wrapper(self, *arrays):
        arrays = [np.asarray(a, np.float32 if np.asarray(a).dtype.kind == "f" else np.int32) for a in arrays]
        graphs = self.__dict__.setdefault("_graphs", {})
        if method.__name__ not in graphs:
            signature = [tf.TensorSpec([None, *a.shape[1:]], tf.as_dtype(a.dtype)) for a in arrays]
            graphs[method.__name__] = tf.function(method.__get__(self), input_signature=signature,
                                                  autograph=False)  # errors show the student's own line
        result = graphs[method.__name__](*arrays)
        return None if result is None else tf.nest.map_structure(lambda t: t.numpy(), result)
    return wrapper


Agent.predict = compiled(Agent.predict)
Agent.train = compiled(Agent.train)


def sample_with_seed(probs: np.ndarray, seed: int) -> np.ndarray:
    """`sample_actions` with a generator of this seed (a generator cannot cross to the grader)."""
    return sample_actions(probs, np.random.default_rng(seed))


if __name__ == "__main__":
    main()
