/*
 * tracer/env_libs.c -- an environment with a model's libraries added.
 *
 * A plugin may report the libraries it depends on (its inference runtime
 * and their versions, deja_model_info_library). They belong to the
 * environment of every trace it records, next to the libraries deja finds
 * in the process, so that an upgrade of the runtime shows on replay as an
 * environment difference. Calls only proto/ (the canonical encoding, which
 * also gives the digest) and the public API.
 */
#include <stdlib.h>
#include <string.h>

#include "deja.h"
#include "proto/codec.h"
#include "store/store.h"

/* Bound on the libraries one model may add. */
#define MAX_MODEL_LIBS 256

static int kv_cmp(const void *a, const void *b)
{
    return strcmp(((const deja_kv *)a)->key, ((const deja_kv *)b)->key);
}

/* A copy of `base` with `libs` added (a library of the same name takes the
 * model's version), in a new environment freed with deja_env_free(), and
 * its digest. Returns 0, DEJA_EINVAL (NULL names, too many) or
 * DEJA_ENOMEM. */
int deja_env_with_libs(const deja_env *base, const deja_kv *libs, size_t n, deja_env **out,
                       deja_digest *digest)
{
    deja_env e;
    deja_kv *all = NULL;
    deja__buf b = {0};
    size_t m = 0;
    int rc = 0;

    if (out == NULL || base == NULL || (n != 0 && libs == NULL)) {
        rc = deja__error_set(DEJA_EINVAL, "env with libs: base and out are required");
        goto cleanup;
    }
    *out = NULL;
    if (n > MAX_MODEL_LIBS) {
        rc = deja__error_set(DEJA_EINVAL, "env with libs: at most %d libraries (got %zu)",
                             MAX_MODEL_LIBS, n);
        goto cleanup;
    }
    all = calloc(base->nlibs + n + 1, sizeof *all);
    if (all == NULL) {
        rc = deja__error_set(DEJA_ENOMEM, "env with libs: out of memory");
        goto cleanup;
    }
    for (size_t i = 0; i < n; i++) {
        if (libs[i].key == NULL || libs[i].key[0] == '\0' || libs[i].value == NULL) {
            rc = deja__error_set(DEJA_EINVAL, "env with libs: library %zu has no name or version",
                                 i);
            goto cleanup;
        }
        all[m++] = libs[i];
    }
    for (size_t i = 0; i < base->nlibs; i++) {
        int dup = 0;
        for (size_t k = 0; k < n && !dup; k++)
            dup = strcmp(base->libs[i].key, libs[k].key) == 0;
        if (!dup)
            all[m++] = base->libs[i];
    }
    qsort(all, m, sizeof *all, kv_cmp);
    e = *base;
    e.libs = all;
    e.nlibs = m;
    if ((rc = deja__env_encode(&e, &b)) != 0)
        goto cleanup;
    if (digest != NULL)
        *digest = deja_digest_of(b.data, b.size);
    rc = deja__env_decode(b.data, b.size, out);
cleanup:
    deja__buf_free(&b);
    free(all);
    return rc;
}
