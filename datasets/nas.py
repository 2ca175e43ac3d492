"""The tabulated NAS benchmark, datasets/nas_table.json (made by the course repository's builder).

from datasets.nas import load_table
table = load_table()            # verified by its SHA-256 in datasets/checksums.json
table.decisions                 # [(name, values)], e.g. ("block1_width", [8, 16, 32])
table.choices                   # int [N, T]: the choice index of every decision, per architecture
table.dev_accuracy              # float [N, seeds]: development accuracy of each training
table.test_accuracy, table.params, table.flops
table.index((0, 2, 1, 0, 2))    # the row of an architecture
"""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .mnist import DatasetError

HERE = Path(__file__).resolve().parent
TABLE = HERE / "nas_table.json"


@dataclass(frozen=True)
class Table:
    header: dict
    decisions: list
    choices: np.ndarray
    params: np.ndarray
    flops: np.ndarray
    dev_accuracy: np.ndarray
    test_accuracy: np.ndarray

    @property
    def num_decisions(self):
        return len(self.decisions)

    @property
    def num_choices(self):
        return len(self.decisions[0][1])

    def index(self, architecture):
        """The row of an architecture given as one choice index per decision (table order)."""
        return int(np.ravel_multi_index(tuple(int(c) for c in architecture), [len(v) for _, v in self.decisions]))

    def describe(self, architecture):
        return ", ".join(f"{name}={values[int(c)]}" for (name, values), c in zip(self.decisions, architecture))


def load_table(path=TABLE, checksums=HERE / "checksums.json"):
    """The table, after checking its SHA-256 against checksums.json's "nas_table" entry."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DatasetError(
            f"the NAS table {path} cannot be read ({error.strerror}); it ships with the course's "
            "repository, whose builder rebuilds it"
        ) from None
    expected = json.loads(Path(checksums).read_text())["nas_table"]["sha256"]
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise DatasetError(
            f"the NAS table {path} has SHA-256 {actual}, expected {expected} "
            "(datasets/checksums.json): the file is corrupt or was edited"
        )
    table = json.loads(data)
    decisions = [(d["name"], list(d["values"])) for d in table["decisions"]]
    rows = table["architectures"]
    result = Table(
        header={k: v for k, v in table.items() if k != "architectures"},
        decisions=decisions,
        choices=np.array([r["choices"] for r in rows], np.int64),
        params=np.array([r["params"] for r in rows], np.int64),
        flops=np.array([r["flops"] for r in rows], np.int64),
        dev_accuracy=np.array([r["dev_accuracy"] for r in rows], np.float64),
        test_accuracy=np.array([r["test_accuracy"] for r in rows], np.float64),
    )
    order = [result.index(c) for c in result.choices]
    if order != list(range(len(rows))) or len(rows) != np.prod([len(v) for _, v in decisions]):
        raise DatasetError(f"the NAS table {path} does not list every architecture once, in order")
    return result
