/*
 * bench/checkpoint/checkpoint_cost.c -- deja-bench-checkpoints: what
 * recording checkpoints costs. Per inference a model produces 10
 * checkpoints of 4 KB (f32 [1024], values that change per inference, as
 * activations do) through a recording ctx (deja_ctx_checkpoint, the path
 * a plugin takes), under three selections: none (the default: the call
 * returns at once), all (bytes copied into the span) and all with
 * --checkpoints-digest (XXH3-128 and a summary on the calling thread).
 * Only the checkpoint calls are timed, on the calling thread; the writer
 * thread compresses and commits concurrently, as in production.
 *
 *   deja-bench-checkpoints [ROUNDS [N]]   (default 7 rounds of 2000 inferences)
 *
 * Prints, per selection, the median and range over the rounds of the cost
 * of one checkpoint, in wall time and in the calling thread's CPU time (on
 * a loaded machine the wall time includes the core taken by the writer and
 * other processes), against the 2 us target, and the store bytes per trace
 * (the committed record values, deja stats' stored_bytes) of each.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "deja.h"
#include "deja_model.h"

#ifndef DEJA_BENCH_BUILD_DIR
#define DEJA_BENCH_BUILD_DIR "."
#endif
#define STORE DEJA_BENCH_BUILD_DIR "/bench-checkpoints.store"
#define MAX_ROUNDS 101
#define NCK 10
#define NVAL 1024 /* 4 KB of f32 */
#define TARGET_NS 2000.0

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

/* CPU time of the calling thread: what the checkpoints cost it, without
 * the time other threads (the writer, other processes) held the core. */
static double cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Fill `v` with the activations of layer `layer` of inference `inf`. */
static void activations(float *v, unsigned inf, unsigned layer)
{
    uint32_t s = inf * 2654435761u ^ (layer + 1) * 40503u;
    for (size_t i = 0; i < NVAL; i++) {
        s = s * 1664525u + 1013904223u;
        v[i] = (float)(s >> 8) * (1.0f / 16777216.0f) - 0.5f;
    }
}

typedef struct mode {
    const char *name;
    const char *select;
    int digest;
    double per_ck[MAX_ROUNDS];
    double cpu_ck[MAX_ROUNDS];
    double bytes_per_trace;
} mode;

/* One round of `n` inferences under `m` into a fresh store: the per
 * checkpoint cost into m->per_ck[round]. Returns 0 or -1. */
static int round_of(mode *m, unsigned round, unsigned n, float (*vals)[NVAL])
{
    deja_tracer *t = NULL;
    deja_store *st = NULL;
    deja_tracer_options o = DEJA_TRACER_OPTIONS_INIT;
    deja_store_stats ss;
    double spent = 0, spent_cpu = 0;
    char cmd[512];
    int rc = -1;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", STORE);
    if (system(cmd) != 0)
        return -1;
    o.checkpoints = m->select;
    o.checkpoints_digest = m->digest;
    if (deja_tracer_open(&t, STORE, &o) != 0)
        goto cleanup;
    for (unsigned i = 0; i < n; i++) {
        deja_span *sp = NULL;
        deja_ctx *ctx = NULL;
        uint64_t shape[1] = {NVAL};
        uint64_t seed = i;
        if (deja_span_begin(&sp, t, "bench", "1") != 0 ||
            deja_span_add_text(sp, DEJA_INPUT, "prompt", "hello", 5) != 0 ||
            deja_ctx_record_v2(&ctx, sp, &seed) != 0)
            goto cleanup;
        for (unsigned k = 0; k < NCK; k++)
            activations(vals[k], i + round * n, k);
        char names[NCK][16];
        const double c0 = cpu_ns();
        const double t0 = now_ns();
        for (unsigned k = 0; k < NCK; k++) {
            snprintf(names[k], sizeof names[k], "layer%u", k);
            const deja_tensor tt = {names[k], DEJA_F32, 1, shape, vals[k], sizeof vals[k]};
            if (deja_ctx_checkpoint(ctx, &tt) != 0)
                goto cleanup;
        }
        spent += now_ns() - t0;
        spent_cpu += cpu_ns() - c0;
        deja_ctx_free(ctx);
        if (deja_span_add_text(sp, DEJA_OUTPUT, "completion", "world", 5) != 0 ||
            deja_span_end(sp, DEJA_STATUS_OK, NULL) != 0)
            goto cleanup;
    }
    if (deja_tracer_flush(t) != 0)
        goto cleanup;
    deja_tracer_close(t);
    t = NULL;
    if (deja_store_open(&st, STORE, DEJA_STORE_READONLY) != 0 || deja_store_stats_get(st, &ss) != 0)
        goto cleanup;
    m->per_ck[round] = spent / ((double)n * NCK);
    m->cpu_ck[round] = spent_cpu / ((double)n * NCK);
    m->bytes_per_trace = (double)ss.stored_bytes / (double)(ss.traces ? ss.traces : 1);
    rc = 0;
cleanup:
    if (rc != 0)
        fprintf(stderr, "deja-bench-checkpoints: %s\n", deja_error_last());
    deja_tracer_close(t);
    deja_store_close(st);
    return rc;
}

