"""deja: a flight recorder and replay debugger for ML inference.

Record from a Python application::

    import deja
    tracer = deja.Tracer("my.store")
    with tracer.span("sentiment", "3", digest=deja.digest_file("weights.pt")) as s:
        s.input("text", text)
        s.param("temperature", 0.7)
        torch.manual_seed(s.seed("torch"))   # replayed: the recorded seed
        s.output("scores", model(text))

Read a store (notebooks)::

    store = deja.Store("my.store")
    for info in store.ls(model="sentiment", limit=10):
        trace = store.get(info.id)
        trace.inputs["text"], trace.outputs["scores"]   # numpy, read-only

The C core is deja._deja (libdeja); this file is the thin Python layer.
"""

import atexit
import datetime as _dt
import functools
import inspect
import os
import platform
import re
import sys
import threading
import weakref

from . import _deja
from ._deja import Error, Span, digest, digest_file, current_span

__all__ = [
    "Tracer", "Span", "Store", "Trace", "TraceInfo", "Error", "digest", "digest_file",
    "current_span", "declare_env", "DROP_TRACE", "run_model",
]
__version__ = _deja.DEJA_VERSION

#: What a redact callback returns to drop the whole trace.
DROP_TRACE = "drop-trace"

# ------------------------------------------------------------------ values


def _coerce(value):
    """Turn a value the C core cannot view directly into a buffer: torch
    tensors (CPU; bfloat16 as (dtype, shape, 16-bit buffer)), numpy arrays
    that are not C-contiguous or not little-endian, scalars and lists."""
    mod = type(value).__module__ or ""
    if mod.startswith("torch"):
        import torch
        if isinstance(value, torch.Tensor):
            t = value.detach()
            if t.device.type != "cpu":
                raise TypeError("deja: a torch tensor on %s: move it to the CPU first" % t.device)
            t = t.contiguous()
            if t.dtype == torch.bfloat16:
                return ("bf16", tuple(t.shape), t.view(torch.int16).numpy())
            return t.resolve_conj().numpy()
    import numpy as np
    a = np.asarray(value)
    if a.dtype.kind in "UOSVMmc":
        raise TypeError("deja: cannot record a value of type %s (numpy dtype %s)"
                        % (type(value).__name__, a.dtype))
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("<"))
    return np.ascontiguousarray(a)


_deja._set_coerce(_coerce)

_NUMPY_DTYPES = {
    "f16": "float16", "f32": "float32", "f64": "float64", "i8": "int8", "i16": "int16",
    "i32": "int32", "i64": "int64", "u8": "uint8", "u16": "uint16", "u32": "uint32",
    "u64": "uint64", "bool": "bool", "bf16": "uint16",
}


def _value(dtype, shape, view):
    """A recorded tensor as a Python value: str for utf8, bytes for bytes, a
    read-only numpy array (no copy) otherwise; bf16 comes as its uint16
    bits (see Trace.torch)."""
    if view is None:
        return None
    if dtype == "utf8":
        return str(view, "utf-8", "replace")
    if dtype == "bytes":
        return bytes(view)
    import numpy as np
    a = np.frombuffer(view, dtype=_NUMPY_DTYPES[dtype])
    return a.reshape(shape)


# ------------------------------------------------------------- environment

_declared = False


def _torch_blas():
    """The BLAS torch computes with: torch's build setting and the BLAS
    library actually mapped into the process."""
    import torch
    info = "unknown"
    try:
        m = re.search(r"BLAS_INFO=([^,\s]+)", torch.__config__.show())
        if m:
            info = m.group(1)
    except Exception:  # torch builds without __config__
        pass
    mapped = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.rsplit(" ", 1)[-1].strip()
                base = os.path.basename(path)
                if base.startswith(("libblas", "libopenblas", "libmkl_rt", "libblis", "libcblas")):
                    mapped.add(os.path.realpath(path))
    except OSError:
        pass
    if mapped:
        info += " (" + ", ".join(sorted(mapped)) + ")"
    return info


