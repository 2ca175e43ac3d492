#!/usr/bin/env python3
"""Multi-armed bandits: an epsilon-greedy agent on the 10-armed testbed.

The testbed (Sutton & Barto, section 2.3): each arm a has a true value q*(a) drawn from
N(0, 1); pulling it gives a reward drawn from N(q*(a), 1). An episode is `episode_length`
pulls of a fresh testbed. The agent keeps an estimate Q(a) of every arm's value, starting
from the initial estimate Q_1(a) = `initial` (optimistic initial values when it is above the
arms' values, section 2.6), chooses its actions epsilon-greedily (section 2.2) and updates
the estimate of the arm it pulled incrementally (sections 2.4 and 2.5): a sample average
(`--alpha 0`) or an exponential recency-weighted average with a constant step size alpha.

To be fast, one Agent plays many independent episodes at once: its estimates have shape
[episodes, bandits] and it picks one action per episode at every step (numpy, no loops
over episodes).

Run as a script to see how a configuration does, e.g.
    python bandits.py --epsilon 0.1
    python bandits.py --epsilon 0 --initial 1 --alpha 0.15

How it is graded (written from the grader's spec, grader/assignments/bandits.py):
    Unit checks, 1 point each, each naming the function it checks: Agent.update, after 6
    steps of 8 episodes, must give the estimates of the incremental sample average (alpha 0,
    initial 2) and of the constant step size (alpha 0.25, initial 1) to within 1e-5;
    Agent.select_actions, on estimates the grader sets (set_estimates), must pick the greedy
    arm every time with epsilon 0 (5 x 64 choices), and with epsilon 0.2 a non-greedy arm in
    18.0% ± 1.4% of 20000 choices (epsilon x 9/10: the random arm may be the greedy one),
    spread uniformly over the other arms (chi-square at most 50). Then 3 testbed
    configurations, 2 points each: the grader's own 10-armed testbed, 2000 episodes of 1000
    steps, whose mean reward per step must lie within the tolerance of the reference
    solution's mean over 20000 episodes: epsilon 0.1, sample averages: 1.306 ± 0.064;
    epsilon 0, optimistic initial estimates 1, alpha 0.15: 1.454 ± 0.071; epsilon 0.1, alpha
    0.15: 1.285 ± 0.061. Each tolerance is 5 standard errors of the difference between the
    two means (the average reward of an episode has a standard deviation of about 0.56
    across episodes), so a correct agent fails a grading with a probability of about 2e-6.
    Limits: 30 CPU seconds per question (and at most 3 times as many seconds of wall-clock
    time), 1 GiB of memory, 1 compute thread(s), and a file of at most 128 KiB. A grading
    takes about 4 seconds on 2 idle cores (longer on a busy machine).
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
        self.estimates = np.full([episodes, bandits], initial, dtype=np.float64)  # Q(a), from Q_1(a) = initial
        self.counts = np.zeros([episodes, bandits], dtype=np.int64)               # N(a): rewards seen per arm

    def select_actions(self):
        """Returns an int array of shape [episodes]: the arm A_t pulled in each episode."""
        # TODO: epsilon-greedy action selection, independently in every episode: with
        # probability 1 - epsilon exploit, A_t = argmax_a Q_t(a) (ties broken arbitrarily), and
        # with probability epsilon explore: an arm drawn uniformly from all k arms, so that the
        # greedy arm may be drawn too.
        ### BEGIN SOLUTION
        actions = np.argmax(self.estimates, axis=1)
        explore = self.rng.uniform(size=self.episodes) < self.epsilon
        actions[explore] = self.rng.integers(self.bandits, size=np.count_nonzero(explore))
        return actions
        ### END SOLUTION

    def update(self, actions, rewards):
        """Learns from one step: in episode i, arm actions[i] gave the reward rewards[i] (shape [episodes])."""
        # TODO: the incremental update of the pulled arm's estimate (the other arms keep theirs):
        #     Q_{n+1} = Q_n + alpha_n (R_n - Q_n)      after that arm's n-th reward R_n,
        # with alpha_n = 1/n when self.alpha == 0, which makes Q_{n+1} the sample average of
        # R_1, ..., R_n, and the constant step size alpha_n = self.alpha otherwise (a weighted
        # average that forgets old rewards and the initial estimate Q_1 exponentially).
        ### BEGIN SOLUTION
        episodes = np.arange(self.episodes)
        self.counts[episodes, actions] += 1
        step = 1 / self.counts[episodes, actions] if self.alpha == 0 else self.alpha
        self.estimates[episodes, actions] += step * (rewards - self.estimates[episodes, actions])
        ### END SOLUTION


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


# ======================================================================================
# Grader interface: what the grader calls. You need not read or change anything below.
# ======================================================================================
def set_estimates(agent, estimates):
    """Gives `agent` the estimates Q(a) [episodes, bandits] (the grader's checks of
    select_actions, so that they do not depend on update)."""
    agent.estimates[...] = estimates


if __name__ == "__main__":
    main()
