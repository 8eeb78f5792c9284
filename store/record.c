/*
 * store/record.c -- records: a 10-byte header (magic 'D', codec, u32
 * dictionary id, u32 raw size, little-endian) then the payload, raw or one
 * zstd frame; and the trained dictionaries that traces and environments are
 * compressed with.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zdict.h>
/* For ZSTD_createDDict_byReference (in zstd's advanced API since 1.0,
 * exported by the shared library): see decoder below. */
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>

#include "store/store_internal.h"

#define LEVEL 3
#define DCTX_POOL_MAX 64

/* Shortest match the compressor emits with a dictionary (level 3 alone
 * says 5). Decoding costs per match, and the records are short text:
 * measured on the bench's workloads (README, Performance), 6 takes 5 % of
 * the instructions off a small read for 3 bytes more per trace on disk
 * (chat 2, tensor 17), at the same compression speed; 7 takes 9 % but
 * costs 20 % more bytes for small. */
#define MIN_MATCH 6

/* A decoder's output space: records of at most this many raw bytes
 * compressed with a dictionary are decompressed right after a copy of that
 * dictionary (see decoder). */
#define DEC_OUT ((size_t)256 << 10)
/* Dictionaries larger than this (never written by deja) are not copied. */
#define DEC_DICT_MAX ((size_t)1 << 20)

/* A decompression context, and its copy of one dictionary followed by the
 * output space. zstd treats output written right after the dictionary's
 * content as one continuous history, so matches into the dictionary take
 * its fast path for matches in the output instead of the path for
 * matches in a separate dictionary: measured on the small workload's
 * records (2,281 raw bytes, 32 KiB dictionary), 30.4k instructions per
 * record instead of 35.8k, and ~30 % less time. Only the dictionary's
 * entropy tables are rebuilt for the copy, once per decoder. */
typedef struct decoder {
    ZSTD_DCtx *dctx;
    uint32_t dict_id; /* the dictionary copied into `buf`; 0 none */
    ZSTD_DDict *ddict; /* over the copy, by reference */
    uint8_t *buf;      /* the dictionary, then DEC_OUT bytes at `out` */
    uint8_t *out;
} decoder;

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_u32(uint8_t *p, uint32_t x)
{
    p[0] = (uint8_t)x;
    p[1] = (uint8_t)(x >> 8);
    p[2] = (uint8_t)(x >> 16);
    p[3] = (uint8_t)(x >> 24);
}

/* Find dictionary `id` in the cache. Caller holds store->lock. */
static deja__dict *dict_find(deja_store *store, uint32_t id)
{
    for (size_t i = 0; i < store->ndicts; i++)
        if (store->dicts[i]->id == id)
            return store->dicts[i];
    return NULL;
}

/* Find dictionary `id`, loading it from meta in `txn` the first time, and
 * its compression form too when `with_cdict`. Entries live until close. */
static int dict_load(deja_store *store, MDB_txn *txn, uint32_t id, int with_cdict,
                     deja__dict **out)
{
    char key[32];
    MDB_val k, v;
    deja__dict *d, **grown;
    int rc = 0;

    pthread_mutex_lock(&store->lock);
    d = dict_find(store, id);
    if (d != NULL && (!with_cdict || d->cdict != NULL))
        goto done;
    snprintf(key, sizeof key, "dict/%u", id);
    k.mv_size = strlen(key);
    k.mv_data = key;
    rc = mdb_get(txn, store->meta, &k, &v);
    if (rc == MDB_NOTFOUND) {
        rc = deja__error_set(DEJA_ECORRUPT, "dictionary %u is not in the store", id);
        goto done;
    }
    if (rc != 0) {
        rc = deja__mdb_error(rc, key);
        goto done;
    }
    if (d == NULL) {
        d = calloc(1, sizeof *d);
        grown = d ? realloc(store->dicts, (store->ndicts + 1) * sizeof *grown) : NULL;
        if (grown == NULL) {
            free(d);
            rc = deja__error_set(DEJA_ENOMEM, "dictionary %u: out of memory", id);
            goto done;
        }
        store->dicts = grown;
        d->id = id;
        d->ddict = ZSTD_createDDict(v.mv_data, v.mv_size);
        d->content = malloc(v.mv_size > 0 ? v.mv_size : 1);
        if (d->ddict == NULL || d->content == NULL) {
            ZSTD_freeDDict(d->ddict);
            free(d->content);
            free(d);
            rc = deja__error_set(DEJA_ECORRUPT, "dictionary %u cannot be loaded", id);
            goto done;
        }
        memcpy(d->content, v.mv_data, v.mv_size);
        d->size = v.mv_size;
        store->dicts[store->ndicts++] = d;
    }
    if (with_cdict && d->cdict == NULL) {
        ZSTD_compressionParameters cp = ZSTD_getCParams(LEVEL, 0, v.mv_size);

        cp.minMatch = MIN_MATCH;
        d->cdict = ZSTD_createCDict_advanced(v.mv_data, v.mv_size, ZSTD_dlm_byCopy, ZSTD_dct_auto,
                                             cp, ZSTD_defaultCMem);
        if (d->cdict == NULL) {
            rc = deja__error_set(DEJA_ECORRUPT, "dictionary %u cannot be loaded", id);
            goto done;
        }
    }

done:
    if (rc == 0)
        *out = d;
    pthread_mutex_unlock(&store->lock);
    return rc;
}

