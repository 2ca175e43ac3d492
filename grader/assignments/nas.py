"""Neural architecture search with an RNN controller trained by REINFORCE with baseline.

The search space and its returns come from the tabulated benchmark datasets/nas_table.json
(every architecture of a small MnasNet-like space trained once per seed, by the table builder
of the course's repository), verified by its SHA-256 before any child starts.

The submission exposes `parse_args(argv)`, `policy_loss(log_probs, returns, baseline)`,
`update_baseline(baseline, returns, decay)`, `Controller(num_decisions, num_choices, args)` with
`sample(n, rng)`, `log_probability(choices)`, `train(choices, returns)`, `greedy()`, `tokens`,
`logits` and `model` (given), and `train(controller, evaluations, args)`; its grader interface
adds `sample_with_seed`, `log_probability`, `logits`, `set_baseline`, `exported` and
`set_weights`.

Served returns. During a search the child gets a stand-in for its `Evaluations` whose
`evaluate(architectures)` runs here: for each architecture the development accuracy of one of
its trainings (a seed drawn by the grader) plus Gaussian noise of sd NOISE, as a real evaluation
is noisy; at most BUDGET architectures per training. The choices are seen through a secret
relabelling drawn per training from the grader's key (`Relabelling`: the order of the decisions
and the order of the choices of each decision permuted), so a submission that knows the table
cannot name its best architecture: the controller must learn it from the returns. (The table
ships with the handout; a submission carrying it could still try to recognise architectures
from the served returns, and the noise makes that need many evaluations: as many as learning.)

The rule. Training i runs the submission's `train` in a fresh child with args from
`parse_args(["--seed", 1000 * SEED + i, "--evaluations", CHUNK])` (SEED: the grader's --seed),
called BUDGET / CHUNK times on the same controller (a new `--seed` each time): the grader asks for
the controller's greedy architecture after every chunk, for the plot of its rank over the search.
After the last chunk the controller leaves the child as its Keras config and weights
(`exported`); the grader's own code computes the controller's greedy architecture from the weights
(an LSTM forward pass in numpy, `ControllerWeights`) after checking that they reproduce the
child's logits on secret probes, maps it back through the relabelling and ranks it by mean
development accuracy among all architectures of the table: a training passes when its rank is
at most TOP_RANK (the top TOP_PERCENT%). REQUIRED of at most TRAININGS trainings must pass; the
report also shows where random search with the same budget lands (the best served return of
BUDGET uniform samples, simulated 2000 times).

Measured with bench/nas.py of the course's repository (`--gradings 20 --all_trainings --jobs 2`,
2026-11-29/30, on the table of 243 architectures x 3 seeds, 10,000 training images each: seeds
differ by 0.010 in development accuracy (sd), the architectures' means span 0.765..0.852, and the
top 13 lie within 0.013 of the best):
- the controller. With the template's first output layer, one Dense layer of logits shared by all
  decisions, the reference's greedy architecture had median rank 11 on grader seeds 0..19 (180
  evaluations; 33 with 60, 13 with 120 and learning rate 0.01; 25, 33 and 17 with other learning
  rates and batches) and 7 over 40 gradings, with only 66% of 120 trainings within the top 5%
  (2 of 3 within the top 5% would have failed 27% of its gradings): what it learned of one
  decision's choices leaked into every other decision's. With a softmax classifier per decision (NASNet's controller; the
  template's EinsumDense), grader seeds 0..19, 60 trainings each: 180 evaluations, median rank 1
  (95% within 13); 120: median 2 (97%); 60: median 2 (90%). In force: BUDGET 120 (3 calls of 40),
  learning rate 0.01, batch 1, decay 0.9, and TOP_PERCENT 5 (TOP_RANK 13).
- the reference, grader seeds 0..39 (40 gradings, 120 trainings): ranks median 2, max 34; 116 of
  120 trainings rank within TOP_RANK = 13, so a training fails with probability 0.033 (95% upper
  bound 0.075) and a grading (2 of 3) with 3q^2(1-q) + q^3 = 0.0033 (1 in 307; upper bound
  0.016); 40 of 40 gradings passed. CPU time of a training: median 5.7 s, max 7.3 s.
- an independent correct implementation, written from the template (Gumbel-max sampling, the
  log-probabilities picked with a one-hot mask), grader seeds 100..119: ranks median 1, 59 of 60
  trainings within 13, 20 of 20 gradings passed: the rate does not hang on the reference's code.
- REINFORCE without baseline (the reference with the baseline held at 0, `--variant
  no_baseline`, grader seeds 200..219): ranks median 82; 4 of 60 trainings within 13, so such a
  grading passes with probability 0.013; 0 of 20 passed: with returns all near 0.8, every
  sampled architecture is reinforced, and the controller settles on its first samples.
- an untrained controller (`--variant untrained`, grader seeds 300..319): ranks median 122, 2 of
  60 within 13 (a random architecture: 13/243 = 0.053), so it passes a grading with probability
  0.003 to 0.008; 0 of 20 passed.
- random search with the same budget (the best served return of 120 uniform samples, of the 243)
  lands at median rank 5, in the top 13 in 82% of searches: the controller does better (median 2,
  97%), plausibly because it samples good architectures again, which averages their noise.
A full grading of the reference solution (with --plots) took 30 s on 2 idle cores.
"""

import hashlib
import sys
import time
from pathlib import Path

import numpy as np

from ..answers import expect_array, expect_handle
from ..sandbox import Service, SubmissionError
from ..spec import Assignment, Check, Limits, Outcome
from ._shared import figure, likely_bug, save, trainings_until_decided

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the course's datasets package
import datasets
from datasets.nas import load_table

assert getattr(datasets, "COURSE_DATASETS", False), f"{datasets.__file__} is not the course's datasets package"

