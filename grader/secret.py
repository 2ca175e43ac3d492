"""The grader's secret key: what no submission can read, and what only the grader can make.

The key lives in a file readable only by the user who grades (`$GRADER_KEY_FILE`, default
`~/.config/course-grader/key`, created on first use with mode 0600); the sandbox never sees
it. It serves two purposes:

- `sign(data)`: a keyed digest (HMAC-SHA256) of a report, so that a batch reuses only the
  reports this grader wrote itself: a report forged or edited in OUT/ does not verify.
- `rng(seed, *labels)`: random generators that are reproducible for the grader (same key,
  seed and labels) but unpredictable to a submission, e.g. the secret transformation of
  CartPole's observations and actions that makes a hand-coded controller useless.
"""

import functools
import hashlib
import hmac
import json
import os
from pathlib import Path

import numpy as np


def key_file():
    if os.environ.get("GRADER_KEY_FILE"):
        return Path(os.environ["GRADER_KEY_FILE"])
    config = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(config) / "course-grader" / "key"


@functools.cache
def _key(path):
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        data = os.urandom(32).hex().encode()
        try:  # O_EXCL: two graders starting at once agree on the first key written
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as file:
                file.write(data)
        except FileExistsError:
            data = path.read_bytes()
    if len(data.strip()) < 32:
        raise RuntimeError(f"the grader's key file {path} is too short (delete it to make a new one)")
    return data.strip()


def key():
    return _key(str(key_file()))


def sign(data):
    """HMAC-SHA256 (hex) of a JSON-able value, canonically encoded."""
    blob = json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=True).encode()
    return hmac.new(key(), blob, hashlib.sha256).hexdigest()


def verify(data, signature):
    return isinstance(signature, str) and hmac.compare_digest(sign(data), signature)


def rng(seed, *labels):
    """A numpy generator from the key, the grader's seed and the labels."""
    digest = hmac.new(key(), repr((seed,) + labels).encode(), hashlib.sha256).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))
