"""VAE on MNIST, graded on the test-set negative ELBO computed by the grader.

The submission exposes `parse_args(argv)`, the units `sample_z(mean, sd)`,
`reconstruction_loss(images, logits)`, `latent_loss(mean, sd)`, `build_encoder(args)` and
`build_decoder(args)`, a keras.Model `VAE(args)` (attributes `encoder` and `decoder`, its own
`train_step`, keras's `get_weights()`/`set_weights()`), `train(vae, images, args)`, and in its
grader interface `encode(encoder, images) -> (mean, sd)` and `decode(decoder, z) -> logits`.

Every unit is checked on its own, naming it (a unit's unfinished TODO blocks only the checks
that need it, which say so). Then each configuration (a latent dimension) is trained and
measured in three processes, so that the model that is measured has never seen a test image:

1. training: a new process gets only the training images and trains; the grader takes the
   trained encoder and decoder out as Keras configs and weights (grader/measured.py: built-in
   layers only, finite float arrays, at most MAX_WEIGHTS_MB each) and asks the submission's
   `encode`/`decode` about PROBES training images it picked (secretly) and codes sampled from them;
2. encoding: a measurement sandbox (the grader's code, never the submission) rebuilds the
   encoder, must reproduce the trained model's answers on the probes, then encodes the 10,000
   test images, sent in a secret order, each image on its own;
3. decoding: another measurement sandbox rebuilds the decoder, reproduces the probes' logits,
   and decodes the latent codes the grader sampled from Q(z|x) (IW_SAMPLES per image) with noise
   from its key (`ctx.secret_rng`): it never receives a test image, and no code of the
   submission runs there.

From the answers the grader computes the reconstruction term (the first sample of z per image),
the analytic KL term and an importance-weighted estimate of log p(x).

Thresholds (nats per image, MNIST test set, Bernoulli likelihood of the targets x/255): the
reference solution with its default hyperparameters measured REFERENCE (the instructors' benchmark);
a submission passes a configuration with a test -ELBO of at most THRESHOLD, the reference plus a
margin of a few nats, which covers differences between seeds (about 1 nat) and reasonable
choices of architecture, but not a missing KL term or a broken decoder (tens of nats).

Measured with the grader's measuring (`python bench/vae.py --seed 42 [--solution FILE]` in the course's repository,
2026-11-29,
encoder and decoder rebuilt by grader/measured.py, secret noise): the reference reaches 145.26 (z_dim 2) and 103.66 (z_dim 100); before issue 15, 144.36/144.21 and 103.15/102.79 with seeds 42/7; thresholds 150 and 107. Variants a student might write: sd = exp(log-variance / 2) (Rescaling and an exponential Activation): 144.09 and 103.83 (z_dim 2 and 100); hidden layers of 256 units: 146.98 and 104.93 (z_dim 2 and 100).
Over gradings of the reference (the grader's `--seed S`, S = 1, 2, 3, 4, and 42 above, on
2026-11-29, after issue 15): z_dim 2: 145.40, 144.15, 144.88, 145.33, 145.26 (mean 145.0, sd 0.52;
the threshold 150 lies 9.6 sds above); z_dim 100: 103.11, 103.53, 103.33, 102.92, 103.66 (mean
103.3, sd 0.30; 107 lies 12 sds above): 5 of 5 gradings pass, and a false failure would need a
training 10 sds off its mean (a normal tail far below 1 in 20).

Plots (--plots DIR): DIR/vae-z{Z}.png per trained configuration, from the decoding process:
images decoded from codes drawn from the prior, test images above their reconstructions
(decoded from the mean of Q(z|x)), and for a 2-D latent space the decoded grid of codes at the
normal distribution's quantiles. Pixels are the Bernoulli means, sigmoid(logits).
"""

import functools
import math
import sys
import time
from pathlib import Path
from statistics import NormalDist

import numpy as np

from .. import measured
from ..answers import expect_array, expect_handle
from ..sandbox import SubmissionError
from ..spec import Assignment, Check, Limits, Outcome
from ._shared import figure, likely_bug, save

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the course's datasets package
import datasets  # noqa: E402

assert getattr(datasets, "COURSE_DATASETS", False), f"{datasets.__file__} is not the course's datasets package"

