"""WAL segments (docs/formats.md#wal): spec bytes, round trips, torn tails and holes, influxd's own segment
reader (verdicts and truncation offsets), real segments from influxd 1.6.7, and a segment written
here that influxd replays and serves."""

from __future__ import annotations

import contextlib
import io
import math
import random
import struct
import subprocess
from pathlib import Path

import cramjam
import pytest
from goprog import build_go_program
from hypothesis import given, settings
from hypothesis import strategies as st

from influx_archive.archive.errors import ArchiveError, FormatError, TruncatedError, UnsupportedError, UsageError
from influx_archive.tsm.format import wal as fmt
from influx_archive.tsm.keys import parse_series_key, split_key
from influx_archive.tsm.wal import (
    Cache,
    DeleteEntry,
    DeleteRangeEntry,
    WALCorruption,
    WALWriter,
    WriteEntry,
    iter_wal,
    read_wal,
)

MIN, MAX = -(1 << 63), (1 << 63) - 1
T0 = 1795219200000000000
S = 1_000_000_000


def frame(entry_type: int, payload: bytes) -> bytes:
    """A docs/formats.md#wal-entries entry built by hand (independent of the code under test)."""
    data = bytes(cramjam.snappy.compress_raw(payload))
    return struct.pack(">BI", entry_type, len(data)) + data


def group(typ: int, key: bytes, values: list[tuple[int, object]]) -> bytes:
    """A docs/formats.md#wal-write write group built by hand."""
    out = struct.pack(">BH", typ, len(key)) + key + struct.pack(">I", len(values))
    for t, v in values:
        out += struct.pack(">q", t)
        if typ == 1:
            out += struct.pack(">d", v)
        elif typ == 2:
            out += struct.pack(">q", v)
        elif typ == 5:
            out += struct.pack(">Q", v)
        elif typ == 3:
            out += b"\x01" if v else b"\x00"
        else:
            out += struct.pack(">I", len(v)) + v
    return out


def entries_of(data: bytes) -> list:
    return [e for e in iter_wal(data) if not isinstance(e, WALCorruption)]


def same_values(a, b) -> bool:
    """Compare (t, v) lists, floats by bits (-0.0 differs from 0.0)."""
    if len(a) != len(b):
        return False
    for (ta, va), (tb, vb) in zip(a, b):
        if ta != tb or type(va) is not type(vb):
            return False
        if isinstance(va, float):
            if struct.pack(">d", va) != struct.pack(">d", vb):
                return False
        elif va != vb:
            return False
    return True


# ---------------------------------------------------------------------------------------------
# Spec example (docs/formats.md#wal-entries) and layout
# ---------------------------------------------------------------------------------------------


def test_spec_example_layout() -> None:
    # 00000000: 0100 0000 6db0 015c 0400 0a6d 2c74 3d78  ....m..\...m,t=x
    # 00000010: 2321 7e23 7300 0000 0218 e9e6 59d5 f600  #!~#s.......Y...
    dump = bytes.fromhex("010000006db0015c04000a6d2c743d782321" "7e237300000002" "18e9e659d5f600")
    head = fmt.EntryHeader.parse(dump[:5])
    assert (head.type, head.length) == (fmt.WRITE_ENTRY, 109)
    assert dump[5:7] == b"\xb0\x01"  # snappy: uvarint 176 = decoded payload length
    # The payload's first group, as the spec decodes it: string key "m,t=x#!~#s", 2 values.
    buf = io.BytesIO()
    WALWriter(buf).write({b"m,t=x#!~#s": (fmt.WAL_STRING, [(T0, b"hi"), (T0 + S, b"")])})
    payload = bytes(cramjam.snappy.decompress_raw(buf.getvalue()[5:]))
    assert payload.startswith(dump[8:])  # literal bytes after the tag 5c
    assert payload == group(4, b"m,t=x#!~#s", [(T0, b"hi"), (T0 + S, b"")])
    [entry] = read_wal(buf.getvalue())
    assert entry.values == {b"m,t=x#!~#s": (4, [(T0, b"hi"), (T0 + S, b"")])}


