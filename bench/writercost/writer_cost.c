/*
 * bench/writercost/writer_cost.c -- deja-bench-writer-cost: N of
 * deja-bench's small traces recorded through the public API on one
 * thread, flushed, the tracer closed; nothing timed. Meant to run under
 * `valgrind --tool=callgrind` twice, with two counts: the difference of
 * the totals over the difference of the counts is what one trace costs in
 * instructions in all (calling thread, writer and its helpers), the
 * set-up cancelling out (bench/writercost/cost.sh does this, and takes the
 * store's one dictionary training out, whose cost depends on the samples
 * held when it ran). Deterministic but for the batch sizes the writer
 * happens to pop, which move per-batch costs a little.
 * Usage: deja-bench-writer-cost N DIR.
 */
#include <stdio.h>
#include <stdlib.h>

#include "bench.h"

int main(int argc, char **argv)
{
    bench_workload w;
    bench_thread t;
    bench_sink *s = NULL;
    const bench_sink_ops *ops = &bench_sink_deja;
    int rc = 2;
    if (argc != 3) {
        fprintf(stderr, "usage: deja-bench-writer-cost N DIR\n");
        return 2;
    }
    const unsigned long n = strtoul(argv[1], NULL, 10);
    if (bench_mkdirs(argv[2]) != 0 || bench_workload_small(&w, 10000, 0x5eed0001) != 0) {
        fprintf(stderr, "deja-bench-writer-cost: cannot set up %s\n", argv[2]);
        return 2;
    }
    if (bench_thread_init(&t, &w, 1) != 0 || ops->open(&s, argv[2], &w) != 0) {
        fprintf(stderr, "deja-bench-writer-cost: cannot open the tracer\n");
        bench_workload_free(&w);
        return 2;
    }
    for (unsigned long i = 0; i < n; i++) {
        bench_record r;
        t.pool_index = i % w.nrecs;
        bench_record_stamp(&r, &w.recs[t.pool_index], t.stamp, i);
        if (ops->record(s, &t, &r) != 0) {
            fprintf(stderr, "deja-bench-writer-cost: recording failed at %lu\n", i);
            goto cleanup;
        }
    }
    if (ops->finish(s) == 0)
        rc = 0;
    printf("%llu traces written\n", (unsigned long long)ops->committed(s));
cleanup:
    ops->close(s);
    bench_thread_free(&t);
    bench_workload_free(&w);
    return rc;
}
