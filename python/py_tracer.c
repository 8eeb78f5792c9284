/*
 * python/py_tracer.c -- deja._deja.Tracer and Span: recording from Python.
 *
 * The hot path is all C: `tracer.span(...)` begins a deja span, `input`,
 * `param` and `output` copy into it straight from the values' buffers, and
 * `__exit__` ends it (an exception ends it as an error trace and goes on
 * up). A span's seed/rng/now go through a recording deja_ctx over the span,
 * made on first use, so that they record exactly what a model plugin's
 * ctx would. The redaction callback runs on the writer thread and takes
 * the GIL; every call that may wait for the writer releases it.
 */
#include <string.h>

#include "deja_model.h"
#include "py_internal.h"

typedef struct tracer_object {
    PyObject_HEAD
    deja_tracer *tracer;
    PyObject *redact; /* callable or NULL */
    Py_ssize_t live;  /* spans begun and not yet ended */
    int closed;       /* close() was called: no new spans */
    PyObject *weakrefs;
} tracer_object;

typedef struct span_object {
    PyObject_HEAD
    tracer_object *tracer; /* strong reference */
    deja_span *span;       /* NULL once ended */
    deja_ctx *ctx;         /* recording ctx over span, made on first use */
    PyObject *fail;        /* the message given to fail(), or NULL */
    struct span_object *prev; /* the thread's current span before this one */
    int current;              /* on the thread's current-span stack */
} span_object;

/* The innermost entered span of this thread (borrowed: a span leaves the
 * stack before it can be freed). */
static _Thread_local span_object *current_span;

PyObject *deja_py_current_span(void)
{
    return (PyObject *)current_span;
}

/* ---------------------------------------------------------------- Tracer */

/* Close the deja tracer once nothing uses it any more (close() was called
 * and the last span ended). Waits for the writer without the GIL. */
static void tracer_release(tracer_object *t)
{
    if (t->tracer == NULL || t->live > 0)
        return;
    deja_tracer *dt = t->tracer;
    t->tracer = NULL;
    Py_BEGIN_ALLOW_THREADS
    deja_tracer_close(dt);
    Py_END_ALLOW_THREADS
}

/* The writer thread's redaction callback: calls redact(side, name, dtype,
 * data) under the GIL, with `data` a writable memoryview of the tensor's
 * bytes. None or True keeps the tensor (as modified in place), False drops
 * it, a bytes-like value no longer than the original replaces it, and the
 * string "drop-trace" (deja.DROP_TRACE) or an exception drops the trace. */
static int redact_cb(deja_side side, const char *name, deja_dtype dtype, uint8_t *data,
                     size_t *size, void *payload)
{
    tracer_object *t = payload;
    int keep = -1;
    if (_Py_IsFinalizing())
        return -1; /* nobody left to ask: keep nothing unredacted */
    PyGILState_STATE g = PyGILState_Ensure();
    PyObject *mv = PyMemoryView_FromMemory((char *)data, (Py_ssize_t)*size, PyBUF_WRITE);
    PyObject *r = NULL;
    if (mv == NULL)
        goto cleanup;
    r = PyObject_CallFunction(t->redact, "sssO", side == DEJA_INPUT ? "input" : "output", name,
                              deja_dtype_name(dtype), mv);
    if (r == NULL)
        goto cleanup;
    if (r == Py_None || r == Py_True) {
        keep = 0;
    } else if (r == Py_False) {
        keep = 1;
    } else if (PyUnicode_Check(r)) {
        if (PyUnicode_CompareWithASCIIString(r, "drop-trace") != 0)
            PyErr_Format(PyExc_ValueError, "deja: redact returned the string %R", r);
    } else {
        Py_buffer b;
        if (PyObject_GetBuffer(r, &b, PyBUF_SIMPLE) == 0) {
            if ((size_t)b.len <= *size) {
                memmove(data, b.buf, (size_t)b.len);
                *size = (size_t)b.len;
                keep = 0;
            } else {
                PyErr_Format(PyExc_ValueError,
                             "deja: redact returned %zd bytes for a %zu-byte tensor '%s' "
                             "(it may only shorten it)",
                             b.len, *size, name);
            }
            PyBuffer_Release(&b);
        }
    }
cleanup:
    if (PyErr_Occurred()) {
        /* The trace is dropped: say why once per failure, never raise into
         * the writer. */
        PyErr_WriteUnraisable(t->redact);
        keep = -1;
    }
    if (mv != NULL) {
        PyObject *rel = PyObject_CallMethod(mv, "release", NULL);
        if (rel == NULL)
            PyErr_Clear(); /* the callback kept an export: it outlives its data */
        Py_XDECREF(rel);
        Py_DECREF(mv);
    }
    Py_XDECREF(r);
    PyGILState_Release(g);
    return keep;
}

