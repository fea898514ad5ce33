"""The HyperLogLog++ cardinality estimate ``influx_inspect report`` prints without ``-exact``.

A re-implementation of the estimator it uses (precision 14, sparse precision 20, 64-bit
MurmurHash3 of each key; docs/formats.md#report-estimates), step for step, so that ``report``
without ``--exact`` prints the numbers influx_inspect prints: a sparse list of (index, rank)
entries counted by linear counting while it stays small, then 16384 registers with linear counting
below 11500 and the empirical bias correction up to 5 * 16384. Memory is bounded by the registers
(the sparse list turns into registers once it would take more than 12 KiB), never by the input.
"""

from __future__ import annotations

import bisect
import math

from .hllpp_p14 import BIASES_P14, RAW_ESTIMATES_P14

_M64 = (1 << 64) - 1
_C1 = 0x87C37B91114253D5
_C2 = 0x4CF5AD432745937F

P = 14  # precision: 2**14 registers
PP = 20  # sparse precision
M = 1 << P
MP = 1 << PP
_THRESHOLD = 11500  # linear counting below this (precision 14)


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _M64


def _fmix(k: int) -> int:
    k ^= k >> 33
    k = (k * 0xFF51AFD7ED558CCD) & _M64
    k ^= k >> 33
    k = (k * 0xC4CEB9FE1A85EC53) & _M64
    k ^= k >> 33
    return k


def murmur64(data: bytes) -> int:
    """The first 64 bits of MurmurHash3 x64-128 (seed 0) of ``data``."""
    n = len(data)
    h1 = h2 = 0
    nblocks = n // 16
    for i in range(nblocks):
        k1 = int.from_bytes(data[16 * i:16 * i + 8], "little")
        k2 = int.from_bytes(data[16 * i + 8:16 * i + 16], "little")
        k1 = (_rotl((k1 * _C1) & _M64, 31) * _C2) & _M64
        h1 ^= k1
        h1 = (_rotl(h1, 27) + h2) & _M64
        h1 = (h1 * 5 + 0x52DCE729) & _M64
        k2 = (_rotl((k2 * _C2) & _M64, 33) * _C1) & _M64
        h2 ^= k2
        h2 = (_rotl(h2, 31) + h1) & _M64
        h2 = (h2 * 5 + 0x38495AB5) & _M64
    tail = data[nblocks * 16:]
    if len(tail) > 8:
        k2 = int.from_bytes(tail[8:], "little")
        h2 ^= (_rotl((k2 * _C2) & _M64, 33) * _C1) & _M64
    if tail:
        k1 = int.from_bytes(tail[:8], "little")
        h1 ^= (_rotl((k1 * _C1) & _M64, 31) * _C2) & _M64
    h1 ^= n
    h2 ^= n
    h1 = (h1 + h2) & _M64
    h2 = (h2 + h1) & _M64
    h1 = _fmix(h1)
    h2 = _fmix(h2)
    return (h1 + h2) & _M64


def _bits64(x: int, high: int, low: int) -> int:
    """Bits ``high`` down to ``low`` (inclusive) of a 64-bit ``x``."""
    return (x >> low) & ((1 << (high - low + 1)) - 1)


def _bits32(x: int, high: int, low: int) -> int:
    return (x >> low) & ((1 << (high - low + 1)) - 1)


def _rho(x: int) -> int:
    """Leading zeros of a 64-bit ``x``, plus one."""
    return 64 - x.bit_length() + 1 if x else 65


def _encode(x: int) -> int:
    if _bits64(x, 63 - P, 64 - PP) == 0:
        r = _rho(((_bits64(x, 63 - PP, 0) << PP) | ((1 << PP) - 1)) & _M64)
        return (_bits64(x, 63, 64 - PP) << 7 | (r << 1) | 1) & 0xFFFFFFFF
    return (_bits64(x, 63, 64 - PP) << 1) & 0xFFFFFFFF


def _index(k: int, p: int) -> int:
    if k & 1:
        return _bits32(k, 6 + PP, 1 + 6 + PP - p)
    return _bits32(k, PP, 1 + PP - p)


def _decode(k: int, p: int) -> tuple[int, int]:
    r = _bits32(k, 6, 1) + (PP - P) if k & 1 else _rho(((k | 1) << (64 - (PP + 1) + P)) & _M64)
    return _index(k, p), r


