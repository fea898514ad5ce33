"""influxd's HTTP API, as much as an online restore needs: the version (``/ping``), the
databases and users there, and InfluxQL statements (continuous queries, grants).

Credentials come from ``INFLUX_USERNAME`` / ``INFLUX_PASSWORD``, like the ``influx`` CLI, sent
as HTTP basic authentication. Every request has a timeout; a failure is one line naming the URL.
Answers are read up to :data:`MAX_ANSWER` bytes (the server's answers to these statements are
small; a larger one is refused, never buffered without bound).
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.parse
import urllib.request

from ...errors import TargetError, UnsupportedError, UsageError

MAX_ANSWER = 64 << 20
DEFAULT_TIMEOUT = 60.0


def default_http_url(host: str) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:8086"


class HttpApi:
    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise UsageError(f"--http {url!r} is not an http:// or https:// URL")
        self.url = url.rstrip("/")
        self.timeout = timeout
        user = os.environ.get("INFLUX_USERNAME")
        password = os.environ.get("INFLUX_PASSWORD", "")
        self._auth = None
        if user:
            self._auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def _open(self, path: str, data: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
        req = urllib.request.Request(self.url + path, data=data, method="POST" if data is not None else "GET")
        if data is not None:
            req.add_header("Content-Type", "application/x-www-form-urlencoded")
        if self._auth:
            req.add_header("Authorization", self._auth)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                body = resp.read(MAX_ANSWER + 1)
                status, headers = resp.status, dict(resp.headers.items())
        except urllib.error.HTTPError as exc:
            body = exc.read(MAX_ANSWER + 1)
            status, headers = exc.code, dict(exc.headers.items())
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TargetError(
                f"cannot reach influxd's HTTP API at {self.url} ({reason}); pass --http URL"
            ) from None
        if len(body) > MAX_ANSWER:
            raise TargetError(f"{self.url}{path}: answer larger than {MAX_ANSWER} bytes")
        return status, headers, body

    def version(self) -> str:
        status, headers, _ = self._open("/ping")
        if status != 204:
            raise TargetError(f"{self.url}/ping answered HTTP {status}: not influxd's HTTP API? (pass --http URL)")
        lowered = {k.lower(): v for k, v in headers.items()}
        return lowered.get("x-influxdb-version", "")

    def query(self, q: str, db: str | None = None) -> list[dict]:
        """Run ``q`` (one or more statements); the results, one per statement. A statement's error
        is returned in its result (``"error"``); an HTTP or authentication error raises."""
        params = {"q": q}
        if db is not None:
            params["db"] = db
        status, _, body = self._open("/query", urllib.parse.urlencode(params).encode())
        try:
            doc = json.loads(body) if body else {}
        except ValueError:
            doc = {}
        if status in (401, 403):
            raise TargetError(
                f"{self.url}: authentication failed (HTTP {status}): set INFLUX_USERNAME and INFLUX_PASSWORD to an "
                "admin user"
            )
        if status != 200 or not isinstance(doc, dict) or "results" not in doc:
            err = doc.get("error") if isinstance(doc, dict) else None
            raise TargetError(f"{self.url}/query answered HTTP {status}: {err or body[:200]!r}")
        results = doc["results"]
        return results if isinstance(results, list) else []

    def column(self, q: str, name: str = "name") -> list[str]:
        """The values of column ``name`` of a SHOW statement; its error raises."""
        (res,) = self.query(q)[:1] or [{}]
        if "error" in res:
            raise TargetError(f"{self.url}: {q}: {res['error']}")
        out: list[str] = []
        for series in res.get("series", []) or []:
            cols = series.get("columns", [])
            if name not in cols:
                continue
            i = cols.index(name)
            out.extend(str(row[i]) for row in series.get("values", []) or [])
        return out


def check_version(version: str, url: str) -> None:
    """Refuse a server before 1.5 (its snapshotter numbers requests differently and has no
    online restore)."""
    parts = version.lstrip("v").split(".")
    try:
        major, minor = int(parts[0]), int("".join(ch for ch in parts[1] if ch.isdigit()) or "0")
    except (ValueError, IndexError):
        return  # unknown: the snapshotter's own answers decide
    if (major, minor) < (1, 5):
        raise UnsupportedError(
            f"influxd at {url} is version {version}: before 1.5 the snapshotter numbers its requests differently "
            "and has no online restore; restore offline into its directories instead"
        )
    if major >= 2:
        raise UnsupportedError(f"influxd at {url} is version {version}: online restore speaks influxd 1.x's protocol")
