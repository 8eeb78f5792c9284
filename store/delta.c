/*
 * store/delta.c -- chat history stored as a delta against its parent trace.
 *
 * A chat client sends the whole conversation with every turn: the history
 * of turn n is the history of turn n-1, then turn n-1's reply (its output),
 * then the new user message. Chunking by content shares most of it but
 * stores the reply twice (inline in turn n-1's record, and again inside the
 * chunks of turn n's history) and pays a chunk list and a key per chunk.
 * So a text input that goes to the blobs (above DEJA__INLINE_MAX) may be
 * stored as a delta instead: one zstd frame compressed with its *base* as
 * a raw prefix (ZSTD_CCtx_refPrefix), the base being what the parent trace
 * already holds: its input of the same position, then its outputs, in
 * order. The blob's value becomes
 *   'X' | version 1 | depth | varint total size | parent trace id (16)
 *       | varint input index | zstd frame (without magic number, size or
 *       checksum: the header holds the size, and the payload is checked
 *       against its digest)
 * under the digest of the payload, like any blob: whoever reads blobs by
 * digest (traces, verify, fleet, bundles) gets the payload back, checked
 * against its digest.
 *
 * The chain is bounded: `depth` is 1 + the largest depth among the blobs
 * of its base (a whole or chunked blob, or an inline tensor, has depth 0),
 * at most DEJA__DELTA_DEPTH_MAX. A history that would go deeper is stored
 * whole (chunked) and the next turns count from it again, so reading any
 * trace costs at most DEJA__DELTA_DEPTH_MAX parent records and deltas on
 * top of its own. A reader refuses a base blob whose depth is not below
 * the one reading it: a corrupt or hostile store cannot loop.
 *
 * Parents are found without any hint from the client: a write handle keeps
 * a bounded map from a fingerprint of a text input (its name and first
 * DEJA__DELTA_FP bytes) to the last trace written with it and that trace's
 * base bytes (so the writer never reads a delta back). A candidate is used
 * when it is still stored, older than the new trace and its delta is small
 * (below half the payload); else the payload is stored as before.
 *
 * gc: a delta needs its parent's record. When gc deletes a trace of a store
 * that holds deltas, it first copies the trace's value into the `dead`
 * database; before sweeping, every delta still referenced whose parent is
 * gone is rewritten whole (reconstructed with the parent from `dead`),
 * then `dead` is emptied, in the same transaction.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>
#define ZSTD_STATIC_LINKING_ONLY /* magicless frames */
#include <zstd.h>

#include "core/varint.h"
#include "proto/codec.h"
#include "store/store_internal.h"

/* Bases the map keeps (a ring, oldest forgotten first), the bytes they
 * hold at most, and the anchors that lead to them. */
#define BASES 1024
#define MAP_BYTES ((size_t)4 << 20)
#define ANCHORS 8192
/* Anchors per text input: its start, and its last content-defined chunks
 * but the one at its end (which the next turn cuts elsewhere). */
#define TAIL_ANCHORS 4
/* Chunks of a new input looked up, from its end back. */
#define LOOKUPS 32
/* Base parts stored as blobs a base remembers (their depth counts). */
#define BASE_BLOBS 4
#define LEVEL 3

/* What a trace holds that the next turn may start from. */
typedef struct delta_base {
    uint64_t gen;   /* bumped when the entry is reused: stale anchors miss */
    deja_id id;     /* the trace */
    uint32_t input; /* the index of its input the base starts with */
    uint8_t *base;  /* that input, then its outputs; NULL: empty */
    size_t nbase;
    uint8_t blobs[BASE_BLOBS][16]; /* digests of the base parts stored as blobs */
    size_t nblobs;
} delta_base;

/* A fingerprint of a piece of a text input, leading to the base that held
 * it last. */
typedef struct delta_anchor {
    uint64_t fp;
    uint32_t base;
    uint64_t gen;
} delta_anchor;

struct deja__delta_map {
    delta_base bases[BASES];
    delta_anchor anchors[ANCHORS];
    size_t next; /* the ring's next entry */
    uint64_t gen;
    size_t bytes;
    ZSTD_CCtx *cctx;
    deja__buf out;
    deja__buf cuts; /* chunk ends of the input at cut_p (size_t each) */
    const void *cut_p;
    size_t cut_n;
};

