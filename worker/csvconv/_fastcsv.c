/* The csv job's frame converter in C: one pass from well-formed CSV to JSON rows.
 *
 * It renders exactly what the csv module path (exact.py, values.py) renders, and declines,
 * by returning None, every frame it cannot take in one pass:
 * a quote that is not RFC 4180 quoting, a record whose field count differs from the header,
 * a NUL byte, a frame that does not end with a line break. The exact path (Python's csv
 * module) then takes the frame, so nothing here decides an unusual case.
 *
 *   convert(data, delimiter, keys, row_separator, typed) -> (bytes, rows) | None
 *       data: UTF-8 (already validated); keys: the JSON-encoded keys, quotes included.
 *   check(data, delimiter) -> int
 *       -1 well-formed quoting, -2 malformed, else the offset of the field left open at the
 *       end of data (where its record starts is the caller's business).
 *   wide_record(data, delimiter, limit) -> int
 *       the offset of the first record with more than `limit` fields, or -1: a guard run
 *       before the csv module, which would hold every field of such a record as an object.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

typedef struct {
    PyObject *bytes;
    char *buf;
    Py_ssize_t len, cap;
} Out;

static int out_grow(Out *o, Py_ssize_t extra) {
    Py_ssize_t want = o->len + extra;
    if (want <= o->cap) return 0;
    Py_ssize_t cap = o->cap * 2;
    if (cap < want) cap = want;
    if (_PyBytes_Resize(&o->bytes, cap) < 0) return -1;
    o->buf = PyBytes_AS_STRING(o->bytes);
    o->cap = cap;
    return 0;
}

/* JSON escapes exactly as json.dumps(ensure_ascii=False) writes them. */
static char ESCAPE[256][8];
static unsigned char ESCAPE_LEN[256]; /* 0: the byte is copied as is */

static void init_escapes(void) {
    static const char hex[] = "0123456789abcdef";
    for (int b = 0; b < 256; b++) ESCAPE_LEN[b] = 0;
    for (int b = 0; b < 32; b++) {
        ESCAPE[b][0] = '\\'; ESCAPE[b][1] = 'u'; ESCAPE[b][2] = '0'; ESCAPE[b][3] = '0';
        ESCAPE[b][4] = hex[b >> 4]; ESCAPE[b][5] = hex[b & 15];
        ESCAPE_LEN[b] = 6;
    }
    const char *shorts = "\b\f\n\r\t";
    const char *letters = "bfnrt";
    for (int i = 0; shorts[i]; i++) {
        unsigned char b = (unsigned char)shorts[i];
        ESCAPE[b][0] = '\\'; ESCAPE[b][1] = letters[i]; ESCAPE_LEN[b] = 2;
    }
    ESCAPE['"'][0] = '\\'; ESCAPE['"'][1] = '"'; ESCAPE_LEN['"'] = 2;
    ESCAPE['\\'][0] = '\\'; ESCAPE['\\'][1] = '\\'; ESCAPE_LEN['\\'] = 2;
}

typedef struct {
    Py_ssize_t start, end; /* content, without enclosing quotes */
    int quoted;            /* content may hold doubled quotes */
} Field;

enum { KIND_STRING, KIND_RAW, KIND_NULL, KIND_TRUE, KIND_FALSE };

static inline int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

/* The inference rules of values.py: canonical integers (not "-0"), plain decimals,
   true/false in any case, the empty field. */
static int classify(const unsigned char *d, Py_ssize_t s, Py_ssize_t e) {
    Py_ssize_t n = e - s;
    if (n == 0) return KIND_NULL;
    if (n == 4 && (d[s] | 32) == 't' && (d[s + 1] | 32) == 'r' && (d[s + 2] | 32) == 'u' &&
        (d[s + 3] | 32) == 'e')
        return KIND_TRUE;
    if (n == 5 && (d[s] | 32) == 'f' && (d[s + 1] | 32) == 'a' && (d[s + 2] | 32) == 'l' &&
        (d[s + 3] | 32) == 's' && (d[s + 4] | 32) == 'e')
        return KIND_FALSE;
    Py_ssize_t i = s;
    int negative = d[i] == '-';
    if (negative) i++;
    if (i >= e || !is_digit(d[i])) return KIND_STRING;
    if (d[i] == '0') {
        i++;
        if (i == e) return negative ? KIND_STRING : KIND_RAW; /* "-0" stays a string */
        if (d[i] != '.') return KIND_STRING;
    } else {
        while (i < e && is_digit(d[i])) i++;
        if (i == e) return KIND_RAW;
        if (d[i] != '.') return KIND_STRING;
    }
    i++; /* the dot */
    if (i >= e) return KIND_STRING;
    while (i < e && is_digit(d[i])) i++;
    return i == e ? KIND_RAW : KIND_STRING;
}

