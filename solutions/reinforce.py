#!/usr/bin/env python3
"""REINFORCE (Monte-Carlo policy gradient) on CartPole-v1.

The agent plays whole batches of episodes side by side on a vectorized
environment, then performs one policy-gradient step on all the visited states:

    loss = - mean_t  G_t * log pi(a_t | s_t),    G_t = sum_k gamma^k r_{t+k}.

Run `python reinforce.py --help` to see the options.

How it is graded (from grader/assignments/reinforce.py; tools/make_templates.py writes it):
    Limits: 300 s per training run, 60 s for any other question, 4 GiB of memory, 2 compute
    thread(s), and a file of at most 128 KiB.
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
    parser.add_argument("--target_return", default=495.0, type=float,
                        help="Stop training early once the mean return of the last batches reaches this.")
    parser.add_argument("--check_episodes", default=100, type=int,
                        help="Before stopping early, also require the greedy policy's mean return on this "
                        "many episodes to reach the target (0: no such check).")
    parser.add_argument("--target_batches", default=2, type=int, help="Number of batches averaged for early stopping.")
    parser.add_argument("--seed", default=42, type=int, help="Random seed.")
    parser.add_argument("--threads", default=2, type=int, help="Maximum number of threads to use.")
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
        self._env = None  # The vector environment of the current batch.
        self._observations = None  # float32 [n, 4], the latest observation of every episode.
        self._done = None  # bool [n], whether each episode has already finished.

    def reset(self, n: int) -> np.ndarray:
        if n not in self._envs:
            self._envs[n] = gym.make_vec("CartPole-v1", num_envs=n, vectorization_mode="vector_entry_point")
        self._env = self._envs[n]
        observations, _ = self._env.reset(seed=int(self._rng.integers(2**31)))
        self._observations = np.asarray(observations, dtype=np.float32)
        self._done = np.zeros(n, dtype=bool)
        return self._observations.copy()

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        # TODO: Step all the environments at once with `self._env.step(actions)`
        # (the vector environment restarts a finished environment on its next step,
        # so ignore whatever it returns for episodes that were already done): keep the
        # old observations and give reward 0 to the finished episodes, mark the episodes
        # that have just terminated or been truncated as done, and return copies of
        # `(self._observations, rewards, self._done)`.
        ### BEGIN SOLUTION
        observations, rewards, terminated, truncated, _ = self._env.step(np.asarray(actions, dtype=np.int64))
        running = ~self._done
        self._observations = np.where(running[:, None], observations, self._observations).astype(np.float32)
        rewards = np.where(running, rewards, 0.0).astype(np.float32)
        self._done = self._done | (running & (terminated | truncated))
        return self._observations.copy(), rewards, self._done.copy()
        ### END SOLUTION


def compute_returns(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """Return the float32 array of returns G_t = sum_k gamma^k r_{t+k} of ONE episode.

    `rewards` is the float array [T] of the rewards of the episode.
    """
    # TODO: Compute the returns, e.g. backwards from the last step: G_t = r_t + gamma * G_{t+1}.
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
    # TODO: Compute the loss: pick the probabilities of the taken actions (e.g. with
    # `tf.gather(probs, actions, batch_dims=1)`), and average `- returns * log(probability)`.
    # (`keras.losses.SparseCategoricalCrossentropy` with `sample_weight=returns` computes
    # the same value, but it renormalizes `probs` by their sum, which adds a constant to
    # every row of the gradient with respect to `probs`; that constant vanishes when the
    # gradient flows back through the softmax.)
    ### BEGIN SOLUTION
    taken = tf.gather(probs, tf.cast(actions, tf.int32), batch_dims=1)
    return -tf.reduce_mean(returns * tf.math.log(tf.maximum(taken, 1e-7)))
    ### END SOLUTION


class Agent:
    def __init__(self, observation_size: int, num_actions: int, args: argparse.Namespace) -> None:
        keras.utils.set_random_seed(args.seed)
        self.rng = np.random.default_rng(args.seed)  # Use it to sample the actions.

        # TODO: Create `self.policy`, a `keras.Model` mapping a batch of observations
        # [B, observation_size] to action probabilities [B, num_actions]: one hidden
        # `Dense` layer of `args.hidden_layer_size` units (ReLU) and a softmax output
        # layer. Then create `self.optimizer`, an Adam optimizer with `args.learning_rate`.
        ### BEGIN SOLUTION
        inputs = keras.Input(shape=[observation_size])
        hidden = keras.layers.Dense(args.hidden_layer_size, activation="relu")(inputs)
        outputs = keras.layers.Dense(num_actions, activation="softmax")(hidden)
        self.policy = keras.Model(inputs=inputs, outputs=outputs)
        self.optimizer = keras.optimizers.Adam(learning_rate=args.learning_rate)
        ### END SOLUTION

        # Compile the two computations into TensorFlow graphs. The input signature
        # (with a `None` batch dimension) makes every batch size reuse the same graph
        # instead of tracing a new one.
        states_spec = tf.TensorSpec([None, observation_size], tf.float32)
        self._predict = tf.function(self._predict_step, input_signature=[states_spec])
        self._train = tf.function(self._train_step, input_signature=[
            states_spec, tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.float32)])

    def _predict_step(self, states: tf.Tensor) -> tf.Tensor:
        return self.policy(states, training=False)

    def _train_step(self, states: tf.Tensor, actions: tf.Tensor, returns: tf.Tensor) -> None:
        # TODO: Perform one gradient step: under a `tf.GradientTape`, predict the action
        # probabilities of `states` and compute `policy_loss`, then let `self.optimizer`
        # apply the gradient of the loss to `self.policy.trainable_variables`.
        ### BEGIN SOLUTION
        with tf.GradientTape() as tape:
            probs = self.policy(states, training=True)
            loss = policy_loss(probs, actions, returns)
        gradients = tape.gradient(loss, self.policy.trainable_variables)
        self.optimizer.apply_gradients(zip(gradients, self.policy.trainable_variables))
        ### END SOLUTION

    def predict(self, states: np.ndarray) -> np.ndarray:
        """Return the action probabilities, a float32 array [B, num_actions]."""
        return self._predict(np.asarray(states, dtype=np.float32)).numpy()

    def train(self, states: np.ndarray, actions: np.ndarray, returns: np.ndarray) -> None:
        """Perform one training step on a batch of states, actions and returns."""
        self._train(np.asarray(states, dtype=np.float32), np.asarray(actions, dtype=np.int32),
                    np.asarray(returns, dtype=np.float32))


def sample_actions(probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Sample one action per row of `probs` [B, A] at once, returning an int array [B]."""
    # TODO: Draw uniform numbers `rng.random(B)` and, for every row, choose the first
    # action whose cumulative probability exceeds the number (without a Python loop).
    ### BEGIN SOLUTION
    cumulative = np.cumsum(probs, axis=1)
    uniform = rng.random(len(probs)) * cumulative[:, -1]
    actions = (uniform[:, None] >= cumulative).sum(axis=1)
    return np.minimum(actions, probs.shape[1] - 1)
    ### END SOLUTION


