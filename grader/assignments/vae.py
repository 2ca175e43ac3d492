"""VAE on MNIST, graded on the test-set negative ELBO computed by the grader.

The submission exposes `parse_args(argv)`, `VAE(args)` with `encode(images) -> (mean, sd)` and
`decode(z) -> logits`, `train(vae, images, args)`, and the units `sample_z(mean, sd)`,
`reconstruction_loss(images, logits)` and `latent_loss(mean, sd)`. Training runs in the child on
the training images the grader sends; then the grader asks only for the encoder's mean and sd of
test images and for the decoder's logits of latent codes it sampled itself, and computes the
reconstruction term, the analytic KL term and an importance-weighted estimate of log p(x).

Thresholds (nats per image, MNIST test set, Bernoulli likelihood of the targets x/255):
the reference solution with its default hyperparameters measured REFERENCE (see
`python bench/vae.py`); a submission passes a configuration with a test -ELBO of at most
THRESHOLD, the reference plus a margin of a few nats, which covers differences between seeds
(about 1 nat) and reasonable choices of architecture, but not a missing KL term or a broken
decoder (tens of nats).

Plots (--plots DIR): DIR/vae-z{Z}.png per trained configuration, from the trained model after
its measurement: images decoded from codes drawn from the prior, test images above their
reconstructions (decoded from the mean of Q(z|x)), and for a 2-D latent space the decoded grid
of codes at the normal distribution's quantiles. Pixels are the Bernoulli means, sigmoid(logits).
"""
import sys
import time
from pathlib import Path
from statistics import NormalDist

import numpy as np

from ..sandbox import SubmissionError, expect_array, expect_handle
from ..spec import Assignment, Check, Limits, Outcome

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the course's datasets package
import datasets  # noqa: E402

assert getattr(datasets, "COURSE_DATASETS", False), f"{datasets.__file__} is not the course's datasets package"

# z_dim -> (reference test -ELBO, threshold), nats per image; measured by bench/vae.py
CONFIGS = {2: (144.4, 150.0), 100: (102.9, 107.0)}
IW_SAMPLES = 10            # K of the importance-weighted estimate of log p(x)
EVAL_BATCH = 1000
PIXELS = 28 * 28


def mnist():
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
    return np.sum(0.5 * (mean ** 2 + sd ** 2 - 1) - np.log(sd), axis=1)


def log_normal(z, mean, sd):
    return np.sum(-0.5 * ((z - mean) / sd) ** 2 - np.log(sd) - 0.5 * np.log(2 * np.pi), axis=1)


def encode(ctx, vae, images, z_dim):
    answer = ctx.sandbox.call(vae.method("encode"), images)
    if not isinstance(answer, list) or len(answer) != 2:
        raise SubmissionError("invalid", "VAE.encode must return (mean, sd)")
    mean = expect_array(answer[0], "VAE.encode (mean)", shape=(len(images), z_dim))
    sd = expect_array(answer[1], "VAE.encode (sd)", shape=(len(images), z_dim))
    if np.any(sd <= 0):
        raise SubmissionError("invalid", f"VAE.encode returned a non-positive sd ({np.count_nonzero(sd <= 0)} of "
                                         f"{sd.size} values, minimum {sd.min():.3g}); likely bug: the "
                                         "log-variance (or an unconstrained output) is used as the standard "
                                         "deviation: make it positive with exp or softplus")
    return mean.astype(np.float64), sd.astype(np.float64)


def decode(ctx, vae, z):
    return expect_array(ctx.sandbox.call(vae.method("decode"), z.astype(np.float32)), "VAE.decode",
                        shape=(len(z), 28, 28, 1))


