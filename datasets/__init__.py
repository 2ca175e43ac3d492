"""The course's own ``datasets`` package: MNIST and Fashion-MNIST.

This is NOT Hugging Face's ``datasets`` library. Scripts put the repository
root first on ``sys.path`` before ``import datasets`` so that this package wins
over any other package of the same name; ``COURSE_DATASETS`` marks it::

    import sys; sys.path.insert(0, REPO_ROOT)
    import datasets
    assert getattr(datasets, "COURSE_DATASETS", False)

    data = datasets.load("mnist")        # or "fashion_mnist"
    data.train.images, data.train.labels # uint8 [55000, 28, 28, 1], uint8 [55000]
    data.dev, data.test                  # last 5,000 original training images; 10,000 test images

See :mod:`datasets.mnist` for the sources (cache, installed package, download),
the files' formats in :mod:`datasets.files`,
the SHA-256 verification and the environment variables.
"""

COURSE_DATASETS = True

from .mnist import (  # noqa: E402
    DEV_SIZE,
    NAMES,
    Dataset,
    DatasetError,
    DatasetWarning,
    Split,
    cache_dir_for,
    clear_memory_cache,
    data_folders,
    load,
    load_original,
)

__all__ = [
    "COURSE_DATASETS",
    "DEV_SIZE",
    "NAMES",
    "Dataset",
    "DatasetError",
    "DatasetWarning",
    "Split",
    "cache_dir_for",
    "clear_memory_cache",
    "data_folders",
    "load",
    "load_original",
]


def __getattr__(name: str):
    # Code written for Hugging Face's `datasets` (load_dataset, Dataset.from_dict, ...)
    # gets this explanation instead of a bare AttributeError.
    raise AttributeError(
        f"module 'datasets' has no attribute {name!r}: this is the course's own datasets "
        f"package ({__file__}), not Hugging Face's `datasets`, which it shadows because the "
        "repository root comes first on sys.path"
    )