static int tracer_init(PyObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"path",     "sample_rate",       "max_payload",
                             "queue_capacity", "drop",        "batch_max",
                             "flush_interval_ms", "redact",   "queue_bytes",
                             "checkpoints", "checkpoints_digest", NULL};
    tracer_object *t = (tracer_object *)self;
    const char *path;
    double sample_rate = 1.0;
    Py_ssize_t max_payload = -1, queue_capacity = -1, batch_max = -1, flush_ms = -1;
    Py_ssize_t queue_bytes = -1;
    int drop = 0;
    PyObject *redact = Py_None;
    const char *checkpoints = NULL;
    int checkpoints_digest = 0;
    deja_tracer_options o = DEJA_TRACER_OPTIONS_INIT;
    int rc;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "s|dnnpnnOnzp:Tracer", kwlist, &path,
                                     &sample_rate, &max_payload, &queue_capacity, &drop,
                                     &batch_max, &flush_ms, &redact, &queue_bytes, &checkpoints,
                                     &checkpoints_digest))
        return -1;
    o.checkpoints = checkpoints;
    o.checkpoints_digest = checkpoints_digest;
    if (checkpoints_digest && checkpoints == NULL)
        o.checkpoints = "all";
    if (t->tracer != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "deja: Tracer is already open");
        return -1;
    }
    if (redact != Py_None && !PyCallable_Check(redact)) {
        PyErr_SetString(PyExc_TypeError, "deja: redact must be callable");
        return -1;
    }
    if (!(sample_rate >= 0.0 && sample_rate <= 1.0)) {
        PyErr_SetString(PyExc_ValueError, "deja: sample_rate must be within 0..1");
        return -1;
    }
    o.sample_rate = sample_rate;
    if (max_payload >= 0)
        o.max_payload = (size_t)max_payload;
    if (queue_capacity >= 0)
        o.queue_capacity = (size_t)queue_capacity;
    if (queue_bytes >= 0)
        o.queue_bytes = (size_t)queue_bytes;
    if (batch_max >= 0)
        o.batch_max = (unsigned)batch_max;
    if (flush_ms >= 0)
        o.flush_interval_ms = (unsigned)flush_ms;
    o.queue_full = drop ? DEJA_QUEUE_DROP : DEJA_QUEUE_BLOCK;
    if (redact != Py_None) {
        Py_INCREF(redact);
        Py_XSETREF(t->redact, redact);
        o.redact = redact_cb;
        o.redact_payload = t;
    }
    deja_tracer *dt = NULL;
    Py_BEGIN_ALLOW_THREADS
    rc = deja_tracer_open(&dt, path, &o);
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        deja_py_raise(rc);
        return -1;
    }
    t->tracer = dt;
    t->closed = 0;
    return 0;
}

static void tracer_dealloc(PyObject *self)
{
    tracer_object *t = (tracer_object *)self;
    PyObject_GC_UnTrack(self);
    if (t->weakrefs != NULL)
        PyObject_ClearWeakRefs(self);
    t->live = 0; /* spans hold a reference: none is left */
    tracer_release(t);
    Py_CLEAR(t->redact);
    Py_TYPE(self)->tp_free(self);
}

static int tracer_traverse(PyObject *self, visitproc visit, void *arg)
{
    Py_VISIT(((tracer_object *)self)->redact);
    return 0;
}

static int tracer_clear(PyObject *self)
{
    /* The redact callable stays until the tracer is closed: the writer may
     * still call it. */
    return 0;
}

/* Raise unless the tracer can begin spans. */
static int tracer_usable(tracer_object *t)
{
    if (t->tracer == NULL || t->closed) {
        PyErr_SetString(deja_py_error, "deja: the tracer is closed");
        return -1;
    }
    return 0;
}

