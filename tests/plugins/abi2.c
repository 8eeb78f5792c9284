/*
 * tests/plugins/abi2.c -- a plugin of the previous model ABI (2): its table
 * says abi_version 2 and it calls nothing ABI 3 added. It must still load,
 * record and replay in a host of ABI 3. Echoes "prompt" as "echo" with one
 * RNG draw appended, declared as text.
 */
#include <stdio.h>
#include <string.h>

#include "deja_model.h"

static int a_infer(void *instance, deja_ctx *ctx)
{
    (void)instance;
    const deja_tensor *in = deja_ctx_input(ctx, "prompt");
    char buf[256];
    if (!in || in->size > 200) {
        deja_ctx_fail(ctx, "abi2: input 'prompt' (at most 200 bytes) is required");
        return 1;
    }
    const int n = snprintf(buf, sizeof buf, "%.*s %llu", (int)in->size, (const char *)in->data,
                           (unsigned long long)(deja_ctx_rng_u64(ctx, "s") % 1000));
    return deja_ctx_output_kind(ctx, "echo", DEJA_KIND_TEXT) != 0 ||
           deja_ctx_output_text(ctx, "echo", buf, (size_t)n) != 0;
}

static const deja_model_plugin plugin = {
    2, "abi2", "1", 0, NULL, a_infer, NULL,
};

__attribute__((visibility("default"))) const deja_model_plugin *deja_model_entry(void);
__attribute__((visibility("default"))) const deja_model_plugin *deja_model_entry(void)
{
    return &plugin;
}
