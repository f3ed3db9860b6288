"""What to do when ``import fastlstm`` finds an uncompiled source tree.

Python puts the current directory first on ``sys.path`` (``python -m``,
``python -c``, the REPL), so in the root of a checkout the source tree's
``fastlstm/`` shadows an installed fastlstm; unless the kernel was built in
place (``pip install -e .``) that tree has no compiled modules, and the
first import of one used to fail as a confusing circular import.
"""
from __future__ import annotations

import importlib.machinery
import os


def uncompiled_error(error: ImportError) -> ImportError:
    """A one-line ImportError saying what to do if this package directory
    holds no compiled module at all; otherwise ``error`` unchanged (a build
    that exists but does not load is another problem)."""
    here = os.path.dirname(os.path.abspath(__file__))
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    if any(name.endswith(suffixes) for name in os.listdir(here)):
        return error
    # name=: runpy (python -m fastlstm) then prints this one line, no traceback.
    return ImportError(
        f"{here} is fastlstm's source tree without its compiled kernel (from the checkout's "
        f"root it shadows an installed fastlstm): run from another directory, or build it in "
        f"place with: pip install -e .",
        name=__package__, path=here)
