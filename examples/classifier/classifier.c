/*
 * classifier.c -- a small multi-layer perceptron over 16 float features
 * (16 -> 32 ReLU -> 10 logits), as a deja model plugin. Built six times
 * with -DCLASSIFIER_VERSION=1..6 (classifier-v1.so ...):
 *
 *   v1  the baseline.
 *   v2  identical computation (rows are walked through a pointer rather than
 *       indexed): outputs are bit for bit those of v1.
 *   v3  the output layer accumulates in reverse order, bias last: the same
 *       mathematics, but float rounding differs, so logits move by a few
 *       ULPs while the predicted labels stay the same. The hidden layer is
 *       untouched: a replay with checkpoints names layer2.out as the first
 *       divergence, layer1.out bit-identical before it.
 *   v4  as v3.
 *   v5  as v3 with one output weight changed (a "retrained" weight), so
 *       that some predicted labels flip.
 *   v6  as v5.
 *
 * The weights are generated at open from a fixed seed with a xorshift64
 * generator, as exact multiples of 1/1024, so every build on every machine
 * gets the same bytes; their XXH3-128 is the reported weights digest.
 * Accumulation is in float on purpose: order changes show up in ULPs.
 *
 * infer: input "features", f32 [16] or [N,16]; output "logits", f32 [10]
 * or [N,10]. Checkpoints (deja_ctx_checkpoint, kept with `deja run
 * --checkpoints`): "layer1.out" (the hidden activations, f32 [N,32]) and
 * "layer2.out" (the logits before they are written). No randomness, no
 * clock.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#include "deja_model.h"

#ifndef CLASSIFIER_VERSION
#define CLASSIFIER_VERSION 1
#endif

#define STR2(x) #x
#define STR(x) STR2(x)

#define NIN 16
#define NHID 32
#define NOUT 10
#define MAX_BATCH 65536
#define WEIGHT_SEED 0x5eedc1a551f1e5ull

typedef struct weights {
    float w1[NHID][NIN];
    float b1[NHID];
    float w2[NOUT][NHID];
    float b2[NOUT];
} weights;

const deja_model_plugin *deja_model_entry(void) __attribute__((visibility("default")));

static uint64_t xorshift64(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

/* A weight in [-scale, scale] that is an exact multiple of scale/1024. */
static float draw(uint64_t *s, float scale)
{
    int v = (int)(xorshift64(s) % 2049) - 1024;
    return (float)v / 1024.0f * scale;
}

static void generate(weights *w)
{
    uint64_t s = WEIGHT_SEED;
    for (int i = 0; i < NHID; i++) {
        for (int j = 0; j < NIN; j++) {
            w->w1[i][j] = draw(&s, 0.5f);
        }
        w->b1[i] = draw(&s, 0.125f);
    }
    for (int i = 0; i < NOUT; i++) {
        for (int j = 0; j < NHID; j++) {
            w->w2[i][j] = draw(&s, 0.5f);
        }
        w->b2[i] = draw(&s, 0.125f);
    }
#if CLASSIFIER_VERSION >= 5
    /* The "retrained" weight: class 3 listens much harder to hidden unit 5. */
    w->w2[3][5] += 1.5f;
#endif
}

static int cl_open(const char *arg, void **instance, deja_model_info *info, char *err,
                   size_t errcap)
{
    weights *w = calloc(1, sizeof *w);
    if (!w) {
        snprintf(err, errcap, "classifier: out of memory");
        return -1;
    }
    generate(w);
    /* deja's own digest, through the host table: no xxHash to link. */
    info->host->digest(w, sizeof *w, info->digest);
    info->digest_size = 16;
    *instance = w;
    return 0;
}

static void cl_close(void *instance)
{
    free(instance);
}

/* out[i] = act(b[i] + sum_j w[i][j] * x[j]) in float, in this version's
 * summation order (`reorder`: the layer this version sums differently). */
