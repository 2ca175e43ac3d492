"""Plots (--plots DIR): opened and looked at as images (size, not blank, the expected content)."""
import json
import types

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, run_grader
from grader.assignments import vae
from grader.sandbox import Handle

MATPLOTLIB_COLORS = {"C0": (31, 119, 180), "C1": (255, 127, 14), "C2": (44, 160, 44)}


def pixels(path):
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).astype(int)


def assert_not_blank(image):
    assert image.std() > 20 and len(np.unique(image.reshape(-1, 3), axis=0)) > 50


def test_bandits_plot_of_a_grading(tmp_path):
    result = run_grader("solutions/bandits.py", "--check", "testbed", "--plots", tmp_path / "plots",
                        "--json", tmp_path / "r.json", "--quiet")
    assert result.returncode == 0, result.stdout
    path = tmp_path / "plots/bandits-average-reward.png"
    image = pixels(path)
    assert image.shape == (480, 900, 3)
    assert_not_blank(image)
    for name, rgb in MATPLOTLIB_COLORS.items():  # a curve for each of the three configurations
        assert np.sum(np.all(np.abs(image - rgb) < 8, axis=-1)) > 500, name
    checks = json.loads((tmp_path / "r.json").read_text())["checks"]
    assert {c["details"]["plot"] for c in checks} == {str(path)}


def test_bandits_plots_of_a_class_go_to_each_student(tmp_path):
    for student in ("alice", "bob"):
        (tmp_path / "class" / student).mkdir(parents=True)
        (tmp_path / "class" / student / "bandits.py").write_text((REPO / "solutions/bandits.py").read_text())
    result = run_grader(tmp_path / "class", "--check", "testbed: epsilon 0.1, alpha", "--jobs", "2",
                        "--out", tmp_path / "out", "--plots", tmp_path / "out", "--html", tmp_path / "out/index.html")
    assert result.returncode == 0, result.stderr
    for student in ("alice", "bob"):
        assert_not_blank(pixels(tmp_path / "out" / student / "bandits-average-reward.png"))
    html = (tmp_path / "out/index.html").read_text()
    assert '<img src="alice/bandits-average-reward.png"' in html and '<img src="bob/bandits-average-reward.png"' in html


def digits(n, rng):
    """Synthetic 'images' [n, 28, 28, 1] in [0, 1]: a bright bar at a random place."""
    images = np.zeros((n, 28, 28, 1))
    for image, column in zip(images, rng.integers(4, 24, size=n)):
        image[4:24, column - 2:column + 2] = 1
    return images


@pytest.mark.parametrize("grid, size", [(True, (1500, 540)), (False, (1000, 540))])
def test_vae_plot_from_arrays(tmp_path, grid, size):
    rng = np.random.default_rng(0)
    path = vae.plot_vae(tmp_path / "vae.png", digits(64, rng), digits(16, rng), digits(16, rng) * 0.8,
                        digits(vae.GRID ** 2, rng) if grid else None, title="synthetic")
    image = pixels(path)
    assert image.shape == (size[1], size[0], 3)
    assert_not_blank(image)
    # every panel has content: bright bars on black
    for left in range(0, size[0], 500):
        panel = image[60:, left + 20:left + 480]
        assert (panel > 200).mean() > 0.02 and (panel < 30).mean() > 0.2


def test_vae_plots_ask_the_trained_model(tmp_path, monkeypatch):
    """plot_model's questions to the model, against a stand-in decoder whose image shows its
    code: the left half of each image is sigmoid(4 z1), the right half sigmoid(4 z2)."""
    def call(target, argument):
        if target.name == "encode":
            return [np.zeros((len(argument), 2), np.float32), np.ones((len(argument), 2), np.float32)]
        logits = np.zeros((len(argument), 28, 28, 1), np.float32)
        logits[:, :, :14] = 4 * argument[:, 0, None, None, None]
        logits[:, :, 14:] = 4 * argument[:, 1, None, None, None]
        return logits
    drawn = {}
    monkeypatch.setattr(vae, "plot_vae", lambda path, *arrays, title: drawn.update(path=path, arrays=arrays))
    ctx = types.SimpleNamespace(rng=lambda *labels: np.random.default_rng(1), plots_dir=tmp_path,
                                sandbox=types.SimpleNamespace(call=call), assignment=vae.ASSIGNMENT)
    images = (digits(100, np.random.default_rng(2)) * 255).astype(np.uint8)
    vae.plot_model(ctx, Handle(1), images, 2)
    samples, originals, reconstructions, grid = drawn["arrays"]
    assert drawn["path"] == tmp_path / "vae-z2.png"
    assert samples.shape == (64, 28, 28, 1) and originals.shape == reconstructions.shape == (16, 28, 28, 1)
    assert originals.max() == 1 and np.all((reconstructions > 0) & (reconstructions < 1))
    grid = grid.reshape(vae.GRID, vae.GRID, 28, 28)
    left, right = grid[:, :, 0, 0], grid[:, :, 0, 27]
    assert np.all(np.diff(left, axis=1) > 0) and np.allclose(np.diff(left, axis=0), 0)    # z1 grows to the right
    assert np.all(np.diff(right, axis=0) < 0) and np.allclose(np.diff(right, axis=1), 0)  # z2 grows upwards
    assert left[0, 0] == pytest.approx(1 / (1 + np.exp(4 * 1.6449)), rel=1e-3)          # the 5% quantile