def test_elbo(ctx, vae, images, z_dim, rng):
    """Reconstruction and KL terms and the importance-weighted log p(x), per image."""
    reconstruction, kl, log_px = [], [], []
    for start in range(0, len(images), EVAL_BATCH):
        x = images[start:start + EVAL_BATCH]
        mean, sd = encode(ctx, vae, x, z_dim)
        log_weights = []
        for k in range(IW_SAMPLES):
            z = mean + sd * rng.standard_normal(mean.shape)
            nll = bernoulli_nll(x, decode(ctx, vae, z))
            if k == 0:
                reconstruction.append(nll)  # the ELBO's reconstruction term, one sample per image
            log_weights.append(-nll + log_normal(z, 0, 1) - log_normal(z, mean, sd))
        kl.append(analytic_kl(mean, sd))
        log_weights = np.stack(log_weights)
        top = log_weights.max(axis=0)
        log_px.append(top + np.log(np.mean(np.exp(log_weights - top), axis=0)))
    return np.concatenate(reconstruction), np.concatenate(kl), np.concatenate(log_px)


def new_vae(ctx, z_dim, seed=1, extra=()):
    args = expect_handle(ctx.sandbox.call("parse_args", ["--z_dim", str(z_dim), "--seed", str(seed),
                                                         "--threads", str(ctx.limits.threads), *extra]),
                         "parse_args(argv)")
    return args, expect_handle(ctx.sandbox.call("VAE", args), "VAE(args)")


# ------------------------------------------------------------------ checks
def check_training(z_dim):
    reference, threshold = CONFIGS[z_dim]

    def run(ctx):
        data = mnist()
        ctx.fresh_sandbox()
        args, vae = new_vae(ctx, z_dim, seed=1000 * ctx.seed + z_dim)
        started = time.monotonic()
        ctx.sandbox.call("train", vae, data.train.images, args, phase="training", timeout=ctx.limits.train_time)
        trained = time.monotonic()
        reconstruction, kl, log_px = test_elbo(ctx, vae, data.test.images, z_dim, ctx.rng("elbo", z_dim))
        evaluated = time.monotonic()
        nelbo = float(np.mean(reconstruction + kl))
        message = (f"z_dim {z_dim}: test -ELBO {nelbo:.2f} = reconstruction {reconstruction.mean():.2f} + "
                   f"KL {kl.mean():.2f}; importance-weighted -log p(x) (K={IW_SAMPLES}) {-log_px.mean():.2f} "
                   f"nats per image")
        passed = nelbo <= threshold
        if not passed:
            message += f"; above the threshold {threshold} (the reference reaches {reference})"
            if kl.mean() > 4 * z_dim + 40:
                message += "; the KL term is very large: is the latent loss missing from the training loss?"
        details = {"reconstruction": float(reconstruction.mean()), "kl": float(kl.mean()),
                   "iw_nll": float(-log_px.mean()), "iw_samples": IW_SAMPLES,
                   "training_s": round(trained - started, 2), "evaluation_s": round(evaluated - trained, 2)}
        if ctx.plots_dir:
            try:
                details["plot"] = plot_model(ctx, vae, data.test.images, z_dim)
            except SubmissionError as failure:  # a picture is feedback, never a reason to fail
                details["plot_error"] = failure.message
        return Outcome(passed, message, value=nelbo, threshold=f"<= {threshold}", details=details)
    return run


# ------------------------------------------------------------------ plots
GRID = 15  # the latent grid of a 2-D latent space is GRID x GRID codes


def probabilities(logits):
    return 1 / (1 + np.exp(-np.clip(logits, -30, 30)))


def plot_model(ctx, vae, images, z_dim):
    """Asks the trained model for prior samples, reconstructions and (2-D) the latent grid."""
    rng = ctx.rng("plots", z_dim)
    samples = probabilities(decode(ctx, vae, rng.standard_normal((64, z_dim))))
    originals = images[np.sort(rng.choice(len(images), 16, replace=False))]
    mean, _ = encode(ctx, vae, originals, z_dim)
    reconstructions = probabilities(decode(ctx, vae, mean))
    grid = None
    if z_dim == 2:
        quantiles = np.array([NormalDist().inv_cdf(q) for q in np.linspace(0.05, 0.95, GRID)])
        codes = np.stack(np.meshgrid(quantiles, quantiles[::-1]), axis=-1).reshape(-1, 2)  # z2 grows upwards
        grid = probabilities(decode(ctx, vae, codes))
    return plot_vae(ctx.plots_dir / f"{ctx.assignment.name}-z{z_dim}.png", samples, originals / 255, reconstructions,
                    grid, title=f"VAE, z_dim {z_dim}")


