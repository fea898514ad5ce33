/* Compiled fast path for influxd's Gorilla float value sections (TSM_WAL.md section 2.2).
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

#define SENTINEL 0x7FF8000000000001ULL
#define ABS_MASK 0x7FFFFFFFFFFFFFFFULL
#define INF_BITS 0x7FF0000000000000ULL

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

static PyObject *decode(PyObject *self, PyObject *args) {
    Py_buffer view;
    Py_ssize_t count;
    if (!PyArg_ParseTuple(args, "y*n", &view, &count)) return NULL;
    PyObject *result = NULL;
    uint8_t *s = NULL;
    uint64_t *vals = NULL;
    const uint8_t *d = (const uint8_t *)view.buf;
    Py_ssize_t size = view.len;
    if (size < 9 || d[0] != 0x10 || count < 1 || count > (1 << 24)) goto fallback;
    s = (uint8_t *)PyMem_Calloc((size_t)size + 16, 1);
    vals = (uint64_t *)PyMem_Malloc((size_t)count * sizeof(uint64_t));
    if (!s || !vals) { PyErr_NoMemory(); goto done; }
    memcpy(s, d + 1, (size_t)size - 1);
    uint64_t nbits = (uint64_t)(size - 1) * 8;
    uint64_t val = get_bits(s, 0, 64);
    if (val == SENTINEL) goto fallback;
    vals[0] = val;
    Py_ssize_t n = 1;
    int lead = 0, trail = 0;
    uint64_t pos = 64;
    for (;;) {
        if (pos + 1 > nbits) goto fallback;
        if (get_bits(s, pos++, 1)) {
            int m;
            if (pos + 1 > nbits) goto fallback;
            if (get_bits(s, pos++, 1)) {
                if (pos + 11 > nbits) goto fallback;
                unsigned w = (unsigned)get_bits(s, pos, 11);
                pos += 11;
                lead = (int)(w >> 6);
                m = (int)(w & 63);
                if (m == 0) m = 64;
                trail = 64 - lead - m;
                if (trail < 0) goto fallback;
            } else {
                m = 64 - lead - trail;
            }
            if (pos + (uint64_t)m > nbits) goto fallback;
            uint64_t bits = get_bits(s, pos, m);
            pos += (uint64_t)m;
            val ^= (trail >= 64) ? 0 : (bits << trail);
            if (val == SENTINEL) break;
        }
        if (n == count) goto fallback;
        vals[n++] = val;
    }
    if (n != count) goto fallback;
    uint64_t used = (pos + 7) >> 3;
    if (used != (uint64_t)(size - 1)) goto fallback;
    if ((pos & 7) && (s[used - 1] & ((1u << (8 - (pos & 7))) - 1))) goto fallback;
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
    PyMem_Free(s);
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
    buf[w.len++] = 0x10;
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

static PyMethodDef methods[] = {
    {"decode", decode, METH_VARARGS, "decode(section, count) -> list[float] | None (None: use the Python codec)"},
    {"encode", encode, METH_O, "encode(values) -> bytes | None (None: use the Python codec)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_gorilla", NULL, -1, methods};

PyMODINIT_FUNC PyInit__gorilla(void) { return PyModule_Create(&module); }
