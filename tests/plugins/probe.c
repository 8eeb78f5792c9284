/*
 * tests/plugins/probe.c -- a model plugin that misbehaves on purpose, one
 * way per flag of its ARG (comma-separated), for the tests of verdicts.
 *
 * It reads the f32 input "x" (optional), takes the seed "init", draws from
 * the stream "noise" and reads the clock through its ctx, and writes:
 *   "a"    f32 [4]: x + 1 (+ N with v=N): the output a version change moves
 *   "conf" f32 [1,4] (named by name=NAME): scores whose arg-max the
 *          version change flips while every value moves by 0.2 only
 * Flags:
 *   v=N           move "a" by N and flip the arg-max of "conf"
 *   vary          also write "b" (i64 [1]): libc rand(), seeded in open:
 *                 state hidden from deja that changes on every call
 *   madeup        also write "c": a draw from a stream named per call, which
 *                 the recording cannot hold (made up by the ctx on replay)
 *   fail=MSG      write "a", then fail with deja_ctx_fail(MSG)
 *   bare          write "a", then fail by returning 7 (no message)
 *   draws=N       draws from "noise" (default 3); clocks=N clock reads
 *                 (default 1); noseed: never asks for the seed "init"
 *   declare=KIND  declare "conf" as scores/probs/embedding/values/text
 *   badout        also write "bad", whose bytes do not match its shape
 *                 (ignoring the error, as a careless model would)
 *   big=N         also write "big": N bytes (u8) counting up
 *   lib=NAME@VER  report the library NAME at VER
 *   weights=PATH  digest PATH as the weights (through the host table)
 *   hang          never return
 *   hangon=N      never return when x[0] is N
 *   envnoise      move "a" by 0.5 when $PROBE_NOISE is set: a difference of
 *                 the machine, not of the model (noise for a baseline)
 *   crash         die of SIGSEGV
 *   threads       two threads each draw 64 values from their own part of
 *                 stream "t" (deja_ctx_rng_u64_part) and "sum" holds both
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "deja_model.h"

typedef struct probe {
    int v;
    int hangon;
    int envnoise;
    int vary, madeup, bare, noseed, badout, hang, crash, threads;
    unsigned draws, clocks;
    size_t big;
    deja_output_kind declare;
    char fail[128];
    char name[64];
    unsigned long calls;
} probe;

/* The value of flag `key` in the comma-separated `arg` (copied into `out`),
 * 1 when present, 0 when not. */
static int flag(const char *arg, const char *key, char *out, size_t cap)
{
    size_t kl = strlen(key);
    const char *p = arg;
    while (p && *p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len >= kl && strncmp(p, key, kl) == 0 && (len == kl || p[kl] == '=')) {
            if (out) {
                size_t vl = len > kl ? len - kl - 1 : 0;
                if (vl >= cap)
                    vl = cap - 1;
                memcpy(out, p + kl + (len > kl), vl);
                out[vl] = '\0';
            }
            return 1;
        }
        p = end ? end + 1 : NULL;
    }
    return 0;
}

static int p_open(const char *arg, void **instance, deja_model_info *info, char *err, size_t errcap)
{
    probe *p = calloc(1, sizeof(*p));
    char val[256];
    if (!p) {
        snprintf(err, errcap, "probe: out of memory");
        return 1;
    }
    p->draws = 3;
    p->clocks = 1;
    snprintf(p->name, sizeof(p->name), "conf");
    arg = arg ? arg : "";
    if (flag(arg, "v", val, sizeof(val)))
        p->v = atoi(val);
    if (flag(arg, "hangon", val, sizeof(val)))
        p->hangon = atoi(val);
    p->vary = flag(arg, "vary", NULL, 0);
    p->envnoise = flag(arg, "envnoise", NULL, 0);
    p->madeup = flag(arg, "madeup", NULL, 0);
    p->bare = flag(arg, "bare", NULL, 0);
    p->noseed = flag(arg, "noseed", NULL, 0);
    p->badout = flag(arg, "badout", NULL, 0);
    p->hang = flag(arg, "hang", NULL, 0);
    p->crash = flag(arg, "crash", NULL, 0);
    p->threads = flag(arg, "threads", NULL, 0);
    if (flag(arg, "fail", val, sizeof(val)))
        snprintf(p->fail, sizeof(p->fail), "%.120s", val);
    if (flag(arg, "draws", val, sizeof(val)))
        p->draws = (unsigned)atoi(val);
    if (flag(arg, "clocks", val, sizeof(val)))
        p->clocks = (unsigned)atoi(val);
    if (flag(arg, "big", val, sizeof(val)))
        p->big = (size_t)atol(val);
    if (flag(arg, "name", val, sizeof(val)))
        snprintf(p->name, sizeof(p->name), "%.60s", val);
    if (flag(arg, "declare", val, sizeof(val))) {
        static const char *const kinds[] = {"auto",   "scores", "probs",
                                            "embedding", "values", "text"};
        for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
            if (strcmp(val, kinds[i]) == 0)
                p->declare = (deja_output_kind)i;
    }
    if (flag(arg, "lib", val, sizeof(val))) {
        char *at = strchr(val, '@');
        if (!at || (*at = '\0', deja_model_info_library(info, val, at + 1) != 0)) {
            snprintf(err, errcap, "probe: cannot report library '%s'", val);
            free(p);
            return 1;
        }
    }
    if (flag(arg, "weights", val, sizeof(val)) && deja_model_info_weights(info, val) != 0) {
        snprintf(err, errcap, "probe: cannot digest weights '%s'", val);
        free(p);
        return 1;
    }
    srand(42); /* hidden state: the same start in every process */
    *instance = p;
    return 0;
}

