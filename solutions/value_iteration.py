#!/usr/bin/env python3
"""Value iteration on FrozenLake-v1: the optimal state values v* and a greedy policy.

A Markov decision process (MDP) is given by its dynamics p(s', r | s, a). gymnasium's
FrozenLake-v1 publishes them as `env.unwrapped.P`: P[s][a] is the list of the outcomes of
taking action a in state s, each a tuple (probability, next_state, reward, terminated). A next
state may appear in several outcomes of one action (on the slippery lake, sliding into a wall
leaves the agent where it was): their probabilities add up. An episode ends when an outcome has
`terminated` True: the agent fell into a hole (H, reward 0) or reached the goal (G, reward 1).
Nothing follows a terminal state, so its value is 0.

The action-value function of a policy, q_pi(s, a), is the expected return after taking action a
in state s and following pi afterwards; the optimal value functions v*(s) = max_pi v_pi(s) and
q*(s, a) = max_pi q_pi(s, a) satisfy the Bellman optimality equation

    v*(s) = max_a q*(s, a),    q*(s, a) = sum_{s', r} p(s', r | s, a) [r + gamma v*(s')].

Value iteration turns the equation into an update. Starting from v_0 = 0, each sweep backs up
every state from the previous values v_k (a synchronous backup: v_k stays as it is during the
sweep, and the sweep produces a new function v_{k+1}):

    v_{k+1}(s) = max_a sum_{s', r} p(s', r | s, a) [r + gamma v_k(s')]    for every state s.

(Sutton & Barto's pseudocode updates v in place, state after state, which converges to v* too;
this assignment follows the definition above: a sweep computes all of v_{k+1} from v_k.)

The backup is a gamma-contraction, so v_k converges to v*; the sweeps stop once the largest
change max_s |v_{k+1}(s) - v_k(s)| is smaller than a tolerance theta. A policy that is greedy
with respect to the action values computed from the final values, pi(s) = argmax_a q(s, a), is
then optimal (or within a bound that shrinks with theta).

Run as a script to see the values and the policy on the map, and how often the policy reaches
the goal in real episodes, e.g.
    python value_iteration.py --map 4x4
    python value_iteration.py --map 8x8 --slippery

How it is graded (written from the grader's spec, grader/assignments/value_iteration.py):
    Unit checks, 1 point each, on a random 6x6 slippery FrozenLake map with random values v
    at every state (terminal ones included) and gamma 0.9: q_values for every state, and one
    sweep (a new array from v alone), must match the grader's Bellman backups to within
    1e-6; greedy_policy must pick an action with the largest q(s, a) in every state;
    value_iteration with theta 1e-6 must return values that satisfy its stopping rule: one
    more sweep changes no value by theta or more. Then 4 maps, 2 points each: FrozenLake 4x4
    (gamma 0.9, theta 1e-8); FrozenLake 4x4 slippery (gamma 0.99, theta 1e-8); FrozenLake
    8x8 (gamma 0.9, theta 1e-8); FrozenLake 8x8 slippery (gamma 0.99, theta 1e-8). On each,
    value_iteration's v must satisfy the stopping rule and be within theta / (1 - gamma) of
    the grader's v*, the policy greedy_policy computes from it must lose at most 2 gamma
    theta / (1 - gamma)^2 of value at any state (exact policy evaluation), and in the
    grader's own episodes (1000 on the slippery maps, 10 on the others) reach the goal at
    least as often as an optimal policy's exact success probability minus 5 standard errors
    (a correct submission fails a grading with a probability of about 1e-6). Each failure
    names the function and, where it recognises it, the likely bug. Limits: 60 CPU seconds
    per question (and at most 3 times as many seconds of wall-clock time), 1 GiB of memory,
    1 compute thread(s), and a file of at most 128 KiB. A grading takes about 2 seconds on 2
    idle cores (longer on a busy machine).
"""
import argparse

import gymnasium as gym
import numpy as np

