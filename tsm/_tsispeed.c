/* Compiled fast paths for the tsi1 formats (docs/formats.md#tsi1): XXH64 (tsm/tsi1/xxhash.py), the
 * series file form of a line-protocol series key (tsm/tsi1/serieskey.py), a series segment's
 * entries (tsm/tsi1/seriesfile.py iter_segment), a log file of series inserts
 * (tsm/tsi1/index.py log_entry_bytes), and build-tsi's per-key loops over a shard's series
 * (archive/ops/buildtsi.py shard_series and _keyed, archive/ops/tsiwrite.py shard_partitions).
 *
 * Only the happy path lives here: every function returns None when anything is not exactly as
 * the common case (an escape in a key, a damaged entry, a length out of range), and the Python
 * reference then runs on the same input and decides (or raises its precise error). The tests
 * compare both on hypothesis inputs (tests/test_tsi1_speed.py).
 */
#define PY_SSIZE_T_CLEAN
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif
#include <Python.h>
#include <stdint.h>
#include <string.h>

/* tsm/tsi1/format.py */
#define SEGMENT_HEADER_SIZE 5
#define ENTRY_INSERT 0x01
#define ENTRY_TOMBSTONE 0x02
#define ENTRY_HEADER_SIZE 9
#define MAX_KEY_LEN 65535
#define MAX_SERIES_KEY_SIZE (MAX_KEY_LEN + 16)
#define SERIES_PARTITION_N 8
#define LOG_SERIES_INSERT 0x00

#define P1 11400714785074694791ULL
#define P2 14029467366897019727ULL
#define P3 1609587929392839161ULL
#define P4 9650029242287828579ULL
#define P5 2870177450012600261ULL

static inline uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
static inline uint64_t le64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}
static inline uint32_t le32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap32(v);
#endif
    return v;
}
static inline uint64_t xround(uint64_t acc, uint64_t lane) { return rotl(acc + lane * P2, 31) * P1; }
static inline uint64_t xmerge(uint64_t acc, uint64_t val) { return (acc ^ xround(0, val)) * P1 + P4; }

static uint64_t xxh64(const uint8_t *p, size_t n) {
    const uint8_t *end = p + n;
    uint64_t h;
    if (n >= 32) {
        uint64_t v1 = P1 + P2, v2 = P2, v3 = 0, v4 = (uint64_t)0 - P1;
        const uint8_t *limit = end - 32;
        do {
            v1 = xround(v1, le64(p));
            v2 = xround(v2, le64(p + 8));
            v3 = xround(v3, le64(p + 16));
            v4 = xround(v4, le64(p + 24));
            p += 32;
        } while (p <= limit);
        h = rotl(v1, 1) + rotl(v2, 7) + rotl(v3, 12) + rotl(v4, 18);
        h = xmerge(h, v1);
        h = xmerge(h, v2);
        h = xmerge(h, v3);
        h = xmerge(h, v4);
    } else {
        h = P5;
    }
    h += (uint64_t)n;
    while (p + 8 <= end) {
        h ^= xround(0, le64(p));
        h = rotl(h, 27) * P1 + P4;
        p += 8;
    }
    if (p + 4 <= end) {
        h ^= (uint64_t)le32(p) * P1;
        h = rotl(h, 23) * P2 + P3;
        p += 4;
    }
    while (p < end) {
        h ^= (uint64_t)(*p) * P5;
        h = rotl(h, 11) * P1;
        p++;
    }
    h ^= h >> 33;
    h *= P2;
    h ^= h >> 29;
    h *= P3;
    h ^= h >> 32;
    return h;
}

static PyObject *py_sum64(PyObject *self, PyObject *arg) {
    Py_buffer b;
    if (PyObject_GetBuffer(arg, &b, PyBUF_SIMPLE) < 0) return NULL;
    uint64_t h = xxh64((const uint8_t *)b.buf, (size_t)b.len);
    PyBuffer_Release(&b);
    return PyLong_FromUnsignedLongLong(h);
}

static size_t put_uvarint(uint8_t *out, uint64_t v) {
    size_t i = 0;
    while (v >= 0x80) {
        out[i++] = (uint8_t)((v & 0x7F) | 0x80);
        v >>= 7;
    }
    out[i++] = (uint8_t)v;
    return i;
}