/* What one thread of a threaded inference does. */
typedef struct part {
    deja_ctx *ctx;
    unsigned index;
    uint64_t sum;
} part;

static void *draw_part(void *arg)
{
    part *pt = arg;
    for (int i = 0; i < 64; i++)
        pt->sum = pt->sum * 31 + deja_ctx_rng_u64_part(pt->ctx, "t", pt->index);
    return NULL;
}

static int p_infer(void *instance, deja_ctx *ctx)
{
    probe *p = instance;
    const deja_tensor *x = deja_ctx_input(ctx, "x");
    float a[4] = {1, 1, 1, 1}, conf[4] = {0.5f, 0.4f, 0.1f, 0.0f};
    uint64_t sh4[1] = {4}, sh14[2] = {1, 4}, one[1] = {1};
    uint64_t mix = 0;
    p->calls++;
    if (p->crash)
        raise(SIGSEGV);
    while (p->hang)
        sleep(1);
    for (size_t i = 0; x && x->dtype == DEJA_F32 && i < 4 && i < x->size / 4; i++) {
        float v;
        memcpy(&v, (const char *)x->data + 4 * i, 4);
        a[i] += v;
        while (i == 0 && p->hangon != 0 && (int)v == p->hangon)
            sleep(1);
    }
    if (!p->noseed)
        mix ^= deja_ctx_seed(ctx, "init");
    for (unsigned i = 0; i < p->draws; i++)
        mix ^= deja_ctx_rng_u64(ctx, "noise");
    for (unsigned i = 0; i < p->clocks; i++)
        mix ^= (uint64_t)deja_ctx_now(ctx);
    (void)mix;
    for (int i = 0; i < 4; i++)
        a[i] += (float)p->v + (p->envnoise && getenv("PROBE_NOISE") ? 0.5f : 0.0f);
    if (p->v) {
        conf[0] = 0.4f;
        conf[1] = 0.5f;
    }
    {
        deja_tensor t = {"a", DEJA_F32, 1, sh4, a, sizeof(a)};
        if (deja_ctx_output(ctx, &t) != 0)
            return 1;
    }
    if (p->fail[0]) {
        deja_ctx_fail(ctx, p->fail);
        return 1;
    }
    if (p->bare)
        return 7;
    if (p->declare != DEJA_KIND_AUTO && deja_ctx_output_kind(ctx, p->name, p->declare) != 0)
        return 1;
    {
        deja_tensor t = {p->name, DEJA_F32, 2, sh14, conf, sizeof(conf)};
        if (deja_ctx_output(ctx, &t) != 0)
            return 1;
    }
    if (p->vary) {
        int64_t b = rand();
        deja_tensor t = {"b", DEJA_I64, 1, one, &b, sizeof(b)};
        if (deja_ctx_output(ctx, &t) != 0)
            return 1;
    }
    if (p->madeup) {
        char stream[64];
        snprintf(stream, sizeof(stream), "fresh-%lu", p->calls);
        uint64_t c = deja_ctx_rng_u64(ctx, stream);
        deja_tensor t = {"c", DEJA_U64, 1, one, &c, sizeof(c)};
        if (deja_ctx_output(ctx, &t) != 0)
            return 1;
    }
    if (p->badout) {
        double wrong = 1.0;
        uint64_t three[1] = {3};
        deja_tensor t = {"bad", DEJA_F32, 1, three, &wrong, sizeof(wrong)};
        (void)deja_ctx_output(ctx, &t); /* refused: 8 bytes are not 3 f32 */
    }
    if (p->big) {
        uint8_t *buf = malloc(p->big);
        uint64_t shb[1] = {p->big};
        if (!buf)
            return 1;
        for (size_t i = 0; i < p->big; i++)
            buf[i] = (uint8_t)i;
        deja_tensor t = {"big", DEJA_U8, 1, shb, buf, p->big};
        int rc = deja_ctx_output(ctx, &t);
        free(buf);
        if (rc != 0)
            return 1;
    }
    if (p->threads) {
        part parts[2] = {{ctx, 0, 0}, {ctx, 1, 0}};
        pthread_t th[2];
        uint64_t sum[2];
        for (int i = 0; i < 2; i++)
            if (pthread_create(&th[i], NULL, draw_part, &parts[i]) != 0)
                return 1;
        for (int i = 0; i < 2; i++)
            pthread_join(th[i], NULL);
        sum[0] = parts[0].sum;
        sum[1] = parts[1].sum;
        uint64_t two[1] = {2};
        deja_tensor t = {"sum", DEJA_U64, 1, two, sum, sizeof(sum)};
        if (deja_ctx_output(ctx, &t) != 0)
            return 1;
    }
    return 0;
}

static void p_close(void *instance)
{
    free(instance);
}

static const deja_model_plugin plugin = {
    DEJA_MODEL_ABI_VERSION, "probe", "1", 0, p_open, p_infer, p_close,
};

__attribute__((visibility("default"))) const deja_model_plugin *deja_model_entry(void);
__attribute__((visibility("default"))) const deja_model_plugin *deja_model_entry(void)
{
    return &plugin;
}