int main(int argc, char **argv)
{
    unsigned rounds = argc > 1 ? (unsigned)atoi(argv[1]) : 7;
    unsigned n = argc > 2 ? (unsigned)atoi(argv[2]) : 2000;
    mode modes[3] = {{"none (default)", NULL, 0, {0}, {0}, 0},
                     {"all, bytes", "all", 0, {0}, {0}, 0},
                     {"all, digest-only", "all", 1, {0}, {0}, 0}};
    static float vals[NCK][NVAL];
    char cmd[512];
    if (rounds < 1 || rounds > MAX_ROUNDS || n < 1) {
        fprintf(stderr, "usage: deja-bench-checkpoints [ROUNDS (1..%d) [N]]\n", MAX_ROUNDS);
        return 2;
    }
    /* Rounds alternate between the selections so that a busy machine
     * slows all alike. */
    for (unsigned r = 0; r < rounds; r++)
        for (size_t k = 0; k < 3; k++)
            if (round_of(&modes[k], r, n, vals) != 0)
                return 2;
    printf("\ncheckpoints: %d of 4 KB (f32 [%d]) per inference, %u rounds of %u inferences, "
           "cost per checkpoint on the calling thread (target <= %.0f us)\n",
           NCK, NVAL, rounds, n, TARGET_NS / 1000);
    printf("  %-18s %26s %26s %14s\n", "selection", "wall: median (range)",
           "thread CPU: median (range)", "store B/trace");
    for (size_t k = 0; k < 3; k++) {
        double v[MAX_ROUNDS], c[MAX_ROUNDS];
        memcpy(v, modes[k].per_ck, rounds * sizeof *v);
        memcpy(c, modes[k].cpu_ck, rounds * sizeof *c);
        qsort(v, rounds, sizeof *v, cmp_double);
        qsort(c, rounds, sizeof *c, cmp_double);
        const double med = rounds % 2 ? v[rounds / 2] : (v[rounds / 2 - 1] + v[rounds / 2]) / 2;
        const double cmed = rounds % 2 ? c[rounds / 2] : (c[rounds / 2 - 1] + c[rounds / 2]) / 2;
        printf("  %-18s %8.0f ns (%6.0f..%6.0f) %8.0f ns (%6.0f..%6.0f) %12.0f   %s\n",
               modes[k].name, med, v[0], v[rounds - 1], cmed, c[0], c[rounds - 1],
               modes[k].bytes_per_trace,
               k == 0 ? "" : (cmed <= TARGET_NS ? "target met (CPU)" : "target MISSED (CPU)"));
    }
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", STORE);
    return system(cmd) == 0 ? 0 : 2;
}
