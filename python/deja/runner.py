"""Serve a Python model to deja over the exec runner protocol.

    # my_model.py
    import deja

    def infer(ctx):
        text = ctx.inputs["text"]                  # str, bytes or numpy array
        rng = numpy.random.default_rng(ctx.seed("numpy"))
        ctx.output("label", classify(text, rng, ctx.params.get("threshold", 0.5)))

    deja.run_model(infer, name="sentiment", version="3", digest=deja.digest_file("w.pt"))

then ``deja replay --model 'exec:/usr/bin/python3 my_model.py'``. The wire
protocol is libdeja's (runner/, deja_runner_serve); this module only adapts
a Python model to it.
"""

import os
import sys

from . import _deja, _framework_libs


def _describe(obj, attr, given):
    if given is not None:
        return given
    return getattr(obj, attr, None)


def run_model(model, name=None, version=None, digest=None, thread_safe=False, libs=None,
              argv=None):
    """Serve `model` on stdin/stdout until deja closes the stream.

    `model` is either a function ``infer(ctx)``, or a class (or an instance)
    with ``infer(ctx)`` and optionally ``open(argv)`` (given the runner's
    command-line arguments, ``sys.argv[1:]`` unless `argv` is given) and
    ``close()``; ``name``, ``version`` and ``digest`` default to the
    object's attributes of those names after ``open``. ``digest`` is bytes
    or hex (e.g. ``deja.digest_file(weights)``).

    In ``infer(ctx)``: ``ctx.inputs`` and ``ctx.params`` (dicts),
    ``ctx.seed(name)``, ``ctx.rng(stream, n=None)`` (64-bit draws, asked of
    deja in one round trip), ``ctx.now()`` (Unix ns), ``ctx.output(name,
    value)``, ``ctx.fail(message)``, ``ctx.note(message)``,
    ``ctx.checkpoint(name, value)`` (an intermediate value, recorded with
    ``deja run --checkpoints`` and compared on replay; it returns True when
    ``deja replay --stop-at-first`` asks to stop: return then). Returning a dict
    writes its items as outputs; an exception fails that inference only
    (its traceback goes to stderr, which deja shows prefixed).

    The protocol owns file descriptor 1: ``print`` goes to stderr while
    serving. A model that fails to open is reported to deja in the hello.
    Returns when deja closes the stream; on a broken conversation prints
    one line to stderr and exits with status 2.
    """
    if argv is None:
        argv = sys.argv[1:]
    sys.stdout.flush()
    out_fd = os.dup(1)
    os.dup2(2, 1)  # a stray print() cannot corrupt the protocol stream
    sys.stdout = sys.stderr

    obj, infer, close, error = None, None, None, None
    try:
        if hasattr(model, "infer"):
            obj = model() if isinstance(model, type) else model
            if hasattr(obj, "open"):
                obj.open(list(argv))
            infer, close = obj.infer, getattr(obj, "close", None)
        elif callable(model):
            infer = model
        else:
            raise TypeError("run_model: a function infer(ctx), or an object with infer(ctx)")
    except Exception as e:  # the host hears it in the hello
        error = "%s: %s" % (type(e).__name__, e) if str(e) else type(e).__name__
    name = _describe(obj, "name", name) or (getattr(infer, "__name__", None) if obj is None
                                            else type(obj).__name__) or "model"
    version = str(_describe(obj, "version", version) or "")
    digest = _describe(obj, "digest", digest)
    thread_safe = bool(_describe(obj, "thread_safe", thread_safe))
    all_libs = dict(_framework_libs())
    all_libs.update(libs or {})
    try:
        _deja.serve(infer if infer is not None else (lambda ctx: None), str(name), version,
                    digest=digest, thread_safe=thread_safe,
                    libs=sorted((str(k), str(v)) for k, v in all_libs.items()),
                    in_fd=0, out_fd=out_fd, error=error)
    except _deja.Error as e:
        print("deja runner %s: %s" % (name, e), file=sys.stderr)
        raise SystemExit(2)
    finally:
        if close is not None:
            close()
        os.close(out_fd)
