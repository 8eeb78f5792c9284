/*
 * bench/runner/exec_overhead.c -- deja-bench-exec: what the exec path adds
 * per inference. The same do-nothing model (tests/runners/noop_model.c:
 * two RNG draws and a 1-byte output) runs as a C plugin and as an exec
 * runner, recording (span, recording ctx, infer, span dropped) and
 * replaying (replaying ctx over a recorded trace, infer); the difference
 * per inference is the cost of the process boundary: the infer, two calls
 * and replies, and the result, each a frame over a socket pair.
 *
 *   deja-bench-exec [ROUNDS [N]]     (default 7 rounds of 20000 inferences)
 *
 * Rounds alternate between the two models so that a busy machine slows
 * both alike. Prints the median per inference of each and the overhead's
 * median and range over the rounds, for the two draws asked one at a time
 * (three round trips per inference: infer, call, call) and at once (ARG
 * "batched": two round trips). The overhead is then split into the floor
 * (one round trip of 8 bytes between two processes over a socket pair,
 * timed between the rounds: what the machine charges, busy or not) and
 * deja's own cost per round trip (framing, protobuf, the ctx).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "deja.h"

#ifndef DEJA_BENCH_BUILD_DIR
#define DEJA_BENCH_BUILD_DIR "."
#endif
#define PLUGIN DEJA_BENCH_BUILD_DIR "/lib/test-noop.so"
#define RUNNER "exec:" DEJA_BENCH_BUILD_DIR "/bin/test-noop-runner"
#define STORE DEJA_BENCH_BUILD_DIR "/bench-exec.store"
#define MAX_ROUNDS 101
#define TARGET_US 50.0

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* One recorded inference of `m`, the span dropped. Returns 0 or -1. */
static int record_one(deja_tracer *t, deja_model *m)
{
    deja_span *s = NULL;
    deja_ctx *ctx = NULL;
    int rc = deja_span_begin(&s, t, deja_model_name(m), deja_model_version(m));
    if (rc == 0)
        rc = deja_ctx_record(&ctx, s, 0);
    if (rc == 0)
        rc = deja_model_infer(m, ctx);
    deja_ctx_free(ctx);
    deja_span_abort(s);
    return rc == 0 ? 0 : -1;
}

/* One replayed inference of `m` over `trace`. Returns 0 or -1. */
static int replay_one(const deja_trace *trace, deja_model *m)
{
    deja_ctx *ctx = NULL;
    int rc = deja_ctx_replay(&ctx, trace);
    if (rc == 0)
        rc = deja_model_infer(m, ctx);
    deja_ctx_free(ctx);
    return rc == 0 ? 0 : -1;
}

/* Seconds per inference over `n` inferences of `m` (replaying `trace` when
 * not NULL, else recording through `t`); negative on failure. */
static double round_of(deja_tracer *t, const deja_trace *trace, deja_model *m, size_t n)
{
    const double t0 = now_s();
    for (size_t i = 0; i < n; i++)
        if ((trace ? replay_one(trace, m) : record_one(t, m)) != 0)
            return -1;
    return (now_s() - t0) / (double)n;
}

/* Record one trace of `m` into the store and read it back. */
static deja_trace *recorded_trace(deja_tracer *t, deja_model *m)
{
    deja_span *s = NULL;
    deja_ctx *ctx = NULL;
    deja_store *st = NULL;
    deja_trace *trace = NULL;
    deja_id id;
    if (deja_span_begin(&s, t, deja_model_name(m), deja_model_version(m)) != 0)
        return NULL;
    id = *deja_span_id(s);
    if (deja_ctx_record(&ctx, s, 0) != 0 || deja_model_infer(m, ctx) != 0) {
        deja_ctx_free(ctx);
        deja_span_abort(s);
        return NULL;
    }
    deja_ctx_free(ctx);
    if (deja_span_end(s, DEJA_STATUS_OK, NULL) != 0 || deja_tracer_flush(t) != 0 ||
        deja_store_open(&st, STORE, DEJA_STORE_READONLY) != 0)
        return NULL;
    if (deja_trace_get(st, &id, &trace) != 0)
        trace = NULL;
    deja_store_close(st);
    return trace;
}

