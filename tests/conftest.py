"""Shared pytest fixtures: the in-process CLI runner (``cli``), the real influxd 1.6.7 harness
(``fixtures/influxd.py``) and the committed fixtures under ``fixtures/``.

Tests that need influxd FAIL (never skip) when it is missing; under ``CI=true`` a run that
selected any of them fails once collected instead. Install it with ``apt-get install influxdb influxdb-client``.

Tiers (markers in ``pyproject.toml``): a test that starts influxd or runs its tools (``influx``,
``influx_inspect``), or uses a fixture that does, is marked ``interop``; a test that takes seconds
even without them is marked ``slow``. ``pytest -q`` runs everything (what CI and the README run);
``pytest -m "not interop and not slow"`` is the fast tier, which needs no influxd installed.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

FIXTURES_DIR = Path(__file__).resolve().parent.parent / "fixtures"
sys.path.insert(0, str(FIXTURES_DIR))

import influxd  # noqa: E402  (needs the sys.path entry above)

#: Fixtures that start influxd (or find it): a test using one, directly or through another
#: fixture, must be marked ``interop``.
_INFLUXD_FIXTURES = frozenset({"influxd_bin", "influxd_factory"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    unmarked = [
        item.nodeid
        for item in items
        if _INFLUXD_FIXTURES & set(getattr(item, "fixturenames", ())) and item.get_closest_marker("interop") is None
    ]
    if unmarked:
        raise pytest.UsageError("these tests start influxd but are not marked interop: " + ", ".join(unmarked))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Under ``CI=true`` a run that selected interop tests fails at once when influxd is missing
    (the fast tier, ``-m "not interop and not slow"``, needs no influxd)."""
    if os.environ.get("CI") != "true" or influxd.influxd_path() is not None:
        return
    if any(item.get_closest_marker("interop") is not None for item in session.items):
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


class CliResult(NamedTuple):
    """What one ``influx-archive`` run gave: exit ``code``, standard output and standard error.
    A tuple (``code, out, err = cli(...)``), also readable as a ``subprocess.CompletedProcess``
    (``returncode``, ``stdout``, ``stderr``)."""

    code: int
    out: str
    err: str

    @property
    def returncode(self) -> int:
        return self.code

    @property
    def stdout(self) -> str:
        return self.out

    @property
    def stderr(self) -> str:
        return self.err


def _exit_code(code: object) -> int:
    """The process exit status ``sys.exit(code)`` gives."""
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


def run_cli(*args: str | os.PathLike[str], cwd: Path | str | None = None, tmpdir: Path | str | None = None,
            stdin: str | None = None) -> CliResult:
    """Run ``influx-archive ARGS`` in this process, as the console command does (``cli.main.main``).

    Standard output and error are real files (a verb writing to stdout by file descriptor, like
    ``export`` to ``-``, is captured too), encoded as a UTF-8 terminal would: stdout strict,
    stderr ``backslashreplace``; ``\r`` is kept as it is. ``cwd`` is the working directory and
    ``tmpdir`` the temporary directory (``TMPDIR``) for the run; ``stdin`` its standard input
    (empty by default). The SIGTERM handler the CLI installs is put back afterwards."""
    from influx_archive.cli.main import main

    argv = [os.fspath(a) for a in args]
    code: object = 0
    saved_term = signal.getsignal(signal.SIGTERM)
    before_cwd, before_tmp = os.getcwd(), tempfile.tempdir
    with tempfile.TemporaryFile() as out_f, tempfile.TemporaryFile() as err_f:
        out = io.TextIOWrapper(out_f, encoding="utf-8", errors="strict", newline="", write_through=True)
        err = io.TextIOWrapper(err_f, encoding="utf-8", errors="backslashreplace", newline="", write_through=True)
        fin = io.TextIOWrapper(io.BytesIO((stdin or "").encode()), encoding="utf-8")
        saved_in = sys.stdin
        try:
            if cwd is not None:
                os.chdir(cwd)
            if tmpdir is not None:
                tempfile.tempdir = os.fspath(tmpdir)
            sys.stdin = fin
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    main(argv)
                except SystemExit as exc:
                    code = exc.code
        finally:
            sys.stdin = saved_in
            tempfile.tempdir = before_tmp
            os.chdir(before_cwd)
            signal.signal(signal.SIGTERM, saved_term)
        out.flush()
        err.flush()
        out_f.seek(0)
        err_f.seek(0)
        stdout = out_f.read().decode("utf-8", "surrogateescape")
        stderr = err_f.read().decode("utf-8", "surrogateescape")
        out.detach()
        err.detach()
    return CliResult(_exit_code(code), stdout, stderr)


@pytest.fixture(scope="session")
def cli() -> Callable[..., CliResult]:
    """``cli(*args, cwd=None, tmpdir=None, stdin=None)`` -> :class:`CliResult`: one
    ``influx-archive`` run, in process (see :func:`run_cli`). Tests of the console command
    itself (it starts, signals, privileges dropped) run it as a subprocess instead."""
    return run_cli
