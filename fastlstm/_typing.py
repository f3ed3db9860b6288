"""Type aliases shared by the public API's annotations."""
from typing import Any

from numpy.typing import NDArray

Array = NDArray[Any]
# What a layer returns: one array, or a list (with return_state, or both
# directions of a Bidirectional with merge_mode=None).
Output = Array | list[Array]
# An input shape; None stands for a size not known yet (Keras's convention).
Shape = tuple[int | None, ...]
