// gen_vectors.go: reference TSM block vectors from influxd 1.6.7's own encoder.
//
// Links the installed github.com/influxdata/influxdb/tsdb/engine/tsm1 package (Debian's Go
// source tree), builds random blocks of all five types with fixed seeds, and writes one JSON
// object per line, gzip'd, to the file named by the first argument:
//
//	cd tests/vectors
//	GO111MODULE=off GOPATH=/usr/share/gocode:/tmp/gopath go run gen_vectors.go blocks.jsonl.gz
//
// Output is reproducible: math/rand with fixed seeds (one per block type), encoding/json with
// struct field order, gzip with a zero header time. Lines:
//
//	{"kind":"float/jitter/sensor","type":0,"ts":[t0,d1,d2,...],"v":[...],"block":"<hex>"}
//	    "ts": the first timestamp then the differences t(i) - t(i-1), each as uint64 (wrapped),
//	    so t(i) = sum of the first i+1 entries modulo 2^64, read as int64.
//	    "block" is tsm1.Values.Encode output (block bytes without CRC).
//	    "v": float -> Go's shortest decimal string ("-0", "+Inf", "5e-324"); integer and unsigned
//	    -> JSON numbers; boolean -> true/false; string -> hex of the bytes.
//	{"kind":"tsonly/unsorted","ts":[t0,d1,...],"section":"<hex>"}
//	    timestamp section from tsm1.NewTimeEncoder for non-increasing input (the block writer
//	    never produces these; they check the encoder mirrors influxd's wrap-around arithmetic).
package main

import (
	"bufio"
	"compress/gzip"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"math/rand"
	"os"
	"strconv"

	"github.com/influxdata/influxdb/tsdb/engine/tsm1"
)

const perType = 130

type blockLine struct {
	Kind  string        `json:"kind"`
	Type  int           `json:"type"`
	TS    []uint64      `json:"ts"`
	V     []interface{} `json:"v"`
	Block string        `json:"block"`
}

type tsLine struct {
	Kind    string   `json:"kind"`
	TS      []uint64 `json:"ts"`
	Section string   `json:"section"`
}

// count picks a block size: mostly small, some full 1000-value blocks, rarely > 1000.
func count(r *rand.Rand) int {
	switch p := r.Intn(100); {
	case p < 8:
		return 1
	case p < 16:
		return 2
	case p < 20:
		return 3
	case p < 62:
		return 4 + r.Intn(40)
	case p < 90:
		return 44 + r.Intn(260)
	case p < 96:
		return 300 + r.Intn(700)
	case p < 99:
		return 1000
	default:
		return 1001 + r.Intn(200)
	}
}

var steps = []int64{1, 1000, 1000000, 1000000000, 10000000000, 60000000000, 3600000000000}

// timestamps returns n strictly increasing timestamps following a random pattern.
func timestamps(r *rand.Rand, n int, forced string) (string, []int64) {
	ts := make([]int64, n)
	step := steps[r.Intn(len(steps))]
	t := int64(1500000000000000000) + r.Int63n(int64(5e17))
	if r.Intn(6) == 0 {
		t = -t // negative timestamps (before 1970)
	}
	t -= t % step
	pattern := pick(r, forced, "regular", "gaps", "jitter", "random", "huge", "ones")
	if forced == "" && n == 2 && r.Intn(3) == 0 {
		pattern = "huge"
	}
	switch pattern {
	case "regular":
		for i := range ts {
			ts[i] = t
			t += step
		}
	case "gaps": // regular with a few gaps: long runs of 1 after scaling
		for i := range ts {
			ts[i] = t
			t += step
			if r.Intn(300) == 0 {
				t += step * (1 + r.Int63n(1000))
			}
		}
	case "jitter": // step plus jitter at a finer granularity
		gran := steps[r.Intn(3)]
		for i := range ts {
			ts[i] = t
			t += step + gran*(1+r.Int63n(999))
		}
	case "random": // random deltas of a random bit width, small enough not to overflow
		bits := uint(1 + r.Intn(59))
		for int64(n) > (1<<61)>>bits {
			bits--
		}
		for i := range ts {
			ts[i] = t
			t += 1 + r.Int63n(int64(1)<<bits)
		}
	case "huge": // a few deltas above 2^60 - 1 (raw encoding), spanning most of int64
		cur := int64(math.MinInt64+2) + r.Int63n(1<<40)
		huge := 0
		for i := range ts {
			ts[i] = cur
			if huge < 7 && r.Intn(n) < 3 {
				huge++
				cur += 1<<60 + r.Int63n(1<<60)
			} else {
				cur += 1 + r.Int63n(1e9)
			}
		}
		if last := int64(math.MaxInt64 - 2); r.Intn(3) == 0 && last > ts[n-1] && n > 1 && ts[n-1]-ts[n-2] < 1e9 {
			ts[n-1] = last
		}
	case "ones": // runs of 50..500 equal steps, then a double step: words of ones (selectors 0/1)
		run := 50 + r.Intn(450)
		for i := range ts {
			ts[i] = t
			t += step
			if run--; run == 0 {
				t += step
				run = 50 + r.Intn(450)
			}
		}
	}
	return pattern, ts
}

