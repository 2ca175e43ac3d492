#!/usr/bin/env python3
"""VAE: the reference solution's test -ELBO as the grader measures it, its training time per
epoch, and the cost of measuring a model that has never seen a test image: the grader's
evaluation (a new process that loads the trained weights and encodes the 10,000 test images,
another that loads them and decodes IW_SAMPLES codes per image) against a baseline measured in
the same run, the same encode/decode work done in this process with the model.

    python bench/vae.py [--z_dim 2 --z_dim 100] [--seed 42 --seed 7] [--solution FILE]

The models are measured as the grader measures them: the encoder and decoder rebuilt from their
Keras configs and weights by grader/measured.py, with the grader's secret noise. `--solution`
grades another file (e.g. a variant a student might write) instead of the reference.

The machine's load average is printed with the figures: on a shared machine they are slower.
"""

import argparse
import dataclasses
import importlib.util
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from grader.assignments import vae as spec  # noqa: E402
from grader.runner import grade  # noqa: E402


def in_process_evaluation_seconds(z_dim):
    """Baseline: encode the test set and decode IW_SAMPLES codes per image in this process."""
    import numpy as np

    module_spec = importlib.util.spec_from_file_location("vae_solution", ROOT / "solutions/vae.py")
    solution = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(solution)
    vae = solution.VAE(solution.parse_args(["--z_dim", str(z_dim)]))
    images = spec.mnist().test.images
    start = time.perf_counter()
    means, sds = zip(
        *(solution.encode(vae.encoder, images[i : i + spec.EVAL_BATCH]) for i in range(0, len(images), spec.EVAL_BATCH))
    )
    mean, sd = np.concatenate(means), np.concatenate(sds)
    for _ in range(spec.IW_SAMPLES):
        z = mean + sd * np.random.standard_normal(mean.shape)
        for i in range(0, len(images), spec.EVAL_BATCH):
            spec.bernoulli_nll(
                images[i : i + spec.EVAL_BATCH], solution.decode(vae.decoder, z[i : i + spec.EVAL_BATCH])
            )
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--z_dim", type=int, action="append", choices=sorted(spec.CONFIGS))
    parser.add_argument("--seed", type=int, action="append", help="The grader's seed (default 42).")
    parser.add_argument("--solution", type=Path, default=ROOT / "solutions/vae.py", help="The file to grade.")
    args = parser.parse_args()
    z_dims = args.z_dim or sorted(spec.CONFIGS)
    checks = tuple(
        c for c in spec.ASSIGNMENT.checks if c.name.startswith("test -ELBO") and int(c.name.rsplit(" ", 1)[1]) in z_dims
    )
    baselines = {}
    epochs = 10  # the reference's default --epochs
    for seed in args.seed or [42]:
        load = os.getloadavg()[0]
        report = grade(dataclasses.replace(spec.ASSIGNMENT, checks=checks), args.solution, seed=seed)
        report = report if isinstance(report, dict) else report.to_dict()
        for check in report["checks"]:
            d = check["details"]
            z_dim = int(check["name"].rsplit(" ", 1)[1])
            if not d or "phases_s" not in d:
                print(f"seed {seed}, z_dim {z_dim}: {'passed' if check['passed'] else 'FAILED'}: {check['message']}")
                continue
            if z_dim not in baselines:
                baselines[z_dim] = in_process_evaluation_seconds(z_dim)
            baseline, phases = baselines[z_dim], d["phases_s"]
            print(
                f"{args.solution.name}, seed {seed}, z_dim {z_dim}: test -ELBO {check['value']:.2f} (reconstruction {d['reconstruction']:.2f} "
                f"+ KL {d['kl']:.2f}), IW -log p(x) K={d['iw_samples']} {d['iw_nll']:.2f} nats, threshold "
                f"{spec.CONFIGS[z_dim][1]}; training {d['training_s']:.0f} s = {d['training_s'] / epochs:.1f} s/epoch; "
                f"evaluation in two new processes {d['evaluation_s']:.1f} s (encoding {phases['encoding']:.1f} s, "
                f"decoding {phases['decoding']:.1f} s, each with its process start) vs in-process {baseline:.1f} s "
                f"(ratio {d['evaluation_s'] / baseline:.2f}x); weights {d['weights_mb']} MiB; load average "
                f"{load:.1f} on {os.cpu_count()} cores"
            )


if __name__ == "__main__":
    main()
