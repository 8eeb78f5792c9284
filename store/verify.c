/*
 * store/verify.c -- deja_store_verify: every record decodes, every blob,
 * chunk and environment matches its digest, every reference (trace -> blob,
 * blob -> chunk, trace -> environment) and index entry resolves, and the
 * references a trace value carries for gc agree with its record.
 */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_internal.h"

typedef struct verifier {
    deja_store *store;
    MDB_txn *txn;
    deja_problem_cb cb;
    void *payload;
    int problems;
    uint64_t done, total; /* records checked, of all (progress) */
} verifier;

/* Pass one problem line to the callback and count it. */
static void problem(verifier *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(verifier *v, const char *fmt, ...)
{
    char line[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    v->problems++;
    if (v->cb != NULL)
        v->cb(line, v->payload);
}

/* Whether `key` exists in `dbi`: 1, 0, or a negative code. */
static int exists(verifier *v, MDB_dbi dbi, const void *key, size_t ksize)
{
    MDB_val k = {ksize, (void *)key}, val;
    int rc = mdb_get(v->txn, dbi, &k, &val);

    if (rc == 0)
        return 1;
    if (rc == MDB_NOTFOUND)
        return 0;
    return deja__mdb_error(rc, "verifying");
}

/* Printable form of an index key prefix (NULs shown as '/'). */
static void printable(char *out, size_t cap, const uint8_t *p, size_t n)
{
    size_t i;

    for (i = 0; i < n && i + 1 < cap; i++)
        out[i] = p[i] == '\0' ? '/' : (p[i] < 0x20 || p[i] == 0x7f ? '?' : (char)p[i]);
    out[i] = '\0';
}

/* What check_index_entry needs: the verifier, the trace's id printed. */
typedef struct ix_check {
    verifier *v;
    const deja_id *id;
    const char *text;
} ix_check;

/* deja__ix_each callback: report an index entry of the trace that is
 * missing. Returns 0 (or a negative code when the check itself fails). */
static int check_index_entry(deja__ix_kind kind, const uint8_t *key, size_t n, const char *what,
                             void *payload)
{
    ix_check *c = payload;
    int rc = deja__ix_has(c->v->store, c->v->txn, kind, key, n, c->id);

    if (rc < 0)
        return rc;
    if (rc == 0) {
        if (kind == DEJA__IX_TAG)
            problem(c->v, "trace %s: tag index entry '%s' is missing", c->text,
                    (const char *)key);
        else
            problem(c->v, "trace %s: %s index entry is missing", c->text, what);
    }
    return 0;
}

/* The payload size of the blob stored under `d` as its record says (the
 * raw size of a plain record, the total of a chunked one): 1 with `*size`
 * set, 0 when the record is too malformed to say (its own walk reports
 * it), negative on an LMDB error. */
static int blob_size(verifier *v, const deja_digest *d, size_t *size)
{
    MDB_val k = {16, (void *)d->bytes}, val;
    const uint8_t *p;
    int rc = mdb_get(v->txn, v->store->blobs, &k, &val);

    if (rc != 0)
        return rc == MDB_NOTFOUND ? 0 : deja__mdb_error(rc, "verifying");
    p = val.mv_data;
    if (val.mv_size > 0 && p[0] == DEJA__CHUNKED_MAGIC) {
        deja__chunked it;
        if (deja__chunked_parse(val.mv_data, val.mv_size, d, &it) != 0)
            return 0;
        *size = it.total;
        return 1;
    }
    if (val.mv_size > 0 && p[0] == DEJA__DELTA_MAGIC) {
        deja__delta x;
        if (deja__delta_parse(val.mv_data, val.mv_size, d, &x) != 0)
            return 0;
        *size = x.total;
        return 1;
    }
    if (val.mv_size < DEJA__RECORD_HEADER || p[0] != DEJA__RECORD_MAGIC)
        return 0;
    *size = (size_t)p[6] | (size_t)p[7] << 8 | (size_t)p[8] << 16 | (size_t)p[9] << 24;
    return 1;
}

/* Check one trace's references: blobs, environment, index entries. */
static int check_trace_refs(verifier *v, const deja_trace *t, const char *text)
{
    char hex[33];
    int rc;

    for (int side = 0; side < 2; side++) {
        size_t count = side == DEJA_INPUT ? t->ninputs : t->noutputs;

        for (size_t i = 0; i < count; i++) {
            const deja_digest *d = deja__trace_blob(t, (deja_side)side, i);

            if (d == NULL)
                continue;
            rc = exists(v, v->store->blobs, d->bytes, 16);
            if (rc < 0)
                return rc;
            deja_digest_format(d, hex);
            if (rc == 0) {
                problem(v, "trace %s: blob %s: missing", text, hex);
                continue;
            }
            {
                const deja_tensor *tt = side == DEJA_INPUT ? &t->inputs[i] : &t->outputs[i];
                size_t bsize = 0;
                rc = blob_size(v, d, &bsize);
                if (rc < 0)
                    return rc;
                if (rc == 1 && bsize != tt->size)
                    problem(v, "trace %s: %s '%s' claims %zu bytes, its blob %s holds %zu", text,
                            side == DEJA_INPUT ? "input" : "output", tt->name, tt->size, hex,
                            bsize);
            }
        }
    }
    if (t->has_env) {
        rc = exists(v, v->store->envs, t->env.bytes, 16);
        if (rc < 0)
            return rc;
        deja_digest_format(&t->env, hex);
        if (rc == 0)
            problem(v, "trace %s: environment %s: missing", text, hex);
    }
    {
        ix_check c = {v, &t->id, text};
        return deja__ix_each(v->store, t, check_index_entry, &c);
    }
}

/* Walk `dbi` and call `check` on each key and value. */
static int walk(verifier *v, MDB_dbi dbi,
                int (*check)(verifier *v, const MDB_val *k, const MDB_val *val))
{
    MDB_cursor *cur = NULL;
    MDB_val k, val;
    int rc = mdb_cursor_open(v->txn, dbi, &cur);

    if (rc != 0)
        return deja__mdb_error(rc, "verifying");
    for (rc = mdb_cursor_get(cur, &k, &val, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &val, MDB_NEXT)) {
        int crc = check(v, &k, &val);

        deja__progress(++v->done, v->total);
        if (crc < 0) {
            mdb_cursor_close(cur);
            return crc;
        }
    }
    mdb_cursor_close(cur);
    if (rc != MDB_NOTFOUND)
        return deja__mdb_error(rc, "verifying");
    return 0;
}

/* Check one trace record: it decodes, and its references resolve. */
static int check_trace(verifier *v, const MDB_val *k, const MDB_val *val)
{
    deja_trace *t = NULL;
    char text[DEJA_ID_STRLEN + 1];
    deja_id id;
    int rc;

    if (k->mv_size != 16) {
        problem(v, "traces: a key of %zu bytes is not an id", k->mv_size);
        return 0;
    }
    memcpy(id.bytes, k->mv_data, 16);
    deja_id_format(&id, text);
    rc = deja__trace_read_txn(v->store, v->txn, &id, &t);
    if (rc == DEJA_ECORRUPT || rc == DEJA_ENOMEM || rc == DEJA_EINVAL) {
        problem(v, "%s", deja_error_last());
        return 0;
    }
    if (rc != 0)
        return rc;
    rc = check_trace_refs(v, t, text);
    if (rc == 0) {
        const char *why = NULL;

        rc = deja__refs_check(t, val, &why);
        if (rc == 0)
            problem(v, "trace %s: %s", text, why);
        rc = rc < 0 ? rc : 0;
    }
    deja_trace_free(t);
    return rc;
}

/* Check a blob or environment record: decodes, and its digest is its key. */
static int check_content(verifier *v, const MDB_val *k, const MDB_val *val, int is_env)
{
    const char *kind = is_env ? "environment" : "blob";
    char hex[33], what[64];
    uint8_t *raw = NULL;
    size_t n = 0;
    deja_digest key, got;
    deja_env *env = NULL;
    int rc;

    if (k->mv_size != 16) {
        problem(v, "%ss: a key of %zu bytes is not a digest", kind, k->mv_size);
        return 0;
    }
    memcpy(key.bytes, k->mv_data, 16);
    deja_digest_format(&key, hex);
    snprintf(what, sizeof what, "%s %s", kind, hex);
    rc = deja__record_decode(v->store, v->txn, val->mv_data, val->mv_size, what, &raw, &n);
    if (rc != 0) {
        problem(v, "%s", deja_error_last());
        return 0;
    }
    got = deja_digest_of(raw, n);
    if (memcmp(got.bytes, key.bytes, 16) != 0) {
        problem(v, "%s: content does not match its digest", what);
    } else if (is_env) {
        rc = deja__env_decode(raw, n, &env);
        if (rc != 0)
            problem(v, "%s: %s", what, deja_error_last());
        deja_env_free(env);
    }
    free(raw);
    return 0;
}

/* Check a chunked blob: its chunk list is well formed, every chunk it
 * names exists (each missing one reported), and the chunks reassemble into
 * content matching each chunk's digest and the blob's. */
static int check_chunked(verifier *v, const deja_digest *key, const MDB_val *val)
{
    deja__chunked it;
    const uint8_t *cd;
    char hex[33], chex[33];
    deja_digest c;
    void *data = NULL;
    size_t cs, size = 0;
    int rc, missing = 0;

    if (deja__chunked_parse(val->mv_data, val->mv_size, key, &it) != 0) {
        problem(v, "%s", deja_error_last());
        return 0;
    }
    while (deja__chunked_next(&it, &cs, &cd)) {
        rc = v->store->has_chunks ? exists(v, v->store->chunks, cd, 16) : 0;
        if (rc < 0)
            return rc;
        if (rc == 0) {
            memcpy(c.bytes, cd, 16);
            deja_digest_format(key, hex);
            deja_digest_format(&c, chex);
            problem(v, "blob %s: chunk %s: missing", hex, chex);
            missing++;
        }
    }
    if (missing > 0)
        return 0;
    rc = deja__chunked_read(v->store, v->txn, key, val->mv_data, val->mv_size, 0, &data, &size);
    if (rc == DEJA_ECORRUPT || rc == DEJA_ENOMEM || rc == DEJA_ENOTFOUND)
        problem(v, "%s", deja_error_last());
    else if (rc != 0)
        return rc;
    free(data);
    return 0;
}

/* Check a delta blob: it reconstructs, with its parent, into content
 * matching its digest (store/delta.c). */
static int check_delta(verifier *v, const deja_digest *key, const MDB_val *val)
{
    void *data = NULL;
    size_t size = 0;
    const int rc = deja__delta_read(v->store, v->txn, key, val->mv_data, val->mv_size, &data, &size);

    free(data);
    if (rc == DEJA_ECORRUPT || rc == DEJA_ENOMEM || rc == DEJA_ENOTFOUND)
        problem(v, "%s", deja_error_last());
    else if (rc != 0)
        return rc;
    return 0;
}

/* Check one blob record: a whole record, a chunk list or a delta. */
static int check_blob(verifier *v, const MDB_val *k, const MDB_val *val)
{
    deja_digest key;

    if (k->mv_size == 16 && val->mv_size > 0 &&
        ((const uint8_t *)val->mv_data)[0] == DEJA__DELTA_MAGIC) {
        memcpy(key.bytes, k->mv_data, 16);
        return check_delta(v, &key, val);
    }

    if (k->mv_size == 16 && val->mv_size > 0 &&
        ((const uint8_t *)val->mv_data)[0] == DEJA__CHUNKED_MAGIC) {
        memcpy(key.bytes, k->mv_data, 16);
        return check_chunked(v, &key, val);
    }
    return check_content(v, k, val, 0);
}

/* Check one chunk record: it decodes and matches its digest (whether or
 * not a blob still names it). */
static int check_chunk(verifier *v, const MDB_val *k, const MDB_val *val)
{
    const uint8_t *p = val->mv_data;
    uint8_t *buf = NULL;
    uint32_t size;
    deja_digest d;
    char hex[33];
    int rc;

    if (k->mv_size != 16) {
        problem(v, "chunks: a key of %zu bytes is not a digest", k->mv_size);
        return 0;
    }
    memcpy(d.bytes, k->mv_data, 16);
    deja_digest_format(&d, hex);
    if (val->mv_size < DEJA__RECORD_HEADER) {
        problem(v, "chunk %s: record of %zu bytes is truncated", hex, val->mv_size);
        return 0;
    }
    size = (uint32_t)p[6] | (uint32_t)p[7] << 8 | (uint32_t)p[8] << 16 | (uint32_t)p[9] << 24;
    if (size > DEJA__MAX_RECORD) {
        problem(v, "chunk %s: record claims %u bytes, beyond the bound", hex, size);
        return 0;
    }
    buf = malloc(size > 0 ? size : 1);
    if (buf == NULL)
        return deja__error_set(DEJA_ENOMEM, "verifying chunk %s: out of memory", hex);
    rc = deja__chunk_read(v->store, v->txn, k->mv_data, size, NULL, buf);
    free(buf);
    if (rc == DEJA_ECORRUPT || rc == DEJA_ENOMEM || rc == DEJA_ENOTFOUND)
        problem(v, "%s", deja_error_last());
    else if (rc != 0)
        return rc;
    return 0;
}

/* Check one environment record. */
static int check_env(verifier *v, const MDB_val *k, const MDB_val *val)
{
    return check_content(v, k, val, 1);
}

/* Read the trace an index entry (key `p`, `n` bytes, id `idb`) points to.
 * Returns 1 with `*t` set, 0 when a problem was reported (or the record is
 * corrupt, reported by the trace pass), negative on a store error. */
static int index_target(verifier *v, const char *index, const uint8_t *p, size_t n,
                        const uint8_t *idb, deja_trace **t)
{
    char text[DEJA_ID_STRLEN + 1], shown[600];
    deja_id id;
    int rc;

    memcpy(id.bytes, idb, 16);
    deja_id_format(&id, text);
    rc = deja__trace_read_txn(v->store, v->txn, &id, t);
    if (rc == DEJA_ENOTFOUND) {
        printable(shown, sizeof shown, p, n);
        problem(v, "%s entry '%s' -> trace %s: no such trace", index, shown, text);
        return 0;
    }
    if (rc == DEJA_ECORRUPT || rc == DEJA_ENOMEM || rc == DEJA_EINVAL)
        return 0;
    return rc < 0 ? rc : 1;
}

/* deja__ix_scan callback: check one model index entry (key `p`, `n`
 * bytes, id `id`): well formed, and its trace has that model. */
static int check_ix_model(const uint8_t *p, size_t n, const uint8_t *id, void *payload)
{
    verifier *v = payload;
    const uint8_t *z1, *z2 = NULL;
    deja_trace *t = NULL;
    char shown[600];
    int rc;

    deja__progress(++v->done, v->total);
    z1 = n >= 2 ? memchr(p, '\0', n) : NULL;
    if (z1 != NULL)
        z2 = memchr(z1 + 1, '\0', (size_t)(p + n - (z1 + 1)));
    if (id == NULL || z2 == NULL || z2 + 1 != p + n) {
        printable(shown, sizeof shown, p, n);
        problem(v, "ix_model entry '%s' is malformed", shown);
        return 0;
    }
    rc = index_target(v, "ix_model", p, n, id, &t);
    if (rc <= 0)
        return rc;
    if (strcmp((const char *)p, t->model_name ? t->model_name : "") != 0 ||
        strcmp((const char *)z1 + 1, t->model_version ? t->model_version : "") != 0) {
        char text[DEJA_ID_STRLEN + 1];

        deja_id_format(&t->id, text);
        problem(v, "ix_model entry '%s/%s' -> trace %s: the trace is model '%s' version '%s'",
                (const char *)p, (const char *)z1 + 1, text, t->model_name ? t->model_name : "",
                t->model_version ? t->model_version : "");
    }
    deja_trace_free(t);
    return 0;
}

/* deja__ix_scan callback: check one tag index entry: well formed, and its
 * trace has that tag. */
static int check_ix_tag(const uint8_t *p, size_t n, const uint8_t *id, void *payload)
{
    verifier *v = payload;
    deja_trace *t = NULL;
    char shown[600], text[DEJA_ID_STRLEN + 1];
    size_t i;
    int rc;

    deja__progress(++v->done, v->total);
    if (id == NULL || n < 1 || p[n - 1] != '\0' || memchr(p, '\0', n - 1) != NULL) {
        printable(shown, sizeof shown, p, n);
        problem(v, "ix_tag entry '%s' is malformed", shown);
        return 0;
    }
    rc = index_target(v, "ix_tag", p, n, id, &t);
    if (rc <= 0)
        return rc;
    for (i = 0; i < t->ntags; i++) {
        const char *tk = t->tags[i].key ? t->tags[i].key : "";
        const char *tv = t->tags[i].value ? t->tags[i].value : "";
        size_t kn = strlen(tk);

        if (kn + 1 + strlen(tv) + 1 == n && memcmp(p, tk, kn) == 0 && p[kn] == '=' &&
            strcmp((const char *)p + kn + 1, tv) == 0)
            break;
    }
    if (i == t->ntags) {
        deja_id_format(&t->id, text);
        problem(v, "ix_tag entry '%s' -> trace %s: the trace has no such tag", (const char *)p,
                text);
    }
    deja_trace_free(t);
    return 0;
}

/* deja__ix_scan callback: check one status index entry: its trace has
 * that status. */
static int check_ix_status(const uint8_t *p, size_t n, const uint8_t *id, void *payload)
{
    verifier *v = payload;
    deja_trace *t = NULL;
    char text[DEJA_ID_STRLEN + 1], shown[8];
    int rc;

    deja__progress(++v->done, v->total);
    if (id == NULL || n != 1) {
        problem(v, "ix_status: an entry of %zu bytes is malformed", n + (id != NULL ? 16 : 0));
        return 0;
    }
    snprintf(shown, sizeof shown, "%u", p[0]);
    rc = index_target(v, "ix_status", p, 1, id, &t);
    if (rc <= 0)
        return rc;
    if ((unsigned)t->status != p[0]) {
        deja_id_format(&t->id, text);
        problem(v, "ix_status entry %s -> trace %s: the trace has status %d", shown, text,
                (int)t->status);
    }
    deja_trace_free(t);
    return 0;
}

/* Check the whole store in one read transaction. */
int deja_store_verify(deja_store *store, deja_problem_cb cb, void *payload)
{
    verifier v;
    int rc;

    memset(&v, 0, sizeof v);
    v.store = store;
    v.cb = cb;
    v.payload = payload;
    /* LMDB trusts its pages: check their structure first, and trust LMDB
     * with the records only when it holds. */
    {
        char path[PATH_MAX];
        if ((size_t)snprintf(path, sizeof path, "%s/data.mdb", store->path) >= sizeof path)
            return deja__error_set(DEJA_EINVAL, "store path '%s' is too long", store->path);
        rc = deja__store_check_pages(path, cb, payload);
        if (rc != 0)
            return rc;
    }
    rc = deja__rtxn_begin(store, &v.txn);
    if (rc != 0)
        return rc;
    {
        const MDB_dbi all[] = {store->traces,
                               store->blobs,
                               store->chunks,
                               store->envs,
                               deja__ix_dbi(store, DEJA__IX_MODEL),
                               deja__ix_dbi(store, DEJA__IX_TAG),
                               deja__ix_dbi(store, DEJA__IX_STATUS)};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
            MDB_stat ms;
            if ((all[i] != store->chunks || store->has_chunks) &&
                mdb_stat(v.txn, all[i], &ms) == 0)
                v.total += ms.ms_entries;
        }
    }
    rc = walk(&v, store->traces, check_trace);
    if (rc == 0)
        rc = walk(&v, store->blobs, check_blob);
    if (rc == 0 && store->has_chunks)
        rc = walk(&v, store->chunks, check_chunk);
    if (rc == 0)
        rc = walk(&v, store->envs, check_env);
    if (rc == 0)
        rc = deja__ix_scan(store, v.txn, DEJA__IX_MODEL, "", 0, check_ix_model, &v);
    if (rc == 0)
        rc = deja__ix_scan(store, v.txn, DEJA__IX_TAG, "", 0, check_ix_tag, &v);
    if (rc == 0)
        rc = deja__ix_scan(store, v.txn, DEJA__IX_STATUS, "", 0, check_ix_status, &v);
    deja__rtxn_end(store, v.txn);
    return rc < 0 ? rc : v.problems;
}