def train(agent: Agent, episodes: Episodes, args: argparse.Namespace) -> None:
    """Train the agent on at most `args.episodes` episodes, `args.batch_size` at a time.

    Training stops earlier once the mean return of the last `args.target_batches`
    batches reaches `args.target_return` (and, if `args.check_episodes` > 0, so does the
    greedy policy on that many episodes: it is the greedy policy that gets evaluated).
    """
    recent_returns = collections.deque(maxlen=args.target_batches * args.batch_size)
    trained, batches, start = 0, 0, time.time()
    while trained < args.episodes:
        n = min(args.batch_size, args.episodes - trained)

        # TODO: Play a batch of `n` episodes: `states = episodes.reset(n)`, then, until all
        # of them are done, sample the actions of the whole batch at once (`agent.predict`
        # and `sample_actions` with `agent.rng`) and `episodes.step` them. Then compute the
        # returns of every episode with `compute_returns` (only over the steps it was still
        # running), concatenate the states, actions and returns of all the episodes and
        # call `agent.train` once. Finally append the total reward of every episode to
        # `recent_returns`.
        ### BEGIN SOLUTION
        states = episodes.reset(n)
        done = np.zeros(n, dtype=bool)
        all_states, all_actions, all_rewards, all_running = [], [], [], []
        while not done.all():
            actions = sample_actions(agent.predict(states), agent.rng)
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
        if len(recent_returns) == recent_returns.maxlen and mean_return >= args.target_return:
            if args.check_episodes:
                greedy_return = evaluate(agent, episodes, args.check_episodes).mean()
                print(f"Episodes {trained}, greedy mean return {greedy_return:.1f}", flush=True)
                if greedy_return < args.target_return:
                    recent_returns.clear()  # Train on until the target is reached again.
                    continue
            print(f"Episodes {trained}, mean return {mean_return:.1f} >= {args.target_return}, "
                  f"stopping ({time.time() - start:.1f} s)", flush=True)
            break


def evaluate(agent: Agent, episodes: Episodes, n: int) -> np.ndarray:
    """Play `n` episodes as one batch with the greedy policy; return their total rewards [n]."""
    # TODO: Like in `train`, but choose the most probable actions (argmax), and sum the
    # rewards of every episode.
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
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)

    episodes = Episodes(seed=args.seed)
    agent = Agent(4, 2, args)
    train(agent, episodes, args)

    returns = evaluate(agent, episodes, args.evaluate_episodes)
    print(f"Evaluation of {args.evaluate_episodes} episodes: mean return {returns.mean():.2f}, "
          f"std {returns.std():.2f}")


if __name__ == "__main__":
    main()