/* The fingerprint of `n` bytes at `p` of the input named `name`; never 0. */
static uint64_t fingerprint(const char *name, const uint8_t *p, size_t n)
{
    return XXH3_64bits_withSeed(p, n, XXH3_64bits(name, strlen(name))) | 1;
}

/* Whether input `t` may be a base or a delta: text of DEJA__DELTA_FP bytes
 * or more. */
static int eligible(const deja_tensor *t)
{
    return t->dtype == DEJA_UTF8 && t->size >= DEJA__DELTA_FP && t->data != NULL;
}

/* Free the writer's map of a handle (at close). Accepts a handle without. */
void deja__delta_free(deja_store *store)
{
    deja__delta_map *m = store->delta;

    if (m == NULL)
        return;
    for (size_t i = 0; i < BASES; i++)
        free(m->bases[i].base);
    ZSTD_freeCCtx(m->cctx);
    deja__buf_free(&m->out);
    deja__buf_free(&m->cuts);
    free(m);
    store->delta = NULL;
}

/* Whether tensor `t` goes to the blobs (above the inline bound). */
static int is_blob(const deja_tensor *t)
{
    return t->size > DEJA__INLINE_MAX;
}

/* Cut the `n` bytes at `p` as the store cuts blobs: the end of each chunk
 * into m->cuts. Returns the number of chunks, 0 when out of memory. */
static size_t cut(deja__delta_map *m, const uint8_t *p, size_t n)
{
    size_t off = 0;

    /* A delta's input is cut to find its parent, then again when the
     * trace is remembered: the second time is free. */
    if (m->cut_p == p && m->cut_n == n && m->cuts.size > 0)
        return m->cuts.size / sizeof(size_t);
    m->cuts.size = 0;
    m->cut_p = NULL;
    while (off < n) {
        off += deja__chunk_next(p + off, n - off);
        if (deja__buf_append(&m->cuts, &off, sizeof off) != 0)
            return 0;
    }
    m->cut_p = p;
    m->cut_n = n;
    return m->cuts.size / sizeof(size_t);
}

/* The end of chunk `i` cut by cut(). */
static size_t cut_end(const deja__delta_map *m, size_t i)
{
    size_t end;

    memcpy(&end, m->cuts.data + i * sizeof end, sizeof end);
    return end;
}

/* Point the anchor of `fp` at base `b`. */
static void anchor(deja__delta_map *m, uint64_t fp, size_t b)
{
    delta_anchor *a = &m->anchors[fp % ANCHORS];

    a->fp = fp;
    a->base = (uint32_t)b;
    a->gen = m->bases[b].gen;
}

/* The base anchor `fp` leads to, or NULL. */
static delta_base *anchored(deja__delta_map *m, uint64_t fp)
{
    const delta_anchor *a = &m->anchors[fp % ANCHORS];
    delta_base *b;

    if (a->fp != fp || a->base >= BASES)
        return NULL;
    b = &m->bases[a->base];
    return b->base != NULL && b->gen == a->gen ? b : NULL;
}

/* Forget ring entry `i`. */
static void forget(deja__delta_map *m, size_t i)
{
    delta_base *b = &m->bases[i];

    if (b->base != NULL)
        m->bytes -= b->nbase;
    free(b->base);
    b->base = NULL;
    b->nbase = 0;
    b->gen = ++m->gen;
}

/* Remember input `i` of `trace` (just stored) as a base: its bytes then
 * its outputs', `nout` bytes in all. */