func floats(r *rand.Rand, n int, forced string) (string, []float64) {
	v := make([]float64, n)
	specials := []float64{0, math.Copysign(0, -1), math.Inf(1), math.Inf(-1), 5e-324, -5e-324,
		math.MaxFloat64, -math.MaxFloat64, math.SmallestNonzeroFloat64 * 12345, 2.2250738585072014e-308, 1, -1, math.Pi}
	pattern := pick(r, forced, "random", "sensor", "constant", "few", "specials", "counter", "subnormal", "close")
	x := r.NormFloat64() * 100
	few := []float64{r.Float64(), r.NormFloat64() * 1e6, 42, -0.5}
	for i := range v {
		switch pattern {
		case "random":
			v[i] = r.NormFloat64() * math.Pow(10, float64(r.Intn(40)-20))
		case "sensor":
			x += r.NormFloat64()
			v[i] = math.Round(x*100) / 100
		case "constant":
			v[i] = x
		case "few":
			v[i] = few[r.Intn(len(few))]
		case "specials":
			if r.Intn(3) == 0 {
				v[i] = r.NormFloat64()
			} else {
				v[i] = specials[r.Intn(len(specials))]
			}
		case "counter":
			v[i] = float64(i) * 0.25
		case "close": // relative steps of ~1e-9: XORs with >= 32 leading zeros (L = clz mod 32)
			x += x * 1e-9 * r.NormFloat64()
			v[i] = x
		case "subnormal":
			v[i] = math.Float64frombits(uint64(r.Int63n(1 << 52)))
			if r.Intn(2) == 0 {
				v[i] = -v[i]
			}
		}
	}
	return pattern, v
}

func integers(r *rand.Rand, n int, forced string) (string, []int64) {
	v := make([]int64, n)
	extremes := []int64{math.MinInt64, math.MaxInt64, 0, -1, 1, math.MinInt64 + 1, math.MaxInt64 - 1}
	pattern := pick(r, forced, "small", "counter", "constant", "extremes", "random64", "width", "down1", "mixed")
	bits := uint(1 + r.Intn(62))
	base := r.Int63n(1000) - 500
	inc := r.Int63n(100) - 50
	for i := range v {
		switch pattern {
		case "small":
			v[i] = r.Int63n(200) - 100
		case "counter":
			v[i] = base + int64(i)*inc
		case "constant":
			v[i] = base
		case "extremes":
			v[i] = extremes[r.Intn(len(extremes))]
		case "random64":
			v[i] = int64(r.Uint64())
		case "width": // values of a given bit width: exercises every simple8b selector
			v[i] = r.Int63n(int64(1) << bits)
		case "down1": // delta -1 -> zigzag 1 in runs of 50..500: selectors 0/1, whole-list driver
			v[i] = base - int64(i)
			if r.Intn(50+r.Intn(450)) == 0 {
				base += 3
			}
		case "mixed":
			if r.Intn(10) == 0 {
				v[i] = extremes[r.Intn(len(extremes))]
			} else {
				v[i] = r.Int63n(1 << 20)
			}
		}
	}
	return pattern, v
}

func unsigneds(r *rand.Rand, n int, forced string) (string, []uint64) {
	v := make([]uint64, n)
	pattern := pick(r, forced, "random64", "top", "counter", "small", "constant", "down1")
	c := r.Uint64()
	for i := range v {
		switch pattern {
		case "random64":
			v[i] = r.Uint64()
		case "top": // near 2^64 - 1
			v[i] = math.MaxUint64 - uint64(r.Intn(1000))
		case "counter":
			v[i] = c + uint64(i)*3
		case "small":
			v[i] = uint64(r.Intn(1 << 16))
		case "constant":
			v[i] = c
		case "down1":
			v[i] = c - uint64(i)
			if r.Intn(50+r.Intn(450)) == 0 {
				c += 3
			}
		}
	}
	return pattern, v
}

func booleans(r *rand.Rand, n int, forced string) (string, []bool) {
	v := make([]bool, n)
	pattern := pick(r, forced, "random", "true", "false", "alternate", "biased")
	for i := range v {
		switch pattern {
		case "random":
			v[i] = r.Intn(2) == 0
		case "true":
			v[i] = true
		case "alternate":
			v[i] = i%2 == 0
		case "biased":
			v[i] = r.Intn(20) == 0
		}
	}
	return pattern, v
}

func strs(r *rand.Rand, n int, forced string) (string, []string) {
	v := make([]string, n)
	pattern := pick(r, forced, "empty", "ascii", "binary", "repeat", "long", "mixed")
	words := []string{"GET /", "POST /api", "error: timeout", "ok", "\u00e9t\u00e9 \u2603", ""}
	randBytes := func(k int) string {
		b := make([]byte, k)
		r.Read(b)
		return string(b)
	}
	for i := range v {
		switch pattern {
		case "ascii":
			v[i] = words[r.Intn(len(words))] + strconv.Itoa(r.Intn(1000))
		case "binary": // not UTF-8
			v[i] = "\xff\xfe" + randBytes(r.Intn(20))
		case "repeat":
			v[i] = words[i%3]
		case "long":
			if i < 3 {
				v[i] = randBytes(200 + r.Intn(600))
			} else {
				v[i] = words[r.Intn(len(words))]
			}
		case "mixed":
			switch r.Intn(3) {
			case 0:
				v[i] = ""
			case 1:
				v[i] = randBytes(r.Intn(10))
			default:
				v[i] = words[r.Intn(len(words))]
			}
		}
	}
	return pattern, v
}