/* Go's binary.Uvarint at p (bounded by end): the value, *next set; 0 with *next NULL on error. */
static uint64_t get_uvarint(const uint8_t *p, const uint8_t *end, const uint8_t **next) {
    uint64_t x = 0;
    int s = 0;
    for (int i = 0; i < 10; i++) {
        if (p + i >= end) break;
        uint8_t b = p[i];
        if (b < 0x80) {
            if (i == 9 && b > 1) break;
            *next = p + i + 1;
            return x | ((uint64_t)b << s);
        }
        x |= (uint64_t)(b & 0x7F) << s;
        s += 7;
    }
    *next = NULL;
    return 0;
}

/* series_file_key(line_key) -> bytes | None: parse_key + encode for a key with no backslash and
 * no space whose measurement is not empty and every tag "k=v" has a non-empty value. */
static PyObject *series_file_key(const uint8_t *k, Py_ssize_t n) {
    PyObject *res = NULL;
    if (n == 0 || n > MAX_KEY_LEN || memchr(k, '\\', (size_t)n) || memchr(k, ' ', (size_t)n)) goto none;
    Py_ssize_t i = 0;
    while (i < n && k[i] != ',') i++;
    Py_ssize_t name_len = i;
    if (name_len == 0) goto none;
    Py_ssize_t ntags = 0;
    for (Py_ssize_t j = i; j < n; j++) ntags += k[j] == ',';
    /* body: 2 + name + uvarint(ntags) + per tag 4 + k + v; at most n + 2 + 10 + 4 * ntags */
    size_t cap = (size_t)n + 16 + 4 * (size_t)ntags + 10;
    uint8_t *out = PyMem_Malloc(cap);
    if (!out) return PyErr_NoMemory();
    uint8_t *body = out + 10; /* the size prefix is written in front once known */
    size_t q = 0;
    body[q++] = (uint8_t)(name_len >> 8);
    body[q++] = (uint8_t)name_len;
    memcpy(body + q, k, (size_t)name_len);
    q += (size_t)name_len;
    q += put_uvarint(body + q, (uint64_t)ntags);
    Py_ssize_t p = name_len; /* at a ',' or n */
    while (p < n) {
        Py_ssize_t s = p + 1, e = s;
        while (e < n && k[e] != ',') e++;
        const uint8_t *eq = memchr(k + s, '=', (size_t)(e - s));
        if (!eq) goto free_none;
        Py_ssize_t kl = eq - (k + s), vl = e - (eq - k) - 1;
        if (vl <= 0) goto free_none;
        body[q++] = (uint8_t)(kl >> 8);
        body[q++] = (uint8_t)kl;
        memcpy(body + q, k + s, (size_t)kl);
        q += (size_t)kl;
        body[q++] = (uint8_t)(vl >> 8);
        body[q++] = (uint8_t)vl;
        memcpy(body + q, eq + 1, (size_t)vl);
        q += (size_t)vl;
        p = e;
    }
    uint8_t pre[10];
    size_t pl = put_uvarint(pre, (uint64_t)q);
    memcpy(body - pl, pre, pl);
    res = PyBytes_FromStringAndSize((const char *)(body - pl), (Py_ssize_t)(q + pl));
    PyMem_Free(out);
    return res;
free_none:
    PyMem_Free(out);
none:
    Py_RETURN_NONE;
}

static PyObject *py_series_file_key(PyObject *self, PyObject *arg) {
    Py_buffer b;
    if (PyObject_GetBuffer(arg, &b, PyBUF_SIMPLE) < 0) return NULL;
    PyObject *res = series_file_key((const uint8_t *)b.buf, b.len);
    PyBuffer_Release(&b);
    return res;
}

/* series_of_keys(keys) -> list[bytes] | None: the series key of each composite TSM key (what
 * precedes the first "#!~#", all of it without one: tsm/keys.py series_of), a series repeated
 * by consecutive keys given once; None unless ``keys`` is a list of bytes. */
