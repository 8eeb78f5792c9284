/*
 * store/trace_refs.c -- the references of a trace, kept uncompressed in
 * front of its record (format 2), so that gc and the disk budget delete a
 * trace, its index entries and what only it used without decompressing
 * and decoding it.
 *
 * A trace value of format 2 and later is
 *   'R' | varint n | refs (n bytes) | record (magic 'D', store/record.c)
 * and the refs are
 *   varint raw_bytes | status u8 | flags u8 (bit 0: has env, bit 1: has
 *   summary) | [env 16] | [summary] | str model name | str model version
 *   | varint ntags | (str key, str value)* | varint nblobs | (digest 16)*
 * where a str is a varint length then the bytes (no NUL). The summary
 * (format 4, store/trace_summary.c) holds the trace's start and duration
 * and its input and output bytes: with the model, status and tags before
 * and after it, all that scans over whole stores (stats --by, drift, the
 * ls filters) read of a trace, without decompressing its record.
 * raw_bytes is what the trace added to count/raw_bytes when written (its encoding and
 * the payloads it stored as blobs); the blobs are the digests of its
 * blob-stored payloads, inputs then outputs. The index entries of a trace
 * are a function of its id, model, status and tags (deja__ix_each), so the
 * refs give the very keys that writing the trace added. A value of format
 * 1 is the record alone, refs of formats 2 and 3 have no summary; all are
 * read. `deja verify` checks that the refs say what the decoded record
 * says.
 */
#include <stdlib.h>
#include <string.h>

#include "core/varint.h"
#include "store/store_internal.h"

/* Largest refs accepted (a trace's names and tags are bounded by LMDB's key
 * size for the indexed ones; the rest are bounded by the record). */
#define REFS_MAX ((size_t)16 << 20)

static int put_str(deja__buf *out, const char *s)
{
    const size_t n = s != NULL ? strlen(s) : 0;

    if (deja__varint_put(out, n) != 0)
        return -1;
    return n > 0 ? deja__buf_append(out, s, n) : 0;
}

/* Append to `out` the refs prefix of `trace`: 'R', the length, the refs.
 * `blobs` holds `nblobs` digests of its blob-stored payloads; `raw_bytes`
 * is what it adds to count/raw_bytes. */
int deja__refs_encode(const deja_trace *trace, const uint8_t *blobs, size_t nblobs,
                      uint64_t raw_bytes, deja__buf *out)
{
    deja__buf r = {0};
    const uint8_t head = DEJA__REFS_MAGIC;
    uint8_t b[2];
    int rc = -1;

    b[0] = (uint8_t)trace->status;
    b[1] = (trace->has_env ? DEJA__REFS_HAS_ENV : 0) | DEJA__REFS_HAS_SUMMARY;
    if (deja__varint_put(&r, raw_bytes) != 0 || deja__buf_append(&r, b, 2) != 0)
        goto cleanup;
    if (trace->has_env && deja__buf_append(&r, trace->env.bytes, 16) != 0)
        goto cleanup;
    if (deja__trace_summary_encode(trace, &r) != 0)
        goto cleanup;
    if (put_str(&r, trace->model_name) != 0 || put_str(&r, trace->model_version) != 0 ||
        deja__varint_put(&r, trace->ntags) != 0)
        goto cleanup;
    for (size_t i = 0; i < trace->ntags; i++)
        if (put_str(&r, trace->tags[i].key) != 0 || put_str(&r, trace->tags[i].value) != 0)
            goto cleanup;
    if (deja__varint_put(&r, nblobs) != 0 ||
        (nblobs > 0 && deja__buf_append(&r, blobs, nblobs * 16) != 0))
        goto cleanup;
    if (deja__buf_append(out, &head, 1) != 0 || deja__varint_put(out, r.size) != 0 ||
        deja__buf_append(out, r.data, r.size) != 0)
        goto cleanup;
    rc = 0;

cleanup:
    deja__buf_free(&r);
    return rc == 0 ? 0
                   : deja__error_set(DEJA_ENOMEM, "encoding a trace's references: out of memory");
}