/* CPU time, load-independent: this process's (all threads) and the
 * runner process's (its schedstat), in seconds. */
static pid_t runner_pids[2];

static double cpu_self(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double cpu_of(pid_t pid)
{
    char path[64];
    unsigned long long ns = 0;
    snprintf(path, sizeof path, "/proc/%ld/schedstat", (long)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    if (fscanf(f, "%llu", &ns) != 1)
        ns = 0;
    fclose(f);
    return (double)ns * 1e-9;
}

/* The newest child of this process (the runner just started), or 0. */
static pid_t newest_child(void)
{
    char path[64];
    long pid = 0, last = 0;
    snprintf(path, sizeof path, "/proc/%ld/task/%ld/children", (long)getpid(), (long)getpid());
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    while (fscanf(f, "%ld", &pid) == 1)
        last = pid;
    fclose(f);
    return (pid_t)last;
}

/* The floor: a process that answers 8 bytes with 8 bytes over a socket
 * pair, timed in rounds interleaved with the model's. */
static int ping_fd = -1;
static pid_t ping_pid;

static int ping_start(void)
{
    int sv[2];
    char b[8];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        return -1;
    ping_pid = fork();
    if (ping_pid < 0)
        return -1;
    if (ping_pid == 0) {
        close(sv[0]);
        while (read(sv[1], b, sizeof b) == (ssize_t)sizeof b)
            if (write(sv[1], b, sizeof b) != (ssize_t)sizeof b)
                break;
        _exit(0);
    }
    close(sv[1]);
    ping_fd = sv[0];
    return 0;
}

static void ping_stop(void)
{
    if (ping_fd >= 0) {
        close(ping_fd);
        waitpid(ping_pid, NULL, 0);
        ping_fd = -1;
    }
}

/* Seconds per round trip over `n` round trips; negative on failure. */
static double ping_round(size_t n)
{
    char b[8] = {0};
    const double t0 = now_s();
    for (size_t i = 0; i < n; i++)
        if (write(ping_fd, b, sizeof b) != (ssize_t)sizeof b ||
            read(ping_fd, b, sizeof b) != (ssize_t)sizeof b)
            return -1;
    return (now_s() - t0) / (double)n;
}

/* Measure one path (record or replay) and print its line. Returns 0 or -1. */
static int measure(const char *path, deja_tracer *t, deja_model *plugin, deja_model *runner,
                   int replay, int trips, size_t rounds, size_t n)
{
    double p[MAX_ROUNDS], r[MAX_ROUNDS], d[MAX_ROUNDS], f[MAX_ROUNDS], own[MAX_ROUNDS];
    double cp[MAX_ROUNDS], cr[MAX_ROUNDS];
    const pid_t rpid = runner_pids[trips == 2];
    deja_trace *tp = NULL, *tr = NULL;
    int rc = -1;
    if (replay && ((tp = recorded_trace(t, plugin)) == NULL ||
                   (tr = recorded_trace(t, runner)) == NULL)) {
        fprintf(stderr, "deja-bench-exec: cannot record the traces to replay: %s\n",
                deja_error_last());
        goto cleanup;
    }
    /* Warm up both: page faults, the runner's first frames. */
    if (round_of(t, tp, plugin, n / 10 + 1) < 0 || round_of(t, tr, runner, n / 10 + 1) < 0)
        goto fail;
    for (size_t i = 0; i < rounds; i++) {
        double c0 = cpu_self();
        p[i] = round_of(t, tp, plugin, n);
        cp[i] = (cpu_self() - c0) / (double)n;
        c0 = cpu_self() + cpu_of(rpid);
        r[i] = round_of(t, tr, runner, n);
        cr[i] = (cpu_self() + cpu_of(rpid) - c0) / (double)n;
        f[i] = ping_round(n);
        if (p[i] < 0 || r[i] < 0 || f[i] < 0)
            goto fail;
        d[i] = r[i] - p[i];
        own[i] = d[i] / trips - f[i];
    }
    const double pm = median(p, rounds) * 1e6, rm = median(r, rounds) * 1e6;
    const double dm = median(d, rounds) * 1e6, fm = median(f, rounds) * 1e6;
    const double om = median(own, rounds) * 1e6;
    const double cpm = median(cp, rounds) * 1e6, crm = median(cr, rounds) * 1e6;
    printf("    %-7s C plugin %6.2f us  exec runner %7.2f us  added %6.2f us "
           "(rounds %.2f .. %.2f)  %s\n"
           "            = %d round trips x (floor %.2f us + the rest %.2f us); CPU time "
           "per inference: C plugin %.2f us, exec %.2f us (both processes)\n",
           path, pm, rm, dm, d[0] * 1e6, d[rounds - 1] * 1e6,
           dm <= TARGET_US ? "target met" : "TARGET MISSED", trips, fm, om, cpm, crm);
    rc = 0;
    goto cleanup;
fail:
    fprintf(stderr, "deja-bench-exec: an inference failed: %s\n", deja_error_last());
cleanup:
    deja_trace_free(tp);
    deja_trace_free(tr);
    return rc;
}

int main(int argc, char **argv)
{
    const size_t rounds = argc > 1 ? strtoul(argv[1], NULL, 10) : 7;
    const size_t n = argc > 2 ? strtoul(argv[2], NULL, 10) : 20000;
    deja_tracer *t = NULL;
    deja_model *plugin = NULL, *runner = NULL, *bplugin = NULL, *brunner = NULL;
    int rc = 2;
    if (rounds < 1 || rounds > MAX_ROUNDS || n < 1) {
        fprintf(stderr, "usage: deja-bench-exec [ROUNDS (1..%d) [N]]\n", MAX_ROUNDS);
        return 2;
    }
    if (ping_start() != 0) {
        fprintf(stderr, "deja-bench-exec: cannot start the floor's process\n");
        return 2;
    }
    if (system("rm -rf '" STORE "'") != 0 || deja_tracer_open(&t, STORE, NULL) != 0 ||
        deja_model_load(&plugin, PLUGIN) != 0 || deja_model_load(&runner, RUNNER) != 0 ||
        (runner_pids[0] = newest_child()) == 0 ||
        deja_model_load(&bplugin, PLUGIN ":batched") != 0 ||
        deja_model_load(&brunner, RUNNER " batched") != 0 ||
        (runner_pids[1] = newest_child()) == 0) {
        fprintf(stderr, "deja-bench-exec: %s\n", deja_error_last());
        goto cleanup;
    }
    printf("\nexec runner overhead per inference (do-nothing model, 2 RNG draws; "
           "%zu rounds of %zu; target <= %.0f us added)\n",
           rounds, n, TARGET_US);
    printf("  2 draws asked one at a time (3 round trips per inference):\n");
    if (measure("record", t, plugin, runner, 0, 3, rounds, n) != 0 ||
        measure("replay", t, plugin, runner, 1, 3, rounds, n) != 0)
        goto cleanup;
    printf("  2 draws asked at once, deja_ctx_rng_fill (2 round trips):\n");
    if (measure("record", t, bplugin, brunner, 0, 2, rounds, n) != 0 ||
        measure("replay", t, bplugin, brunner, 1, 2, rounds, n) != 0)
        goto cleanup;
    printf("  (floor: one round trip of 8 bytes between two processes over a socket pair,\n"
           "   timed between the rounds; the rest: deja's own work and the scheduler's)\n");
    rc = 0;
cleanup:
    deja_model_free(brunner);
    deja_model_free(bplugin);
    deja_model_free(runner);
    deja_model_free(plugin);
    deja_tracer_close(t);
    ping_stop();
    if (system("rm -rf '" STORE "'") != 0)
        rc = 2;
    return rc;
}
