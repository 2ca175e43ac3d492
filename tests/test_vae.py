"""VAE: the template, named bugs fail the matching check, and the full grading of the reference."""
import json

import pytest

from conftest import run_grader, variant

UNIT = ["--check", "encoder", "--check", "sample", "--check", "loss"]


def checks_of(tmp_path, path, *args):
    result = run_grader(path, "--json", tmp_path / "r.json", "--quiet", *args)
    report = json.loads((tmp_path / "r.json").read_text())
    return result, {c["name"]: c for c in report["checks"]}, report


def test_template_fails_naming_the_todos(tmp_path):
    result, checks, report = checks_of(tmp_path, "assignments/vae.py", *UNIT)
    assert result.returncode == 1
    assert {"sample_z", "latent_loss", "reconstruction_loss", "VAE.__init__"} <= set(report["todos"])


def test_reference_passes_the_unit_checks(tmp_path):
    result, checks, _ = checks_of(tmp_path, "solutions/vae.py", *UNIT)
    assert result.returncode == 0, checks
    assert len(checks) == 4


@pytest.mark.parametrize("edit, check, hint", [
    (("    return tf.reduce_sum(tfp.distributions.kl_divergence(posterior, prior), axis=-1)\n",
      "    return tf.zeros(tf.shape(mean)[:1])\n"), "latent loss: analytic KL", "the KL term is missing"),
    (('sd = keras.layers.Dense(args.z_dim, activation="softplus")(hidden)', "sd = keras.layers.Dense(args.z_dim)(hidden)"),
     "encoder: sd positive", "log-variance (or an unconstrained output) is used as the standard deviation"),
    (("    return tfp.distributions.Normal(mean, sd).sample()\n",
      "    return tf.stop_gradient(tfp.distributions.Normal(mean, sd).sample())\n"),
     "sample: reparametrized", "without the reparametrization trick"),
    (("axis=[1, 2, 3])", "axis=[1, 2, 3]) / 784"), "reconstruction loss: sum over pixels", "mean over the pixels"),
    (("prior = tfp.distributions.Normal(tf.zeros_like(mean), tf.ones_like(sd))",
      "prior = tfp.distributions.Normal(tf.zeros_like(mean), tf.ones_like(sd)); posterior = tfp.distributions.Normal(mean, tf.sqrt(sd))"),
     "latent loss: analytic KL", "the sd is used as a variance"),
])
def test_bugs_fail_the_matching_check(tmp_path, submission, edit, check, hint):
    path = submission(variant("solutions/vae.py", edit), name="vae.py")
    result, checks, _ = checks_of(tmp_path, path, *UNIT)
    assert result.returncode == 1
    assert not checks[check]["passed"] and hint in checks[check]["message"], checks[check]["message"]
    assert sum(c["passed"] for c in checks.values()) == 3, "only the matching check fails"


def test_missing_kl_in_training_fails_the_elbo_check(tmp_path, submission):
    path = submission(variant("solutions/vae.py", ("            loss = reconstruction + latent\n",
                                                   "            loss = reconstruction\n"),
                              ('default=10, type=int, help="Number of epochs."', 'default=1, type=int, help="Number of epochs."')),
                      name="vae.py")
    result, checks, _ = checks_of(tmp_path, path, "--check", "z_dim 2")
    check = checks["test -ELBO, z_dim 2"]
    assert result.returncode == 1 and not check["passed"]
    assert "is the latent loss missing from the training loss?" in check["message"]


@pytest.mark.slow
def test_full_grading_of_the_reference(tmp_path):
    result, checks, report = checks_of(tmp_path, "solutions/vae.py")
    assert result.returncode == 0, result.stdout + result.stderr
    for name, check in checks.items():
        if name.startswith("test -ELBO"):
            details = check["details"]
            assert abs(details["reconstruction"] + details["kl"] - check["value"]) < 0.01
            assert details["iw_nll"] <= check["value"] + 0.5  # log p(x) >= ELBO, up to sampling noise
