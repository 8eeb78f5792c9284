/*
 * python/py_runner.c -- serving a Python model over the exec runner
 * protocol: deja._deja.serve() hands libdeja's deja_runner_serve() a plugin
 * table whose infer calls a Python callable with a Ctx.
 *
 * The protocol itself lives in runner/ (C); this file only bridges. The
 * GIL is released while libdeja waits for the host and taken back for each
 * inference. A Ctx wraps the proxy deja_ctx of one inference and is dead
 * afterwards: its inputs are copied out into Python objects (numpy arrays
 * over bytes), so that a value kept past the inference stays valid.
 */
#include <string.h>

#include "deja_model.h"
#include "py_internal.h"

PyObject *deja_py_rng_draws(deja_ctx *ctx, PyObject *const *args, Py_ssize_t nargs);

typedef struct {
    PyObject_HEAD
    deja_ctx *ctx; /* NULL once the inference is over */
    PyObject *inputs; /* dict, made on first use */
    PyObject *params;
} ctx_object;

/* What the plugin table's functions reach: one serve at a time. */
static struct {
    PyObject *infer;  /* infer(ctx) */
    uint8_t digest[64];
    size_t digest_size;
    const char *error; /* the model failed to open: told in the hello */
} serving;

static int ctx_alive(ctx_object *c)
{
    if (c->ctx == NULL) {
        PyErr_SetString(deja_py_error, "deja: this ctx belongs to an inference that is over");
        return -1;
    }
    return 0;
}

/* A tensor copied out as the value the Python layer makes of it. */
static PyObject *tensor_value(const deja_tensor *t)
{
    static PyObject *make; /* deja._value(dtype, shape, buffer) */
    PyObject *tup = NULL, *bytes = NULL, *out = NULL;
    if (make == NULL) {
        PyObject *m = PyImport_ImportModule("deja");
        if (m == NULL)
            return NULL;
        make = PyObject_GetAttrString(m, "_value");
        Py_DECREF(m);
        if (make == NULL)
            return NULL;
    }
    if ((bytes = PyBytes_FromStringAndSize(t->data, (Py_ssize_t)t->size)) == NULL)
        goto cleanup;
    if ((tup = PyTuple_New((Py_ssize_t)t->ndim)) == NULL)
        goto cleanup;
    for (size_t i = 0; i < t->ndim; i++) {
        PyObject *d = PyLong_FromUnsignedLongLong(t->shape[i]);
        if (d == NULL)
            goto cleanup;
        PyTuple_SET_ITEM(tup, (Py_ssize_t)i, d);
    }
    out = PyObject_CallFunction(make, "sOO", deja_dtype_name(t->dtype), tup, bytes);
cleanup:
    Py_XDECREF(tup);
    Py_XDECREF(bytes);
    return out;
}

static PyObject *ctx_get_inputs(PyObject *self, void *unused)
{
    ctx_object *c = (ctx_object *)self;
    if (c->inputs == NULL) {
        if (ctx_alive(c) != 0)
            return NULL;
        PyObject *d = PyDict_New();
        const size_t n = deja_ctx_input_count(c->ctx);
        for (size_t i = 0; d != NULL && i < n; i++) {
            const deja_tensor *t = deja_ctx_input_at(c->ctx, i);
            PyObject *v = t != NULL ? tensor_value(t) : NULL;
            if (v == NULL || PyDict_SetItemString(d, t->name, v) != 0)
                Py_CLEAR(d);
            Py_XDECREF(v);
        }
        c->inputs = d;
    }
    return Py_XNewRef(c->inputs);
}

