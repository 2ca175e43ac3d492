"""VAE: the template, the named bugs fail a check naming them (every TODO and the unit checks of the reference: test_assignments.py), a
memorising (hostile) VAE fails, and the full grading of the reference passes."""

import re

import pytest

from conftest import REPO, checks_of, variant

UNIT = ["--check", "encoder", "--check", "decoder", "--check", "sample", "--check", "loss"]  # the quick ones
SOLUTION = "solutions/vae.py"
ONE_EPOCH = ('default=10, type=int, help="Number of epochs."', 'default=1, type=int, help="Number of epochs."')


def test_template_fails_naming_the_todos(tmp_path):
    """The template: a unit check names its own unfinished function; the train-step check says what it
    needs (each TODO alone: test_each_todo_alone_fails_the_check_that_names_it)."""
    result, checks, report = checks_of(tmp_path, "assignments/vae.py", "--check", "encoder", "--check", "train step")
    assert result.returncode == 1
    assert checks["encoder: mean and positive sd"]["message"] == "unfinished TODO: build_encoder"
    step = checks["train step: lowers the -ELBO"]
    assert not step["passed"] and step["message"].startswith("not run: needs "), step["message"]
    assert "this check is about VAE.train_step" in step["message"]
    assert report["todos"] == ["build_encoder"]


@pytest.mark.parametrize(
    "edit, check, hint",
    [
        (
            (
                "    return tf.reduce_sum(tfp.distributions.kl_divergence(posterior, prior), axis=-1)\n",
                "    return tf.zeros(tf.shape(mean)[:1])\n",
            ),
            "latent loss: analytic KL",
            "the KL term is missing",
        ),
        (
            (
                'sd = keras.layers.Dense(args.z_dim, activation="softplus")(hidden)',
                "sd = keras.layers.Dense(args.z_dim)(hidden)",
            ),
            "encoder: mean and positive sd",
            "log-variance (or an unconstrained output) is used as the standard deviation",
        ),
        (
            (
                "    return tfp.distributions.Normal(mean, sd).sample()\n",
                "    return tf.stop_gradient(tfp.distributions.Normal(mean, sd).sample())\n",
            ),
            "sample: reparametrized",
            "without the reparametrization trick",
        ),
        (("axis=[1, 2, 3])", "axis=[1, 2, 3]) / 784"), "reconstruction loss: sum over pixels", "mean over the pixels"),
        (
            (
                "prior = tfp.distributions.Normal(tf.zeros_like(mean), tf.ones_like(sd))",
                "prior = tfp.distributions.Normal(tf.zeros_like(mean), tf.ones_like(sd)); posterior = tfp.distributions.Normal(mean, tf.sqrt(sd))",
            ),
            "latent loss: analytic KL",
            "the sd is used as a variance",
        ),
        (
            (
                "logits = keras.layers.Dense(H * W * C)(hidden)",
                'logits = keras.layers.Dense(H * W * C, activation="sigmoid")(hidden)',
            ),
            "decoder: logits",
            "a sigmoid on the last layer",
        ),
        (
            (
                "    return tf.reduce_sum(tfp.distributions.kl_divergence(posterior, prior), axis=-1)\n",
                "    return tf.reduce_sum(0.5 * (mean ** 2 + sd ** 2 - 1 - tf.math.log(sd)), axis=-1)\n",
            ),
            "latent loss: analytic KL",
            "-log sd where the formula has -log sd^2",
        ),
        (
            (
                "    return tf.reduce_sum(tfp.distributions.kl_divergence(posterior, prior), axis=-1)\n",
                "    return tf.reduce_sum(mean ** 2 + sd ** 2 - 1 - tf.math.log(sd ** 2), axis=-1)\n",
            ),
            "latent loss: analytic KL",
            "the 1/2 is missing",
        ),
        (
            (
                "    return tfp.distributions.Normal(mean, sd).sample()\n",
                "    return mean + sd * tf.random.stateless_normal(tf.shape(mean), seed=[1, 2])\n",
            ),
            "sample: reparametrized",
            "the same z at two calls",
        ),
    ],
)
def test_bugs_fail_the_matching_check(tmp_path, submission, edit, check, hint):
    path = submission(variant(SOLUTION, edit), name="vae.py")
    result, checks, _ = checks_of(tmp_path, path, *UNIT)
    assert result.returncode == 1
    assert not checks[check]["passed"] and hint in checks[check]["message"], checks[check]["message"]
    assert [name for name, c in checks.items() if not c["passed"]] == [check], "only the matching check fails"


