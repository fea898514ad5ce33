/* Compiled fast paths for the hottest TSM codecs and the TSM index scan: influxd's Gorilla float value sections
 * (docs/formats.md#float-encoding) and simple8b words (docs/formats.md#simple8b, both of influxd's encoder drivers).
 *
 * Only the happy path lives here: every function returns None when anything is not exactly
 * right (bad header, truncation, wrong count, padding, NaN, a non-float), and the pure-Python
 * codec in tsm/codec/floats.py then runs on the same input and raises its precise error. So the
 * compiled and the Python codec accept the same inputs and produce the same bytes; the tests
 * compare them on the reference vectors and on hypothesis inputs.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>
#include <math.h>

/* The layout constants below are exposed as module attributes (PyInit__speedups) and
 * tests/test_formats.py holds them equal to the Python definitions named next to each. */
#define SENTINEL 0x7FF8000000000001ULL /* tsm/codec/floats.py SENTINEL */
#define ABS_MASK 0x7FFFFFFFFFFFFFFFULL
#define INF_BITS 0x7FF0000000000000ULL
#define VALUE_HEADER 0x10     /* floats/booleans/strings HEADER: the one encoding of those sections */
#define FIRST_VALUE_END 9     /* a section's header byte and its first 8-byte value (tsm/block.py) */
#define INT_RAW 0x00          /* tsm/codec/integers.py RAW, PACKED, RLE */
#define INT_PACKED 0x10
#define INT_RLE 0x20
#define STRING_MAX_EXPANSION 22 /* tsm/codec/strings.py MAX_EXPANSION */
/* TSM block types (tsm/block.py FLOAT..UNSIGNED) */
#define BLOCK_FLOAT 0
#define BLOCK_INTEGER 1
#define BLOCK_BOOLEAN 2
#define BLOCK_STRING 3
#define BLOCK_UNSIGNED 4
#define MAX_BLOCK_TYPE BLOCK_UNSIGNED

static inline uint64_t load_be64(const uint8_t *p) {
    return ((uint64_t)p[0] << 56) | ((uint64_t)p[1] << 48) | ((uint64_t)p[2] << 40) | ((uint64_t)p[3] << 32) |
           ((uint64_t)p[4] << 24) | ((uint64_t)p[5] << 16) | ((uint64_t)p[6] << 8) | (uint64_t)p[7];
}

/* n (0..64) bits at bit position pos of the zero-padded stream s, MSB first */
static inline uint64_t get_bits(const uint8_t *s, uint64_t pos, int n) {
    if (n == 0) return 0;
    if (n > 56) return (get_bits(s, pos, n - 32) << 32) | get_bits(s, pos + (uint64_t)(n - 32), 32);
    uint64_t w = load_be64(s + (pos >> 3)) << (pos & 7);
    return w >> (64 - n);
}

/* the Gorilla section d[0:size] holding exactly count values into vals: 0, or 1 to decline, -1 no memory */
static int gorilla_values(const uint8_t *d, Py_ssize_t size, Py_ssize_t count, uint64_t *vals) {
    /* every value after the first costs at least one bit of the stream: a count the bytes cannot
     * hold is declined before anything is allocated */
    if (size < FIRST_VALUE_END || d[0] != VALUE_HEADER || count < 1 || count > (1 << 24)) return 1;
    if ((uint64_t)(count - 1) > (uint64_t)(size - FIRST_VALUE_END) * 8) return 1;
    uint8_t *s = (uint8_t *)PyMem_Calloc((size_t)size + 16, 1);
    if (!s) return -1;
    int rc = 1;
    memcpy(s, d + 1, (size_t)size - 1);
    uint64_t nbits = (uint64_t)(size - 1) * 8;
    uint64_t val = get_bits(s, 0, 64);
    if (val == SENTINEL) goto out;
    vals[0] = val;
    Py_ssize_t n = 1;
    int lead = 0, trail = 0;
    uint64_t pos = 64;
    for (;;) {
        if (pos + 1 > nbits) goto out;
        if (get_bits(s, pos++, 1)) {
            int m;
            if (pos + 1 > nbits) goto out;
            if (get_bits(s, pos++, 1)) {
                if (pos + 11 > nbits) goto out;
                unsigned w = (unsigned)get_bits(s, pos, 11);
                pos += 11;
                lead = (int)(w >> 6);
                m = (int)(w & 63);
                if (m == 0) m = 64;
                trail = 64 - lead - m;
                if (trail < 0) goto out;
            } else {
                m = 64 - lead - trail;
            }
            if (pos + (uint64_t)m > nbits) goto out;
            uint64_t bits = get_bits(s, pos, m);
            pos += (uint64_t)m;
            val ^= (trail >= 64) ? 0 : (bits << trail);
            if (val == SENTINEL) break;
        }
        if (n == count) goto out;
        vals[n++] = val;
    }
    if (n != count) goto out;
    uint64_t used = (pos + 7) >> 3;
    if (used != (uint64_t)(size - 1)) goto out;
    if ((pos & 7) && (s[used - 1] & ((1u << (8 - (pos & 7))) - 1))) goto out;
    rc = 0;
out:
    PyMem_Free(s);
    return rc;
}

static PyObject *decode(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t count;
    if (!PyArg_ParseTuple(args, "y*n", &view, &count)) return NULL;
    PyObject *result = NULL;
    uint64_t *vals = NULL;
    if (count < 1 || count > (1 << 24) || view.len < FIRST_VALUE_END) goto fallback;
    if ((uint64_t)(count - 1) > (uint64_t)(view.len - FIRST_VALUE_END) * 8) goto fallback; /* before allocating */
    vals = (uint64_t *)PyMem_Malloc((size_t)count * sizeof(uint64_t));
    if (!vals) { PyErr_NoMemory(); goto done; }
    int rc = gorilla_values((const uint8_t *)view.buf, view.len, count, vals);
    if (rc < 0) { PyErr_NoMemory(); goto done; }
    if (rc) goto fallback;
    result = PyList_New(count);
    if (!result) goto done;
    for (Py_ssize_t i = 0; i < count; i++) {
        double f;
        memcpy(&f, &vals[i], sizeof f);
        PyObject *o = PyFloat_FromDouble(f);
        if (!o) { Py_CLEAR(result); goto done; }
        PyList_SET_ITEM(result, i, o);
    }
    goto done;
fallback:
    result = Py_NewRef(Py_None);
done:
    PyMem_Free(vals);
    PyBuffer_Release(&view);
    return result;
}

typedef struct {
    uint8_t *buf;
    size_t len;   /* whole bytes written */
    uint64_t acc; /* pending bits, right-aligned */
    int nacc;     /* number of pending bits (< 8 between writes) */
} bitw;

static inline void put_bits(bitw *w, uint64_t v, int n) {
    /* write the low n bits of v, MSB first; n <= 64 */
    while (n > 0) {
        int take = n > 32 ? 32 : n;
        uint64_t chunk = (v >> (n - take)) & ((take == 64) ? ~0ULL : ((1ULL << take) - 1));
        w->acc = (w->acc << take) | chunk;
        w->nacc += take;
        n -= take;
        while (w->nacc >= 8) {
            w->nacc -= 8;
            w->buf[w->len++] = (uint8_t)(w->acc >> w->nacc);
        }
        w->acc &= (w->nacc ? ((1ULL << w->nacc) - 1) : 0);
    }
}

static PyObject *encode(PyObject *self, PyObject *arg) {
    PyObject *seq = PySequence_Fast(arg, "values must be a sequence");
    if (!seq) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    PyObject *result = NULL;
    uint8_t *buf = NULL;
    uint64_t *bits = NULL;
    if (n < 1) goto fallback;
    bits = (uint64_t *)PyMem_Malloc((size_t)(n + 1) * sizeof(uint64_t));
    buf = (uint8_t *)PyMem_Malloc((size_t)(n + 1) * 10 + 16);
    if (!bits || !buf) { PyErr_NoMemory(); goto done; }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!PyFloat_CheckExact(items[i])) goto fallback;
        double f = PyFloat_AS_DOUBLE(items[i]);
        memcpy(&bits[i], &f, sizeof f);
        if ((bits[i] & ABS_MASK) > INF_BITS) goto fallback; /* NaN: the Python codec explains */
    }
    bits[n] = SENTINEL;
    bitw w = {buf, 0, 0, 0};
    buf[w.len++] = VALUE_HEADER;
    uint64_t prev = bits[0];
    put_bits(&w, prev, 64);
    int lead = -1, trail = 0;
    for (Py_ssize_t i = 1; i <= n; i++) {
        uint64_t b = bits[i];
        uint64_t x = b ^ prev;
        prev = b;
        if (!x) {
            put_bits(&w, 0, 1);
            continue;
        }
        int lz = __builtin_clzll(x) & 0x1F; /* clz mod 32, as influxd */
        int tz = __builtin_ctzll(x);
        if (lead >= 0 && lz >= lead && tz >= trail) {
            int m = 64 - lead - trail;
            put_bits(&w, 0x2, 2);
            put_bits(&w, x >> trail, m);
        } else {
            lead = lz;
            trail = tz;
            int m = 64 - lz - tz;
            put_bits(&w, (0x3ULL << 11) | ((uint64_t)lz << 6) | (uint64_t)(m & 63), 13);
            put_bits(&w, x >> tz, m);
        }
    }
    if (w.nacc) put_bits(&w, 0, 8 - w.nacc);
    result = PyBytes_FromStringAndSize((const char *)buf, (Py_ssize_t)w.len);
    goto done;
fallback:
    result = Py_NewRef(Py_None);
done:
    PyMem_Free(bits);
    PyMem_Free(buf);
    Py_DECREF(seq);
    return result;
}


/* ------------------------------------------------------------------------------ simple8b */

static const int S8_N[16] = {240, 120, 60, 30, 20, 15, 12, 10, 8, 7, 6, 5, 4, 3, 2, 1};
static const int S8_BITS[16] = {0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 15, 20, 30, 60};
#define S8_MAX ((1ULL << 60) - 1) /* tsm/codec/simple8b.py MAX_VALUE */

/* s8b_decode(words, limit=-1): the values, or None when the words are not whole or hold more
 * than ``limit`` values (counted from the selectors before the list is allocated) */
static PyObject *s8b_decode(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t limit = -1;
    if (!PyArg_ParseTuple(args, "y*|n", &view, &limit)) return NULL;
    PyObject *result = NULL;
    const uint8_t *d = (const uint8_t *)view.buf;
    Py_ssize_t nwords = view.len / 8;
    if (view.len % 8) { result = Py_NewRef(Py_None); goto done; }
    Py_ssize_t total = 0;
    for (Py_ssize_t i = 0; i < nwords; i++) total += S8_N[d[i * 8] >> 4];
    if (limit >= 0 && total > limit) { result = Py_NewRef(Py_None); goto done; }
    result = PyList_New(total);
    if (!result) goto done;
    Py_ssize_t k = 0;
    for (Py_ssize_t i = 0; i < nwords; i++) {
        uint64_t w = load_be64(d + i * 8);
        int sel = (int)(w >> 60), n = S8_N[sel], bits = S8_BITS[sel];
        uint64_t mask = bits ? ((1ULL << bits) - 1) : 0;
        for (int j = 0; j < n; j++) {
            uint64_t v = bits ? (w >> (j * bits)) & mask : 1;
            PyObject *o = PyLong_FromUnsignedLongLong(v);
            if (!o) { Py_CLEAR(result); goto done; }
            PyList_SET_ITEM(result, k++, o);
        }
    }
done:
    PyBuffer_Release(&view);
    return result;
}

static inline int bitlen(uint64_t v) { return v ? 64 - __builtin_clzll(v) : 0; }

