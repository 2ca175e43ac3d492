"""What the assignments' checks share: naming the likely bug, drawing a figure, and the rule "k of
at most n trainings" (`trainings_until_decided`).

`likely_bug(got, candidates)`: a check that knows what the typical bugs produce compares the
submission's answer with each and names the first that matches. `figure(...)` and
`save(figure, path)`: a matplotlib Figure drawn without pyplot (figures are drawn from several
threads in a batch) and written as PNG, returning the path for `details["plot"]`.
"""

from pathlib import Path

import numpy as np


def likely_bug(got, candidates, *, atol=1e-4, rtol=1e-4, default=None):
    """The name of the first candidate {name: value, or callable returning it} whose value
    matches `got` (numpy allclose with the given tolerances), else `default`."""
    got = np.asarray(got, dtype=np.float64)
    for name, value in candidates.items():
        try:
            value = np.asarray(value() if callable(value) else value, dtype=np.float64)
            if value.shape == got.shape and np.allclose(got, value, atol=atol, rtol=rtol):
                return name
        except (ValueError, TypeError, ZeroDivisionError, FloatingPointError):
            continue
    return default


def figure(width, height, **subplots):
    """(figure, axes): a constrained-layout Figure of `width` x `height` inches and its axes."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.subplots(**subplots)


def save(fig, path, dpi=100):
    """Writes the figure as PNG (creating the folder) and returns the path as a string."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return str(path)


def trainings_until_decided(ctx, trainings, required, train_one, goal):
    """The results (dicts with "passed") of train_one(1), train_one(2), ... up to `trainings`,
    stopping as soon as `required` of them passed or can no longer pass: the rule "k of at most n
    trainings" of the learned models' checks. `goal` says what a training must do, for the progress."""
    results = []
    for index in range(1, trainings + 1):
        passed = sum(r["passed"] for r in results)
        if passed >= required or passed + trainings - index + 1 < required:
            break
        ctx.progress(f"training {index} (up to {trainings}; {required} must {goal})")
        results.append(train_one(index))
    return results