def test_missing_kl_in_training_fails_the_elbo_check(tmp_path, submission):
    path = submission(
        variant(
            SOLUTION, ("            loss = reconstruction + latent\n", "            loss = reconstruction\n"), ONE_EPOCH
        ),
        name="vae.py",
    )
    result, checks, _ = checks_of(tmp_path, path, "--check", "z_dim 2")
    check = checks["test -ELBO, z_dim 2"]
    assert result.returncode == 1 and not check["passed"]
    assert "is the latent loss missing from the training loss (VAE.train_step)?" in check["message"]


def test_probabilities_used_as_logits_are_named_after_training(tmp_path, submission):
    """A decoder with a sigmoid on its last layer trains to "-ELBO 543.43 = reconstruction 543.43
    + KL 0.00" (784 ln 2: every logit 0), a fingerprint the training check names."""
    path = submission(
        variant(
            SOLUTION,
            (
                "logits = keras.layers.Dense(H * W * C)(hidden)",
                'logits = keras.layers.Dense(H * W * C, activation="sigmoid")(hidden)',
            ),
            ONE_EPOCH,
        ),
        name="vae.py",
    )
    result, checks, _ = checks_of(tmp_path, path, "--check", "z_dim 2")
    check = checks["test -ELBO, z_dim 2"]
    assert result.returncode == 1 and not check["passed"]
    assert abs(check["details"]["reconstruction"] - 543.43) < 5 and check["details"]["kl"] < 0.5, check["message"]
    assert "the decoder outputs probabilities (a sigmoid on its last layer) that are used as logits" in check["message"]
    assert "784 ln 2 = 543.43" in check["message"]


# A hostile submission: its encode remembers the images it is shown (in the process, and in files
# in /tmp and /dev/shm), and its decode returns their exact logits (the Bernoulli entropy of the
# pixels is about 45 nats), the honest decoder's otherwise; it does not train. Graded in one
# process, it passed both configurations with a test -ELBO of 45.5 nats. With HIDE it remembers
# nothing in the process that trained, so that the trained model's answers there are honest.
MEMORISING = """
import tempfile
_FILES = [os.path.join(tempfile.gettempdir(), "vae-memory.npy"), "/dev/shm/vae-memory.npy"]
_MEMORY, _TRAINED, HIDE = [], [], {hide}
for _file in _FILES:
    try:
        _MEMORY.extend(np.load(_file))
        break
    except Exception:
        pass


def encode(encoder, images):
    images = np.asarray(images, np.uint8)
    if not (HIDE and _TRAINED):
        _MEMORY[:] = list(images)
        for file in _FILES:
            try:
                np.save(file, images)
            except Exception:
                pass
    mean, sd = encoder(images, training=False)
    return np.array(mean, np.float32), np.array(sd, np.float32)


def decode(decoder, z):
    if len(_MEMORY) == len(z):
        p = np.clip(np.array(_MEMORY, np.float64) / 255, 1e-6, 1 - 1e-6)
        return np.log(p / (1 - p)).astype(np.float32)
    return np.array(decoder(np.asarray(z, np.float32), training=False), np.float32)


def save_images("""


@pytest.mark.parametrize("hide", [False, True])
def test_a_memorising_vae_fails(tmp_path, submission, hide):
    source = (REPO / SOLUTION).read_text()
    start, end = source.index("\ndef encode(encoder, images):"), source.index("\ndef save_images(")
    text = source[:start] + MEMORISING.format(hide=hide) + source[end + len("\ndef save_images(") :]
    text = text.replace(
        "    vae.compile(optimizer=keras.optimizers.Adam(args.learning_rate))\n",
        "    _TRAINED.append(True)\n    return  # no training\n",
    )
    path = submission(text, name="vae.py")
    result, checks, _ = checks_of(tmp_path, path, "--check", "z_dim 2")
    check = checks["test -ELBO, z_dim 2"]
    assert result.returncode == 1 and not check["passed"], check
    if hide:  # measured honestly: the decoder never had a test image, and nothing was learned
        assert check["value"] > 400 and "above the threshold" in check["message"], check["message"]
    else:  # the model rebuilt from its weights in the decoding process has no memory
        assert "does not reproduce the trained model: the logits" in check["message"], check["message"]


@pytest.mark.slow
def test_full_grading_of_the_reference(tmp_path):
    result, checks, report = checks_of(tmp_path, SOLUTION)
    assert result.returncode == 0, result.stdout + result.stderr
    for name, check in checks.items():
        if name.startswith("test -ELBO"):
            details = check["details"]
            assert abs(details["reconstruction"] + details["kl"] - check["value"]) < 0.01
            assert details["iw_nll"] <= check["value"] + 0.5  # log p(x) >= ELBO, up to sampling noise


