"""Recording cost from Python: one span with two 1 KB inputs, three params
and one output, timed call by call (the writer running, the queue deep
enough to hold a repeat, flushed between repeats), beside the interpreter's
floor, an empty `with` block timed the same way. Run by `./run bench`:

    PYTHONPATH=build-bench/python /usr/bin/python3 bench/python_span.py [STORE]

Prints one line per figure: median and p99 over all calls, and the spread
of the per-repeat medians."""

import os
import shutil
import statistics
import sys
import tempfile
import time

import deja

REPEATS = 10
PER = 2000


class _Empty:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def measure(fn, tracer=None):
    clock = time.perf_counter_ns
    medians, every = [], []
    for _ in range(REPEATS + 1):
        times = []
        for _ in range(PER):
            t0 = clock()
            fn()
            times.append(clock() - t0)
        if tracer is not None:
            tracer.flush()
        if medians or every:  # the first repeat warms up
            medians.append(statistics.median(times))
            every.extend(times)
        else:
            medians.append(None)
            every.append(None)
    every = sorted(t for t in every if t is not None)
    medians = [m for m in medians if m is not None]
    return statistics.median(every), every[int(len(every) * 0.99)], min(medians), max(medians)


def main():
    tmp = None
    path = sys.argv[1] if len(sys.argv) > 1 else None
    if path is None:
        tmp = tempfile.mkdtemp(prefix="deja-pybench-")
        path = os.path.join(tmp, "bench.store")
    a, b = os.urandom(1024), os.urandom(1024)
    tracer = deja.Tracer(path, queue_capacity=PER * 2)
    empty = _Empty()

    def span():
        with tracer.span("bench", "1") as s:
            s.input("prompt", a)
            s.input("context", b)
            s.param("temperature", 0.7)
            s.param("top_k", 40)
            s.param("mode", "greedy")
            s.output("completion", "ok")

    def floor():
        with empty:
            pass

    try:
        for name, fn, t in (("python span (2x1 KB in, 3 params, 1 out)", span, tracer),
                            ("python empty `with` block (floor)", floor, None)):
            med, p99, lo, hi = measure(fn, t)
            print("%-44s median %6.2f us  p99 %6.2f us  (repeat medians %.2f-%.2f us, "
                  "%d x %d calls, timer included)" % (name, med / 1e3, p99 / 1e3, lo / 1e3,
                                                      hi / 1e3, REPEATS, PER))
        st = tracer.stats()
        tracer.close()
        print("traces written: %d" % st["written"], flush=True)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