def test_spec_example_delete_range() -> None:
    buf = io.BytesIO()
    WALWriter(buf).delete_range([b"m,t=y#!~#f"], T0, T0 + S)
    raw = struct.pack(">qqI", T0, T0 + S, 10) + b"m,t=y#!~#f"
    assert buf.getvalue() == frame(3, raw)
    [entry] = read_wal(buf.getvalue())
    assert (entry.min, entry.max, entry.keys) == (T0, T0 + S, (b"m,t=y#!~#f",))
    assert (entry.offset, entry.size) == (0, len(buf.getvalue()))


value_st = {
    1: st.floats(allow_nan=False),
    2: st.integers(MIN, MAX),
    3: st.booleans(),
    4: st.binary(max_size=20),
    5: st.integers(0, (1 << 64) - 1),
}
group_st = st.integers(1, 5).flatmap(
    lambda typ: st.tuples(
        st.just(typ),
        st.binary(min_size=1, max_size=40),
        st.lists(st.tuples(st.integers(MIN, MAX), value_st[typ]), min_size=1, max_size=8),
    )
)


@given(st.lists(group_st, min_size=1, max_size=5))
def test_construct_definitions_match_fast_path(groups) -> None:
    payload = b"".join(group(t, k, v) for t, k, v in groups)
    parsed = fmt.WritePayload.parse(payload)
    assert fmt.WritePayload.build(parsed) == payload
    expected: dict = {}
    for g in parsed:  # influxd decodes into a map: the last group of a key wins
        typ = int(g.type)
        expected[g.key] = (typ, [(v.time, _construct_value(typ, v)) for v in g["values"]])
    [entry] = read_wal(frame(1, payload))
    assert list(entry.values) == list(expected)
    for key, (typ, vals) in expected.items():
        assert entry.values[key][0] == typ and same_values(entry.values[key][1], vals)
    # the writer produces the hand-built layout
    buf = io.BytesIO()
    WALWriter(buf).write(expected)
    assert bytes(cramjam.snappy.decompress_raw(buf.getvalue()[5:])) == b"".join(
        group(t, k, v) for k, (t, v) in expected.items()
    )


def _construct_value(typ: int, v) -> object:
    if typ == 1:
        return struct.unpack(">d", struct.pack(">Q", v.bits))[0]
    if typ == 3:
        return v.value == 1
    return v.value


# ---------------------------------------------------------------------------------------------
# Round trips and decoding rules
# ---------------------------------------------------------------------------------------------


keys_st = st.lists(st.binary(min_size=1, max_size=20), min_size=1, max_size=3)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.lists(group_st, min_size=1, max_size=4).map(lambda gs: ("w", gs)),
            st.tuples(st.just("r"), keys_st, st.integers(MIN, MAX), st.integers(MIN, MAX)),
            st.tuples(st.just("d"), keys_st.filter(lambda ks: all(b"\n" not in k for k in ks))),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_writer_reader_round_trip(ops) -> None:
    buf = io.BytesIO()
    w = WALWriter(buf)
    expected = []
    for op in ops:
        if op[0] == "w":
            values = {k: (t, v) for t, k, v in op[1]}
            w.write(values)
            expected.append(values)
        elif op[0] == "r":
            lo, hi = sorted(op[2:])
            w.delete_range(op[1], lo, hi)
            expected.append((tuple(op[1]), lo, hi))
        else:
            w.delete(op[1])
            expected.append(tuple(op[1]))
    data = buf.getvalue()
    assert w.size == len(data)
    got = read_wal(data)
    assert len(got) == len(expected)
    offset = 0
    for entry, exp in zip(got, expected):
        assert entry.offset == offset
        offset += entry.size
        if isinstance(exp, dict):
            assert isinstance(entry, WriteEntry) and list(entry.values) == list(exp)
            for key, (typ, vals) in exp.items():
                assert entry.values[key][0] == typ and same_values(entry.values[key][1], vals)
        elif len(exp) == 3 and isinstance(exp[1], int):
            assert isinstance(entry, DeleteRangeEntry) and (entry.keys, entry.min, entry.max) == exp
        else:
            assert isinstance(entry, DeleteEntry) and entry.keys == exp
    assert offset == len(data)


