"""Turn the library's progress events into tqdm bars on stderr."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # an annotation only: --help and --version need no dataclasses (start-up)
    from ..archive.progress import Progress


class ProgressBars:
    """Callable progress sink: one bar per ``label`` between its ``start`` and ``end`` events."""

    def __init__(self, *, enabled: bool, verb: str | None = None) -> None:
        self.enabled = enabled
        self.verb = verb
        self._bars: dict = {}

    def label(self, library_label: str) -> str:
        """The bar's label for the running verb: ``trim`` and ``backup`` run the library's
        ``convert`` (shown under their own name), ``pack`` of a server root backs it up first."""
        if library_label == "convert" and self.verb and self.verb != "convert":
            return self.verb if self.verb in ("trim", "backup") else f"{self.verb}: backing up"
        return library_label

    def __call__(self, ev: Progress) -> None:
        if not self.enabled:
            return
        bar = self._bars.get(ev.label)
        if ev.kind == "start":
            from tqdm import tqdm  # imported on the first bar: startup stays fast

            if bar is not None:
                bar.close()
            self._bars[ev.label] = tqdm(
                total=ev.total,
                unit=ev.unit,
                unit_scale=ev.unit == "B",
                unit_divisor=1024,
                desc=self.label(ev.label) or None,
                file=sys.stderr,
                leave=False,
                dynamic_ncols=True,
            )
        elif ev.kind == "advance" and bar is not None:
            bar.update(ev.advance)
        elif ev.kind == "end" and bar is not None:
            bar.close()
            del self._bars[ev.label]

    def __enter__(self) -> ProgressBars:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for bar in self._bars.values():
            bar.close()
        self._bars.clear()
