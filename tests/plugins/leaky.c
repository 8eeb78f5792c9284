/*
 * tests/plugins/leaky.c -- a model plugin that breaks the determinism
 * contract: besides its ctx it reads rand(), the monotonic clock and a
 * per-instance call counter, none of which deja records. Its output
 * "value" therefore changes from one run to the next, while "stable" (the
 * input echoed) does not. Not thread-safe: one instance per worker.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "deja_model.h"

typedef struct leaky {
    uint64_t calls;
} leaky;

static int l_open(const char *arg, void **instance, deja_model_info *info, char *err, size_t errcap)
{
    (void)arg;
    (void)info;
    (void)err;
    (void)errcap;
    *instance = calloc(1, sizeof(leaky));
    return *instance == NULL;
}

static int l_infer(void *instance, deja_ctx *ctx)
{
    leaky *l = instance;
    const deja_tensor *in = deja_ctx_input(ctx, "prompt");
    struct timespec ts;
    uint64_t value, shape[1] = {1};
    clock_gettime(CLOCK_MONOTONIC, &ts);
    l->calls++;
    value = ((uint64_t)rand() << 32) ^ (uint64_t)ts.tv_nsec ^ (l->calls * 0x9e3779b97f4a7c15ull);
    value ^= deja_ctx_rng_u64(ctx, "recorded"); /* a recorded draw, replayed faithfully */
    {
        deja_tensor t = {"value", DEJA_U64, 1, shape, &value, sizeof(value)};
        if (deja_ctx_output(ctx, &t) != 0) {
            return 1;
        }
    }
    return deja_ctx_output_text(ctx, "stable", in ? (const char *)in->data : "",
                                in ? in->size : 0) != 0;
}

static void l_close(void *instance)
{
    free(instance);
}

static const deja_model_plugin plugin = {
    DEJA_MODEL_ABI_VERSION, "leaky", "1", 0, l_open, l_infer, l_close,
};

__attribute__((visibility("default"))) const deja_model_plugin *deja_model_entry(void);
__attribute__((visibility("default"))) const deja_model_plugin *deja_model_entry(void)
{
    return &plugin;
}