def _framework_libs():
    """Versions and settings of the numerical libraries this process has
    imported: Python, numpy, torch (version, intra-op threads, BLAS)."""
    libs = {"python": platform.python_version()}
    np = sys.modules.get("numpy")
    if np is not None:
        libs["numpy"] = np.__version__
    torch = sys.modules.get("torch")
    if torch is not None:
        libs["torch"] = torch.__version__
        libs["torch.threads"] = str(torch.get_num_threads())
        libs["torch.blas"] = _torch_blas()
    return libs


def declare_env(**libs):
    """Declare library versions and settings (name=version) for the
    environment of this process, on top of those deja finds by itself
    (python, numpy, torch with its thread count and BLAS). The environment
    is captured when the first Tracer opens: declare before that."""
    for name, version in libs.items():
        _deja.env_lib_set(name.replace("__", "."), str(version))


def _declare_framework_env():
    global _declared
    if _declared:
        return
    _declared = True
    for name, version in _framework_libs().items():
        try:
            _deja.env_lib_set(name, version)
        except Error:
            pass  # captured already, by an earlier tracer of another library


# ------------------------------------------------------------------ Tracer

_open_tracers = weakref.WeakSet()
_tracers_lock = threading.Lock()


@atexit.register
def _close_all():
    """Flush and close every tracer still open when the program exits."""
    with _tracers_lock:
        tracers = list(_open_tracers)
    for t in tracers:
        try:
            t.close()
        except Exception as e:  # exiting: report, never raise
            print("deja: closing a tracer at exit: %s" % e, file=sys.stderr)


def _default_store():
    return os.environ.get("DEJA_STORE") or "deja.store"


