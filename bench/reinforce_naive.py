"""A straightforward one-episode-at-a-time REINFORCE, the reference point of bench/reinforce.py.

It uses the same hyperparameters, network (built by the solution's `Agent`), returns and
loss as the solution, but plays one `gym.make("CartPole-v1")` episode at a time with one
eager model call per step, samples with `rng.choice`, and trains with an eager (not
compiled) gradient step.
"""

import time
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import tensorflow as tf


def train_naive(module, args, on_batch: Callable[[int], None] | None = None) -> dict:
    """Train `module.Agent(4, 2, args)` naively on at most `args.episodes` episodes.

    `on_batch(trained_episodes, agent)` is called before every batch (and after the last
    one); it may raise an exception to stop training. Returns the agent and the number of
    episodes trained on.
    """
    agent = module.Agent(4, 2, args)
    rng = np.random.default_rng(args.seed)
    env = gym.make("CartPole-v1")
    env.reset(seed=args.seed)
    trained = 0
    while trained < args.episodes:
        if on_batch is not None:
            on_batch(trained, agent)
        n = min(args.batch_size, args.episodes - trained)
        batch_states, batch_actions, batch_returns = [], [], []
        for _ in range(n):
            state, _ = env.reset()
            states, actions, rewards = [], [], []
            done = False
            while not done:
                probs = agent.policy(np.asarray([state], dtype=np.float32)).numpy()[0]
                action = rng.choice(len(probs), p=probs / probs.sum())
                states.append(state)
                actions.append(action)
                state, reward, terminated, truncated, _ = env.step(action)
                rewards.append(reward)
                done = terminated or truncated
            batch_states.extend(states)
            batch_actions.extend(actions)
            batch_returns.extend(module.compute_returns(np.asarray(rewards, dtype=np.float32), args.gamma))

        # An eager training step.
        states = tf.constant(np.asarray(batch_states, dtype=np.float32))
        actions = tf.constant(np.asarray(batch_actions, dtype=np.int32))
        returns = tf.constant(np.asarray(batch_returns, dtype=np.float32))
        with tf.GradientTape() as tape:
            loss = module.policy_loss(agent.policy(states, training=True), actions, returns)
        variables = agent.policy.trainable_variables
        agent.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        trained += n
    if on_batch is not None:
        on_batch(trained, agent)
    return {"agent": agent, "episodes": trained}


if __name__ == "__main__":
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[1] / "solutions" / "reinforce.py"
    spec = importlib.util.spec_from_file_location("reinforce", path)
    reinforce = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reinforce)
    args = reinforce.parse_args(["--episodes", "64"])
    start = time.time()
    result = train_naive(reinforce, args)
    print(f"{result['episodes']} naive episodes in {time.time() - start:.1f} s")