/* Give the compression and/or decompression form of dictionary `id`,
 * loading it from meta in `txn` the first time. */
int deja__dict_get(deja_store *store, MDB_txn *txn, uint32_t id, void **cdict, void **ddict)
{
    deja__dict *d = NULL;
    const int rc = dict_load(store, txn, id, cdict != NULL, &d);

    if (rc != 0)
        return rc;
    if (cdict != NULL)
        *cdict = d->cdict;
    if (ddict != NULL)
        *ddict = d->ddict;
    return 0;
}

/* The compression form of dictionary `id`, from the cache or loaded in a
 * read transaction of its own. */
int deja__dict_cdict(deja_store *store, uint32_t id, void **cdict)
{
    deja__dict *d;
    MDB_txn *txn = NULL;
    int rc;

    *cdict = NULL;
    pthread_mutex_lock(&store->lock);
    d = dict_find(store, id);
    if (d != NULL && d->cdict != NULL)
        *cdict = d->cdict;
    pthread_mutex_unlock(&store->lock);
    if (*cdict != NULL)
        return 0;
    rc = deja__rtxn_begin(store, &txn);
    if (rc != 0)
        return rc;
    rc = deja__dict_get(store, txn, id, cdict, NULL);
    deja__rtxn_end(store, txn);
    return rc;
}

/* Compress `size` bytes into a record in `out` (its content replaced). */
int deja__record_encode(deja__wtxn *w, const void *data, size_t size, uint32_t dict_id,
                        deja__buf *out)
{
    void *cdict = NULL;
    int rc;

    if (dict_id != 0) {
        rc = deja__dict_get(w->store, w->txn, dict_id, &cdict, NULL);
        if (rc != 0)
            return rc;
    }
    return deja__record_encode_cctx(w->store->cctx, cdict, cdict != NULL ? dict_id : 0, data, size,
                                    out);
}

/* Compress into a record with a given context and dictionary. */
int deja__record_encode_cctx(void *cctx, void *cdict, uint32_t dict_id, const void *data,
                             size_t size, deja__buf *out)
{
    size_t bound, n;
    int rc;

    if (size > DEJA__MAX_RECORD)
        return deja__error_set(DEJA_ENOMEM, "a record of %zu bytes is beyond the bound of %zu",
                               size, DEJA__MAX_RECORD);
    bound = ZSTD_compressBound(size);
    out->size = 0;
    rc = deja__buf_reserve(out, DEJA__RECORD_HEADER + bound);
    if (rc != 0)
        return rc;
    if (cdict != NULL)
        n = ZSTD_compress_usingCDict(cctx, out->data + DEJA__RECORD_HEADER, bound, data, size,
                                     cdict);
    else
        n = ZSTD_compressCCtx(cctx, out->data + DEJA__RECORD_HEADER, bound, data, size, LEVEL);
    if (ZSTD_isError(n))
        return deja__error_set(DEJA_EIO, "compressing a record: %s", ZSTD_getErrorName(n));
    out->data[0] = DEJA__RECORD_MAGIC;
    if (n >= size) {
        out->data[1] = DEJA__CODEC_RAW;
        put_u32(out->data + 2, 0);
        if (size > 0)
            memcpy(out->data + DEJA__RECORD_HEADER, data, size);
        n = size;
    } else {
        out->data[1] = DEJA__CODEC_ZSTD;
        put_u32(out->data + 2, cdict != NULL ? dict_id : 0);
    }
    put_u32(out->data + 6, (uint32_t)size);
    out->size = DEJA__RECORD_HEADER + n;
    return 0;
}

