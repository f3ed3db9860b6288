"""Type stub of the compiled training kernel (src/_train.pyx).

Arrays are C-contiguous, all of one float dtype (float32 or float64), shaped
as the kernel's docstrings say; None stands for an absent mask or output.
"""
from typing import Any

import numpy as np
from numpy.typing import NDArray

_Array = NDArray[Any]

def forward(xs: _Array, kernel: _Array, recurrent_kernel: _Array, bias: _Array,
            h: _Array, c: _Array, y: _Array, mask: NDArray[np.uint8] | None,
            rmask: _Array | None, seq: _Array | None, gates: _Array, cs: _Array,
            acts: _Array, hp: _Array, go_backwards: bool, activation: int,
            recurrent_activation: int, isa: int, /) -> None: ...
def backward(xs: _Array, kernel: _Array, recurrent_kernel_t: _Array, gates: _Array,
             dz: _Array, cs: _Array, acts: _Array, hp: _Array, c0: _Array,
             mask: NDArray[np.uint8] | None, rmask: _Array | None, dseq: _Array | None,
             dh: _Array, dc: _Array, dy: _Array, dxs: _Array | None, dkernel: _Array,
             drecurrent_kernel: _Array, dbias: _Array, go_backwards: bool, activation: int,
             recurrent_activation: int, /) -> None: ...
def threads_for(B: int, T: int, U: int, num_threads: int, /) -> int: ...
def packed_forward(x: _Array, kernel: _Array, bias: _Array, recurrent_kernel: _Array,
                   h: _Array, c: _Array, y: _Array, mask: NDArray[np.uint8] | None,
                   seq: _Array | None, rec: _Array, hs: _Array, go_backwards: bool,
                   activation: int, recurrent_activation: int, isa: int, rows: int,
                   num_threads: int, /) -> None: ...
def packed_backward(x: _Array, kernel_t: _Array | None, recurrent_kernel_t: _Array,
                    rec: _Array, hs: _Array, dz: _Array, mask: NDArray[np.uint8] | None,
                    dseq: _Array | None, dh: _Array, dc: _Array, dy: _Array,
                    dx: _Array | None, dkernel: _Array, drecurrent_kernel: _Array,
                    dbias: _Array, go_backwards: bool, activation: int,
                    recurrent_activation: int, isa: int, rows: int, num_threads: int,
                    /) -> None: ...