static void remember(deja__delta_map *m, const deja_trace *trace, size_t i, size_t nout)
{
    const deja_tensor *in = &trace->inputs[i];
    const char *name = in->name != NULL ? in->name : "";
    const size_t n = in->size + nout;
    delta_base *b;
    uint8_t *base;
    size_t off, nblobs = 0, slot, nchunks;

    for (size_t o = 0; o < trace->noutputs; o++)
        nblobs += is_blob(&trace->outputs[o]);
    if (n > MAP_BYTES || nblobs + 1 > BASE_BLOBS)
        return;
    /* The ring's next entry, and older ones while the bytes are full. */
    slot = m->next;
    m->next = (m->next + 1) % BASES;
    forget(m, slot);
    for (size_t j = m->next; m->bytes + n > MAP_BYTES; j = (j + 1) % BASES)
        forget(m, j);
    base = malloc(n > 0 ? n : 1);
    if (base == NULL)
        return;
    b = &m->bases[slot];
    memcpy(base, in->data, in->size);
    off = in->size;
    nblobs = 0;
    if (is_blob(in)) {
        const deja_digest d = deja_digest_of(in->data, in->size);
        memcpy(b->blobs[nblobs++], d.bytes, 16);
    }
    for (size_t o = 0; o < trace->noutputs; o++) {
        const deja_tensor *t = &trace->outputs[o];

        if (t->size > 0)
            memcpy(base + off, t->data, t->size);
        off += t->size;
        if (is_blob(t)) {
            const deja_digest d = deja_digest_of(t->data, t->size);
            memcpy(b->blobs[nblobs++], d.bytes, 16);
        }
    }
    b->id = trace->id;
    b->input = (uint32_t)i;
    b->base = base;
    b->nbase = n;
    b->nblobs = nblobs;
    m->bytes += n;
    /* Anchors: the start, and the last chunks before the end. A new turn
     * repeats them; the recent ones tell conversations apart even when
     * they all begin alike (a system prompt inside the messages). */
    anchor(m, fingerprint(name, in->data, DEJA__DELTA_FP), slot);
    nchunks = cut(m, in->data, in->size);
    for (size_t c = nchunks >= 1 + TAIL_ANCHORS ? nchunks - 1 - TAIL_ANCHORS : 0;
         c + 1 < nchunks; c++) {
        const size_t from = c > 0 ? cut_end(m, c - 1) : 0;

        anchor(m, fingerprint(name, (const uint8_t *)in->data + from, cut_end(m, c) - from),
               slot);
    }
}

/* Remember the text inputs of `trace`, just stored by `w`, as bases for
 * the turns that follow. Out of memory only means nothing is remembered. */
void deja__delta_note(deja__wtxn *w, const deja_trace *trace)
{
    deja_store *store = w->store;
    size_t nout = 0;

    if (w->dry_run)
        return;
    for (size_t o = 0; o < trace->noutputs; o++) {
        if (trace->outputs[o].size > DEJA__DELTA_BASE_MAX - nout)
            return;
        nout += trace->outputs[o].size;
    }
    for (size_t i = 0; i < trace->ninputs && i <= UINT32_MAX; i++) {
        if (!eligible(&trace->inputs[i]) ||
            trace->inputs[i].size > DEJA__DELTA_BASE_MAX - nout)
            continue;
        if (store->delta == NULL && (store->delta = calloc(1, sizeof *store->delta)) == NULL)
            return;
        remember(store->delta, trace, i, nout);
    }
    /* The next trace's buffers may sit where this one's did. */
    if (store->delta != NULL)
        store->delta->cut_p = NULL;
}

/* The base to compress input `in` of the trace `id` against: the one an
 * anchor of its last chunks leads to (from its end back), else the one
 * that began the same way; only a base of an older trace. NULL if none. */
static delta_base *find_base(deja__delta_map *m, const deja_tensor *in, const deja_id *id)
{
    const char *name = in->name != NULL ? in->name : "";
    const uint8_t *p = in->data;
    const size_t nchunks = cut(m, p, in->size);
    delta_base *b;

    for (size_t c = nchunks >= 2 ? nchunks - 2 : 0, tries = 0;
         nchunks >= 2 && tries < LOOKUPS; c--, tries++) {
        const size_t from = c > 0 ? cut_end(m, c - 1) : 0;

        b = anchored(m, fingerprint(name, p + from, cut_end(m, c) - from));
        if (b != NULL && memcmp(b->id.bytes, id->bytes, 16) < 0)
            return b;
        if (c == 0)
            break;
    }
    b = anchored(m, fingerprint(name, p, DEJA__DELTA_FP));
    return b != NULL && memcmp(b->id.bytes, id->bytes, 16) < 0 ? b : NULL;
}

/* The depth of the blob stored under `d` in `txn`: 0 for a whole or
 * chunked one, its header's for a delta; -1 when absent or unreadable. */
static int stored_depth(deja_store *store, MDB_txn *txn, const uint8_t *d)
{
    MDB_val k = {16, (void *)d}, v;
    const uint8_t *p;

    if (mdb_get(txn, store->blobs, &k, &v) != 0)
        return -1;
    p = v.mv_data;
    if (v.mv_size > 0 && p[0] == DEJA__DELTA_MAGIC)
        return v.mv_size >= 3 ? p[2] : -1;
    return 0;
}

