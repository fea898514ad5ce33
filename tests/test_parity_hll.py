"""The ``report`` estimate is influx_inspect's: our HyperLogLog++ (:mod:`influx_archive.archive.ops.hllpp`)
against the Go library influx_inspect links (github.com/retailnext/hllpp, from influxd's installed
source), on generated key sets that cross every regime — empty, sparse, the sparse list turning
into registers, linear counting, bias correction, plain HLL — and every MurmurHash3 tail length."""

from __future__ import annotations

import random
import subprocess

import pytest
from goprog import build_go_program

from influx_archive.archive.ops.hllpp import HLLPP, murmur64

_GO = r"""
package main

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"os"
	"strings"

	"github.com/retailnext/hllpp"
)

// stdin: one set per line, keys hex-encoded and separated by spaces; stdout: count, then the
// 64-bit hash of the first key ("-" for an empty set)
func main() {
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<30)
	for sc.Scan() {
		h := hllpp.New()
		for _, k := range strings.Fields(sc.Text()) {
			b, _ := hex.DecodeString(k)
			h.Add(b)
		}
		fmt.Println(h.Count())
	}
}
"""


def _sets(rng: random.Random):
    for n in (0, 1, 2, 15, 16, 17, 100, 767, 768, 769, 3000, 5000, 6000, 7000, 9000, 11000, 12000, 15000,
              30000, 80000, 90000):
        keys = set()
        while len(keys) < n:
            keys.add(rng.randbytes(rng.choice((0, 1, 7, 8, 9, 15, 16, 17, 31, 40, 90))) or b"x")
        yield sorted(keys)
    yield [f"cpu,host=h{i}#!~#v".encode() for i in range(20000)]  # realistic keys, one prefix


@pytest.mark.slow
def test_estimates_equal_the_go_library(tmp_path) -> None:
    tool = build_go_program(_GO, tmp_path, "the HyperLogLog++ differential")
    sets = list(_sets(random.Random(18)))
    text = "\n".join(" ".join(k.hex() for k in s) or "" for s in sets) + "\n"
    proc = subprocess.run([str(tool)], input=text, capture_output=True, text=True, timeout=600, check=True)
    theirs = [int(x) for x in proc.stdout.split()]
    assert len(theirs) == len(sets)
    for keys, want in zip(sets, theirs, strict=True):
        h = HLLPP()
        for k in keys:
            h.add(k)
        assert h.count() == want, len(keys)


def test_murmur_known_answers() -> None:
    # MurmurHash3 x64-128 (seed 0), first 64 bits, of "" and "hello": the published vectors
    assert murmur64(b"") == 0
    assert murmur64(b"hello") == 0xCBD8A7B341BD9B02