/* Drop the dictionary copy of `dec`. */
static void decoder_unset(decoder *dec)
{
    ZSTD_freeDDict(dec->ddict);
    free(dec->buf);
    dec->ddict = NULL;
    dec->buf = dec->out = NULL;
    dec->dict_id = 0;
}

static void decoder_free(decoder *dec)
{
    if (dec == NULL)
        return;
    decoder_unset(dec);
    ZSTD_freeDCtx(dec->dctx);
    free(dec);
}

/* Take a decoder from the pool (one holding dictionary `d` if any does),
 * or make one; when `d` is not NULL, copy it in if it is not there yet.
 * NULL when out of memory. If the copy cannot be made the decoder comes
 * back without it (dict_id 0) and still decompresses. */
/* Take from the pool the decoder last given back that holds dictionary
 * `want` (0: none), or when `exact` is 0 and none does, the last one given
 * back; NULL if there is none. */
static decoder *pool_pick(deja_store *store, uint32_t want, int exact)
{
    decoder *dec = NULL;

    pthread_mutex_lock(&store->lock);
    if (store->ndctx_pool > 0) {
        size_t i = exact ? store->ndctx_pool : store->ndctx_pool - 1;

        for (size_t j = store->ndctx_pool; j-- > 0;)
            if (((decoder *)store->dctx_pool[j])->dict_id == want) {
                i = j;
                break;
            }
        if (i < store->ndctx_pool) {
            dec = store->dctx_pool[i];
            store->dctx_pool[i] = store->dctx_pool[--store->ndctx_pool];
        }
    }
    pthread_mutex_unlock(&store->lock);
    return dec;
}

static decoder *decoder_take(deja_store *store, const deja__dict *d)
{
    decoder *dec = pool_pick(store, d != NULL ? d->id : 0, 0);

    if (dec == NULL) {
        dec = calloc(1, sizeof *dec);
        if (dec == NULL || (dec->dctx = ZSTD_createDCtx()) == NULL) {
            free(dec);
            return NULL;
        }
    }
    if (d != NULL && dec->dict_id != d->id && d->size <= DEC_DICT_MAX) {
        decoder_unset(dec);
        dec->buf = malloc(d->size + DEC_OUT);
        if (dec->buf != NULL) {
            memcpy(dec->buf, d->content, d->size);
            dec->ddict = ZSTD_createDDict_byReference(dec->buf, d->size);
        }
        if (dec->ddict == NULL) {
            decoder_unset(dec);
        } else {
            dec->dict_id = d->id;
            dec->out = dec->buf + d->size;
        }
    }
    return dec;
}

/* Return a decoder to the pool (freed when it is full). */
static void decoder_give(deja_store *store, decoder *dec)
{
    pthread_mutex_lock(&store->lock);
    if (store->dctx_pool == NULL)
        store->dctx_pool = calloc(DCTX_POOL_MAX, sizeof *store->dctx_pool);
    if (store->dctx_pool != NULL && store->ndctx_pool < DCTX_POOL_MAX) {
        store->dctx_pool[store->ndctx_pool++] = dec;
        dec = NULL;
    }
    pthread_mutex_unlock(&store->lock);
    decoder_free(dec);
}

/* A bare decompression context for store/delta.c: the one of a pooled
 * decoder that holds no dictionary copy (so that none is thrown away), or
 * a new one. */
void *deja__dctx_take(deja_store *store)
{
    decoder *dec = pool_pick(store, 0, 1);
    ZSTD_DCtx *d;

    if (dec == NULL)
        return ZSTD_createDCtx();
    d = dec->dctx;
    free(dec);
    return d;
}

