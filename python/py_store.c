/*
 * python/py_store.c -- deja._deja.Store: reading a store from Python.
 *
 * `list_page` hands out one page of listed traces (no payloads) at a time so
 * that the Python layer's iterator streams: a page is a bounded run of the
 * newest-first walk, resumed below the last id seen. `get` decodes one
 * trace with its payloads and keeps it alive in a holder object; its
 * tensors come out as read-only memoryviews over the holder's memory, from
 * which the Python layer makes numpy arrays without copying.
 */
#include <string.h>

#include "py_internal.h"

typedef struct {
    PyObject_HEAD
    deja_store *store;
} store_object;

/* Owns one decoded trace; views of its tensors keep it alive. */
typedef struct {
    PyObject_HEAD
    deja_trace *trace;
} holder_object;

static void holder_dealloc(PyObject *self)
{
    deja_trace_free(((holder_object *)self)->trace);
    PyObject_Free(self);
}

static PyTypeObject holder_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "deja._deja.TraceMemory",
    .tp_basicsize = sizeof(holder_object),
    .tp_dealloc = holder_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The memory of one decoded trace.",
};

static int store_init(PyObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"path", NULL};
    store_object *s = (store_object *)self;
    const char *path;
    int rc;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "s:Store", kwlist, &path))
        return -1;
    if (s->store != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "deja: Store is already open");
        return -1;
    }
    Py_BEGIN_ALLOW_THREADS
    rc = deja_store_open(&s->store, path, DEJA_STORE_READONLY);
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        s->store = NULL;
        deja_py_raise(rc);
        return -1;
    }
    return 0;
}

static void store_dealloc(PyObject *self)
{
    deja_store_close(((store_object *)self)->store);
    Py_TYPE(self)->tp_free(self);
}

static int store_usable(store_object *s)
{
    if (s->store == NULL) {
        PyErr_SetString(deja_py_error, "deja: the store is closed");
        return -1;
    }
    return 0;
}

static PyObject *id_text(const deja_id *id)
{
    char text[DEJA_ID_STRLEN + 1];
    deja_id_format(id, text);
    return PyUnicode_FromString(text);
}

/* A tuple of tensor tuples; payloads only when `owner` is given. */
static PyObject *tensors_tuple(const deja_tensor *t, size_t n, PyObject *owner)
{
    PyObject *out = PyTuple_New((Py_ssize_t)n);
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        PyObject *item = deja_py_tensor_tuple(&t[i], owner);
        if (item == NULL) {
            Py_DECREF(out);
            return NULL;
        }
        PyTuple_SET_ITEM(out, (Py_ssize_t)i, item);
    }
    return out;
}