# z_dim -> (reference test -ELBO, threshold), nats per image; the reference measured by the instructors' benchmark
CONFIGS = {2: (144.3, 150.0), 100: (103.0, 107.0)}
IW_SAMPLES = 10  # K of the importance-weighted estimate of log p(x)
EVAL_BATCH = 2000  # images (or codes) per question
PROBES = 64  # training images whose answers the rebuilt model must reproduce
MAX_WEIGHTS_MB = 128  # the trained model's weights, all arrays together
STEP_IMAGES = 2000  # the train-step check: one epoch on this many training images
PIXELS = 28 * 28
ALL_PIXELS_HALF = PIXELS * math.log(2)  # -log P(x|z) when every logit is 0 (p = 0.5): 543.43 nats
ENCODER, DECODER, STEP = "build_encoder", "build_decoder", "VAE.train_step"
UNITS = ("sample_z", "reconstruction_loss", "latent_loss", ENCODER, DECODER)
TRAIN_IMAGES = 60_000 - datasets.DEV_SIZE

SUMMARY = (
    f"Unit checks, 1 point each, each naming the function it checks: {ENCODER} (mean and a positive sd "
    f"of Q(z|x)), {DECODER} (one logit per pixel, any real number), sample_z (z = mean + sd * epsilon, "
    f"gradients reach mean and sd), latent_loss (the analytic KL, summed over z), reconstruction_loss "
    f"(the Bernoulli -log P(x|z), summed over the pixels), and {STEP} (one epoch of train() on "
    f"{STEP_IMAGES} training images, with --epochs 1, must lower the -ELBO the grader measures on them and "
    f"change both the encoder's and the decoder's weights). Then {len(CONFIGS)} trainings, 3 points each: "
    + " and ".join(f"z_dim {z}" for z in CONFIGS)
    + f", each a VAE(args) of your parse_args defaults (the grader passes --z_dim and --seed) trained by "
    f"train() in a new process that gets only the {TRAIN_IMAGES:,} training images. The trained encoder and "
    f"decoder leave that process as their Keras configs and weights (to_json(), get_weights(): built-in "
    f"layers only, finite floats, at most {MAX_WEIGHTS_MB} MiB) and are rebuilt by the grader's own code, "
    f"which must reproduce your encode/decode answers on {PROBES} secret training images: the rebuilt "
    f"encoder encodes the 10,000 test images, the rebuilt decoder, in another process, decodes latent codes "
    f"the grader samples from Q(z|x) with its own secret noise and never sees a test image. The grader computes the "
    f"test -ELBO, reconstruction (one z per image) + analytic KL, in nats per image (and, for "
    f"information, an importance-weighted -log p(x) with {IW_SAMPLES} samples), which must be at most "
    + " and ".join(f"{threshold:g} for z_dim {z}" for z, (_, threshold) in CONFIGS.items())
    + " (the reference solution: "
    + " and ".join(f"{reference:g}" for reference, _ in CONFIGS.values())
    + "; seeds move it by about 1 nat)."
)


@functools.cache
def mnist():
    """The MNIST data set, loaded (and checked against its checksums) once, in the parent,
    before any child starts (the spec's `prepare`)."""
    return datasets.load("mnist")


# ------------------------------------------------------------------ the grader's own metrics
def bernoulli_nll(images, logits):
    """Sum over pixels of -log Bernoulli(x/255 | logits), per image (stable form)."""
    x = images.reshape(len(images), -1).astype(np.float64) / 255
    l = logits.reshape(len(logits), -1).astype(np.float64)
    return np.sum(np.maximum(l, 0) - l * x + np.log1p(np.exp(-np.abs(l))), axis=1)


def analytic_kl(mean, sd):
    """KL(N(mean, sd^2) || N(0, 1)) summed over the latent dimensions, per image."""
    mean, sd = mean.astype(np.float64), sd.astype(np.float64)
    return np.sum(0.5 * (mean**2 + sd**2 - 1) - np.log(sd), axis=1)


def log_normal(z, mean, sd):
    return np.sum(-0.5 * ((z - mean) / sd) ** 2 - np.log(sd) - 0.5 * np.log(2 * np.pi), axis=1)


# ------------------------------------------------------------------ talking to the submission
def encode(sandbox, encoder, images, z_dim):
    return expect_encoding(sandbox.call("encode", encoder, images), len(images), z_dim)