/* one word from src[h:t]; returns values consumed, 0 when nothing fits (out of bounds) */
static int s8b_pack(const uint64_t *src, Py_ssize_t h, Py_ssize_t t, int all_ones, uint64_t *word) {
    Py_ssize_t avail = t - h;
    if (all_ones) {
        if (avail >= 240) { *word = 0; return 240; }
        if (avail >= 120) { *word = 1ULL << 60; return 120; }
    }
    int first = bitlen(src[h]);
    if (first > 60) return 0;
    for (int sel = 2; sel < 16; sel++) {
        int n = S8_N[sel], bits = S8_BITS[sel];
        if (bits < first || avail < n) continue;
        uint64_t mask = (1ULL << bits) - 1;
        int ok = 1;
        for (int i = 0; i < n; i++) if (src[h + i] > mask) { ok = 0; break; }
        if (!ok) continue;
        uint64_t w = 0;
        for (Py_ssize_t i = h + n - 1; i >= h; i--) w = (w << bits) | src[i];
        *word = ((uint64_t)sel << 60) | w;
        return n;
    }
    return 0;
}

/* values as uint64 (all 0..2^60-1 ints), or NULL with no error set when the Python codec must decide */
static uint64_t *s8b_values(PyObject *arg, Py_ssize_t *n_out) {
    PyObject *seq = PySequence_Fast(arg, "values must be a sequence");
    if (!seq) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    uint64_t *v = (uint64_t *)PyMem_Malloc((size_t)(n ? n : 1) * sizeof(uint64_t));
    if (!v) { Py_DECREF(seq); PyErr_NoMemory(); return NULL; }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!PyLong_CheckExact(items[i])) goto decline;
        int overflow = 0;
        long long x = PyLong_AsLongLongAndOverflow(items[i], &overflow);
        if (overflow || x < 0 || (uint64_t)x > S8_MAX) goto decline;
        v[i] = (uint64_t)x;
    }
    Py_DECREF(seq);
    *n_out = n;
    return v;
decline:
    PyErr_Clear();
    PyMem_Free(v);
    Py_DECREF(seq);
    *n_out = -1;
    return NULL;
}

static PyObject *s8b_finish(uint64_t *words, Py_ssize_t nw) {
    PyObject *out = PyBytes_FromStringAndSize(NULL, nw * 8);
    if (!out) return NULL;
    uint8_t *p = (uint8_t *)PyBytes_AS_STRING(out);
    for (Py_ssize_t i = 0; i < nw; i++)
        for (int b = 0; b < 8; b++) p[i * 8 + b] = (uint8_t)(words[i] >> (56 - 8 * b));
    return out;
}

static PyObject *s8b_encode(PyObject *arg, int windowed) {
    Py_ssize_t n;
    uint64_t *v = s8b_values(arg, &n);
    if (!v) return n < 0 ? Py_NewRef(Py_None) : NULL;
    uint64_t *words = (uint64_t *)PyMem_Malloc((size_t)(n ? n : 1) * sizeof(uint64_t));
    if (!words) { PyMem_Free(v); return PyErr_NoMemory(); }
    Py_ssize_t nw = 0, h = 0;
    PyObject *result = NULL;
    if (!windowed) {
        Py_ssize_t last_not_one = n - 1;
        while (last_not_one >= 0 && v[last_not_one] == 1) last_not_one--;
        while (h < n) {
            int used = s8b_pack(v, h, n, h > last_not_one, &words[nw]);
            if (!used) goto decline;
            nw++;
            h += used;
        }
    } else {
        while (h + 240 < n) {
            Py_ssize_t t = h + 240;
            int ones = v[h] == 1;
            for (Py_ssize_t i = h; ones && i < t; i++) ones = v[i] == 1;
            int used = s8b_pack(v, h, t, ones, &words[nw]);
            if (!used) goto decline;
            nw++;
            h += used;
        }
        while (h < n) {
            int ones = v[h] == 1 && n - h >= 120;
            for (Py_ssize_t i = h; ones && i < n; i++) ones = v[i] == 1;
            int used = s8b_pack(v, h, n, ones, &words[nw]);
            if (!used) goto decline;
            nw++;
            h += used;
        }
    }
    result = s8b_finish(words, nw);
    goto done;
decline:
    result = Py_NewRef(Py_None);
done:
    PyMem_Free(v);
    PyMem_Free(words);
    return result;
}

static PyObject *s8b_encode_all(PyObject *self, PyObject *arg) { return s8b_encode(arg, 0); }
static PyObject *s8b_encode_windowed(PyObject *self, PyObject *arg) { return s8b_encode(arg, 1); }

/* ---- TSM index (docs/formats.md#tsm-index) -------------------------------------------------------
 * scan_index mirrors TSMReader._scan_index (tsm/reader.py) check for check and returns None on the
 * first thing that is not right, so that the Python scan runs and raises its precise error. */

static inline uint16_t load_be16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline uint32_t load_be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}

/* tsm/format/tsmfile.py */
#define HEADER_SIZE 5   /* HEADER_SIZE: magic + version */
#define ENTRY_SIZE 28   /* ENTRY_SIZE: min_time i64, max_time i64, offset u64, size u32 */
#define MIN_FRAME 6     /* MIN_FRAME_SIZE: CRC + type byte + one more byte */
#define KEY_OFFSET 2    /* KEY_OFFSET: the u16 key length before the key */
#define TYPE_AFTER_KEY 0  /* TYPE_AFTER_KEY, COUNT_AFTER_KEY, ENTRIES_AFTER_KEY */
#define COUNT_AFTER_KEY 1
#define ENTRIES_AFTER_KEY 3
#define RECORD_HEAD_SIZE (KEY_OFFSET + ENTRIES_AFTER_KEY) /* RECORD_HEAD_SIZE */

/* scan_index(index, blocks_end) -> (keys, positions as native int64 bytes, min, max, overlapping) | None */
static PyObject *scan_index(PyObject *self, PyObject *args) {
    Py_buffer view;
    unsigned long long blocks_end;
    if (!PyArg_ParseTuple(args, "y*K", &view, &blocks_end)) return NULL;
    const uint8_t *idx = view.buf;
    Py_ssize_t end = view.len, pos = 0, nkeys = 0, cap = 1024;
    int64_t *positions = PyMem_Malloc(cap * sizeof(int64_t));
    PyObject *keys = PyList_New(0), *overlapping = PyList_New(0), *result = NULL;
    const uint8_t *prev_key = NULL;
    Py_ssize_t prev_klen = 0;
    int64_t lo = 0, hi = 0;
    if (positions == NULL || keys == NULL || overlapping == NULL) goto fail;
    while (pos < end) {
        if (pos + KEY_OFFSET > end) goto decline;
        Py_ssize_t klen = load_be16(idx + pos);
        if (klen == 0 || pos + RECORD_HEAD_SIZE + klen > end) goto decline;
        const uint8_t *key = idx + pos + KEY_OFFSET;
        uint8_t btype = idx[pos + KEY_OFFSET + klen + TYPE_AFTER_KEY];
        Py_ssize_t count = load_be16(idx + pos + KEY_OFFSET + klen + COUNT_AFTER_KEY);
        Py_ssize_t at = pos + KEY_OFFSET + klen + ENTRIES_AFTER_KEY;
        if (btype > MAX_BLOCK_TYPE || count == 0 || at + count * ENTRY_SIZE > end) goto decline;
        if (prev_key != NULL) {
            Py_ssize_t m = klen < prev_klen ? klen : prev_klen;
            int c = memcmp(key, prev_key, (size_t)m);
            if (c < 0 || (c == 0 && klen <= prev_klen)) goto decline;
        }
        int64_t prev_min = 0, prev_max = 0;
        int overlap = 0;
        for (Py_ssize_t i = 0; i < count; i++) {
            const uint8_t *e = idx + at + i * ENTRY_SIZE;
            int64_t mn = (int64_t)load_be64(e), mx = (int64_t)load_be64(e + 8);
            uint64_t off = load_be64(e + 16);
            uint32_t sz = load_be32(e + 24);
            if (mn > mx || sz < MIN_FRAME || off < HEADER_SIZE || off > blocks_end || sz > blocks_end - off) goto decline;
            if (i > 0) {
                if (mn < prev_min) goto decline;
                if (mn <= prev_max) overlap = 1;
                prev_max = mx > prev_max ? mx : prev_max;
            } else {
                prev_max = mx;
            }
            prev_min = mn;
            if (nkeys == 0 && i == 0) {
                lo = mn;
                hi = mx;
            } else {
                lo = mn < lo ? mn : lo;
                hi = mx > hi ? mx : hi;
            }
        }
        PyObject *k = PyBytes_FromStringAndSize((const char *)key, klen);
        if (k == NULL) goto fail;
        int bad = PyList_Append(keys, k) < 0 || (overlap && PyList_Append(overlapping, k) < 0);
        Py_DECREF(k);
        if (bad) goto fail;
        if (nkeys == cap) {
            cap *= 2;
            int64_t *grown = PyMem_Realloc(positions, cap * sizeof(int64_t));
            if (grown == NULL) goto fail;
            positions = grown;
        }
        positions[nkeys++] = pos;
        prev_key = key;
        prev_klen = klen;
        pos = at + count * ENTRY_SIZE;
    }
    if (nkeys == 0) goto decline;
    result = Py_BuildValue("(ONLLO)", keys, PyBytes_FromStringAndSize((const char *)positions, nkeys * sizeof(int64_t)),
                           (long long)lo, (long long)hi, overlapping);
    goto done;
decline:
    result = Py_None;
    Py_INCREF(result);
    goto done;
fail:
    result = NULL;
done:
    PyMem_Free(positions);
    Py_XDECREF(keys);
    Py_XDECREF(overlapping);
    PyBuffer_Release(&view);
    return result;
}

typedef struct {
    uint64_t off;
    uint32_t size;
    uint32_t key;
    uint8_t btype;
} frame_t;

static int frame_cmp(const void *a, const void *b) {
    const frame_t *x = a, *y = b;
    if (x->off != y->off) return x->off < y->off ? -1 : 1;
    if (x->size != y->size) return x->size < y->size ? -1 : 1;
    return x->key < y->key ? -1 : (x->key > y->key);
}

/* index_frames(index, positions, keys) -> [(offset, size, key, block type)] sorted | None.
 * For an index scan_index (or the Python scan) accepted; keys are in index order, so sorting by
 * (offset, size, key number) gives the order the Python tuples sort in. */
static PyObject *index_frames(PyObject *self, PyObject *args) {
    Py_buffer view, posv;
    PyObject *keys;
    if (!PyArg_ParseTuple(args, "y*y*O!", &view, &posv, &PyList_Type, &keys)) return NULL;
    const uint8_t *idx = view.buf;
    const int64_t *positions = posv.buf;
    Py_ssize_t nkeys = posv.len / (Py_ssize_t)sizeof(int64_t), total = 0, n = 0;
    PyObject *result = NULL;
    frame_t *frames = NULL;
    if (nkeys != PyList_GET_SIZE(keys)) goto decline;
    for (Py_ssize_t k = 0; k < nkeys; k++) {
        int64_t pos = positions[k];
        if (pos < 0 || pos + KEY_OFFSET > view.len) goto decline;
        Py_ssize_t klen = load_be16(idx + pos);
        if (pos + RECORD_HEAD_SIZE + klen > view.len) goto decline;
        Py_ssize_t count = load_be16(idx + pos + KEY_OFFSET + klen + COUNT_AFTER_KEY);
        if (pos + RECORD_HEAD_SIZE + klen + count * ENTRY_SIZE > view.len) goto decline;
        total += count;
    }
    frames = PyMem_Malloc((total ? total : 1) * sizeof(frame_t));
    if (frames == NULL) goto fail;
    for (Py_ssize_t k = 0; k < nkeys; k++) {
        int64_t pos = positions[k];
        Py_ssize_t klen = load_be16(idx + pos);
        uint8_t btype = idx[pos + KEY_OFFSET + klen + TYPE_AFTER_KEY];
        Py_ssize_t count = load_be16(idx + pos + KEY_OFFSET + klen + COUNT_AFTER_KEY);
        const uint8_t *e = idx + pos + KEY_OFFSET + klen + ENTRIES_AFTER_KEY;
        for (Py_ssize_t i = 0; i < count; i++, e += ENTRY_SIZE) {
            frames[n].off = load_be64(e + 16);
            frames[n].size = load_be32(e + 24);
            frames[n].key = (uint32_t)k;
            frames[n].btype = btype;
            n++;
        }
    }
    qsort(frames, (size_t)n, sizeof(frame_t), frame_cmp);
    result = PyList_New(n);
    if (result == NULL) goto fail;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = PyTuple_New(4), *key = PyList_GET_ITEM(keys, frames[i].key);
        if (t == NULL) {
            Py_CLEAR(result);
            goto fail;
        }
        PyList_SET_ITEM(result, i, t);
        PyObject *off = PyLong_FromUnsignedLongLong(frames[i].off), *size = PyLong_FromUnsignedLong(frames[i].size),
                 *btype = PyLong_FromLong(frames[i].btype);
        Py_INCREF(key);
        PyTuple_SET_ITEM(t, 0, off);
        PyTuple_SET_ITEM(t, 1, size);
        PyTuple_SET_ITEM(t, 2, key);
        PyTuple_SET_ITEM(t, 3, btype);
        if (off == NULL || size == NULL || btype == NULL) {
            Py_CLEAR(result);
            goto fail;
        }
    }
    goto done;