def test_decoding_follows_influxd() -> None:
    # a key repeated inside one entry keeps its last group (influxd decodes into a Go map)
    twice = frame(1, group(1, b"k", [(1, 1.0), (2, 2.0)]) + group(1, b"k", [(3, 3.0)]))
    assert read_wal(twice)[0].values == {b"k": (1, [(3, 3.0)])}
    # boolean: 01 is true, anything else false
    raw = struct.pack(">BH", 3, 1) + b"b" + struct.pack(">I", 3)
    raw += struct.pack(">q", 1) + b"\x01" + struct.pack(">q", 2) + b"\x02" + struct.pack(">q", 3) + b"\x00"
    assert read_wal(frame(1, raw))[0].values == {b"b": (3, [(1, True), (2, False), (3, False)])}
    # delete entry: keys split on newlines, empty payload = no keys
    assert read_wal(frame(2, b"a\n\nb"))[0].keys == (b"a", b"", b"b")
    assert read_wal(frame(2, b""))[0].keys == ()
    # empty write payload is a valid, empty entry
    assert read_wal(frame(1, b""))[0].values == {}


@pytest.mark.parametrize(
    ("data", "cls", "field", "reason"),
    [
        (frame(9, b"x"), FormatError, "type", "unknown wal entry type"),
        (struct.pack(">BI", 1, 0), FormatError, "payload", "snappy"),
        (struct.pack(">BI", 1, 5) + b"\xff\xff\xff\xff\x0f", FormatError, "payload", "snappy"),
        (struct.pack(">BI", 1, 3) + b"\xf0\x0f\x00", FormatError, "payload", "snappy"),  # claims 2000 bytes
        (frame(1, struct.pack(">BH", 1, 1) + b"k" + struct.pack(">I", 0)), FormatError, "payload", "count 0"),
        (frame(1, struct.pack(">BHcI", 1, 1, b"k", 1000) + bytes(16)), FormatError, "payload", "count 1000"),
        (frame(1, struct.pack(">BHcI", 7, 1, b"k", 1) + bytes(16)), FormatError, "payload", "unsupported value type"),
        (frame(3, bytes(15)), FormatError, "payload", "needs 16"),
        (frame(1, group(4, b"s", [(1, b"abc")])[:-1]), FormatError, "payload", "string value cut short"),
        (b"\x01\x00\x00", TruncatedError, "header", "unexpected EOF"),
        (struct.pack(">BI", 1, 0x7FFFFFFF) + b"abc", TruncatedError, "length", "unexpected EOF"),
    ],
)
def test_bad_entry(data: bytes, cls: type, field: str, reason: str) -> None:
    good = frame(1, group(2, b"n", [(1, 5)]))
    segment = good + data
    items = list(iter_wal(segment, name="_00001.wal"))
    assert isinstance(items[0], WriteEntry)
    corruption = items[-1]
    assert isinstance(corruption, WALCorruption) and len(items) == 2
    assert corruption.offset == len(good)
    assert reason in corruption.reason
    with pytest.raises(cls) as exc:
        read_wal(segment, name="_00001.wal")
    assert exc.value.offset == len(good) and exc.value.field == field
    assert str(exc.value).endswith(f"[file _00001.wal, offset {len(good)}, field {field}]")


def _segment() -> tuple[bytes, list[int]]:
    buf = io.BytesIO()
    w = WALWriter(buf)
    ends = [w.write({b"cpu,host=a#!~#v": (1, [(T0, 1.5), (T0 + S, -0.0)]), b"cpu,host=a#!~#n": (2, [(T0, 7)])})]
    ends.append(ends[-1] + w.delete_range([b"cpu,host=a#!~#n"], T0, T0))
    ends.append(ends[-1] + w.write({b"s#!~#x": (4, [(T0, b"hello world" * 3)]), b"u#!~#x": (5, [(T0, (1 << 64) - 1)])}))
    return buf.getvalue(), ends


def test_torn_tail_at_every_byte_stops_at_previous_entry() -> None:
    data, ends = _segment()
    for cut in range(ends[1] + 1, ends[2]):
        items = list(iter_wal(data[:cut]))
        assert [type(i) for i in items] == [WriteEntry, DeleteRangeEntry, WALCorruption], cut
        assert items[-1].offset == ends[1]
        with pytest.raises(TruncatedError) as exc:
            read_wal(data[:cut])
        assert exc.value.offset == ends[1]
    assert len(entries_of(data)) == 3


