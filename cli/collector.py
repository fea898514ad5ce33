"""The cycle collector paused around start-up imports (see :func:`paused_collector`)."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def paused_collector(*, freeze: bool = False) -> Iterator[None]:
    """Start-up imports (typer and the app, a verb's module, the operations it runs) make many
    long-lived objects and no cyclic garbage, so the cycle collector is paused meanwhile and
    restored as found after. ``freeze``: what exists then is also left out of every later pass
    (``gc.freeze``; the app's objects live as long as the process)."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if freeze:
            gc.freeze()
        if collecting:
            gc.enable()