/* Split a trace value into its refs (NULL and 0 for a value of format 1)
 * and its record. -1 when the refs prefix is malformed. */
int deja__trace_value_split(const void *value, size_t size, const uint8_t **refs, size_t *nrefs,
                            const uint8_t **rec, size_t *nrec)
{
    const uint8_t *p = value, *end = p + size;
    uint64_t n;

    *refs = NULL;
    *nrefs = 0;
    *rec = value;
    *nrec = size;
    if (size == 0 || p[0] != DEJA__REFS_MAGIC)
        return 0;
    p++;
    if (deja__varint_get(&p, end, 10, &n) != 0 || n > (uint64_t)(end - p) || n > REFS_MAX)
        return -1;
    *refs = p;
    *nrefs = (size_t)n;
    *rec = p + n;
    *nrec = (size_t)(end - (p + n));
    return 0;
}

/* Decompress the record of the trace value `v` (behind its refs, if any)
 * into `out`, as deja__record_decode_buf; `what` names it in errors. */
int deja__trace_value_record(deja_store *store, MDB_txn *txn, const MDB_val *v, const char *what,
                             deja__buf *out)
{
    const uint8_t *refs, *rec;
    size_t nrefs, nrec;

    if (deja__trace_value_split(v->mv_data, v->mv_size, &refs, &nrefs, &rec, &nrec) != 0)
        return deja__error_set(DEJA_ECORRUPT, "%s: its references are malformed", what);
    return deja__record_decode_buf(store, txn, rec, nrec, what, out);
}

/* Read a str at `*p` into the arena at `*a` (NUL-terminated), advancing both. */
static int get_str(const uint8_t **p, const uint8_t *end, char **a, const char **out)
{
    uint64_t n;

    if (deja__varint_get(p, end, 10, &n) != 0 || n > (uint64_t)(end - *p) ||
        memchr(*p, '\0', n) != NULL)
        return -1;
    memcpy(*a, *p, n);
    (*a)[n] = '\0';
    *out = *a;
    *a += n + 1;
    *p += n;
    return 0;
}

/* Parse the refs `p` (`n` bytes) of trace `id` into `r`: 0, DEJA_ECORRUPT
 * or DEJA_ENOMEM (no message set). */
int deja__refs_parse(const deja_id *id, const uint8_t *p, size_t n, deja__refs *r)
{
    const uint8_t *end = p + n;
    uint64_t raw, ntags, nblobs;
    char *a;

    memset(&r->view, 0, sizeof r->view);
    r->view.id = *id;
    /* Every string is at most the refs long, and one NUL per string: the
     * arena needs at most 2n + 2 bytes. */
    r->arena.size = 0;
    if (deja__buf_reserve(&r->arena, 2 * n + 2) != 0)
        return DEJA_ENOMEM;
    a = (char *)r->arena.data;
    if (deja__varint_get(&p, end, 10, &raw) != 0 || end - p < 2)
        return DEJA_ECORRUPT;
    r->raw_bytes = raw;
    if (p[0] > DEJA_STATUS_ERROR || (p[1] & ~(DEJA__REFS_HAS_ENV | DEJA__REFS_HAS_SUMMARY)) != 0)
        return DEJA_ECORRUPT;
    r->view.status = (deja_status)p[0];
    r->view.has_env = (p[1] & DEJA__REFS_HAS_ENV) != 0;
    r->has_summary = (p[1] & DEJA__REFS_HAS_SUMMARY) != 0;
    p += 2;
    if (r->view.has_env) {
        if (end - p < 16)
            return DEJA_ECORRUPT;
        memcpy(r->view.env.bytes, p, 16);
        p += 16;
    }
    r->input_bytes = r->output_bytes = 0;
    if (r->has_summary && deja__trace_summary_decode(&p, end, r) != 0)
        return DEJA_ECORRUPT;
    if (get_str(&p, end, &a, &r->view.model_name) != 0 ||
        get_str(&p, end, &a, &r->view.model_version) != 0 ||
        deja__varint_get(&p, end, 10, &ntags) != 0 || ntags > (uint64_t)(end - p) / 2)
        return DEJA_ECORRUPT;
    if (ntags > r->cap_tags) {
        deja_tag *grown = realloc(r->tags, (size_t)ntags * sizeof *grown);

        if (grown == NULL)
            return DEJA_ENOMEM;
        r->tags = grown;
        r->cap_tags = (size_t)ntags;
    }
    for (size_t i = 0; i < ntags; i++)
        if (get_str(&p, end, &a, &r->tags[i].key) != 0 ||
            get_str(&p, end, &a, &r->tags[i].value) != 0)
            return DEJA_ECORRUPT;
    r->view.tags = r->tags;
    r->view.ntags = (size_t)ntags;
    if (deja__varint_get(&p, end, 10, &nblobs) != 0 || nblobs > (uint64_t)(end - p) / 16 ||
        (size_t)(end - p) != nblobs * 16)
        return DEJA_ECORRUPT;
    r->blobs = p;
    r->nblobs = (size_t)nblobs;
    return 0;
}

