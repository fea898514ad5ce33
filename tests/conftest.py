"""Shared pytest fixtures: the real influxd 1.6.7 harness (``fixtures/influxd.py``) and the
committed fixtures under ``fixtures/``.

Tests that need influxd FAIL (never skip) when it is missing; under ``CI=true`` the whole session
fails at start instead. Install it with ``apt-get install influxdb influxdb-client``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

FIXTURES_DIR = Path(__file__).resolve().parent.parent / "fixtures"
sys.path.insert(0, str(FIXTURES_DIR))

import influxd  # noqa: E402  (needs the sys.path entry above)


def pytest_sessionstart(session: pytest.Session) -> None:
    if os.environ.get("CI") == "true" and influxd.influxd_path() is None:
        pytest.exit(
            "CI=true and influxd (InfluxDB 1.6.7) is missing; the interop tests need it: "
            f"{influxd.INSTALL_HINT}",
            returncode=1,
        )


@pytest.fixture(scope="session")
def influxd_bin() -> str:
    """Path of the real influxd; fails the test (with the install hint) when it is missing."""
    try:
        return influxd.require_influxd()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.fixture
def influxd_factory(
    tmp_path: Path, influxd_bin: str
) -> Iterator[Callable[..., influxd.InfluxServer]]:
    """``factory(root=None, **kw)`` -> a started :class:`influxd.InfluxServer`.

    ``root`` defaults to a fresh directory under ``tmp_path``; ``kw`` go to ``InfluxServer``
    (``index``, ``cold``, ``extra``). Every server is stopped at teardown, even on failure."""
    servers: list[influxd.InfluxServer] = []

    def factory(root: Path | str | None = None, **kw: object) -> influxd.InfluxServer:
        if root is None:
            root = tmp_path / f"influxd{len(servers)}"
        server = influxd.InfluxServer(root, **kw)  # type: ignore[arg-type]
        servers.append(server)
        return server.start()

    try:
        yield factory
    finally:
        for server in servers:
            server.stop()


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    """The committed fixtures directory (``fixtures/``)."""
    return FIXTURES_DIR


@pytest.fixture(scope="session")
def truth(fixtures_dir: Path) -> Callable[[str], dict]:
    """``truth(name)`` -> the TRUTH saved next to fixture ``name`` (``<name>.truth.json``)."""

    def load(name: str) -> dict:
        return influxd.load_truth(fixtures_dir / f"{name}.truth.json")

    return load