def test_zero_filled_hole_stops_like_influxd_and_salvage_resumes() -> None:
    data, ends = _segment()
    # docs/formats.md#wal-damage bug 1: truncated at ends[1], next write appended at the old end leaving 00 bytes
    hole = data[: ends[1]] + bytes(21) + data[ends[1] : ends[2]]
    items = list(iter_wal(hole))
    assert [type(i) for i in items] == [WriteEntry, DeleteRangeEntry, WALCorruption]
    assert items[-1].offset == ends[1] and "snappy" in items[-1].reason and items[-1].resume is None
    salvaged = list(iter_wal(hole, salvage=True))
    assert [type(i) for i in salvaged] == [WriteEntry, DeleteRangeEntry, WALCorruption, WriteEntry]
    assert salvaged[2].offset == ends[1] and salvaged[2].resume == ends[1] + 21
    assert salvaged[3].offset == ends[1] + 21
    assert list(iter_wal(data[: ends[1]] + bytes(30), salvage=True))[-1].resume is None


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_raise_unless_strict(data: bytes) -> None:
    items = list(iter_wal(data))
    # at most one corruption, and only as the last item; entries tile the segment up to it
    assert not any(isinstance(i, WALCorruption) for i in items[:-1])
    end = items[-1].offset if items and isinstance(items[-1], WALCorruption) else len(data)
    assert sum(i.size for i in items if not isinstance(i, WALCorruption)) == end
    list(iter_wal(data, salvage=True))
    with contextlib.suppress(ArchiveError):
        read_wal(data)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_mutated_segment_never_raises_unless_strict(data) -> None:
    seg, _ends = _segment()
    pos = data.draw(st.integers(0, len(seg) - 1))
    mutated = seg[:pos] + bytes([data.draw(st.integers(0, 255))]) + seg[pos + 1 :]
    list(iter_wal(mutated, salvage=True))
    with contextlib.suppress(ArchiveError):
        read_wal(mutated)


def test_writer_refusals() -> None:
    w = WALWriter(io.BytesIO())
    with pytest.raises(UnsupportedError):
        w.write({b"k": (1, [(1, math.nan)])})
    with pytest.raises(UsageError):
        w.write({b"k": (1, [])})
    with pytest.raises(UsageError):
        w.write({})
    with pytest.raises(UsageError):
        w.write({b"k": (6, [(1, 1)])})
    with pytest.raises(UnsupportedError):
        w.write({b"k" * 65536: (1, [(1, 1.0)])})
    with pytest.raises(UnsupportedError):
        w.write({b"k": (5, [(1, -1)])})
    with pytest.raises(UnsupportedError):
        w.write({b"k": (2, [(1, 1.5)])})
    with pytest.raises(UnsupportedError):
        w.write({b"k": (3, [(1, 1)])})
    with pytest.raises(UnsupportedError):
        w.write({b"k": (2, [(1 << 63, 1)])})
    with pytest.raises(UnsupportedError):
        w.delete([b"a\nb"])
    with pytest.raises(UsageError):
        w.delete_range([], 0, 1)
    with pytest.raises(UnsupportedError):
        w.delete_range([b"k"], 2, 1)
    assert w.size == 0


# ---------------------------------------------------------------------------------------------
# Cache replay (docs/formats.md#wal-replay)
# ---------------------------------------------------------------------------------------------


def _seg(*ops) -> bytes:
    buf = io.BytesIO()
    w = WALWriter(buf)
    for op in ops:
        if isinstance(op, dict):
            w.write(op)
        else:
            w.delete_range(*op)
    return buf.getvalue()


def test_cache_dedup_last_written_wins_and_sorts() -> None:
    seg = _seg({b"k": (1, [(30, 3.0), (10, 1.0), (30, 3.5)])}, {b"k": (1, [(10, 9.0)])})
    cache = Cache.load([("_00001.wal", seg)])
    assert cache.values(b"k") == (0, [10, 30], [9.0, 3.5])
    assert cache.block_type(b"k") == 0 and cache.wal_type(b"k") == 1


