"""Build configuration beyond pyproject.toml: the optional compiled cores (Gorilla floats, simple8b;
tsi1 hashing and series keys).

``optional=True``: where no C compiler is available the build goes on without it and the pure
Python codec (tsm/codec/floats.py), which the tests cover too, does the work.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("influx_archive.tsm._speedups", ["tsm/_speedups.c"], optional=True, extra_compile_args=["-O2"]),
        # the tsi1 hot paths (XXH64, series keys, segments, log entries): tsm/tsi1/compiled.py
        Extension("influx_archive.tsm._tsispeed", ["tsm/_tsispeed.c"], optional=True, extra_compile_args=["-O2"]),
    ],
)