def expect_encoding(answer, n, z_dim):
    """(mean, sd) of Q(z|x) for n images, validated."""
    if not isinstance(answer, (list, tuple)) or len(answer) != 2:
        raise SubmissionError("invalid", f"the encoder ({ENCODER}) must give two outputs, [mean, sd]")
    mean = expect_array(answer[0], f"the encoder's mean ({ENCODER})", shape=(n, z_dim))
    sd = expect_array(answer[1], f"the encoder's sd ({ENCODER})", shape=(n, z_dim))
    if np.any(sd <= 0):
        raise SubmissionError(
            "invalid",
            f"{ENCODER}: the encoder gave a non-positive sd ({np.count_nonzero(sd <= 0)} "
            f"of {sd.size} values, minimum {sd.min():.3g})",
            cause="likely bug: the log-variance (or an unconstrained output) is used as the standard "
            "deviation: make it positive (e.g. exp or softplus)",
        )
    return mean.astype(np.float64), sd.astype(np.float64)


def decode(sandbox, decoder, z):
    return expect_array(
        sandbox.call("decode", decoder, z.astype(np.float32)), f"the decoder ({DECODER})", shape=(len(z), 28, 28, 1)
    )


def new_vae(sandbox, z_dim, seed, extra=()):
    args = expect_handle(
        sandbox.call("parse_args", ["--z_dim", str(z_dim), "--seed", str(seed), *extra]), "parse_args(argv)"
    )
    return args, expect_handle(sandbox.call("VAE", args), "VAE(args)")


def parts(sandbox, vae):
    """The handles of the VAE's encoder and decoder."""
    return (
        expect_handle(sandbox.getattr(vae, "encoder"), "VAE.encoder"),
        expect_handle(sandbox.getattr(vae, "decoder"), "VAE.decoder"),
    )


# ------------------------------------------------------------------ unit checks
def check_encoder(ctx):
    sandbox = ctx.sandbox
    args = expect_handle(sandbox.call("parse_args", ["--z_dim", "4"]), "parse_args(argv)")
    encoder = expect_handle(sandbox.call(ENCODER, args), f"{ENCODER}(args)")
    mean, sd = encode(sandbox, encoder, mnist().train.images[:64], 4)
    if np.allclose(mean, mean[:1], atol=1e-6):
        return Outcome(
            False,
            f"{ENCODER}: the mean of Q(z|x) is the same for 64 different images: does the encoder use its input?",
            value=float(np.ptp(mean)),
            threshold="depends on x",
        )
    return Outcome(
        True,
        f"{ENCODER}: mean and sd of Q(z|x) have shape (64, 4); sd is positive (min {sd.min():.3g})",
        value=float(sd.min()),
        threshold="> 0",
    )


def check_decoder(ctx):
    sandbox = ctx.sandbox
    args = expect_handle(sandbox.call("parse_args", ["--z_dim", "4"]), "parse_args(argv)")
    decoder = expect_handle(sandbox.call(DECODER, args), f"{DECODER}(args)")
    z = ctx.rng("decoder").standard_normal((64, 4))
    logits = decode(sandbox, decoder, z)
    low, high = float(logits.min()), float(logits.max())
    where = f"(untrained, on 64 codes z ~ N(0, I) its outputs lie in [{low:.3g}, {high:.3g}])"
    if low >= 0 and high <= 1:
        return Outcome(
            False,
            f"{DECODER}: the decoder outputs probabilities where logits are expected {where}; "
            "likely bug: a sigmoid on the last layer (the logit of a pixel is log(p / (1 - p)), "
            "any real number; the losses apply the sigmoid themselves)",
            value=low,
            threshold="logits of both signs",
        )
    if low >= 0:
        return Outcome(
            False,
            f"{DECODER}: the decoder's logits are never negative {where}; likely bug: an "
            "activation (ReLU?) on the last layer; a logit is any real number",
            value=low,
            threshold="logits of both signs",
        )
    if np.allclose(logits, logits[:1], atol=1e-6):
        return Outcome(
            False,
            f"{DECODER}: the decoder gives the same logits for 64 different codes z: does it use its input?",
            value=0.0,
            threshold="depends on z",
        )
    return Outcome(
        True,
        f"{DECODER}: logits of shape (64, 28, 28, 1), of both signs {where}",
        value=low,
        threshold="logits of both signs",
    )