static PyObject *ctx_get_params(PyObject *self, void *unused)
{
    ctx_object *c = (ctx_object *)self;
    if (c->params == NULL) {
        if (ctx_alive(c) != 0)
            return NULL;
        PyObject *d = PyDict_New();
        const size_t n = deja_ctx_param_count(c->ctx);
        for (size_t i = 0; d != NULL && i < n; i++) {
            const deja_param *p = deja_ctx_param_at(c->ctx, i);
            if (p == NULL)
                break;
            PyObject *v = p->kind == DEJA_PARAM_NUM    ? PyFloat_FromDouble(p->num)
                          : p->kind == DEJA_PARAM_BOOL ? PyBool_FromLong(p->flag)
                                                       : PyUnicode_FromString(p->str ? p->str : "");
            if (v == NULL || PyDict_SetItemString(d, p->key, v) != 0)
                Py_CLEAR(d);
            Py_XDECREF(v);
        }
        c->params = d;
    }
    return Py_XNewRef(c->params);
}

static PyObject *ctx_seed(PyObject *self, PyObject *arg)
{
    ctx_object *c = (ctx_object *)self;
    const char *name = PyUnicode_Check(arg) ? PyUnicode_AsUTF8(arg) : NULL;
    if (name == NULL) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "seed(name: str)");
        return NULL;
    }
    if (ctx_alive(c) != 0)
        return NULL;
    uint64_t v;
    Py_BEGIN_ALLOW_THREADS
    v = deja_ctx_seed(c->ctx, name);
    Py_END_ALLOW_THREADS
    return PyLong_FromUnsignedLongLong(v);
}

static PyObject *ctx_rng(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    ctx_object *c = (ctx_object *)self;
    return ctx_alive(c) == 0 ? deja_py_rng_draws(c->ctx, args, nargs) : NULL;
}

static PyObject *ctx_now(PyObject *self, PyObject *unused)
{
    ctx_object *c = (ctx_object *)self;
    if (ctx_alive(c) != 0)
        return NULL;
    int64_t v;
    Py_BEGIN_ALLOW_THREADS
    v = deja_ctx_now(c->ctx);
    Py_END_ALLOW_THREADS
    return PyLong_FromLongLong(v);
}

static PyObject *ctx_output(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    ctx_object *c = (ctx_object *)self;
    deja_py_tensor pt;
    if (nargs != 2 || !PyUnicode_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "output(name: str, value)");
        return NULL;
    }
    if (ctx_alive(c) != 0)
        return NULL;
    const char *name = PyUnicode_AsUTF8(args[0]);
    if (name == NULL || deja_py_tensor_from(&pt, name, args[1]) != 0)
        return NULL;
    const int rc = deja_ctx_output(c->ctx, &pt.t);
    deja_py_tensor_release(&pt);
    if (rc != 0)
        return deja_py_raise(rc);
    Py_RETURN_NONE;
}

/* checkpoint(name, value) -> bool: True when the host asks to stop the
 * inference here (replay --stop-at-first): return from infer then. */
static PyObject *ctx_checkpoint(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    ctx_object *c = (ctx_object *)self;
    deja_py_tensor pt;
    int rc;
    if (nargs != 2 || !PyUnicode_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "checkpoint(name: str, value)");
        return NULL;
    }
    if (ctx_alive(c) != 0)
        return NULL;
    const char *name = PyUnicode_AsUTF8(args[0]);
    if (name == NULL || deja_py_tensor_from(&pt, name, args[1]) != 0)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    rc = deja_ctx_checkpoint(c->ctx, &pt.t);
    Py_END_ALLOW_THREADS
    deja_py_tensor_release(&pt);
    if (rc < 0)
        return deja_py_raise(rc);
    return PyBool_FromLong(rc == DEJA_CHECKPOINT_STOP);
}

static PyObject *ctx_fail(PyObject *self, PyObject *arg)
{
    ctx_object *c = (ctx_object *)self;
    PyObject *s = PyObject_Str(arg);
    const char *msg = s != NULL ? PyUnicode_AsUTF8(s) : NULL;
    if (msg != NULL && ctx_alive(c) == 0)
        deja_ctx_fail(c->ctx, msg);
    Py_XDECREF(s);
    if (PyErr_Occurred())
        return NULL;
    Py_RETURN_NONE;
}