/* A UTF-8 view of a str, or of str(value) kept in *hold. */
static const char *text_of(PyObject *v, PyObject **hold)
{
    if (PyUnicode_Check(v))
        return PyUnicode_AsUTF8(v);
    *hold = PyObject_Str(v);
    return *hold != NULL ? PyUnicode_AsUTF8(*hold) : NULL;
}

/* Tracer.span(name, version, digest=None): begin a span. */
static PyObject *tracer_span(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                             PyObject *kwnames)
{
    tracer_object *t = (tracer_object *)self;
    PyObject *name_o = NULL, *version_o = NULL, *digest_o = NULL, *hold = NULL;
    span_object *s = NULL;
    const Py_ssize_t nkw = kwnames != NULL ? PyTuple_GET_SIZE(kwnames) : 0;
    int rc;

    if (nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "span(name, version, digest=None)");
        return NULL;
    }
    name_o = nargs > 0 ? args[0] : NULL;
    version_o = nargs > 1 ? args[1] : NULL;
    digest_o = nargs > 2 ? args[2] : NULL;
    for (Py_ssize_t i = 0; i < nkw; i++) {
        const char *k = PyUnicode_AsUTF8(PyTuple_GET_ITEM(kwnames, i));
        PyObject *v = args[nargs + i];
        if (k == NULL)
            return NULL;
        if (strcmp(k, "name") == 0 && name_o == NULL)
            name_o = v;
        else if (strcmp(k, "version") == 0 && version_o == NULL)
            version_o = v;
        else if (strcmp(k, "digest") == 0 && digest_o == NULL)
            digest_o = v;
        else
            return PyErr_Format(PyExc_TypeError, "span() got an unexpected argument '%s'", k);
    }
    if (name_o == NULL || !PyUnicode_Check(name_o)) {
        PyErr_SetString(PyExc_TypeError, "span(name, version, digest=None): name must be a str");
        return NULL;
    }
    if (tracer_usable(t) != 0)
        return NULL;
    const char *name = PyUnicode_AsUTF8(name_o);
    const char *version = version_o != NULL && version_o != Py_None ? text_of(version_o, &hold) : "";
    if (name == NULL || version == NULL)
        goto fail;
    s = PyObject_New(span_object, &DejaPySpan_Type);
    if (s == NULL)
        goto fail;
    s->tracer = NULL;
    s->span = NULL;
    s->ctx = NULL;
    s->fail = NULL;
    s->prev = NULL;
    s->current = 0;
    if ((rc = deja_span_begin(&s->span, t->tracer, name, version)) != 0) {
        deja_py_raise(rc);
        goto fail;
    }
    Py_INCREF(t);
    s->tracer = t;
    t->live++;
    if (digest_o != NULL && digest_o != Py_None) {
        uint8_t d[64];
        const Py_ssize_t n = deja_py_digest_from(digest_o, d);
        if (n < 0)
            goto fail;
        if ((rc = deja_span_model_digest(s->span, d, (size_t)n)) != 0) {
            deja_py_raise(rc);
            goto fail;
        }
    }
    Py_XDECREF(hold);
    return (PyObject *)s;
fail:
    Py_XDECREF(hold);
    Py_XDECREF(s);
    return NULL;
}

static PyObject *tracer_flush(PyObject *self, PyObject *unused)
{
    tracer_object *t = (tracer_object *)self;
    int rc;
    if (t->tracer == NULL)
        Py_RETURN_NONE;
    Py_BEGIN_ALLOW_THREADS
    rc = deja_tracer_flush(t->tracer);
    Py_END_ALLOW_THREADS
    if (rc != 0)
        return deja_py_raise(rc);
    Py_RETURN_NONE;
}

/* close(): flush, then close now, or when the last open span ends. */
static PyObject *tracer_close(PyObject *self, PyObject *unused)
{
    tracer_object *t = (tracer_object *)self;
    if (t->tracer == NULL)
        Py_RETURN_NONE;
    t->closed = 1;
    if (t->live > 0)
        return tracer_flush(self, NULL);
    tracer_release(t);
    Py_RETURN_NONE;
}

static PyObject *tracer_stats(PyObject *self, PyObject *unused)
{
    tracer_object *t = (tracer_object *)self;
    deja_tracer_stats st;
    memset(&st, 0, sizeof st);
    if (t->tracer != NULL)
        deja_tracer_stats_get(t->tracer, &st);
    return Py_BuildValue("{sKsKsKsKsKsK}", "ended", (unsigned long long)st.ended, "written",
                         (unsigned long long)st.written, "dropped", (unsigned long long)st.dropped,
                         "sampled_out", (unsigned long long)st.sampled_out, "redacted",
                         (unsigned long long)st.redacted, "failed", (unsigned long long)st.failed);
}

