/*
 * python/py_module.c -- the module deja._deja: its types, its exception and
 * a few functions (digests, the environment, the coerce hook). The Python
 * layer (python/deja/__init__.py) is what users import.
 */
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "py_internal.h"

PyObject *deja_py_error;

int deja_py_store_ready(void);

/* See py_internal.h. */
PyObject *deja_py_raise(int code)
{
    const char *detail = deja_error_last();
    if (detail != NULL && detail[0] != '\0')
        PyErr_Format(deja_py_error, "%s", detail);
    else
        PyErr_Format(deja_py_error, "deja: %s", deja_strerror(code));
    return NULL;
}

/* _set_coerce(fn): the hook that turns other values into buffers. */
static PyObject *set_coerce(PyObject *self, PyObject *fn)
{
    if (!PyCallable_Check(fn)) {
        PyErr_SetString(PyExc_TypeError, "_set_coerce(callable)");
        return NULL;
    }
    Py_INCREF(fn);
    Py_XSETREF(deja_py_coerce, fn);
    Py_RETURN_NONE;
}

/* digest(data) -> bytes: XXH3-128 of a bytes-like object, 16 bytes. */
static PyObject *digest_of(PyObject *self, PyObject *arg)
{
    Py_buffer b;
    deja_digest d;
    if (PyObject_GetBuffer(arg, &b, PyBUF_C_CONTIGUOUS) != 0)
        return NULL;
    Py_BEGIN_ALLOW_THREADS
    d = deja_digest_of(b.buf, (size_t)b.len);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&b);
    return PyBytes_FromStringAndSize((const char *)d.bytes, 16);
}

/* digest_file(path) -> bytes: XXH3-128 of a file's content, 16 bytes (what
 * a C plugin reports for its weights file). */
static PyObject *digest_file(PyObject *self, PyObject *arg)
{
    PyObject *bytes_path = NULL;
    deja_digest d;
    struct stat st;
    void *map = MAP_FAILED;
    int fd = -1, err = 0;
    if (!PyUnicode_FSConverter(arg, &bytes_path))
        return NULL;
    const char *path = PyBytes_AS_STRING(bytes_path);
    Py_BEGIN_ALLOW_THREADS
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        err = errno;
    } else if (st.st_size == 0) {
        d = deja_digest_of("", 0);
    } else {
        map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED)
            err = errno;
        else
            d = deja_digest_of(map, (size_t)st.st_size);
    }
    if (map != MAP_FAILED)
        munmap(map, (size_t)st.st_size);
    if (fd >= 0)
        close(fd);
    Py_END_ALLOW_THREADS
    if (err != 0) {
        errno = err;
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, arg);
        Py_DECREF(bytes_path);
        return NULL;
    }
    Py_DECREF(bytes_path);
    return PyBytes_FromStringAndSize((const char *)d.bytes, 16);
}

/* env_lib_set(name, version): see deja_env_lib_set. */
static PyObject *env_lib_set(PyObject *self, PyObject *args)
{
    const char *name, *version;
    int rc;
    if (!PyArg_ParseTuple(args, "ss:env_lib_set", &name, &version))
        return NULL;
    if ((rc = deja_env_lib_set(name, version)) != 0)
        return deja_py_raise(rc);
    Py_RETURN_NONE;
}

/* current_span() -> Span or None. */
static PyObject *current_span(PyObject *self, PyObject *unused)
{
    PyObject *s = deja_py_current_span();
    return Py_NewRef(s != NULL ? s : Py_None);
}

/* dtype_size(name) -> int (0 when unknown). */
static PyObject *dtype_size(PyObject *self, PyObject *arg)
{
    const char *name = PyUnicode_Check(arg) ? PyUnicode_AsUTF8(arg) : NULL;
    if (name == NULL)
        return PyErr_Occurred() ? NULL : PyLong_FromLong(0);
    return PyLong_FromSize_t(deja_dtype_size(deja_dtype_parse(name)));
}

static PyMethodDef module_methods[] = {
    {"_set_coerce", set_coerce, METH_O, NULL},
    {"digest", digest_of, METH_O, "digest(data) -> 16 bytes of XXH3-128"},
    {"digest_file", digest_file, METH_O, "digest_file(path) -> 16 bytes of XXH3-128"},
    {"env_lib_set", env_lib_set, METH_VARARGS, "env_lib_set(name, version)"},
    {"current_span", current_span, METH_NOARGS, "the innermost open span of this thread"},
    {"dtype_size", dtype_size, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT, "deja._deja", "The C core of the deja package.", -1, module_methods,
};

PyMODINIT_FUNC PyInit__deja(void);
PyMODINIT_FUNC PyInit__deja(void)
{
    PyObject *m = NULL;
    if (PyType_Ready(&DejaPyTracer_Type) < 0 || PyType_Ready(&DejaPySpan_Type) < 0 ||
        PyType_Ready(&DejaPyStore_Type) < 0 || PyType_Ready(&DejaPyView_Type) < 0 ||
        deja_py_store_ready() < 0 || deja_py_runner_ready() < 0)
        return NULL;
    if ((m = PyModule_Create(&module_def)) == NULL)
        return NULL;
    deja_py_error = PyErr_NewException("deja.Error", PyExc_RuntimeError, NULL);
    if (deja_py_error == NULL || PyModule_AddObjectRef(m, "Error", deja_py_error) < 0 ||
        PyModule_AddObjectRef(m, "Tracer", (PyObject *)&DejaPyTracer_Type) < 0 ||
        PyModule_AddObjectRef(m, "Span", (PyObject *)&DejaPySpan_Type) < 0 ||
        PyModule_AddObjectRef(m, "Store", (PyObject *)&DejaPyStore_Type) < 0 ||
        PyModule_AddStringConstant(m, "DEJA_VERSION", DEJA_VERSION_STRING) < 0 ||
        PyModule_AddFunctions(m, deja_py_runner_methods) < 0)
        goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