ARROWS = "←↓→↑"  # FrozenLake's actions: 0 left, 1 down, 2 right, 3 up


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--map", default="4x4", choices=["4x4", "8x8"], help="FrozenLake's map.")
    parser.add_argument("--slippery", action="store_true", help="The slippery lake (moves go astray).")
    parser.add_argument("--gamma", default=0.99, type=float, help="Discount factor.")
    parser.add_argument("--theta", default=1e-8, type=float, help="Stop when no value changes by theta or more.")
    parser.add_argument("--episodes", default=1000, type=int, help="Episodes played with the greedy policy.")
    parser.add_argument("--seed", default=42, type=int, help="Random seed of the episodes.")
    return parser.parse_args(argv)


def q_values(P, v, state, gamma):
    """The action values of one state s computed from the state values v (a float array
    [states]): q(s, a) = sum_{s', r} p(s', r | s, a) [r + gamma v(s')] for every action a.
    Returns a float array [actions]."""
    # TODO: the expected one-step return of each action of `state` under the dynamics P: the
    # outcomes' rewards plus the discounted value of where they lead, weighted by their
    # probabilities. An outcome that ends the episode leads to a terminal state, whose value
    # is 0 whatever v says.
    ### BEGIN SOLUTION
    q = np.zeros(len(P[state]))
    for action, outcomes in P[state].items():
        for probability, next_state, reward, terminated in outcomes:
            q[action] += probability * (reward + (0.0 if terminated else gamma * v[next_state]))
    return q
    ### END SOLUTION


def sweep(P, v, gamma):
    """One sweep of value iteration, from v = v_k: returns v_{k+1}, a new float array [states]
    with v_{k+1}(s) = max_a q_k(s, a) for every state s. Does not change v."""
    # TODO: the Bellman optimality backup of every state, each computed from v_k alone: the
    # states backed up later in the sweep must still see v_k, not the values already updated.
    ### BEGIN SOLUTION
    return np.array([np.max(q_values(P, v, state, gamma)) for state in range(len(P))])
    ### END SOLUTION


def value_iteration(P, gamma, theta):
    """v* by value iteration from v_0 = 0, sweeping until max_s |v_{k+1}(s) - v_k(s)| < theta.
    Returns the last values v_{k+1}, a float array [states]."""
    # TODO: repeat sweeps, each from the values of the previous one, and stop as soon as the
    # largest change of a state's value in a sweep is smaller than theta.
    ### BEGIN SOLUTION
    v = np.zeros(len(P))
    while True:
        new_v = sweep(P, v, gamma)
        if np.max(np.abs(new_v - v)) < theta:
            return new_v
        v = new_v
    ### END SOLUTION


def greedy_policy(P, v, gamma):
    """The policy that is greedy with respect to the action values computed from v:
    pi(s) = argmax_a q(s, a), the first best action on ties. Returns an int array [states]."""
    # TODO: the best action of every state, according to its action values.
    ### BEGIN SOLUTION
    return np.array([np.argmax(q_values(P, v, state, gamma)) for state in range(len(P))])
    ### END SOLUTION


def success_rate(env, policy, episodes, seed):
    """The fraction of `episodes` episodes of `env` in which `policy` reaches the goal."""
    successes = 0
    for episode in range(episodes):
        state, _ = env.reset(seed=seed + episode)
        done = False
        while not done:
            state, reward, terminated, truncated, _ = env.step(int(policy[state]))
            done = terminated or truncated
        successes += reward == 1
    return successes / episodes


def show(desc, v, policy):
    """Prints the values and the policy on the map (holes H and the goal G have no action)."""
    rows, columns = desc.shape
    for row in range(rows):
        cells = []
        for column in range(columns):
            state, letter = row * columns + column, desc[row, column].decode()
            action = letter if letter in "HG" else ARROWS[policy[state]]
            cells.append(f"{letter} {v[state]:.3f} {action}")
        print("   ".join(cells))


def main(argv=None):
    args = parse_args(argv)
    env = gym.make("FrozenLake-v1", map_name=args.map, is_slippery=args.slippery)
    P = env.unwrapped.P
    v = value_iteration(P, args.gamma, args.theta)
    policy = greedy_policy(P, v, args.gamma)
    show(env.unwrapped.desc, v, policy)
    rate = success_rate(env, policy, args.episodes, args.seed)
    print(f"The greedy policy reaches the goal in {rate:.1%} of {args.episodes} episodes "
          f"(at most {env.spec.max_episode_steps} steps each).")


if __name__ == "__main__":
    main()