static PyObject *tracer_get_closed(PyObject *self, void *unused)
{
    tracer_object *t = (tracer_object *)self;
    return PyBool_FromLong(t->tracer == NULL || t->closed);
}

static PyMethodDef tracer_methods[] = {
    {"span", (PyCFunction)(void (*)(void))tracer_span, METH_FASTCALL | METH_KEYWORDS,
     "span(name, version, digest=None) -> Span: begin recording one inference"},
    {"flush", tracer_flush, METH_NOARGS, "wait until every ended span is committed"},
    {"close", tracer_close, METH_NOARGS, "flush and close (when the last open span ends)"},
    {"stats", tracer_stats, METH_NOARGS, "counters: ended, written, dropped, ..."},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef tracer_getset[] = {
    {"closed", tracer_get_closed, NULL, "True once close() was called", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject DejaPyTracer_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "deja._deja.Tracer",
    .tp_basicsize = sizeof(tracer_object),
    .tp_dealloc = tracer_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Tracer(path, sample_rate=1.0, max_payload=-1, queue_capacity=-1, drop=False, "
              "batch_max=-1, flush_interval_ms=-1, redact=None, queue_bytes=-1)",
    .tp_traverse = tracer_traverse,
    .tp_clear = tracer_clear,
    .tp_weaklistoffset = offsetof(tracer_object, weakrefs),
    .tp_methods = tracer_methods,
    .tp_getset = tracer_getset,
    .tp_init = tracer_init,
    .tp_new = PyType_GenericNew,
};

/* ------------------------------------------------------------------ Span */

/* Raise unless the span is still open. */
static int span_open(span_object *s)
{
    if (s->span == NULL) {
        PyErr_SetString(deja_py_error, "deja: the span has ended");
        return -1;
    }
    return 0;
}

/* Take the span off its thread's current-span stack. */
static void span_unlink(span_object *s)
{
    if (!s->current)
        return;
    if (current_span == s) {
        current_span = s->prev;
    } else {
        for (span_object *p = current_span; p != NULL; p = p->prev)
            if (p->prev == s) {
                p->prev = s->prev;
                break;
            }
    }
    s->current = 0;
    s->prev = NULL;
}

/* Let go of the deja span (ended or aborted by the caller) and of the
 * tracer, closing it when it was waiting for this span. */
static void span_detach(span_object *s)
{
    tracer_object *t = s->tracer;
    span_unlink(s);
    deja_ctx_free(s->ctx);
    s->ctx = NULL;
    s->span = NULL;
    Py_CLEAR(s->fail);
    if (t != NULL) {
        s->tracer = NULL;
        t->live--;
        if (t->closed)
            tracer_release(t);
        Py_DECREF(t);
    }
}

/* End the span with `status` and `error`. Returns 0 or -1 (exception). */
static int span_finish(span_object *s, deja_status status, const char *error)
{
    deja_span *sp = s->span;
    int rc;
    deja_ctx_free(s->ctx); /* it points into the span */
    s->ctx = NULL;
    s->span = NULL;
    if (s->tracer->redact != NULL) {
        /* The writer may need the GIL to redact while we wait for room. */
        Py_BEGIN_ALLOW_THREADS
        rc = deja_span_end(sp, status, error);
        Py_END_ALLOW_THREADS
    } else {
        rc = deja_span_end(sp, status, error);
    }
    span_detach(s);
    if (rc != 0 && rc != DEJA_EFULL) {
        deja_py_raise(rc);
        return -1;
    }
    return 0;
}

static void span_dealloc(PyObject *self)
{
    span_object *s = (span_object *)self;
    if (s->span != NULL) {
        deja_ctx_free(s->ctx);
        s->ctx = NULL;
        deja_span_abort(s->span);
    }
    span_detach(s);
    PyObject_Free(self);
}

/* Add `value` as input or output `name`. */
static PyObject *span_add(span_object *s, deja_side side, PyObject *const *args, Py_ssize_t nargs)
{
    deja_py_tensor pt;
    int rc;
    if (nargs != 2 || !PyUnicode_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, side == DEJA_INPUT ? "input(name: str, value)"
                                                            : "output(name: str, value)");
        return NULL;
    }
    if (span_open(s) != 0)
        return NULL;
    const char *name = PyUnicode_AsUTF8(args[0]);
    if (name == NULL || deja_py_tensor_from(&pt, name, args[1]) != 0)
        return NULL;
    rc = deja_span_add(s->span, side, &pt.t);
    deja_py_tensor_release(&pt);
    if (rc != 0)
        return deja_py_raise(rc);
    Py_RETURN_NONE;
}

/* checkpoint(name, value): the next checkpoint, kept when the tracer's
 * selection keeps it. */
static PyObject *span_checkpoint(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    span_object *s = (span_object *)self;
    deja_py_tensor pt;
    if (nargs != 2 || !PyUnicode_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "checkpoint(name: str, value)");
        return NULL;
    }
    if (span_open(s) != 0)
        return NULL;
    const char *name = PyUnicode_AsUTF8(args[0]);
    if (name == NULL)
        return NULL;
    if (!deja_span_checkpoint_wanted(s->span, name))
        Py_RETURN_NONE; /* nothing kept: not even converted */
    if (deja_py_tensor_from(&pt, name, args[1]) != 0)
        return NULL;
    const int rc = deja_span_checkpoint(s->span, &pt.t);
    deja_py_tensor_release(&pt);
    if (rc != 0)
        return deja_py_raise(rc);
    Py_RETURN_NONE;
}

static PyObject *span_input(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    return span_add((span_object *)self, DEJA_INPUT, args, nargs);
}

static PyObject *span_output(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    return span_add((span_object *)self, DEJA_OUTPUT, args, nargs);
}

/* param(key, value): a number, str or bool. */
static PyObject *span_param(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    span_object *s = (span_object *)self;
    int rc;
    if (nargs != 2 || !PyUnicode_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "param(key: str, value: float | int | str | bool)");
        return NULL;
    }
    if (span_open(s) != 0)
        return NULL;
    const char *key = PyUnicode_AsUTF8(args[0]);
    PyObject *v = args[1];
    if (key == NULL)
        return NULL;
    if (PyBool_Check(v)) {
        rc = deja_span_param_bool(s->span, key, v == Py_True);
    } else if (PyFloat_Check(v)) {
        rc = deja_span_param_num(s->span, key, PyFloat_AS_DOUBLE(v));
    } else if (PyLong_Check(v)) {
        const double d = PyLong_AsDouble(v);
        if (d == -1.0 && PyErr_Occurred())
            return NULL;
        rc = deja_span_param_num(s->span, key, d);
    } else if (PyUnicode_Check(v)) {
        const char *str = PyUnicode_AsUTF8(v);
        if (str == NULL)
            return NULL;
        rc = deja_span_param_str(s->span, key, str);
    } else {
        PyObject *f = PyNumber_Float(v); /* numpy scalars */
        if (f == NULL) {
            PyErr_Format(PyExc_TypeError, "deja: param '%s' must be a number, str or bool, not %s",
                         key, Py_TYPE(v)->tp_name);
            return NULL;
        }
        rc = deja_span_param_num(s->span, key, PyFloat_AS_DOUBLE(f));
        Py_DECREF(f);
    }
    if (rc != 0)
        return deja_py_raise(rc);
    Py_RETURN_NONE;
}