/* Try to store input payload `data` (`size` bytes, digest `digest`, absent
 * from the blobs) of `trace` as a delta against the trace it continues.
 * 1 when stored so, 0 when not (the caller stores it whole), negative on
 * a write error. */
int deja__delta_put(deja__wtxn *w, const deja_trace *trace, const void *data, size_t size,
                    const deja_digest *digest)
{
    deja_store *store = w->store;
    deja__delta_map *m = store->delta;
    const deja_tensor *in = NULL;
    delta_base *s;
    MDB_val k, v;
    size_t cap, n;
    int depth = 0, rc;

    if (m == NULL || w->dry_run)
        return 0;
    for (size_t i = 0; i < trace->ninputs; i++)
        if (trace->inputs[i].data == data && trace->inputs[i].size == size) {
            in = &trace->inputs[i];
            break;
        }
    if (in == NULL || !eligible(in) || (s = find_base(m, in, &trace->id)) == NULL)
        return 0;
    /* The parent must still be stored (a transaction that wrote it may
     * have failed, gc may have taken it), and its blobs with it. */
    k.mv_size = 16;
    k.mv_data = s->id.bytes;
    rc = mdb_get(w->txn, store->traces, &k, &v);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0)
        return deja__mdb_error(rc, "reading a trace");
    for (size_t b = 0; b < s->nblobs; b++) {
        const int d = stored_depth(store, w->txn, s->blobs[b]);

        if (d < 0)
            return 0;
        if (d > depth)
            depth = d;
    }
    if (++depth > DEJA__DELTA_DEPTH_MAX)
        return 0; /* the full copy that bounds the chain */
    if (m->cctx == NULL && (m->cctx = ZSTD_createCCtx()) == NULL)
        return 0;
    /* Worth it only well below the payload: else chunks do as well. */
    cap = ZSTD_compressBound(size);
    m->out.size = 0;
    if (deja__buf_reserve(&m->out, 3 + 10 + 16 + 10 + cap) != 0)
        return 0;
    {
        uint8_t head[3] = {DEJA__DELTA_MAGIC, DEJA__DELTA_VERSION, (uint8_t)depth};

        (void)deja__buf_append(&m->out, head, 3); /* reserved above */
        (void)deja__varint_put(&m->out, size);
        (void)deja__buf_append(&m->out, s->id.bytes, 16);
        (void)deja__varint_put(&m->out, s->input);
    }
    /* The header says what the frame's own header would: no magic, size
     * or checksum (the payload is checked against its digest). */
    if (ZSTD_isError(ZSTD_CCtx_reset(m->cctx, ZSTD_reset_session_and_parameters)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(m->cctx, ZSTD_c_compressionLevel, LEVEL)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(m->cctx, ZSTD_c_checksumFlag, 0)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(m->cctx, ZSTD_c_contentSizeFlag, 0)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(m->cctx, ZSTD_c_format, ZSTD_f_zstd1_magicless)) ||
        ZSTD_isError(ZSTD_CCtx_refPrefix(m->cctx, s->base, s->nbase)))
        return 0;
    n = ZSTD_compress2(m->cctx, m->out.data + m->out.size, cap, data, size);
    if (ZSTD_isError(n) || n > size / 2)
        return 0;
    m->out.size += n;
    rc = deja__wtxn_put(w, store->blobs, digest->bytes, 16, m->out.data, m->out.size,
                        MDB_NOOVERWRITE, "writing a blob");
    if (rc != 0)
        return rc;
    w->unique_bytes += m->out.size;
    w->stored_bytes += m->out.size;
    if (!w->delta_marked) {
        rc = deja__wtxn_meta_put_u64(w, DEJA__DELTA_META, 1);
        if (rc != 0)
            return rc;
        w->delta_marked = 1;
    }
    return 1;
}

/* ------------------------------------------------------------------------
 * Reading
 * ---------------------------------------------------------------------- */