def _uvarint_len(v: int) -> int:
    return max(1, (v.bit_length() + 6) // 7)


class HLLPP:
    """``Add(key)`` / ``count()`` as influx_inspect's estimator (see the module docstring)."""

    def __init__(self) -> None:
        self.sparse = True
        self.data: list[int] = []  # the sparse list, in the order it is stored
        self.data_bytes = 0  # its size as the varint stream the estimator keeps
        self.sparse_length = 0
        self.tmp: list[int] = []
        self.registers: bytearray | None = None

    def add(self, value: bytes) -> None:
        x = murmur64(value)
        if self.sparse:
            self.tmp.append(_encode(x))
            if 4 * len(self.tmp) * 8 >= 6 * M // 4:
                self._flush()
        else:
            assert self.registers is not None
            idx = _bits64(x, 63, 64 - P)
            r = _rho(((x << P) | (1 << (P - 1))) & _M64)
            if r > self.registers[idx]:
                self.registers[idx] = r

    def _flush(self) -> None:
        if not self.tmp:
            return
        tmp = sorted(self.tmp)
        self.tmp = []
        out: list[int] = []
        cur: list[int] | None = None  # [value, index, rho]

        def append(k: int, idx: int, r: int) -> None:
            nonlocal cur
            if cur is not None:
                if idx == cur[1]:
                    if r > cur[2]:
                        cur[0], cur[2] = k, r
                    return
                out.append(cur[0])
            cur = [k, idx, r]

        i = j = 0
        old = self.data
        while i < len(old) or j < len(tmp):
            if i == len(old):
                idx, r = _decode(tmp[j], PP)
                append(tmp[j], idx, r)
                j += 1
                continue
            sv = old[i]
            sidx, sr = _decode(sv, PP)
            if j == len(tmp):
                append(sv, sidx, sr)
                i += 1
                continue
            tv = tmp[j]
            tidx, tr = _decode(tv, PP)
            if sidx < tidx:
                append(sv, sidx, sr)
                i += 1
            elif sidx > tidx:
                append(tv, tidx, tr)
                j += 1
            else:
                if sr > tr:
                    append(sv, sidx, sr)
                else:
                    append(tv, tidx, tr)
                i += 1
                j += 1
        if cur is not None:
            out.append(cur[0])
        self.data = out
        self.sparse_length = len(out)
        last = 0
        size = 0
        for v in out:
            size += _uvarint_len((v - last) & 0xFFFFFFFF)
            last = v
        self.data_bytes = size
        if size * 8 >= 6 * M:
            self._to_dense()

    def _to_dense(self) -> None:
        regs = bytearray(M)
        for k in self.data:
            idx, r = _decode(k, P)
            if r > regs[idx]:
                regs[idx] = r
        self.registers = regs
        self.data = []
        self.tmp = []
        self.sparse = False

    def count(self) -> int:
        if self.sparse:
            # as influx_inspect's estimator: the sparse count, even when this very flush turned
            # the list into registers
            self._flush()
            return _linear_counting(MP, MP - self.sparse_length)
        assert self.registers is not None
        est = 0.0
        zeros = 0
        for reg in self.registers:
            est += 1.0 / float(1 << reg)
            if reg == 0:
                zeros += 1
        if zeros:
            lc = _linear_counting(M, zeros)
            if lc < _THRESHOLD:
                return lc
        alpha = 0.7213 / (1 + 1.079 / M)
        e = alpha * M * M / est
        if e <= M * 5:
            e -= _bias(e)
        return int(e + 0.5)


def _linear_counting(m: int, v: int) -> int:
    return int(m * math.log(m / v) + 0.5)


def _bias(e: float) -> float:
    i = bisect.bisect_left(RAW_ESTIMATES_P14, e)
    if i == 0:
        return BIASES_P14[0]
    if i == len(RAW_ESTIMATES_P14):
        return BIASES_P14[-1]
    e1, e2 = RAW_ESTIMATES_P14[i - 1], RAW_ESTIMATES_P14[i]
    b1, b2 = BIASES_P14[i - 1], BIASES_P14[i]
    r = (e - e1) / (e2 - e1)
    return b1 * (1 - r) + b2 * r
