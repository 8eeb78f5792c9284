/*
 * bench/hotparts/hot_parts.c -- deja-bench-hot-parts: where the hot path's
 * time goes. Records spans shaped like deja-bench's small workload (model
 * name and version, a 32-byte digest, a 1 KB prompt, three params, a seed,
 * a tag, a 1 KB completion) through the public API, in bursts of 2,000
 * into the default queue with the writer running, as deja-bench's hot pass
 * does, and alternates burst by burst between variants of the span, so
 * that each pair of medians was measured moments apart:
 *
 *   full      as deja-bench: the completion read from a 20 MB pool of
 *             10,000 records (cold), the prompt from a buffer just filled;
 *   hot-src   the same, the completion from a buffer in cache (a model's
 *             output is usually just written);
 *   no-copy   the same span without its two 1 KB payloads;
 *   empty     begin and end only.
 *
 * Prints, per variant, the min / median / max over bursts of the median
 * time per span, and the median of the paired differences with "full".
 * Usage: deja-bench-hot-parts [DIR [BURSTS]] (DIR: a scratch directory,
 * default /tmp/deja-hot-parts; BURSTS per variant, default 20).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "deja.h"

#define BURST 2000
#define NREC 10000
#define NVAR 4
#define MAX_BURSTS 200

static const char *const names[NVAR] = {"full", "hot-src", "no-copy", "empty"};

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The median of `v` (sorted in place). */
static double median(double *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp_double);
    return n ? v[n / 2] : 0;
}

/* Record one span of variant `var`; returns 0 or the deja error code. */
static int record(deja_tracer *t, int var, const char *prompt, const char *completion,
                  uint64_t seq)
{
    static const uint8_t digest[32] = {1};
    deja_span *s = NULL;
    int rc = deja_span_begin(&s, t, "small-lm", "1.4.2");
    if (rc != 0)
        return rc;
    if (var != 3) {
        rc = deja_span_model_digest(s, digest, sizeof digest);
        if (rc == 0 && var != 2)
            rc = deja_span_add_text(s, DEJA_INPUT, "prompt", prompt, 1024);
        if (rc == 0)
            rc = deja_span_param_num(s, "temperature", 0.7);
        if (rc == 0)
            rc = deja_span_param_num(s, "top_p", 0.9);
        if (rc == 0)
            rc = deja_span_param_num(s, "max_tokens", 256);
        if (rc == 0)
            rc = deja_span_seed(s, "seed", seq);
        if (rc == 0)
            rc = deja_span_tag(s, "user", "u123");
        if (rc == 0 && var != 2)
            rc = deja_span_add_text(s, DEJA_OUTPUT, "completion", completion, 1024);
    }
    if (rc != 0) {
        deja_span_abort(s);
        return rc;
    }
    return deja_span_end(s, DEJA_STATUS_OK, NULL);
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "/tmp/deja-hot-parts";
    const int bursts = argc > 2 ? atoi(argv[2]) : 20;
    char path[4096];
    static double lat[BURST], med[NVAR][MAX_BURSTS];
    static char prompt[1024], hot[1024];
    deja_tracer *t = NULL;
    int rc = 2;
    char *pool = malloc((size_t)NREC * 2048);
    if (pool == NULL || bursts < 1 || bursts > MAX_BURSTS) {
        fprintf(stderr, "deja-bench-hot-parts: BURSTS is 1..%d\n", MAX_BURSTS);
        goto cleanup;
    }
    for (size_t i = 0; i < (size_t)NREC * 2048; i++)
        pool[i] = (char)('a' + (i * 7919 % 26));
    memset(hot, 'h', sizeof hot);
    snprintf(path, sizeof path, "%s/deja.store", dir);
    deja_tracer_options o = DEJA_TRACER_OPTIONS_INIT;
    o.queue_full = DEJA_QUEUE_BLOCK;
    if (deja_tracer_open(&t, path, &o) != 0) {
        fprintf(stderr, "deja-bench-hot-parts: %s\n", deja_error_last());
        goto cleanup;
    }
    uint64_t seq = 0;
    /* Two warm-up rounds, then `bursts` rounds of every variant in turn. */
    for (int r = -2; r < bursts; r++) {
        for (int var = 0; var < NVAR; var++) {
            for (int i = 0; i < BURST; i++, seq++) {
                const char *rec = pool + (seq % NREC) * 2048;
                memcpy(prompt, rec, sizeof prompt); /* the caller's just-built input */
                memcpy(prompt, &seq, sizeof seq);
                const double t0 = now_ns();
                if (record(t, var, prompt, var == 1 ? hot : rec + 1024, seq) != 0) {
                    fprintf(stderr, "deja-bench-hot-parts: %s\n", deja_error_last());
                    goto cleanup;
                }
                lat[i] = now_ns() - t0;
            }
            if (deja_tracer_flush(t) != 0) {
                fprintf(stderr, "deja-bench-hot-parts: %s\n", deja_error_last());
                goto cleanup;
            }
            if (r >= 0)
                med[var][r] = median(lat, BURST);
        }
    }
    printf("median ns per span, %d bursts of %d per variant (min / median / max over bursts; "
           "paired difference with full)\n",
           bursts, BURST);
    for (int var = 0; var < NVAR; var++) {
        double d[MAX_BURSTS], v[MAX_BURSTS];
        for (int r = 0; r < bursts; r++) {
            d[r] = med[var][r] - med[0][r];
            v[r] = med[var][r];
        }
        const double m = median(v, (size_t)bursts);
        printf("  %-8s %5.0f / %5.0f / %5.0f   %+5.0f\n", names[var], v[0], m, v[bursts - 1],
               median(d, (size_t)bursts));
    }
    rc = 0;
cleanup:
    deja_tracer_close(t);
    free(pool);
    return rc;
}
