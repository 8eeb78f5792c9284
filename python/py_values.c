/*
 * python/py_values.c -- Python values as deja tensors, and recorded tensors
 * back as Python buffers.
 *
 * Recording takes a view, never a copy: str and bytes lend their bytes,
 * numpy arrays (and anything with a C-contiguous buffer) lend theirs
 * through the buffer protocol, and the span copies them once into its
 * arena. Other values (torch tensors, non-contiguous arrays, lists,
 * scalars) go through the Python layer's coerce hook first. Reading hands
 * out read-only buffers over the decoded trace's own memory.
 */
#include <string.h>

#include "py_internal.h"

PyObject *deja_py_coerce;

/* The dtype of a buffer's struct format and item size, or
 * DEJA_DTYPE_INVALID. Native or little-endian formats only (deja's
 * tensors are little-endian). */
static deja_dtype dtype_of_format(const char *fmt, Py_ssize_t itemsize)
{
    if (fmt == NULL)
        return itemsize == 1 ? DEJA_U8 : DEJA_DTYPE_INVALID;
    if (*fmt == '@' || *fmt == '=' || *fmt == '<')
        fmt++;
    if (fmt[0] == '\0' || fmt[1] != '\0')
        return DEJA_DTYPE_INVALID;
    switch (fmt[0]) {
    case 'e':
        return itemsize == 2 ? DEJA_F16 : DEJA_DTYPE_INVALID;
    case 'f':
        return itemsize == 4 ? DEJA_F32 : DEJA_DTYPE_INVALID;
    case 'd':
        return itemsize == 8 ? DEJA_F64 : DEJA_DTYPE_INVALID;
    case '?':
        return itemsize == 1 ? DEJA_BOOL : DEJA_DTYPE_INVALID;
    case 'c':
        return DEJA_BYTES;
    case 'b':
    case 'h':
    case 'i':
    case 'l':
    case 'q':
    case 'n':
        switch (itemsize) {
        case 1:
            return DEJA_I8;
        case 2:
            return DEJA_I16;
        case 4:
            return DEJA_I32;
        case 8:
            return DEJA_I64;
        }
        return DEJA_DTYPE_INVALID;
    case 'B':
    case 'H':
    case 'I':
    case 'L':
    case 'Q':
    case 'N':
        switch (itemsize) {
        case 1:
            return DEJA_U8;
        case 2:
            return DEJA_U16;
        case 4:
            return DEJA_U32;
        case 8:
            return DEJA_U64;
        }
        return DEJA_DTYPE_INVALID;
    }
    return DEJA_DTYPE_INVALID;
}

/* Take a C-contiguous view of `obj` into `out`. Returns 1 when taken, 0
 * when `obj` has no such buffer (no exception), -1 on error. `forced` is the
 * dtype to give the bytes (the coerce hook's bf16), or DEJA_DTYPE_INVALID
 * to read it from the format. */
static int view_take(deja_py_tensor *out, PyObject *obj, deja_dtype forced)
{
    if (!PyObject_CheckBuffer(obj))
        return 0;
    if (PyObject_GetBuffer(obj, &out->view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) != 0) {
        if (!PyErr_ExceptionMatches(PyExc_BufferError) && !PyErr_ExceptionMatches(PyExc_ValueError))
            return -1;
        PyErr_Clear(); /* not contiguous: the coerce hook copies it */
        return 0;
    }
    out->has_view = 1;
    const Py_buffer *v = &out->view;
    deja_dtype dt = forced != DEJA_DTYPE_INVALID ? forced : dtype_of_format(v->format, v->itemsize);
    if (dt == DEJA_DTYPE_INVALID) {
        if (deja_py_coerce != NULL && out->hold == NULL) {
            /* Big-endian or another layout: the coerce hook converts it. */
            PyBuffer_Release(&out->view);
            out->has_view = 0;
            return 0;
        }
        PyErr_Format(PyExc_TypeError, "deja: cannot record a buffer of format '%s'",
                     v->format ? v->format : "B");
        return -1;
    }
    if (v->ndim > DEJA_MAX_DIMS) {
        PyErr_Format(PyExc_ValueError, "deja: %d dimensions, at most %d", v->ndim, DEJA_MAX_DIMS);
        return -1;
    }
    const size_t esize = deja_dtype_size(dt);
    if (forced != DEJA_DTYPE_INVALID && (size_t)v->itemsize != esize) {
        PyErr_Format(PyExc_TypeError, "deja: a %s buffer needs %zu-byte items, not %zd",
                     deja_dtype_name(dt), esize, v->itemsize);
        return -1;
    }
    if (v->ndim == 0 && v->shape == NULL && v->len != v->itemsize) {
        /* A flat buffer without shape: one axis. */
        out->shape[0] = (uint64_t)(v->len / (v->itemsize ? v->itemsize : 1));
        out->t.ndim = 1;
    } else {
        for (int i = 0; i < v->ndim; i++)
            out->shape[i] = (uint64_t)v->shape[i];
        out->t.ndim = (size_t)v->ndim;
    }
    out->t.dtype = dt;
    out->t.data = v->buf;
    out->t.size = (size_t)v->len;
    return 1;
}