def test_cache_deletes_and_type_change_after_full_delete() -> None:
    seg = _seg(
        {b"a": (2, [(1, 1), (2, 2), (3, 3)]), b"b": (1, [(1, 1.0)])},
        ([b"a"], 2, 2),
        ([b"b"], MIN, MAX),
        {b"b": (4, [(5, b"now a string")])},
        ([b"nope"], MIN, MAX),
    )
    cache = Cache.load([("_00001.wal", seg)])
    assert cache.keys() == [b"a", b"b"]
    assert cache.values(b"a") == (1, [1, 3], [1, 3])
    assert cache.values(b"b") == (3, [5], [b"now a string"])
    # a partial delete that empties a key removes it too
    seg2 = _seg({b"a": (2, [(1, 1)])}, ([b"a"], 0, 5), {b"a": (1, [(2, 2.0)])})
    assert Cache.load([("_00001.wal", seg2)]).values(b"a") == (0, [2], [2.0])


def test_cache_type_conflict_names_segment_and_entry() -> None:
    seg1 = _seg({b"k": (1, [(1, 1.0)])})
    seg2 = _seg({b"x": (2, [(1, 1)])}, {b"k": (2, [(2, 2)])})
    first = len(_seg({b"x": (2, [(1, 1)])}))
    with pytest.raises(FormatError) as exc:
        Cache.load([("_00002.wal", seg2), ("_00001.wal", seg1)])
    assert exc.value.path == "_00002.wal" and exc.value.offset == first
    assert "field type conflict" in str(exc.value)


def test_cache_segment_order_is_lexical_like_influxd() -> None:
    older = _seg({b"k": (1, [(1, 1.0)])})
    newer = _seg({b"k": (1, [(1, 2.0)])})
    # influxd sorts names as strings: _100000.wal comes before _99999.wal
    cache = Cache.load([("_99999.wal", newer), ("_100000.wal", older)])
    assert cache.values(b"k") == (0, [1], [2.0])
    assert cache.segments == ["_100000.wal", "_99999.wal"]


def test_cache_records_corruption_and_goes_on(tmp_path: Path) -> None:
    data, ends = _segment()
    (tmp_path / "_00001.wal").write_bytes(data[: ends[2] - 3])
    (tmp_path / "_00002.wal").write_bytes(_seg({b"s#!~#x": (4, [(T0 + S, b"later")])}))
    (tmp_path / "_00003.wal").write_bytes(b"")
    cache = Cache.open(sorted(tmp_path.iterdir()))
    [(name, corruption)] = cache.corruptions
    assert name == str(tmp_path / "_00001.wal") and corruption.offset == ends[1]
    assert cache.values(b"s#!~#x") == (3, [T0 + S], [b"later"])
    assert cache.values(b"cpu,host=a#!~#v")[2][1] == -0.0
    assert b"cpu,host=a#!~#n" not in cache  # the delete-range applied
    with pytest.raises(TruncatedError):
        Cache.open(sorted(tmp_path.iterdir()), strict=True)


# ---------------------------------------------------------------------------------------------
# influxd's own WALSegmentReader (Go, linked from the installed source)
# ---------------------------------------------------------------------------------------------