// pick returns forced, or a random one of the patterns when forced is "".
func pick(r *rand.Rand, forced string, patterns ...string) string {
	if forced != "" {
		return forced
	}
	return patterns[r.Intn(len(patterns))]
}

// deltas gives t0 then t(i) - t(i-1), all as uint64 (two's complement wrap-around), which
// compresses far better than absolute nanosecond timestamps.
func deltas(ts []int64) []uint64 {
	d := make([]uint64, len(ts))
	prev := int64(0)
	for i, t := range ts {
		d[i] = uint64(t) - uint64(prev)
		prev = t
	}
	return d
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// block draws n points of block type typ (patterns forced unless "") and encodes them with influxd's encoder.
func block(r *rand.Rand, typ, n int, tsForced, vForced string) blockLine {
	tsPattern, ts := timestamps(r, n, tsForced)
	var vp string
	vals := make([]tsm1.Value, n)
	out := make([]interface{}, n)
	switch typ {
	case 0:
		p, v := floats(r, n, vForced)
		vp = p
		for j := range v {
			vals[j] = tsm1.NewValue(ts[j], v[j])
			out[j] = strconv.FormatFloat(v[j], 'g', -1, 64)
		}
	case 1:
		p, v := integers(r, n, vForced)
		vp = p
		for j := range v {
			vals[j] = tsm1.NewValue(ts[j], v[j])
			out[j] = v[j]
		}
	case 2:
		p, v := booleans(r, n, vForced)
		vp = p
		for j := range v {
			vals[j] = tsm1.NewValue(ts[j], v[j])
			out[j] = v[j]
		}
	case 3:
		p, v := strs(r, n, vForced)
		vp = p
		for j := range v {
			vals[j] = tsm1.NewValue(ts[j], v[j])
			out[j] = hex.EncodeToString([]byte(v[j]))
		}
	case 4:
		p, v := unsigneds(r, n, vForced)
		vp = p
		for j := range v {
			vals[j] = tsm1.NewValue(ts[j], v[j])
			out[j] = v[j]
		}
	}
	b, err := tsm1.Values(vals).Encode(nil)
	must(err)
	kind := fmt.Sprintf("%s/%s/%s", []string{"float", "integer", "boolean", "string", "unsigned"}[typ], tsPattern, vp)
	return blockLine{kind, typ, deltas(ts), out, hex.EncodeToString(b)}
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: gen_vectors OUT.jsonl.gz")
		os.Exit(2)
	}
	f, err := os.Create(os.Args[1])
	must(err)
	zw, err := gzip.NewWriterLevel(f, gzip.BestCompression)
	must(err)
	w := bufio.NewWriter(zw)
	enc := json.NewEncoder(w)

	for typ := 0; typ < 5; typ++ {
		r := rand.New(rand.NewSource(int64(1000 + typ)))
		for i := 0; i < perType; i++ {
			must(enc.Encode(block(r, typ, count(r), "", "")))
		}
	}

	// Targeted large blocks for the encoder quirks that random small blocks rarely reach:
	// runs of ones around the 120/240 selectors (both drivers) and float L = clz mod 32.
	r := rand.New(rand.NewSource(3000))
	for i := 0; i < 12; i++ {
		must(enc.Encode(block(r, 1, 250+r.Intn(950), "ones", "down1")))
		must(enc.Encode(block(r, 4, 250+r.Intn(950), "ones", "down1")))
		must(enc.Encode(block(r, 0, 50+r.Intn(250), "regular", "close")))
	}

	// Non-increasing timestamp sequences through the bare timestamp encoder.
	r = rand.New(rand.NewSource(2000))
	for i := 0; i < 45; i++ {
		n := 2 + r.Intn(300)
		ts := make([]int64, n)
		kind := []string{"unsorted", "duplicates", "descending"}[i%3]
		t := int64(1500000000000000000)
		for j := range ts {
			switch kind {
			case "unsorted":
				ts[j] = t + r.Int63n(1e12) - 5e11
			case "duplicates":
				ts[j] = t
				if r.Intn(3) == 0 {
					t += 1e9
				}
			case "descending":
				ts[j] = t - int64(j)*1e9
			}
		}
		te := tsm1.NewTimeEncoder(n)
		for _, t := range ts {
			te.Write(t)
		}
		b, err := te.Bytes()
		must(err)
		must(enc.Encode(tsLine{"tsonly/" + kind, deltas(ts), hex.EncodeToString(b)}))
	}

	must(w.Flush())
	must(zw.Close())
	must(f.Close())
}
