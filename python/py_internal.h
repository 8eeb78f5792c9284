/*
 * python/py_internal.h -- the CPython extension `deja._deja`: what its files
 * share. py_values.c turns Python values into deja tensors and back,
 * py_tracer.c holds the Tracer and Span types, py_store.c the Store type,
 * py_runner.c serves a Python model over the exec runner protocol,
 * py_module.c the module itself. The extension calls libdeja's public API
 * (deja.h, deja_model.h) only.
 */
#ifndef DEJA_PY_INTERNAL_H
#define DEJA_PY_INTERNAL_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "deja.h"

/* The module's exception class, deja.Error (a subclass of RuntimeError). */
extern PyObject *deja_py_error;

/* Raise deja.Error with the deja error code's message and
 * deja_error_last(); returns NULL so that callers can `return raise(...)`. */
PyObject *deja_py_raise(int code);

/* A Python value seen as a deja tensor: str (utf8), bytes, bytearray, any
 * C-contiguous buffer (numpy arrays), or what the Python layer's coerce
 * hook turns other values into (torch tensors, lists, scalars). Owns the
 * buffer view it took; release with deja_py_tensor_release(). */
typedef struct deja_py_tensor {
    deja_tensor t;
    uint64_t shape[DEJA_MAX_DIMS];
    Py_buffer view;
    int has_view;
    PyObject *hold; /* a coerced object the view is over */
} deja_py_tensor;

/* Fill `out` with a view of `value` named `name`. Returns 0, or -1 with a
 * Python exception set (TypeError for a value deja cannot record). */
int deja_py_tensor_from(deja_py_tensor *out, const char *name, PyObject *value);
void deja_py_tensor_release(deja_py_tensor *t);

/* The hook the Python layer installs: coerce(value) -> an object with a
 * C-contiguous buffer, or (dtype_name, shape, buffer). */
extern PyObject *deja_py_coerce;

/* A recorded tensor as the Python layer builds values from it:
 * (name, dtype_name, shape tuple, read-only memoryview or None, size). The
 * memoryview keeps `owner` alive; with `owner` NULL it is None (a listing,
 * without payloads). */
PyObject *deja_py_tensor_tuple(const deja_tensor *t, PyObject *owner);

/* A read-only buffer over `size` bytes at `data`, kept valid by holding a
 * reference to `owner`. */
PyObject *deja_py_view_new(PyObject *owner, const void *data, size_t size);

/* Decode digest bytes from a Python value: bytes-like (at most 64 bytes)
 * or a hex string. Returns the size, or -1 with an exception set. */
Py_ssize_t deja_py_digest_from(PyObject *value, uint8_t out[64]);

/* Types, ready by the module's init. */
extern PyTypeObject DejaPyTracer_Type;
extern PyTypeObject DejaPySpan_Type;
extern PyTypeObject DejaPyStore_Type;
extern PyTypeObject DejaPyView_Type;

/* The span opened last and not yet ended on the calling thread, or NULL
 * (borrowed). */
PyObject *deja_py_current_span(void);

/* Module functions of py_runner.c (NULL-terminated table) and the
 * readying of its types. */
extern PyMethodDef deja_py_runner_methods[];
int deja_py_runner_ready(void);

#endif /* DEJA_PY_INTERNAL_H */