/* Fill `out` from what the coerce hook returned: a buffer object, or
 * (dtype_name, shape, buffer). Returns 0 or -1. */
static int from_coerced(deja_py_tensor *out, PyObject *c)
{
    deja_dtype forced = DEJA_DTYPE_INVALID;
    PyObject *buf = c;
    PyObject *shape = NULL;
    if (PyTuple_Check(c)) {
        if (PyTuple_GET_SIZE(c) != 3 || !PyUnicode_Check(PyTuple_GET_ITEM(c, 0))) {
            PyErr_SetString(PyExc_TypeError, "deja: coerce must return (dtype, shape, buffer)");
            return -1;
        }
        forced = deja_dtype_parse(PyUnicode_AsUTF8(PyTuple_GET_ITEM(c, 0)));
        if (forced == DEJA_DTYPE_INVALID) {
            PyErr_Format(PyExc_TypeError, "deja: unknown dtype %R", PyTuple_GET_ITEM(c, 0));
            return -1;
        }
        shape = PyTuple_GET_ITEM(c, 1);
        buf = PyTuple_GET_ITEM(c, 2);
    }
    const int rc = view_take(out, buf, forced);
    if (rc < 0)
        return -1;
    if (rc == 0) {
        PyErr_Format(PyExc_TypeError, "deja: cannot record a value of type %s",
                     Py_TYPE(buf)->tp_name);
        return -1;
    }
    if (shape != NULL) {
        PyObject *seq = PySequence_Fast(shape, "deja: shape must be a sequence");
        if (seq == NULL)
            return -1;
        const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
        uint64_t count = 1;
        if (n > DEJA_MAX_DIMS) {
            Py_DECREF(seq);
            PyErr_Format(PyExc_ValueError, "deja: %zd dimensions, at most %d", n, DEJA_MAX_DIMS);
            return -1;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            const unsigned long long d = PyLong_AsUnsignedLongLong(PySequence_Fast_GET_ITEM(seq, i));
            if (d == (unsigned long long)-1 && PyErr_Occurred()) {
                Py_DECREF(seq);
                return -1;
            }
            out->shape[i] = d;
            count *= d;
        }
        Py_DECREF(seq);
        out->t.ndim = (size_t)n;
        if (count * deja_dtype_size(forced) != out->t.size) {
            PyErr_SetString(PyExc_ValueError, "deja: shape does not match the buffer's size");
            return -1;
        }
    }
    return 0;
}

/* See py_internal.h. */
int deja_py_tensor_from(deja_py_tensor *out, const char *name, PyObject *value)
{
    memset(out, 0, sizeof *out);
    out->t.name = name;
    out->t.shape = out->shape;
    out->t.ndim = 1;
    if (PyUnicode_Check(value)) {
        Py_ssize_t len;
        const char *s = PyUnicode_AsUTF8AndSize(value, &len);
        if (s == NULL)
            return -1;
        out->t.dtype = DEJA_UTF8;
        out->t.data = s;
        out->t.size = (size_t)len;
        out->shape[0] = (uint64_t)len;
        return 0;
    }
    if (PyBytes_Check(value)) {
        out->t.dtype = DEJA_BYTES;
        out->t.data = PyBytes_AS_STRING(value);
        out->t.size = (size_t)PyBytes_GET_SIZE(value);
        out->shape[0] = out->t.size;
        return 0;
    }
    if (PyByteArray_Check(value)) {
        if (view_take(out, value, DEJA_BYTES) < 0)
            return -1;
        return 0;
    }
    const int rc = view_take(out, value, DEJA_DTYPE_INVALID);
    if (rc != 0)
        return rc < 0 ? -1 : 0;
    if (deja_py_coerce == NULL) {
        PyErr_Format(PyExc_TypeError, "deja: cannot record a value of type %s",
                     Py_TYPE(value)->tp_name);
        return -1;
    }
    out->hold = PyObject_CallOneArg(deja_py_coerce, value);
    if (out->hold == NULL)
        return -1;
    return from_coerced(out, out->hold);
}