class Tracer(_deja.Tracer):
    """Records inferences into a store (created if needed).

    ``store``: its path (default $DEJA_STORE, else ./deja.store);
    ``sample_rate``: fraction of ok traces kept (errors always are);
    ``max_payload``: a tensor larger than this many bytes is truncated and
    tagged; ``redact(side, name, dtype, data)``: runs on the writer thread
    for every tensor, ``data`` a writable memoryview of its bytes; return
    None to keep it (as edited in place), False to drop the tensor, shorter
    bytes to replace it, or DROP_TRACE to drop the trace.

    ``checkpoints``: which of the spans' checkpoints to keep
    (``span.checkpoint(name, value)``): None or "none" (the default), "all",
    or names ("layer*" is a prefix), as a comma-separated str or a list;
    ``checkpoints_digest``: keep their digest and summary, not their bytes.

    ``span(name, version, digest=None)`` begins one inference; use it as a
    context manager. Thread-safe; the calling thread only copies. Flushed
    and closed at exit.
    """

    def __init__(self, store=None, sample_rate=1.0, max_payload=None, redact=None,
                 queue_capacity=None, drop=False, batch_max=None, flush_interval_ms=None,
                 queue_bytes=None, checkpoints=None, checkpoints_digest=False):
        _declare_framework_env()
        path = os.fspath(store) if store is not None else _default_store()
        kw = {"sample_rate": float(sample_rate), "drop": bool(drop), "redact": redact,
              "checkpoints_digest": bool(checkpoints_digest)}
        if checkpoints is not None:
            kw["checkpoints"] = checkpoints if isinstance(checkpoints, str) else ",".join(checkpoints)
        for k, v in (("max_payload", max_payload), ("queue_capacity", queue_capacity),
                     ("batch_max", batch_max), ("flush_interval_ms", flush_interval_ms),
                     ("queue_bytes", queue_bytes)):
            if v is not None:
                kw[k] = int(v)
        super().__init__(path, **kw)
        self.path = path
        with _tracers_lock:
            _open_tracers.add(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def trace(self, name, version, digest=None, inputs=None, output="output"):
        """Decorator: record every call of a function as one inference.

        Arguments named in ``inputs`` (default: every argument that is a
        str, bytes, numpy array or torch tensor) are recorded as inputs,
        number and bool arguments as params; the return value as output
        ``output`` (a dict: one output per key; a tuple: output_0, ...).
        Inside the function, ``deja.current_span()`` is the span (for
        ``seed``). An exception is recorded as an error trace and raised.
        """
        def wrap(fn):
            sig = inspect.signature(fn)

            @functools.wraps(fn)
            def inner(*args, **kwargs):
                with self.span(name, version, digest) as s:
                    bound = sig.bind(*args, **kwargs)
                    bound.apply_defaults()
                    for k, v in bound.arguments.items():
                        _record_arg(s, k, v, inputs)
                    result = fn(*args, **kwargs)
                    _record_result(s, output, result)
                    return result
            return inner
        return wrap


def _is_tensorish(v):
    if isinstance(v, (str, bytes, bytearray, memoryview)):
        return True
    mod = type(v).__module__ or ""
    return (mod.startswith("numpy") and hasattr(v, "shape")) or \
        (mod.startswith("torch") and hasattr(v, "shape"))


def _record_arg(span, key, value, inputs):
    if inputs is not None:
        if key in inputs:
            span.input(key, value)
        return
    if isinstance(value, bool) or isinstance(value, (int, float)):
        span.param(key, value)
    elif _is_tensorish(value):
        span.input(key, value)


def _record_result(span, output, result):
    if result is None:
        return
    if isinstance(result, dict):
        for k, v in result.items():
            span.output(str(k), v)
    elif isinstance(result, tuple):
        for i, v in enumerate(result):
            span.output("%s_%d" % (output, i), v)
    else:
        span.output(output, result)


# ------------------------------------------------------------------- Store

def _to_ns(t, what):
    """A time filter as Unix nanoseconds: datetime, timedelta (that long
    ago), int nanoseconds or float seconds."""
    if t is None:
        return 0
    if isinstance(t, _dt.timedelta):
        t = _dt.datetime.now(_dt.timezone.utc) - t
    if isinstance(t, _dt.datetime):
        if t.tzinfo is None:
            t = t.astimezone()
        return int(t.timestamp() * 1e9)
    if isinstance(t, float):
        return int(t * 1e9)
    if isinstance(t, int):
        return t
    raise TypeError("deja: %s must be a datetime, timedelta, int ns or float seconds" % what)


class TensorInfo:
    """A recorded tensor's name, dtype, shape and size in bytes."""
    __slots__ = ("name", "dtype", "shape", "size")

    def __init__(self, name, dtype, shape, size):
        self.name, self.dtype, self.shape, self.size = name, dtype, shape, size

    def __repr__(self):
        return "TensorInfo(%r, %s, %s, %d bytes)" % (self.name, self.dtype, list(self.shape),
                                                     self.size)


class TraceInfo:
    """One listed trace: identity, timing, model, status, params, tags, and
    the names, dtypes and shapes of its tensors (no payloads)."""

    def __init__(self, d):
        self.id = d["id"]
        self.start_ns = d["start_ns"]
        self.duration_ns = d["duration_ns"]
        self.model = d["model"]
        self.version = d["version"]
        self.digest = d["digest"]
        self.status = d["status"]
        self.error = d["error"]
        self.params = d["params"]
        self.seeds = d["seeds"]
        self.tags = d["tags"]
        self.parent = d["parent"]
        self.env_digest = d["env_digest"]
        self.input_info = {n: TensorInfo(n, dt, sh, sz) for n, dt, sh, _, sz in d["inputs"]}
        self.output_info = {n: TensorInfo(n, dt, sh, sz) for n, dt, sh, _, sz in d["outputs"]}

    @property
    def start(self):
        """The start time as an aware datetime (UTC)."""
        return _dt.datetime.fromtimestamp(self.start_ns / 1e9, _dt.timezone.utc)

    def __repr__(self):
        return "<%s %s %s@%s %s>" % (type(self).__name__, self.id, self.model, self.version,
                                     self.status)


class Trace(TraceInfo):
    """One recorded inference with its payloads: ``inputs`` and ``outputs``
    map names to values (str, bytes, or read-only numpy arrays viewing the
    decoded trace; bf16 as its uint16 bits, decoded by ``values(name)``),
    ``dtypes`` gives deja's dtype of each, ``params``,
    ``seeds``, ``rng`` (stream -> (seed, draws)), ``clock_ns``, ``tags``
    and ``env`` (the environment it was recorded in, a dict)."""

    def __init__(self, d, env):
        super().__init__(d)
        self.rng = d["rng"]
        self.clock_ns = d["clock_ns"]
        self.env = env
        self.dtypes = {}
        self.inputs = {}
        self.outputs = {}
        for side, out in (("inputs", self.inputs), ("outputs", self.outputs)):
            for name, dtype, shape, view, _ in d[side]:
                self.dtypes[name] = dtype
                out[name] = _value(dtype, shape, view)

    def values(self, name=None):
        """The values of input or output `name` (an output wins a shared
        name), as ``deja show --json --values`` gives them: numbers as a
        read-only numpy array in the tensor's shape, f16 as float16 and
        bf16 decoded to float32 (a read-only copy; every other dtype is a
        view of the decoded trace, no copy); text as str, bytes as bytes.
        Without `name`, a dict of every input and output by name."""
        if name is None:
            names = list(self.inputs) + [n for n in self.outputs if n not in self.inputs]
            return {n: self.values(n) for n in names}
        v = self.outputs[name] if name in self.outputs else self.inputs[name]
        if self.dtypes[name] != "bf16" or v is None:
            return v
        import numpy as np
        f = (v.astype(np.uint32) << 16).view(np.float32)
        f.flags.writeable = False
        return f

    def torch(self, name):
        """Input or output `name` as a torch tensor (a copy; bf16 and f16
        included)."""
        import torch
        v = self.outputs[name] if name in self.outputs else self.inputs[name]
        if self.dtypes[name] == "bf16":
            return torch.from_numpy(v.view("int16").copy()).view(torch.bfloat16)
        return torch.from_numpy(v.copy())


class Store:
    """A deja store opened for reading. ``ls(...)`` streams TraceInfo
    newest first, ``get(id_or_prefix)`` reads one Trace with payloads;
    iterating the store is ``ls()``."""

    PAGE = 256

    def __init__(self, path=None):
        self.path = os.fspath(path) if path is not None else _default_store()
        self._s = _deja.Store(self.path)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        self._s.close()

    def ls(self, model=None, version=None, since=None, until=None, tags=None, status=None,
           limit=None):
        """The traces matching every filter given, newest first, streamed a
        page at a time (memory does not grow with the store). ``since`` and
        ``until`` take a datetime, a timedelta (ago), int ns or float
        seconds; ``tags`` a dict; ``status`` "ok" or "error"."""
        st = {None: -1, "ok": 0, "error": 1}.get(status)
        if st is None:
            raise ValueError("deja: status must be 'ok' or 'error'")
        since_ns = _to_ns(since, "since")
        until_ns = _to_ns(until, "until")
        tag_list = [(str(k), str(v)) for k, v in (tags or {}).items()]
        if version is not None:
            version = str(version)
        left = limit
        before = None
        page_until = until_ns
        while left is None or left > 0:
            want = self.PAGE if left is None else min(self.PAGE, left)
            rows = self._s.list_page(model, version, since_ns, page_until, st, tag_list, want,
                                     before)
            for d in rows:
                yield TraceInfo(d)
            if left is not None:
                left -= len(rows)
            if len(rows) < want:
                return
            # Resume below the last id, within the millisecond it started
            # in (ids order traces by millisecond, then at random).
            before = rows[-1]["id"]
            end_of_ms = (rows[-1]["start_ns"] // 1_000_000 + 1) * 1_000_000
            page_until = end_of_ms if until_ns == 0 else min(until_ns, end_of_ms)

    __iter__ = ls

    def get(self, id_or_prefix):
        """The trace whose id starts with ``id_or_prefix`` (KeyError when
        none, deja.Error when ambiguous), with its payloads."""
        d = self._s.get(str(id_or_prefix))
        env = self._s.env(d["env_digest"]) if d["env_digest"] is not None else None
        return Trace(d, env)

    def __getitem__(self, id_or_prefix):
        return self.get(id_or_prefix)

    def stats(self):
        return self._s.stats()


def run_model(model, **kwargs):
    """Serve a model to ``deja replay --model 'exec:/usr/bin/python3
    my_model.py ARGS'`` over the exec runner protocol; see
    deja.runner.run_model for the arguments."""
    from .runner import run_model as _run
    return _run(model, **kwargs)
