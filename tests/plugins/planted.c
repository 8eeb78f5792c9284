/*
 * tests/plugins/planted.c -- a tiny model plugin for the replay and bisect
 * tests, with a change planted at a chosen version.
 *
 * ARG is "V/P": this instance plays version V of a list in which the
 * change appears at version P (so versions V >= P are "bad"); no ARG is
 * version 0 with no change. infer reads the f32 input "x", takes a seed, an
 * RNG draw and a clock read through the ctx (so a replay must feed them
 * back), and writes "logits" (f32 [4]), "answer" (text) and "stamp" (i64).
 * The planted change moves logits[3] up by 100: the label becomes 3. A
 * boolean param "fail" set to true makes infer fail; so does ARG "V/P/1"
 * for inputs whose x[0] is negative.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deja_model.h"

typedef struct planted {
    unsigned version;
    unsigned planted_at;
    unsigned fail_negative;
} planted;

static int p_open(const char *arg, void **instance, deja_model_info *info, char *err, size_t errcap)
{
    planted *p = calloc(1, sizeof(*p));
    (void)info;
    if (!p) {
        snprintf(err, errcap, "planted: out of memory");
        return 1;
    }
    p->planted_at = 1000000;
    if (arg && sscanf(arg, "%u/%u/%u", &p->version, &p->planted_at, &p->fail_negative) < 2) {
        snprintf(err, errcap, "planted: ARG must be V/P, got '%s'", arg);
        free(p);
        return 1;
    }
    *instance = p;
    return 0;
}

static int p_infer(void *instance, deja_ctx *ctx)
{
    const planted *p = instance;
    const deja_tensor *x = deja_ctx_input(ctx, "x");
    const deja_param *fail = deja_ctx_param(ctx, "fail");
    float logits[4] = {0, 0, 0, 0};
    uint64_t shape[1] = {4}, one[1] = {1};
    int64_t stamp;
    size_t i, n, best = 0;
    double noise;
    char answer[64];
    int len;
    if (fail && fail->kind == DEJA_PARAM_BOOL && fail->flag) {
        deja_ctx_fail(ctx, "planted: asked to fail");
        return 1;
    }
    if (!x || x->dtype != DEJA_F32) {
        deja_ctx_fail(ctx, "planted: input 'x' (f32) is required");
        return 1;
    }
    n = x->size / sizeof(float);
    if (p->fail_negative && n > 0) {
        float x0;
        memcpy(&x0, x->data, sizeof(x0));
        if (x0 < 0) {
            deja_ctx_fail(ctx, "planted: negative input");
            return 1;
        }
    }
    noise = deja_ctx_rng_f64(ctx, "noise") * 1e-3;
    noise += (double)(deja_ctx_seed(ctx, "init") % 1000) * 1e-6;
    for (i = 0; i < n; i++) {
        float v;
        memcpy(&v, (const uint8_t *)x->data + i * sizeof(float), sizeof(v));
        logits[i % 4] += v * (float)(1 + i % 3);
    }
    logits[0] += (float)noise;
    if (p->version >= p->planted_at) {
        logits[3] += 100.0f;
    }
    for (i = 1; i < 4; i++) {
        if (logits[i] > logits[best]) {
            best = i;
        }
    }
    stamp = deja_ctx_now(ctx);
    {
        deja_tensor t = {"logits", DEJA_F32, 1, shape, logits, sizeof(logits)};
        deja_tensor s = {"stamp", DEJA_I64, 1, one, &stamp, sizeof(stamp)};
        if (deja_ctx_output(ctx, &t) != 0 || deja_ctx_output(ctx, &s) != 0) {
            return 1;
        }
    }
    len = snprintf(answer, sizeof(answer), "the answer is class %zu", best);
    return deja_ctx_output_text(ctx, "answer", answer, (size_t)len) != 0;
}

static void p_close(void *instance)
{
    free(instance);
}

static const deja_model_plugin plugin = {
    DEJA_MODEL_ABI_VERSION, "planted", "1", DEJA_MODEL_THREAD_SAFE, p_open, p_infer, p_close,
};

__attribute__((visibility("default"))) const deja_model_plugin *deja_model_entry(void);
__attribute__((visibility("default"))) const deja_model_plugin *deja_model_entry(void)
{
    return &plugin;
}
