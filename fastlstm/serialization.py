"""fastlstm's own file format: a layer or stack's config (JSON) and weights
in one ``.npz``, no pickle.  ``fastlstm.load`` (in ``fastlstm.models``)
builds the object again from what ``Reader`` reads.

Files are untrusted: ``Reader`` reads the ``.npy`` headers of the weights
(shape and dtype) and checks them against the sizes their zip entries
hold before it reads any data, so that ``fastlstm.load`` can compare them
with the config first; the config's JSON is limited in size and depth.
"""
from __future__ import annotations

import json
import os
import re
import tokenize
import zipfile
import zlib
from types import TracebackType
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from . import keras_io, quantization, validation

# Limits on the config entry: real configs are a few KB, about 8 levels deep.
CONFIG_CHARS = 2**20
CONFIG_DEPTH = 32

_NPY_MAGIC = b"\x93NUMPY"
# What a damaged zip archive or entry raises while it is read.
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError,
               RuntimeError)
_WEIGHT = re.compile(r"weight_(0|[1-9][0-9]*)\.npy")


# The suffixes of Keras's own formats, which no LSTMP layer can be written in.
KERAS_SUFFIXES = (".keras", ".h5")


def projected_layer(obj: Any) -> Any:
    """The first LSTM with a projection (proj_size) in a layer or stack, or None."""
    if getattr(obj, "proj_size", 0):
        return obj
    for inner in (*getattr(obj, "layers", ()), getattr(obj, "forward_layer", None),
                  getattr(obj, "backward_layer", None)):
        found = None if inner is None else projected_layer(inner)
        if found is not None:
            return found
    return None


def save(obj: Any, path: str | os.PathLike[str]) -> None:
    """Write the config and the weights (when built) of a fastlstm layer or
    stack ``obj`` to ``path`` (.npz)."""
    projected = projected_layer(obj)
    if projected is not None and os.fspath(path).endswith(KERAS_SUFFIXES):
        raise ValueError(f"save: {projected!r} has a projection (proj_size="
                         f"{projected.proj_size}), which Keras's LSTM does not have, so it "
                         f"cannot be written in a Keras format ({os.fspath(path)!r}); save "
                         f"writes fastlstm's .npz (give a path ending in .npz)")
    try:
        config = json.dumps(keras_io.to_dict(obj))
    except TypeError as error:  # a callable initializer
        raise TypeError(f"save: the config of {obj!r} is not JSON-serialisable "
                        f"(callable initializers cannot be saved): {error}") from None
    arrays = {"config": np.array(config)}
    if obj.built:
        arrays.update({f"weight_{i}": w for i, w in enumerate(obj.get_weights())})
        arrays.update(quantization.file_entries(obj))   # int8 layers' own weights
    # NumPy's stub types every keyword as savez's allow_pickle flag.
    np.savez(os.fspath(path), **arrays)  # type: ignore[arg-type]


class Declared(NamedTuple):
    """What a ``.npy`` entry's header declares."""

    shape: tuple[int, ...]
    dtype: np.dtype[Any]