static PyObject *ctx_note(PyObject *self, PyObject *arg)
{
    ctx_object *c = (ctx_object *)self;
    PyObject *s = PyObject_Str(arg);
    const char *msg = s != NULL ? PyUnicode_AsUTF8(s) : NULL;
    if (msg != NULL && ctx_alive(c) == 0)
        deja_ctx_note(c->ctx, msg);
    Py_XDECREF(s);
    if (PyErr_Occurred())
        return NULL;
    Py_RETURN_NONE;
}

static void ctx_dealloc(PyObject *self)
{
    ctx_object *c = (ctx_object *)self;
    Py_XDECREF(c->inputs);
    Py_XDECREF(c->params);
    PyObject_Free(self);
}

#define FAST(f) (PyCFunction)(void (*)(void))(f)
static PyMethodDef ctx_methods[] = {
    {"seed", ctx_seed, METH_O, "seed(name) -> int: recorded, or the recorded one on replay"},
    {"rng", FAST(ctx_rng), METH_FASTCALL, "rng(stream, n=None): 64-bit draws, one round trip"},
    {"now", ctx_now, METH_NOARGS, "now() -> int: Unix nanoseconds, recorded and replayed"},
    {"output", FAST(ctx_output), METH_FASTCALL, "output(name, value)"},
    {"fail", ctx_fail, METH_O, "fail(message): the inference fails with message"},
    {"note", ctx_note, METH_O, "note(message): a likely cause, shown with a divergence"},
    {"checkpoint", FAST(ctx_checkpoint), METH_FASTCALL,
     "checkpoint(name, value) -> bool: an intermediate value, recorded or compared; True: "
     "stop the inference (return from infer)"},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef ctx_getset[] = {
    {"inputs", ctx_get_inputs, NULL, "dict name -> value (str, bytes, numpy array)", NULL},
    {"params", ctx_get_params, NULL, "dict key -> number, str or bool", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyTypeObject ctx_type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "deja._deja.Ctx",
    .tp_basicsize = sizeof(ctx_object),
    .tp_dealloc = ctx_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The determinism context of one inference served to deja.",
    .tp_methods = ctx_methods,
    .tp_getset = ctx_getset,
};

/* The plugin table's open: the digest given to serve(). */
static int bridge_open(const char *arg, void **instance, deja_model_info *info, char *err,
                       size_t errcap)
{
    if (serving.error != NULL) {
        snprintf(err, errcap, "%s", serving.error);
        return 1;
    }
    *instance = &serving;
    memcpy(info->digest, serving.digest, serving.digest_size);
    info->digest_size = serving.digest_size;
    return 0;
}

/* Record the pending Python exception as the inference's failure, "Type:
 * message", with its traceback on stderr. */
static void fail_with_exception(deja_ctx *ctx)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    PyObject *text = value != NULL ? PyObject_Str(value) : NULL;
    const char *tname = type != NULL ? ((PyTypeObject *)type)->tp_name : "Exception";
    const char *dot = strrchr(tname, '.');
    const char *msg = text != NULL ? PyUnicode_AsUTF8(text) : NULL;
    char buf[1024];
    if (msg != NULL && msg[0] != '\0')
        snprintf(buf, sizeof buf, "%s: %s", dot ? dot + 1 : tname, msg);
    else
        snprintf(buf, sizeof buf, "%s", dot ? dot + 1 : tname);
    PyErr_Clear();
    Py_XDECREF(text);
    /* The traceback, to the runner's stderr (the host shows it). */
    if (type != NULL)
        PyErr_Display(type, value, tb);
    PyErr_Clear();
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    deja_ctx_fail(ctx, buf);
}

/* The plugin table's infer: infer(ctx) in Python, under the GIL. A dict it
 * returns is written as outputs; an exception fails the inference. */
static int bridge_infer(void *instance, deja_ctx *ctx)
{
    PyGILState_STATE g = PyGILState_Ensure();
    int rc = 0;
    ctx_object *c = PyObject_New(ctx_object, &ctx_type);
    PyObject *r = NULL;
    if (c == NULL) {
        fail_with_exception(ctx);
        rc = 1;
        goto cleanup;
    }
    c->ctx = ctx;
    c->inputs = NULL;
    c->params = NULL;
    r = PyObject_CallOneArg(serving.infer, (PyObject *)c);
    if (r != NULL && PyDict_Check(r)) {
        PyObject *k, *v;
        Py_ssize_t pos = 0;
        while (PyDict_Next(r, &pos, &k, &v)) {
            PyObject *const args[2] = {k, v};
            PyObject *o = ctx_output((PyObject *)c, args, 2);
            if (o == NULL)
                break;
            Py_DECREF(o);
        }
    }
    if (PyErr_Occurred()) {
        fail_with_exception(ctx);
        rc = 1;
    }
    c->ctx = NULL;
cleanup:
    Py_XDECREF(r);
    Py_XDECREF(c);
    PyGILState_Release(g);
    return rc;
}

/* serve(infer, name, version, digest, thread_safe, libs, in_fd, out_fd):
 * serve until the host closes in_fd. Returns None, raises deja.Error. */
static PyObject *serve(PyObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"infer", "name",  "version", "digest", "thread_safe",
                             "libs",  "in_fd", "out_fd",  "error",  NULL};
    PyObject *infer, *digest = Py_None, *libs = Py_None, *seq = NULL;
    const char *name, *version, *error = NULL;
    int thread_safe = 0, in_fd = 0, out_fd = 1, rc;
    deja_kv kv[64];
    deja_runner_options o = DEJA_RUNNER_OPTIONS_INIT;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "Oss|OpOiiz:serve", kwlist, &infer, &name,
                                     &version, &digest, &thread_safe, &libs, &in_fd, &out_fd,
                                     &error))
        return NULL;
    if (!PyCallable_Check(infer)) {
        PyErr_SetString(PyExc_TypeError, "serve: infer must be callable");
        return NULL;
    }
    if (serving.infer != NULL) {
        PyErr_SetString(deja_py_error, "deja: already serving a model in this process");
        return NULL;
    }
    memset(serving.digest, 0, sizeof serving.digest);
    serving.digest_size = 0;
    if (digest != Py_None) {
        const Py_ssize_t n = deja_py_digest_from(digest, serving.digest);
        if (n < 0)
            return NULL;
        serving.digest_size = (size_t)n;
    }
    if (libs != Py_None) {
        if ((seq = PySequence_Fast(libs, "serve: libs is a sequence of (name, version)")) == NULL)
            return NULL;
        const Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
        if (n > (Py_ssize_t)(sizeof kv / sizeof kv[0])) {
            Py_DECREF(seq);
            PyErr_SetString(PyExc_ValueError, "serve: at most 64 libs");
            return NULL;
        }
        for (Py_ssize_t i = 0; i < n; i++)
            if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "ss", &kv[i].key,
                                  &kv[i].value)) {
                Py_DECREF(seq);
                return NULL;
            }
        o.libs = kv;
        o.nlibs = (size_t)n;
    }
    const deja_model_plugin plugin = {
        DEJA_MODEL_ABI_VERSION,        name, version, thread_safe ? DEJA_MODEL_THREAD_SAFE : 0u,
        bridge_open, bridge_infer, NULL,
    };
    serving.infer = infer;
    serving.error = error;
    Py_INCREF(infer);
    Py_BEGIN_ALLOW_THREADS
    rc = deja_runner_serve(&plugin, NULL, in_fd, out_fd, &o);
    Py_END_ALLOW_THREADS
    Py_CLEAR(serving.infer);
    serving.error = NULL;
    Py_XDECREF(seq);
    if (rc != 0)
        return deja_py_raise(rc);
    Py_RETURN_NONE;
}

PyMethodDef deja_py_runner_methods[] = {
    {"serve", (PyCFunction)(void (*)(void))serve, METH_VARARGS | METH_KEYWORDS,
     "serve(infer, name, version, digest=None, thread_safe=False, libs=None, in_fd=0, "
     "out_fd=1, error=None)"},
    {NULL, NULL, 0, NULL},
};

/* Ready the Ctx type (called by the module's init). */
int deja_py_runner_ready(void)
{
    return PyType_Ready(&ctx_type);
}