GO_WAL_READER = r"""
package main

// stdin: one hex segment per line. stdout per segment: "<entries> <Count()> <OK|ERR msg> |" then a
// summary of every entry read: " W,<hexkey>:<n values>..." (keys sorted), " D,<hexkey>...",
// " R<min>:<max>,<hexkey>...". Count() is where influxd truncates a corrupt segment.
import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"sort"

	"github.com/influxdata/influxdb/tsdb/engine/tsm1"
)

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }

func main() {
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 256<<20)
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	for sc.Scan() {
		data, _ := hex.DecodeString(sc.Text())
		r := tsm1.NewWALSegmentReader(nopCloser{bytes.NewReader(data)})
		n := 0
		status := "OK"
		var sum bytes.Buffer
		for r.Next() {
			e, err := r.Read()
			if err != nil {
				status = "ERR " + err.Error()
				break
			}
			n++
			switch t := e.(type) {
			case *tsm1.WriteWALEntry:
				keys := make([]string, 0)
				for k := range t.Values {
					keys = append(keys, k)
				}
				sort.Strings(keys)
				sum.WriteString(" W")
				for _, k := range keys {
					fmt.Fprintf(&sum, ",%x:%d", k, len(t.Values[k]))
				}
			case *tsm1.DeleteWALEntry:
				sum.WriteString(" D")
				for _, k := range t.Keys {
					fmt.Fprintf(&sum, ",%x", k)
				}
			case *tsm1.DeleteRangeWALEntry:
				fmt.Fprintf(&sum, " R%d:%d", t.Min, t.Max)
				for _, k := range t.Keys {
					fmt.Fprintf(&sum, ",%x", k)
				}
			}
		}
		fmt.Fprintf(w, "%d %d %s |%s\n", n, r.Count(), status, sum.String())
	}
}
"""


