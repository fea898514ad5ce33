"""Build configuration beyond pyproject.toml: the optional compiled Gorilla float codec.

``optional=True``: where no C compiler is available the build goes on without it and the pure
Python codec (tsm/codec/floats.py), which the tests cover too, does the work.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[Extension("influx_archive.tsm._gorilla", ["tsm/_gorilla.c"], optional=True, extra_compile_args=["-O2"])],
)
