"""Progress reporting: the library calls a callback, the CLI draws bars.

A callback receives :class:`Progress` events. ``total`` is known up front when possible;
``advance`` is the amount done since the last event (bytes unless ``unit`` says otherwise).
Library code must accept ``progress=None`` and then report nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    """One progress event: a ``start`` (with its total), an ``advance`` by some units, an ``end``."""

    kind: str  # "start" | "advance" | "end"
    advance: int = 0
    total: int | None = None
    unit: str = "B"
    label: str = ""


ProgressCallback = Callable[[Progress], None]


class Reporter:
    """Small helper so library loops can say ``rep.start(total)``, ``rep.advance(n)``, ``rep.end()``
    without checking for ``None`` each time."""

    __slots__ = ("_cb", "_label", "_unit")

    def __init__(self, callback: ProgressCallback | None, *, unit: str = "B", label: str = "") -> None:
        self._cb = callback
        self._unit = unit
        self._label = label

    def start(self, total: int | None) -> None:
        if self._cb is not None:
            self._cb(Progress("start", total=total, unit=self._unit, label=self._label))

    def advance(self, n: int) -> None:
        if self._cb is not None and n:
            self._cb(Progress("advance", advance=n, unit=self._unit, label=self._label))

    def end(self) -> None:
        if self._cb is not None:
            self._cb(Progress("end", unit=self._unit, label=self._label))