@pytest.fixture(scope="module")
def go_wal_reader(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the Go program above against influxd's installed source (GOPATH mode)."""
    return build_go_program(GO_WAL_READER, tmp_path_factory.mktemp("go_wal_reader"), "influxd's WAL reader")


def _summary(entry) -> str:
    if isinstance(entry, WriteEntry):
        return " W" + "".join(f",{k.hex()}:{len(v[1])}" for k, v in sorted(entry.values.items()))
    if isinstance(entry, DeleteEntry):
        return " D" + "".join(f",{k.hex()}" for k in entry.keys)
    return f" R{entry.min}:{entry.max}" + "".join(f",{k.hex()}" for k in entry.keys)


@pytest.mark.interop
def test_verdicts_and_truncation_offsets_agree_with_influxd(go_wal_reader: Path) -> None:
    rng = random.Random(11)

    def values(typ: int, n: int) -> list:
        gen = {
            1: lambda: rng.choice([1.5, -0.0, math.inf, 5e-324]),
            2: lambda: rng.randrange(MIN, MAX),
            3: lambda: rng.random() < 0.5,
            4: lambda: rng.randbytes(rng.randrange(8)),
            5: lambda: rng.randrange(1 << 64),
        }[typ]
        return [(rng.randrange(MIN, MAX), gen()) for _ in range(n)]

    cases = []
    for _ in range(40):
        buf = io.BytesIO()
        w = WALWriter(buf)
        for _ in range(rng.randrange(1, 5)):
            r = rng.random()
            if r < 0.6:
                types = {i: rng.randrange(1, 6) for i in rng.sample(range(20), 3)}
                w.write({b"k%d" % i: (typ, values(typ, rng.randrange(1, 4))) for i, typ in types.items()})
            elif r < 0.8:
                w.delete_range([b"k%d" % rng.randrange(20)], -5, 5)
            else:
                w.delete([b"k%d" % rng.randrange(20), b"z"])
        seg = buf.getvalue()
        cases.append(seg)
        cases += [seg[:cut] for cut in sorted({rng.randrange(len(seg)) for _ in range(8)})]
        for _ in range(8):
            m = bytearray(seg)
            m[rng.randrange(len(m))] ^= 1 << rng.randrange(8)
            cases.append(bytes(m))
        cases.append(seg + bytes(rng.randrange(1, 30)) + seg)
    cases += [
        frame(1, group(1, b"a", [(1, 1.0)]) * 2),
        frame(2, b"a\n\nb\n"),
        frame(3, bytes(16) + b"\x00\x00\x00"),
        frame(1, group(3, b"b", [(1, True)])[:-1] + b"\x07"),
    ]
    feed = "\n".join(c.hex() for c in cases) + "\n"
    out = subprocess.run([str(go_wal_reader)], input=feed, capture_output=True, text=True, check=True, timeout=600)
    for data, line in zip(cases, out.stdout.splitlines(), strict=True):
        head, go_summary = line.split("|", 1)
        n, count, status = head.split(" ", 2)
        items = list(iter_wal(data))
        entries = [i for i in items if not isinstance(i, WALCorruption)]
        corrupt = [i for i in items if isinstance(i, WALCorruption)]
        assert "".join(_summary(e) for e in entries) == go_summary.rstrip(), data.hex()
        assert len(entries) == int(n)
        assert bool(corrupt) == (status.strip() != "OK"), (data.hex(), status)
        truncate_at = corrupt[0].offset if corrupt else sum(e.size for e in entries)
        assert truncate_at == int(count), data.hex()


# ---------------------------------------------------------------------------------------------
# A real influxd 1.6.7
# ---------------------------------------------------------------------------------------------


def served(server, db: str) -> dict[tuple, list[tuple[int, object]]]:
    """Every value influxd serves in ``db``: {(measurement, tags, field): [(t, v), ...]}."""
    out: dict[tuple, list] = {}
    for m in [row[0] for s in server.series("SHOW MEASUREMENTS", db) for row in s["values"]]:
        for s in server.series(f'SELECT * FROM "{m}" GROUP BY *', db, chunked=True):
            tags = tuple(sorted((s.get("tags") or {}).items()))
            cols = s["columns"]
            for row in s["values"]:
                for col, v in zip(cols[1:], row[1:]):
                    if v is not None:
                        out.setdefault((m, tags, col), []).append((row[0], v))
    return out


def model_key(key: bytes) -> tuple:
    series, field = split_key(key)
    measurement, tags = parse_series_key(series)
    return measurement.decode(), tuple(sorted((k.decode(), v.decode()) for k, v in tags)), field.decode()


def as_served(block_type: int, values: list) -> list:
    """Our decoded values the way influxd's JSON shows them (strings as text, unsigned as ints)."""
    if block_type == 3:
        return [v.decode() for v in values]
    return list(values)


def assert_same_points(expected: dict, got: dict) -> None:
    assert sorted(expected) == sorted(got)
    for k in expected:
        exp, act = expected[k], got[k]
        assert [t for t, _ in exp] == [t for t, _ in act], k
        for (t, a), (_, b) in zip(exp, act):
            if isinstance(a, float):  # JSON prints 1.0 as 1; -0.0 is kept as a float by the harness
                assert isinstance(b, (int, float)) and struct.pack(">d", a) == struct.pack(">d", float(b)), (k, t, a, b)
            else:
                assert type(a) is type(b) and a == b, (k, t, a, b)


def cache_points(cache: Cache) -> dict:
    out = {}
    for key in cache.keys():
        btype, ts, vs = cache.values(key)
        out[model_key(key)] = list(zip(ts, as_served(btype, vs)))
    return out


@pytest.mark.interop
def test_real_segments_decode_to_what_was_written(influxd_factory) -> None:
    server = influxd_factory(cold="10m0s")
    server.execute("CREATE DATABASE w")
    lines = [
        f'm,t=x f=1.5,i=7i,b=true,s="hi" {T0}',
        f'm,t=x f=-0,i=-8i,b=false,s="" {T0 + S}',
        f"m,t=y f=3 {T0}",
        f"m,t=z f=4 {T0}",
    ]
    server.write("\n".join(lines), db="w")
    server.write(f"m,t=x f=9.5 {T0}", db="w")  # overwrite
    server.execute("DELETE FROM m WHERE t='y'", db="w")
    server.execute("DROP SERIES FROM m WHERE t='z'", db="w")
    expected_served = served(server, "w")
    server.stop()
    [segment] = sorted((server.wal_dir / "w" / "autogen" / "1").glob("_*.wal"))
    e1, e2, e3, e4 = read_wal(segment.read_bytes(), name=str(segment))
    assert e1.values == {
        b"m,t=x#!~#f": (1, [(T0, 1.5), (T0 + S, -0.0)]),
        b"m,t=x#!~#i": (2, [(T0, 7), (T0 + S, -8)]),
        b"m,t=x#!~#b": (3, [(T0, True), (T0 + S, False)]),
        b"m,t=x#!~#s": (4, [(T0, b"hi"), (T0 + S, b"")]),
        b"m,t=y#!~#f": (1, [(T0, 3.0)]),
        b"m,t=z#!~#f": (1, [(T0, 4.0)]),
    }
    assert math.copysign(1, e1.values[b"m,t=x#!~#f"][1][1][1]) == -1
    assert e2.values == {b"m,t=x#!~#f": (1, [(T0, 9.5)])}
    assert (e3.keys, e3.min, e3.max) == ((b"m,t=y#!~#f",), MIN, MAX)  # DELETE without time: all time
    assert (e4.keys, e4.min, e4.max) == ((b"m,t=z#!~#f",), MIN, MAX)
    cache = Cache.open([segment])
    assert_same_points(cache_points(cache), expected_served)

    # influxd truncates a torn segment exactly where iter_wal says (docs/formats.md#wal-damage), then serves the rest.
    data = segment.read_bytes()
    segment.write_bytes(data[: e4.offset + 7])
    [*_, corruption] = iter_wal(segment.read_bytes())
    assert corruption.offset == e4.offset
    server.start()
    after = served(server, "w")
    server.stop()
    assert segment.stat().st_size == e4.offset
    assert_same_points(cache_points(Cache.open([segment])), after)
    assert ("m", (("t", "z"),), "f") in after  # the lost DROP SERIES: the point came back


@pytest.mark.interop
def test_influxd_replays_a_segment_written_here(influxd_factory) -> None:
    server = influxd_factory(cold="10m0s")  # (JSON cannot show ±Inf, so none here)
    server.execute("CREATE DATABASE r")
    server.write(f"m,t=a f=0.5 {T0 - S}", db="r")  # creates the shard; stays in _00001.wal
    server.stop()
    wal_dir = server.wal_dir / "r" / "autogen" / "1"
    buf = io.BytesIO()
    w = WALWriter(buf)
    w.write(
        {
            b"m,t=a#!~#f": (
                fmt.WAL_FLOAT,
                [
                    (T0, 1.25),
                    (T0 + S, -0.0),
                    (T0 + 2 * S, 1e308),
                    (T0 + 3 * S, 5e-324),
                    (T0 + 4 * S, -1.7976931348623157e308),
                ],
            ),
            b"m,t=a#!~#i": (fmt.WAL_INTEGER, [(T0, MIN + 1), (T0 + S, MAX), (T0 + 2 * S, 0)]),
            b"m,t=a#!~#b": (fmt.WAL_BOOLEAN, [(T0, True), (T0 + S, False)]),
            b"m,t=a#!~#s": (fmt.WAL_STRING, [(T0, 'ünïcode "q" \\'.encode()), (T0 + S, b"")]),
            b"m,t=a#!~#u": (fmt.WAL_UNSIGNED, [(T0, (1 << 64) - 1), (T0 + S, 0), (T0 + 2 * S, 1 << 63)]),
            b"m,t=b#!~#f": (fmt.WAL_FLOAT, [(T0 + 5 * S, 1.0), (T0, 2.0)]),  # unsorted
        }
    )
    # overwrites
    w.write({b"m,t=a#!~#f": (fmt.WAL_FLOAT, [(T0, 99.0)]), b"m,t=a#!~#u": (fmt.WAL_UNSIGNED, [(T0 + S, 42)])})
    w.delete_range([b"m,t=a#!~#i"], T0 + S, T0 + S)
    w.delete([b"m,t=c#!~#f"])
    w.write({b"m,t=c#!~#f": (fmt.WAL_FLOAT, [(T0, 3.0)])})
    w.delete([b"m,t=c#!~#f"])  # type 0x02: influxd 1.6 never writes it but replays it
    (wal_dir / "_00002.wal").write_bytes(buf.getvalue())

    cache = Cache.open(sorted(wal_dir.glob("_*.wal")))
    assert cache.values(b"m,t=a#!~#f")[2][:3] == [0.5, 99.0, -0.0]
    server.start()
    got = served(server, "r")
    fields = {row[0]: row[1] for s in server.series("SHOW FIELD KEYS FROM m", "r") for row in s["values"]}
    server.stop()
    assert fields == {"b": "boolean", "f": "float", "i": "integer", "s": "string", "u": "unsigned"}
    assert_same_points(cache_points(cache), got)
    assert got[("m", (("t", "a"),), "u")] == [(T0, (1 << 64) - 1), (T0 + S, 42), (T0 + 2 * S, 1 << 63)]
    assert ("m", (("t", "c"),), "f") not in got