/* See py_internal.h. */
void deja_py_tensor_release(deja_py_tensor *t)
{
    if (t->has_view)
        PyBuffer_Release(&t->view);
    t->has_view = 0;
    Py_CLEAR(t->hold);
}

/* A read-only buffer over memory owned by another object. */
typedef struct {
    PyObject_HEAD
    PyObject *owner;
    const void *data;
    Py_ssize_t size;
} view_object;

static int view_getbuffer(PyObject *self, Py_buffer *view, int flags)
{
    view_object *v = (view_object *)self;
    return PyBuffer_FillInfo(view, self, (void *)v->data, v->size, 1, flags);
}

static void view_dealloc(PyObject *self)
{
    view_object *v = (view_object *)self;
    Py_XDECREF(v->owner);
    Py_TYPE(self)->tp_free(self);
}

static PyBufferProcs view_as_buffer = {view_getbuffer, NULL};

PyTypeObject DejaPyView_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "deja._deja.View",
    .tp_basicsize = sizeof(view_object),
    .tp_dealloc = view_dealloc,
    .tp_as_buffer = &view_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Read-only bytes of a recorded tensor, kept alive with their trace.",
};

/* See py_internal.h. */
PyObject *deja_py_view_new(PyObject *owner, const void *data, size_t size)
{
    view_object *v = PyObject_New(view_object, &DejaPyView_Type);
    if (v == NULL)
        return NULL;
    Py_INCREF(owner);
    v->owner = owner;
    v->data = data != NULL ? data : "";
    v->size = (Py_ssize_t)size;
    PyObject *mv = PyMemoryView_FromObject((PyObject *)v);
    Py_DECREF(v);
    return mv;
}

/* See py_internal.h. */
PyObject *deja_py_tensor_tuple(const deja_tensor *t, PyObject *owner)
{
    PyObject *shape = PyTuple_New((Py_ssize_t)t->ndim);
    PyObject *mv = NULL;
    PyObject *out = NULL;
    const char *dn = deja_dtype_name(t->dtype);
    if (shape == NULL)
        goto cleanup;
    for (size_t i = 0; i < t->ndim; i++) {
        PyObject *d = PyLong_FromUnsignedLongLong(t->shape[i]);
        if (d == NULL)
            goto cleanup;
        PyTuple_SET_ITEM(shape, (Py_ssize_t)i, d);
    }
    if (owner != NULL) {
        if ((mv = deja_py_view_new(owner, t->data, t->size)) == NULL)
            goto cleanup;
    } else {
        mv = Py_NewRef(Py_None); /* listed without payloads */
    }
    out = Py_BuildValue("(ssOOK)", t->name ? t->name : "", dn ? dn : "invalid", shape, mv,
                        (unsigned long long)t->size);
cleanup:
    Py_XDECREF(shape);
    Py_XDECREF(mv);
    return out;
}

static int hexval(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* See py_internal.h. */
Py_ssize_t deja_py_digest_from(PyObject *value, uint8_t out[64])
{
    if (PyUnicode_Check(value)) {
        Py_ssize_t len;
        const char *s = PyUnicode_AsUTF8AndSize(value, &len);
        if (s == NULL)
            return -1;
        if (len % 2 != 0 || len / 2 > 64) {
            PyErr_SetString(PyExc_ValueError,
                            "deja: a digest string must be an even number of hex digits, at most 128");
            return -1;
        }
        for (Py_ssize_t i = 0; i < len / 2; i++) {
            const int hi = hexval(s[2 * i]), lo = hexval(s[2 * i + 1]);
            if (hi < 0 || lo < 0) {
                PyErr_Format(PyExc_ValueError, "deja: digest %R is not hex", value);
                return -1;
            }
            out[i] = (uint8_t)(hi << 4 | lo);
        }
        return len / 2;
    }
    Py_buffer b;
    if (PyObject_GetBuffer(value, &b, PyBUF_SIMPLE) != 0) {
        PyErr_SetString(PyExc_TypeError, "deja: a digest is bytes or a hex string");
        return -1;
    }
    Py_ssize_t n = b.len;
    if (n > 64) {
        PyBuffer_Release(&b);
        PyErr_SetString(PyExc_ValueError, "deja: a digest is at most 64 bytes");
        return -1;
    }
    memcpy(out, b.buf, (size_t)n);
    PyBuffer_Release(&b);
    return n;
}
