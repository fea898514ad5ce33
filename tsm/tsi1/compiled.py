"""The optional compiled tsi1 core, ``tsm/_tsispeed.c``, or None.

Built like ``tsm/_speedups.c`` (setup.py, an optional extension; tsm/compiled.py). Each function
returns None wherever the Python code must decide (anything not the plain valid case), so every
caller keeps its pure-Python path — the reference — and falls back to it. A build older than these
sources (an editable install not rebuilt) lacks some functions; it is then not used at all.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING

_FUNCTIONS = (
    "sum64", "series_file_key", "scan_segment", "log_inserts", "series_of_keys", "keyed_series", "shard_partitions"
)

_loaded: ModuleType | None
try:
    from .. import _tsispeed as _loaded
except ImportError:  # pragma: no cover - built without a C compiler
    _loaded = None

if _loaded is not None and not all(hasattr(_loaded, name) for name in _FUNCTIONS):
    _loaded = None  # pragma: no cover - a stale build

if TYPE_CHECKING:  # the checker sees the functions' types (tsm/_tsispeed.pyi); callers test for None
    from .. import _tsispeed as core
else:
    core = _loaded

__all__ = ["core"]
