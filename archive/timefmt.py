"""Times as influxd writes and reads them (Go's ``time`` layouts), one implementation each.

* :func:`rfc3339`: nanoseconds since the epoch as Go's ``RFC3339Nano`` in UTC (what ``inspect``,
  ``dump-tsm``, ``export`` and sealed archives print);
* :func:`parse_time`: a time given on the command line (RFC3339 with any offset, or integer
  nanoseconds), as influxd accepts it;
* :func:`parse_backup_stamp`: the ``20060102T150405Z`` stamp of a portable backup's file names;
* :func:`utc_now_seconds`: the current time as RFC3339 to the second (``2006-01-02T15:04:05Z``).
"""

from __future__ import annotations

import calendar
import datetime as _dt
import re
import time

from .errors import UsageError

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)


def rfc3339(ns: int | None) -> str | None:
    """Nanoseconds since the epoch as RFC3339 in UTC, like Go's RFC3339Nano (trailing zeros trimmed)."""
    if ns is None:
        return None
    secs, frac = divmod(ns, 1_000_000_000)
    try:
        dt = _EPOCH + _dt.timedelta(seconds=secs)
    except OverflowError:
        return str(ns)
    text = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + "Z"


_RFC3339 = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)[Tt ](\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?([Zz]|[+-]\d\d:\d\d)$"
)


def parse_time(text: str, *, option: str = "time") -> int:
    """A time given on the command line: RFC3339 (``2026-11-24T05:00:00Z``, fractional seconds up
    to nanoseconds, any offset) like influxd, or integer nanoseconds since the epoch."""
    t = text.strip()
    if re.fullmatch(r"-?\d+", t):
        value = int(t)
        if not -(1 << 63) <= value < (1 << 63):
            raise UsageError(f"{option} {text!r} is outside the int64 nanosecond range")
        return value
    m = _RFC3339.match(t)
    if not m:
        raise UsageError(f"{option} {text!r} is not RFC3339 (2026-11-24T05:00:00Z) or integer nanoseconds")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    try:
        base = calendar.timegm(_dt.datetime(year, month, day, hour, minute, second).timetuple())
    except ValueError as exc:
        raise UsageError(f"{option} {text!r}: {exc}") from None
    frac = int((m.group(7) or "").ljust(9, "0") or 0)
    zone = m.group(8)
    offset = 0 if zone in ("Z", "z") else (1 if zone[0] == "+" else -1) * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    value = (base - offset) * 1_000_000_000 + frac
    if not -(1 << 63) <= value < (1 << 63):
        raise UsageError(f"{option} {text!r} is outside the int64 nanosecond range")
    return value


def parse_backup_stamp(text: str) -> int | None:
    """Epoch seconds of a ``20060102T150405Z`` stamp (UTC), or None when it is not a valid one."""
    try:
        return calendar.timegm(time.strptime(text, "%Y%m%dT%H%M%SZ"))
    except ValueError:
        return None


def utc_now_seconds() -> str:
    """Now, in UTC, as ``2006-01-02T15:04:05Z``."""
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