static PyObject *py_series_of_keys(PyObject *self, PyObject *arg) {
    if (!PyList_CheckExact(arg)) Py_RETURN_NONE;
    Py_ssize_t n = PyList_GET_SIZE(arg);
    PyObject *out = PyList_New(0);
    if (!out) return NULL;
    const char *last = NULL;
    Py_ssize_t last_n = -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *key = PyList_GET_ITEM(arg, i);
        if (!PyBytes_CheckExact(key)) {
            Py_DECREF(out);
            Py_RETURN_NONE;
        }
        const char *k = PyBytes_AS_STRING(key);
        Py_ssize_t kn = PyBytes_GET_SIZE(key);
        const char *sep = memmem(k, (size_t)kn, "#!~#", 4);
        Py_ssize_t sn = sep ? sep - k : kn;
        if (sn == last_n && memcmp(k, last, (size_t)sn) == 0) continue;
        PyObject *series = sn == kn ? (Py_INCREF(key), key) : PyBytes_FromStringAndSize(k, sn);
        if (!series || PyList_Append(out, series) < 0) {
            Py_XDECREF(series);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(series);
        last = PyBytes_AS_STRING(series); /* the list holds it */
        last_n = sn;
    }
    return out;
}

/* keyed_series(keys) -> list[(line key, series file key)] | None: series_file_key of every line
 * key of a list of bytes; None as soon as one is declined (the Python path decides all). */
static PyObject *py_keyed_series(PyObject *self, PyObject *arg) {
    if (!PyList_CheckExact(arg)) Py_RETURN_NONE;
    Py_ssize_t n = PyList_GET_SIZE(arg);
    PyObject *out = PyList_New(n);
    if (!out) return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *key = PyList_GET_ITEM(arg, i);
        if (!PyBytes_CheckExact(key)) goto none;
        PyObject *sk = series_file_key((const uint8_t *)PyBytes_AS_STRING(key), PyBytes_GET_SIZE(key));
        if (!sk) goto fail;
        if (sk == Py_None) {
            Py_DECREF(sk);
            goto none;
        }
        PyObject *t = PyTuple_New(2);
        if (!t) {
            Py_DECREF(sk);
            goto fail;
        }
        Py_INCREF(key);
        PyTuple_SET_ITEM(t, 0, key);
        PyTuple_SET_ITEM(t, 1, sk);
        PyList_SET_ITEM(out, i, t);
    }
    return out;
none:
    Py_DECREF(out); /* unset items are NULL: list_dealloc skips them */
    Py_RETURN_NONE;
fail:
    Py_DECREF(out);
    return NULL;
}

#define INDEX_PARTITION_N 8

/* shard_partitions(keys, ids) -> list[list[int]] | None: archive/ops/tsiwrite.py
 * shard_partitions for (line key, series file key) pairs and a dict series file key -> id; None
 * when a key is missing from ``ids`` (or anything is not of those types): Python raises. Ids
 * already placed are skipped through an open-addressing table of the ids (never 0). */
static PyObject *py_shard_partitions(PyObject *self, PyObject *args) {
    PyObject *keys, *ids;
    if (!PyArg_ParseTuple(args, "OO", &keys, &ids)) return NULL;
    if (!PyList_CheckExact(keys) || !PyDict_CheckExact(ids)) Py_RETURN_NONE;
    Py_ssize_t n = PyList_GET_SIZE(keys);
    size_t cap = 16;
    while (cap < (size_t)n * 2) cap <<= 1;
    uint64_t *seen = PyMem_Calloc(cap, sizeof(uint64_t));
    if (!seen) return PyErr_NoMemory();
    PyObject *parts = PyList_New(INDEX_PARTITION_N);
    if (!parts) goto fail;
    for (int p = 0; p < INDEX_PARTITION_N; p++) {
        PyObject *l = PyList_New(0);
        if (!l) goto fail;
        PyList_SET_ITEM(parts, p, l);
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *t = PyList_GET_ITEM(keys, i);
        if (!PyTuple_CheckExact(t) || PyTuple_GET_SIZE(t) != 2) goto none;
        PyObject *k = PyTuple_GET_ITEM(t, 0), *sk = PyTuple_GET_ITEM(t, 1);
        if (!PyBytes_CheckExact(k) || !PyBytes_CheckExact(sk)) goto none;
        PyObject *sid = PyDict_GetItemWithError(ids, sk); /* borrowed */
        if (!sid) {
            if (PyErr_Occurred()) goto fail;
            goto none;
        }
        if (!PyLong_CheckExact(sid)) goto none;
        unsigned long long v = PyLong_AsUnsignedLongLong(sid);
        if (v == (unsigned long long)-1 && PyErr_Occurred()) {
            PyErr_Clear();
            goto none;
        }
        if (v == 0) goto none;
        size_t slot = (size_t)((v * P1) >> 20) & (cap - 1);
        while (seen[slot] != 0 && seen[slot] != v) slot = (slot + 1) & (cap - 1);
        if (seen[slot] == v) continue;
        seen[slot] = v;
        uint64_t h = xxh64((const uint8_t *)PyBytes_AS_STRING(k), (size_t)PyBytes_GET_SIZE(k));
        if (PyList_Append(PyList_GET_ITEM(parts, (Py_ssize_t)(h & (INDEX_PARTITION_N - 1))), sid) < 0) goto fail;
    }
    PyMem_Free(seen);
    return parts;
none:
    Py_XDECREF(parts);
    PyMem_Free(seen);
    Py_RETURN_NONE;
fail:
    Py_XDECREF(parts);
    PyMem_Free(seen);
    return NULL;
}

