"""Read a pickle that may hold plain data only: numpy arrays and scalars, bytes, str, numbers,
lists, tuples and dicts. Anything else the file names (a class, a function such as ``os.system``)
is refused before it is looked up, so a planted file cannot run code.

CIFAR-10's official python version is a pickle per batch; this is how it is read.
"""

from __future__ import annotations

import pickle
from typing import IO, Any

# the globals a pickled numpy array or scalar refers to (numpy 1 and 2 module paths), and the
# codec Python 3 uses for bytes in protocol 2 pickles: constructors of plain data, nothing more
ALLOWED = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }
)


class _PlainUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED:
            raise pickle.UnpicklingError(
                f"it names {module}.{name}, which is not plain data (refused: unpickling it could run code)"
            )
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        raise pickle.UnpicklingError("it holds a persistent reference, which is not plain data")


def load_plain(fh: IO[bytes], encoding: str = "bytes") -> Any:
    """Unpickle ``fh`` allowing plain data only (see the module docstring); raises
    ``pickle.UnpicklingError`` naming the first thing it refused."""
    return _PlainUnpickler(fh, encoding=encoding).load()
