#!/usr/bin/env python3
"""VAE: the reference solution's test -ELBO, its training time per epoch, and the grader's
evaluation time over the 10,000 test images, against a baseline measured in the same run:
the same encode/decode work done in-process with the model, without the isolation.

    python bench/vae.py [--z_dim 2 --z_dim 100]
"""
import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import dataclasses  # noqa: E402

from grader.assignments import vae as spec  # noqa: E402
from grader.runner import grade  # noqa: E402


def in_process_evaluation_seconds(z_dim):
    """Baseline: encode the test set and decode K samples per image in this process."""
    import importlib.util
    import numpy as np
    module_spec = importlib.util.spec_from_file_location("vae_solution", ROOT / "solutions/vae.py")
    solution = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(solution)
    vae = solution.VAE(solution.parse_args(["--z_dim", str(z_dim)]))
    images = spec.mnist().test.images
    start = time.perf_counter()
    for i in range(0, len(images), spec.EVAL_BATCH):
        mean, sd = vae.encode(images[i:i + spec.EVAL_BATCH])
        for _ in range(spec.IW_SAMPLES):
            vae.decode(mean + sd * np.random.standard_normal(mean.shape))
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--z_dim", type=int, action="append", choices=sorted(spec.CONFIGS))
    args = parser.parse_args()
    z_dims = args.z_dim or sorted(spec.CONFIGS)
    checks = tuple(c for c in spec.ASSIGNMENT.checks if c.name.startswith("test -ELBO")
                   and int(c.name.rsplit(" ", 1)[1]) in z_dims)
    report = grade(dataclasses.replace(spec.ASSIGNMENT, checks=checks), ROOT / "solutions/vae.py")
    epochs = 10  # the reference's default --epochs
    for check in report["checks"]:
        d = check["details"]
        z_dim = int(check["name"].rsplit(" ", 1)[1])
        baseline = in_process_evaluation_seconds(z_dim)
        print(f"z_dim {z_dim}: test -ELBO {check['value']:.2f} (reconstruction {d['reconstruction']:.2f} + KL "
              f"{d['kl']:.2f}), IW -log p(x) K={d['iw_samples']} {d['iw_nll']:.2f} nats; training "
              f"{d['training_s']:.0f} s = {d['training_s'] / epochs:.1f} s/epoch; grader evaluation of 10,000 test "
              f"images {d['evaluation_s']:.2f} s vs in-process {baseline:.2f} s (ratio {d['evaluation_s'] / baseline:.2f}x)")


if __name__ == "__main__":
    main()