/* The raw size a record's header claims ('D' records), else its size. */
static uint64_t record_raw_size(const uint8_t *p, size_t n)
{
    if (n < DEJA__RECORD_HEADER || p[0] != DEJA__RECORD_MAGIC)
        return n;
    return (uint64_t)p[6] | (uint64_t)p[7] << 8 | (uint64_t)p[8] << 16 | (uint64_t)p[9] << 24;
}

/* Append the digests of the blobs decoded trace `t` references, in the
 * order its tensors come (inputs, then outputs), to `digests`, and add
 * their sizes to `*raw`. -1 when out of memory. */
static int blobs_of(const deja_trace *t, deja__buf *digests, uint64_t *raw)
{
    for (int side = 0; side < 2; side++) {
        const size_t count = side == DEJA_INPUT ? t->ninputs : t->noutputs;
        const deja_tensor *ts = side == DEJA_INPUT ? t->inputs : t->outputs;

        for (size_t i = 0; i < count; i++) {
            const deja_digest *d = deja__trace_blob(t, (deja_side)side, i);

            if (d == NULL)
                continue;
            if (deja__buf_append(digests, d->bytes, 16) != 0)
                return -1;
            *raw += ts[i].size;
        }
    }
    return 0;
}

/* Fill `r` from the decoded trace (a value of format 1). */
static int refs_from_trace(deja__refs *r, const uint8_t *rec, size_t nrec)
{
    const deja_trace *t = r->decoded;

    r->view = *t;
    r->digests.size = 0;
    r->raw_bytes = record_raw_size(rec, nrec);
    r->has_summary = 1;
    deja__trace_summary_sizes(t, &r->input_bytes, &r->output_bytes);
    if (blobs_of(t, &r->digests, &r->raw_bytes) != 0)
        return deja__error_set(DEJA_ENOMEM, "gc: out of memory");
    r->blobs = r->digests.data;
    r->nblobs = r->digests.size / 16;
    return 0;
}

/* The references of trace `id`, whose value `v` was read in `txn`: from
 * its refs when it has them, else by decoding its record. */