decline:
    result = Py_None;
    Py_INCREF(result);
    goto done;
fail:
    result = NULL;
done:
    PyMem_Free(frames);
    PyBuffer_Release(&view);
    PyBuffer_Release(&posv);
    return result;
}

/* ---- list checks and running sums for the pure-Python codecs -----------------------------------
 * Each returns a definite answer only where it is sure; otherwise (an int subclass, a value out of
 * range, anything unexpected) it returns None and the Python code decides, as before. */

/* v as an int64 when it is an exact int within int64; 0 on anything else (no error left set) */
static inline int exact_int64(PyObject *v, long long *out) {
    if (!PyLong_CheckExact(v)) return 0;
    int overflow = 0;
    *out = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (overflow || (*out == -1 && PyErr_Occurred())) {
        PyErr_Clear();
        return 0;
    }
    return 1;
}

/* int64_order(seq, strict) -> -1 (exact int64s, in order) | index of the first out of order | None */
static PyObject *int64_order(PyObject *self, PyObject *args) {
    PyObject *seq;
    int strict;
    if (!PyArg_ParseTuple(args, "Op", &seq, &strict)) return NULL;
    PyObject *fast = PySequence_Fast(seq, "a sequence");
    if (fast == NULL) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast), bad = -1;
    PyObject **items = PySequence_Fast_ITEMS(fast);
    long long prev = 0, cur;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!exact_int64(items[i], &cur)) {
            Py_DECREF(fast);
            Py_RETURN_NONE;
        }
        if (i > 0 && bad < 0 && (strict ? cur <= prev : cur < prev)) bad = i;
        prev = cur;
    }
    Py_DECREF(fast);
    return PyLong_FromSsize_t(bad);
}

/* all_exact(seq, kind) -> True when every item is exactly that type (0 float, 1 int64, 2 uint64,
 * 3 bytes, 4 bool), else None */
static PyObject *all_exact(PyObject *self, PyObject *args) {
    PyObject *seq;
    int kind;
    if (!PyArg_ParseTuple(args, "Oi", &seq, &kind)) return NULL;
    PyObject *fast = PySequence_Fast(seq, "a sequence");
    if (fast == NULL) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    PyObject **items = PySequence_Fast_ITEMS(fast);
    int ok = 1;
    for (Py_ssize_t i = 0; ok && i < n; i++) {
        PyObject *v = items[i];
        long long x;
        switch (kind) {
        case 0: ok = PyFloat_CheckExact(v); break;
        case 1: ok = exact_int64(v, &x); break;
        case 2:
            if (!PyLong_CheckExact(v)) ok = 0;
            else {
                unsigned long long u = PyLong_AsUnsignedLongLong(v);
                if (u == (unsigned long long)-1 && PyErr_Occurred()) {
                    PyErr_Clear();
                    ok = 0;
                }
            }
            break;
        case 3: ok = PyBytes_CheckExact(v); break;
        case 4: ok = PyBool_Check(v); break;
        default: ok = 0;
        }
    }
    Py_DECREF(fast);
    if (ok) Py_RETURN_TRUE;
    Py_RETURN_NONE;
}