int deja__delta_parse(const void *v, size_t n, const deja_digest *blob, deja__delta *out)
{
    const uint8_t *p = v, *end = p + n;
    uint64_t total, input;

    memset(out, 0, sizeof *out);
    if (n < 3 || p[0] != DEJA__DELTA_MAGIC)
        return deja__blob_malformed(blob, "delta", "no header");
    if (p[1] != DEJA__DELTA_VERSION)
        return deja__blob_malformed(blob, "delta", "unknown version");
    if (p[2] == 0 || p[2] > DEJA__DELTA_DEPTH_MAX)
        return deja__blob_malformed(blob, "delta", "depth beyond the bound");
    out->depth = p[2];
    p += 3;
    if (deja__varint_get(&p, end, 5, &total) != 0 || total > DEJA__MAX_RECORD)
        return deja__blob_malformed(blob, "delta", "bad total size");
    if ((size_t)(end - p) < 16)
        return deja__blob_malformed(blob, "delta", "cut short");
    memcpy(out->parent.bytes, p, 16);
    p += 16;
    if (deja__varint_get(&p, end, 5, &input) != 0 || input > UINT32_MAX)
        return deja__blob_malformed(blob, "delta", "bad input index");
    out->total = (size_t)total;
    out->input = (uint32_t)input;
    out->frame = p;
    out->nframe = (size_t)(end - p);
    return 0;
}

/* Where a delta's parent is looked up: the traces, then (inside gc) the
 * values of the traces it deleted in this transaction. */
typedef struct delta_src {
    deja_store *store;
    MDB_txn *txn;
    const MDB_dbi *dead; /* NULL outside gc */
} delta_src;

static int blob_read(const delta_src *src, const deja_digest *d, unsigned limit, void **data,
                     size_t *size);

/* Append the payload of tensor `index` of `side` of `t` to `base` (loaded
 * through its blob, at depth below `limit`, when stored so), bounded. */
static int base_add(const delta_src *src, const deja_trace *t, deja_side side, size_t index,
                    unsigned limit, const deja_digest *blob, deja__buf *base)
{
    const deja_tensor *tt = side == DEJA_INPUT ? &t->inputs[index] : &t->outputs[index];
    const deja_digest *d = deja__trace_blob(t, side, index);
    void *data = NULL;
    size_t size = 0;
    int rc = 0;

    if (d == NULL) {
        data = (void *)tt->data;
        size = tt->size;
    } else {
        rc = blob_read(src, d, limit, &data, &size);
        if (rc == DEJA_ENOTFOUND)
            rc = deja__blob_malformed(blob, "delta", "a blob of its parent is missing");
        if (rc != 0)
            return rc;
    }
    if (size > DEJA__DELTA_BASE_MAX - base->size)
        rc = deja__blob_malformed(blob, "delta", "its base is beyond the bound");
    else if (size > 0 && deja__buf_append(base, data, size) != 0)
        rc = deja__error_set(DEJA_ENOMEM, "out of memory for a delta's base");
    if (d != NULL)
        free(data);
    return rc;
}

/* The trace `id` as `src` sees it, blobs not loaded (DEJA_ENOTFOUND when
 * absent). */
static int parent_read(const delta_src *src, const deja_id *id, deja_trace **out)
{
    MDB_val k = {16, (void *)id->bytes}, v;
    const uint8_t *refs, *rec;
    size_t nrefs, nrec, n = 0;
    uint8_t *raw = NULL;
    int rc;

    *out = NULL;
    rc = mdb_get(src->txn, src->store->traces, &k, &v);
    if (rc == MDB_NOTFOUND && src->dead != NULL)
        rc = mdb_get(src->txn, *src->dead, &k, &v);
    if (rc == MDB_NOTFOUND)
        return DEJA_ENOTFOUND;
    if (rc != 0)
        return deja__mdb_error(rc, "reading a delta's parent");
    if (deja__trace_value_split(v.mv_data, v.mv_size, &refs, &nrefs, &rec, &nrec) != 0)
        return deja__error_set(DEJA_ECORRUPT, "its parent's references are malformed");
    rc = deja__record_decode(src->store, src->txn, rec, nrec, "its parent", &raw, &n);
    if (rc == 0)
        rc = deja__trace_decode(raw, n, out);
    free(raw);
    if (rc == 0 && memcmp((*out)->id.bytes, id->bytes, 16) != 0) {
        deja_trace_free(*out);
        *out = NULL;
        rc = deja__error_set(DEJA_ECORRUPT, "its parent's record holds another id");
    }
    return rc;
}