/* Whether buf[0..n) is a well-formed series file key (serieskey.decode accepts it). */
static int key_ok(const uint8_t *key, size_t n) {
    const uint8_t *end = key + n, *p;
    uint64_t size = get_uvarint(key, end, &p);
    if (!p || (uint64_t)(end - p) != size) return 0;
    if (p + 2 > end) return 0;
    size_t ln = ((size_t)p[0] << 8) | p[1];
    p += 2;
    if ((size_t)(end - p) < ln) return 0;
    p += ln;
    const uint8_t *q;
    uint64_t tag_n = get_uvarint(p, end, &q);
    if (!q) return 0;
    p = q;
    if (tag_n > (uint64_t)(end - p) / 4) return 0;
    for (uint64_t t = 0; t < tag_n * 2; t++) {
        if (p + 2 > end) return 0;
        ln = ((size_t)p[0] << 8) | p[1];
        p += 2;
        if ((size_t)(end - p) < ln) return 0;
        p += ln;
    }
    return p == end;
}

/* scan_segment(buf, limit, segment_id, partition) -> list[(flag, id, offset, key | None)] | None:
 * the entries of a segment whose header was checked, from offset 5 to ``limit`` (the end of its
 * entries is a flag byte of 0 followed by zeros only). ``partition`` < 0: not checked. */
static PyObject *py_scan_segment(PyObject *self, PyObject *args) {
    Py_buffer b;
    Py_ssize_t limit;
    unsigned long long segment_id;
    int partition;
    if (!PyArg_ParseTuple(args, "y*nKi", &b, &limit, &segment_id, &partition)) return NULL;
    const uint8_t *buf = (const uint8_t *)b.buf;
    if (limit > b.len) limit = b.len;
    PyObject *out = PyList_New(0);
    if (!out) goto fail;
    Py_ssize_t pos = SEGMENT_HEADER_SIZE;
    while (pos < limit) {
        uint8_t flag = buf[pos];
        if (flag != ENTRY_INSERT && flag != ENTRY_TOMBSTONE) {
            /* the rest must be zeros: buf[pos] == 0 and every byte equals the one before it
             * (an overlapping memcmp: glibc's is vectorised; 4 MiB segments are mostly zeros) */
            if (flag != 0) goto none;
            int zero;
            Py_BEGIN_ALLOW_THREADS
            zero = limit - pos < 2 || memcmp(buf + pos, buf + pos + 1, (size_t)(limit - pos - 1)) == 0;
            Py_END_ALLOW_THREADS
            if (!zero) goto none;
            break;
        }
        if (pos + ENTRY_HEADER_SIZE > limit) goto none;
        uint64_t sid = 0;
        for (int i = 1; i <= 8; i++) sid = (sid << 8) | buf[pos + i];
        if (sid == 0) goto none;
        if (partition >= 0 && (int)((sid - 1) % SERIES_PARTITION_N) != partition) goto none;
        Py_ssize_t end = pos + ENTRY_HEADER_SIZE;
        PyObject *key = NULL;
        if (flag == ENTRY_INSERT) {
            const uint8_t *kp;
            uint64_t size = get_uvarint(buf + end, buf + limit, &kp);
            if (!kp || size > MAX_SERIES_KEY_SIZE || (uint64_t)(buf + limit - kp) < size) goto none;
            size_t kn = (size_t)(kp - (buf + end)) + (size_t)size;
            if (!key_ok(buf + end, kn)) goto none;
            if (partition >= 0 && (int)(xxh64(buf + end, kn) % SERIES_PARTITION_N) != partition) goto none;
            key = PyBytes_FromStringAndSize((const char *)(buf + end), (Py_ssize_t)kn);
            if (!key) goto fail;
            end += (Py_ssize_t)kn;
        } else {
            key = Py_None;
            Py_INCREF(key);
        }
        PyObject *t = Py_BuildValue("(iKKN)", (int)flag, (unsigned long long)sid,
                                    (unsigned long long)((segment_id << 32) | (uint64_t)pos), key);
        if (!t || PyList_Append(out, t) < 0) {
            Py_XDECREF(t);
            goto fail;
        }
        Py_DECREF(t);
        pos = end;
    }
    PyBuffer_Release(&b);
    return out;
none:
    Py_XDECREF(out);
    PyBuffer_Release(&b);
    Py_RETURN_NONE;
fail:
    Py_XDECREF(out);
    PyBuffer_Release(&b);
    return NULL;
}