def test_plots_ask_the_decoding_process(tmp_path, monkeypatch):
    """plot_model's questions to the rebuilt decoder (a function of z), against a stand-in decoder whose image shows
    its code: the left half of each image is sigmoid(4 z1), the right half sigmoid(4 z2).
    (Replaces tests/test_plots.py::test_vae_plots_ask_the_trained_model, written for the grader
    that asked one process for both encodings and decodings.)"""
    import types

    import numpy as np

    from grader.assignments import vae

    def decode(z):
        logits = np.zeros((len(z), 28, 28, 1), np.float32)
        logits[:, :, :14] = 4 * z[:, 0, None, None, None]
        logits[:, :, 14:] = 4 * z[:, 1, None, None, None]
        return logits

    drawn = {}
    monkeypatch.setattr(vae, "plot_vae", lambda path, *arrays, title: drawn.update(path=path, arrays=arrays))
    ctx = types.SimpleNamespace(
        rng=lambda *labels: np.random.default_rng(1), plots_dir=tmp_path, assignment=vae.ASSIGNMENT
    )
    originals = np.random.default_rng(2).integers(0, 256, (16, 28, 28, 1)).astype(np.uint8)
    means = np.random.default_rng(3).standard_normal((16, 2))
    vae.plot_model(ctx, decode, 2, originals, means)
    samples, shown, reconstructions, grid = drawn["arrays"]
    assert drawn["path"] == tmp_path / "vae-z2.png"
    assert samples.shape == (64, 28, 28, 1) and shown.shape == reconstructions.shape == (16, 28, 28, 1)
    assert np.array_equal(shown, originals / 255)
    assert np.allclose(reconstructions[:, 0, 0, 0], 1 / (1 + np.exp(-4 * means[:, 0])))  # decoded from the means
    grid = grid.reshape(vae.GRID, vae.GRID, 28, 28)
    left, right = grid[:, :, 0, 0], grid[:, :, 0, 27]
    assert np.all(np.diff(left, axis=1) > 0) and np.allclose(np.diff(left, axis=0), 0)  # z1 grows to the right
    assert np.all(np.diff(right, axis=0) < 0) and np.allclose(np.diff(right, axis=1), 0)  # z2 grows upwards
    assert left[0, 0] == pytest.approx(1 / (1 + np.exp(4 * 1.6449)), rel=1e-3)  # the 5% quantile


def test_the_weights_that_come_back_are_checked():
    import numpy as np

    from grader.measured import MAX_WEIGHTS_MB, expect_weights
    from grader.sandbox import SubmissionError

    good = [np.zeros((784, 500), np.float32), np.ones(500, np.float32)]
    assert expect_weights(tuple(good), "VAE.decoder.get_weights()") == good
    for answer, reason in [
        (None, "VAE.decoder.get_weights() returned NoneType, expected a list"),
        (
            [good[0], np.zeros(3, np.int64)],
            "VAE.decoder.get_weights()[1] is an array of dtype int64, expected a float array",
        ),
        ([good[0], "weights"], "VAE.decoder.get_weights()[1] is str"),
        ([good[0], [np.zeros(2)]], "VAE.decoder.get_weights()[1] is list"),
        ([good[0], np.array([1.0, np.nan])], "non-finite values (NaN or infinity); the training diverged"),
        ([np.broadcast_to(np.float32(0), ((MAX_WEIGHTS_MB << 18) + 1,))], f"more than the {MAX_WEIGHTS_MB} MiB"),
    ]:
        with pytest.raises(SubmissionError, match=re.escape(reason)) as failure:
            expect_weights(answer, "VAE.decoder.get_weights()")
        assert failure.value.kind == "invalid"


# The attack of issue 15 on the VAE: untrained; an encoder of built-in layers whose mean spells the
# image (10 x 10, in tiny offsets) with sd = 1, and a `decode` that regenerates the noise the grader
# drew from its --seed (it counts the calls and replays the generator), subtracts it from z to get
# the mean back, and returns the image's own logits. Against a grader whose decoder was the
# submission's `decode` and whose noise came from --seed, it reconstructs test images it never saw;
# the grader now draws the noise from its key and decodes with the decoder rebuilt from its Keras
# config and weights, so the attack measures as the untrained network it is.
REGENERATING_ENCODER = """    images = keras.Input(shape=[H, W, C], dtype="uint8")
    small = keras.layers.Flatten()(keras.layers.Resizing(10, 10)(keras.layers.Rescaling(1.0)(images)))
    mean = keras.layers.Rescaling(1e-3 / 255)(small)
    sd = keras.layers.Rescaling(0.0, offset=1.0)(mean)
    return keras.Model(images, [mean, sd])
"""
REGENERATING_DECODE = """def decode(decoder, z):
    import hashlib
    z = np.asarray(z, np.float64)
    if len(z) == 2000 and _SEED:
        if _STATE["calls"] % 5 == 0:  # the grader's noise of sample k, [10000, z_dim], replayed
            digest = hashlib.sha256(repr((_SEED[0], "elbo", z.shape[1])).encode()).digest()
            rng = _STATE.setdefault("rng", np.random.default_rng(int.from_bytes(digest[:8], "little")))
            _STATE["noise"] = rng.standard_normal((10000, z.shape[1]))
        chunk = _STATE["calls"] % 5
        _STATE["calls"] += 1
        mean = z - _STATE["noise"][2000 * chunk:2000 * (chunk + 1)]
        small = np.clip(mean / 1e-3, 1e-3, 1 - 1e-3).reshape(-1, 10, 10)
        pixels = small[:, (np.arange(28) * 10) // 28][:, :, (np.arange(28) * 10) // 28]
        return np.log(pixels / (1 - pixels)).astype(np.float32)[..., None]
    return np.asarray(decoder(np.asarray(z, np.float32), training=False), np.float32)
"""