/* Reconstruct delta blob `blob` (value `v`, `n` bytes) at most `limit` deep
 * into a malloc'd `*data`, checked against its digest. */
static int delta_read(const delta_src *src, const deja_digest *blob, const void *v, size_t n,
                      unsigned limit, void **data, size_t *size)
{
    deja__delta x;
    deja_trace *parent = NULL;
    deja__buf base = {0};
    ZSTD_DCtx *dctx = NULL;
    uint8_t *buf = NULL;
    char hex[33], why[300];
    size_t got_n;
    int rc;

    *data = NULL;
    *size = 0;
    rc = deja__delta_parse(v, n, blob, &x);
    if (rc != 0)
        return rc;
    if (x.depth > limit)
        return deja__blob_malformed(blob, "delta", "deeper than the blob that needs it");
    /* A conversation read turn after turn needs each history as the base
     * of the next: keep them (checked content, keyed by digest). */
    if (src->dead == NULL) {
        buf = malloc(x.total > 0 ? x.total : 1);
        if (buf == NULL)
            return deja__error_set(DEJA_ENOMEM, "out of memory for a delta of %zu bytes",
                                   x.total);
        if (deja__chunk_cache_get(src->store, blob->bytes, x.total, buf)) {
            *data = buf;
            *size = x.total;
            return 0;
        }
    }
    rc = parent_read(src, &x.parent, &parent);
    if (rc != 0) {
        char id[DEJA_ID_STRLEN + 1];

        deja_id_format(&x.parent, id);
        deja_digest_format(blob, hex);
        free(buf);
        if (rc == DEJA_ENOTFOUND)
            return deja__error_set(DEJA_ECORRUPT, "blob %s: its parent trace %s is missing", hex,
                                   id);
        snprintf(why, sizeof why, "%s", deja_error_last());
        return deja__error_set(rc, "blob %s: parent trace %s: %s", hex, id, why);
    }
    if (x.input >= parent->ninputs) {
        rc = deja__blob_malformed(blob, "delta", "its parent has no such input");
        goto cleanup;
    }
    rc = base_add(src, parent, DEJA_INPUT, x.input, x.depth - 1, blob, &base);
    for (size_t o = 0; rc == 0 && o < parent->noutputs; o++)
        rc = base_add(src, parent, DEJA_OUTPUT, o, x.depth - 1, blob, &base);
    if (rc != 0)
        goto cleanup;
    if (buf == NULL)
        buf = malloc(x.total > 0 ? x.total : 1);
    dctx = deja__dctx_take(src->store);
    if (buf == NULL || dctx == NULL) {
        rc = deja__error_set(DEJA_ENOMEM, "out of memory for a delta of %zu bytes", x.total);
        goto cleanup;
    }
    if (ZSTD_isError(ZSTD_DCtx_setParameter(dctx, ZSTD_d_format, ZSTD_f_zstd1_magicless)) ||
        ZSTD_isError(ZSTD_DCtx_refPrefix(dctx, base.data, base.size))) {
        rc = deja__blob_malformed(blob, "delta", "its base cannot be used");
        goto cleanup;
    }
    got_n = ZSTD_decompressDCtx(dctx, buf, x.total, x.frame, x.nframe);
    if (ZSTD_isError(got_n) || got_n != x.total) {
        rc = deja__blob_malformed(blob, "delta", "it does not decompress");
        goto cleanup;
    }
    rc = deja__blob_check(blob, buf, x.total);
    if (rc != 0)
        goto cleanup;
    if (src->dead == NULL)
        deja__chunk_cache_put(src->store, blob->bytes, buf, x.total);
    *data = buf;
    *size = x.total;
    buf = NULL;

cleanup:
    if (dctx != NULL)
        deja__dctx_give(src->store, dctx);
    free(buf);
    deja__buf_free(&base);
    deja_trace_free(parent);
    return rc;
}

/* Read blob `d` as `src` sees it, a delta at most `limit` deep. */
static int blob_read(const delta_src *src, const deja_digest *d, unsigned limit, void **data,
                     size_t *size)
{
    MDB_val k = {16, (void *)d->bytes}, v;
    const int rc = mdb_get(src->txn, src->store->blobs, &k, &v);

    if (rc == 0 && v.mv_size > 0 && ((const uint8_t *)v.mv_data)[0] == DEJA__DELTA_MAGIC)
        return delta_read(src, d, v.mv_data, v.mv_size, limit, data, size);
    return deja__blob_get_txn(src->store, src->txn, d, data, size);
}