def check_reparametrized(ctx):
    rng = ctx.rng("reparametrized")
    mean = rng.normal(0, 1, size=(2048, 8)).astype(np.float32)
    sd = rng.uniform(0.2, 2, size=(2048, 8)).astype(np.float32)
    z, (d_mean, d_sd) = ctx.sandbox.grad("sample_z", [mean, sd], wrt=[0, 1])
    z = expect_array(z, "sample_z", shape=mean.shape)
    epsilon = (z - mean) / sd
    if abs(epsilon.mean()) > 0.05 or abs(epsilon.std() - 1) > 0.05:
        return Outcome(
            False,
            f"sample_z: (z - mean) / sd should be standard normal, it has mean {epsilon.mean():.3f} "
            f"and sd {epsilon.std():.3f}: is z drawn from Normal(mean, sd)?",
            value=float(epsilon.std()),
            threshold="N(0, 1)",
        )
    again = expect_array(ctx.sandbox.call("sample_z", mean, sd), "sample_z", shape=mean.shape)
    if np.array_equal(again, z):
        return Outcome(
            False,
            "sample_z gave the same z at two calls with the same mean and sd: epsilon must be "
            "new random numbers at every call (a fixed seed, or noise drawn once and kept?)",
            value=0.0,
            threshold="new epsilon at every call",
        )
    d_mean = expect_array(d_mean, "d sample_z / d mean", shape=mean.shape)
    d_sd = expect_array(d_sd, "d sample_z / d sd", shape=sd.shape)
    error = float(max(np.max(np.abs(d_mean - 1)), np.max(np.abs(d_sd - epsilon))))
    if error > 1e-3:
        hint = (
            "no gradient reaches the encoder: z is sampled without the reparametrization trick "
            "(z = mean + sd * epsilon, without stop_gradient or numpy)"
            if np.allclose(d_mean, 0) and np.allclose(d_sd, 0)
            else "dz/dmean should be 1 and dz/dsd should be epsilon = (z - mean) / sd"
        )
        return Outcome(
            False,
            f"sample_z: gradients of z with respect to mean and sd are wrong: {hint}",
            value=error,
            threshold="<= 1e-3",
        )
    return Outcome(
        True,
        "sample_z: z = mean + sd * epsilon, gradients reach the mean (1) and the sd (epsilon)",
        value=error,
        threshold="<= 1e-3",
    )


def check_latent_loss(ctx):
    rng = ctx.rng("kl")
    mean = rng.normal(0, 1, size=(32, 6)).astype(np.float32)
    sd = rng.uniform(0.3, 2.0, size=(32, 6)).astype(np.float32)
    got = expect_array(ctx.sandbox.call("latent_loss", mean, sd), "latent_loss", shape=(32,))
    expected = analytic_kl(mean, sd)
    error = float(np.max(np.abs(got - expected)))
    if error <= 1e-3 * max(1, np.abs(expected).max()):
        return Outcome(
            True, "latent_loss is the analytic KL(Q(z|x) || N(0, I)) summed over z", value=error, threshold="<= 1e-3"
        )
    hint = likely_bug(
        got,
        {
            "the KL term is missing (zero)": np.zeros_like(expected),
            "the KL is averaged over the latent dimensions instead of summed": expected / mean.shape[1],
            "the sd is used as a variance": lambda: analytic_kl(mean, np.sqrt(sd)),
            "the sd is used as a log-variance": lambda: analytic_kl(mean, np.exp(sd / 2)),
            "-log sd where the formula has -log sd^2 (KL = 1/2 (mean^2 + sd^2 - 1 - log sd^2))": lambda: (
                expected + np.sum(np.log(sd), axis=1) / 2
            ),
            "-log sd^2 without the 1/2 (KL = 1/2 (mean^2 + sd^2 - 1 - log sd^2))": lambda: (
                expected - np.sum(np.log(sd), axis=1)
            ),
            "the 1/2 is missing (KL = 1/2 (mean^2 + sd^2 - 1 - log sd^2))": 2 * expected,
            "the sign is reversed (a KL divergence is never negative)": -expected,
        },
        atol=1e-3,
        rtol=1e-3,
        default="the KL divergence of Normal(mean, sd) from Normal(0, 1), summed over z",
    )
    return Outcome(
        False,
        f"latent_loss differs from the analytic KL by up to {error:.3g}; likely bug: {hint}",
        value=error,
        threshold="<= 1e-3",
    )