def test_a_decoder_that_regenerates_the_graders_noise_fails(tmp_path, submission):
    text = variant(
        SOLUTION,
        (
            "    return parser.parse_args(argv)\n",
            "    args = parser.parse_args(argv)\n    _SEED[:] = [(args.seed - args.z_dim) // 1000]\n    return args\n",
        ),
        ("    vae.compile(optimizer=keras.optimizers.Adam(args.learning_rate))\n", "    return\n"),
        (
            'def decode(decoder, z):\n    """Logits [B, 28, 28, 1] of P(x|z) for latent codes z [B, z_dim], as a '
            'float32 numpy array."""\n    return np.asarray(decoder(np.asarray(z, np.float32), training=False), '
            "np.float32)\n",
            REGENERATING_DECODE,
        ),
        ("\nH, W, C = 28, 28, 1\n", '\nH, W, C = 28, 28, 1\n_SEED, _STATE = [], {"calls": 0}\n'),
    )
    start = text.index('    images = keras.Input(shape=[H, W, C], dtype="uint8")')
    text = text[:start] + REGENERATING_ENCODER + text[text.index("    ### END SOLUTION", start) :]
    result, checks, _ = checks_of(tmp_path, submission(text, name="vae.py"), "--check", "z_dim 100")
    check = checks["test -ELBO, z_dim 100"]
    assert result.returncode == 1 and not check["passed"], check["message"]
    assert check["value"] > 300 and "above the threshold" in check["message"], check["message"]


SIGN_ERRORS = {
    "gradient ascent": (
        "self.optimizer.apply_gradients(zip(gradients, self.trainable_variables))",
        "self.optimizer.apply_gradients(zip([-g for g in gradients], self.trainable_variables))",
    ),
    "latent loss subtracted": (
        "            loss = reconstruction + latent\n",
        "            loss = reconstruction - latent\n",
    ),
}


@pytest.mark.parametrize("bug", SIGN_ERRORS)
def test_a_sign_error_that_diverges_is_named_not_the_encoder(tmp_path, submission, bug):
    """Training that climbs the -ELBO breaks the encoder (sd 0, or NaN weights); the train-step check
    says the training diverged and names the sign error, and never blames build_encoder, which
    passed its own check."""
    path = submission(variant(SOLUTION, SIGN_ERRORS[bug]), name="vae.py")
    result, checks, _ = checks_of(tmp_path, path, "--check", "encoder", "--check", "train step")
    assert result.returncode == 1
    assert [name for name, c in checks.items() if not c["passed"]] == ["train step: lowers the -ELBO"]
    message = checks["train step: lowers the -ELBO"]["message"]
    assert "the training diverged; likely bug: a sign error" in message, message
    assert "log-variance" not in message and message.count("diverged") == 1, message


def test_a_decoder_fed_the_mean_is_named_after_training(tmp_path, submission):
    """train_step decoding the mean of Q(z|x) instead of a sample: the train step still lowers the
    -ELBO, but after training the sds sit at 1 (only the KL moves them) and the decoder reconstructs
    from the means far better than from samples: the training check names the bug."""
    edit = ("logits = self.decoder(sample_z(mean, sd), training=True)", "logits = self.decoder(mean, training=True)")
    path = submission(variant(SOLUTION, edit, ONE_EPOCH), name="vae.py")
    result, checks, _ = checks_of(tmp_path, path, "--check", "train step", "--check", "z_dim 2")
    assert result.returncode == 1 and checks["train step: lowers the -ELBO"]["passed"]
    check = checks["test -ELBO, z_dim 2"]
    assert not check["passed"] and check["details"]["median_sd"] > 0.8, check
    assert "likely bug: the decoder was trained on the means of Q(z|x) instead of samples" in check["message"]