/* Word-at-a-time tests (exact for "does any byte ..."): 8 bytes per step on long runs. */
#define ONES 0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL
static inline uint64_t any_zero(uint64_t v) { return (v - ONES) & ~v & HIGHS; }
static inline uint64_t any_byte(uint64_t v, unsigned char b) { return any_zero(v ^ (ONES * b)); }
static inline uint64_t any_below(uint64_t v, unsigned char n) { return (v - ONES * n) & ~v & HIGHS; }

/* Write the escaped content of d[start:end] at w (room for 6 bytes per byte is there); a
   doubled quote of quoted content becomes \". Returns the new end, or NULL on a NUL. */
static char *write_escaped(char *w, const unsigned char *d, Py_ssize_t i, Py_ssize_t end) {
    while (i < end) {
        while (i + 8 <= end) {
            uint64_t v;
            memcpy(&v, d + i, 8);
            if (any_below(v, 0x20) | any_byte(v, '"') | any_byte(v, '\\')) break;
            memcpy(w, &v, 8);
            w += 8;
            i += 8;
        }
        for (; i < end; i++) {
            unsigned char c = d[i];
            unsigned char n = ESCAPE_LEN[c];
            if (n == 0) {
                *w++ = (char)c;
                continue;
            }
            if (c == 0) return NULL;
            memcpy(w, ESCAPE[c], n);
            w += n;
            if (c == '"') i++; /* the second quote of the pair */
            i++;
            break; /* back to whole words */
        }
    }
    return w;
}

/* Scan one field starting at *p; fill f and leave *p on the byte after it (a delimiter,
   a line break, or the end). Returns 0, or 1 when the quoting is not RFC 4180, or 2 when
   a quoted field is still open at the end of the data (f->start is its opening quote). */
static int scan_field(const unsigned char *d, Py_ssize_t n, Py_ssize_t *p, unsigned char delim,
                      Field *f) {
    Py_ssize_t i = *p;
    if (i < n && d[i] == '"') {
        Py_ssize_t open = i;
        i++;
        f->start = i;
        f->quoted = 1;
        for (;;) {
            const unsigned char *q = memchr(d + i, '"', (size_t)(n - i));
            if (q == NULL) {
                f->start = open;
                return 2;
            }
            i = q - d;
            if (i + 1 < n && d[i + 1] == '"') {
                i += 2;
                continue;
            }
            f->end = i;
            i++;
            if (i < n && d[i] != delim && d[i] != '\n' && d[i] != '\r') return 1;
            *p = i;
            return 0;
        }
    }
    f->start = i;
    f->quoted = 0;
    while (i + 8 <= n) {
        uint64_t v;
        memcpy(&v, d + i, 8);
        if (any_byte(v, delim) | any_byte(v, '\n') | any_byte(v, '\r') | any_byte(v, '"')) break;
        i += 8;
    }
    while (i < n) {
        unsigned char c = d[i];
        if (c == delim || c == '\n' || c == '\r') break;
        if (c == '"') return 1;
        i++;
    }
    f->end = i;
    *p = i;
    return 0;
}

