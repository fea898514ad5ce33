"""Turn the library's progress events into tqdm bars on stderr."""

from __future__ import annotations

import sys

from ..archive.progress import Progress


class ProgressBars:
    """Callable progress sink: one bar per ``label`` between its ``start`` and ``end`` events."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled
        self._bars: dict = {}

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
                desc=ev.label or None,
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