BUDGET = 120  # evaluations (sampled architectures) per training
CHUNK = 40  # evaluations per call of train(): the greedy architecture is measured in between
TOP_PERCENT = 5  # the greedy architecture must rank in the table's top TOP_PERCENT% ...
TRAININGS, REQUIRED = 3, 2  # ... in REQUIRED of at most TRAININGS trainings
NOISE = 0.005  # sd of the Gaussian noise added to a served development accuracy
LIMITS = Limits(time=60, train_time=180, start_time=120, memory_mb=3072, threads=2)
SPACE_SIZE = 243  # architectures in the table (prepare checks it)
TOP_RANK = int(np.ceil(TOP_PERCENT / 100 * SPACE_SIZE))


def prepare():
    """The table, verified by its SHA-256, loaded before any child starts."""
    return table()


_TABLE = []


def table():
    if not _TABLE:
        loaded = load_table()
        if len(loaded.choices) != SPACE_SIZE:
            raise RuntimeError(
                f"the NAS table has {len(loaded.choices)} architectures, the grader expects {SPACE_SIZE}"
            )
        _TABLE.append(loaded)
    return _TABLE[0]


def top_rank():
    return TOP_RANK


def ranks():
    """Rank (1 = best) of every architecture of the table by mean development accuracy; ties
    share the better rank."""
    mean = table().dev_accuracy.mean(axis=1)
    return 1 + (mean[None, :] > mean[:, None]).sum(axis=1)


# ------------------------------------------------------------------ the relabelling and the served returns
class Relabelling:
    """The submission's decision t is the table's decision `order[t]`, and its choice c of that
    decision the table's choice `choices[t][c]`."""

    def __init__(self, rng, num_decisions, num_choices):
        self.order = rng.permutation(num_decisions)
        self.choices = np.array([rng.permutation(num_choices) for _ in range(num_decisions)])

    def to_table(self, architectures):
        architectures = np.asarray(architectures, np.int64)
        result = np.empty_like(architectures)
        for t, decision in enumerate(self.order):
            result[:, decision] = self.choices[t][architectures[:, t]]
        return result


class Identity(Relabelling):
    def __init__(self, num_decisions, num_choices):
        self.order = np.arange(num_decisions)
        self.choices = np.tile(np.arange(num_choices), (num_decisions, 1))


def secret_relabelling(ctx, index):
    digest = hashlib.sha256(ctx.source).hexdigest()
    t = table()
    return Relabelling(ctx.secret_rng("nas-relabelling", index, digest), t.num_decisions, t.num_choices)


class ServedEvaluations:
    """Parent side of the student's `Evaluations`: evaluate(architectures [n, T]) -> returns [n],
    each the development accuracy of one training of the architecture (a random seed) plus
    N(0, NOISE^2). Records every architecture served (in the table's labels) and its return;
    stops serving at `budget` architectures or at the deadline."""

    MAX_BATCH = 1024

    def __init__(self, rng, relabelling, budget, deadline=None):
        self.rng, self.relabelling, self.budget, self.deadline = rng, relabelling, budget, deadline
        self.served, self.returns, self.batches, self.stop_reason = [], [], [], None

    def service(self):
        return Service("evaluations", evaluate=self.evaluate)

    def stop(self, reason):
        self.stop_reason = reason
        raise Service.Stop(reason)

    def evaluate(self, architectures):
        t = table()
        architectures = expect_array(
            architectures,
            "the architectures given to evaluations.evaluate",
            kind="i",
            shape=(None, t.num_decisions),
            low=0,
            high=t.num_choices - 1,
        )
        n = len(architectures)
        if not 1 <= n <= self.MAX_BATCH:
            raise SubmissionError("invalid", f"evaluations.evaluate needs 1..{self.MAX_BATCH} architectures, got {n}")
        if len(self.served) + n > self.budget:
            self.stop(f"the budget of {self.budget} evaluations is used up")
        if self.deadline is not None and time.monotonic() > self.deadline:
            self.stop("the training time limit is reached")
        rows = [t.index(a) for a in self.relabelling.to_table(architectures)]
        seeds = self.rng.integers(t.dev_accuracy.shape[1], size=n)
        returns = (t.dev_accuracy[rows, seeds] + self.rng.normal(0, NOISE, size=n)).astype(np.float32)
        self.served.extend(rows)
        self.returns.extend(returns.tolist())
        self.batches.append((np.array(architectures), returns))
        return returns


# ------------------------------------------------------------------ the grader's own controller
class ControllerWeights:
    """The controller given in the template (Embedding, LSTM, a softmax classifier per decision),
    run by the grader in numpy from its weights alone: logits(tokens [n, T]) -> [n, T, C]. Keras'
    LSTM: kernel [E, 4U], recurrent kernel [U, 4U], bias [4U], gates in the order input, forget,
    cell, output; the output layer (EinsumDense): kernel [T, U, C] and bias [T, C], step t's
    logits h_t W[t] + b[t]."""

    def __init__(self, weights, num_decisions, num_choices):
        shapes = [np.shape(w) for w in weights]
        vocabulary = 1 + num_decisions * num_choices
        ok = len(weights) == 6 and len(shapes[0]) == 2 and shapes[0][0] == vocabulary
        if ok:
            embedding, units = shapes[0][1], shapes[2][0] if len(shapes[2]) == 2 else -1
            ok = shapes[1:] == [
                (embedding, 4 * units),
                (units, 4 * units),
                (4 * units,),
                (num_decisions, units, num_choices),
                (num_decisions, num_choices),
            ]
        if not ok:
            raise SubmissionError(
                "invalid",
                f"the controller's weights have the shapes {shapes}: the grader measures "
                "the controller of the template (Embedding of the "
                f"{vocabulary} tokens, one LSTM with return_sequences, EinsumDense of "
                f"{num_choices} logits per decision), whose weights are these six arrays",
            )
        self.weights = [np.asarray(w, np.float64) for w in weights]
        self.embedding, self.kernel, self.recurrent, self.bias, self.dense, self.dense_bias = self.weights
        self.num_decisions, self.num_choices = num_decisions, num_choices

    def logits(self, tokens):
        tokens = np.asarray(tokens, np.int64)
        n, units = len(tokens), self.recurrent.shape[0]
        h, c, out = np.zeros((n, units)), np.zeros((n, units)), []
        for t in range(tokens.shape[1]):
            z = self.embedding[tokens[:, t]] @ self.kernel + h @ self.recurrent + self.bias
            i, f, g, o = (z[:, k * units : (k + 1) * units] for k in range(4))
            c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
            h = sigmoid(o) * np.tanh(c)
            out.append(h @ self.dense[t] + self.dense_bias[t])
        return np.stack(out, axis=1)

    def greedy(self):
        """The most probable architecture, and the distribution pi(a_t | greedy a_<t) of each step."""
        choices = np.zeros((1, self.num_decisions), np.int64)
        distributions = []
        for t in range(self.num_decisions):
            probs = softmax(self.logits(tokens_of(choices, self.num_choices))[0, t])
            distributions.append(probs)
            choices[0, t] = int(np.argmax(probs))
        return choices[0], np.array(distributions)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def softmax(logits, axis=-1):
    z = np.exp(logits - np.max(logits, axis=axis, keepdims=True))
    return z / z.sum(axis=axis, keepdims=True)