/* Give back a context from deja__dctx_take, its parameters reset. */
void deja__dctx_give(deja_store *store, void *dctx)
{
    decoder *dec;

    if (dctx == NULL)
        return;
    ZSTD_DCtx_reset(dctx, ZSTD_reset_session_and_parameters);
    dec = calloc(1, sizeof *dec);
    if (dec == NULL) {
        ZSTD_freeDCtx(dctx);
        return;
    }
    dec->dctx = dctx;
    decoder_give(store, dec);
}

/* Check the header of record `rec` (`size` bytes), bounding every size
 * read from it, and find its dictionary: the raw size in `*raw`, the
 * dictionary (NULL when none) in `*dict`. */
static int record_open(deja_store *store, MDB_txn *txn, const uint8_t *p, size_t size,
                       const char *what, uint32_t *raw, deja__dict **dict)
{
    uint32_t dict_id;
    unsigned long long fcs;
    size_t psize;
    int rc;

    *dict = NULL;
    if (size < DEJA__RECORD_HEADER || p[0] != DEJA__RECORD_MAGIC)
        return deja__error_set(DEJA_ECORRUPT, "%s: record is truncated or has no header", what);
    dict_id = get_u32(p + 2);
    *raw = get_u32(p + 6);
    psize = size - DEJA__RECORD_HEADER;
    if (*raw > DEJA__MAX_RECORD)
        return deja__error_set(DEJA_ECORRUPT, "%s: record claims %u bytes, beyond the bound", what,
                               *raw);
    if (p[1] == DEJA__CODEC_RAW) {
        if (dict_id != 0 || psize != *raw)
            return deja__error_set(DEJA_ECORRUPT, "%s: raw record has %zu bytes, header says %u",
                                   what, psize, *raw);
    } else if (p[1] == DEJA__CODEC_ZSTD) {
        fcs = ZSTD_getFrameContentSize(p + DEJA__RECORD_HEADER, psize);
        if (fcs != *raw)
            return deja__error_set(
                DEJA_ECORRUPT, "%s: compressed frame does not hold the %u bytes the header says",
                what, *raw);
        if (dict_id != 0) {
            rc = dict_load(store, txn, dict_id, 0, dict);
            if (rc != 0)
                return deja__error_wrap(rc, "%s: ", what);
        }
    } else {
        return deja__error_set(DEJA_ECORRUPT, "%s: record has unknown codec %u", what, p[1]);
    }
    return 0;
}

/* Decompress the zstd record opened by record_open with `dec`: into its
 * output space after its dictionary copy when it holds `dict` and the
 * record fits (`*at` set to it), else into `buf` (when not NULL). 0, or
 * DEJA_ECORRUPT; 1 when the record needs `buf` and none was given. */
static int record_unzip(decoder *dec, const uint8_t *p, size_t size, const char *what,
                        uint32_t raw, const deja__dict *dict, uint8_t *buf, const uint8_t **at)
{
    const size_t psize = size - DEJA__RECORD_HEADER;
    uint8_t *dst = buf;
    size_t n;

    if (dict != NULL && dec->dict_id == dict->id && raw <= DEC_OUT) {
        dst = dec->out;
        n = ZSTD_decompress_usingDDict(dec->dctx, dst, raw, p + DEJA__RECORD_HEADER, psize,
                                       dec->ddict);
    } else if (buf == NULL) {
        return 1;
    } else if (dict != NULL) {
        n = ZSTD_decompress_usingDDict(dec->dctx, dst, raw, p + DEJA__RECORD_HEADER, psize,
                                       dict->ddict);
    } else {
        n = ZSTD_decompressDCtx(dec->dctx, dst, raw, p + DEJA__RECORD_HEADER, psize);
    }
    if (ZSTD_isError(n) || n != raw)
        return deja__error_set(DEJA_ECORRUPT, "%s: record does not decompress: %s", what,
                               ZSTD_isError(n) ? ZSTD_getErrorName(n) : "wrong size");
    *at = dst;
    return 0;
}