def check_reconstruction_loss(ctx):
    images = mnist().train.images[:16]
    logits = ctx.rng("logits").normal(0, 3, size=(16, 28, 28, 1)).astype(np.float32)
    got = expect_array(ctx.sandbox.call("reconstruction_loss", images, logits), "reconstruction_loss", shape=(16,))
    expected = bernoulli_nll(images, logits)
    error = float(np.max(np.abs(got - expected) / expected))
    if error <= 1e-3:
        return Outcome(
            True,
            "reconstruction_loss is -log P(x|z) summed over the 784 pixels",
            value=error,
            threshold="relative error <= 1e-3",
        )
    hint = likely_bug(
        got,
        {
            "it is a mean over the pixels, not a sum (-log P(x|z) of an image sums over its pixels)": expected / PIXELS,
            "the targets are not scaled to [0, 1] (divide the uint8 pixels by 255)": lambda: bernoulli_nll(
                images.astype(np.float64) * 255, logits
            ),
        },
        atol=1e-2,
        rtol=1e-3,
        default="the Bernoulli negative log-likelihood of the targets images/255 given the logits",
    )
    return Outcome(
        False,
        f"reconstruction_loss has relative error {error:.3g}; likely bug: {hint}",
        value=error,
        threshold="relative error <= 1e-3",
    )


def elbo_terms(sandbox, encoder, decoder, images, z_dim, rng):
    """(-ELBO, reconstruction, KL) per image, from one sample of z per image."""
    mean, sd = encode(sandbox, encoder, images, z_dim)
    z = mean + sd * rng.standard_normal(mean.shape)
    reconstruction = bernoulli_nll(images, decode(sandbox, decoder, z))
    kl = analytic_kl(mean, sd)
    return reconstruction + kl, reconstruction, kl


DIVERGED = (
    "likely bug: a sign error, so that the step climbs the -ELBO instead of descending it (the gradients "
    "applied with the wrong sign, or the latent loss subtracted from the reconstruction loss), or a "
    "learning rate far too high"
)


def check_train_step(ctx):
    """One epoch of the submission's train() on a few training images, in the first process:
    the -ELBO the grader measures on those images must drop, and both networks must change."""
    sandbox = ctx.sandbox
    images = mnist().train.images[:STEP_IMAGES]
    args, vae = new_vae(sandbox, 2, 1, extra=["--epochs", "1"])
    encoder, decoder = parts(sandbox, vae)
    before = [
        measured.expect_weights(sandbox.call(part.method("get_weights")), f"VAE.{name}.get_weights()")
        for part, name in ((encoder, "encoder"), (decoder, "decoder"))
    ]
    elbo_before = elbo_terms(sandbox, encoder, decoder, images, 2, ctx.rng("step"))[0].mean()
    sandbox.call("train", vae, images, args, phase="training", timeout=ctx.limits.train_time)
    try:
        after = [
            measured.expect_weights(sandbox.call(part.method("get_weights")), f"VAE.{name}.get_weights()")
            for part, name in ((encoder, "encoder"), (decoder, "decoder"))
        ]
        elbo_after = elbo_terms(sandbox, encoder, decoder, images, 2, ctx.rng("step"))[0].mean()
    except SubmissionError as failure:  # weights or sds that training broke: not the parts' own bug
        if failure.kind != "invalid":
            raise
        return Outcome(
            False,
            f"{STEP}: after one epoch of train() on {STEP_IMAGES} training images (-ELBO {elbo_before:.1f} nats "
            f"before), {failure.observed}: the training diverged; {DIVERGED}",
            value=float("inf"),
            threshold=f"< {-0.1 * elbo_before:.0f}",
        )
    value = float(elbo_after - elbo_before)
    seen = (
        f"one epoch of train() on {STEP_IMAGES} training images took their -ELBO (measured by the grader) "
        f"from {elbo_before:.1f} to {elbo_after:.1f} nats"
    )
    for name, old, new in (("encoder", before[0], after[0]), ("decoder", before[1], after[1])):
        if len(old) == len(new) and all(a.shape == b.shape and np.array_equal(a, b) for a, b in zip(old, new)):
            return Outcome(
                False,
                f"{STEP}: the {name}'s weights did not change in training ({seen}): the "
                f"gradient step must update the trainable variables of the encoder and of the "
                f"decoder",
                value=value,
                threshold="< 0",
            )
    if not elbo_after < 0.9 * elbo_before:
        failed = ctx.failed_units()
        if failed:
            hint = f"see the failed unit check(s) first: {', '.join(failed)}"
        elif not elbo_after <= elbo_before:
            hint = f"it rose instead: {DIVERGED}"
        else:
            hint = (
                "does train_step take a gradient DEScent step on the batch mean of reconstruction_loss + "
                "latent_loss, with z sampled from Q(z|x) (sample_z), not its mean?"
            )
        return Outcome(
            False, f"{STEP}: {seen}; it should drop: {hint}", value=value, threshold=f"< {-0.1 * elbo_before:.0f}"
        )
    return Outcome(
        True, f"{STEP}: {seen}; both networks' weights changed", value=value, threshold=f"< {-0.1 * elbo_before:.0f}"
    )