/* The span's recording ctx, made on first use; NULL with an exception. */
static deja_ctx *span_ctx(span_object *s)
{
    if (span_open(s) != 0)
        return NULL;
    if (s->ctx == NULL) {
        const int rc = deja_ctx_record(&s->ctx, s->span, 0);
        if (rc != 0) {
            deja_py_raise(rc);
            return NULL;
        }
    }
    return s->ctx;
}

/* seed(name) -> int: a fresh 64-bit seed, recorded under `name` (the same
 * one when asked twice). */
static PyObject *span_seed(PyObject *self, PyObject *arg)
{
    span_object *s = (span_object *)self;
    if (!PyUnicode_Check(arg)) {
        PyErr_SetString(PyExc_TypeError, "seed(name: str)");
        return NULL;
    }
    const char *name = PyUnicode_AsUTF8(arg);
    deja_ctx *ctx = span_ctx(s);
    if (name == NULL || ctx == NULL)
        return NULL;
    return PyLong_FromUnsignedLongLong(deja_ctx_seed(ctx, name));
}

/* Draws of the RNG stream `name`: one int, or `n` as a list. Shared with
 * the runner's ctx. */
PyObject *deja_py_rng_draws(deja_ctx *ctx, PyObject *const *args, Py_ssize_t nargs);
PyObject *deja_py_rng_draws(deja_ctx *ctx, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 2 || !PyUnicode_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "rng(stream: str, n: int = None)");
        return NULL;
    }
    const char *name = PyUnicode_AsUTF8(args[0]);
    if (name == NULL)
        return NULL;
    if (nargs == 1 || args[1] == Py_None)
        return PyLong_FromUnsignedLongLong(deja_ctx_rng_u64(ctx, name));
    const Py_ssize_t n = PyLong_AsSsize_t(args[1]);
    if (n == -1 && PyErr_Occurred())
        return NULL;
    if (n < 0 || n > (1 << 24)) {
        PyErr_SetString(PyExc_ValueError, "rng: n must be within 0..16777216");
        return NULL;
    }
    PyObject *list = PyList_New(n);
    if (list == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *v = PyLong_FromUnsignedLongLong(deja_ctx_rng_u64(ctx, name));
        if (v == NULL) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, i, v);
    }
    return list;
}

