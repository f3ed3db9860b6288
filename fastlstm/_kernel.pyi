"""Type stub of the compiled kernel (src/_kernel.pyx): inference and training.

Arrays are C-contiguous, all of one float dtype (float32 or float64), shaped
as the kernel's docstrings say; None stands for an absent mask or output.
"""
from typing import Any, Literal, TypedDict, overload

import numpy as np
from numpy.typing import NDArray

_Array = NDArray[Any]

class _Info(TypedDict):
    isa: str
    supported_isas: list[str]
    thread_pool: bool
    default_threads: int

ISA_NAMES: tuple[str, ...]
THREAD_POOL: bool
DEFAULT_THREADS: int

def supported_isas() -> list[str]: ...
def set_isa(name: str) -> None: ...
def isa() -> str: ...
def current_isa() -> int: ...
def info() -> _Info: ...
@overload
def activate(kind: int, x: NDArray[np.float32]) -> NDArray[np.float32]: ...
@overload
def activate(kind: int, x: NDArray[np.float64]) -> NDArray[np.float64]: ...
def pool_workers() -> int: ...

class Packed:
    """Weights in the layout of one instruction set's tiles; read-only."""
    @property
    def kernel(self) -> _Array: ...
    @property
    def recurrent_kernel(self) -> _Array: ...
    @property
    def bias(self) -> _Array: ...
    @property
    def isa(self) -> str: ...
    @property
    def isa_code(self) -> int: ...
    @property
    def width(self) -> int: ...
    @property
    def rows(self) -> int: ...
    @property
    def selected(self) -> int: ...
    @property
    def units(self) -> int: ...
    @property
    def padded(self) -> int: ...

def pack(kernel: _Array, recurrent_kernel: _Array, bias: _Array) -> Packed: ...
def plan(B: int, T: int, I: int, U: int, num_threads: int, isa_name: str | None = None,
         training: bool = False) -> tuple[int, Literal["rows", "units"]]: ...
def forward(x: _Array, packed: Packed, h: _Array, c: _Array, y: _Array,
            mask: NDArray[np.uint8] | None, seq: _Array | None, go_backwards: bool,
            activation: int, recurrent_activation: int, num_threads: int, /) -> None: ...
def train_forward(x: _Array, features: int, packed: Packed, h: _Array, c: _Array,
                  y: _Array, mask: NDArray[np.uint8] | None, seq: _Array | None,
                  rec: _Array, hs: _Array, go_backwards: bool, activation: int,
                  recurrent_activation: int, num_threads: int, /) -> None: ...
def train_backward(x: _Array, features: int, packed: Packed, kernel_t: _Array | None,
                   recurrent_kernel_t: _Array, rec: _Array, hs: _Array, dz: _Array,
                   mask: NDArray[np.uint8] | None, dseq: _Array | None, dh: _Array,
                   dc: _Array, dy: _Array, dx: _Array | None, dkernel: _Array,
                   drecurrent_kernel: _Array, dbias: _Array, go_backwards: bool,
                   activation: int, recurrent_activation: int, num_threads: int,
                   /) -> None: ...
def dropout_forward(xs: _Array, kernel: _Array, recurrent_kernel: _Array, bias: _Array,
                    h: _Array, c: _Array, y: _Array, mask: NDArray[np.uint8] | None,
                    rmask: _Array | None, seq: _Array | None, gates: _Array, cs: _Array,
                    acts: _Array, hp: _Array, go_backwards: bool, activation: int,
                    recurrent_activation: int, isa: int, /) -> None: ...
def dropout_backward(xs: _Array, kernel: _Array, recurrent_kernel_t: _Array, gates: _Array,
                     dz: _Array, cs: _Array, acts: _Array, hp: _Array, c0: _Array,
                     mask: NDArray[np.uint8] | None, rmask: _Array | None,
                     dseq: _Array | None, dh: _Array, dc: _Array, dy: _Array,
                     dxs: _Array | None, dkernel: _Array, drecurrent_kernel: _Array,
                     dbias: _Array, go_backwards: bool, activation: int,
                     recurrent_activation: int, /) -> None: ...
