/*
 * preprocess.c -- the first step of the example pipeline, as a deja model
 * plugin (build/lib/preprocess.so): centres 16 raw readings on their mean
 * and scales them into [-1, 1] by their largest magnitude.
 *
 * infer: input "raw", f32 [16]; output "features", f32 [16]. No
 * randomness, no clock.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "deja_model.h"

#define N 16

const deja_model_plugin *deja_model_entry(void) __attribute__((visibility("default")));

static int pre_open(const char *arg, void **instance, deja_model_info *info, char *err,
                    size_t errcap)
{
    (void)arg, (void)info, (void)err, (void)errcap;
    *instance = NULL;
    return 0;
}

static void pre_close(void *instance)
{
    (void)instance;
}

static int pre_infer(void *instance, deja_ctx *ctx)
{
    const deja_tensor *in = deja_ctx_input(ctx, "raw");
    float x[N], mean = 0.0f, peak = 0.0f;
    uint64_t shape[1] = {N};
    (void)instance;
    if (!in || in->dtype != DEJA_F32 || in->ndim != 1 || !in->shape || in->shape[0] != N ||
        in->size != sizeof x || !in->data) {
        deja_ctx_fail(ctx, "preprocess: needs the input 'raw' as f32 [16]");
        return -1;
    }
    memcpy(x, in->data, sizeof x);
    for (int i = 0; i < N; i++)
        mean += x[i];
    mean /= N;
    for (int i = 0; i < N; i++) {
        x[i] -= mean;
        if (fabsf(x[i]) > peak)
            peak = fabsf(x[i]);
    }
    for (int i = 0; peak > 0.0f && i < N; i++)
        x[i] /= peak;
    deja_tensor out = {"features", DEJA_F32, 1, shape, x, sizeof x};
    if (deja_ctx_output_as(ctx, &out, DEJA_KIND_VALUES) != 0) {
        deja_ctx_fail(ctx, "preprocess: could not write the output 'features'");
        return -1;
    }
    return 0;
}

static const deja_model_plugin plugin = {
    DEJA_MODEL_ABI_VERSION, "preprocess", "1", DEJA_MODEL_THREAD_SAFE,
    pre_open,               pre_infer,    pre_close,
};

/* The plugin's one export: its static description. */
const deja_model_plugin *deja_model_entry(void)
{
    return &plugin;
}