int deja__refs_read(deja_store *store, MDB_txn *txn, const deja_id *id, const MDB_val *v,
                    deja__refs *r)
{
    const uint8_t *refs, *rec;
    size_t nrefs, nrec;
    char text[DEJA_ID_STRLEN + 1];
    int rc;

    deja_trace_free(r->decoded);
    r->decoded = NULL;
    if (deja__trace_value_split(v->mv_data, v->mv_size, &refs, &nrefs, &rec, &nrec) != 0) {
        deja_id_format(id, text);
        return deja__error_set(DEJA_ECORRUPT, "trace %s: its references are malformed", text);
    }
    if (refs != NULL) {
        rc = deja__refs_parse(id, refs, nrefs, r);
        if (rc == 0)
            return 0;
        deja_id_format(id, text);
        return deja__error_set(rc, "trace %s: its references are %s", text,
                               rc == DEJA_ENOMEM ? "beyond memory" : "malformed");
    }
    rc = deja__trace_read_txn(store, txn, id, &r->decoded);
    if (rc == 0)
        rc = refs_from_trace(r, rec, nrec);
    return rc;
}

/* Release what `r` holds. */
void deja__refs_free(deja__refs *r)
{
    deja_trace_free(r->decoded);
    deja__buf_free(&r->arena);
    deja__buf_free(&r->digests);
    free(r->tags);
    memset(r, 0, sizeof *r);
}

/* Compare two strings that may be NULL ("" then). */
static int same_str(const char *a, const char *b)
{
    return strcmp(a != NULL ? a : "", b != NULL ? b : "") == 0;
}

/* Whether the refs `v` of trace `t` (decoded from the same value, record
 * `rec` of `nrec` bytes) say what its record says; `why` names the first
 * difference. 1 same, 0 different (or malformed), negative on error. */
int deja__refs_check(const deja_trace *t, const MDB_val *v, const char **why)
{
    const uint8_t *refs, *rec;
    size_t nrefs, nrec;
    deja__refs r = {0};
    deja__buf digests = {0};
    uint64_t raw;
    int rc = 0;

    *why = NULL;
    if (deja__trace_value_split(v->mv_data, v->mv_size, &refs, &nrefs, &rec, &nrec) != 0) {
        *why = "its references are malformed";
        return 0;
    }
    if (refs == NULL)
        return 1;
    rc = deja__refs_parse(&t->id, refs, nrefs, &r);
    if (rc == DEJA_ENOMEM) {
        rc = deja__error_set(DEJA_ENOMEM, "verify: out of memory");
        goto cleanup;
    }
    if (rc != 0) {
        *why = "its references are malformed";
        rc = 0;
        goto cleanup;
    }
    raw = record_raw_size(rec, nrec);
    if (blobs_of(t, &digests, &raw) != 0) {
        rc = deja__error_set(DEJA_ENOMEM, "verify: out of memory");
        goto cleanup;
    }
    if (digests.size != r.nblobs * 16 ||
        (digests.size > 0 && memcmp(digests.data, r.blobs, digests.size) != 0))
        *why = "its references name other blobs than its record";
    else if (r.raw_bytes != raw)
        *why = "its references give another raw size than its record";
    else if (*why == NULL &&
             (r.view.status != t->status || !same_str(r.view.model_name, t->model_name) ||
              !same_str(r.view.model_version, t->model_version)))
        *why = "its references give another model or status than its record";
    else if (*why == NULL && (r.view.has_env != (t->has_env != 0) ||
                              (t->has_env && memcmp(r.view.env.bytes, t->env.bytes, 16) != 0)))
        *why = "its references give another environment than its record";
    else if (*why == NULL && r.view.ntags != t->ntags)
        *why = "its references give other tags than its record";
    else if (*why == NULL && r.has_summary && !deja__trace_summary_agrees(&r, t))
        *why = "its references give another start, duration or payload size than its record";
    for (size_t i = 0; *why == NULL && i < t->ntags; i++)
        if (!same_str(r.tags[i].key, t->tags[i].key) ||
            !same_str(r.tags[i].value, t->tags[i].value))
            *why = "its references give other tags than its record";
    rc = *why == NULL;

cleanup:
    deja__buf_free(&digests);
    deja__refs_free(&r);
    return rc;
}
