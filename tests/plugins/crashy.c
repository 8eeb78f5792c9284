/*
 * tests/plugins/crashy.c -- a model plugin that crashes. Without ARG it
 * echoes its "prompt" input as "echo"; with ARG "crash" it dereferences a
 * null pointer (SIGSEGV) on the prompt "boom" and echoes the others. Used to
 * check that `replay --isolate` turns a crash into that trace's error.
 */
#include <signal.h>
#include <string.h>

#include "deja_model.h"

static int crashing;

static int c_open(const char *arg, void **instance, deja_model_info *info, char *err, size_t errcap)
{
    (void)info;
    (void)err;
    (void)errcap;
    *instance = &crashing;
    crashing = arg && strcmp(arg, "crash") == 0;
    return 0;
}

static int c_infer(void *instance, deja_ctx *ctx)
{
    const deja_tensor *in = deja_ctx_input(ctx, "prompt");
    const int *armed = instance;
    if (!in) {
        deja_ctx_fail(ctx, "crashy: input 'prompt' is required");
        return 1;
    }
    if (*armed && in->size == 4 && memcmp(in->data, "boom", 4) == 0) {
        raise(SIGSEGV);
    }
    return deja_ctx_output_text(ctx, "echo", in->data, in->size) != 0;
}

static void c_close(void *instance)
{
    (void)instance;
}

static const deja_model_plugin plugin = {
    DEJA_MODEL_ABI_VERSION, "crashy", "1", 0, c_open, c_infer, c_close,
};

__attribute__((visibility("default"))) const deja_model_plugin *deja_model_entry(void);
__attribute__((visibility("default"))) const deja_model_plugin *deja_model_entry(void)
{
    return &plugin;
}
