"""Build configuration beyond pyproject.toml: the optional compiled codec core (Gorilla floats, simple8b).

``optional=True``: where no C compiler is available the build goes on without it and the pure
Python codec (tsm/codec/floats.py), which the tests cover too, does the work.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension("influx_archive.tsm._speedups", ["tsm/_speedups.c"], optional=True, extra_compile_args=["-O2"])
    ],
)