/* The trace as a dict; tensor payloads as views over `owner` when given. */
static PyObject *trace_dict(const deja_trace *t, PyObject *owner)
{
    PyObject *d = PyDict_New(), *v = NULL;
    if (d == NULL)
        return NULL;
#define PUT(key, expr)                                                                           \
    do {                                                                                         \
        if ((v = (expr)) == NULL || PyDict_SetItemString(d, key, v) != 0)                        \
            goto fail;                                                                           \
        Py_CLEAR(v);                                                                             \
    } while (0)
    PUT("id", id_text(&t->id));
    PUT("start_ns", PyLong_FromLongLong(t->start_ns));
    PUT("duration_ns", PyLong_FromLongLong(t->duration_ns));
    PUT("model", PyUnicode_FromString(t->model_name ? t->model_name : ""));
    PUT("version", PyUnicode_FromString(t->model_version ? t->model_version : ""));
    PUT("digest", PyBytes_FromStringAndSize((const char *)t->model_digest,
                                            (Py_ssize_t)t->model_digest_size));
    PUT("status", PyUnicode_FromString(t->status == DEJA_STATUS_OK ? "ok" : "error"));
    PUT("error", PyUnicode_FromString(t->error ? t->error : ""));
    PUT("inputs", tensors_tuple(t->inputs, t->ninputs, owner));
    PUT("outputs", tensors_tuple(t->outputs, t->noutputs, owner));
    if ((v = PyDict_New()) == NULL || PyDict_SetItemString(d, "params", v) != 0)
        goto fail;
    for (size_t i = 0; i < t->nparams; i++) {
        const deja_param *p = &t->params[i];
        PyObject *pv = p->kind == DEJA_PARAM_NUM    ? PyFloat_FromDouble(p->num)
                       : p->kind == DEJA_PARAM_BOOL ? PyBool_FromLong(p->flag)
                                                    : PyUnicode_FromString(p->str ? p->str : "");
        if (pv == NULL || PyDict_SetItemString(v, p->key, pv) != 0) {
            Py_XDECREF(pv);
            goto fail;
        }
        Py_DECREF(pv);
    }
    Py_CLEAR(v);
    if ((v = PyDict_New()) == NULL || PyDict_SetItemString(d, "seeds", v) != 0)
        goto fail;
    for (size_t i = 0; i < t->nseeds; i++) {
        PyObject *sv = PyLong_FromUnsignedLongLong(t->seeds[i].value);
        if (sv == NULL || PyDict_SetItemString(v, t->seeds[i].name, sv) != 0) {
            Py_XDECREF(sv);
            goto fail;
        }
        Py_DECREF(sv);
    }
    Py_CLEAR(v);
    if ((v = PyDict_New()) == NULL || PyDict_SetItemString(d, "rng", v) != 0)
        goto fail;
    for (size_t i = 0; i < t->nrng; i++) {
        const deja_rng_stream *r = &t->rng[i];
        PyObject *draws = PyList_New((Py_ssize_t)r->ndraws);
        if (draws == NULL)
            goto fail;
        for (size_t k = 0; k < r->ndraws; k++) {
            PyObject *x = PyLong_FromUnsignedLongLong(r->draws[k]);
            if (x == NULL) {
                Py_DECREF(draws);
                goto fail;
            }
            PyList_SET_ITEM(draws, (Py_ssize_t)k, x);
        }
        PyObject *pair = Py_BuildValue("(KN)", (unsigned long long)r->seed, draws);
        if (pair == NULL || PyDict_SetItemString(v, r->name, pair) != 0) {
            Py_XDECREF(pair);
            goto fail;
        }
        Py_DECREF(pair);
    }
    Py_CLEAR(v);
    if ((v = PyList_New((Py_ssize_t)t->nclock)) == NULL)
        goto fail;
    for (size_t i = 0; i < t->nclock; i++) {
        PyObject *x = PyLong_FromLongLong(t->clock_ns[i]);
        if (x == NULL)
            goto fail;
        PyList_SET_ITEM(v, (Py_ssize_t)i, x);
    }
    if (PyDict_SetItemString(d, "clock_ns", v) != 0)
        goto fail;
    Py_CLEAR(v);
    if ((v = PyDict_New()) == NULL || PyDict_SetItemString(d, "tags", v) != 0)
        goto fail;
    for (size_t i = 0; i < t->ntags; i++) {
        PyObject *tv = PyUnicode_FromString(t->tags[i].value ? t->tags[i].value : "");
        if (tv == NULL || PyDict_SetItemString(v, t->tags[i].key, tv) != 0) {
            Py_XDECREF(tv);
            goto fail;
        }
        Py_DECREF(tv);
    }
    Py_CLEAR(v);
    if (t->has_env)
        PUT("env_digest", PyBytes_FromStringAndSize((const char *)t->env.bytes, 16));
    else
        PUT("env_digest", Py_NewRef(Py_None));
    if (t->has_parent)
        PUT("parent", id_text(&t->parent));
    else
        PUT("parent", Py_NewRef(Py_None));
#undef PUT
    return d;
fail:
    Py_XDECREF(v);
    Py_DECREF(d);
    return NULL;
}

typedef struct {
    PyObject *list;
    size_t want;
    int has_before;
    deja_id before;
    int failed;
} page_state;

static int page_cb(const deja_trace *t, void *payload)
{
    page_state *p = payload;
    if (p->has_before && memcmp(t->id.bytes, p->before.bytes, 16) >= 0)
        return 0;
    PyObject *d = trace_dict(t, NULL);
    if (d == NULL || PyList_Append(p->list, d) != 0) {
        Py_XDECREF(d);
        p->failed = 1;
        return 1;
    }
    Py_DECREF(d);
    return (size_t)PyList_GET_SIZE(p->list) >= p->want;
}

/* list_page(model, version, since_ns, until_ns, status, tags, n, before):
 * up to n listed traces (newest first) whose ids are below `before` (a
 * 26-character id, or None). tags: a sequence of (key, value). */