static PyObject *convert(PyObject *self, PyObject *args) {
    Py_buffer data;
    int delimiter, typed;
    PyObject *keys, *row_separator;
    if (!PyArg_ParseTuple(args, "y*iO!Sp", &data, &delimiter, &PyTuple_Type, &keys,
                          &row_separator, &typed))
        return NULL;
    const unsigned char *d = data.buf;
    Py_ssize_t n = data.len;
    Py_ssize_t width = PyTuple_GET_SIZE(keys);
    Field *fields = NULL;
    char *prefixes = NULL;
    char **prefix = NULL;
    Py_ssize_t *prefix_len = NULL;
    Out o = {NULL, NULL, 0, 0};
    PyObject *result = NULL;
    unsigned char delim = (unsigned char)delimiter;
    if (width == 0 || n == 0 || (d[n - 1] != '\n' && d[n - 1] != '\r')) {
        result = n == 0 ? Py_BuildValue("(yn)", "", (Py_ssize_t)0) : Py_NewRef(Py_None);
        goto done;
    }
    for (Py_ssize_t k = 0; k < width; k++) {
        if (!PyBytes_Check(PyTuple_GET_ITEM(keys, k))) {
            PyErr_SetString(PyExc_TypeError, "keys must be bytes");
            goto done;
        }
    }
    fields = PyMem_Malloc(sizeof(Field) * (size_t)width);
    o.cap = n * 2 + 64;
    o.bytes = PyBytes_FromStringAndSize(NULL, o.cap);
    if (fields == NULL || o.bytes == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    o.buf = PyBytes_AS_STRING(o.bytes);
    const char *sep = PyBytes_AS_STRING(row_separator);
    Py_ssize_t sep_len = PyBytes_GET_SIZE(row_separator);
    /* Per column, what comes before its value: '{' or ',', the key, ':'. */
    Py_ssize_t prefix_total = 0;
    for (Py_ssize_t k = 0; k < width; k++)
        prefix_total += PyBytes_GET_SIZE(PyTuple_GET_ITEM(keys, k)) + 2;
    prefixes = PyMem_Malloc((size_t)prefix_total + 1);
    prefix = PyMem_Malloc(sizeof(char *) * (size_t)width);
    prefix_len = PyMem_Malloc(sizeof(Py_ssize_t) * (size_t)width);
    if (prefixes == NULL || prefix == NULL || prefix_len == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    for (Py_ssize_t k = 0, at = 0; k < width; k++) {
        PyObject *key = PyTuple_GET_ITEM(keys, k);
        Py_ssize_t size = PyBytes_GET_SIZE(key);
        prefix[k] = prefixes + at;
        prefixes[at] = k == 0 ? '{' : ',';
        memcpy(prefixes + at + 1, PyBytes_AS_STRING(key), (size_t)size);
        prefixes[at + 1 + size] = ':';
        prefix_len[k] = size + 2;
        at += size + 2;
    }
    Py_ssize_t rows = 0, p = 0;
    int declined = 0;

    /* The GIL stays held: the output buffer is a bytes object that may be resized. */
    while (p < n && !declined) {
        if (d[p] == '\n' || d[p] == '\r') { /* a blank line: the csv module yields nothing */
            p += (d[p] == '\r' && p + 1 < n && d[p + 1] == '\n') ? 2 : 1;
            continue;
        }
        Py_ssize_t count = 0, record_start = p;
        for (;;) {
            if (count == width) { declined = 1; break; }
            if (scan_field(d, n, &p, delim, &fields[count]) != 0) { declined = 1; break; }
            count++;
            if (p >= n) { declined = 1; break; } /* no line break after the last record */
            if (d[p] == delim) { p++; continue; }
            p += (d[p] == '\r' && p + 1 < n && d[p + 1] == '\n') ? 2 : 1;
            break;
        }
        if (declined || count != width) { declined = 1; break; }
        /* Room for the whole record at once: prefixes, quotes, 6 bytes per content byte. */
        Py_ssize_t need = sep_len + prefix_total + 2 * width + 8 + 6 * (p - record_start);
        if (out_grow(&o, need) < 0) { declined = -1; break; }
        char *w = o.buf + o.len;
        if (rows) { memcpy(w, sep, (size_t)sep_len); w += sep_len; }
        for (Py_ssize_t k = 0; k < width; k++) {
            memcpy(w, prefix[k], (size_t)prefix_len[k]);
            w += prefix_len[k];
            Field *f = &fields[k];
            int kind = typed ? classify(d, f->start, f->end) : KIND_STRING;
            switch (kind) {
            case KIND_NULL: memcpy(w, "null", 4); w += 4; break;
            case KIND_TRUE: memcpy(w, "true", 4); w += 4; break;
            case KIND_FALSE: memcpy(w, "false", 5); w += 5; break;
            case KIND_RAW:
                memcpy(w, d + f->start, (size_t)(f->end - f->start));
                w += f->end - f->start;
                break;
            default:
                *w++ = '"';
                w = write_escaped(w, d, f->start, f->end);
                if (w == NULL) break;
                *w++ = '"';
            }
            if (w == NULL) break;
        }
        if (w == NULL) { declined = 1; break; }
        *w++ = '}';
        o.len = w - o.buf;
        rows++;
    }

    if (declined < 0) {
        if (!PyErr_Occurred()) PyErr_NoMemory();
        goto done;
    }
    if (declined) {
        result = Py_NewRef(Py_None);
        goto done;
    }
    if (_PyBytes_Resize(&o.bytes, o.len) < 0) goto done;
    result = Py_BuildValue("(On)", o.bytes, rows);
done:
    Py_XDECREF(o.bytes);
    PyMem_Free(fields);
    PyMem_Free(prefixes);
    PyMem_Free(prefix);
    PyMem_Free(prefix_len);
    PyBuffer_Release(&data);
    return result;
}

static PyObject *check(PyObject *self, PyObject *args) {
    Py_buffer data;
    int delimiter;
    if (!PyArg_ParseTuple(args, "y*i", &data, &delimiter)) return NULL;
    const unsigned char *d = data.buf;
    Py_ssize_t n = data.len, p = 0, verdict = -1;
    Field f;
    Py_BEGIN_ALLOW_THREADS
    while (p < n) {
        int rc = scan_field(d, n, &p, (unsigned char)delimiter, &f);
        if (rc == 1) { verdict = -2; break; }
        if (rc == 2) { verdict = f.start; break; }
        if (p < n) p += (d[p] == '\r' && p + 1 < n && d[p + 1] == '\n') ? 2 : 1;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    return PyLong_FromSsize_t(verdict);
}

static PyObject *wide_record(PyObject *self, PyObject *args) {
    Py_buffer data;
    int delimiter;
    Py_ssize_t limit;
    if (!PyArg_ParseTuple(args, "y*in", &data, &delimiter, &limit)) return NULL;
    const unsigned char *d = data.buf;
    const unsigned char delim = (unsigned char)delimiter;
    Py_ssize_t n = data.len, p = 0, fields = 0, record = 0, found = -1;
    Field f;
    Py_BEGIN_ALLOW_THREADS
    while (p < n) {
        if (fields == 0 && (d[p] == '\n' || d[p] == '\r')) { /* a blank line */
            p++;
            record = p;
            continue;
        }
        int rc = scan_field(d, n, &p, delim, &f);
        if (rc == 2) break; /* open at the end: its record is not complete */
        if (rc == 1) {      /* quoting the csv module reads leniently: on to the next separator */
            while (p < n && d[p] != delim && d[p] != '\n' && d[p] != '\r') p++;
        }
        if (++fields > limit) {
            found = record;
            break;
        }
        if (p >= n) break;
        if (d[p] == delim) {
            p++;
            continue;
        }
        p += (d[p] == '\r' && p + 1 < n && d[p + 1] == '\n') ? 2 : 1;
        fields = 0;
        record = p;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    return PyLong_FromSsize_t(found);
}

/* Offset of the first byte that is not part of well-formed UTF-8 (Unicode table 3-7, the
   sequences Python's strict decoder accepts), or -1 when all of it is. */
static Py_ssize_t utf8_error(const unsigned char *d, Py_ssize_t n) {
    Py_ssize_t i = 0;
    while (i < n) {
        if (i + 8 <= n) {
            uint64_t word;
            memcpy(&word, d + i, 8);
            if ((word & 0x8080808080808080ULL) == 0) {
                i += 8;
                continue;
            }
        }
        unsigned char c = d[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        Py_ssize_t need;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) need = 1;
        else if (c == 0xE0) { need = 2; lo = 0xA0; }
        else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) need = 2;
        else if (c == 0xED) { need = 2; hi = 0x9F; }
        else if (c == 0xF0) { need = 3; lo = 0x90; }
        else if (c >= 0xF1 && c <= 0xF3) need = 3;
        else if (c == 0xF4) { need = 3; hi = 0x8F; }
        else return i;
        if (i + need >= n) return i; /* cut short by the end of the data */
        if (d[i + 1] < lo || d[i + 1] > hi) return i;
        for (Py_ssize_t k = 2; k <= need; k++)
            if (d[i + k] < 0x80 || d[i + k] > 0xBF) return i;
        i += need + 1;
    }
    return -1;
}

static PyObject *utf8_check(PyObject *self, PyObject *args) {
    Py_buffer data;
    if (!PyArg_ParseTuple(args, "y*", &data)) return NULL;
    Py_ssize_t at;
    Py_BEGIN_ALLOW_THREADS
    at = utf8_error(data.buf, data.len);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&data);
    return PyLong_FromSsize_t(at);
}

static PyMethodDef methods[] = {
    {"utf8_error", utf8_check, METH_VARARGS, "utf8_error(data) -> offset of bad UTF-8 or -1"},
    {"convert", convert, METH_VARARGS, "convert(data, delimiter, keys, row_separator, typed)"},
    {"check", check, METH_VARARGS, "check(data, delimiter) -> -1 | -2 | open field offset"},
    {"wide_record", wide_record, METH_VARARGS,
     "wide_record(data, delimiter, limit) -> offset of a record wider than limit, or -1"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_fastcsv", NULL, -1, methods};

PyMODINIT_FUNC PyInit__fastcsv(void) {
    init_escapes();
    return PyModule_Create(&module);
}