static void dense(const float *w, const float *b, const float *x, float *out, int nout, int nin,
                  int relu, int reorder)
{
    for (int i = 0; i < nout; i++) {
        const float *row = w + (size_t)i * nin;
#if CLASSIFIER_VERSION >= 3
        if (reorder) {
            float acc = 0.0f;
            for (int j = nin - 1; j >= 0; j--) {
                acc += row[j] * x[j];
            }
            acc += b[i];
            out[i] = relu && acc < 0.0f ? 0.0f : acc;
            continue;
        }
#else
        (void)reorder;
#endif
#if CLASSIFIER_VERSION == 2
        float acc = b[i];
        for (int j = 0; j < nin; j++) {
            acc += row[j] * x[j];
        }
#else
        float acc = b[i];
        (void)row;
        for (int j = 0; j < nin; j++) {
            acc += w[(size_t)i * nin + j] * x[j];
        }
#endif
        out[i] = relu && acc < 0.0f ? 0.0f : acc;
    }
}

static int cl_infer(void *instance, deja_ctx *ctx)
{
    const weights *w = instance;
    int rc = -1;
    float *logits = NULL;
    float *hidden = NULL;
    const deja_tensor *in = deja_ctx_input(ctx, "features");
    if (!in || in->dtype != DEJA_F32 || in->ndim < 1 || in->ndim > 2 || !in->shape ||
        in->shape[in->ndim - 1] != NIN || (in->ndim == 2 && in->shape[0] > MAX_BATCH)) {
        deja_ctx_fail(ctx, "classifier: needs the input 'features' as f32 [16] or [N,16] "
                           "(N <= 65536)");
        return -1;
    }
    size_t n = in->ndim == 2 ? (size_t)in->shape[0] : 1;
    if (in->size != n * NIN * sizeof(float) || (n > 0 && !in->data)) {
        deja_ctx_fail(ctx, "classifier: 'features' has the wrong number of bytes");
        return -1;
    }
    logits = malloc((n ? n : 1) * NOUT * sizeof(float));
    hidden = malloc((n ? n : 1) * NHID * sizeof(float));
    if (!logits || !hidden) {
        deja_ctx_fail(ctx, "classifier: out of memory");
        goto cleanup;
    }
    for (size_t r = 0; r < n; r++) {
        float x[NIN];
        /* The payload may sit at any alignment. */
        memcpy(x, (const uint8_t *)in->data + r * sizeof x, sizeof x);
        dense(&w->w1[0][0], w->b1, x, hidden + r * NHID, NHID, NIN, 1, 0);
    }
    uint64_t hshape[2] = {n, NHID};
    const deja_tensor h = {"layer1.out", DEJA_F32, 2, hshape, hidden, n * NHID * sizeof(float)};
    /* Checkpoints cost one call when the run keeps none; a replay told to
     * stop at the first divergence says so here. */
    if (deja_ctx_checkpoint(ctx, &h) == DEJA_CHECKPOINT_STOP) {
        rc = 0;
        goto cleanup;
    }
    for (size_t r = 0; r < n; r++) {
        dense(&w->w2[0][0], w->b2, hidden + r * NHID, logits + r * NOUT, NOUT, NHID, 0, 1);
    }
    uint64_t shape[2] = {n, NOUT};
    if (in->ndim == 1) {
        shape[0] = NOUT;
    }
    deja_tensor out = {"logits", DEJA_F32, in->ndim, shape, logits, n * NOUT * sizeof(float)};
    const deja_tensor l2 = {"layer2.out", DEJA_F32, in->ndim, shape, logits, out.size};
    if (deja_ctx_checkpoint(ctx, &l2) == DEJA_CHECKPOINT_STOP) {
        rc = 0;
        goto cleanup;
    }
    /* Declared scores over classes: the diff compares labels too, whatever
     * the output's name. */
    if (deja_ctx_output_as(ctx, &out, DEJA_KIND_SCORES) != 0) {
        deja_ctx_fail(ctx, "classifier: could not write the output 'logits'");
        goto cleanup;
    }
    rc = 0;
cleanup:
    free(logits);
    free(hidden);
    return rc;
}

static const deja_model_plugin plugin = {
    DEJA_MODEL_ABI_VERSION,
    "classifier",
    STR(CLASSIFIER_VERSION),
    DEJA_MODEL_THREAD_SAFE,
    cl_open,
    cl_infer,
    cl_close,
};

/* The plugin's one export: its static description. */
const deja_model_plugin *deja_model_entry(void)
{
    return &plugin;
}