/* v as 64 bits when it is an exact int in -2^63 .. 2^64-1 (two's complement for negatives) */
static inline int exact_u64_bits(PyObject *v, int allow_negative, uint64_t *out) {
    if (!PyLong_CheckExact(v)) return 0;
    int overflow = 0;
    long long s = PyLong_AsLongLongAndOverflow(v, &overflow);
    if (s == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    if (!overflow) {
        if (s < 0 && !allow_negative) return 0;
        *out = (uint64_t)s;
        return 1;
    }
    if (overflow < 0) return 0;
    unsigned long long u = PyLong_AsUnsignedLongLong(v);
    if (u == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    *out = u;
    return 1;
}

/* wrap_sums(first, deltas, mult, zigzag, signed) -> list | None: running sums modulo 2^64 as
 * influxd's decoders compute them: out[0] = f(first), out[k] = out[k-1] + f(deltas[k-1]) * mult,
 * f = zigzag decoding when ``zigzag``; values as int64 or uint64. ``first`` and ``mult`` must be
 * exact ints in -2^63 .. 2^64-1 and every delta one in 0 .. 2^64-1 (else None). */
static PyObject *wrap_sums(PyObject *self, PyObject *args) {
    PyObject *first, *deltas, *mult_obj;
    int zigzag, is_signed;
    if (!PyArg_ParseTuple(args, "OOOpp", &first, &deltas, &mult_obj, &zigzag, &is_signed)) return NULL;
    uint64_t acc, mult;
    if (!exact_u64_bits(first, 1, &acc) || !exact_u64_bits(mult_obj, 1, &mult)) Py_RETURN_NONE;
    PyObject *fast = PySequence_Fast(deltas, "a sequence");
    if (fast == NULL) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    PyObject **items = PySequence_Fast_ITEMS(fast);
    PyObject *out = PyList_New(n + 1);
    if (out == NULL) {
        Py_DECREF(fast);
        return NULL;
    }
    if (zigzag) acc = (acc >> 1) ^ (0 - (acc & 1));
    for (Py_ssize_t i = 0; i <= n; i++) {
        if (i > 0) {
            uint64_t d;
            if (!exact_u64_bits(items[i - 1], 0, &d)) {
                Py_DECREF(out);
                Py_DECREF(fast);
                Py_RETURN_NONE;
            }
            if (zigzag) d = (d >> 1) ^ (0 - (d & 1));
            acc += d * mult;
        }
        PyObject *item = is_signed ? PyLong_FromLongLong((long long)acc) : PyLong_FromUnsignedLongLong(acc);
        if (item == NULL) {
            Py_DECREF(out);
            Py_DECREF(fast);
            return NULL;
        }
        PyList_SET_ITEM(out, i, item);
    }
    Py_DECREF(fast);
    return out;
}

/* uvarint at d[*pos] (end exclusive), Go's rules; 0 when cut short or overflowing */
static int uvarint(const uint8_t *d, Py_ssize_t end, Py_ssize_t *pos, uint64_t *out) {
    uint64_t v = 0;
    int shift = 0;
    for (int i = 0; i < 10; i++) {
        if (*pos >= end) return 0;
        uint8_t b = d[(*pos)++];
        if (b < 0x80) {
            if (i == 9 && b > 1) return 0;
            *out = v | ((uint64_t)b << shift);
            return 1;
        }
        v |= (uint64_t)(b & 0x7F) << shift;
        shift += 7;
    }
    return 0;
}

/* the count block_count returns for the block d[0:size] (its checks in one place: block_count and
 * check_frames use it), -1 whenever the Python code must decide */
static long long block_count_at(const uint8_t *d, Py_ssize_t size, Py_ssize_t limit) {
    if (size < 2) return -1;
    Py_ssize_t pos = 1;
    uint64_t ts_len, n = 0;
    if (d[0] > MAX_BLOCK_TYPE || !uvarint(d, size, &pos, &ts_len) || ts_len > (uint64_t)(size - pos) ||
        ts_len < FIRST_VALUE_END)
        return -1;
    const uint8_t *t = d + pos;
    Py_ssize_t tl = (Py_ssize_t)ts_len;
    int enc = t[0] >> 4, scale = t[0] & 15;
    if (enc == 0) {
        if (scale || (tl - 1) % 8) return -1;
        n = (uint64_t)((tl - 1) / 8);
    } else if (enc == 1) {
        if ((tl - 9) % 8) return -1;
        n = 1;
        for (Py_ssize_t w = 9; w < tl; w += 8) n += (uint64_t)S8_N[t[w] >> 4];
    } else if (enc == 2) {
        Py_ssize_t q = 9;
        uint64_t delta;
        if (!uvarint(t, tl, &q, &delta) || !uvarint(t, tl, &q, &n) || q != tl || n == 0) return -1;
    } else {
        return -1;
    }
    if (n > (uint64_t)limit) return -1;
    /* the value section's header must state the same count (tsm/block.py _check_value_header) */
    const uint8_t *v = t + tl;
    Py_ssize_t vl = size - pos - tl;
    if (vl < 1) return -1;
    if (d[0] == BLOCK_INTEGER || d[0] == BLOCK_UNSIGNED) {
        if (v[0] == INT_RAW) {
            if ((vl - 1) % 8 || (uint64_t)((vl - 1) / 8) != n) return -1;
        } else if (v[0] == INT_PACKED) {
            if (vl < FIRST_VALUE_END || (vl - FIRST_VALUE_END) % 8) return -1;
            uint64_t k = 1;
            for (Py_ssize_t w = FIRST_VALUE_END; w < vl; w += 8) k += (uint64_t)S8_N[v[w] >> 4];
            if (k != n) return -1;
        } else if (v[0] == INT_RLE) {
            Py_ssize_t q = FIRST_VALUE_END;
            uint64_t delta, repeat;
            if (vl < FIRST_VALUE_END || !uvarint(v, vl, &q, &delta) || !uvarint(v, vl, &q, &repeat) || q != vl || repeat + 1 != n) return -1;
        } else {
            return -1;
        }
    } else {
        if (v[0] != VALUE_HEADER) return -1;
        if (d[0] == BLOCK_BOOLEAN) {
            Py_ssize_t q = 1;
            uint64_t k;
            if (!uvarint(v, vl, &q, &k) || k != n || (uint64_t)(vl - q) != (n + 7) / 8) return -1;
        } else if (d[0] == BLOCK_STRING) {
            Py_ssize_t q = 1;
            uint64_t ulen;
            if (!uvarint(v, vl, &q, &ulen) || ulen > STRING_MAX_EXPANSION * (uint64_t)(vl - 1) || ulen < n) return -1;
        } else if (vl < FIRST_VALUE_END) { /* float */
            return -1;
        }
    }
    return (long long)n;
}

/* block_count(buf, start, size, limit): the number of timestamps the block buf[start:start+size]
 * claims, read from its frame and timestamp section header only (tsm/block.py count_values), or
 * -1 whenever that is not a well-formed count <= limit (the Python code then names the error). */
static PyObject *block_count(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t start, size, limit;
    if (!PyArg_ParseTuple(args, "y*nnn", &view, &start, &size, &limit)) return NULL;
    long long result = -1;
    if (start < 0 || size < 2 || start > view.len || size > view.len - start) goto done;
    result = block_count_at((const uint8_t *)view.buf + start, size, limit);
done:
    PyBuffer_Release(&view);
    return PyLong_FromLongLong(result);
}

/* WAL resynchronisation prefilter (tsm/wal.py _candidate): the first offset p >= start of data
 * where an entry could start: type byte 1..3, a non-zero length that fits, a whole snappy preamble
 * within max_payload and expansion * length, and at the candidate's end either the end of data or
 * a header passing the same checks. O(1) per offset; -1 when there is none. */
/* tsm/format/wal.py: WRITE_ENTRY .. DELETE_RANGE_ENTRY, ENTRY_HEADER_SIZE (type u8 + length u32 BE) */
#define WAL_FIRST_ENTRY_TYPE 1
#define WAL_LAST_ENTRY_TYPE 3
#define WAL_ENTRY_HEADER_SIZE 5

static int wal_plausible(const uint8_t *d, Py_ssize_t n, Py_ssize_t p, Py_ssize_t max_payload, Py_ssize_t expansion,
                         Py_ssize_t *end_out) {
    if (d[p] < WAL_FIRST_ENTRY_TYPE || d[p] > WAL_LAST_ENTRY_TYPE || p + WAL_ENTRY_HEADER_SIZE > n) return 0;
    uint64_t len = ((uint64_t)d[p + 1] << 24) | ((uint64_t)d[p + 2] << 16) | ((uint64_t)d[p + 3] << 8) | d[p + 4];
    if (len == 0 || (uint64_t)(n - p - WAL_ENTRY_HEADER_SIZE) < len) return 0;
    uint64_t v = 0;
    int shift = 0, ok = 0;
    for (uint64_t i = 0; i < 5 && i < len; i++) {
        uint8_t b = d[p + WAL_ENTRY_HEADER_SIZE + i];
        v |= (uint64_t)(b & 0x7F) << shift;
        if (b < 0x80) { ok = 1; break; }
        shift += 7;
    }
    if (!ok || v > (uint64_t)max_payload || v > (uint64_t)expansion * len) return 0;
    *end_out = p + WAL_ENTRY_HEADER_SIZE + (Py_ssize_t)len;
    return 1;
}

static PyObject *wal_candidate(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t start, max_payload, expansion;
    if (!PyArg_ParseTuple(args, "y*nnn", &view, &start, &max_payload, &expansion)) return NULL;
    const uint8_t *d = (const uint8_t *)view.buf;
    Py_ssize_t n = view.len, found = -1;
    for (Py_ssize_t p = start < 0 ? 0 : start; p < n; p++) {
        Py_ssize_t end, end2;
        if (!wal_plausible(d, n, p, max_payload, expansion, &end)) continue;
        if (end < n && !wal_plausible(d, n, end, max_payload, expansion, &end2)) continue;
        found = p;
        break;
    }
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(found);
}


/* ---- one whole block into packed arrays (export's fast path) ---------------------------------------
 * lp_decode(block, max_values) -> (block_type, timestamps, values) | None
 * block: the bytes after the CRC. timestamps: native int64s, strictly ascending; values: 8 native
 * bytes each (float64 bits, int64, uint64, or 0/1 for booleans). The same values tsm/block.py
 * decode_block returns, for the blocks accepted here: float, integer, unsigned and boolean blocks
 * whose every section is exactly well formed. Anything else (strings, damage, unsorted or repeated
 * timestamps, more than max_values) is declined, and the Python decoder decides. */

static const uint64_t POW10[16] = {1ULL, 10ULL, 100ULL, 1000ULL, 10000ULL, 100000ULL, 1000000ULL, 10000000ULL,
    100000000ULL, 1000000000ULL, 10000000000ULL, 100000000000ULL, 1000000000000ULL, 10000000000000ULL,
    100000000000000ULL, 1000000000000000ULL};

/* count of the values in whole simple8b words d[0:size], or -1 */
static Py_ssize_t s8b_count(const uint8_t *d, Py_ssize_t size) {
    if (size % 8) return -1;
    Py_ssize_t total = 0;
    for (Py_ssize_t i = 0; i < size; i += 8) total += S8_N[d[i] >> 4];
    return total;
}

static void s8b_unpack(const uint8_t *d, Py_ssize_t size, uint64_t *out) {
    Py_ssize_t k = 0;
    for (Py_ssize_t i = 0; i < size; i += 8) {
        uint64_t w = load_be64(d + i);
        int sel = (int)(w >> 60), n = S8_N[sel], bits = S8_BITS[sel];
        uint64_t mask = bits ? ((1ULL << bits) - 1) : 0;
        for (int j = 0; j < n; j++) out[k++] = bits ? (w >> (j * bits)) & mask : 1;
    }
}

/* timestamps section -> count (0 = decline) and, with out != NULL, the values */
static Py_ssize_t ts_section(const uint8_t *d, Py_ssize_t size, Py_ssize_t max_values, uint64_t *out) {
    if (size < 9) return 0;
    int enc = d[0] & 0xF0, scale = d[0] & 0x0F;
    uint64_t t0 = load_be64(d + 1);
    Py_ssize_t n;
    if (enc == INT_RAW) {
        if (scale || (size - 1) % 8) return 0;
        n = (size - 1) / 8;
        if (n > max_values) return 0;
        if (out) {
            out[0] = t0;
            for (Py_ssize_t i = 1; i < n; i++) out[i] = out[i - 1] + load_be64(d + 1 + 8 * i);
        }
        return n;
    }
    if (enc == INT_PACKED) {
        Py_ssize_t m = s8b_count(d + 9, size - 9);
        if (m < 0 || m + 1 > max_values) return 0;
        n = m + 1;
        if (out) {
            s8b_unpack(d + 9, size - 9, out + 1);
            out[0] = t0;
            for (Py_ssize_t i = 1; i < n; i++) out[i] = out[i - 1] + out[i] * POW10[scale];
        }
        return n;
    }
    if (enc == INT_RLE) {
        Py_ssize_t pos = 9;
        uint64_t delta, cnt;
        if (!uvarint(d, size, &pos, &delta) || !uvarint(d, size, &pos, &cnt) || pos != size) return 0;
        if (cnt == 0 || cnt > (uint64_t)max_values) return 0;
        n = (Py_ssize_t)cnt;
        if (out) {
            uint64_t step = delta * POW10[scale];
            for (Py_ssize_t i = 0; i < n; i++) out[i] = t0 + (uint64_t)i * step;
        }
        return n;
    }
    return 0;
}

static inline uint64_t unzigzag(uint64_t z) { return (z >> 1) ^ (0 - (z & 1)); }

/* integer/unsigned section holding exactly n values into out: 0, or 1 to decline */
static int int_section(const uint8_t *d, Py_ssize_t size, Py_ssize_t n, uint64_t *out) {
    if (size < 9) return 1;
    int head = d[0];
    if (head == INT_RAW) {
        if ((size - 1) % 8 || (size - 1) / 8 != n) return 1;
        uint64_t acc = 0;
        for (Py_ssize_t i = 0; i < n; i++) out[i] = acc = acc + unzigzag(load_be64(d + 1 + 8 * i));
        return 0;
    }
    if (head == INT_PACKED) {
        if (s8b_count(d + 9, size - 9) != n - 1) return 1;
        s8b_unpack(d + 9, size - 9, out + 1);
        uint64_t acc = unzigzag(load_be64(d + 1));
        out[0] = acc;
        for (Py_ssize_t i = 1; i < n; i++) out[i] = acc = acc + unzigzag(out[i]);
        return 0;
    }
    if (head == INT_RLE) {
        Py_ssize_t pos = 9;
        uint64_t delta, rep;
        if (!uvarint(d, size, &pos, &delta) || !uvarint(d, size, &pos, &rep) || pos != size) return 1;
        if (rep + 1 != (uint64_t)n) return 1;
        uint64_t v = unzigzag(load_be64(d + 1)), step = unzigzag(delta);
        for (Py_ssize_t i = 0; i < n; i++) out[i] = v + (uint64_t)i * step;
        return 0;
    }
    return 1;
}

static int bool_section(const uint8_t *d, Py_ssize_t size, Py_ssize_t n, uint64_t *out) {
    if (size < 1 || d[0] != VALUE_HEADER) return 1;
    Py_ssize_t pos = 1;
    uint64_t cnt;
    if (!uvarint(d, size, &pos, &cnt) || cnt != (uint64_t)n) return 1;
    Py_ssize_t need = (n + 7) >> 3;
    if (size - pos != need) return 1;
    if ((n & 7) && (d[size - 1] & ((1u << (8 - (n & 7))) - 1))) return 1; /* padding bits must be 0 */
    for (Py_ssize_t i = 0; i < n; i++) out[i] = (d[pos + (i >> 3)] >> (7 - (i & 7))) & 1;
    return 0;
}

static PyObject *lp_decode(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t max_values;
    if (!PyArg_ParseTuple(args, "y*n", &view, &max_values)) return NULL;
    PyObject *result = NULL, *tsb = NULL, *vsb = NULL;
    const uint8_t *d = (const uint8_t *)view.buf;
    Py_ssize_t size = view.len, pos = 1;
    uint64_t ts_len;
    if (size < 2 || d[0] > MAX_BLOCK_TYPE || d[0] == BLOCK_STRING || max_values < 1) goto decline;
    int type = d[0];
    if (!uvarint(d, size, &pos, &ts_len) || ts_len > (uint64_t)(size - pos)) goto decline;
    const uint8_t *tsd = d + pos, *vd = d + pos + (Py_ssize_t)ts_len;
    Py_ssize_t vsize = size - pos - (Py_ssize_t)ts_len;
    Py_ssize_t n = ts_section(tsd, (Py_ssize_t)ts_len, max_values, NULL);
    if (n < 1) goto decline;
    tsb = PyBytes_FromStringAndSize(NULL, n * 8);
    vsb = PyBytes_FromStringAndSize(NULL, n * 8);
    if (!tsb || !vsb) goto done;
    uint64_t *ts = (uint64_t *)PyBytes_AS_STRING(tsb), *vs = (uint64_t *)PyBytes_AS_STRING(vsb);
    ts_section(tsd, (Py_ssize_t)ts_len, max_values, ts);
    for (Py_ssize_t i = 1; i < n; i++)
        if ((int64_t)ts[i] <= (int64_t)ts[i - 1]) goto decline;
    int rc;
    if (type == BLOCK_FLOAT) rc = gorilla_values(vd, vsize, n, vs);
    else if (type == BLOCK_BOOLEAN) rc = bool_section(vd, vsize, n, vs);
    else rc = int_section(vd, vsize, n, vs);
    if (rc < 0) { PyErr_NoMemory(); goto done; }
    if (rc) goto decline;
    result = Py_BuildValue("(iOO)", type, tsb, vsb);
    goto done;
decline:
    result = Py_NewRef(Py_None);
done:
    Py_XDECREF(tsb);
    Py_XDECREF(vsb);
    PyBuffer_Release(&view);
    return result;
}

/* ---- line protocol (archive/ops/export.py: the window merge of one series' fields) ----------------
 * lp_window(prefix, fields, bound) -> (bytes, lines, values) | None
 * fields: [name_eq: bytes, block_type: int, timestamps: list, values: list, pos: int] per field, in
 * field order. Emits, for every distinct timestamp t <= bound among the fields' values from pos on,
 * one line prefix + "name=value[,name=value...]" (fields in order) + " " + t + "\n", times ascending,
 * and stores each field's new pos. Declines (None, nothing changed) on anything the Python reference
 * must decide: timestamps not strictly ascending or not int64, NaN/Inf floats, a string with a
 * newline or not bytes, values not exactly of the block type. Floats use repr()'s shortest text. */

typedef struct {
    char *buf;
    Py_ssize_t len, cap;
    PyObject *obj; /* the bytes object being filled */
} lpbuf;

static int lp_reserve(lpbuf *b, Py_ssize_t extra) {
    if (b->len + extra <= b->cap) return 0;
    Py_ssize_t cap = b->cap * 2;
    if (cap < b->len + extra) cap = b->len + extra + 4096;
    if (_PyBytes_Resize(&b->obj, cap) < 0) return -1;
    b->buf = PyBytes_AS_STRING(b->obj);
    b->cap = cap;
    return 0;
}

static inline void lp_put(lpbuf *b, const char *s, Py_ssize_t n) {
    memcpy(b->buf + b->len, s, (size_t)n);
    b->len += n;
}

/* decimal text of v (sign included) into the end of tmp[24]; returns the start */
static const char LP_PAIRS[201] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

static inline char *lp_u64(uint64_t v, char *end) {
    char *p = end;
    while (v >= 100) {
        unsigned r = (unsigned)(v % 100);
        v /= 100;
        p -= 2;
        memcpy(p, LP_PAIRS + 2 * r, 2);
    }
    if (v >= 10) {
        p -= 2;
        memcpy(p, LP_PAIRS + 2 * v, 2);
    } else {
        *--p = (char)('0' + v);
    }
    return p;
}

static inline char *lp_i64(int64_t v, char *end) {
    if (v >= 0) return lp_u64((uint64_t)v, end);
    char *p = lp_u64((uint64_t)0 - (uint64_t)v, end);
    *--p = '-';
    return p;
}

typedef struct {
    const char *name;
    Py_ssize_t name_len;
    int type;
    PyObject **vs;
    const uint64_t *pvs; /* packed values (lp_decode), or NULL */
    const int64_t *ts;   /* the window's timestamps, converted (or packed), indexed like the lists */
    Py_ssize_t pos, end; /* window: [pos, end) of the lists */
} lpfield;

/* Shortest round-trip float text, byte for byte Python's repr() (Ryu, Ulf Adams 2018: the digits
 * are the shortest that parse back to the same double, the closest to it among those; repr() prints
 * them as 'r' mode of PyOS_double_to_string). The power-of-5 tables are computed by Python (exact
 * integers) and handed over once by lp_tables(); until then, and for zero, PyOS_double_to_string
 * itself is used. tests/test_export_speed.py holds the two equal over random and edge doubles. */
#define RYU_POW5_INV_BITCOUNT 125
#define RYU_POW5_BITCOUNT 125
#define RYU_INV_TABLE 342
#define RYU_TABLE 326
static uint64_t ryu_inv[RYU_INV_TABLE][2], ryu_pow[RYU_TABLE][2];
static int ryu_ready = 0;

static inline uint32_t ryu_pow5bits(int32_t e) { return (uint32_t)(((uint32_t)e * 1217359) >> 19) + 1; }
static inline uint32_t ryu_log10pow2(int32_t e) { return ((uint32_t)e * 78913) >> 18; }
static inline uint32_t ryu_log10pow5(int32_t e) { return ((uint32_t)e * 732923) >> 20; }
static inline uint32_t ryu_pow5factor(uint64_t v) {
    uint32_t n = 0;
    for (;;) {
        uint64_t q = v / 5;
        if (v - 5 * q != 0) break;
        v = q;
        n++;
    }
    return n;
}
static inline int ryu_mult5(uint64_t v, uint32_t p) { return ryu_pow5factor(v) >= p; }
static inline int ryu_mult2(uint64_t v, uint32_t p) { return (v & ((1ULL << p) - 1)) == 0; }
static inline uint64_t ryu_mulshift(uint64_t m, const uint64_t *mul, int32_t j) {
    unsigned __int128 b0 = (unsigned __int128)m * mul[0];
    unsigned __int128 b2 = (unsigned __int128)m * mul[1];
    return (uint64_t)(((b0 >> 64) + b2) >> (j - 64));
}

/* digits (as an integer) and decimal exponent of a finite nonzero double's magnitude */
static void ryu_d2d(uint64_t mant, uint32_t expo, uint64_t *digits, int32_t *e10out) {
    int32_t e2;
    uint64_t m2;
    if (expo == 0) {
        e2 = 1 - 1023 - 52 - 2;
        m2 = mant;
    } else {
        e2 = (int32_t)expo - 1023 - 52 - 2;
        m2 = (1ULL << 52) | mant;
    }
    const int accept = (m2 & 1) == 0;
    const uint64_t mv = 4 * m2;
    const uint32_t mmshift = mant != 0 || expo <= 1;
    uint64_t vr, vp, vm;
    int32_t e10;
    int vm_tz = 0, vr_tz = 0;
    if (e2 >= 0) {
        const uint32_t q = ryu_log10pow2(e2) - (e2 > 3);
        e10 = (int32_t)q;
        const int32_t k = RYU_POW5_INV_BITCOUNT + (int32_t)ryu_pow5bits((int32_t)q) - 1;
        const int32_t i = -e2 + (int32_t)q + k;
        vr = ryu_mulshift(4 * m2, ryu_inv[q], i);
        vp = ryu_mulshift(4 * m2 + 2, ryu_inv[q], i);
        vm = ryu_mulshift(4 * m2 - 1 - mmshift, ryu_inv[q], i);
        if (q <= 21) {
            if (mv % 5 == 0) vr_tz = ryu_mult5(mv, q);
            else if (accept) vm_tz = ryu_mult5(mv - 1 - mmshift, q);
            else vp -= ryu_mult5(mv + 2, q);
        }
    } else {
        const uint32_t q = ryu_log10pow5(-e2) - (-e2 > 1);
        e10 = (int32_t)q + e2;
        const int32_t i = -e2 - (int32_t)q;
        const int32_t k = (int32_t)ryu_pow5bits(i) - RYU_POW5_BITCOUNT;
        const int32_t j = (int32_t)q - k;
        vr = ryu_mulshift(4 * m2, ryu_pow[i], j);
        vp = ryu_mulshift(4 * m2 + 2, ryu_pow[i], j);
        vm = ryu_mulshift(4 * m2 - 1 - mmshift, ryu_pow[i], j);
        if (q <= 1) {
            vr_tz = 1;
            if (accept) vm_tz = mmshift == 1;
            else --vp;
        } else if (q < 63) {
            vr_tz = ryu_mult2(mv, q);
        }
    }
    int32_t removed = 0;
    uint32_t last = 0;
    uint64_t out;
    if (vm_tz || vr_tz) {
        for (;;) {
            uint64_t vp10 = vp / 10, vm10 = vm / 10;
            if (vp10 <= vm10) break;
            uint32_t vmmod = (uint32_t)(vm - 10 * vm10);
            uint64_t vr10 = vr / 10;
            uint32_t vrmod = (uint32_t)(vr - 10 * vr10);
            vm_tz &= vmmod == 0;
            vr_tz &= last == 0;
            last = vrmod;
            vr = vr10; vp = vp10; vm = vm10;
            ++removed;
        }
        if (vm_tz) {
            for (;;) {
                uint64_t vm10 = vm / 10;
                uint32_t vmmod = (uint32_t)(vm - 10 * vm10);
                if (vmmod != 0) break;
                uint64_t vp10 = vp / 10, vr10 = vr / 10;
                uint32_t vrmod = (uint32_t)(vr - 10 * vr10);
                vr_tz &= last == 0;
                last = vrmod;
                vr = vr10; vp = vp10; vm = vm10;
                ++removed;
            }
        }
        if (vr_tz && last == 5 && vr % 2 == 0) last = 4;
        out = vr + ((vr == vm && (!accept || !vm_tz)) || last >= 5);
    } else {
        int up = 0;
        uint64_t vp100 = vp / 100, vm100 = vm / 100;
        if (vp100 > vm100) {
            uint64_t vr100 = vr / 100;
            uint32_t vrmod = (uint32_t)(vr - 100 * vr100);
            up = vrmod >= 50;
            vr = vr100; vp = vp100; vm = vm100;
            removed += 2;
        }
        for (;;) {
            uint64_t vp10 = vp / 10, vm10 = vm / 10;
            if (vp10 <= vm10) break;
            uint64_t vr10 = vr / 10;
            uint32_t vrmod = (uint32_t)(vr - 10 * vr10);
            up = vrmod >= 5;
            vr = vr10; vp = vp10; vm = vm10;
            ++removed;
        }
        out = vr + (vr == vm || up);
    }
    *digits = out;
    *e10out = e10 + removed;
}

/* repr(d) into o (at least 32 bytes); returns its length, or -1 to let PyOS_double_to_string do it */
static int lp_float(double d, char *o) {
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    uint64_t mant = bits & ((1ULL << 52) - 1);
    uint32_t expo = (uint32_t)((bits >> 52) & 0x7FF);
    if (!ryu_ready || expo == 0x7FF || (expo == 0 && mant == 0)) return -1;
    uint64_t v;
    int32_t e10;
    ryu_d2d(mant, expo, &v, &e10);
    char dig[24];
    int n = 0;
    char tmp[24];
    char *p = lp_u64(v, tmp + 24);
    n = (int)(tmp + 24 - p);
    memcpy(dig, p, (size_t)n);
    int decpt = n + e10; /* value = 0.DIGITS x 10^decpt */
    char *w = o;
    if (bits >> 63) *w++ = '-';
    if (decpt <= -4 || decpt > 16) { /* repr's exponent form: d[.ddd]e[+-]XX */
        *w++ = dig[0];
        if (n > 1) {
            *w++ = '.';
            memcpy(w, dig + 1, (size_t)(n - 1));
            w += n - 1;
        }
        int x = decpt - 1;
        *w++ = 'e';
        *w++ = x < 0 ? '-' : '+';
        if (x < 0) x = -x;
        if (x >= 100) { *w++ = (char)('0' + x / 100); x %= 100; *w++ = (char)('0' + x / 10); *w++ = (char)('0' + x % 10); }
        else { *w++ = (char)('0' + x / 10); *w++ = (char)('0' + x % 10); }
    } else if (decpt <= 0) {
        *w++ = '0';
        *w++ = '.';
        for (int i = 0; i < -decpt; i++) *w++ = '0';
        memcpy(w, dig, (size_t)n);
        w += n;
    } else if (decpt >= n) {
        memcpy(w, dig, (size_t)n);
        w += n;
        for (int i = n; i < decpt; i++) *w++ = '0';
        *w++ = '.';
        *w++ = '0';
    } else {
        memcpy(w, dig, (size_t)decpt);
        w += decpt;
        *w++ = '.';
        memcpy(w, dig + decpt, (size_t)(n - decpt));
        w += n - decpt;
    }
    return (int)(w - o);
}

/* lp_tables(pow5, inv_pow5): the tables as little-endian (low, high) uint64 pairs */
static PyObject *lp_tables(PyObject *self, PyObject *args) {
    Py_buffer a, b;
    if (!PyArg_ParseTuple(args, "y*y*", &a, &b)) return NULL;
    int ok = a.len == (Py_ssize_t)sizeof ryu_pow && b.len == (Py_ssize_t)sizeof ryu_inv;
    if (ok) {
        memcpy(ryu_pow, a.buf, sizeof ryu_pow);
        memcpy(ryu_inv, b.buf, sizeof ryu_inv);
        ryu_ready = 1;
    }
    PyBuffer_Release(&a);
    PyBuffer_Release(&b);
    return PyBool_FromLong(ok);
}

/* lp_float_repr(d) -> str: the compiled text of one float (for the tests), None where it defers */
static PyObject *lp_float_repr(PyObject *self, PyObject *arg) {
    double d = PyFloat_AsDouble(arg);
    if (d == -1.0 && PyErr_Occurred()) return NULL;
    char o[40];
    int n = lp_float(d, o);
    if (n < 0) Py_RETURN_NONE;
    return PyUnicode_FromStringAndSize(o, n);
}

/* 0: appended; 1: decline; -1: error */
static int lp_value(lpbuf *b, int type, PyObject *v) {
    char tmp[32];
    char *p;
    switch (type) {
    case BLOCK_FLOAT: {
        if (!PyFloat_CheckExact(v)) return 1;
        double d = PyFloat_AS_DOUBLE(v);
        if (!isfinite(d)) return 1;
        if (lp_reserve(b, 40) < 0) return -1;
        int fast = lp_float(d, b->buf + b->len);
        if (fast >= 0) {
            b->len += fast;
            return 0;
        }
        char *s = PyOS_double_to_string(d, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
        if (s == NULL) return -1;
        Py_ssize_t n = (Py_ssize_t)strlen(s);
        if (lp_reserve(b, n) < 0) { PyMem_Free(s); return -1; }
        lp_put(b, s, n);
        PyMem_Free(s);
        return 0;
    }
    case BLOCK_INTEGER: {
        if (!PyLong_CheckExact(v)) return 1;
        int overflow = 0;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (overflow || (x == -1 && PyErr_Occurred())) { PyErr_Clear(); return 1; }
        p = lp_i64((int64_t)x, tmp + 31);
        tmp[31] = 'i';
        if (lp_reserve(b, tmp + 32 - p) < 0) return -1;
        lp_put(b, p, tmp + 32 - p);
        return 0;
    }
    case BLOCK_UNSIGNED: {
        if (!PyLong_CheckExact(v)) return 1;
        if (_PyLong_Sign(v) < 0) return 1;
        unsigned long long x = PyLong_AsUnsignedLongLong(v);
        if (x == (unsigned long long)-1 && PyErr_Occurred()) { PyErr_Clear(); return 1; }
        p = lp_u64((uint64_t)x, tmp + 31);
        tmp[31] = 'u';
        if (lp_reserve(b, tmp + 32 - p) < 0) return -1;
        lp_put(b, p, tmp + 32 - p);
        return 0;
    }
    case BLOCK_BOOLEAN:
        if (v == Py_True) { if (lp_reserve(b, 4) < 0) return -1; lp_put(b, "true", 4); return 0; }
        if (v == Py_False) { if (lp_reserve(b, 5) < 0) return -1; lp_put(b, "false", 5); return 0; }
        return 1;
    case BLOCK_STRING: {
        if (!PyBytes_CheckExact(v)) return 1;
        const char *s = PyBytes_AS_STRING(v);
        Py_ssize_t n = PyBytes_GET_SIZE(v);
        if (memchr(s, '\n', (size_t)n)) return 1;
        if (lp_reserve(b, 2 * n + 2) < 0) return -1;
        char *o = b->buf + b->len;
        *o++ = '"';
        for (Py_ssize_t i = 0; i < n; i++) {
            char c = s[i];
            if (c == '"' || c == '\\') *o++ = '\\';
            *o++ = c;
        }
        *o++ = '"';
        b->len = o - b->buf;
        return 0;
    }
    }
    return 1;
}

/* a packed value (lp_decode): 0 appended; 1 decline; -1 error */
static int lp_value_packed(lpbuf *b, int type, uint64_t v) {
    char tmp[32];
    char *p;
    if (lp_reserve(b, 40) < 0) return -1;
    switch (type) {
    case BLOCK_FLOAT: {
        double d;
        memcpy(&d, &v, sizeof d);
        if (!isfinite(d)) return 1;
        int fast = lp_float(d, b->buf + b->len);
        if (fast >= 0) {
            b->len += fast;
            return 0;
        }
        char *s = PyOS_double_to_string(d, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
        if (s == NULL) return -1;
        Py_ssize_t n = (Py_ssize_t)strlen(s);
        if (n < 40) lp_put(b, s, n);
        PyMem_Free(s);
        return n < 40 ? 0 : 1;
    }
    case BLOCK_INTEGER:
        p = lp_i64((int64_t)v, tmp + 31);
        tmp[31] = 'i';
        lp_put(b, p, tmp + 32 - p);
        return 0;
    case BLOCK_UNSIGNED:
        p = lp_u64(v, tmp + 31);
        tmp[31] = 'u';
        lp_put(b, p, tmp + 32 - p);
        return 0;
    case BLOCK_BOOLEAN:
        if (v == 1) { lp_put(b, "true", 4); return 0; }
        if (v == 0) { lp_put(b, "false", 5); return 0; }
        return 1;
    }
    return 1;
}

static PyObject *lp_window(PyObject *self, PyObject *args) {
    const char *prefix;
    Py_ssize_t prefix_len;
    PyObject *fields;
    long long bound;
    if (!PyArg_ParseTuple(args, "y#O!L", &prefix, &prefix_len, &PyList_Type, &fields, &bound)) return NULL;
    Py_ssize_t k = PyList_GET_SIZE(fields);
    if (k < 1 || k > 100000) Py_RETURN_NONE;
    PyObject *result = NULL;
    lpfield *fs = (lpfield *)PyMem_Calloc((size_t)k, sizeof(lpfield));
    lpbuf b = {NULL, 0, 0, NULL};
    if (fs == NULL) return PyErr_NoMemory();
    Py_ssize_t total = 0, packed_total = 0;
    for (Py_ssize_t f = 0; f < k; f++) {
        PyObject *item = PyList_GET_ITEM(fields, f);
        if (!PyList_CheckExact(item) || PyList_GET_SIZE(item) != 5) goto decline;
        PyObject *name = PyList_GET_ITEM(item, 0), *typ = PyList_GET_ITEM(item, 1);
        PyObject *ts = PyList_GET_ITEM(item, 2), *vs = PyList_GET_ITEM(item, 3), *pos = PyList_GET_ITEM(item, 4);
        if (!PyBytes_CheckExact(name) || !PyLong_CheckExact(typ) || !PyLong_CheckExact(pos)) goto decline;
        long t = PyLong_AsLong(typ);
        Py_ssize_t p = PyLong_AsSsize_t(pos);
        if (PyErr_Occurred()) { PyErr_Clear(); goto decline; }
        if (t < 0 || t > MAX_BLOCK_TYPE) goto decline;
        fs[f].name = PyBytes_AS_STRING(name);
        fs[f].name_len = PyBytes_GET_SIZE(name);
        fs[f].type = (int)t;
        fs[f].pos = p;
        if (PyBytes_CheckExact(ts) && PyBytes_CheckExact(vs)) { /* packed (lp_decode) */
            Py_ssize_t n = PyBytes_GET_SIZE(ts) / 8, e = p;
            if (PyBytes_GET_SIZE(ts) % 8 || PyBytes_GET_SIZE(vs) != PyBytes_GET_SIZE(ts) || p < 0 || p > n)
                goto decline;
            const int64_t *pts = (const int64_t *)PyBytes_AS_STRING(ts);
            for (; e < n && pts[e] <= bound; e++)
                if (e > p && pts[e] <= pts[e - 1]) goto decline;
            fs[f].ts = pts;
            fs[f].pvs = (const uint64_t *)PyBytes_AS_STRING(vs);
            fs[f].end = e;
            packed_total += e - p;
            continue;
        }
        if (!PyList_CheckExact(ts) || !PyList_CheckExact(vs) || PyList_GET_SIZE(ts) != PyList_GET_SIZE(vs)) goto decline;
        if (p < 0 || p > PyList_GET_SIZE(ts)) goto decline;
        fs[f].vs = PySequence_Fast_ITEMS(vs);
        /* the window: values from pos with t <= bound, strictly ascending int64 */
        Py_ssize_t n = PyList_GET_SIZE(ts), e = p;
        PyObject **titems = PySequence_Fast_ITEMS(ts);
        int64_t last = 0;
        for (; e < n; e++) {
            PyObject *o = titems[e];
            if (!PyLong_CheckExact(o)) goto decline;
            int overflow = 0;
            long long x = PyLong_AsLongLongAndOverflow(o, &overflow);
            if (overflow || (x == -1 && PyErr_Occurred())) { PyErr_Clear(); goto decline; }
            if (x > bound) break;
            if (e > p && x <= last) goto decline;
            last = x;
        }
        fs[f].end = e;
        total += e - p;
    }
    int64_t *tsbuf = (int64_t *)PyMem_Malloc((size_t)(total ? total : 1) * sizeof(int64_t));
    if (tsbuf == NULL) { PyErr_NoMemory(); goto done; }
    {
        Py_ssize_t at = 0;
        for (Py_ssize_t f = 0; f < k; f++) {
            if (fs[f].pvs) continue;
            PyObject **titems = PySequence_Fast_ITEMS(PyList_GET_ITEM(PyList_GET_ITEM(fields, f), 2));
            fs[f].ts = tsbuf + at - fs[f].pos; /* indexed like the lists */
            for (Py_ssize_t i = fs[f].pos; i < fs[f].end; i++) tsbuf[at++] = (int64_t)PyLong_AsLongLong(titems[i]);
        }
    }
    b.cap = (total + packed_total) * (24 + prefix_len / 2) + prefix_len * 2 + 64;
    b.obj = PyBytes_FromStringAndSize(NULL, b.cap);
    if (b.obj == NULL) { PyMem_Free(tsbuf); goto done; }
    b.buf = PyBytes_AS_STRING(b.obj);
    Py_ssize_t lines = 0, values = 0;
    Py_ssize_t *cur = (Py_ssize_t *)PyMem_Malloc((size_t)k * sizeof(Py_ssize_t));
    if (cur == NULL) { PyErr_NoMemory(); PyMem_Free(tsbuf); goto done; }
    for (Py_ssize_t f = 0; f < k; f++) cur[f] = fs[f].pos;
    int rc = 0;
    for (;;) {
        int have = 0;
        int64_t t = 0;
        for (Py_ssize_t f = 0; f < k; f++) {
            if (cur[f] < fs[f].end && (!have || fs[f].ts[cur[f]] < t)) { t = fs[f].ts[cur[f]]; have = 1; }
        }
        if (!have) break;
        if (lp_reserve(&b, prefix_len + 1) < 0) { rc = -1; break; }
        lp_put(&b, prefix, prefix_len);
        int first = 1;
        for (Py_ssize_t f = 0; f < k; f++) {
            if (cur[f] >= fs[f].end || fs[f].ts[cur[f]] != t) continue;
            if (lp_reserve(&b, fs[f].name_len + 1) < 0) { rc = -1; break; }
            if (!first) b.buf[b.len++] = ',';
            first = 0;
            lp_put(&b, fs[f].name, fs[f].name_len);
            rc = fs[f].pvs ? lp_value_packed(&b, fs[f].type, fs[f].pvs[cur[f]]) : lp_value(&b, fs[f].type, fs[f].vs[cur[f]]);
            if (rc) break;
            cur[f]++;
            values++;
        }
        if (rc) break;
        char tmp[24];
        char *p = lp_i64(t, tmp + 23);
        tmp[23] = '\n';
        if (lp_reserve(&b, tmp + 24 - p + 1) < 0) { rc = -1; break; }
        b.buf[b.len++] = ' ';
        lp_put(&b, p, tmp + 24 - p);
        lines++;
    }
    PyMem_Free(tsbuf);
    if (rc) {
        PyMem_Free(cur);
        Py_CLEAR(b.obj);
        if (rc < 0) goto done;
        goto decline;
    }
    for (Py_ssize_t f = 0; f < k; f++) {
        PyObject *np = PyLong_FromSsize_t(cur[f]);
        if (np == NULL) { PyMem_Free(cur); goto done; } /* positions partly stored: an error, never a result */
        PyList_SetItem(PyList_GET_ITEM(fields, f), 4, np);
    }
    PyMem_Free(cur);
    if (_PyBytes_Resize(&b.obj, b.len) < 0) goto done;
    result = Py_BuildValue("(Nnn)", b.obj, lines, values);
    b.obj = NULL;
    goto done;
decline:
    result = Py_NewRef(Py_None);
done:
    Py_XDECREF(b.obj);
    PyMem_Free(fs);
    return result;
}

/* ---------------------------------------------------------------------------------------------
 * verify: every block frame of a window checked in one call (archive/ops/tsmcopy.py checked_chunks)
 *
 * A frame is its big-endian CRC-32 (IEEE, zlib's) of the block followed by the block
 * (docs/formats.md#tsm-blocks). crc32_ieee is zlib's crc32: a table CRC (slice-by-8), and on x86-64
 * CPUs with PCLMULQDQ the carry-less multiplication folding of Gopal et al., "Fast CRC Computation
 * for Generic Polynomials Using PCLMULQDQ Instruction" (Intel, 2009), over whole 16-byte chunks of
 * at least 64 bytes. Both work on the inverted register (start ~0, result inverted at the end). */

static uint32_t CRC_T[8][256];
static int crc_ready = 0;   /* set once under the GIL, before any call releases it */
static int crc_pclmul = 0;

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        CRC_T[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++)
        for (int t = 1; t < 8; t++) CRC_T[t][i] = (CRC_T[t - 1][i] >> 8) ^ CRC_T[0][CRC_T[t - 1][i] & 0xFF];
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    crc_pclmul = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
#endif
    crc_ready = 1;
}

static uint32_t crc_table(uint32_t c, const uint8_t *p, size_t n) {
    while (n && ((uintptr_t)p & 7)) { c = CRC_T[0][(c ^ *p++) & 0xFF] ^ (c >> 8); n--; }
    while (n >= 8) {
        uint32_t lo = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
        uint32_t hi = (uint32_t)p[4] | (uint32_t)p[5] << 8 | (uint32_t)p[6] << 16 | (uint32_t)p[7] << 24;
        c = CRC_T[7][lo & 0xFF] ^ CRC_T[6][(lo >> 8) & 0xFF] ^ CRC_T[5][(lo >> 16) & 0xFF] ^ CRC_T[4][lo >> 24] ^
            CRC_T[3][hi & 0xFF] ^ CRC_T[2][(hi >> 8) & 0xFF] ^ CRC_T[1][(hi >> 16) & 0xFF] ^ CRC_T[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--) c = CRC_T[0][(c ^ *p++) & 0xFF] ^ (c >> 8);
    return c;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
/* len >= 64 and a multiple of 16; c the inverted register; returns the inverted register */
__attribute__((target("pclmul,sse4.1")))
static uint32_t crc_fold(const uint8_t *buf, size_t len, uint32_t c) {
    /* the bit-reflected constants of the paper for the IEEE polynomial: x^(4*128+32), x^(4*128-32)
     * mod P; x^(128+32), x^(128-32); x^64; the Barrett constants (P and floor(x^64 / P)) */
    static const uint64_t k1k2[2] __attribute__((aligned(16))) = {0x0154442bd4ULL, 0x01c6e41596ULL};
    static const uint64_t k3k4[2] __attribute__((aligned(16))) = {0x01751997d0ULL, 0x00ccaa009eULL};
    static const uint64_t k5k0[2] __attribute__((aligned(16))) = {0x0163cd6124ULL, 0x0000000000ULL};
    static const uint64_t poly[2] __attribute__((aligned(16))) = {0x01db710641ULL, 0x01f7011641ULL};
    __m128i x0, x1, x2, x3, x4, x5, x6, x7, x8, y5, y6, y7, y8;
    x1 = _mm_loadu_si128((const __m128i *)(buf + 0x00));
    x2 = _mm_loadu_si128((const __m128i *)(buf + 0x10));
    x3 = _mm_loadu_si128((const __m128i *)(buf + 0x20));
    x4 = _mm_loadu_si128((const __m128i *)(buf + 0x30));
    x1 = _mm_xor_si128(x1, _mm_cvtsi32_si128((int)c));
    x0 = _mm_load_si128((const __m128i *)k1k2);
    buf += 64;
    len -= 64;
    while (len >= 64) { /* four 128-bit lanes folded 512 bits ahead */
        x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
        x6 = _mm_clmulepi64_si128(x2, x0, 0x00);
        x7 = _mm_clmulepi64_si128(x3, x0, 0x00);
        x8 = _mm_clmulepi64_si128(x4, x0, 0x00);
        x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
        x2 = _mm_clmulepi64_si128(x2, x0, 0x11);
        x3 = _mm_clmulepi64_si128(x3, x0, 0x11);
        x4 = _mm_clmulepi64_si128(x4, x0, 0x11);
        y5 = _mm_loadu_si128((const __m128i *)(buf + 0x00));
        y6 = _mm_loadu_si128((const __m128i *)(buf + 0x10));
        y7 = _mm_loadu_si128((const __m128i *)(buf + 0x20));
        y8 = _mm_loadu_si128((const __m128i *)(buf + 0x30));
        x1 = _mm_xor_si128(_mm_xor_si128(x1, x5), y5);
        x2 = _mm_xor_si128(_mm_xor_si128(x2, x6), y6);
        x3 = _mm_xor_si128(_mm_xor_si128(x3, x7), y7);
        x4 = _mm_xor_si128(_mm_xor_si128(x4, x8), y8);
        buf += 64;
        len -= 64;
    }
    x0 = _mm_load_si128((const __m128i *)k3k4); /* the four lanes into one */
    x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
    x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
    x1 = _mm_xor_si128(_mm_xor_si128(x1, x2), x5);
    x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
    x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
    x1 = _mm_xor_si128(_mm_xor_si128(x1, x3), x5);
    x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
    x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
    x1 = _mm_xor_si128(_mm_xor_si128(x1, x4), x5);
    while (len >= 16) { /* the remaining 16-byte chunks */
        x2 = _mm_loadu_si128((const __m128i *)buf);
        x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
        x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
        x1 = _mm_xor_si128(_mm_xor_si128(x1, x2), x5);
        buf += 16;
        len -= 16;
    }
    x2 = _mm_clmulepi64_si128(x1, x0, 0x10); /* 128 bits to 64 */
    x3 = _mm_setr_epi32(~0, 0, ~0, 0);
    x1 = _mm_srli_si128(x1, 8);
    x1 = _mm_xor_si128(x1, x2);
    x0 = _mm_loadl_epi64((const __m128i *)k5k0);
    x2 = _mm_srli_si128(x1, 4);
    x1 = _mm_and_si128(x1, x3);
    x1 = _mm_clmulepi64_si128(x1, x0, 0x00);
    x1 = _mm_xor_si128(x1, x2);
    x0 = _mm_load_si128((const __m128i *)poly); /* Barrett reduction to 32 bits */
    x2 = _mm_and_si128(x1, x3);
    x2 = _mm_clmulepi64_si128(x2, x0, 0x10);
    x2 = _mm_and_si128(x2, x3);
    x2 = _mm_clmulepi64_si128(x2, x0, 0x00);
    x1 = _mm_xor_si128(x1, x2);
    return (uint32_t)_mm_extract_epi32(x1, 1);
}
#endif

/* zlib.crc32(p[0:n]) (crc_init must have run) */
static uint32_t crc32_ieee(const uint8_t *p, size_t n, int fold) {
    uint32_t c = 0xFFFFFFFFu;
#if defined(__x86_64__) && defined(__GNUC__)
    if (fold && n >= 64) {
        size_t whole = n & ~(size_t)15;
        c = crc_fold(p, whole, c);
        p += whole;
        n -= whole;
    }
#else
    (void)fold;
#endif
    return ~crc_table(c, p, n);
}

/* crc32(data, table_only=False) -> zlib.crc32(data): the CRC check_frames computes (for the
 * differential tests; table_only forces the table CRC on a CPU that folds) */
static PyObject *crc32(PyObject *self, PyObject *args) {
    Py_buffer view;
    int table_only = 0;
    if (!PyArg_ParseTuple(args, "y*|p", &view, &table_only)) return NULL;
    if (!crc_ready) crc_init();
    uint32_t c;
    int fold = crc_pclmul && !table_only;
    Py_BEGIN_ALLOW_THREADS
    c = crc32_ieee((const uint8_t *)view.buf, (size_t)view.len, fold);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(c);
}

/* check_frames(window, pos, frames, i, max_values) -> j: window holds the file's bytes from offset
 * pos; frames is TSMReader.frames() (sorted (offset, size, key, type) tuples). Frames i, i+1, ...
 * lying wholly inside the window are checked as checked_chunks checks them: stored CRC equal to the
 * computed one, block type byte equal to the index's, block_count_at accepting the block (a count
 * <= max_values and value headers stating it). Returns the index of the first frame that is not
 * inside the window or not clean (the Python code then decides it) or len(frames). The CRCs are
 * computed without the GIL, in batches, so shards checked on several threads use several cores. */
#define FRAME_BATCH 512
static PyObject *check_frames(PyObject *self, PyObject *args) {
    Py_buffer view;
    PyObject *frames;
    Py_ssize_t pos, i, limit;
    if (!PyArg_ParseTuple(args, "y*nO!nn", &view, &pos, &PyList_Type, &frames, &i, &limit)) return NULL;
    if (!crc_ready) crc_init();
    const uint8_t *base = (const uint8_t *)view.buf;
    Py_ssize_t end = pos + view.len, n = PyList_GET_SIZE(frames);
    Py_ssize_t at[FRAME_BATCH], size[FRAME_BATCH];
    long type[FRAME_BATCH];
    if (i < 0 || i > n) i = n; /* nothing to check */
    while (i < n) {
        Py_ssize_t k = 0;
        while (k < FRAME_BATCH && i + k < n) {
            PyObject *t = PyList_GET_ITEM(frames, i + k);
            if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 4) break;
            Py_ssize_t off = PyLong_AsSsize_t(PyTuple_GET_ITEM(t, 0));
            Py_ssize_t sz = PyLong_AsSsize_t(PyTuple_GET_ITEM(t, 1));
            long ty = PyLong_AsLong(PyTuple_GET_ITEM(t, 3));
            if (PyErr_Occurred()) { PyErr_Clear(); break; }
            if (off < pos || sz <= 4 || off > end || sz > end - off) break;
            at[k] = off - pos;
            size[k] = sz;
            type[k] = ty;
            k++;
        }
        Py_ssize_t good = 0;
        int fold = crc_pclmul;
        Py_BEGIN_ALLOW_THREADS
        for (; good < k; good++) {
            const uint8_t *f = base + at[good];
            uint32_t stored = (uint32_t)f[0] << 24 | (uint32_t)f[1] << 16 | (uint32_t)f[2] << 8 | f[3];
            if (f[4] != type[good] || crc32_ieee(f + 4, (size_t)(size[good] - 4), fold) != stored ||
                block_count_at(f + 4, size[good] - 4, limit) < 0)
                break;
        }
        Py_END_ALLOW_THREADS
        i += good;
        if (good < k || k < FRAME_BATCH) break;
    }
    PyBuffer_Release(&view);
    return PyLong_FromSsize_t(i);
}

/* ---- block encoders (trim's boundary blocks: tsm/codec/timestamps.py, integers.py) ---------------------
 * Byte-identical to the Python encoders, which stay the reference: each returns None wherever they
 * must decide (an empty or non-list-like input, an item not an exact int / bool, out of range), so
 * the caller runs the Python codec on the same input. tests/test_speedups_encoders.py compares
 * the bytes on random and edge inputs. */

/* the items of a sequence as 64-bit words: kind 0 int64, 1 uint64 (exact ints in range); NULL with *n_out = -1 (no error set) to decline */
static uint64_t *enc_words(PyObject *arg, int kind, Py_ssize_t *n_out) {
    *n_out = -1;
    PyObject *seq = PySequence_Fast(arg, "values must be a sequence");
    if (!seq) { PyErr_Clear(); return NULL; }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    uint64_t *v = n ? (uint64_t *)PyMem_Malloc((size_t)n * sizeof(uint64_t)) : NULL;
    if (!v) { Py_DECREF(seq); if (n) PyErr_NoMemory(); *n_out = n ? 0 : -1; return NULL; }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *x = items[i];
        long long s;
        if (kind == 0) {
            if (!exact_int64(x, &s)) goto decline;
            v[i] = (uint64_t)s;
        } else if (!exact_u64_bits(x, 0, &v[i])) goto decline;
    }
    Py_DECREF(seq);
    *n_out = n;
    return v;
decline:
    PyMem_Free(v);
    Py_DECREF(seq);
    return NULL;
}

/* simple8b words of v[0:n] (each <= S8_MAX) into words (room for n); -1 when a value does not fit */
static Py_ssize_t enc_s8b(const uint64_t *v, Py_ssize_t n, int windowed, uint64_t *words) {
    Py_ssize_t nw = 0, h = 0;
    if (!windowed) {
        Py_ssize_t last_not_one = n - 1;
        while (last_not_one >= 0 && v[last_not_one] == 1) last_not_one--;
        while (h < n) {
            int used = s8b_pack(v, h, n, h > last_not_one, &words[nw]);
            if (!used) return -1;
            nw++;
            h += used;
        }
        return nw;
    }
    while (h + 240 < n) {
        Py_ssize_t t = h + 240;
        int ones = v[h] == 1;
        for (Py_ssize_t i = h; ones && i < t; i++) ones = v[i] == 1;
        int used = s8b_pack(v, h, t, ones, &words[nw]);
        if (!used) return -1;
        nw++;
        h += used;
    }
    while (h < n) {
        int ones = v[h] == 1 && n - h >= 120;
        for (Py_ssize_t i = h; ones && i < n; i++) ones = v[i] == 1;
        int used = s8b_pack(v, h, n, ones, &words[nw]);
        if (!used) return -1;
        nw++;
        h += used;
    }
    return nw;
}

static inline uint8_t *put_be64(uint8_t *p, uint64_t x) {
    for (int b = 0; b < 8; b++) p[b] = (uint8_t)(x >> (56 - 8 * b));
    return p + 8;
}

static inline uint8_t *put_uvarint(uint8_t *p, uint64_t x) {
    while (x >= 0x80) { *p++ = (uint8_t)((x & 0x7F) | 0x80); x >>= 7; }
    *p++ = (uint8_t)x;
    return p;
}

static uint64_t gcd64(uint64_t a, uint64_t b) {
    while (b) { uint64_t t = a % b; a = b; b = t; }
    return a;
}

/* header byte + words (head: up to 9 bytes before the words) as one bytes object */
static PyObject *enc_finish(const uint8_t *head, Py_ssize_t hlen, const uint64_t *words, Py_ssize_t nw) {
    PyObject *out = PyBytes_FromStringAndSize(NULL, hlen + nw * 8);
    if (!out) return NULL;
    uint8_t *p = (uint8_t *)PyBytes_AS_STRING(out);
    memcpy(p, head, (size_t)hlen);
    p += hlen;
    for (Py_ssize_t i = 0; i < nw; i++) p = put_be64(p, words[i]);
    return out;
}

/* ts_encode(timestamps) -> bytes | None: timestamps.encode (influxd's choice of RLE / raw / packed
 * and of the power-of-ten scale), deltas modulo 2^64 */
static PyObject *ts_encode(PyObject *self, PyObject *arg) {
    Py_ssize_t n;
    uint64_t *t = enc_words(arg, 0, &n);
    if (!t) return n == 0 ? NULL : Py_NewRef(Py_None);
    PyObject *result = NULL;
    Py_ssize_t m = n - 1; /* deltas */
    uint64_t *d = (uint64_t *)PyMem_Malloc((size_t)(m ? m : 1) * sizeof(uint64_t) * 2);
    if (!d) { PyMem_Free(t); return PyErr_NoMemory(); }
    uint64_t *words = d + (m ? m : 1);
    int rle = m > 0;
    uint64_t g = 0, big = 0;
    for (Py_ssize_t i = 0; i < m; i++) {
        d[i] = t[i + 1] - t[i];
        if (d[i] != d[0]) rle = 0;
        if (d[i] > big) big = d[i];
    }
    if (rle) g = d[0];
    else for (Py_ssize_t i = 0; i < m && g != 1; i++) g = gcd64(g, d[i]);
    int scale = 12;
    while (scale && g % POW10[scale]) scale--;
    uint64_t div = POW10[scale];
    uint8_t head[32], *p = head;
    if (rle) {
        *p++ = (uint8_t)(INT_RLE | scale);
        p = put_be64(p, t[0]);
        p = put_uvarint(p, d[0] / div);
        p = put_uvarint(p, (uint64_t)n);
        result = PyBytes_FromStringAndSize((const char *)head, p - head);
    } else if (m && big > S8_MAX) {
        *p++ = INT_RAW;
        p = put_be64(p, t[0]);
        result = enc_finish(head, p - head, d, m);
    } else {
        if (div > 1) for (Py_ssize_t i = 0; i < m; i++) d[i] /= div;
        Py_ssize_t nw = enc_s8b(d, m, 1, words);
        if (nw < 0) result = Py_NewRef(Py_None);
        else {
            *p++ = (uint8_t)(INT_PACKED | scale);
            p = put_be64(p, t[0]);
            result = enc_finish(head, p - head, words, nw);
        }
    }
    PyMem_Free(d);
    PyMem_Free(t);
    return result;
}

/* int_encode(values, unsigned) -> bytes | None: integers.encode / encode_unsigned (zigzag deltas
 * modulo 2^64; RLE iff n > 2 and z_1 .. z_(n-1) equal, else raw iff one z > 2^60 - 1, else packed) */
static PyObject *int_encode(PyObject *self, PyObject *args) {
    PyObject *seq;
    int is_unsigned;
    if (!PyArg_ParseTuple(args, "Op", &seq, &is_unsigned)) return NULL;
    Py_ssize_t n;
    uint64_t *z = enc_words(seq, is_unsigned ? 1 : 0, &n);
    if (!z) return n == 0 ? NULL : Py_NewRef(Py_None);
    PyObject *result = NULL;
    uint64_t prev = 0, big = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t dlt = z[i] - prev;
        prev = z[i];
        z[i] = (dlt << 1) ^ (uint64_t)((int64_t)dlt >> 63);
        if (z[i] > big) big = z[i];
    }
    int rle = n > 2;
    for (Py_ssize_t i = 2; rle && i < n; i++) rle = z[i] == z[1];
    uint8_t head[32], *p = head;
    if (rle) {
        *p++ = INT_RLE;
        p = put_be64(p, z[0]);
        p = put_uvarint(p, z[1]);
        p = put_uvarint(p, (uint64_t)(n - 1));
        result = PyBytes_FromStringAndSize((const char *)head, p - head);
    } else if (big > S8_MAX) {
        *p++ = INT_RAW;
        result = enc_finish(head, 1, z, n);
    } else {
        uint64_t *words = (uint64_t *)PyMem_Malloc((size_t)n * sizeof(uint64_t));
        if (!words) { PyMem_Free(z); return PyErr_NoMemory(); }
        Py_ssize_t nw = enc_s8b(z + 1, n - 1, 0, words);
        if (nw < 0) result = Py_NewRef(Py_None);
        else {
            *p++ = INT_PACKED;
            p = put_be64(p, z[0]);
            result = enc_finish(head, p - head, words, nw);
        }
        PyMem_Free(words);
    }
    PyMem_Free(z);
    return result;
}

static PyMethodDef methods[] = {
    {"block_count", block_count, METH_VARARGS, "block_count(buf, start, size, limit) -> count | -1 (-1: let tsm/block.py name the error)"},
    {"wal_candidate", wal_candidate, METH_VARARGS, "wal_candidate(data, start, max_payload, expansion) -> offset | -1"},
    {"lp_window", lp_window, METH_VARARGS, "lp_window(prefix, fields, bound) -> (bytes, lines, values) | None (None: use the Python code)"},
    {"lp_tables", lp_tables, METH_VARARGS, "lp_tables(pow5, inv_pow5) -> bool: the float formatter's tables"},
    {"lp_float_repr", lp_float_repr, METH_O, "lp_float_repr(f) -> str | None: repr(f) as lp_window writes it"},
    {"lp_decode", lp_decode, METH_VARARGS, "lp_decode(block, max_values) -> (type, int64 timestamps, 8-byte values) | None"},
    {"decode", decode, METH_VARARGS, "decode(section, count) -> list[float] | None (None: use the Python codec)"},
    {"encode", encode, METH_O, "encode(values) -> bytes | None (None: use the Python codec)"},
    {"s8b_decode", s8b_decode, METH_VARARGS, "s8b_decode(words, limit=-1) -> list[int] | None (None: more than limit values, or not whole words)"},
    {"s8b_encode_all", s8b_encode_all, METH_O, "s8b_encode_all(values) -> bytes | None"},
    {"s8b_encode_windowed", s8b_encode_windowed, METH_O, "s8b_encode_windowed(values) -> bytes | None"},
    {"scan_index", scan_index, METH_VARARGS, "scan_index(index, blocks_end) -> (keys, positions, min, max, overlapping) | None"},
    {"index_frames", index_frames, METH_VARARGS, "index_frames(index, positions, keys) -> [(offset, size, key, type)] | None"},
    {"int64_order", int64_order, METH_VARARGS, "int64_order(seq, strict) -> -1 | first index out of order | None"},
    {"all_exact", all_exact, METH_VARARGS, "all_exact(seq, kind) -> True | None"},
    {"wrap_sums", wrap_sums, METH_VARARGS, "wrap_sums(first, deltas, mult, zigzag, signed) -> list | None"},
    {"crc32", crc32, METH_VARARGS, "crc32(data, table_only=False) -> zlib.crc32(data), as check_frames computes it"},
    {"check_frames", check_frames, METH_VARARGS, "check_frames(window, pos, frames, i, max_values) -> first frame >= i not wholly in the window or not clean"},
    {"ts_encode", ts_encode, METH_O, "ts_encode(timestamps) -> bytes | None (None: use the Python codec)"},
    {"int_encode", int_encode, METH_VARARGS, "int_encode(values, unsigned) -> bytes | None (None: use the Python codec)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_speedups", NULL, -1, methods};

PyMODINIT_FUNC PyInit__speedups(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    static const struct { const char *name; long value; } constants[] = {
        {"TSM_HEADER_SIZE", HEADER_SIZE},
        {"INDEX_ENTRY_SIZE", ENTRY_SIZE},
        {"MIN_FRAME_SIZE", MIN_FRAME},
        {"INDEX_KEY_OFFSET", KEY_OFFSET},
        {"INDEX_TYPE_AFTER_KEY", TYPE_AFTER_KEY},
        {"INDEX_COUNT_AFTER_KEY", COUNT_AFTER_KEY},
        {"INDEX_ENTRIES_AFTER_KEY", ENTRIES_AFTER_KEY},
        {"INDEX_RECORD_HEAD_SIZE", RECORD_HEAD_SIZE},
        {"BLOCK_FLOAT", BLOCK_FLOAT},
        {"BLOCK_INTEGER", BLOCK_INTEGER},
        {"BLOCK_BOOLEAN", BLOCK_BOOLEAN},
        {"BLOCK_STRING", BLOCK_STRING},
        {"BLOCK_UNSIGNED", BLOCK_UNSIGNED},
        {"MAX_BLOCK_TYPE", MAX_BLOCK_TYPE},
        {"VALUE_HEADER", VALUE_HEADER},
        {"FIRST_VALUE_END", FIRST_VALUE_END},
        {"INT_RAW", INT_RAW},
        {"INT_PACKED", INT_PACKED},
        {"INT_RLE", INT_RLE},
        {"STRING_MAX_EXPANSION", STRING_MAX_EXPANSION},
        {"WAL_FIRST_ENTRY_TYPE", WAL_FIRST_ENTRY_TYPE},
        {"WAL_LAST_ENTRY_TYPE", WAL_LAST_ENTRY_TYPE},
        {"WAL_ENTRY_HEADER_SIZE", WAL_ENTRY_HEADER_SIZE},
    };
    for (size_t i = 0; i < sizeof(constants) / sizeof(constants[0]); i++) {
        if (PyModule_AddIntConstant(m, constants[i].name, constants[i].value) < 0) goto fail;
    }
    PyObject *big[2] = {PyLong_FromUnsignedLongLong(SENTINEL), PyLong_FromUnsignedLongLong(S8_MAX)};
    const char *big_names[2] = {"FLOAT_SENTINEL", "S8_MAX_VALUE"};
    for (int i = 0; i < 2; i++) {
        if (big[i] == NULL || PyModule_AddObject(m, big_names[i], big[i]) < 0) {
            Py_XDECREF(big[i]);
            if (i == 0) Py_XDECREF(big[1]);
            goto fail;
        }
    }
    PyObject *selectors = PyTuple_New(16); /* tsm/codec/simple8b.py SELECTORS: (values, bits) */
    if (selectors == NULL) goto fail;
    for (int i = 0; i < 16; i++) {
        PyObject *pair = Py_BuildValue("(ii)", S8_N[i], S8_BITS[i]);
        if (pair == NULL) {
            Py_DECREF(selectors);
            goto fail;
        }
        PyTuple_SET_ITEM(selectors, i, pair);
    }
    if (PyModule_AddObject(m, "S8_SELECTORS", selectors) < 0) {
        Py_DECREF(selectors);
        goto fail;
    }
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