# ------------------------------------------------------------------ the trainings
def check_training(z_dim):
    reference, threshold = CONFIGS[z_dim]

    def run(ctx):
        data = mnist()
        seed = 1000 * ctx.seed + z_dim
        secret = ctx.secret_rng("vae", z_dim)
        phases = {}

        # 1. Training: this process only ever receives training images.
        t = time.monotonic()
        sandbox = ctx.fresh_sandbox()
        args, vae = new_vae(sandbox, z_dim, seed)
        ctx.progress(f"z_dim {z_dim}: training in a new process on the {len(data.train.images):,} training images")
        sandbox.call("train", vae, data.train.images, args, phase="training", timeout=ctx.limits.train_time)
        phases["training"] = time.monotonic() - t
        encoder, decoder = parts(sandbox, vae)
        encoder_model = measured.take(sandbox, encoder, "VAE.encoder", MAX_WEIGHTS_MB)
        decoder_model = measured.take(sandbox, decoder, "VAE.decoder", MAX_WEIGHTS_MB)
        probes = data.train.images[np.sort(secret.choice(len(data.train.images), PROBES, replace=False))]
        probe_mean, probe_sd = encode(sandbox, encoder, probes, z_dim)
        probe_z = probe_mean + probe_sd * secret.standard_normal(probe_mean.shape)
        probe_logits = decode(sandbox, decoder, probe_z)
        ctx.close()  # the submission's process is done: the grader's code measures the models it left

        # 2. Encoding: the grader's code rebuilds the encoder (a new process, never the submission)
        # and encodes the test images, in a secret order.
        t = time.monotonic()
        ctx.progress(
            f"z_dim {z_dim}: encoding the {len(data.test.images):,} test images with the encoder rebuilt by the grader"
        )
        with measured.Measurement(ctx, f"the encoder ({ENCODER})") as measure:
            handle = measure.rebuild(*encoder_model)
            measure.matches(handle, probes, [probe_mean, probe_sd], "the means and sds of Q(z|x)")
            images = data.test.images[secret.permutation(len(data.test.images))]
            encoded = [
                expect_encoding(
                    measure.predict(handle, images[i : i + EVAL_BATCH], outputs=2),
                    len(images[i : i + EVAL_BATCH]),
                    z_dim,
                )
                for i in range(0, len(images), EVAL_BATCH)
            ]
        mean, sd = (np.concatenate(column) for column in zip(*encoded))
        phases["encoding"] = time.monotonic() - t

        # 3. Decoding: the grader's code rebuilds the decoder in another new process, which gets
        # latent codes the grader samples (secret noise), never a test image.
        t = time.monotonic()
        ctx.progress(
            f"z_dim {z_dim}: decoding {IW_SAMPLES} x {len(images):,} codes with the decoder rebuilt by "
            "the grader, in a process that never sees a test image"
        )
        with measured.Measurement(ctx, f"the decoder ({DECODER})") as measure:
            handle = measure.rebuild(*decoder_model)
            measure.matches(handle, probe_z.astype(np.float32), [probe_logits], "the logits")

            def decoded(z):
                return expect_array(
                    measure.predict(handle, z.astype(np.float32)), f"the decoder ({DECODER})", shape=(len(z), 28, 28, 1)
                )

            log_weights, reconstruction = np.empty((IW_SAMPLES, len(images))), None
            low, high = np.inf, -np.inf
            for k in range(IW_SAMPLES):
                z = mean + sd * secret.standard_normal(mean.shape)
                nll = np.empty(len(images))
                for i in range(0, len(images), EVAL_BATCH):
                    logits = decoded(z[i : i + EVAL_BATCH])
                    low, high = min(low, float(logits.min())), max(high, float(logits.max()))
                    nll[i : i + EVAL_BATCH] = bernoulli_nll(images[i : i + EVAL_BATCH], logits)
                if k == 0:
                    reconstruction = nll  # the ELBO's reconstruction term: one sample of z per image
                log_weights[k] = -nll + log_normal(z, 0, 1) - log_normal(z, mean, sd)
            from_means = np.concatenate(  # decoding the means, no noise: for the diagnosis
                [
                    bernoulli_nll(images[i : i + EVAL_BATCH], decoded(mean[i : i + EVAL_BATCH]))
                    for i in range(0, len(images), EVAL_BATCH)
                ]
            )
            plot = None
            if ctx.plots_dir:
                try:
                    pick = np.sort(ctx.rng("plots", z_dim).choice(len(images), 16, replace=False))
                    plot = plot_model(ctx, decoded, z_dim, images[pick], mean[pick])
                except SubmissionError as failure:  # a picture is feedback, never a reason to fail
                    plot = failure
        top = log_weights.max(axis=0)
        log_px = top + np.log(np.mean(np.exp(log_weights - top), axis=0))
        kl = analytic_kl(mean, sd)
        phases["decoding"] = time.monotonic() - t

        nelbo = float(np.mean(reconstruction + kl))
        message = (
            f"z_dim {z_dim}: test -ELBO {nelbo:.2f} = reconstruction {reconstruction.mean():.2f} + "
            f"KL {kl.mean():.2f}; importance-weighted -log p(x) (K={IW_SAMPLES}) {-log_px.mean():.2f} "
            f"nats per image"
        )
        passed = nelbo <= threshold
        if not passed:
            message += f"; above the threshold {threshold} (the reference reaches {reference}); " + diagnosis(
                ctx, z_dim, reconstruction.mean(), kl.mean(), low, high, from_means.mean(), np.median(sd)
            )
        details = {
            "reconstruction": float(reconstruction.mean()),
            "kl": float(kl.mean()),
            "iw_nll": float(-log_px.mean()),
            "iw_samples": IW_SAMPLES,
            "reconstruction_from_means": float(from_means.mean()),
            "median_sd": float(np.median(sd)),
            "logits_range": [low, high],
            "weights_mb": round(sum(w.nbytes for w in encoder_model[1] + decoder_model[1]) / 2**20, 2),
            "training_s": round(phases["training"], 2),
            "evaluation_s": round(phases["encoding"] + phases["decoding"], 2),
            "phases_s": {k: round(v, 2) for k, v in phases.items()},
        }
        if isinstance(plot, SubmissionError):
            details["plot_error"] = plot.message
        elif plot is not None:
            details["plot"] = plot
        return Outcome(passed, message, value=nelbo, threshold=f"<= {threshold}", details=details)

    return run


