"""Plots (--plots DIR): opened and looked at as images (size, not blank, the expected content)."""

import json

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, run_grader
from grader.assignments import vae

MATPLOTLIB_COLORS = {"C0": (31, 119, 180), "C1": (255, 127, 14), "C2": (44, 160, 44)}


def pixels(path):
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).astype(int)


def assert_not_blank(image):
    assert image.std() > 20 and len(np.unique(image.reshape(-1, 3), axis=0)) > 50


def test_bandits_plot_of_a_grading(tmp_path):
    result = run_grader(
        "solutions/bandits.py",
        "--check",
        "testbed",
        "--plots",
        tmp_path / "plots",
        "--json",
        tmp_path / "r.json",
        "--quiet",
    )
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
    result = run_grader(
        tmp_path / "class",
        "--check",
        "testbed: epsilon 0.1, alpha",
        "--jobs",
        "2",
        "--out",
        tmp_path / "out",
        "--plots",
        tmp_path / "out",
        "--html",
        tmp_path / "out/index.html",
    )
    assert result.returncode == 0, result.stderr
    for student in ("alice", "bob"):
        assert_not_blank(pixels(tmp_path / "out" / student / "bandits-average-reward.png"))
    html = (tmp_path / "out/index.html").read_text()
    assert '<img src="alice/bandits-average-reward.png"' in html and '<img src="bob/bandits-average-reward.png"' in html


def digits(n, rng):
    """Synthetic 'images' [n, 28, 28, 1] in [0, 1]: a bright bar at a random place."""
    images = np.zeros((n, 28, 28, 1))
    for image, column in zip(images, rng.integers(4, 24, size=n)):
        image[4:24, column - 2 : column + 2] = 1
    return images


@pytest.mark.parametrize("grid, size", [(True, (1500, 540)), (False, (1000, 540))])
def test_vae_plot_from_arrays(tmp_path, grid, size):
    rng = np.random.default_rng(0)
    path = vae.plot_vae(
        tmp_path / "vae.png",
        digits(64, rng),
        digits(16, rng),
        digits(16, rng) * 0.8,
        digits(vae.GRID**2, rng) if grid else None,
        title="synthetic",
    )
    image = pixels(path)
    assert image.shape == (size[1], size[0], 3)
    assert_not_blank(image)
    # every panel has content: bright bars on black
    for left in range(0, size[0], 500):
        panel = image[60:, left + 20 : left + 480]
        assert (panel > 200).mean() > 0.02 and (panel < 30).mean() > 0.2
