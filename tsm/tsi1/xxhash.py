"""XXH64 with seed 0 — the hash influxd 1.6.7 uses to place series (``github.com/cespare/xxhash``
``Sum64``): series-file partition = ``Sum64(series file key) % 8`` (``tsdb/series_file.go``), tsi1
index partition = ``Sum64(line-protocol series key) & 7`` (``tsdb/index/tsi1/index.go``), and the
Robin Hood hash maps of the series index (``pkg/rhh/rhh.go`` ``HashKey``).

Pure Python (no dependency; the reference vectors are checked in the tests); the compiled core
(tsm/_tsispeed.c, :mod:`.compiled`) computes the same where it is built, and :func:`sum64` is it
then (:func:`sum64_py` stays the reference the tests compare it with).
"""

from __future__ import annotations

import struct

from .compiled import core

_M = (1 << 64) - 1
P1 = 11400714785074694791
P2 = 14029467366897019727
P3 = 1609587929392839161
P4 = 9650029242287828579
P5 = 2870177450012600261

_Q4 = struct.Struct("<4Q")
_Q = struct.Struct("<Q")
_I = struct.Struct("<I")


def _round(acc: int, lane: int) -> int:
    acc = (acc + lane * P2) & _M
    acc = ((acc << 31) | (acc >> 33)) & _M
    return (acc * P1) & _M


def _merge(acc: int, val: int) -> int:
    acc ^= _round(0, val)
    return (acc * P1 + P4) & _M


def sum64_py(data: bytes) -> int:
    """XXH64(data, seed=0) as an unsigned 64-bit integer."""
    n = len(data)
    p = 0
    if n >= 32:
        v1 = (P1 + P2) & _M
        v2 = P2
        v3 = 0
        v4 = (-P1) & _M
        limit = n - 32
        unpack = _Q4.unpack_from
        while p <= limit:
            a, b, c, d = unpack(data, p)
            v1 = (v1 + a * P2) & _M
            v1 = (((v1 << 31) | (v1 >> 33)) * P1) & _M
            v2 = (v2 + b * P2) & _M
            v2 = (((v2 << 31) | (v2 >> 33)) * P1) & _M
            v3 = (v3 + c * P2) & _M
            v3 = (((v3 << 31) | (v3 >> 33)) * P1) & _M
            v4 = (v4 + d * P2) & _M
            v4 = (((v4 << 31) | (v4 >> 33)) * P1) & _M
            p += 32
        h = (
            ((v1 << 1) | (v1 >> 63)) + ((v2 << 7) | (v2 >> 57)) + ((v3 << 12) | (v3 >> 52)) + ((v4 << 18) | (v4 >> 46))
        ) & _M
        h = _merge(h, v1)
        h = _merge(h, v2)
        h = _merge(h, v3)
        h = _merge(h, v4)
    else:
        h = P5
    h = (h + n) & _M
    while p + 8 <= n:
        k1 = _round(0, _Q.unpack_from(data, p)[0])
        h ^= k1
        h = ((((h << 27) | (h >> 37)) & _M) * P1 + P4) & _M
        p += 8
    if p + 4 <= n:
        h ^= (_I.unpack_from(data, p)[0] * P1) & _M
        h = ((((h << 23) | (h >> 41)) & _M) * P2 + P3) & _M
        p += 4
    while p < n:
        h ^= (data[p] * P5) & _M
        h = ((((h << 11) | (h >> 53)) & _M) * P1) & _M
        p += 1
    h ^= h >> 33
    h = (h * P2) & _M
    h ^= h >> 29
    h = (h * P3) & _M
    h ^= h >> 32
    return h


sum64 = core.sum64 if core is not None else sum64_py


def rhh_hash_key(key: bytes) -> int:
    """``rhh.HashKey``: the hash as int64, 0 mapped to 1, negatives negated (two's complement, so
    -2**63 stays itself, as in Go)."""
    h = sum64(key)
    if h >= 1 << 63:
        h -= 1 << 64
    if h == 0:
        return 1
    if h < 0:
        h = -h
        if h == 1 << 63:
            h = -(1 << 63)
    return h


def rhh_hash_uint64(v: int) -> int:
    """``rhh.HashUint64``: :func:`rhh_hash_key` of the big-endian 8 bytes of ``v``."""
    return rhh_hash_key(v.to_bytes(8, "big"))