static PyObject *store_list_page(PyObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"model", "version", "since_ns", "until_ns", "status",
                             "tags",  "n",       "before",   NULL};
    store_object *s = (store_object *)self;
    const char *model = NULL, *version = NULL, *before = NULL;
    long long since = 0, until = 0;
    int status = -1;
    Py_ssize_t n = 256;
    PyObject *tags_o = Py_None, *seq = NULL;
    deja_filter f = DEJA_FILTER_INIT;
    deja_tag tags[16];
    page_state p;
    int rc;

    memset(&p, 0, sizeof p);
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|zzLLiOnz:list_page", kwlist, &model, &version,
                                     &since, &until, &status, &tags_o, &n, &before))
        return NULL;
    if (store_usable(s) != 0)
        return NULL;
    if (n < 1) {
        PyErr_SetString(PyExc_ValueError, "list_page: n must be at least 1");
        return NULL;
    }
    if (before != NULL) {
        if (deja_id_parse(&p.before, before) != 0) {
            PyErr_Format(PyExc_ValueError, "list_page: bad id '%s'", before);
            return NULL;
        }
        p.has_before = 1;
    }
    if (tags_o != Py_None) {
        if ((seq = PySequence_Fast(tags_o, "tags must be a sequence of (key, value)")) == NULL)
            return NULL;
        if (PySequence_Fast_GET_SIZE(seq) > 16) {
            Py_DECREF(seq);
            PyErr_SetString(PyExc_ValueError, "list_page: at most 16 tags");
            return NULL;
        }
        for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
            PyObject *kv = PySequence_Fast_GET_ITEM(seq, i);
            if (!PyArg_ParseTuple(kv, "ss", &tags[i].key, &tags[i].value)) {
                Py_DECREF(seq);
                return NULL;
            }
        }
        f.tags = tags;
        f.ntags = (size_t)PySequence_Fast_GET_SIZE(seq);
    }
    f.model = model;
    f.model_version = version;
    f.since_ns = since;
    f.until_ns = until;
    f.status = status;
    p.want = (size_t)n;
    if ((p.list = PyList_New(0)) == NULL) {
        Py_XDECREF(seq);
        return NULL;
    }
    rc = deja_store_list(s->store, &f, page_cb, NULL, &p);
    Py_XDECREF(seq);
    if (p.failed) {
        Py_DECREF(p.list);
        return NULL;
    }
    if (rc != 0) {
        Py_DECREF(p.list);
        return deja_py_raise(rc);
    }
    return p.list;
}

/* get(id_or_prefix) -> dict with payload views. */
static PyObject *store_get(PyObject *self, PyObject *arg)
{
    store_object *s = (store_object *)self;
    deja_id id;
    deja_trace *t = NULL;
    int rc;
    if (store_usable(s) != 0)
        return NULL;
    const char *prefix = PyUnicode_Check(arg) ? PyUnicode_AsUTF8(arg) : NULL;
    if (prefix == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "get(id: str)");
        return NULL;
    }
    if (prefix[0] == '\0') {
        PyErr_SetString(PyExc_ValueError, "get: an empty id");
        return NULL;
    }
    Py_BEGIN_ALLOW_THREADS
    rc = deja_store_resolve(s->store, prefix, &id);
    if (rc == 0)
        rc = deja_trace_get(s->store, &id, &t);
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        if (rc == DEJA_ENOTFOUND) {
            PyErr_Format(PyExc_KeyError, "no trace '%s'", prefix);
            return NULL;
        }
        return deja_py_raise(rc);
    }
    holder_object *h = PyObject_New(holder_object, &holder_type);
    if (h == NULL) {
        deja_trace_free(t);
        return NULL;
    }
    h->trace = t;
    PyObject *d = trace_dict(t, (PyObject *)h);
    Py_DECREF(h);
    return d;
}

static PyObject *kv_dict(const deja_kv *kv, size_t n)
{
    PyObject *d = PyDict_New();
    for (size_t i = 0; d != NULL && i < n; i++) {
        PyObject *v = PyUnicode_FromString(kv[i].value ? kv[i].value : "");
        if (v == NULL || PyDict_SetItemString(d, kv[i].key, v) != 0) {
            Py_XDECREF(v);
            Py_CLEAR(d);
            break;
        }
        Py_DECREF(v);
    }
    return d;
}