/* Write the `raw` bytes of the record opened by record_open into `buf`. */
static int record_fill(deja_store *store, const uint8_t *p, size_t size, const char *what,
                       uint32_t raw, const deja__dict *dict, uint8_t *buf)
{
    const uint8_t *at = NULL;
    decoder *dec;
    int rc;

    if (p[1] == DEJA__CODEC_RAW) {
        if (raw > 0)
            memcpy(buf, p + DEJA__RECORD_HEADER, raw);
        return 0;
    }
    dec = decoder_take(store, dict);
    if (dec == NULL)
        return deja__error_set(DEJA_ENOMEM, "%s: out of memory", what);
    rc = record_unzip(dec, p, size, what, raw, dict, buf, &at);
    if (rc == 0 && at != buf && raw > 0)
        memcpy(buf, at, raw);
    decoder_give(store, dec);
    return rc;
}

/* Decode a record and hand its bytes to `use`; see store_internal.h. */
int deja__record_visit(deja_store *store, MDB_txn *txn, const void *rec, size_t size,
                       const char *what, int (*use)(const uint8_t *data, size_t size, void *arg),
                       void *arg, int *used)
{
    const uint8_t *p = rec, *at = NULL;
    deja__dict *dict = NULL;
    uint8_t *buf = NULL;
    uint32_t raw = 0;
    decoder *dec;
    int rc;

    if (used != NULL)
        *used = 0;
    rc = record_open(store, txn, p, size, what, &raw, &dict);
    if (rc != 0)
        return rc;
    if (p[1] == DEJA__CODEC_RAW) {
        if (used != NULL)
            *used = 1;
        return use(p + DEJA__RECORD_HEADER, raw, arg);
    }
    dec = decoder_take(store, dict);
    if (dec == NULL)
        return deja__error_set(DEJA_ENOMEM, "%s: out of memory", what);
    rc = record_unzip(dec, p, size, what, raw, dict, NULL, &at);
    if (rc == 1) {
        buf = malloc(raw > 0 ? raw : 1);
        rc = buf == NULL ? deja__error_set(DEJA_ENOMEM, "%s: out of memory for %u bytes", what, raw)
                         : record_unzip(dec, p, size, what, raw, dict, buf, &at);
    }
    if (rc == 0) {
        if (used != NULL)
            *used = 1;
        rc = use(at, raw, arg);
    }
    decoder_give(store, dec);
    free(buf);
    return rc;
}

/* Decode a record into a fresh malloc'd buffer, bounding every size read
 * from it before allocating. */
int deja__record_decode(deja_store *store, MDB_txn *txn, const void *rec, size_t size,
                        const char *what, uint8_t **out, size_t *out_size)
{
    uint8_t *buf = NULL;
    deja__dict *dict = NULL;
    uint32_t raw = 0;
    int rc;

    *out = NULL;
    *out_size = 0;
    rc = record_open(store, txn, rec, size, what, &raw, &dict);
    if (rc != 0)
        return rc;
    buf = malloc(raw > 0 ? raw : 1);
    if (buf == NULL)
        return deja__error_set(DEJA_ENOMEM, "%s: out of memory for %u bytes", what, raw);
    rc = record_fill(store, rec, size, what, raw, dict, buf);
    if (rc != 0) {
        free(buf);
        return rc;
    }
    *out = buf;
    *out_size = raw;
    return 0;
}

/* Decode a record into `out` (its content replaced), reusing its memory:
 * for scans that read one record after another. */
int deja__record_decode_buf(deja_store *store, MDB_txn *txn, const void *rec, size_t size,
                            const char *what, deja__buf *out)
{
    deja__dict *dict = NULL;
    uint32_t raw = 0;
    int rc;

    out->size = 0;
    rc = record_open(store, txn, rec, size, what, &raw, &dict);
    if (rc == 0)
        rc = deja__buf_reserve(out, raw > 0 ? raw : 1);
    if (rc == 0)
        rc = record_fill(store, rec, size, what, raw, dict, out->data);
    if (rc == 0)
        out->size = raw;
    return rc;
}

/* Keep a copy of a raw trace record as a dictionary training sample, while
 * the sample set has room. */
void deja__dict_sample(deja__wtxn *w, const void *data, size_t size)
{
    deja_store *store = w->store;

    if (store->nsamples >= DEJA__DICT_SAMPLES_MAX || size == 0 ||
        size > DEJA__DICT_SAMPLES_BYTES - store->samples.size)
        return;
    if (store->sample_sizes == NULL) {
        store->sample_sizes = calloc(DEJA__DICT_SAMPLES_MAX, sizeof *store->sample_sizes);
        if (store->sample_sizes == NULL)
            return;
    }
    if (deja__buf_append(&store->samples, data, size) != 0)
        return;
    store->sample_sizes[store->nsamples++] = size;
}

