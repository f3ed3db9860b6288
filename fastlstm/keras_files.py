"""Reading Keras files as untrusted input: ``.keras`` zips, ``.weights.h5``
and legacy HDF5 full-model files.

Nothing is read before its declared size is checked: zip members against
their declared and compressed sizes (and a ratio, against zip bombs),
config JSON against a size and a nesting-depth cap, HDF5 datasets against
the shape the layer expects.  HDF5 datasets whose bytes live outside the
file (external raw storage, virtual datasets) and links that are not plain
hard links (soft and external links) are refused, so that reading a file
never opens another one.
"""
from __future__ import annotations

import contextlib
import io
import json
import re
import zipfile
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from . import validation

# config.json of a real model is kilobytes; 64 MiB leaves room for anything sane.
CONFIG_LIMIT = 64 * 2**20
# Deeper than any Keras config (about 10 levels), far below Python's recursion limit.
DEPTH_LIMIT = 64
# Keras's zips deflate float weights by ~1.1x and configs by ~10x; a zip
# bomb by 1000x.
RATIO_LIMIT = 200
# Dense, Embedding, LSTM ... weights: at most rank 3 (Conv1D's kernel).
_RANK_LIMIT = 3


def h5py_module() -> Any:
    try:
        import h5py
    except ImportError as error:
        raise ImportError("reading Keras weight files needs h5py: "
                          "pip install fastlstm[h5]") from error
    return h5py


# -------------------------------------------------------------------- JSON
def json_depth(text: bytes) -> int:
    """The deepest nesting of arrays and objects in JSON ``text``, without
    parsing it (strings blanked first, then a running count)."""
    bare = re.sub(rb'"(?:[^"\\]|\\.)*"', b'""', text)
    codes = np.frombuffer(bare, np.uint8)
    step = (np.isin(codes, (ord("["), ord("{"))).astype(np.int64)
            - np.isin(codes, (ord("]"), ord("}"))))
    return int(np.cumsum(step).max(initial=0))


def parse_config(text: bytes | str, where: str) -> dict[str, Any]:
    """JSON ``text`` of a model config, size and depth checked first."""
    data = text.encode() if isinstance(text, str) else text
    if len(data) > CONFIG_LIMIT:
        raise ValueError(f"{where}: the config is {len(data):,} bytes, over the limit of "
                         f"{CONFIG_LIMIT:,}")
    depth = json_depth(data)
    if depth > DEPTH_LIMIT:
        raise ValueError(f"{where}: the config nests {depth} levels deep, over the limit "
                         f"of {DEPTH_LIMIT}")
    try:
        config = json.loads(data)
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"{where}: the config is not valid JSON: {error}") from None
    if not isinstance(config, dict):
        raise ValueError(f"{where}: the config must be a JSON object, got "
                         f"{type(config).__name__}")
    return config


# --------------------------------------------------------------------- zip
def _member(archive: zipfile.ZipFile, name: str, limit: int, where: str) -> bytes:
    try:
        info = archive.getinfo(name)
    except KeyError:
        raise ValueError(f"{where}: the archive has no {name!r} (it has "
                         f"{sorted(archive.namelist())[:20]})") from None
    if info.file_size > limit:
        raise ValueError(f"{where}: {name} declares {info.file_size:,} bytes, over the "
                         f"limit of {limit:,}")
    if info.file_size > RATIO_LIMIT * max(info.compress_size, 1) and info.file_size > 2**20:
        raise ValueError(f"{where}: {name} expands {info.file_size:,} bytes from "
                         f"{info.compress_size:,} (over {RATIO_LIMIT}x, the limit)")
    try:
        with archive.open(info) as member:
            # Read one byte past the declared size: a member that holds more
            # than it declares is refused, not read to its end.
            data = member.read(info.file_size + 1)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as error:
        raise ValueError(f"{where}: {name} is damaged: {error}") from None
    if len(data) != info.file_size:
        raise ValueError(f"{where}: {name} holds other than the {info.file_size:,} bytes "
                         f"it declares")
    return data


