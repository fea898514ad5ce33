"""The optional compiled core, ``tsm/_speedups.c``, or None.

``pip install`` builds it where a C compiler is present (setup.py, an optional extension). Each of
its functions returns None wherever the Python code must decide (invalid input, anything it is
not sure of), so every caller keeps its pure-Python path and falls back to it. A build older than
these sources (an editable install not rebuilt) lacks some functions; it is then not used at all.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING

_FUNCTIONS = (
    "decode", "encode", "s8b_decode", "s8b_encode_all", "s8b_encode_windowed",  # codecs
    "scan_index", "index_frames",  # the TSM index
    "int64_order", "all_exact", "wrap_sums",  # list checks and running sums
    "wal_candidate", "block_count",  # WAL resynchronisation prefilter, a block's claimed count
    "lp_window", "lp_decode", "lp_tables", "lp_float_repr",  # export's lines (archive/ops/lineproto.py)
    "crc32", "check_frames",  # verify and checked copies: every frame of a window (archive/ops/tsmcopy.py)
    "ts_encode", "int_encode",  # block encoders (trim's boundary blocks)
)

_loaded: ModuleType | None
try:
    from . import _speedups as _loaded
except ImportError:  # pragma: no cover - built without a C compiler
    _loaded = None

if _loaded is not None and not all(hasattr(_loaded, name) for name in _FUNCTIONS):
    _loaded = None  # pragma: no cover - a stale build

if TYPE_CHECKING:  # the checker sees the functions' types (tsm/_speedups.pyi); callers test for None
    from . import _speedups as core
else:
    core = _loaded

__all__ = ["core"]