def diagnosis(ctx, z_dim, reconstruction, kl, low, high, from_means, median_sd):
    """The likely bug of a training whose -ELBO is above the threshold, from what the grader saw
    (`from_means`: the reconstruction term with z = the mean of Q(z|x), no noise)."""
    if 0 <= low and high <= 1:
        return (
            f"likely bug: the decoder outputs probabilities (a sigmoid on its last layer) that are used as "
            f"logits: all its outputs lie in [{low:.3g}, {high:.3g}]. With logits in [0, 1] no pixel can be "
            f"dark, and training drives them to 0 (p = 0.5 everywhere: a reconstruction of 784 ln 2 = "
            f"{ALL_PIXELS_HALF:.2f} nats, and a KL of 0 since z is of no use); {DECODER} must output logits"
        )
    if abs(reconstruction - ALL_PIXELS_HALF) < 0.01 * ALL_PIXELS_HALF and kl < 0.5:
        return (
            f"likely bug: a reconstruction of 784 ln 2 = {ALL_PIXELS_HALF:.2f} nats with a KL of 0 is a decoder "
            f"whose logits are all 0 (p = 0.5 for every pixel) whatever z: probabilities used as logits "
            f"({DECODER}), or a decoder that did not learn"
        )
    if reconstruction - from_means > max(30.0, 0.25 * reconstruction) and median_sd > 0.8:
        return (
            f"likely bug: the decoder was trained on the means of Q(z|x) instead of samples: it reconstructs "
            f"the test images from their means with {from_means:.1f} nats, but from samples z = mean + sd * eps "
            f"with {reconstruction:.1f}, and the encoder's sds stayed near 1 (median {median_sd:.2f}), where only "
            f"the latent loss moved them. In {STEP}, decode sample_z(mean, sd), not the mean"
        )
    if kl > 4 * z_dim + 40:
        return "the KL term is very large: is the latent loss missing from the training loss (VAE.train_step)?"
    failed = ctx.failed_units()
    if failed:
        return f"see the failed unit check(s): {', '.join(failed)}"
    return (
        f"every unit check passed, so look at the training: {STEP} (the loss it minimises, the batch mean of "
        f"reconstruction + latent loss, and the variables it updates) and the hyperparameters of parse_args "
        f"(layers, learning rate, epochs, batch size)"
    )


# ------------------------------------------------------------------ plots
GRID = 15  # the latent grid of a 2-D latent space is GRID x GRID codes


