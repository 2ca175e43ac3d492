#!/usr/bin/env python3
"""Multi-armed bandits: an epsilon-greedy agent on the 10-armed testbed.

The testbed (Sutton & Barto, section 2.3): each arm a has a true value q*(a) drawn from
N(0, 1); pulling it gives a reward drawn from N(q*(a), 1). An episode is `episode_length`
pulls of a fresh testbed. The agent keeps an estimate Q(a) of every arm's value, starting
at `initial`, and

- selects actions epsilon-greedily: with probability epsilon a uniformly random arm (any of
  them, the greedy one included), otherwise a greedy arm (the first one with the largest Q);
- updates the estimate of the pulled arm towards the reward:
      Q(a) <- Q(a) + alpha_n * (R - Q(a)),
  where alpha_n = 1/N(a) (sample averaging, N(a) counting this pull too) when alpha == 0,
  and alpha_n = alpha (a constant step size) otherwise.

To be fast, one Agent plays many independent episodes at once: its estimates have shape
[episodes, bandits] and it picks one action per episode at every step (numpy, no loops
over episodes).

Run as a script to see how a configuration does, e.g.
    python bandits.py --epsilon 0.1
    python bandits.py --epsilon 0 --initial 1 --alpha 0.15

How it is graded (from grader/assignments/bandits.py; tools/make_templates.py writes it):
    Limits: 30 s per question, 1 GiB of memory, 1 compute thread(s), and a file of at most
    128 KiB.
"""
import argparse

import numpy as np


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--bandits", default=10, type=int, help="Number of arms.")
    parser.add_argument("--episodes", default=100, type=int, help="Number of episodes.")
    parser.add_argument("--episode_length", default=1000, type=int, help="Pulls per episode.")
    parser.add_argument("--epsilon", default=0.1, type=float, help="Exploration probability.")
    parser.add_argument("--alpha", default=0, type=float, help="Step size; 0 means sample averaging.")
    parser.add_argument("--initial", default=0, type=float, help="Initial value estimates.")
    parser.add_argument("--seed", default=42, type=int, help="Random seed.")
    return parser.parse_args(argv)


class Testbed:
    """`episodes` independent k-armed testbeds, one per episode, played side by side."""

    def __init__(self, bandits, episodes, seed):
        self.rng = np.random.default_rng(seed)
        self.values = self.rng.normal(0.0, 1.0, size=[episodes, bandits])  # q*(a) for each episode

    def step(self, actions):
        """Rewards for one action per episode (an int array of shape [episodes])."""
        means = self.values[np.arange(len(actions)), actions]
        return self.rng.normal(means, 1.0)


class Agent:
    """An epsilon-greedy agent playing `episodes` episodes at once."""

    def __init__(self, bandits, episodes, epsilon, alpha, initial, seed):
        self.bandits, self.episodes = bandits, episodes
        self.epsilon, self.alpha = epsilon, alpha
        self.rng = np.random.default_rng(seed)  # use only this generator for random choices
        self.estimates = np.full([episodes, bandits], initial, dtype=np.float64)  # Q(a) per episode
        self.counts = np.zeros([episodes, bandits], dtype=np.int64)               # N(a) per episode

    def select_actions(self):
        """Returns an int array of shape [episodes]: the arm pulled in each episode."""
        # TODO: choose the greedy arm (np.argmax picks the first of the largest estimates) in
        # each episode, but with probability epsilon a uniformly random arm instead.
        raise NotImplementedError("TODO: Agent.select_actions")

    def update(self, actions, rewards):
        """Updates the estimates of the pulled arms; actions and rewards have shape [episodes]."""
        # TODO: increase the count of each pulled arm, then move its estimate towards the
        # reward with step size 1/N(a) if alpha == 0 (sample averaging), otherwise alpha.
        raise NotImplementedError("TODO: Agent.update")


def run(args):
    """Plays args.episodes episodes; returns the average reward of each episode."""
    testbed = Testbed(args.bandits, args.episodes, args.seed)
    agent = Agent(args.bandits, args.episodes, args.epsilon, args.alpha, args.initial, args.seed + 1)
    total = np.zeros(args.episodes)
    for _ in range(args.episode_length):
        actions = agent.select_actions()
        rewards = testbed.step(actions)
        agent.update(actions, rewards)
        total += rewards
    return total / args.episode_length


def main(argv=None):
    args = parse_args(argv)
    averages = run(args)
    print(f"Average reward per episode: {averages.mean():.2f} ± {averages.std():.2f} "
          f"over {args.episodes} episodes")


if __name__ == "__main__":
    main()
