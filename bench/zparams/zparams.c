/*
 * bench/zparams/zparams.c -- deja-bench-zparams: what zstd settings cost
 * the store's records, in CPU and bytes, compressing and decompressing.
 *
 * For each workload (small, chat, tensor) it records N of deja-bench's
 * traces through the public API into DIR/<workload>/deja.store (kept: a
 * second run reuses it), then takes out of that store, exactly as the
 * writer compressed them, every record the store compresses with its
 * trained dictionary (trace records, whole blobs, chunks) and the
 * dictionary itself. Each setting below then compresses all of them and
 * the reading side decompresses them the way store/record.c does (the
 * dictionary copied in front of the output, a DDict by reference over the
 * copy). Settings are alternated round by round, timed in thread CPU time
 * (min and median over the rounds: the machine is shared); round 0 runs
 * inside callgrind client requests, so that under
 * `valgrind --tool=callgrind` every setting's compression and
 * decompression of every workload is dumped on its own
 * (bench/zparams/zparams.sh turns the dumps into instructions per trace).
 * Every round checks that each record decodes back byte for byte. Four
 * settings put 16 records in one frame, which the store does not do: what
 * that batching would save, priced.
 *
 * Usage: deja-bench-zparams DIR [N [ROUNDS]]  (N small and chat traces,
 * N/4 tensor traces; default 2000 and 5). The store trains its dictionary
 * after 256 traces: records written before it are not compressed with it
 * and are left out (N/4 must be well above 256).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>

#include "bench.h"
#include "store/store.h"
#include "store/store_internal.h"

#if defined(__has_include)
#if __has_include(<valgrind/callgrind.h>)
#include <valgrind/callgrind.h>
#define ZP_CALLGRIND 1
#endif
#endif
#ifndef ZP_CALLGRIND
#define CALLGRIND_ZERO_STATS ((void)0)
#define CALLGRIND_DUMP_STATS_AT(s) ((void)(s))
#endif

/* The store's minimum match (store/record.c). */
#define STORE_MIN_MATCH 6

/* One way of compressing: the CDict's parameters (ZSTD_getCParams(level,
 * 0, dictionary size) with the fields given here replacing the level's)
 * and how the context is driven. */
typedef struct setting {
    const char *name;
    int level;
    int strategy, hlog, clog, slog, mml, tlen; /* 0: the level's (mml 0: 6) */
    int api;      /* 0: ZSTD_compress_usingCDict per record (the store's way);
                   * 1: ZSTD_CCtx_refCDict once, then ZSTD_compress2 */
    int lit;      /* api 1: ZSTD_c_literalCompressionMode (ZSTD_ps_*) */
    int attach;   /* api 1: ZSTD_c_forceAttachDict (ZSTD_dict*) */
    int nodictid; /* api 1: no dictionary id in the frame header */
    int prefix;   /* api 1, copy: the CDict made by reference over a copy of the
                   * dictionary that each record is copied right after, so
                   * that zstd sees the record continue the dictionary's
                   * window (its match finder for a plain prefix instead of
                   * the one for a separate dictionary) */
    int batch;    /* api 1: this many consecutive records concatenated into
                   * one frame (a format the store does not have: what
                   * several records per frame would cost and save) */
    int nodict;   /* api 1: no dictionary */
} setting;