int deja__delta_read(deja_store *store, MDB_txn *txn, const deja_digest *blob, const void *v,
                     size_t n, void **data, size_t *size)
{
    const delta_src src = {store, txn, NULL};

    return delta_read(&src, blob, v, n, DEJA__DELTA_DEPTH_MAX, data, size);
}

/* ------------------------------------------------------------------------
 * gc
 * ---------------------------------------------------------------------- */

int deja__delta_keep(deja__wtxn *w, const deja_id *id, const MDB_val *value)
{
    if (w->dry_run || !w->store->has_dead)
        return 0;
    if (w->delta_state == 0)
        w->delta_state = deja__meta_u64(w->store, w->txn, DEJA__DELTA_META) != 0 ? 1 : 2;
    if (w->delta_state != 1)
        return 0;
    w->dead_count++;
    return deja__wtxn_put(w, w->store->dead, id->bytes, 16, value->mv_data, value->mv_size, 0,
                          "gc: keeping a deleted trace");
}

int deja__delta_pending(const deja__wtxn *w)
{
    return w->dead_count > 0;
}

int deja__delta_rescue(deja__wtxn *w, int (*live)(const uint8_t *digest, void *payload),
                       void *payload, uint64_t *rewritten)
{
    const delta_src src = {w->store, w->txn, &w->store->dead};
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    deja__buf todo = {0};
    int rc = 0, mrc;

    *rewritten = 0;
    if (w->dead_count == 0)
        return 0;
    /* First the list (the walk must not see the values it rewrites). */
    mrc = mdb_cursor_open(w->txn, w->store->blobs, &cur);
    if (mrc != 0)
        return deja__mdb_error(mrc, "gc: walking blobs");
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); mrc == 0 && rc == 0;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const uint8_t *p = v.mv_data;
        deja__delta x;
        deja_digest d;
        MDB_val pk, pv;

        if (k.mv_size != 16 || v.mv_size == 0 || p[0] != DEJA__DELTA_MAGIC)
            continue;
        memcpy(d.bytes, k.mv_data, 16);
        if (deja__delta_parse(v.mv_data, v.mv_size, &d, &x) != 0)
            continue; /* verify reports it; nothing to rescue it with */
        if (live != NULL && !live(d.bytes, payload))
            continue;
        pk.mv_size = 16;
        pk.mv_data = x.parent.bytes;
        if (mdb_get(w->txn, w->store->traces, &pk, &pv) == 0)
            continue;
        if (deja__buf_append(&todo, d.bytes, 16) != 0)
            rc = deja__error_set(DEJA_ENOMEM, "gc: out of memory");
    }
    mdb_cursor_close(cur);
    if (rc == 0 && mrc != 0 && mrc != MDB_NOTFOUND)
        rc = deja__mdb_error(mrc, "gc: walking blobs");
    for (size_t i = 0; rc == 0 && i < todo.size / 16; i++) {
        deja_digest d;
        void *data = NULL;
        size_t size = 0;

        memcpy(d.bytes, todo.data + i * 16, 16);
        k.mv_size = 16;
        k.mv_data = d.bytes;
        mrc = mdb_get(w->txn, w->store->blobs, &k, &v);
        if (mrc != 0) {
            rc = deja__mdb_error(mrc, "gc: reading a blob");
            break;
        }
        rc = delta_read(&src, &d, v.mv_data, v.mv_size, DEJA__DELTA_DEPTH_MAX, &data, &size);
        if (rc == DEJA_ECORRUPT) {
            rc = 0; /* already unreadable: verify reports it */
            continue;
        }
        if (rc == 0)
            rc = deja__wtxn_blob_rewrite(w, data, size, &d);
        free(data);
        if (rc == 0)
            (*rewritten)++;
    }
    deja__buf_free(&todo);
    if (rc == 0) {
        mrc = mdb_drop(w->txn, w->store->dead, 0);
        if (mrc != 0)
            rc = deja__mdb_error(mrc, "gc: emptying the deleted traces");
        else
            w->dead_count = 0;
    }
    return rc;
}
