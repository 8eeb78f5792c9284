/*
 * examples/xgboost/xgboost_model.c -- a deja model plugin over XGBoost's C
 * API: `--model credit-xgb:PATH/credit-v1.json` loads the booster saved at
 * the ARG (JSON or UBJSON) and reports the XXH3-128 of that file as the
 * weights digest, so every model file is its own identity.
 *
 * Input "features": f32 [n, 8] (credit_data.h's order), param "threshold"
 * (default 0.5). Outputs "scores": f32 [n, 2] (probability of repaying, of
 * defaulting; deja's diff compares the arg-max per row and names a flipped
 * label) and "label": i64 [n] (1 when the default probability reaches the
 * threshold). Single-threaded prediction: the same file gives the same bits.
 */
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#include <xgboost/c_api.h>
#pragma GCC diagnostic pop
#include <xxhash.h>

#include "deja_model.h"

#define NFEAT 8
#define MAX_ROWS (1u << 20)

typedef struct credit_model {
    BoosterHandle booster;
} credit_model;

/* XXH3-128 of the file at `path`, big-endian, into `out` (16 bytes). */
static int digest_file(const char *path, uint8_t *out, char *err, size_t errcap)
{
    struct stat st;
    int rc = -1;
    void *map = MAP_FAILED;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0 || st.st_size == 0) {
        snprintf(err, errcap, "cannot read model file '%s'", path);
        goto cleanup;
    }
    map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        snprintf(err, errcap, "cannot map model file '%s'", path);
        goto cleanup;
    }
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, XXH3_128bits(map, (size_t)st.st_size));
    memcpy(out, c.digest, 16);
    rc = 0;
cleanup:
    if (map != MAP_FAILED)
        munmap(map, (size_t)st.st_size);
    if (fd >= 0)
        close(fd);
    return rc;
}

static int credit_open(const char *arg, void **instance, deja_model_info *info, char *err,
                       size_t errcap)
{
    credit_model *m = NULL;
    bst_ulong nfeat = 0;
    if (arg == NULL || arg[0] == '\0') {
        snprintf(err, errcap, "credit-xgb needs a model file: credit-xgb:PATH.json");
        return 1;
    }
    if ((m = calloc(1, sizeof *m)) == NULL) {
        snprintf(err, errcap, "out of memory");
        return 1;
    }
    if (digest_file(arg, info->digest, err, errcap) != 0)
        goto fail;
    info->digest_size = 16;
    if (XGBoosterCreate(NULL, 0, &m->booster) != 0 || XGBoosterLoadModel(m->booster, arg) != 0 ||
        XGBoosterSetParam(m->booster, "nthread", "1") != 0 ||
        XGBoosterGetNumFeature(m->booster, &nfeat) != 0) {
        snprintf(err, errcap, "xgboost: %s: %s", arg, XGBGetLastError());
        goto fail;
    }
    if (nfeat != NFEAT) {
        snprintf(err, errcap, "%s: a model of %lu features, this plugin feeds %d", arg,
                 (unsigned long)nfeat, NFEAT);
        goto fail;
    }
    *instance = m;
    return 0;
fail:
    if (m->booster != NULL)
        XGBoosterFree(m->booster);
    free(m);
    return 1;
}

static int credit_infer(void *instance, deja_ctx *ctx)
{
    credit_model *m = instance;
    DMatrixHandle d = NULL;
    float *scores = NULL;
    int64_t *labels = NULL;
    char msg[512];
    int rc = 1;
    const deja_tensor *in = deja_ctx_input(ctx, "features");
    const double threshold = deja_ctx_param_num(ctx, "threshold", 0.5);

    if (in == NULL || in->dtype != DEJA_F32 || in->ndim != 2 || in->shape[1] != NFEAT ||
        in->shape[0] == 0 || in->shape[0] > MAX_ROWS ||
        in->size != in->shape[0] * NFEAT * sizeof(float)) {
        deja_ctx_fail(ctx, "input 'features' must be f32 [n, 8] with 1 <= n <= 1048576");
        goto cleanup;
    }
    const uint64_t n = in->shape[0];
    bst_ulong len = 0;
    const float *p = NULL;
    if (XGDMatrixCreateFromMat(in->data, n, NFEAT, NAN, &d) != 0 ||
        XGBoosterPredict(m->booster, d, 0, 0, 0, &len, &p) != 0) {
        snprintf(msg, sizeof msg, "xgboost: %s", XGBGetLastError());
        deja_ctx_fail(ctx, msg);
        goto cleanup;
    }
    if (len != n) {
        deja_ctx_fail(ctx, "xgboost returned a prediction of another length");
        goto cleanup;
    }
    scores = malloc(sizeof *scores * 2 * n);
    labels = malloc(sizeof *labels * n);
    if (scores == NULL || labels == NULL) {
        deja_ctx_fail(ctx, "out of memory");
        goto cleanup;
    }
    for (uint64_t i = 0; i < n; i++) {
        scores[2 * i] = 1.0f - p[i];
        scores[2 * i + 1] = p[i];
        labels[i] = p[i] >= threshold;
    }
    const uint64_t sshape[2] = {n, 2}, lshape[1] = {n};
    const deja_tensor s = {"scores", DEJA_F32, 2, sshape, scores, sizeof *scores * 2 * n};
    const deja_tensor l = {"label", DEJA_I64, 1, lshape, labels, sizeof *labels * n};
    if (deja_ctx_output(ctx, &s) != 0 || deja_ctx_output(ctx, &l) != 0) {
        deja_ctx_fail(ctx, "cannot write the outputs");
        goto cleanup;
    }
    rc = 0;
cleanup:
    if (d != NULL)
        XGDMatrixFree(d);
    free(scores);
    free(labels);
    return rc;
}

static void credit_close(void *instance)
{
    credit_model *m = instance;
    if (m == NULL)
        return;
    XGBoosterFree(m->booster);
    free(m);
}

static const deja_model_plugin plugin = {
    DEJA_MODEL_ABI_VERSION, "credit-risk", "xgb-1", 0, credit_open, credit_infer, credit_close,
};

__attribute__((visibility("default"))) const deja_model_plugin *deja_model_entry(void);
const deja_model_plugin *deja_model_entry(void)
{
    return &plugin;
}