static const setting settings[] = {
    {"L3 mm6 (store before)", 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
    {"L3 mm5 (level's own)", 3, 0, 0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0},
    {"L3 mm6 compress2 no dictID", 3, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0, 0},
    {"L3 mm6 compress2", 3, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0},
    {"L3 mm6 lit raw", 3, 0, 0, 0, 0, 0, 0, 1, ZSTD_ps_disable, 0, 0, 0, 0, 0},
    {"L3 mm7", 3, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0},
    {"L3 mm6 h14c14", 3, 0, 14, 14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
    {"L3 mm6 copy h12c12", 3, 0, 12, 12, 0, 0, 0, 1, 0, ZSTD_dictForceCopy, 0, 0, 0, 0},
    {"L3 mm6 copy h14c14", 3, 0, 14, 14, 0, 0, 0, 1, 0, ZSTD_dictForceCopy, 0, 0, 0, 0},
    {"L3 mm6 load h12c12", 3, 0, 12, 12, 0, 0, 0, 1, 0, ZSTD_dictForceLoad, 0, 0, 0, 0},
    {"L1 mm6 (fast)", 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
    {"L1 mm6 h12", 1, 0, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
    {"L1 mm6 copy h12", 1, 0, 12, 0, 0, 0, 0, 1, 0, ZSTD_dictForceCopy, 0, 0, 0, 0},
    {"L1 mm6 copy h14", 1, 0, 14, 0, 0, 0, 0, 1, 0, ZSTD_dictForceCopy, 0, 0, 0, 0},
    {"L1 mm6 lit raw", 1, 0, 0, 0, 0, 0, 0, 1, ZSTD_ps_disable, 0, 0, 0, 0, 0},
    {"L-1 mm6", -1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
    {"L-1 mm6 lit huf", -1, 0, 0, 0, 0, 0, 0, 1, ZSTD_ps_enable, 0, 0, 0, 0, 0},
    {"L-1 mm6 copy h12 lit huf", -1, 0, 12, 0, 0, 0, 0, 1, ZSTD_ps_enable, ZSTD_dictForceCopy,
     0, 0, 0, 0},
    {"L-1 mm6 copy h12", -1, 0, 12, 0, 0, 0, 0, 1, 0, ZSTD_dictForceCopy, 0, 0, 0, 0},
    {"L-2 mm6", -2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
    {"L-3 mm6", -3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
    {"L-5 mm6", -5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
    {"L-7 mm6", -7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
    {"prefix L1 mm6 h10", 1, 0, 10, 0, 0, 0, 0, 1, 0, ZSTD_dictForceCopy, 0, 1, 0, 0},
    {"prefix L1 mm6 h11", 1, 0, 11, 0, 0, 0, 0, 1, 0, ZSTD_dictForceCopy, 0, 1, 0, 0},
    {"prefix L1 mm6 h12", 1, 0, 12, 0, 0, 0, 0, 1, 0, ZSTD_dictForceCopy, 0, 1, 0, 0},
    {"prefix L1 mm6 h13", 1, 0, 13, 0, 0, 0, 0, 1, 0, ZSTD_dictForceCopy, 0, 1, 0, 0},
    {"prefix L1 mm6 h14", 1, 0, 14, 0, 0, 0, 0, 1, 0, ZSTD_dictForceCopy, 0, 1, 0, 0},
    {"prefix L1 mm5 h12", 1, 0, 12, 0, 0, 5, 0, 1, 0, ZSTD_dictForceCopy, 0, 1, 0, 0},
    {"prefix L3 mm6 h11c11", 3, 0, 11, 11, 0, 0, 0, 1, 0, ZSTD_dictForceCopy, 0, 1, 0, 0},
    {"prefix L3 mm6 h12c12", 3, 0, 12, 12, 0, 0, 0, 1, 0, ZSTD_dictForceCopy, 0, 1, 0, 0},
    {"prefix L3 mm6 h13c12", 3, 0, 13, 12, 0, 0, 0, 1, 0, ZSTD_dictForceCopy, 0, 1, 0, 0},
    {"prefix L-1 mm6 h12", -1, 0, 12, 0, 0, 0, 0, 1, 0, ZSTD_dictForceCopy, 0, 1, 0, 0},
    {"prefix L-1 mm6 h12 lit huf", -1, 0, 12, 0, 0, 0, 0, 1, ZSTD_ps_enable, ZSTD_dictForceCopy,
     0, 1, 0, 0},
    {"batch 16 L3 mm6 attach", 3, 0, 0, 0, 0, 0, 0, 1, 0, ZSTD_dictForceAttach, 0, 0, 16, 0},
    {"batch 16 L1 mm6 attach", 1, 0, 0, 0, 0, 0, 0, 1, 0, ZSTD_dictForceAttach, 0, 0, 16, 0},
    {"batch 16 L3 no dict", 3, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 16, 1},
    {"batch 16 L1 no dict", 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 16, 1},
};
#define NSETTINGS (sizeof settings / sizeof settings[0])

/* A workload's records as the writer compressed them. */
typedef struct corpus {
    const char *name;
    uint8_t **data;
    size_t *size;
    size_t n, cap;
    size_t ntraces; /* trace records compressed with the dictionary: the first
                     * records; figures "per trace" divide by this */
    size_t stored; /* bytes of the records as the store holds them */
    uint8_t *dict;
    size_t dictsize;
} corpus;

/* A setting made ready: its dictionary and contexts. */
typedef struct zctx {
    ZSTD_CCtx *cctx;
    ZSTD_CDict *cdict;
    ZSTD_DCtx *dctx;
    ZSTD_DDict *ddict; /* by reference over dbuf */
    uint8_t *dbuf;     /* the dictionary, then the output space */
    uint8_t *cbuf;     /* prefix: the dictionary, then the input space;
                        * batch: the input space */
    size_t dictsize;
    /* batch: the groups of records, their frames one after the other */
    size_t ngroups, *gfirst, *gcount, *goff, *gsize;
    uint8_t *gout;
} zctx;

#define OUT_SPACE ((size_t)1 << 20)

static double cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int corpus_add(corpus *c, const uint8_t *p, size_t n)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 1024;
        uint8_t **d = realloc(c->data, cap * sizeof *d);
        size_t *s = d ? realloc(c->size, cap * sizeof *s) : NULL;
        if (d == NULL || s == NULL) {
            if (d != NULL)
                c->data = d;
            return -1;
        }
        c->data = d;
        c->size = s;
        c->cap = cap;
    }
    if ((c->data[c->n] = malloc(n ? n : 1)) == NULL)
        return -1;
    memcpy(c->data[c->n], p, n);
    c->size[c->n++] = n;
    return 0;
}

static void corpus_free(corpus *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->data[i]);
    free(c->data);
    free(c->size);
    free(c->dict);
}

/* Record `n` traces of `w` into DIR/deja.store unless it is there. */
static int record(const char *dir, bench_workload *w, size_t n)
{
    char path[4200];
    bench_thread t;
    bench_sink *s = NULL;
    const bench_sink_ops *ops = &bench_sink_deja;
    FILE *f;
    int rc = -1;

    snprintf(path, sizeof path, "%s/deja.store", dir);
    if ((f = fopen(path, "r")) != NULL || bench_mkdirs(dir) != 0) {
        if (f != NULL)
            fclose(f);
        return f != NULL ? 0 : -1;
    }
    if (bench_thread_init(&t, w, 1) != 0)
        return -1;
    if (ops->open(&s, dir, w) != 0) {
        bench_thread_free(&t);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        bench_record r;
        t.pool_index = i % w->nrecs;
        bench_record_stamp(&r, &w->recs[t.pool_index], t.stamp, i);
        if (ops->record(s, &t, &r) != 0)
            goto cleanup;
    }
    if (ops->finish(s) == 0)
        rc = 0;
cleanup:
    ops->close(s);
    bench_thread_free(&t);
    return rc;
}

/* Add every dictionary-compressed record of `dbi` to `c` (trace values:
 * their record after the refs). */
static int take_records(deja_store *s, MDB_txn *txn, MDB_dbi dbi, int traces, corpus *c)
{
    MDB_cursor *cur = NULL;
    MDB_val k, v;
    deja__buf out = {0};
    int rc = mdb_cursor_open(txn, dbi, &cur);

    if (rc != 0)
        return -1;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const uint8_t *refs, *rec = v.mv_data;
        size_t nrefs, nrec = v.mv_size;

        if (traces &&
            deja__trace_value_split(v.mv_data, v.mv_size, &refs, &nrefs, &rec, &nrec) != 0)
            break;
        if (nrec < DEJA__RECORD_HEADER || rec[0] != DEJA__RECORD_MAGIC ||
            rec[1] != DEJA__CODEC_ZSTD || (rec[2] | rec[3] | rec[4] | rec[5]) == 0)
            continue; /* raw, not compressed with the dictionary, or not a record */
        if (deja__record_decode_buf(s, txn, rec, nrec, "record", &out) != 0 ||
            corpus_add(c, out.data, out.size) != 0)
            break;
        c->stored += nrec - DEJA__RECORD_HEADER;
        if (traces)
            c->ntraces++;
    }
    mdb_cursor_close(cur);
    deja__buf_free(&out);
    return rc == MDB_NOTFOUND ? 0 : -1;
}

/* Load the records and the dictionary of DIR/deja.store into `c`. */
static int load(const char *dir, corpus *c)
{
    char path[4200];
    deja_store *s = NULL;
    MDB_txn *txn = NULL;
    uint32_t id = 0;
    void *ddict;
    int rc = -1;

    snprintf(path, sizeof path, "%s/deja.store", dir);
    if (deja_store_open(&s, path, DEJA_STORE_READONLY) != 0)
        return -1;
    if (deja__rtxn_begin(s, &txn) != 0)
        goto cleanup;
    if (deja__meta_u32(s, txn, "dict.current", &id, NULL) != 0 || id == 0 ||
        deja__dict_get(s, txn, id, NULL, &ddict) != 0)
        goto cleanup;
    for (size_t i = 0; i < s->ndicts; i++)
        if (s->dicts[i]->id == id && (c->dict = malloc(s->dicts[i]->size)) != NULL) {
            memcpy(c->dict, s->dicts[i]->content, s->dicts[i]->size);
            c->dictsize = s->dicts[i]->size;
        }
    if (c->dict == NULL || take_records(s, txn, s->traces, 1, c) != 0 ||
        take_records(s, txn, s->blobs, 0, c) != 0 ||
        (s->has_chunks && take_records(s, txn, s->chunks, 0, c) != 0))
        goto cleanup;
    rc = 0;
cleanup:
    if (txn != NULL)
        deja__rtxn_end(s, txn);
    deja_store_close(s);
    return rc;
}

static void zctx_free(zctx *z)
{
    ZSTD_freeCCtx(z->cctx);
    ZSTD_freeCDict(z->cdict);
    ZSTD_freeDCtx(z->dctx);
    ZSTD_freeDDict(z->ddict);
    free(z->dbuf);
    free(z->cbuf);
    free(z->gfirst);
    free(z->gcount);
    free(z->goff);
    free(z->gsize);
    free(z->gout);
    memset(z, 0, sizeof *z);
}

#define SET(p, v)                                                                               \
    do {                                                                                        \
        if (ZSTD_isError(ZSTD_CCtx_setParameter(z->cctx, (p), (v))))                           \
            goto fail;                                                                          \
    } while (0)

static int zctx_init(zctx *z, const setting *st, const corpus *c)
{
    ZSTD_compressionParameters cp = ZSTD_getCParams(st->level, 0, c->dictsize);

    memset(z, 0, sizeof *z);
    if (st->strategy)
        cp.strategy = st->strategy;
    if (st->hlog)
        cp.hashLog = st->hlog;
    if (st->clog)
        cp.chainLog = st->clog;
    if (st->slog)
        cp.searchLog = st->slog;
    if (st->tlen)
        cp.targetLength = st->tlen;
    cp.minMatch = st->mml ? st->mml : STORE_MIN_MATCH;
    z->cctx = ZSTD_createCCtx();
    z->dctx = ZSTD_createDCtx();
    if (st->prefix) {
        if ((z->cbuf = malloc(c->dictsize + OUT_SPACE)) == NULL)
            goto fail;
        memcpy(z->cbuf, c->dict, c->dictsize);
        z->cdict = ZSTD_createCDict_advanced(z->cbuf, c->dictsize, ZSTD_dlm_byRef, ZSTD_dct_auto,
                                             cp, ZSTD_defaultCMem);
    } else {
        z->cdict = ZSTD_createCDict_advanced(c->dict, c->dictsize, ZSTD_dlm_byCopy, ZSTD_dct_auto,
                                             cp, ZSTD_defaultCMem);
    }
    z->dbuf = malloc(c->dictsize + OUT_SPACE);
    z->dictsize = c->dictsize;
    if (z->cctx == NULL || z->dctx == NULL || z->cdict == NULL || z->dbuf == NULL)
        goto fail;
    memcpy(z->dbuf, c->dict, c->dictsize);
    if ((z->ddict = ZSTD_createDDict_byReference(z->dbuf, c->dictsize)) == NULL)
        goto fail;
    if (st->api == 1) {
        SET(ZSTD_c_checksumFlag, 0);
        SET(ZSTD_c_contentSizeFlag, 1);
        SET(ZSTD_c_dictIDFlag, !st->nodictid);
        SET(ZSTD_c_strategy, (int)cp.strategy);
        SET(ZSTD_c_windowLog, (int)cp.windowLog);
        SET(ZSTD_c_hashLog, (int)cp.hashLog);
        SET(ZSTD_c_chainLog, (int)cp.chainLog);
        SET(ZSTD_c_searchLog, (int)cp.searchLog);
        SET(ZSTD_c_minMatch, (int)cp.minMatch);
        SET(ZSTD_c_targetLength, (int)cp.targetLength);
        if (st->lit)
            SET(ZSTD_c_literalCompressionMode, st->lit);
        if (st->attach)
            SET(ZSTD_c_forceAttachDict, st->attach);
        if (!st->nodict && ZSTD_isError(ZSTD_CCtx_refCDict(z->cctx, z->cdict)))
            goto fail;
    }
    if (st->batch > 1) {
        size_t raw = 0, g = 0, used = 0;

        for (size_t i = 0; i < c->n; i++)
            raw += c->size[i];
        z->cbuf = malloc(OUT_SPACE);
        z->gout = malloc(ZSTD_compressBound(raw) + c->n * 64);
        z->gfirst = calloc(c->n, sizeof *z->gfirst);
        z->gcount = calloc(c->n, sizeof *z->gcount);
        z->goff = calloc(c->n, sizeof *z->goff);
        z->gsize = calloc(c->n, sizeof *z->gsize);
        if (z->cbuf == NULL || z->gout == NULL || z->gfirst == NULL || z->gcount == NULL ||
            z->goff == NULL || z->gsize == NULL)
            goto fail;
        for (size_t i = 0; i < c->n; i++) {
            if (c->size[i] > OUT_SPACE)
                goto fail;
            if (i == 0 || z->gcount[g] == (size_t)st->batch || used + c->size[i] > OUT_SPACE) {
                g = i == 0 ? 0 : g + 1;
                z->gfirst[g] = i;
                used = 0;
            }
            z->gcount[g]++;
            used += c->size[i];
        }
        z->ngroups = g + 1;
    }
    return 0;
fail:
    zctx_free(z);
    return -1;
}

static size_t compress_one(zctx *z, const setting *st, uint8_t *dst, size_t cap,
                           const uint8_t *src, size_t n)
{
    if (st->prefix && n <= OUT_SPACE) {
        memcpy(z->cbuf + z->dictsize, src, n);
        return ZSTD_compress2(z->cctx, dst, cap, z->cbuf + z->dictsize, n);
    }
    if (st->api == 1)
        return ZSTD_compress2(z->cctx, dst, cap, src, n);
    return ZSTD_compress_usingCDict(z->cctx, dst, cap, src, n, z->cdict);
}

/* Compress every record of `c` into frames[i] (cap each `fcap`), giving
 * the sizes in fsize (0 where the store would keep the record raw). The
 * callgrind dump brackets only the calls into zstd's compressor. */
static int compress_all(zctx *z, const setting *st, const corpus *c, uint8_t **frames,
                        size_t *fsize)
{
    for (size_t i = 0; i < c->n; i++) {
        size_t n = compress_one(z, st, frames[i], ZSTD_compressBound(c->size[i]), c->data[i],
                                c->size[i]);
        if (ZSTD_isError(n))
            return -1;
        fsize[i] = n < c->size[i] ? n : 0;
    }
    return 0;
}

static int decompress_all(zctx *z, const corpus *c, uint8_t **frames, const size_t *fsize)
{
    for (size_t i = 0; i < c->n; i++) {
        if (fsize[i] == 0)
            continue;
        size_t n;
        if (c->size[i] <= OUT_SPACE)
            n = ZSTD_decompress_usingDDict(z->dctx, z->dbuf + z->dictsize, c->size[i], frames[i],
                                           fsize[i], z->ddict);
        else
            return -1;
        if (n != c->size[i])
            return -1;
    }
    return 0;
}

/* batch: compress each group of records into one frame. */
static int batch_compress(zctx *z, const corpus *c)
{
    size_t off = 0;

    for (size_t g = 0; g < z->ngroups; g++) {
        size_t used = 0, n;

        for (size_t i = z->gfirst[g]; i < z->gfirst[g] + z->gcount[g]; i++) {
            memcpy(z->cbuf + used, c->data[i], c->size[i]);
            used += c->size[i];
        }
        n = ZSTD_compress2(z->cctx, z->gout + off, ZSTD_compressBound(used), z->cbuf, used);
        if (ZSTD_isError(n))
            return -1;
        z->goff[g] = off;
        z->gsize[g] = n;
        off += n;
    }
    return 0;
}

/* batch: decompress every group's frame; with `check`, compare it with
 * its records. */
static int batch_decompress(zctx *z, const corpus *c, const setting *st, int check)
{
    for (size_t g = 0; g < z->ngroups; g++) {
        size_t want = 0, n, at = 0;

        for (size_t i = z->gfirst[g]; i < z->gfirst[g] + z->gcount[g]; i++)
            want += c->size[i];
        if (st->nodict)
            n = ZSTD_decompressDCtx(z->dctx, z->dbuf + z->dictsize, OUT_SPACE,
                                    z->gout + z->goff[g], z->gsize[g]);
        else
            n = ZSTD_decompress_usingDDict(z->dctx, z->dbuf + z->dictsize, OUT_SPACE,
                                           z->gout + z->goff[g], z->gsize[g], z->ddict);
        if (n != want)
            return -1;
        for (size_t i = z->gfirst[g]; check && i < z->gfirst[g] + z->gcount[g]; i++) {
            if (memcmp(z->dbuf + z->dictsize + at, c->data[i], c->size[i]) != 0)
                return -1;
            at += c->size[i];
        }
    }
    return 0;
}

/* Decompress every frame again and compare it with its record. */
static int verify_all(zctx *z, const corpus *c, uint8_t **frames, const size_t *fsize)
{
    for (size_t i = 0; i < c->n; i++)
        if (fsize[i] != 0 &&
            (ZSTD_decompress_usingDDict(z->dctx, z->dbuf + z->dictsize, c->size[i], frames[i],
                                        fsize[i], z->ddict) != c->size[i] ||
             memcmp(z->dbuf + z->dictsize, c->data[i], c->size[i]) != 0))
            return -1;
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int measure(corpus *c, unsigned rounds)
{
    double(*ct)[64] = calloc(NSETTINGS, sizeof *ct), (*dt)[64] = calloc(NSETTINGS, sizeof *dt);
    size_t *bytes = calloc(NSETTINGS, sizeof *bytes), *tbytes = calloc(NSETTINGS, sizeof *tbytes);
    uint8_t **frames = calloc(c->n, sizeof *frames);
    size_t *fsize = calloc(c->n, sizeof *fsize);
    size_t raw = 0;
    int rc = -1;

    if (ct == NULL || dt == NULL || bytes == NULL || tbytes == NULL || frames == NULL ||
        fsize == NULL)
        goto cleanup;
    for (size_t i = 0; i < c->n; i++) {
        raw += c->size[i];
        if ((frames[i] = malloc(ZSTD_compressBound(c->size[i]))) == NULL)
            goto cleanup;
    }
    for (unsigned r = 0; r < rounds; r++)
        for (size_t k = 0; k < NSETTINGS; k++) {
            const setting *st = &settings[(k + r) % NSETTINGS];
            const size_t si = (k + r) % NSETTINGS;
            char label[160];
            zctx z;
            double t0, t1, t2;

            if (zctx_init(&z, st, c) != 0) {
                fprintf(stderr, "deja-bench-zparams: cannot set up %s\n", st->name);
                goto cleanup;
            }
            if (r == 0)
                CALLGRIND_ZERO_STATS;
            t0 = cpu_ns();
            if (st->batch > 1 ? batch_compress(&z, c) != 0
                              : compress_all(&z, st, c, frames, fsize) != 0) {
                fprintf(stderr, "deja-bench-zparams: %s: compression failed\n", st->name);
                zctx_free(&z);
                goto cleanup;
            }
            if (r == 0) {
                snprintf(label, sizeof label, "c|%s|%s|%zu", c->name, st->name, c->ntraces);
                CALLGRIND_DUMP_STATS_AT(label);
            }
            t1 = cpu_ns();
            if (st->batch > 1 ? batch_decompress(&z, c, st, 0) != 0
                              : decompress_all(&z, c, frames, fsize) != 0) {
                fprintf(stderr, "deja-bench-zparams: %s: a record does not decode\n", st->name);
                zctx_free(&z);
                goto cleanup;
            }
            t2 = cpu_ns();
            if (r == 0) {
                snprintf(label, sizeof label, "d|%s|%s|%zu", c->name, st->name, c->ntraces);
                CALLGRIND_DUMP_STATS_AT(label);
            }
            if (st->batch > 1 ? batch_decompress(&z, c, st, 1) != 0
                              : verify_all(&z, c, frames, fsize) != 0) {
                fprintf(stderr, "deja-bench-zparams: %s: wrong bytes back\n", st->name);
                zctx_free(&z);
                goto cleanup;
            }
            ct[si][r] = (t1 - t0) / c->ntraces;
            dt[si][r] = (t2 - t1) / c->ntraces;
            if (r == 0 && st->batch > 1) {
                for (size_t g = 0; g < z.ngroups; g++) {
                    bytes[si] += DEJA__RECORD_HEADER + z.gsize[g];
                    if (z.gfirst[g] < c->ntraces)
                        tbytes[si] += DEJA__RECORD_HEADER + z.gsize[g];
                }
            } else if (r == 0) {
                for (size_t i = 0; i < c->n; i++) {
                    bytes[si] += DEJA__RECORD_HEADER + (fsize[i] ? fsize[i] : c->size[i]);
                    if (i < c->ntraces)
                        tbytes[si] += DEJA__RECORD_HEADER + (fsize[i] ? fsize[i] : c->size[i]);
                }
            }
            zctx_free(&z);
        }
    printf("\n%s: %zu traces, %zu records compressed with the dictionary (%zu B), %.0f raw B "
           "per trace, the store's own %.1f compressed B per trace\n",
           c->name, c->ntraces, c->n, c->dictsize, (double)raw / c->ntraces,
           (double)(c->stored + c->n * DEJA__RECORD_HEADER) / c->ntraces);
    printf("%-28s %12s %12s %22s %22s\n", "setting", "B/trace", "trace rec B",
           "compress us/trace", "decompress us/trace");
    for (size_t k = 0; k < NSETTINGS; k++) {
        qsort(ct[k], rounds, sizeof(double), cmp_double);
        qsort(dt[k], rounds, sizeof(double), cmp_double);
        printf("%-28s %12.1f %12.1f %10.2f–%-10.2f %10.2f–%-10.2f\n", settings[k].name,
               (double)bytes[k] / c->ntraces, (double)tbytes[k] / c->ntraces, ct[k][0] / 1e3,
               ct[k][rounds / 2] / 1e3, dt[k][0] / 1e3, dt[k][rounds / 2] / 1e3);
    }
    rc = 0;
cleanup:
    for (size_t i = 0; frames != NULL && i < c->n; i++)
        free(frames[i]);
    free(frames);
    free(fsize);
    free(ct);
    free(dt);
    free(bytes);
    free(tbytes);
    return rc;
}

int main(int argc, char **argv)
{
    size_t n = argc > 2 ? strtoul(argv[2], NULL, 10) : 2000;
    unsigned rounds = argc > 3 ? (unsigned)strtoul(argv[3], NULL, 10) : 5;
    static const char *names[3] = {"small", "chat", "tensor"};
    int rc = 0;

    if (argc < 2 || argc > 4 || n == 0 || rounds == 0 || rounds > 64) {
        fprintf(stderr, "usage: deja-bench-zparams DIR [N [ROUNDS]]\n");
        return 2;
    }
    for (int wi = 0; wi < 3 && rc == 0; wi++) {
        bench_workload w;
        corpus c = {0};
        char dir[4000];
        int made;

        if (wi == 0)
            made = bench_workload_small(&w, 10000, 0x5eed0001);
        else if (wi == 1)
            made = bench_workload_chat(&w, 1000, 100, 0x5eed0002);
        else
            made = bench_workload_tensor(&w, 1000, 50, 0x5eed0003);
        if (made != 0) {
            fprintf(stderr, "deja-bench-zparams: out of memory\n");
            return 2;
        }
        snprintf(dir, sizeof dir, "%s/%s", argv[1], names[wi]);
        c.name = names[wi];
        if (record(dir, &w, wi == 2 ? n / 4 : n) != 0 || load(dir, &c) != 0 || c.ntraces == 0) {
            fprintf(stderr, "deja-bench-zparams: cannot record or load %s\n", dir);
            rc = 2;
        } else if (measure(&c, rounds) != 0) {
            rc = 2;
        }
        corpus_free(&c);
        bench_workload_free(&w);
    }
    return rc;
}