static PyObject *str_tuple(const char *const *s, size_t n)
{
    PyObject *t = PyTuple_New((Py_ssize_t)n);
    for (size_t i = 0; t != NULL && i < n; i++) {
        PyObject *v = PyUnicode_FromString(s[i] ? s[i] : "");
        if (v == NULL) {
            Py_CLEAR(t);
            break;
        }
        PyTuple_SET_ITEM(t, (Py_ssize_t)i, v);
    }
    return t;
}

/* An environment as a dict. */
static PyObject *env_dict(const deja_env *e)
{
    return Py_BuildValue(
        "{sssssssNsIsKsssssssssNsIsssisisNsN}", "arch", e->arch ? e->arch : "", "cpu_vendor",
        e->cpu_vendor ? e->cpu_vendor : "", "cpu_model", e->cpu_model ? e->cpu_model : "", "isa",
        str_tuple(e->isa, e->nisa), "cores", e->cores, "memory_bytes",
        (unsigned long long)e->memory_bytes, "os", e->os ? e->os : "", "kernel",
        e->kernel ? e->kernel : "", "libc", e->libc ? e->libc : "", "compiler",
        e->compiler ? e->compiler : "", "gpus", str_tuple(e->gpus, e->ngpus), "threads",
        e->threads, "fp_rounding", e->fp_rounding ? e->fp_rounding : "", "ftz", e->ftz, "daz",
        e->daz, "vars", kv_dict(e->vars, e->nvars), "libs", kv_dict(e->libs, e->nlibs));
}

/* env(digest) -> dict: the environment stored under the 16-byte digest. */
static PyObject *store_env(PyObject *self, PyObject *arg)
{
    store_object *s = (store_object *)self;
    deja_digest d;
    deja_env *e = NULL;
    char *buf;
    Py_ssize_t len;
    int rc;
    if (store_usable(s) != 0)
        return NULL;
    if (PyBytes_AsStringAndSize(arg, &buf, &len) != 0)
        return NULL;
    if (len != 16) {
        PyErr_SetString(PyExc_ValueError, "env: a digest is 16 bytes");
        return NULL;
    }
    memcpy(d.bytes, buf, 16);
    if ((rc = deja_store_env_get(s->store, &d, &e)) != 0)
        return deja_py_raise(rc);
    PyObject *out = env_dict(e);
    deja_env_free(e);
    return out;
}

static PyObject *store_stats(PyObject *self, PyObject *unused)
{
    store_object *s = (store_object *)self;
    deja_store_stats st;
    int rc;
    if (store_usable(s) != 0)
        return NULL;
    if ((rc = deja_store_stats_get(s->store, &st)) != 0)
        return deja_py_raise(rc);
    return Py_BuildValue("{sKsKsKsKsKsKsK}", "traces", (unsigned long long)st.traces, "blobs",
                         (unsigned long long)st.blobs, "envs", (unsigned long long)st.envs,
                         "raw_bytes", (unsigned long long)st.raw_bytes, "unique_bytes",
                         (unsigned long long)st.unique_bytes, "stored_bytes",
                         (unsigned long long)st.stored_bytes, "file_bytes",
                         (unsigned long long)st.file_bytes);
}

static PyObject *store_close(PyObject *self, PyObject *unused)
{
    store_object *s = (store_object *)self;
    deja_store_close(s->store);
    s->store = NULL;
    Py_RETURN_NONE;
}

static PyMethodDef store_methods[] = {
    {"list_page", (PyCFunction)(void (*)(void))store_list_page, METH_VARARGS | METH_KEYWORDS,
     "one page of listed traces, newest first"},
    {"get", store_get, METH_O, "get(id_or_prefix) -> dict"},
    {"env", store_env, METH_O, "env(digest) -> dict"},
    {"stats", store_stats, METH_NOARGS, "store-wide counts"},
    {"close", store_close, METH_NOARGS, "close the store"},
    {NULL, NULL, 0, NULL},
};

PyTypeObject DejaPyStore_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "deja._deja.Store",
    .tp_basicsize = sizeof(store_object),
    .tp_dealloc = store_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Store(path): a deja store opened for reading",
    .tp_methods = store_methods,
    .tp_init = store_init,
    .tp_new = PyType_GenericNew,
};

/* Ready the private holder type (called by the module's init). */
int deja_py_store_ready(void);
int deja_py_store_ready(void)
{
    return PyType_Ready(&holder_type);
}
