"""Type stub of the compiled inference kernel (src/_kernel.pyx)."""
from typing import Any

import numpy as np
from numpy.typing import NDArray

_Array = NDArray[Any]

def forward(x: _Array, kernel: _Array, recurrent_kernel: _Array, bias: _Array, h: _Array,
            c: _Array, y: _Array, mask: NDArray[np.uint8] | None = None,
            seq: _Array | None = None, go_backwards: bool = False, activation: int = 0,
            recurrent_activation: int = 1) -> None: ...