def probabilities(logits):
    return 1 / (1 + np.exp(-np.clip(logits, -30, 30)))


def plot_model(ctx, decode, z_dim, originals, means):
    """Asks the rebuilt decoder (`decode(z)` -> logits) for prior samples, reconstructions (from the means of Q(z|x)
    of `originals`) and (2-D) the latent grid."""
    rng = ctx.rng("plots", z_dim, "prior")
    samples = probabilities(decode(rng.standard_normal((64, z_dim))))
    reconstructions = probabilities(decode(means))
    grid = None
    if z_dim == 2:
        quantiles = np.array([NormalDist().inv_cdf(q) for q in np.linspace(0.05, 0.95, GRID)])
        codes = np.stack(np.meshgrid(quantiles, quantiles[::-1]), axis=-1).reshape(-1, 2)  # z2 grows upwards
        grid = probabilities(decode(codes))
    return plot_vae(
        ctx.plots_dir / f"{ctx.assignment.name}-z{z_dim}.png",
        samples,
        originals / 255,
        reconstructions,
        grid,
        title=f"VAE, z_dim {z_dim}",
    )


def tiles(images, columns):
    """Images [N, 28, 28, 1] in [0, 1] as one array, `columns` wide, with 1-pixel gaps."""
    images = np.asarray(images, dtype=np.float64)[..., 0]
    rows = -(-len(images) // columns)
    height, width = images.shape[1:]
    out = np.ones((rows * (height + 1) - 1, columns * (width + 1) - 1))
    for index, image in enumerate(images):
        r, c = divmod(index, columns)
        out[r * (height + 1) : r * (height + 1) + height, c * (width + 1) : c * (width + 1) + width] = image
    return out


def plot_vae(path, samples, originals, reconstructions, grid=None, title="VAE"):
    """One figure: prior samples (8 x 8), originals above their reconstructions (2 blocks of 8),
    and the latent grid when given. Arrays [N, 28, 28, 1] with values in [0, 1]. Returns the path."""
    pairs = np.concatenate([originals[:8], reconstructions[:8], originals[8:16], reconstructions[8:16]])
    panels = [
        ("samples from the prior N(0, I)", tiles(samples, 8)),
        ("test images (rows 1, 3) and their reconstructions (rows 2, 4)", tiles(pairs, 8)),
    ]
    if grid is not None:
        panels.append(("decoded latent grid (normal quantiles 5%..95%)", tiles(grid, GRID)))
    fig, axes = figure(5 * len(panels), 5.4, nrows=1, ncols=len(panels))
    fig.suptitle(title)
    for ax, (name, image) in zip(np.atleast_1d(axes), panels):
        ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(name, fontsize=9)
        ax.set_axis_off()
    return save(fig, path)


ASSIGNMENT = Assignment(
    name="vae",
    title="Variational autoencoder on MNIST",
    tensorflow=True,
    limits=Limits(time=120, train_time=600, start_time=120, memory_mb=6144, threads=2),
    summary=SUMMARY,
    expected_time="about 3.5 minutes",
    prepare=mnist,
    checks=(
        Check(
            "encoder: mean and positive sd",
            check_encoder,
            functions=(ENCODER,),
            description="Q(z|x) has a mean and a positive sd per latent variable",
        ),
        Check(
            "decoder: logits",
            check_decoder,
            functions=(DECODER,),
            description="one logit (any real number) per pixel",
        ),
        Check(
            "sample: reparametrized",
            check_reparametrized,
            functions=("sample_z",),
            description="gradients reach mean and sd",
        ),
        Check(
            "latent loss: analytic KL",
            check_latent_loss,
            functions=("latent_loss",),
            description="KL(Q(z|x) || N(0, I)) summed over z",
        ),
        Check(
            "reconstruction loss: sum over pixels",
            check_reconstruction_loss,
            functions=("reconstruction_loss",),
            description="-log P(x|z), Bernoulli, summed over pixels",
        ),
        Check(
            "train step: lowers the -ELBO",
            check_train_step,
            functions=(STEP,),
            description=f"one epoch on {STEP_IMAGES} images lowers their -ELBO and updates both networks",
        ),
    )
    + tuple(
        Check(
            f"test -ELBO, z_dim {z}",
            check_training(z),
            points=3,
            functions=UNITS + (STEP,),
            training=True,
            description=f"test-set negative ELBO <= {threshold} nats per image",
        )
        for z, (_, threshold) in CONFIGS.items()
    ),
)