def tiles(images, columns):
    """Images [N, 28, 28, 1] in [0, 1] as one array, `columns` wide, with 1-pixel gaps."""
    images = np.asarray(images, dtype=np.float64)[..., 0]
    rows = -(-len(images) // columns)
    height, width = images.shape[1:]
    out = np.ones((rows * (height + 1) - 1, columns * (width + 1) - 1))
    for index, image in enumerate(images):
        r, c = divmod(index, columns)
        out[r * (height + 1):r * (height + 1) + height, c * (width + 1):c * (width + 1) + width] = image
    return out


def plot_vae(path, samples, originals, reconstructions, grid=None, title="VAE"):
    """One figure: prior samples (8 x 8), originals above their reconstructions (2 blocks of 8),
    and the latent grid when given. Arrays [N, 28, 28, 1] with values in [0, 1]. Returns the path."""
    from matplotlib.figure import Figure  # no pyplot: figures are drawn from several threads in a batch
    pairs = np.concatenate([originals[:8], reconstructions[:8], originals[8:16], reconstructions[8:16]])
    panels = [("samples from the prior N(0, I)", tiles(samples, 8)),
              ("test images (rows 1, 3) and their reconstructions (rows 2, 4)", tiles(pairs, 8))]
    if grid is not None:
        panels.append((f"decoded latent grid (normal quantiles 5%..95%)", tiles(grid, GRID)))
    figure = Figure(figsize=(5 * len(panels), 5.4), layout="constrained")
    figure.suptitle(title)
    for axes, (name, image) in zip(np.atleast_1d(figure.subplots(1, len(panels))), panels):
        axes.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axes.set_title(name, fontsize=9)
        axes.set_axis_off()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return str(path)


def check_sd_positive(ctx):
    images = mnist().test.images[:64]
    args, vae = new_vae(ctx, 4)
    mean, sd = encode(ctx, vae, images, 4)
    return Outcome(True, f"mean and sd of Q(z|x) have shape (64, 4); sd is positive (min {sd.min():.3g})",
                   value=float(sd.min()), threshold="> 0")


def check_reparametrized(ctx):
    rng = ctx.rng("reparametrized")
    mean = rng.normal(0, 1, size=(2048, 8)).astype(np.float32)
    sd = rng.uniform(0.2, 2, size=(2048, 8)).astype(np.float32)
    z, (d_mean, d_sd) = ctx.sandbox.grad("sample_z", [mean, sd], wrt=[0, 1])
    z = expect_array(z, "sample_z", shape=mean.shape)
    epsilon = (z - mean) / sd
    if abs(epsilon.mean()) > 0.05 or abs(epsilon.std() - 1) > 0.05:
        return Outcome(False, f"(z - mean) / sd should be standard normal, it has mean {epsilon.mean():.3f} and "
                              f"sd {epsilon.std():.3f}: is z drawn from Normal(mean, sd)?",
                       value=float(epsilon.std()), threshold="N(0, 1)")
    d_mean = expect_array(d_mean, "d sample_z / d mean", shape=mean.shape)
    d_sd = expect_array(d_sd, "d sample_z / d sd", shape=sd.shape)
    error = float(max(np.max(np.abs(d_mean - 1)), np.max(np.abs(d_sd - epsilon))))
    if error > 1e-3:
        hint = ("no gradient reaches the encoder: z is sampled without the reparametrization trick "
                "(use tfp.distributions.Normal(mean, sd).sample(), i.e. mean + sd * epsilon, without stop_gradient "
                "or numpy)" if np.allclose(d_mean, 0) and np.allclose(d_sd, 0) else
                "dz/dmean should be 1 and dz/dsd should be epsilon = (z - mean) / sd")
        return Outcome(False, f"gradients of z with respect to mean and sd are wrong: {hint}", value=error,
                       threshold="<= 1e-3")
    return Outcome(True, "z = mean + sd * epsilon: gradients reach the mean (1) and the sd (epsilon)",
                   value=error, threshold="<= 1e-3")


def check_latent_loss(ctx):
    rng = ctx.rng("kl")
    mean = rng.normal(0, 1, size=(32, 6)).astype(np.float32)
    sd = rng.uniform(0.3, 2.0, size=(32, 6)).astype(np.float32)
    got = expect_array(ctx.sandbox.call("latent_loss", mean, sd), "latent_loss", shape=(32,))
    expected = analytic_kl(mean, sd)
    error = float(np.max(np.abs(got - expected)))
    if error <= 1e-3 * max(1, np.abs(expected).max()):
        return Outcome(True, "latent_loss is the analytic KL(Q(z|x) || N(0, I)) summed over z", value=error,
                       threshold="<= 1e-3")
    candidates = {
        "the KL term is missing (zero)": np.zeros_like(expected),
        "the KL is averaged over the latent dimensions instead of summed": expected / mean.shape[1],
        "the sd is used as a variance": analytic_kl(mean, np.sqrt(sd)),
        "the sd is used as a log-variance": analytic_kl(mean, np.exp(sd / 2)),
    }
    hint = next((bug for bug, value in candidates.items() if np.allclose(got, value, atol=1e-3, rtol=1e-3)),
                "compute it with tfp.distributions.kl_divergence(Normal(mean, sd), Normal(0, 1)) summed over z")
    return Outcome(False, f"latent_loss differs from the analytic KL by up to {error:.3g}; likely bug: {hint}",
                   value=error, threshold="<= 1e-3")


def check_reconstruction_loss(ctx):
    images = mnist().test.images[:16]
    logits = ctx.rng("logits").normal(0, 3, size=(16, 28, 28, 1)).astype(np.float32)
    got = expect_array(ctx.sandbox.call("reconstruction_loss", images, logits), "reconstruction_loss", shape=(16,))
    expected = bernoulli_nll(images, logits)
    error = float(np.max(np.abs(got - expected) / expected))
    if error <= 1e-3:
        return Outcome(True, "reconstruction_loss is -log P(x|z) summed over the 784 pixels", value=error,
                       threshold="relative error <= 1e-3")
    if np.allclose(got, expected / PIXELS, rtol=1e-3):
        hint = "it is a mean over the pixels, not a sum (-log P(x|z) of an image sums over its pixels)"
    elif np.allclose(got, bernoulli_nll(np.minimum(images.astype(np.float64) * 255, 255 * 255) / 255, logits), rtol=1e-3):
        hint = "the targets are not scaled to [0, 1] (divide the uint8 pixels by 255)"
    else:
        hint = "use the Bernoulli negative log-likelihood of the targets images/255 given the logits"
    return Outcome(False, f"reconstruction_loss has relative error {error:.3g}; likely bug: {hint}", value=error,
                   threshold="relative error <= 1e-3")


ASSIGNMENT = Assignment(
    name="vae",
    title="Variational autoencoder on MNIST",
    tensorflow=True,
    limits=Limits(time=120, train_time=600, start_time=120, memory_mb=6144, threads=2),
    checks=(
        Check("encoder: sd positive", check_sd_positive, description="Q(z|x) has a positive sd"),
        Check("sample: reparametrized", check_reparametrized, description="gradients reach mean and sd"),
        Check("latent loss: analytic KL", check_latent_loss, description="KL(Q(z|x) || N(0, I)) summed over z"),
        Check("reconstruction loss: sum over pixels", check_reconstruction_loss,
              description="-log P(x|z), Bernoulli, summed over pixels"),
    ) + tuple(
        Check(f"test -ELBO, z_dim {z}", check_training(z), points=3,
              description=f"test-set negative ELBO <= {threshold} nats per image")
        for z, (_, threshold) in CONFIGS.items()),
)
