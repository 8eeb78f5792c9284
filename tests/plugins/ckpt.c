/*
 * tests/plugins/ckpt.c -- a model plugin that produces checkpoints, changed
 * on purpose by its ARG (comma-separated):
 *
 *   layers mode (default): checkpoints "layer0".."layer5", f32 [2,4]; the
 *   output "y" is the last layer.
 *     diverge=K  layers K and later have element [1,2] off by 1e-3
 *     skip=K     layer K is not produced (absent on replay)
 *     extra      a checkpoint "layer.extra" after the last layer
 *   gen mode ("gen"): 8 steps, each a checkpoint "logits" f32 [5] then
 *   "token" i32 (the arg-max, or its runner-up at the draw step); the
 *   output "tokens" i32 [8].
 *     flip=S     at step S, the logit after the arg-max is raised above it
 *                (logits and token differ)
 *     draw=S     at step S, the token is the runner-up (logits identical)
 *
 * Whatever the mode, a checkpoint answered DEJA_CHECKPOINT_STOP ends the
 * inference at once (no outputs); the count of checkpoints produced is a
 * seed-free output "produced" (u32) otherwise.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "deja_model.h"

typedef struct cfg {
    int gen;
    int diverge, skip, extra, flip, draw;
} cfg;

static cfg config;

static int arg_int(const char *arg, const char *key)
{
    const char *p = arg ? strstr(arg, key) : NULL;
    return p ? atoi(p + strlen(key)) : -1;
}

static int k_open(const char *arg, void **instance, deja_model_info *info, char *err,
                  size_t errcap)
{
    (void)info;
    (void)err;
    (void)errcap;
    memset(&config, 0, sizeof config);
    config.gen = arg && strstr(arg, "gen") != NULL;
    config.diverge = arg_int(arg, "diverge=");
    config.skip = arg_int(arg, "skip=");
    config.extra = arg && strstr(arg, "extra") != NULL;
    config.flip = arg_int(arg, "flip=");
    config.draw = arg_int(arg, "draw=");
    *instance = &config;
    return 0;
}

static int layers(const cfg *c, deja_ctx *ctx)
{
    float v[8];
    uint64_t shape[2] = {2, 4};
    uint32_t produced = 0;
    for (int l = 0; l < 6; l++) {
        for (int j = 0; j < 8; j++)
            v[j] = (float)(l * 10 + j) * 0.5f;
        if (c->diverge >= 0 && l >= c->diverge)
            v[6] += 1e-3f;
        if (l == c->skip)
            continue;
        char name[16] = "layer0";
        name[5] = (char)('0' + l);
        const deja_tensor t = {name, DEJA_F32, 2, shape, v, sizeof v};
        if (deja_ctx_checkpoint(ctx, &t) == DEJA_CHECKPOINT_STOP)
            return 0;
        produced++;
    }
    if (c->extra) {
        const deja_tensor t = {"layer.extra", DEJA_F32, 2, shape, v, sizeof v};
        if (deja_ctx_checkpoint(ctx, &t) == DEJA_CHECKPOINT_STOP)
            return 0;
        produced++;
    }
    const deja_tensor y = {"y", DEJA_F32, 2, shape, v, sizeof v};
    uint64_t one[1] = {1};
    const deja_tensor p = {"produced", DEJA_U32, 1, one, &produced, sizeof produced};
    return deja_ctx_output(ctx, &y) != 0 || deja_ctx_output(ctx, &p) != 0;
}

static int gen(const cfg *c, deja_ctx *ctx)
{
    int32_t tokens[8];
    for (int s = 0; s < 8; s++) {
        float logits[5];
        for (int j = 0; j < 5; j++)
            logits[j] = (float)((s * 7 + j * 3) % 5) * 0.25f; /* arg-max: the 4 */
        int32_t best = 0, second = -1;
        for (int j = 1; j < 5; j++)
            if (logits[j] > logits[best])
                best = j;
        if (s == c->flip) {
            logits[(best + 1) % 5] = 2.0f;
            best = (best + 1) % 5;
        }
        for (int j = 0; j < 5; j++)
            if (j != best && (second < 0 || logits[j] > logits[second]))
                second = j;
        tokens[s] = s == c->draw ? second : best;
        uint64_t shape[1] = {5};
        const deja_tensor lt = {"logits", DEJA_F32, 1, shape, logits, sizeof logits};
        const deja_tensor tt = {"token", DEJA_I32, 0, NULL, &tokens[s], sizeof tokens[s]};
        if (deja_ctx_checkpoint(ctx, &lt) == DEJA_CHECKPOINT_STOP ||
            deja_ctx_checkpoint(ctx, &tt) == DEJA_CHECKPOINT_STOP)
            return 0;
    }
    uint64_t shape[1] = {8};
    const deja_tensor out = {"tokens", DEJA_I32, 1, shape, tokens, sizeof tokens};
    return deja_ctx_output(ctx, &out) != 0;
}

static int k_infer(void *instance, deja_ctx *ctx)
{
    const cfg *c = instance;
    return c->gen ? gen(c, ctx) : layers(c, ctx);
}

static void k_close(void *instance)
{
    (void)instance;
}

static const deja_model_plugin plugin = {
    DEJA_MODEL_ABI_VERSION, "ckpt", "1", 0, k_open, k_infer, k_close,
};

__attribute__((visibility("default"))) const deja_model_plugin *deja_model_entry(void);
__attribute__((visibility("default"))) const deja_model_plugin *deja_model_entry(void)
{
    return &plugin;
}