class Reader:
    """An open fastlstm ``.npz`` file: ``config`` (the parsed JSON) and
    ``declared`` (shape and dtype of each weight, from the headers) are read
    on opening; ``weights()`` reads the data.  Any malformed part is a
    ValueError naming the file and the entry."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        with open(self.path, "rb") as file:
            start = file.read(len(_NPY_MAGIC))
        if start == _NPY_MAGIC:
            raise ValueError(
                f"{self.path} is a single .npy array; fastlstm.load reads the .npz files "
                f"that save() writes (a zip of a 'config' entry and 'weight_<i>' arrays)")
        try:
            self._archive = zipfile.ZipFile(self.path)
        except _ZIP_ERRORS as error:
            raise ValueError(f"{self.path} is not a fastlstm .npz file (a zip archive "
                             f"written by save()): {error}") from None
        try:
            self.config = self._read_config()
            self.declared = [self._header(name) for name in self._weight_names()]
            # int8 layers' own arrays (quantization.file_entries), by name.
            self.declared_int8 = {name[:-4]: self._header(name)
                                  for name in self._archive.namelist()
                                  if name.startswith("int8_") and name.endswith(".npy")}
        except BaseException:
            self.close()
            raise

    def _weight_names(self) -> list[str]:
        indices = sorted(int(match.group(1)) for name in self._archive.namelist()
                         if (match := _WEIGHT.fullmatch(name)))
        if indices != list(range(len(indices))):
            raise ValueError(f"{self.path}: the weight entries must be weight_0 ... "
                             f"weight_{len(indices) - 1}, got indices {indices[:10]}")
        return [f"weight_{i}.npy" for i in indices]

    def _open(self, name: str) -> Any:
        try:
            return self._archive.open(name)
        except KeyError:
            raise ValueError(
                f"{self.path} is not a fastlstm file: it has no {name[:-4]!r} entry") from None
        except _ZIP_ERRORS as error:
            raise ValueError(f"{self.path}: entry {name!r} cannot be read: {error}") from None

    def _header(self, name: str) -> Declared:
        """The declared shape and dtype of entry ``name``, checked against
        the bytes the entry holds and refused unless plain numbers."""
        with self._open(name) as entry:
            try:
                version = np.lib.format.read_magic(entry)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(entry)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(entry)
                else:
                    raise ValueError(f".npy format version {version} is not supported")
                offset = entry.tell()
            except (ValueError, SyntaxError, tokenize.TokenError, *_ZIP_ERRORS) as error:
                # NumPy parses the header's text with tokenize and ast, whose
                # errors on garbled text are not ValueErrors.
                raise ValueError(f"{self.path}: entry {name!r} is not a .npy array: "
                                 f"{error}") from None
        if dtype.hasobject or dtype.kind not in "biufU" or dtype.fields is not None:
            raise ValueError(f"{self.path}: entry {name!r} holds {dtype} values; fastlstm "
                             f"files hold numbers (and the config's text), never objects")
        nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
        held = self._archive.getinfo(name).file_size - offset
        if nbytes != held:
            raise ValueError(f"{self.path}: entry {name!r} declares shape {shape} of {dtype} "
                             f"({nbytes:,} bytes) but holds {held:,} bytes")
        return Declared(tuple(shape), dtype)

    def _read(self, name: str) -> NDArray[Any]:
        with self._open(name) as entry:
            try:
                return np.lib.format.read_array(entry, allow_pickle=False)
            except (ValueError, *_ZIP_ERRORS) as error:
                raise ValueError(f"{self.path}: entry {name!r} cannot be read: "
                                 f"{error}") from None

    def _read_config(self) -> Any:
        declared = self._header("config.npy")
        if declared.dtype.kind != "U" or declared.shape != ():
            raise ValueError(f"{self.path}: the 'config' entry must be one JSON string, got "
                             f"shape {declared.shape} of {declared.dtype}")
        if declared.dtype.itemsize // 4 > CONFIG_CHARS:
            raise ValueError(f"{self.path}: the config holds {declared.dtype.itemsize // 4:,} "
                             f"characters, more than the limit of {CONFIG_CHARS:,}")
        text = str(self._read("config.npy"))
        return validation.json_document(text, f"the config of {self.path}", CONFIG_DEPTH)

    def weights(self) -> list[NDArray[Any]]:
        """The weight arrays, in order."""
        return [self._read(f"weight_{i}.npy") for i in range(len(self.declared))]

    def int8_arrays(self) -> dict[str, NDArray[Any]]:
        """The int8 layers' arrays by entry name (see ``quantization.restore``)."""
        return {name: self._read(name + ".npy") for name in self.declared_int8}

    def close(self) -> None:
        self._archive.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