static PyObject *span_rng(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    deja_ctx *ctx = span_ctx((span_object *)self);
    return ctx != NULL ? deja_py_rng_draws(ctx, args, nargs) : NULL;
}

/* now() -> int: the clock in Unix nanoseconds, recorded. */
static PyObject *span_now(PyObject *self, PyObject *unused)
{
    deja_ctx *ctx = span_ctx((span_object *)self);
    return ctx != NULL ? PyLong_FromLongLong(deja_ctx_now(ctx)) : NULL;
}

static PyObject *span_tag(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    span_object *s = (span_object *)self;
    PyObject *hold = NULL;
    if (nargs != 2 || !PyUnicode_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "tag(key: str, value)");
        return NULL;
    }
    if (span_open(s) != 0)
        return NULL;
    const char *k = PyUnicode_AsUTF8(args[0]);
    const char *v = text_of(args[1], &hold);
    int rc = k != NULL && v != NULL ? deja_span_tag(s->span, k, v) : 0;
    Py_XDECREF(hold);
    if (k == NULL || v == NULL)
        return NULL;
    if (rc != 0)
        return deja_py_raise(rc);
    Py_RETURN_NONE;
}

/* parent(id): this span is a step of the trace `id` (26 characters). */
static PyObject *span_parent(PyObject *self, PyObject *arg)
{
    span_object *s = (span_object *)self;
    deja_id id;
    int rc;
    if (span_open(s) != 0)
        return NULL;
    const char *text = PyUnicode_Check(arg) ? PyUnicode_AsUTF8(arg) : NULL;
    if (text == NULL || deja_id_parse(&id, text) != 0) {
        PyErr_Clear();
        PyErr_SetString(PyExc_ValueError, "parent(id): a full 26-character trace id");
        return NULL;
    }
    if ((rc = deja_span_parent(s->span, &id)) != 0)
        return deja_py_raise(rc);
    Py_RETURN_NONE;
}

/* fail(message): the span ends as an error trace with `message`. */
static PyObject *span_fail(PyObject *self, PyObject *arg)
{
    span_object *s = (span_object *)self;
    PyObject *msg = PyObject_Str(arg);
    if (msg == NULL)
        return NULL;
    Py_XSETREF(s->fail, msg);
    Py_RETURN_NONE;
}

static PyObject *span_enter(PyObject *self, PyObject *unused)
{
    span_object *s = (span_object *)self;
    if (span_open(s) != 0)
        return NULL;
    if (!s->current) {
        s->prev = current_span;
        current_span = s;
        s->current = 1;
    }
    return Py_NewRef(self);
}

/* end(): end the span now (ok, or error when fail() was called). */
static PyObject *span_end(PyObject *self, PyObject *unused)
{
    span_object *s = (span_object *)self;
    if (s->span == NULL)
        Py_RETURN_NONE;
    const char *msg = s->fail != NULL ? PyUnicode_AsUTF8(s->fail) : NULL;
    if (s->fail != NULL && msg == NULL)
        return NULL;
    if (span_finish(s, msg != NULL ? DEJA_STATUS_ERROR : DEJA_STATUS_OK, msg) != 0)
        return NULL;
    Py_RETURN_NONE;
}