/* Drop the samples of the write handle (after a dictionary exists). */
void deja__dict_samples_drop(deja_store *store)
{
    deja__buf_free(&store->samples);
    memset(&store->samples, 0, sizeof store->samples);
    store->nsamples = 0;
    store->train_failed_at = 0;
}

/* Count the dictionaries stored in meta. */
static int dict_count(deja_store *store, MDB_txn *txn, uint32_t *out)
{
    MDB_cursor *cur = NULL;
    MDB_val k = {5, "dict/"}, v;
    int rc;

    *out = 0;
    rc = mdb_cursor_open(txn, store->meta, &cur);
    if (rc != 0)
        return deja__mdb_error(rc, "counting dictionaries");
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size < 5 || memcmp(k.mv_data, "dict/", 5) != 0)
            break;
        (*out)++;
    }
    mdb_cursor_close(cur);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return deja__mdb_error(rc, "counting dictionaries");
    return 0;
}

/* The number of dictionaries in the store, as seen by `txn`. */
int deja__dict_count(deja_store *store, MDB_txn *txn, uint32_t *out)
{
    return dict_count(store, txn, out);
}

/* Train a dictionary from the samples when enough are held and the store
 * has none yet (checked in this transaction, so only one process trains).
 * A failed training is not an error: it is tried again with more samples. */
int deja__dict_maybe_train(deja__wtxn *w)
{
    deja_store *store = w->store;
    uint8_t *dict = NULL, v[4];
    char key[32];
    uint32_t current, count;
    size_t cap, n;
    int rc;

    if (store->nsamples < DEJA__DICT_TRAIN_AT || store->nsamples <= store->train_failed_at)
        return 0;
    rc = deja__meta_u32(store, w->txn, "dict.current", &current, NULL);
    if (rc != 0)
        return rc;
    if (current != 0) {
        w->drop_samples = 1;
        return 0;
    }
    cap = store->samples.size / 4;
    if (cap > DEJA__DICT_SIZE)
        cap = DEJA__DICT_SIZE;
    if (cap < 1024)
        cap = 1024;
    dict = malloc(cap);
    if (dict == NULL)
        return 0;
    n = ZDICT_trainFromBuffer(dict, cap, store->samples.data, store->sample_sizes,
                              (unsigned)store->nsamples);
    if (ZDICT_isError(n)) {
        store->train_failed_at = store->nsamples;
        goto cleanup;
    }
    rc = dict_count(store, w->txn, &count);
    if (rc != 0)
        goto cleanup;
    snprintf(key, sizeof key, "dict/%u", count + 1);
    {
        MDB_val k = {strlen(key), key}, val = {n, dict};

        rc = mdb_put(w->txn, store->meta, &k, &val, 0);
    }
    if (rc == 0) {
        MDB_val k = {12, "dict.current"}, val = {4, v};

        put_u32(v, count + 1);
        rc = mdb_put(w->txn, store->meta, &k, &val, 0);
    }
    if (rc == MDB_MAP_FULL)
        w->map_full = 1;
    if (rc != 0) {
        rc = deja__mdb_error(rc, "storing a dictionary");
        goto cleanup;
    }
    /* Dropped by deja__store_write once the commit succeeded. */
    w->drop_samples = 1;
    w->trained_id = count + 1;

cleanup:
    free(dict);
    return rc;
}

/* Free dictionaries and decompression contexts. */
void deja__record_cleanup(deja_store *store)
{
    for (size_t i = 0; i < store->ndicts; i++) {
        ZSTD_freeCDict(store->dicts[i]->cdict);
        ZSTD_freeDDict(store->dicts[i]->ddict);
        free(store->dicts[i]->content);
        free(store->dicts[i]);
    }
    free(store->dicts);
    store->dicts = NULL;
    store->ndicts = 0;
    for (size_t i = 0; i < store->ndctx_pool; i++)
        decoder_free(store->dctx_pool[i]);
    free(store->dctx_pool);
    store->dctx_pool = NULL;
    store->ndctx_pool = 0;
}
