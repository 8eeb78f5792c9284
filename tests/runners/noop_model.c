/*
 * tests/runners/noop_model.c -- a model that does nothing but draw two
 * values from the RNG stream "noise" and write a 1-byte output: the
 * yardstick of the exec path's cost (bench/runner/exec_overhead.c). Built
 * twice from this one source: as a C plugin (build/lib/test-noop.so) and,
 * with DEJA_NOOP_RUNNER, as an exec runner (build/bin/test-noop-runner),
 * the same plugin table served over the runner protocol. With ARG
 * "batched" it asks for both draws at once (deja_ctx_rng_fill: one call
 * to the host instead of two).
 */
#include <stdint.h>
#include <string.h>

#include "deja_model.h"

static int batched_flag;

static int noop_open(const char *arg, void **instance, deja_model_info *info, char *err,
                     size_t errcap)
{
    (void)info;
    (void)err;
    (void)errcap;
    *instance = (arg != NULL && strcmp(arg, "batched") == 0) ? &batched_flag : NULL;
    return 0;
}

static int noop_infer(void *instance, deja_ctx *ctx)
{
    static const uint64_t shape[1] = {1};
    uint64_t d[2];
    if (instance != NULL) {
        deja_ctx_rng_fill(ctx, "noise", d, 2);
    } else {
        d[0] = deja_ctx_rng_u64(ctx, "noise");
        d[1] = deja_ctx_rng_u64(ctx, "noise");
    }
    const uint8_t y = (uint8_t)(d[0] ^ d[1]);
    const deja_tensor t = {"y", DEJA_U8, 1, shape, &y, 1};
    return deja_ctx_output(ctx, &t);
}

static const deja_model_plugin plugin = {
    DEJA_MODEL_ABI_VERSION, "noop", "1", 0, noop_open, noop_infer, NULL,
};

#ifdef DEJA_NOOP_RUNNER
int main(int argc, char **argv)
{
    return deja_runner_main(&plugin, argc, argv);
}
#else
__attribute__((visibility("default"))) const deja_model_plugin *deja_model_entry(void);
const deja_model_plugin *deja_model_entry(void)
{
    return &plugin;
}
#endif