/* __exit__(type, value, tb): an exception ends the span as an error trace
 * "Type: message" and is not swallowed. */
static PyObject *span_exit(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    span_object *s = (span_object *)self;
    if (s->span == NULL) {
        span_unlink(s);
        Py_RETURN_FALSE;
    }
    if (nargs >= 2 && args[0] != Py_None) {
        PyObject *text = args[1] != Py_None ? PyObject_Str(args[1]) : NULL;
        PyObject *full;
        const char *tname = ((PyTypeObject *)args[0])->tp_name;
        if (PyType_Check(args[0])) {
            const char *dot = strrchr(tname, '.');
            if (dot != NULL)
                tname = dot + 1;
        }
        if (text != NULL && PyUnicode_GET_LENGTH(text) > 0)
            full = PyUnicode_FromFormat("%s: %U", tname, text);
        else
            full = PyUnicode_FromString(tname);
        Py_XDECREF(text);
        if (full == NULL)
            return NULL;
        const char *msg = PyUnicode_AsUTF8(full);
        const int rc = msg != NULL ? span_finish(s, DEJA_STATUS_ERROR, msg) : -1;
        Py_DECREF(full);
        if (rc != 0)
            return NULL;
        Py_RETURN_FALSE;
    }
    PyObject *r = span_end(self, NULL);
    if (r == NULL)
        return NULL;
    Py_DECREF(r);
    Py_RETURN_FALSE;
}

/* abort(): throw the span away unrecorded. */
static PyObject *span_abort_m(PyObject *self, PyObject *unused)
{
    span_object *s = (span_object *)self;
    if (s->span != NULL) {
        deja_ctx_free(s->ctx);
        s->ctx = NULL;
        deja_span_abort(s->span);
        s->span = NULL;
    }
    span_detach(s);
    Py_RETURN_NONE;
}

static PyObject *span_get_id(PyObject *self, void *unused)
{
    span_object *s = (span_object *)self;
    char text[DEJA_ID_STRLEN + 1];
    if (span_open(s) != 0)
        return NULL;
    deja_id_format(deja_span_id(s->span), text);
    return PyUnicode_FromString(text);
}

static PyObject *span_get_ended(PyObject *self, void *unused)
{
    return PyBool_FromLong(((span_object *)self)->span == NULL);
}

#define FAST(f) (PyCFunction)(void (*)(void))(f)
static PyMethodDef span_methods[] = {
    {"input", FAST(span_input), METH_FASTCALL, "input(name, value): record an input"},
    {"output", FAST(span_output), METH_FASTCALL, "output(name, value): record an output"},
    {"checkpoint", FAST(span_checkpoint), METH_FASTCALL,
     "checkpoint(name, value): an intermediate value, kept when the tracer's checkpoints "
     "select it"},
    {"param", FAST(span_param), METH_FASTCALL, "param(key, value): number, str or bool"},
    {"seed", span_seed, METH_O, "seed(name) -> int: a fresh seed, recorded"},
    {"rng", FAST(span_rng), METH_FASTCALL, "rng(stream, n=None): 64-bit draws, recorded"},
    {"now", span_now, METH_NOARGS, "now() -> int: Unix nanoseconds, recorded"},
    {"tag", FAST(span_tag), METH_FASTCALL, "tag(key, value)"},
    {"parent", span_parent, METH_O, "parent(id): a step of the trace id"},
    {"fail", span_fail, METH_O, "fail(message): end as an error trace"},
    {"end", span_end, METH_NOARGS, "end the span (ok, or error after fail())"},
    {"abort", span_abort_m, METH_NOARGS, "throw the span away unrecorded"},
    {"__enter__", span_enter, METH_NOARGS, NULL},
    {"__exit__", FAST(span_exit), METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef span_getset[] = {
    {"id", span_get_id, NULL, "the trace id (26 characters)", NULL},
    {"ended", span_get_ended, NULL, "True once ended or aborted", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

PyTypeObject DejaPySpan_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "deja._deja.Span",
    .tp_basicsize = sizeof(span_object),
    .tp_dealloc = span_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One inference being recorded; use as a context manager.",
    .tp_methods = span_methods,
    .tp_getset = span_getset,
};