static uint32_t crc_table[256];

static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int j = 0; j < 8; j++) c = (c & 1) ? 0xEDB88320U ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}

static uint32_t crc32(const uint8_t *p, size_t n) {
    uint32_t c = 0xFFFFFFFFU;
    while (n--) c = crc_table[(c ^ *p++) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFU;
}

/* log_inserts(ids) -> bytes | None: one LOG_SERIES_INSERT entry per id (empty name, key, value),
 * each with its CRC32; None for an id outside 1..2**64-1. */
static PyObject *py_log_inserts(PyObject *self, PyObject *arg) {
    PyObject *seq = PySequence_Fast(arg, "log_inserts needs a sequence of ints");
    if (!seq) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    uint8_t *out = PyMem_Malloc((size_t)n * 18 + 1);
    if (!out) {
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    size_t q = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        unsigned long long id = PyLong_AsUnsignedLongLong(PySequence_Fast_GET_ITEM(seq, i));
        if (PyErr_Occurred()) {
            PyErr_Clear();
            id = 0;
        }
        if (id == 0) {
            PyMem_Free(out);
            Py_DECREF(seq);
            Py_RETURN_NONE;
        }
        uint8_t *e = out + q;
        size_t l = 0;
        e[l++] = LOG_SERIES_INSERT;
        l += put_uvarint(e + l, id);
        e[l++] = 0;
        e[l++] = 0;
        e[l++] = 0;
        uint32_t c = crc32(e, l);
        e[l++] = (uint8_t)(c >> 24);
        e[l++] = (uint8_t)(c >> 16);
        e[l++] = (uint8_t)(c >> 8);
        e[l++] = (uint8_t)c;
        q += l;
    }
    PyObject *res = PyBytes_FromStringAndSize((const char *)out, (Py_ssize_t)q);
    PyMem_Free(out);
    Py_DECREF(seq);
    return res;
}

static PyMethodDef methods[] = {
    {"sum64", py_sum64, METH_O, "XXH64 (seed 0) of a bytes-like object."},
    {"series_file_key", py_series_file_key, METH_O, "Series file key of a plain line key, or None."},
    {"scan_segment", py_scan_segment, METH_VARARGS, "Entries of a valid series segment, or None."},
    {"log_inserts", py_log_inserts, METH_O, "tsi1 log entries inserting these series ids, or None."},
    {"series_of_keys", py_series_of_keys, METH_O, "Series keys of sorted composite TSM keys, or None."},
    {"keyed_series", py_keyed_series, METH_O, "(line key, series file key) of plain line keys, or None."},
    {"shard_partitions", py_shard_partitions, METH_VARARGS, "Series ids by tsi1 partition, or None."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_tsispeed", NULL, -1, methods};

PyMODINIT_FUNC PyInit__tsispeed(void) {
    crc_init();
    return PyModule_Create(&module);
}
