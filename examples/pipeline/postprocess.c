/*
 * postprocess.c -- the last step of the example pipeline, as a deja model
 * plugin (build/lib/postprocess.so): turns the classifier's 10 logits into
 * the answer a user sees, "class K (p=0.NN)", through a softmax.
 *
 * infer: input "logits", f32 [10]; output "label", utf8. No randomness, no
 * clock.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "deja_model.h"

#define NCLASS 10

const deja_model_plugin *deja_model_entry(void) __attribute__((visibility("default")));

static int post_open(const char *arg, void **instance, deja_model_info *info, char *err,
                     size_t errcap)
{
    (void)arg, (void)info, (void)err, (void)errcap;
    *instance = NULL;
    return 0;
}

static void post_close(void *instance)
{
    (void)instance;
}

static int post_infer(void *instance, deja_ctx *ctx)
{
    const deja_tensor *in = deja_ctx_input(ctx, "logits");
    float z[NCLASS];
    double sum = 0.0;
    int best = 0;
    char text[64];
    uint64_t shape[1];
    (void)instance;
    if (!in || in->dtype != DEJA_F32 || in->ndim != 1 || !in->shape ||
        in->shape[0] != NCLASS || in->size != sizeof z || !in->data) {
        deja_ctx_fail(ctx, "postprocess: needs the input 'logits' as f32 [10]");
        return -1;
    }
    memcpy(z, in->data, sizeof z);
    for (int i = 1; i < NCLASS; i++) {
        if (z[i] > z[best])
            best = i;
    }
    for (int i = 0; i < NCLASS; i++)
        sum += exp((double)z[i] - (double)z[best]);
    snprintf(text, sizeof text, "class %d (p=%.2f)", best, 1.0 / sum);
    shape[0] = strlen(text);
    deja_tensor out = {"label", DEJA_UTF8, 1, shape, text, strlen(text)};
    if (deja_ctx_output_as(ctx, &out, DEJA_KIND_TEXT) != 0) {
        deja_ctx_fail(ctx, "postprocess: could not write the output 'label'");
        return -1;
    }
    return 0;
}

static const deja_model_plugin plugin = {
    DEJA_MODEL_ABI_VERSION, "postprocess", "1", DEJA_MODEL_THREAD_SAFE,
    post_open,              post_infer,    post_close,
};

/* The plugin's one export: its static description. */
const deja_model_plugin *deja_model_entry(void)
{
    return &plugin;
}
