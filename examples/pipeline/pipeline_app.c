/*
 * pipeline_app.c -- a program that serves each request through three
 * models, preprocess -> classify -> postprocess, and records the request
 * as a pipeline run: one root trace ("pipeline": the raw readings in, the
 * answer out) whose steps are the three models' traces (deja_span_parent).
 *
 *   pipeline STORE PREPROCESS CLASSIFY POSTPROCESS [RUNS]
 *
 * The three models are PLUGIN[:ARG] specs (preprocess, classifier-v1,
 * postprocess from build/lib); each step records how its model was loaded
 * (deja_span_model_config), so `deja replay ROOT` can replay a step on its
 * recorded model when no other one is given. RUNS (default 8) requests of
 * 16 readings each are drawn from a fixed seed. Prints the id of each root,
 * one per line; exits 2 with one line on stderr on trouble.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deja.h"

#define NRAW 16
#define MAX_OUT 4096

static uint64_t xorshift64(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

/* What one step produced, copied out of its context for the next step. */
typedef struct produced {
    char name[64];
    deja_dtype dtype;
    uint64_t shape[DEJA_MAX_DIMS];
    size_t ndim;
    unsigned char data[MAX_OUT];
    size_t size;
} produced;

/* Run `model` on the one input `in` as a step of `parent`, recording it,
 * and copy its first output into `out`. Returns 0 or -1 after a message. */
static int step(deja_tracer *tracer, deja_model *model, const deja_id *parent,
                const deja_tensor *in, produced *out)
{
    deja_span *span = NULL;
    deja_ctx *ctx = NULL;
    const deja_tensor *outs;
    const uint8_t *digest;
    size_t n = 0, dsize = 0;
    int rc, ret = -1;
    rc = deja_span_begin(&span, tracer, deja_model_name(model), deja_model_version(model));
    if (rc == 0)
        rc = deja_span_parent(span, parent);
    digest = rc == 0 ? deja_model_digest(model, &dsize) : NULL;
    if (rc == 0 && digest != NULL && dsize > 0)
        rc = deja_span_model_digest(span, digest, dsize);
    if (rc == 0)
        rc = deja_span_model_config(span, deja_model_plugin_name(model), deja_model_config(model));
    if (rc == 0)
        rc = deja_span_add(span, DEJA_INPUT, in);
    if (rc == 0)
        rc = deja_ctx_record(&ctx, span, 0);
    if (rc != 0) {
        fprintf(stderr, "deja: pipeline: %s\n", deja_error_last());
        goto cleanup;
    }
    if (deja_model_infer(model, ctx) != 0) {
        fprintf(stderr, "deja: pipeline: %s failed: %s\n", deja_model_name(model),
                deja_ctx_error(ctx) ? deja_ctx_error(ctx) : deja_error_last());
        goto cleanup;
    }
    outs = deja_ctx_outputs(ctx, &n);
    if (outs == NULL || n == 0 || outs[0].size > MAX_OUT || outs[0].ndim > DEJA_MAX_DIMS) {
        fprintf(stderr, "deja: pipeline: %s gave no usable output\n", deja_model_name(model));
        goto cleanup;
    }
    snprintf(out->name, sizeof out->name, "%s", outs[0].name);
    out->dtype = outs[0].dtype;
    out->ndim = outs[0].ndim;
    memcpy(out->shape, outs[0].shape, outs[0].ndim * sizeof *out->shape);
    memcpy(out->data, outs[0].data, outs[0].size);
    out->size = outs[0].size;
    deja_ctx_free(ctx);
    ctx = NULL;
    rc = deja_span_end(span, DEJA_STATUS_OK, NULL);
    span = NULL;
    if (rc != 0) {
        fprintf(stderr, "deja: pipeline: %s\n", deja_error_last());
        goto cleanup;
    }
    ret = 0;

cleanup:
    deja_ctx_free(ctx);
    deja_span_abort(span);
    return ret;
}

static deja_tensor view_of(const produced *p)
{
    deja_tensor t = {p->name, p->dtype, p->ndim, p->shape, p->data, p->size};
    return t;
}

int main(int argc, char **argv)
{
    deja_tracer *tracer = NULL;
    deja_model *models[3] = {NULL, NULL, NULL};
    long runs = argc > 5 ? strtol(argv[5], NULL, 10) : 8;
    uint64_t seed = 0x9199e11e5eedull;
    int ret = 2;
    if (argc < 5 || argc > 6) {
        fprintf(stderr, "deja: pipeline: usage: pipeline STORE PREPROCESS CLASSIFY POSTPROCESS "
                        "[RUNS]\n");
        return 2;
    }
    if (runs < 0 || runs > 100000) {
        fprintf(stderr, "deja: pipeline: RUNS must be 0..100000\n");
        return 2;
    }
    for (int m = 0; m < 3; m++) {
        if (deja_model_load(&models[m], argv[2 + m]) != 0) {
            fprintf(stderr, "deja: pipeline: %s\n", deja_error_last());
            goto cleanup;
        }
    }
    if (deja_tracer_open(&tracer, argv[1], NULL) != 0) {
        fprintf(stderr, "deja: pipeline: %s\n", deja_error_last());
        goto cleanup;
    }
    for (long r = 0; r < runs; r++) {
        deja_span *root = NULL;
        deja_id root_id;
        char id[DEJA_ID_STRLEN + 1];
        float raw[NRAW];
        uint64_t shape[1] = {NRAW};
        produced a, b, c;
        deja_tensor in = {"raw", DEJA_F32, 1, shape, raw, sizeof raw}, t;
        for (int i = 0; i < NRAW; i++)
            raw[i] = (float)(xorshift64(&seed) % 1000) / 100.0f;
        if (deja_span_begin(&root, tracer, "pipeline", "1") != 0 ||
            deja_span_add(root, DEJA_INPUT, &in) != 0) {
            fprintf(stderr, "deja: pipeline: %s\n", deja_error_last());
            deja_span_abort(root);
            goto cleanup;
        }
        root_id = *deja_span_id(root);
        if (step(tracer, models[0], &root_id, &in, &a) != 0 ||
            (t = view_of(&a), step(tracer, models[1], &root_id, &t, &b)) != 0 ||
            (t = view_of(&b), step(tracer, models[2], &root_id, &t, &c)) != 0) {
            deja_span_abort(root);
            goto cleanup;
        }
        t = view_of(&c);
        if (deja_span_add(root, DEJA_OUTPUT, &t) != 0 ||
            deja_span_end(root, DEJA_STATUS_OK, NULL) != 0) {
            fprintf(stderr, "deja: pipeline: %s\n", deja_error_last());
            goto cleanup;
        }
        deja_id_format(&root_id, id);
        printf("%s\n", id);
    }
    if (deja_tracer_flush(tracer) != 0) {
        fprintf(stderr, "deja: pipeline: %s\n", deja_error_last());
        goto cleanup;
    }
    ret = 0;

cleanup:
    deja_tracer_close(tracer);
    for (int m = 0; m < 3; m++)
        deja_model_free(models[m]);
    return ret;
}
