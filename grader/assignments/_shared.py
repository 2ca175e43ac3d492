"""What the assignments' checks share: naming the likely bug, and drawing a figure.

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