def log_softmax(logits, axis=-1):
    shifted = logits - np.max(logits, axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


def tokens_of(choices, num_choices):
    """The controller's inputs for `choices` [n, T]: 0 at step 0, then 1 + (t-1) C + a_(t-1)
    (the template's Controller.tokens)."""
    choices = np.asarray(choices, np.int64)
    tokens = np.zeros(choices.shape, np.int64)
    tokens[:, 1:] = 1 + np.arange(choices.shape[1] - 1) * num_choices + choices[:, :-1]
    return tokens


# ------------------------------------------------------------------ talking to the submission
def controller_argv(seed, evaluations=BUDGET):
    return ["--seed", str(seed), "--evaluations", str(evaluations)]


def new_controller(ctx, seed, evaluations=BUDGET):
    t = table()
    args = expect_handle(ctx.sandbox.call("parse_args", controller_argv(seed, evaluations)), "parse_args(argv)")
    return args, expect_handle(
        ctx.sandbox.call("Controller", t.num_decisions, t.num_choices, args),
        f"Controller({t.num_decisions}, {t.num_choices}, args)",
    )


def child_logits(ctx, controller, tokens):
    t = table()
    return expect_array(
        ctx.sandbox.call("logits", controller, tokens.astype(np.int32)),
        "Controller.logits",
        shape=(len(tokens), t.num_decisions, t.num_choices),
    ).astype(np.float64)


def exported_weights(ctx, controller):
    """The controller's Keras config and weights as it leaves the child, validated, and the
    grader's own model of them, checked against the child's logits on secret probes."""
    t = table()
    answer = ctx.sandbox.call("exported", controller, phase="exporting the controller")
    if not (
        isinstance(answer, list)
        and len(answer) == 2
        and isinstance(answer[0], str)
        and isinstance(answer[1], list)
        and len(answer[0]) <= 1 << 18
        and len(answer[1]) <= 64
    ):
        raise SubmissionError("invalid", "exported(controller) must give [model.to_json(), model.get_weights()]")
    weights = []
    for i, w in enumerate(answer[1]):
        w = expect_array(w, f"the controller's weights[{i}]", shape=None)
        if w.dtype.kind != "f" or w.size > 1 << 22:
            raise SubmissionError("invalid", f"the controller's weights[{i}] is not a float array of a small model")
        weights.append(w)
    model = ControllerWeights(weights, t.num_decisions, t.num_choices)
    rng = ctx.secret_rng("nas-probes", ctx.shared.setdefault("probes", 0))
    ctx.shared["probes"] += 1
    probes = tokens_of(rng.integers(t.num_choices, size=(16, t.num_decisions)), t.num_choices)
    expected, got = model.logits(probes), child_logits(ctx, controller, probes)
    error = float(np.max(np.abs(expected - got)) / (1 + np.max(np.abs(got))))
    if error > 1e-3:
        raise SubmissionError(
            "invalid",
            "the controller's logits, recomputed by the grader from its exported weights "
            f"(Embedding, LSTM, EinsumDense as in the template), differ from Controller.logits by "
            f"up to {error:.3g} (relative) on secret inputs: the grader measures the "
            "model of the template, so keep Controller.model and Controller.logits as "
            "given",
        )
    return model


def sharpened(ctx, controller, seed):
    """Gives the controller random weights drawn by the grader, larger than a fresh controller's:
    sharp distributions that depend strongly on the decisions fed back (a fresh controller's are
    nearly uniform, whatever its inputs), so that feeding back the wrong input shows."""
    shapes = [w.shape for w in exported_weights(ctx, controller).weights]
    rng = ctx.rng("sharpen", seed)
    embedding, units = shapes[0][1], shapes[2][0]
    weights = [
        rng.normal(0, 1, shapes[0]),
        rng.normal(0, 1.5 / np.sqrt(embedding), shapes[1]),
        rng.normal(0, 1 / np.sqrt(units), shapes[2]),
        np.zeros(shapes[3]),
        rng.normal(0, 4 / np.sqrt(units), shapes[4]),
        rng.normal(0, 1, shapes[5]),
    ]
    weights = [w.astype(np.float32) for w in weights]
    ctx.sandbox.call("set_weights", controller, weights)
    return exported_weights(ctx, controller)


# ------------------------------------------------------------------ unit checks
def cosine_of(a, b):
    a, b = np.ravel(np.asarray(a, np.float64)), np.ravel(np.asarray(b, np.float64))
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


def check_policy_loss(ctx):
    """The gradient of policy_loss with respect to the log-probabilities must be proportional
    to -(R - b) (any positive scale: a mean or a sum), and zero with respect to the baseline."""
    rng = ctx.rng("policy-loss")
    log_probs = -rng.uniform(1, 6, size=8).astype(np.float32)
    returns = rng.uniform(0.55, 0.85, size=8).astype(np.float32)
    baseline = np.float32(0.7)
    value, (grad, into_baseline) = ctx.sandbox.grad("policy_loss", [log_probs, returns, np.array(baseline)], wrt=[0, 2])
    expect_array(value, "policy_loss", shape=())
    grad = expect_array(grad, "the gradient of policy_loss with respect to log_probs", shape=(8,))
    into_baseline = float(
        expect_array(into_baseline, "the gradient of policy_loss with respect to the baseline", shape=())
    )
    threshold = ">= 0.999"
    if abs(into_baseline) > 1e-6:
        return Outcome(
            False,
            f"the policy loss has a gradient with respect to the baseline ({into_baseline:.3g}); "
            "likely bug: the baseline is differentiated; it is a constant for the loss "
            "(tf.stop_gradient)",
            value=into_baseline,
            threshold="0",
        )
    cosine = cosine_of(grad, -(returns - baseline))
    if cosine >= 0.999:
        return Outcome(
            True,
            f"d policy_loss / d log pi is proportional to -(R - b) (cosine {cosine:.4f}), and the "
            "baseline gets no gradient",
            value=cosine,
            threshold=threshold,
        )
    bugs = {
        "sign error: minimising this loss makes architectures with returns above the baseline LESS likely": returns
        - baseline,
        "the baseline is added to the returns instead of subtracted": -(returns + baseline),
        "the baseline is not subtracted from the returns": -returns,
    }
    bug = next((name for name, g in bugs.items() if cosine_of(grad, g) >= 0.999), None)
    hint = f"likely bug: {bug}" if bug else "the loss is - mean (R - b) log pi(a; theta)"
    return Outcome(
        False,
        f"d policy_loss / d log pi has a cosine of {cosine:.3f} with -(R - b); {hint}",
        value=cosine,
        threshold=threshold,
    )


def check_update_baseline(ctx):
    rng = ctx.rng("baseline")
    returns = rng.uniform(0.5, 0.9, size=4).astype(np.float32)
    baseline, decay = 0.3, 0.8
    mean = float(np.mean(returns))
    expected = decay * baseline + (1 - decay) * mean

    def ask(b):
        got = ctx.sandbox.call("update_baseline", b, returns, decay)
        if isinstance(got, np.ndarray) and got.size == 1:
            got = float(got.reshape(()))
        if isinstance(got, bool) or not isinstance(got, (int, float)) or not np.isfinite(got):
            raise SubmissionError("invalid", f"update_baseline returned {type(got).__name__}, expected a float")
        return float(got)

    got = ask(baseline)
    threshold = f"{expected:.4f}"
    if abs(got - expected) > 1e-5:
        bug = likely_bug(
            got,
            {
                "the baseline is never updated (it returns the old baseline)": baseline,
                "the baseline is replaced by the batch's mean return, not averaged": mean,
                "decay and 1 - decay are swapped: the new returns get weight decay": (1 - decay) * baseline
                + decay * mean,
                "the returns are added to the baseline, not averaged": baseline + mean,
            },
            atol=1e-5,
        )
        return Outcome(
            False,
            f"update_baseline({baseline}, returns with mean {mean:.4f}, decay={decay}) gave "
            f"{got:.4f}, expected decay * b + (1 - decay) * mean(R) = {expected:.4f}"
            + (f"; likely bug: {bug}" if bug else ""),
            value=got,
            threshold=threshold,
        )
    first = ask(None)
    if abs(first - mean) > 1e-5:
        return Outcome(
            False,
            f"update_baseline(None, returns, decay) gave {first:.4f}: before any return the "
            f"baseline starts at the first batch's mean return, {mean:.4f}",
            value=first,
            threshold=f"{mean:.4f}",
        )
    return Outcome(
        True,
        f"update_baseline is the exponential moving average of the returns ({got:.4f}), started "
        "by the first batch's mean",
        value=got,
        threshold=threshold,
    )


def check_log_probability(ctx):
    t = table()
    _, controller = new_controller(ctx, 11)
    model = sharpened(ctx, controller, 11)
    choices = ctx.rng("log-probability").integers(t.num_choices, size=(16, t.num_decisions))
    got = expect_array(
        ctx.sandbox.call("log_probability", controller, choices.astype(np.int32)),
        "Controller.log_probability",
        shape=(16,),
    ).astype(np.float64)
    rows, steps = np.arange(16)[:, None], np.arange(t.num_decisions)[None, :]

    def summed(tokens, picked, reduce=np.sum, transform=log_softmax):
        return reduce(transform(model.logits(tokens))[rows, steps, picked], axis=1)

    tokens = tokens_of(choices, t.num_choices)
    expected = summed(tokens, choices)
    error = float(np.max(np.abs(got - expected)))
    threshold = "<= 1e-3"
    if error <= 1e-3 * (1 + np.abs(expected).max()):
        return Outcome(
            True,
            f"log pi(a; theta) of 16 architectures is the sum over the steps of log pi(a_t | a_<t) "
            f"(largest error {error:.2g})",
            value=error,
            threshold=threshold,
        )
    shifted = np.roll(choices, 1, axis=1)
    bug = likely_bug(
        got,
        {
            "the log-probability of the wrong decision: step t's distribution is paired with the choice of step t-1": lambda: (
                summed(tokens, shifted)
            ),
            "the log-probability of the wrong decision: step t's distribution is paired with the choice of step t+1": lambda: (
                summed(tokens, np.roll(choices, -1, axis=1))
            ),
            "the decisions made are not fed back: every step's input must be the previous step's decision "
            "(Controller.tokens)": lambda: summed(np.zeros_like(tokens), choices),
            "the mean over the steps instead of the sum": lambda: summed(tokens, choices, np.mean),
            "the logits are not normalised (log_softmax missing)": lambda: summed(
                tokens, choices, transform=lambda x: x
            ),
            "probabilities summed instead of log-probabilities": lambda: summed(tokens, choices, transform=softmax),
            "the log-probability of the most probable choices, not of the choices made": lambda: summed(
                tokens, np.argmax(model.logits(tokens), axis=2)
            ),
        },
        atol=1e-3,
    )
    return Outcome(
        False,
        f"Controller.log_probability differs from sum_t log pi(a_t | a_<t) by up to {error:.3g}"
        + (f"; likely bug: {bug}" if bug else ""),
        value=error,
        threshold=threshold,
    )


SAMPLES = 3000


def check_sample(ctx):
    """Many architectures sampled from a controller with sharp distributions: how often each
    choice of each step was made must match the sum of its probabilities given the choices
    made before it in each sample (within 5 standard errors), and the same seed gives the same
    architectures."""
    t = table()
    _, controller = new_controller(ctx, 12)
    model = sharpened(ctx, controller, 12)
    seed = int(ctx.rng("sample").integers(2**31))

    def sample():
        return expect_array(
            ctx.sandbox.call("sample_with_seed", controller, SAMPLES, seed),
            "Controller.sample",
            kind="i",
            shape=(SAMPLES, t.num_decisions),
            low=0,
            high=t.num_choices - 1,
        ).astype(np.int64)

    choices = sample()
    threshold = "<= 5 standard errors"

    def deviation(tokens):
        probs = softmax(model.logits(tokens))  # [n, T, C]: each step's distribution given the sample's prefix
        counts = np.stack([(choices == c).sum(axis=0) for c in range(t.num_choices)], axis=1)  # [T, C]
        expected = probs.sum(axis=0)
        sd = np.sqrt((probs * (1 - probs)).sum(axis=0)) + 1e-9
        return float(np.max(np.abs(counts - expected) / sd))

    worst = deviation(tokens_of(choices, t.num_choices))
    if worst > 5:
        greedy = np.argmax(model.logits(tokens_of(choices, t.num_choices)), axis=2)
        if np.array_equal(choices, greedy):
            hint = "it takes the most probable choice (argmax) instead of sampling"
        elif len(np.unique(choices, axis=0)) == 1:
            hint = "every sample is the same architecture: draw new random numbers for every sample and step"
        elif deviation(np.zeros_like(choices)) <= 5:
            hint = (
                "the decisions made are not fed back: the input of step t must be the choice made at step t-1 "
                "(Controller.tokens of the choices made so far)"
            )
        else:
            hint = "the frequencies do not follow the controller's distributions pi(a_t | a_<t)"
        return Outcome(
            False,
            f"Controller.sample: {SAMPLES} architectures, a choice's count deviates by {worst:.1f} "
            f"standard errors from the controller's probabilities; {hint}",
            value=worst,
            threshold=threshold,
        )
    if not np.array_equal(sample(), choices):
        return Outcome(
            False,
            "Controller.sample gave other architectures for a generator with the same seed: take "
            "every random number from the generator `rng` it is given",
            value=worst,
            threshold="same seed, same architectures",
        )
    return Outcome(
        True,
        f"Controller.sample: {SAMPLES} architectures follow pi(a_t | a_<t) step by step (largest "
        f"deviation {worst:.1f} standard errors) and are reproducible",
        value=worst,
        threshold=threshold,
    )


def check_greedy(ctx):
    """On 3 controllers with sharp distributions: greedy() must be the architecture decoded by
    taking the most probable choice at each step, fed back (the grader decodes it itself), and
    the same at every call."""
    t = table()
    for k in range(3):
        _, controller = new_controller(ctx, 20 + k)
        model = sharpened(ctx, controller, 20 + k)
        expected, _ = model.greedy()
        answers = [
            expect_array(
                ctx.sandbox.call(controller.method("greedy")),
                "Controller.greedy",
                kind="i",
                shape=(t.num_decisions,),
                low=0,
                high=t.num_choices - 1,
            )
            for _ in range(4)
        ]
        if any(not np.array_equal(a, answers[0]) for a in answers):
            return Outcome(
                False,
                f"Controller.greedy gave {len({tuple(a) for a in answers})} different architectures "
                "in 4 calls: the greedy architecture takes the most probable choice at each step, "
                "it does not sample",
                value=0,
                threshold="the most probable choices",
            )
        got = answers[0]
        if not np.array_equal(got, expected):
            independent = np.argmax(model.logits(np.zeros((1, t.num_decisions), np.int64))[0], axis=1)
            hint = (
                "the decisions made are not fed back: the input of step t must be the choice made at step t-1"
                if np.array_equal(got, independent)
                else "at every step take the most probable choice given the choices made before it"
            )
            return Outcome(
                False,
                f"Controller.greedy gave {got.tolist()}, the most probable choices step by step are "
                f"{expected.tolist()}; {hint}",
                value=k,
                threshold="the most probable choices",
            )
    return Outcome(
        True,
        "Controller.greedy decodes the most probable choice at every step, fed back (3 controllers)",
        value=3,
        threshold="the most probable choices",
    )


TRAIN_BATCH = 16
CONTROLLERS = 3
ALIGNMENT = 0.15


def log_pi(model, choices):
    """log pi(a; theta) of each row of `choices` under the grader's model of the controller."""
    log_probs = log_softmax(model.logits(tokens_of(choices, model.num_choices)))
    return log_probs[np.arange(len(choices))[:, None], np.arange(choices.shape[1]), choices].sum(axis=1)


def check_controller_train(ctx):
    """One Controller.train step on batches the grader builds, with the baseline set to b: the
    baseline must become the moving average decay * b + (1 - decay) * mean(R), and
    log pi(a; theta) of the batch must move along R - b (mean cosine over CONTROLLERS
    controllers, like REINFORCE's check of Agent.train)."""
    t = table()
    cosines, largest = [], 0.0
    for k in range(CONTROLLERS):
        args, controller = new_controller(ctx, 30 + k)
        decay = ctx.sandbox.getattr(args, "baseline_decay")
        decay = float(decay) if isinstance(decay, (int, float)) and 0 <= decay < 1 else None
        model = exported_weights(ctx, controller)
        rng = ctx.rng("controller-train", k)
        choices = rng.integers(t.num_choices, size=(TRAIN_BATCH, t.num_decisions))
        returns = rng.uniform(0.55, 0.85, size=TRAIN_BATCH).astype(np.float32)
        baseline = 0.75

        before = log_pi(model, choices)
        ctx.sandbox.call("set_baseline", controller, baseline)
        ctx.sandbox.call(controller.method("train"), choices.astype(np.int32), returns, phase="Controller.train")
        after_baseline = ctx.sandbox.getattr(controller, "baseline")
        mean = float(np.mean(returns))
        if decay is not None:
            expected = decay * baseline + (1 - decay) * mean
            if not isinstance(after_baseline, (int, float, np.ndarray)) or np.size(after_baseline) != 1:
                return Outcome(
                    False,
                    f"after Controller.train, controller.baseline is {type(after_baseline).__name__}, expected a float",
                    threshold=f"{expected:.4f}",
                )
            got = float(np.asarray(after_baseline).reshape(()))
            if abs(got - expected) > 1e-4:
                bug = likely_bug(
                    got,
                    {
                        "the baseline is never updated in Controller.train": baseline,
                        "the baseline is replaced by the batch's mean return": mean,
                    },
                    atol=1e-4,
                )
                return Outcome(
                    False,
                    f"after one Controller.train step from the baseline {baseline} (batch mean "
                    f"return {mean:.4f}, decay {decay}) controller.baseline is {got:.4f}, expected "
                    f"{expected:.4f}"
                    + (f"; likely bug: {bug}" if bug else "; update it with update_baseline after the step"),
                    value=got,
                    threshold=f"{expected:.4f}",
                )
        change = log_pi(exported_weights(ctx, controller), choices) - before
        largest = max(largest, float(np.abs(change).max()))
        cosines.append(cosine_of(change, returns - baseline))
    cosine, threshold = float(np.mean(cosines)), f">= {ALIGNMENT}"
    if largest == 0:
        return Outcome(
            False,
            "one Controller.train step did not change the controller's distributions: apply the "
            "gradient of the loss to the model's trainable variables with the optimizer",
            value=cosine,
            threshold=threshold,
        )
    if cosine >= ALIGNMENT:
        return Outcome(
            True,
            f"one Controller.train step moves log pi(a; theta) along R - b (mean cosine {cosine:.2f} "
            f"over {CONTROLLERS} batches) and updates the baseline",
            value=cosine,
            threshold=threshold,
        )
    hint = (
        "they moved AGAINST R - b: gradient ascent instead of descent, or a sign error"
        if cosine < -ALIGNMENT
        else "they barely follow R - b: is the loss computed with the baseline (controller.baseline) on the "
        "batch's choices and returns?"
    )
    if ctx.failed_units("policy_loss"):
        hint += " (policy_loss failed its own check: fix that first)"
    return Outcome(
        False,
        f"one Controller.train step with the baseline {0.75}: the change of log pi(a; theta) has a "
        f"mean cosine of {cosine:.2f} with R - b; {hint}",
        value=cosine,
        threshold=threshold,
    )


LOOP_BUDGET = 12


def check_train_loop(ctx):
    """train() with --evaluations LOOP_BUDGET on the grader's served returns (no relabelling):
    it must use the whole budget, evaluate sampled architectures, and train the controller on
    every batch served, once, in order (the grader replays the baseline's moving average over
    the batches' returns and compares it with controller.baseline)."""
    t = table()
    args, controller = new_controller(ctx, 40, LOOP_BUDGET)
    decay = ctx.sandbox.getattr(args, "baseline_decay")
    served = ServedEvaluations(ctx.rng("train-loop"), Identity(t.num_decisions, t.num_choices), LOOP_BUDGET)
    service = served.service()
    try:
        ctx.sandbox.call("train", controller, service, args, phase="train", services=[service])
    except SubmissionError as failure:
        if failure.kind != "stopped":
            raise
    threshold = f"{LOOP_BUDGET} evaluations, each batch trained on"
    if len(served.served) < LOOP_BUDGET:
        return Outcome(
            False,
            f"train() with --evaluations {LOOP_BUDGET} evaluated {len(served.served)} architectures: "
            "it must use the whole budget",
            value=len(served.served),
            threshold=threshold,
        )
    architectures = np.concatenate([a for a, _ in served.batches])
    distinct = len({tuple(a) for a in architectures})
    if distinct <= LOOP_BUDGET // 3:  # a fresh controller is nearly uniform over the space: samples rarely repeat
        return Outcome(
            False,
            f"train() evaluated only {distinct} different architectures in {LOOP_BUDGET} "
            "evaluations with a fresh controller: the architectures evaluated must be sampled from "
            "the controller (Controller.sample), not its greedy one",
            value=distinct,
            threshold=threshold,
        )
    if isinstance(decay, (int, float)):
        expected = None
        for _, returns in served.batches:
            mean = float(np.mean(returns))
            expected = mean if expected is None else decay * expected + (1 - decay) * mean
        got = ctx.sandbox.getattr(controller, "baseline")
        got = (
            float(np.asarray(got).reshape(()))
            if isinstance(got, (int, float, np.ndarray)) and np.size(got) == 1
            else None
        )
        if got is None or abs(got - expected) > 1e-4:
            hint = "call controller.train once on each batch evaluated, with the returns evaluations.evaluate gave" + (
                " (Controller.train failed its own check: fix that first)"
                if ctx.failed_units("Controller.train")
                else ""
            )
            return Outcome(
                False,
                f"after train() served {len(served.batches)} batches, controller.baseline is "
                f"{got if got is None else round(got, 4)}; training once on each batch with its "
                f"returns gives {expected:.4f}; {hint}",
                value=got,
                threshold=threshold,
            )
    return Outcome(
        True,
        f"train() used the {LOOP_BUDGET} evaluations on sampled architectures, in "
        f"{len(served.batches)} batches, and trained the controller on each batch's returns",
        value=LOOP_BUDGET,
        threshold=threshold,
    )


# ------------------------------------------------------------------ the search
def training_seed(grader_seed, index):
    return 1000 * grader_seed + index


def random_search(rng, runs=2000):
    """Ranks of the architecture random search returns (the best served return of BUDGET
    uniform samples) in `runs` simulated searches."""
    t, budget = table(), BUDGET
    n, seeds = t.dev_accuracy.shape
    rows = rng.integers(n, size=(runs, budget))
    served = t.dev_accuracy[rows, rng.integers(seeds, size=(runs, budget))] + rng.normal(0, NOISE, (runs, budget))
    return ranks()[rows[np.arange(runs), np.argmax(served, axis=1)]]


def search_once(ctx, index):
    t = table()
    seed = training_seed(ctx.seed, index)
    ctx.fresh_sandbox()
    relabelling = secret_relabelling(ctx, index)
    args, controller = new_controller(ctx, seed, CHUNK)
    decay = ctx.sandbox.getattr(args, "baseline_decay")
    deadline = time.monotonic() + ctx.limits.train_time
    served = ServedEvaluations(ctx.rng("search", index), relabelling, BUDGET, deadline)
    all_ranks, started, result = ranks(), time.monotonic(), {"index": index, "seed": seed}
    greedy_ranks, failure = [], None
    for chunk in range(BUDGET // CHUNK):
        chunk_args = expect_handle(
            ctx.sandbox.call("parse_args", controller_argv(seed + 100_000 * chunk, CHUNK)), "parse_args(argv)"
        )
        service = served.service()
        try:
            ctx.sandbox.call(
                "train",
                controller,
                service,
                chunk_args,
                phase="training",
                timeout=max(1.0, deadline - time.monotonic()) + 60,
                services=[service],
            )
        except SubmissionError as error:
            if error.kind in ("todo", "syntax", "import"):
                raise
            if error.kind != "stopped":
                failure = error
                break
        ctx.progress(f"training {index}: {len(served.served)} of {BUDGET} evaluations")
        model = exported_weights(ctx, controller)
        greedy, distributions = model.greedy()
        greedy_ranks.append((len(served.served), int(all_ranks[t.index(relabelling.to_table(greedy[None])[0])])))
        if served.stop_reason and "time" in served.stop_reason:
            break
    train_s = time.monotonic() - started
    if failure is not None:
        ctx.close()
        return dict(
            result,
            passed=False,
            rank=None,
            evaluations=len(served.served),
            error=failure.kind,
            returns=served.returns,
            message=f"training {index} (seed {seed}) failed after {len(served.served)} evaluations: {failure.message}",
        )
    architecture = relabelling.to_table(greedy[None])[0]
    rank = greedy_ranks[-1][1]
    row = t.index(architecture)
    passed = rank <= top_rank()
    message = (
        f"training {index} (seed {seed}): {len(served.served)} evaluations in {train_s:.0f} s"
        f"{'; ' + served.stop_reason if served.stop_reason and 'budget' not in served.stop_reason else ''}, "
        f"greedy architecture ranks {rank} of {len(t.choices)}{'' if passed else f' > {top_rank()}'} "
        f"(mean development accuracy {t.dev_accuracy[row].mean():.4f})"
    )
    result.update(
        passed=passed,
        rank=rank,
        architecture=t.describe(architecture),
        mean_dev_accuracy=round(float(t.dev_accuracy[row].mean()), 4),
        evaluations=len(served.served),
        training_s=round(train_s, 2),
        greedy_ranks=greedy_ranks,
        returns=[round(r, 4) for r in served.returns],
        message=message,
    )
    if ctx.plots_dir:
        result["plot"] = plot_search(ctx, index, served, decay, greedy_ranks, distributions, relabelling)
    return result


def check_search(ctx):
    results = trainings_until_decided(
        ctx, TRAININGS, REQUIRED, lambda index: search_once(ctx, index), f"rank in the top {top_rank()}"
    )
    passed = sum(r["passed"] for r in results)
    random_ranks = random_search(ctx.rng("random-search"))
    comparison = (
        f"random search with the same budget of {BUDGET} evaluations (the best served return) lands at "
        f"rank {int(np.median(random_ranks))} (median of 2000 simulated searches), in the top "
        f"{top_rank()} in {100 * np.mean(random_ranks <= top_rank()):.0f}% of them"
    )
    message = (
        f"{passed} of {len(results)} trainings found an architecture in the top {TOP_PERCENT}% (rank <= "
        f"{top_rank()} of {len(table().choices)} by mean development accuracy; {REQUIRED} needed): "
        + "; ".join(r["message"] for r in results)
        + "; "
        + comparison
    )
    if passed < REQUIRED:
        message += "; " + diagnosis(ctx, results)
    details = {
        "trainings": [{k: v for k, v in r.items() if k != "message"} for r in results],
        "random_search_median_rank": int(np.median(random_ranks)),
        "random_search_top_share": round(float(np.mean(random_ranks <= top_rank())), 4),
    }
    return Outcome(
        passed >= REQUIRED,
        message,
        value=passed,
        threshold=f">= {REQUIRED} trainings",
        score=min(1, passed / REQUIRED),
        details=details,
    )


def diagnosis(ctx, results):
    units = ctx.failed_units()
    if units:
        return f"look first at the unit checks that failed: {', '.join(units)}"
    checked = "every unit check passed" if ctx.unit_functions() else "(the unit checks were not run in this grading)"
    failed = [r for r in results if not r["passed"] and r.get("returns")]
    if not failed:
        return checked
    rises = [float(np.mean(r["returns"][-20:]) - np.mean(r["returns"][:20])) for r in failed]
    return (
        f"{checked}; in the failed trainings the mean served return of the last 20 evaluations minus that of the "
        f"first 20 is {', '.join(f'{x:+.3f}' for x in rises)}: "
        + (
            "the controller did not learn: look at the training loop `train` and the learning rate"
            if max(rises) < 0.01
            else "the controller learned, but its greedy architecture is not among the best: "
            "look at the learning rate, the baseline's decay and the batch size"
        )
    )


def plot_search(ctx, index, served, decay, greedy_ranks, distributions, relabelling):
    t = table()
    fig, (left, middle, right) = figure(15, 3.6, nrows=1, ncols=3)
    returns = np.array(served.returns)
    episodes = np.arange(1, len(returns) + 1)
    left.plot(episodes, returns, ".", ms=3, alpha=0.6, label="return (served development accuracy)")
    if isinstance(decay, (int, float)) and len(served.batches):
        baseline, curve = None, []
        for _, batch in served.batches:
            curve.extend([baseline if baseline is not None else np.nan] * len(batch))
            mean = float(np.mean(batch))
            baseline = mean if baseline is None else decay * baseline + (1 - decay) * mean
        left.plot(episodes, curve, lw=1.5, label=f"baseline b (moving average, decay {decay:g})")
    left.set(xlabel="episode (architecture evaluated)", ylabel="return", title=f"nas: training {index}")
    left.legend(loc="lower right", fontsize=8)
    x, y = zip(*greedy_ranks) if greedy_ranks else ((), ())
    middle.plot(x, y, "o-")
    middle.axhline(top_rank(), color="gray", ls="--", lw=0.8, label=f"top {TOP_PERCENT}% (rank {top_rank()})")
    middle.set(
        xlabel="evaluations",
        ylabel="rank of the greedy architecture (1: best)",
        yscale="log",
        ylim=(SPACE_SIZE * 1.1, 0.9),  # the best at the top
        title="greedy architecture over the search",
    )
    ticks = [r for r in (1, 2, 5, 10, 20, 50, 100) if r < SPACE_SIZE] + [SPACE_SIZE]
    middle.set_yticks(ticks, [str(r) for r in ticks])
    middle.minorticks_off()
    middle.legend(fontsize=8)
    # the distribution of each decision along the greedy architecture, in the table's terms
    width = 0.8 / t.num_choices
    for step, decision in enumerate(relabelling.order):
        for c in range(t.num_choices):
            value = t.decisions[decision][1][relabelling.choices[step][c]]
            middle_x = decision + (relabelling.choices[step][c] - (t.num_choices - 1) / 2) * width
            right.bar(middle_x, distributions[step][c], width=width * 0.9, color=f"C{relabelling.choices[step][c]}")
            right.text(
                middle_x, distributions[step][c] + 0.02, str(value), ha="center", va="bottom", rotation=90, fontsize=7
            )
    right.set_xticks(range(t.num_decisions), [name for name, _ in t.decisions], rotation=20, fontsize=8)
    right.set(ylim=(0, 1.35), ylabel="pi(a_t | greedy a_<t)", title="final distribution of each decision")
    return save(fig, ctx.plots_dir / f"nas-training-{index}.png", dpi=80)


SUMMARY = f"""
Unit checks first, each naming the function it is about: the gradient of policy_loss (along
-(R - b), none into the baseline), update_baseline (the moving average), Controller.log_probability
(sum over the steps of log pi(a_t | a_<t), compared with the grader's own computation from the
controller's weights), Controller.sample (the frequencies of many samples, step by step),
Controller.greedy (the most probable choice at every step, fed back), one Controller.train step
(log pi(a; theta) moves along R - b, the baseline is updated) and train() (the whole budget, sampled
architectures, every batch trained on). Then the search: training i runs train(controller,
evaluations, args) in a fresh process, {BUDGET // CHUNK} times on the same controller with args
from your parse_args(["--seed", ..., "--evaluations", "{CHUNK}"]), on returns served by the grader:
for each architecture the development accuracy of one of its trainings in the table, plus noise,
{BUDGET} evaluations in all, seen through a secret relabelling of the decisions and choices (so
only a controller that learned from the returns can pass). The grader then computes the greedy
architecture itself, from the controller's exported weights, and ranks it by mean development
accuracy among the table's {SPACE_SIZE} architectures: a training passes at a rank of at most
{TOP_RANK} (the top {TOP_PERCENT}%), and {REQUIRED} of at most {TRAININGS} trainings must pass. The report shows
where random search with the same budget lands.
"""


ASSIGNMENT = Assignment(
    name="nas",
    title="Neural architecture search: an RNN controller trained by REINFORCE with baseline",
    tensorflow=True,
    prepare=prepare,
    limits=LIMITS,
    summary=SUMMARY,
    expected_time="about 30 seconds (2 trainings; a third one only if one fails)",
    checks=(
        Check(
            "policy loss: gradient with the baseline a constant",
            check_policy_loss,
            functions=("policy_loss",),
            description="d loss / d log pi along -(R - b); no gradient into b",
        ),
        Check(
            "baseline: moving average of the returns",
            check_update_baseline,
            functions=("update_baseline",),
            description="b <- decay b + (1 - decay) mean(R)",
        ),
        Check(
            "Controller.log_probability: sum of log pi(a_t | a_<t)",
            check_log_probability,
            functions=("Controller.log_probability",),
            description="the log-probability of the choices made",
        ),
        Check(
            "Controller.sample: frequencies step by step",
            check_sample,
            functions=("Controller.sample",),
            description="samples follow pi(a_t | a_<t), decisions fed back",
        ),
        Check(
            "Controller.greedy: the most probable architecture",
            check_greedy,
            functions=("Controller.greedy",),
            description="argmax at every step, fed back",
        ),
        Check(
            "Controller.train: one step along R - b",
            check_controller_train,
            functions=("Controller.train",),
            description="log pi moves along R - b; the baseline is updated",
        ),
        Check(
            "train: the evaluation budget, every batch trained on",
            check_train_loop,
            functions=("train",),
            description="sampled architectures, evaluated and trained on",
        ),
        Check(
            "search: greedy architecture in the top",
            check_search,
            points=6,
            training=True,
            description=f"rank of the greedy architecture <= the top {TOP_PERCENT}%, in {REQUIRED} of at most "
            f"{TRAININGS} trainings",
        ),
    ),
)
