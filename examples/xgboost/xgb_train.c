/*
 * examples/xgboost/xgb_train.c -- train the XGBoost example's model files
 * through XGBoost's C API, at build time, on data generated
 * deterministically (credit_data.h), single-threaded so that every build
 * writes the same models:
 *
 *   credit-v1.json  30 rounds of depth-4 trees on the applicants
 *   credit-v2.ubj   v1 saved again in XGBoost's binary UBJSON format: another
 *                   file (another digest), the very same trees
 *   credit-v3.json  retrained after a data-pipeline change: income arrives in
 *                   dollars instead of thousands, while requests still send
 *                   thousands -- a real behaviour change (labels flip)
 *   credit-v4.json  v3 with 10 more rounds
 *
 * and credit-requests.jsonl: 200 held-out applicants as `deja run` requests.
 *
 *   xgb-train OUT_DIR
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#include <xgboost/c_api.h>
#pragma GCC diagnostic pop

#include "credit_data.h"

#define NTRAIN 4000
#define NREQUESTS 200

#define XGB(call)                                                                                \
    do {                                                                                         \
        if ((call) != 0) {                                                                       \
            fprintf(stderr, "xgb-train: %s: %s\n", #call, XGBGetLastError());                    \
            goto cleanup;                                                                        \
        }                                                                                        \
    } while (0)

/* Train `rounds` rounds on `x`/`y` and save to each of the `n` paths. */
static int train(const float *x, const float *y, int rounds, const char *const *paths, int n)
{
    DMatrixHandle d = NULL;
    BoosterHandle b = NULL;
    int rc = -1;
    static const char *const params[][2] = {
        {"objective", "binary:logistic"}, {"max_depth", "4"}, {"eta", "0.2"},
        {"nthread", "1"},                 {"seed", "7"},      {"tree_method", "exact"},
        {"verbosity", "0"},
    };
    XGB(XGDMatrixCreateFromMat(x, NTRAIN, CREDIT_NFEAT, NAN, &d));
    XGB(XGDMatrixSetFloatInfo(d, "label", y, NTRAIN));
    XGB(XGBoosterCreate(&d, 1, &b));
    for (size_t i = 0; i < sizeof params / sizeof params[0]; i++)
        XGB(XGBoosterSetParam(b, params[i][0], params[i][1]));
    for (int it = 0; it < rounds; it++)
        XGB(XGBoosterUpdateOneIter(b, it, d));
    for (int i = 0; i < n; i++)
        XGB(XGBoosterSaveModel(b, paths[i]));
    rc = 0;
cleanup:
    if (b != NULL)
        XGBoosterFree(b);
    if (d != NULL)
        XGDMatrixFree(d);
    return rc;
}

int main(int argc, char **argv)
{
    float *x = NULL, *y = NULL;
    char p[4][4096];
    FILE *req = NULL;
    int rc = 1;
    uint64_t seed = 20261201;

    if (argc != 2) {
        fprintf(stderr, "usage: xgb-train OUT_DIR\n");
        return 2;
    }
    x = malloc(sizeof *x * NTRAIN * CREDIT_NFEAT);
    y = malloc(sizeof *y * NTRAIN);
    if (x == NULL || y == NULL)
        goto cleanup;
    for (int i = 0; i < NTRAIN; i++)
        y[i] = (float)credit_row(&seed, x + (size_t)i * CREDIT_NFEAT);
    const char *names[4] = {"credit-v1.json", "credit-v2.ubj", "credit-v3.json", "credit-v4.json"};
    for (int i = 0; i < 4; i++)
        snprintf(p[i], sizeof p[i], "%s/%s", argv[1], names[i]);
    const char *v12[2] = {p[0], p[1]};
    if (train(x, y, 30, v12, 2) != 0)
        goto cleanup;
    /* The pipeline change: income (feature 1) in dollars. */
    for (int i = 0; i < NTRAIN; i++)
        x[(size_t)i * CREDIT_NFEAT + 1] *= 1000.0f;
    const char *v3[1] = {p[2]}, *v4[1] = {p[3]};
    if (train(x, y, 30, v3, 1) != 0 || train(x, y, 40, v4, 1) != 0)
        goto cleanup;

    char rpath[4200];
    snprintf(rpath, sizeof rpath, "%s/credit-requests.jsonl", argv[1]);
    if ((req = fopen(rpath, "w")) == NULL) {
        perror(rpath);
        goto cleanup;
    }
    for (int i = 0; i < NREQUESTS; i++) {
        float row[CREDIT_NFEAT];
        credit_row(&seed, row);
        fprintf(req, "{\"inputs\": {\"features\": [[");
        for (int k = 0; k < CREDIT_NFEAT; k++)
            fprintf(req, "%s%.9g", k ? ", " : "", row[k]);
        fprintf(req, "]]}, \"params\": {\"threshold\": 0.5}, \"tags\": {\"applicant\": \"a%03d\"}}\n",
                i);
    }
    if (fclose(req) != 0) {
        req = NULL;
        perror(rpath);
        goto cleanup;
    }
    req = NULL;
    rc = 0;
cleanup:
    if (req != NULL)
        fclose(req);
    free(x);
    free(y);
    return rc;
}
