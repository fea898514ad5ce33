"""influx_archive.archive: one model over every InfluxDB 1.x backup and data-directory kind.

This package is imported by the lower layers (``tsm``, ``meta``) for its error tree and
progress type, so this ``__init__`` deliberately imports nothing; use the submodules,
e.g. ``from influx_archive.archive.sources import open_source``.
"""

#: The distribution's version: pyproject.toml reads it from here (``[tool.setuptools.dynamic]``),
#: so ``influx-archive --version`` needs no ``importlib.metadata`` (~15 ms of start-up).
__version__ = "0.1.0"