def read_keras_archive(path: str) -> tuple[dict[str, Any], bytes]:
    """The model config and the bytes of ``model.weights.h5`` of a ``.keras`` file."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, ValueError, EOFError) as error:
        raise ValueError(f"{path}: not a .keras file (a zip archive): {error}") from None
    with archive:
        config = parse_config(_member(archive, "config.json", CONFIG_LIMIT, path),
                              f"{path}: config.json")
        weights_size = archive.getinfo("model.weights.h5").file_size if (
            "model.weights.h5" in archive.namelist()) else 0
        validation.affordable(weights_size, 1, f"{path}: model.weights.h5")
        weights = _member(archive, "model.weights.h5", max(weights_size, 1), path)
    return config, weights


@contextlib.contextmanager
def damaged_as_value_error(where: str) -> Iterator[None]:
    """HDF5's errors on damaged files (OSError, KeyError, RuntimeError,
    OverflowError from h5py) as one ValueError naming the file."""
    try:
        yield
    except (OSError, KeyError, RuntimeError, OverflowError) as error:
        raise ValueError(f"{where}: damaged HDF5 data: {error}") from None


def open_h5(source: str | bytes) -> Any:
    """An h5py File on a path or on bytes (a member of a .keras zip)."""
    h5py = h5py_module()
    target = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        return h5py.File(target, "r")
    except (OSError, OverflowError, ValueError) as error:
        # A damaged superblock: HDF5's error, or an offset h5py cannot seek to.
        raise ValueError(f"{source if isinstance(source, str) else 'model.weights.h5'}: "
                         f"not an HDF5 file: {error}") from None


# -------------------------------------------------------------------- HDF5
def child(group: Any, name: str, where: str) -> Any:
    """``group[name]``, followed only through hard links (one path component)."""
    h5py = h5py_module()
    link = group.get(name, getlink=True)
    if link is None:
        raise ValueError(f"{where}: {group.name} has no entry {name!r} "
                         f"(it has {sorted(group)[:20]})")
    if not isinstance(link, h5py.HardLink):
        raise ValueError(f"{where}: {group.name}/{name} is a {type(link).__name__}; "
                         f"fastlstm reads only entries stored in the file itself")
    return group[name]


def path(group: Any, names: str, where: str) -> Any:
    """``group["a/b/c"]`` through hard links only."""
    for name in names.split("/"):
        if name:
            group = child(group, name, where)
    return group


def read_dataset(dataset: Any, shape: Sequence[int | None], where: str) -> np.ndarray[Any, Any]:
    """The array of ``dataset``, after checking that it is a numeric dataset
    stored in the file with the ``shape`` expected (None: any size)."""
    h5py = h5py_module()
    name = dataset.name if hasattr(dataset, "name") else "?"
    if not isinstance(dataset, h5py.Dataset):
        raise ValueError(f"{where}: {name} must be a dataset, got a {type(dataset).__name__}")
    if dataset.is_virtual:
        raise ValueError(f"{where}: dataset {name} is a virtual dataset (its data lives in "
                         f"other files); fastlstm reads only data stored in the file")
    if dataset.id.get_create_plist().get_external_count():
        raise ValueError(f"{where}: dataset {name} has external storage (its data lives in "
                         f"other files); fastlstm reads only data stored in the file")
    if dataset.dtype.kind not in "fiub" or dataset.dtype.subdtype is not None:
        raise ValueError(f"{where}: dataset {name} must hold numbers, got dtype "
                         f"{dataset.dtype}")
    actual = dataset.shape
    if actual is None or len(actual) != len(shape) or any(
            e is not None and e != a for e, a in zip(shape, actual, strict=True)):
        expected = "(" + ", ".join("?" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{where}: dataset {name} must have shape {expected}, got {actual}")
    if len(actual) > _RANK_LIMIT:
        raise ValueError(f"{where}: dataset {name} has rank {len(actual)}, over "
                         f"{_RANK_LIMIT}")
    validation.affordable(int(np.prod(actual, dtype=np.int64)), dataset.dtype.itemsize,
                          f"{where}: dataset {name}")
    return np.asarray(dataset[()])


def read_attribute(node: Any, key: str, where: str, limit: int = CONFIG_LIMIT) -> Any:
    """``node.attrs[key]`` after checking its stored size."""
    if key not in node.attrs:
        return None
    size = node.attrs.get_id(key).get_storage_size()
    if size > limit:
        raise ValueError(f"{where}: attribute {key!r} is {size:,} bytes, over the limit "
                         f"of {limit:,}")
    return node.attrs[key]


def text(value: Any) -> str:
    """An HDF5 string attribute (bytes or str) as str."""
    if isinstance(value, bytes):
        return value.decode("utf8")
    if isinstance(value, np.ndarray) and value.shape == ():
        return text(value[()])
    return str(value)
