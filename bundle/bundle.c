/*
 * bundle/bundle.c -- bundles: selected traces with every blob and
 * environment they reference, in one checksummed, zstd-compressed file.
 *
 * Writing stages the records (environments, blobs, traces) in an unlinked
 * temporary file, then writes header, manifest and records as one zstd frame
 * into a temporary file next to the destination, and renames it.
 *
 * Reading trusts nothing: the header's sizes are bounded before anything is
 * allocated, the checksum is checked before any record is parsed, the body
 * is decompressed streaming with the declared length enforced, and the
 * records are checked in two passes (index, then references) before the
 * store sees a single one of them. The verified body is then imported in one
 * write transaction.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>
#include <zstd.h>

#include "bundle/bundle_internal.h"
#include "core/text.h"
#include "proto/codec.h"
#include "store/store.h"

#define HEADER_HASHED 32 /* header bytes covered by the checksum */
#define REC_HEADER 5
#define KEY 16
#define CHUNK ((size_t)1 << 17)
#define DEFAULT_LEVEL 3
#define NAME_MAX_SHOWN 200

uint64_t deja__bundle_mem_max = (uint64_t)64 << 20;

/* ------------------------------------------------------------------------
 * Little helpers
 * ---------------------------------------------------------------------- */

static void put_le(uint8_t *p, uint64_t x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(x >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, size_t n)
{
    uint64_t x = 0;

    for (size_t i = n; i > 0; i--)
        x = x << 8 | p[i - 1];
    return x;
}

static const char *bad_env_text(const deja_env *e);

/* The directory for temporary files: $TMPDIR when set, else /tmp. */
static const char *temp_dir(void)
{
    const char *d = getenv("TMPDIR");

    return d != NULL && d[0] != '\0' ? d : "/tmp";
}

/* The process's umask (read by setting it and back). */
static mode_t current_umask(void)
{
    const mode_t m = umask(077);

    umask(m);
    return m;
}

/* Open an unlinked temporary file in temp_dir(). Returns the descriptor, or
 * a negative code with the message set. */
static int temp_fd(const char *what)
{
    char path[PATH_MAX];
    int fd;

    if ((size_t)snprintf(path, sizeof path, "%s/deja-%s-XXXXXX", temp_dir(), what) >= sizeof path)
        return deja__error_set(DEJA_EIO, "temporary directory '%s': path too long", temp_dir());
    fd = mkstemp(path);
    if (fd < 0)
        return deja__error_set(DEJA_EIO, "cannot create a temporary file in '%s': %s", temp_dir(),
                               strerror(errno));
    unlink(path);
    return fd;
}

/* Write all `size` bytes to `fd`. Returns 0 or DEJA_EIO naming `what`. */
static int write_all(int fd, const void *data, size_t size, const char *what)
{
    const uint8_t *p = data;

    while (size > 0) {
        ssize_t n = write(fd, p, size);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return deja__error_set(DEJA_EIO, "%s: write failed: %s", what,
                                   n < 0 ? strerror(errno) : "no progress");
        p += n;
        size -= (size_t)n;
    }
    return 0;
}

/* Read exactly `size` bytes from `fd` at its current position. */
static int read_all(int fd, void *data, size_t size, const char *what)
{
    uint8_t *p = data;

    while (size > 0) {
        ssize_t n = read(fd, p, size);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return deja__error_set(DEJA_EIO, "%s: read failed: %s", what,
                                   n < 0 ? strerror(errno) : "unexpected end of file");
        p += n;
        size -= (size_t)n;
    }
    return 0;
}

/* ------------------------------------------------------------------------
 * A hash table of 16-byte keys (digests, ids). Keys come from untrusted
 * files, so slots are chosen by a seeded hash, not by the key's bits.
 * ---------------------------------------------------------------------- */

typedef struct slot {
    uint8_t key[KEY];
    uint64_t off;    /* where the record's content starts in the body */
    uint64_t size;   /* its length */
    uint32_t index;  /* record number */
    uint8_t used;
    uint8_t refs;    /* referenced by a trace (verification) */
    uint32_t put;    /* import generation that stored it */
} slot;

typedef struct table {
    slot *slots;
    size_t cap; /* a power of two, or 0 */
    size_t n;
    uint64_t seed;
} table;

static uint64_t table_hash(const table *t, const uint8_t *key)
{
    return XXH3_64bits_withSeed(key, KEY, t->seed);
}

static void table_free(table *t)
{
    free(t->slots);
    memset(t, 0, sizeof *t);
}

/* The slot holding `key`, or NULL. */
static slot *table_find(const table *t, const uint8_t *key)
{
    size_t i;

    if (t->cap == 0)
        return NULL;
    for (i = table_hash(t, key) & (t->cap - 1);; i = (i + 1) & (t->cap - 1)) {
        if (!t->slots[i].used)
            return NULL;
        if (memcmp(t->slots[i].key, key, KEY) == 0)
            return &t->slots[i];
    }
}

/* Double the table (or create it). */
static int table_grow(table *t)
{
    size_t cap = t->cap ? t->cap * 2 : 64;
    slot *slots;

    if (cap > SIZE_MAX / sizeof *slots)
        return deja__error_set(DEJA_ENOMEM, "table of %zu entries is too large", cap);
    slots = calloc(cap, sizeof *slots);
    if (slots == NULL)
        return deja__error_set(DEJA_ENOMEM, "out of memory growing a table to %zu entries", cap);
    if (t->seed == 0)
        t->seed = (uint64_t)deja__now_ns() ^ (uint64_t)(uintptr_t)t ^ 0x9e3779b97f4a7c15ULL;
    for (size_t i = 0; i < t->cap; i++) {
        size_t k;

        if (!t->slots[i].used)
            continue;
        for (k = table_hash(t, t->slots[i].key) & (cap - 1); slots[k].used; k = (k + 1) & (cap - 1))
            ;
        slots[k] = t->slots[i];
    }
    free(t->slots);
    t->slots = slots;
    t->cap = cap;
    return 0;
}

/* Insert `key`; `*out` is its slot and `*existed` says whether it was
 * there already (then nothing changes). */
static int table_insert(table *t, const uint8_t *key, slot **out, int *existed)
{
    slot *s = table_find(t, key);
    size_t i;
    int rc;

    *existed = s != NULL;
    if (s != NULL) {
        *out = s;
        return 0;
    }
    if ((t->n + 1) * 4 > t->cap * 3) {
        rc = table_grow(t);
        if (rc != 0)
            return rc;
    }
    for (i = table_hash(t, key) & (t->cap - 1); t->slots[i].used; i = (i + 1) & (t->cap - 1))
        ;
    s = &t->slots[i];
    memset(s, 0, sizeof *s);
    memcpy(s->key, key, KEY);
    s->used = 1;
    t->n++;
    *out = s;
    return 0;
}

/* ------------------------------------------------------------------------
 * Reading: a verified view of a bundle's body
 * ---------------------------------------------------------------------- */

typedef struct trace_ref {
    uint64_t off;
    uint64_t size;
    uint32_t index;
} trace_ref;

typedef struct view {
    char name[NAME_MAX_SHOWN + 1]; /* the file, for messages */
    const uint8_t *body;
    size_t size;
    uint8_t *body_heap;  /* the body when held in memory */
    void *body_map;      /* the body when mapped from a temporary file */
    size_t body_map_size;
    deja_bundle_info *info;
    uint32_t format;
    uint64_t file_bytes;
    deja_digest checksum;
    table blobs;
    table envs;
    table ids;
    trace_ref *traces;
    size_t ntraces;
    size_t traces_cap;
    uint32_t *model_counts;
} view;

static void view_free(view *v)
{
    if (v == NULL)
        return;
    free(v->body_heap);
    if (v->body_map != NULL)
        munmap(v->body_map, v->body_map_size);
    deja__manifest_free(v->info);
    table_free(&v->blobs);
    table_free(&v->envs);
    table_free(&v->ids);
    free(v->traces);
    free(v->model_counts);
    free(v);
}

/* Set "bundle 'NAME': <message>" and return `code`. */
static int bundle_error(const view *v, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int bundle_error(const view *v, int code, const char *fmt, ...)
{
    char msg[768];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return deja__error_set(code, "bundle '%s': %s", v->name, msg);
}

/* Set "bundle 'NAME': record I at offset O: <message>" and return `code`. */
static int record_error(const view *v, int code, size_t index, uint64_t off, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int record_error(const view *v, int code, size_t index, uint64_t off, const char *fmt, ...)
{
    char msg[768];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return deja__error_set(code, "bundle '%s': record %zu at offset %llu: %s", v->name, index,
                           (unsigned long long)off, msg);
}

/* Prefix the current message (from a decoder) with the record's place. */
static int record_wrap(const view *v, int code, size_t index, uint64_t off)
{
    return deja__error_wrap(code, "bundle '%s': record %zu at offset %llu: ", v->name, index,
                            (unsigned long long)off);
}

/* Rewrite the last error with every control character as '?', so that a
 * name taken from a hostile bundle cannot break the one-line message or
 * send escapes to a terminal. Returns `code`. */
static int clean_error(int code)
{
    char msg[1024];
    size_t n;

    snprintf(msg, sizeof msg, "%s", deja_error_last());
    n = strlen(msg);
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)msg[i] < 0x20 || msg[i] == 0x7f)
            msg[i] = '?';
    }
    return deja__error_set(code, "%s", msg);
}

/* Check the header of the `size`-byte file at `file`: magic, version,
 * flags, lengths and their bounds, then the checksum. Sets `*dlen`. */
static int check_header(view *v, const uint8_t *file, size_t size, uint64_t *dlen)
{
    XXH3_state_t *st = NULL;
    XXH128_canonical_t c;
    uint64_t clen;
    uint32_t flags;
    int rc = 0;

    if (size < DEJA__BUNDLE_HEADER) {
        rc = bundle_error(v, DEJA_ECORRUPT,
                          "truncated: the header needs %d bytes, the file has %zu",
                          DEJA__BUNDLE_HEADER, size);
        goto cleanup;
    }
    if (memcmp(file, DEJA_BUNDLE_MAGIC, DEJA_BUNDLE_MAGIC_LEN) != 0) {
        rc = bundle_error(v, DEJA_ECORRUPT, "not a deja bundle (no \"%s\" magic at offset 0)",
                          DEJA_BUNDLE_MAGIC);
        goto cleanup;
    }
    v->format = (uint32_t)get_le(file + 8, 4);
    if (v->format == 0) {
        rc = bundle_error(v, DEJA_ECORRUPT, "offset 8: format version 0 is invalid");
        goto cleanup;
    }
    if (v->format > DEJA__BUNDLE_FORMAT) {
        rc = bundle_error(v, DEJA_EVERSION,
                          "offset 8: format version %u is newer than this deja reads (%d): "
                          "upgrade deja",
                          v->format, DEJA__BUNDLE_FORMAT);
        goto cleanup;
    }
    flags = (uint32_t)get_le(file + 12, 4);
    if (flags != 0) {
        rc = bundle_error(v, DEJA_ECORRUPT, "offset 12: unknown flags 0x%x", flags);
        goto cleanup;
    }
    clen = get_le(file + 16, 8);
    *dlen = get_le(file + 24, 8);
    if (clen > size - DEJA__BUNDLE_HEADER) {
        rc = bundle_error(v, DEJA_ECORRUPT,
                          "truncated: the header says the body is %llu bytes but the file holds "
                          "%zu after the header",
                          (unsigned long long)clen, size - DEJA__BUNDLE_HEADER);
        goto cleanup;
    }
    if (clen < size - DEJA__BUNDLE_HEADER) {
        rc = bundle_error(v, DEJA_ECORRUPT, "offset %llu: %zu unexpected bytes after the body",
                          (unsigned long long)(DEJA__BUNDLE_HEADER + clen),
                          (size_t)(size - DEJA__BUNDLE_HEADER - clen));
        goto cleanup;
    }
    if (*dlen < REC_HEADER) {
        rc = bundle_error(v, DEJA_ECORRUPT,
                          "offset 24: declares %llu decompressed bytes, too few for a manifest",
                          (unsigned long long)*dlen);
        goto cleanup;
    }
    if (*dlen > DEJA__BUNDLE_MAX_BODY || *dlen > SIZE_MAX) {
        rc = bundle_error(v, DEJA_ECORRUPT,
                          "offset 24: declares %llu decompressed bytes, over the %llu cap",
                          (unsigned long long)*dlen, (unsigned long long)DEJA__BUNDLE_MAX_BODY);
        goto cleanup;
    }
    if (*dlen > DEJA__BUNDLE_MAX_RATIO * clen + DEJA__BUNDLE_RATIO_SLACK) {
        rc = bundle_error(v, DEJA_ECORRUPT,
                          "offset 24: declares %llu decompressed bytes from %llu compressed, "
                          "over the %d:1 bound (a decompression bomb?)",
                          (unsigned long long)*dlen, (unsigned long long)clen,
                          DEJA__BUNDLE_MAX_RATIO);
        goto cleanup;
    }
    st = XXH3_createState();
    if (st == NULL || XXH3_128bits_reset(st) != XXH_OK ||
        XXH3_128bits_update(st, file + DEJA__BUNDLE_HEADER, (size_t)clen) != XXH_OK ||
        XXH3_128bits_update(st, file, HEADER_HASHED) != XXH_OK) {
        rc = bundle_error(v, DEJA_ENOMEM, "out of memory computing the checksum");
        goto cleanup;
    }
    XXH128_canonicalFromHash(&c, XXH3_128bits_digest(st));
    if (memcmp(c.digest, file + HEADER_HASHED, KEY) != 0) {
        char want[33], got[33];
        deja_digest d;

        memcpy(d.bytes, file + HEADER_HASHED, KEY);
        deja_digest_format(&d, want);
        memcpy(d.bytes, c.digest, KEY);
        deja_digest_format(&d, got);
        rc = bundle_error(v, DEJA_ECORRUPT,
                          "checksum mismatch: the header says %s, the content hashes to %s "
                          "(the file is damaged or was altered)",
                          want, got);
        goto cleanup;
    }
    memcpy(v->checksum.bytes, c.digest, KEY);
cleanup:
    XXH3_freeState(st);
    return rc;
}

/* Where decompressed bytes go: a heap buffer of exactly `dlen` bytes, or a
 * temporary file. */
typedef struct sink {
    uint8_t *heap;
    int fd;
    uint64_t got;
} sink;

/* Append the `n` decompressed bytes at `chunk` to `s`, which must come to
 * no more than `dlen` bytes in all. Returns 0, DEJA_ECORRUPT (message set on
 * `v`) when they would go past `dlen`, nothing written, or write_all()'s
 * DEJA_EIO. */
static int sink_put(const view *v, sink *s, const uint8_t *chunk, size_t n, uint64_t dlen)
{
    int rc = 0;

    if (n > dlen - s->got)
        rc = bundle_error(v, DEJA_ECORRUPT,
                          "the body decompresses to more than the %llu bytes the header "
                          "declares",
                          (unsigned long long)dlen);
    else if (s->heap != NULL)
        memcpy(s->heap + s->got, chunk, n);
    else
        rc = write_all(s->fd, chunk, n, "temporary file");
    if (rc == 0)
        s->got += n;
    return rc;
}

/* Decompress the `clen` bytes at `comp` (one zstd frame) into `v`'s body,
 * which must come to exactly `dlen` bytes: never more is written. */
static int decompress_body(view *v, const uint8_t *comp, size_t clen, uint64_t dlen)
{
    ZSTD_DCtx *dctx = NULL;
    uint8_t *chunk = NULL;
    unsigned long long fcs;
    sink s = {NULL, -1, 0};
    ZSTD_inBuffer in = {comp, clen, 0};
    size_t ret = 1;
    int rc = 0;

    fcs = ZSTD_getFrameContentSize(comp, clen);
    if (fcs == ZSTD_CONTENTSIZE_ERROR) {
        rc = bundle_error(v, DEJA_ECORRUPT, "offset %d: the body is not a zstd frame",
                          DEJA__BUNDLE_HEADER);
        goto cleanup;
    }
    if (fcs != ZSTD_CONTENTSIZE_UNKNOWN && fcs != dlen) {
        rc = bundle_error(v, DEJA_ECORRUPT,
                          "offset %d: the zstd frame holds %llu bytes, the header says %llu",
                          DEJA__BUNDLE_HEADER, fcs, (unsigned long long)dlen);
        goto cleanup;
    }
    dctx = ZSTD_createDCtx();
    chunk = malloc(CHUNK);
    if (dctx == NULL || chunk == NULL) {
        rc = bundle_error(v, DEJA_ENOMEM, "out of memory decompressing");
        goto cleanup;
    }
    /* The default window limit (128 MiB) bounds the decoder's memory. */
    if (ZSTD_isError(ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax, 27))) {
        rc = bundle_error(v, DEJA_EIO, "cannot set up zstd");
        goto cleanup;
    }
    if (dlen <= deja__bundle_mem_max) {
        s.heap = malloc((size_t)dlen);
        if (s.heap == NULL) {
            rc = bundle_error(v, DEJA_ENOMEM, "out of memory for %llu decompressed bytes",
                              (unsigned long long)dlen);
            goto cleanup;
        }
    } else {
        s.fd = temp_fd("bundle");
        if (s.fd < 0) {
            rc = s.fd;
            goto cleanup;
        }
    }
    while (in.pos < in.size) {
        ZSTD_outBuffer out = {chunk, CHUNK, 0};

        ret = ZSTD_decompressStream(dctx, &out, &in);
        if (ZSTD_isError(ret)) {
            rc = bundle_error(v, DEJA_ECORRUPT, "offset %zu: zstd: %s",
                              DEJA__BUNDLE_HEADER + in.pos, ZSTD_getErrorName(ret));
            goto cleanup;
        }
        rc = sink_put(v, &s, chunk, out.pos, dlen);
        if (rc != 0)
            goto cleanup;
        if (ret == 0 && in.pos < in.size) {
            rc = bundle_error(v, DEJA_ECORRUPT, "offset %zu: %zu bytes after the zstd frame",
                              DEJA__BUNDLE_HEADER + in.pos, in.size - in.pos);
            goto cleanup;
        }
        if (out.pos == 0 && in.pos == in.size && ret != 0)
            break;
    }
    /* Flush what the decoder still holds. */
    while (ret != 0) {
        ZSTD_outBuffer out = {chunk, CHUNK, 0};

        ret = ZSTD_decompressStream(dctx, &out, &in);
        if (ZSTD_isError(ret)) {
            rc = bundle_error(v, DEJA_ECORRUPT, "zstd: %s", ZSTD_getErrorName(ret));
            goto cleanup;
        }
        if (out.pos == 0 && ret != 0) {
            rc = bundle_error(v, DEJA_ECORRUPT,
                              "truncated: the zstd frame ends early (%llu of %llu bytes)",
                              (unsigned long long)s.got, (unsigned long long)dlen);
            goto cleanup;
        }
        rc = sink_put(v, &s, chunk, out.pos, dlen);
        if (rc != 0)
            goto cleanup;
    }
    if (s.got != dlen) {
        rc = bundle_error(v, DEJA_ECORRUPT,
                          "the body decompresses to %llu bytes, the header declares %llu",
                          (unsigned long long)s.got, (unsigned long long)dlen);
        goto cleanup;
    }
    if (s.heap != NULL) {
        v->body_heap = s.heap;
        v->body = s.heap;
        s.heap = NULL;
    } else {
        void *map = mmap(NULL, (size_t)dlen, PROT_READ, MAP_PRIVATE, s.fd, 0);

        if (map == MAP_FAILED) {
            rc = bundle_error(v, DEJA_EIO, "cannot map the decompressed body: %s",
                              strerror(errno));
            goto cleanup;
        }
        v->body_map = map;
        v->body_map_size = (size_t)dlen;
        v->body = map;
    }
    v->size = (size_t)dlen;
cleanup:
    free(s.heap);
    if (s.fd >= 0)
        close(s.fd);
    free(chunk);
    ZSTD_freeDCtx(dctx);
    return rc;
}

static const char *kind_name(unsigned kind)
{
    switch (kind) {
    case DEJA__BUNDLE_MANIFEST:
        return "manifest";
    case DEJA__BUNDLE_ENV:
        return "environment";
    case DEJA__BUNDLE_BLOB:
        return "blob";
    case DEJA__BUNDLE_TRACE:
        return "trace";
    case DEJA__BUNDLE_PAD:
        return "pad";
    default:
        return "unknown";
    }
}

/* Check a keyed record (blob or environment): the first 16 bytes are the
 * digest of the rest. Enter it into `t`, rejecting duplicates. */
static int index_keyed(view *v, table *t, unsigned kind, size_t index, uint64_t off,
                       const uint8_t *p, size_t len)
{
    deja_digest d;
    char key[33], got[33];
    slot *s;
    int existed, rc;

    if (len < KEY)
        return record_error(v, DEJA_ECORRUPT, index, off, "%s record of %zu bytes has no digest",
                            kind_name(kind), len);
    d = deja_digest_of(p + KEY, len - KEY);
    if (memcmp(d.bytes, p, KEY) != 0) {
        deja_digest k;

        memcpy(k.bytes, p, KEY);
        deja_digest_format(&k, key);
        deja_digest_format(&d, got);
        return record_error(v, DEJA_ECORRUPT, index, off,
                            "%s digest mismatch: keyed %s, content hashes to %s", kind_name(kind),
                            key, got);
    }
    if (kind == DEJA__BUNDLE_ENV) {
        deja_env *env = NULL;
        deja__buf enc = {0};

        rc = deja__env_decode(p + KEY, len - KEY, &env);
        if (rc != 0)
            return record_wrap(v, rc, index, off);
        {
            const char *why = bad_env_text(env);
            if (why[0] != '\0') {
                deja_env_free(env);
                return record_error(v, DEJA_ECORRUPT, index, off, "environment: a name or value %s",
                                    why);
            }
        }
        rc = deja__env_encode(env, &enc);
        if (rc == 0 && (enc.size != len - KEY || memcmp(enc.data, p + KEY, enc.size) != 0))
            rc = record_error(v, DEJA_ECORRUPT, index, off,
                              "environment is not in canonical form");
        else if (rc != 0)
            rc = record_wrap(v, rc, index, off);
        deja__buf_free(&enc);
        deja_env_free(env);
        if (rc != 0)
            return rc;
    }
    rc = table_insert(t, p, &s, &existed);
    if (rc != 0)
        return rc;
    if (existed) {
        deja_digest_format(&d, key);
        return record_error(v, DEJA_ECORRUPT, index, off, "duplicate %s %s (first in record %u)",
                            kind_name(kind), key, s->index);
    }
    s->off = off + REC_HEADER;
    s->size = len;
    s->index = (uint32_t)index;
    return 0;
}

/* Pass 1: walk the records, bound each, decode the manifest, check blob and
 * environment digests, and index everything. */
static int index_records(view *v)
{
    size_t pos = 0;
    size_t index = 0;
    int rc = 0;

    while (pos < v->size) {
        const uint8_t *p = v->body + pos;
        const size_t left = v->size - pos;
        unsigned kind;
        size_t len;

        if (left < REC_HEADER)
            return record_error(v, DEJA_ECORRUPT, index, pos,
                                "truncated record header (%zu of %d bytes)", left, REC_HEADER);
        if (index >= DEJA__BUNDLE_MAX_RECORDS)
            return record_error(v, DEJA_ECORRUPT, index, pos, "more than %zu records",
                                DEJA__BUNDLE_MAX_RECORDS);
        kind = p[0];
        len = (size_t)get_le(p + 1, 4);
        if (len > left - REC_HEADER)
            return record_error(v, DEJA_ECORRUPT, index, pos,
                                "%s record claims %zu bytes but only %zu remain", kind_name(kind),
                                len, left - REC_HEADER);
        if (len > DEJA__MAX_RECORD)
            return record_error(v, DEJA_ECORRUPT, index, pos,
                                "record of %zu bytes exceeds the %zu limit", len,
                                DEJA__MAX_RECORD);
        if (index == 0 && kind != DEJA__BUNDLE_MANIFEST)
            return record_error(v, DEJA_ECORRUPT, index, pos,
                                "the first record is of kind %u (%s), not the manifest", kind,
                                kind_name(kind));
        if (index > 0 && kind == DEJA__BUNDLE_MANIFEST)
            return record_error(v, DEJA_ECORRUPT, index, pos, "a second manifest");
        switch (kind) {
        case DEJA__BUNDLE_MANIFEST:
            rc = deja__manifest_decode(p + REC_HEADER, len, &v->info);
            if (rc != 0)
                return record_wrap(v, rc, index, pos);
            if (v->info->format != v->format)
                return record_error(v, DEJA_ECORRUPT, index, pos,
                                    "manifest says format %u, the header %u", v->info->format,
                                    v->format);
            break;
        case DEJA__BUNDLE_ENV:
            rc = index_keyed(v, &v->envs, kind, index, pos, p + REC_HEADER, len);
            break;
        case DEJA__BUNDLE_BLOB:
            rc = index_keyed(v, &v->blobs, kind, index, pos, p + REC_HEADER, len);
            break;
        case DEJA__BUNDLE_TRACE:
            if (v->ntraces == v->traces_cap) {
                size_t cap = v->traces_cap ? v->traces_cap * 2 : 64;
                trace_ref *grown = realloc(v->traces, cap * sizeof *grown);

                if (grown == NULL)
                    return bundle_error(v, DEJA_ENOMEM, "out of memory indexing traces");
                v->traces = grown;
                v->traces_cap = cap;
            }
            v->traces[v->ntraces].off = pos + REC_HEADER;
            v->traces[v->ntraces].size = len;
            v->traces[v->ntraces].index = (uint32_t)index;
            v->ntraces++;
            break;
        case DEJA__BUNDLE_PAD:
            break;
        default:
            return record_error(v, DEJA_ECORRUPT, index, pos, "unknown record kind %u", kind);
        }
        if (rc != 0)
            return rc;
        pos += REC_HEADER + len;
        index++;
    }
    if (v->info == NULL)
        return bundle_error(v, DEJA_ECORRUPT, "no manifest");
    return 0;
}

/* The table key of a model identity: a chained XXH3 of name, version and
 * weights digest (each hashed on its own, so that no two splits of the same
 * bytes agree). */
static void model_key(const char *name, const char *version, const uint8_t *digest,
                      size_t dsize, uint8_t out[KEY])
{
    static const uint8_t none[1];
    XXH128_hash_t h = XXH3_128bits(name, strlen(name));
    XXH128_canonical_t c;

    h = XXH3_128bits_withSeed(version, strlen(version), h.low64 ^ 0x6d6f64656cULL);
    h = XXH3_128bits_withSeed(dsize ? digest : none, dsize, h.low64 ^ h.high64);
    XXH128_canonicalFromHash(&c, h);
    memcpy(out, c.digest, KEY);
}

/* Non-zero when model `m` is the identity that recorded `t`. */
static int model_is(const deja_bundle_model *m, const deja_trace *t)
{
    return strcmp(m->name, t->model_name) == 0 && strcmp(m->version, t->model_version) == 0 &&
           m->digest_size == t->model_digest_size &&
           (m->digest_size == 0 || memcmp(m->digest, t->model_digest, m->digest_size) == 0);
}

/* The index in `models` (entered in `t`) of the identity of trace `tr`, or
 * -1. */
static long find_model(const table *t, const deja_bundle_model *models, const deja_trace *tr)
{
    uint8_t key[KEY];
    const slot *s;

    model_key(tr->model_name, tr->model_version, tr->model_digest, tr->model_digest_size, key);
    s = table_find(t, key);
    if (s == NULL || !model_is(&models[s->index], tr))
        return -1;
    return (long)s->index;
}

/* Check the references of one decoded trace: every blob it names is in the
 * bundle with the tensor's size, and so is its environment. */
static int check_refs(view *v, const trace_ref *r, const deja_trace *t, const char *id)
{
    char hex[33];

    for (int side = 0; side < 2; side++) {
        const size_t n = side == 0 ? t->ninputs : t->noutputs;
        const deja_tensor *ts = side == 0 ? t->inputs : t->outputs;

        for (size_t i = 0; i < n; i++) {
            const deja_digest *d = deja__trace_blob(t, side == 0 ? DEJA_INPUT : DEJA_OUTPUT, i);
            slot *s;

            if (d == NULL)
                continue;
            s = table_find(&v->blobs, d->bytes);
            deja_digest_format(d, hex);
            if (s == NULL)
                return record_error(v, DEJA_ECORRUPT, r->index, r->off - REC_HEADER,
                                    "trace %s: tensor '%s' references blob %s, which the bundle "
                                    "lacks",
                                    id, ts[i].name, hex);
            if (s->size - KEY != ts[i].size)
                return record_error(v, DEJA_ECORRUPT, r->index, r->off - REC_HEADER,
                                    "trace %s: tensor '%s' is %zu bytes but blob %s holds %llu", id,
                                    ts[i].name, ts[i].size, hex,
                                    (unsigned long long)(s->size - KEY));
            s->refs = 1;
        }
    }
    if (t->has_env) {
        slot *s = table_find(&v->envs, t->env.bytes);

        if (s == NULL) {
            deja_digest_format(&t->env, hex);
            return record_error(v, DEJA_ECORRUPT, r->index, r->off - REC_HEADER,
                                "trace %s: environment %s is not in the bundle", id, hex);
        }
        s->refs = 1;
    }
    return 0;
}

/* Complain about the first entry of `t` no trace referenced. */
static int check_unreferenced(view *v, const table *t, const char *what)
{
    for (size_t i = 0; i < t->cap; i++) {
        const slot *s = &t->slots[i];
        deja_digest d;
        char hex[33];

        if (!s->used || s->refs)
            continue;
        memcpy(d.bytes, s->key, KEY);
        deja_digest_format(&d, hex);
        return record_error(v, DEJA_ECORRUPT, s->index, s->off - REC_HEADER,
                            "%s %s is referenced by no trace", what, hex);
    }
    return 0;
}

/* What is wrong with the texts of environment `e` (every string it holds,
 * variables included: they are printed as they are), "" when nothing. */
static const char *bad_env_text(const deja_env *e)
{
    const char *const fields[] = {e->arch,   e->cpu_vendor, e->cpu_model, e->os,
                                  e->kernel, e->libc,       e->compiler,  e->fp_rounding};
    const char *why;

    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if ((why = deja__text_problem(fields[i]))[0] != '\0')
            return why;
    for (size_t i = 0; i < e->nisa; i++)
        if ((why = deja__text_problem(e->isa[i]))[0] != '\0')
            return why;
    for (size_t i = 0; i < e->ngpus; i++)
        if ((why = deja__text_problem(e->gpus[i]))[0] != '\0')
            return why;
    for (size_t i = 0; i < e->nvars; i++)
        if ((why = deja__text_problem(e->vars[i].key))[0] != '\0' ||
            (why = deja__text_problem(e->vars[i].value))[0] != '\0')
            return why;
    for (size_t i = 0; i < e->nlibs; i++)
        if ((why = deja__text_problem(e->libs[i].key))[0] != '\0' ||
            (why = deja__text_problem(e->libs[i].value))[0] != '\0')
            return why;
    return "";
}

/* Check the texts of trace `t` (printed as `id`); the problem names the
 * field, never repeats the text. */
static int check_texts(view *v, const trace_ref *r, const deja_trace *t, const char *id)
{
    const char *why;

    if ((why = deja__text_problem(t->model_name))[0] != '\0')
        return record_error(v, DEJA_ECORRUPT, r->index, r->off - REC_HEADER,
                            "trace %s: model name %s", id, why);
    if ((why = deja__text_problem(t->model_version))[0] != '\0')
        return record_error(v, DEJA_ECORRUPT, r->index, r->off - REC_HEADER,
                            "trace %s: model version %s", id, why);
    for (size_t i = 0; i < t->ntags; i++) {
        if ((why = deja__text_problem(t->tags[i].key))[0] != '\0' ||
            (why = deja__text_problem(t->tags[i].value))[0] != '\0')
            return record_error(v, DEJA_ECORRUPT, r->index, r->off - REC_HEADER,
                                "trace %s: tag %zu %s", id, i + 1, why);
    }
    /* Names printed by every command (tensors, params, seeds, streams). */
    for (size_t i = 0; i < t->ninputs + t->noutputs; i++) {
        const deja_tensor *x = i < t->ninputs ? &t->inputs[i] : &t->outputs[i - t->ninputs];
        if ((why = deja__text_problem(x->name))[0] != '\0')
            return record_error(v, DEJA_ECORRUPT, r->index, r->off - REC_HEADER,
                                "trace %s: a tensor name %s", id, why);
    }
    for (size_t i = 0; i < t->nparams; i++)
        if ((why = deja__text_problem(t->params[i].key))[0] != '\0')
            return record_error(v, DEJA_ECORRUPT, r->index, r->off - REC_HEADER,
                                "trace %s: param %zu's name %s", id, i + 1, why);
    for (size_t i = 0; i < t->nseeds; i++)
        if ((why = deja__text_problem(t->seeds[i].name))[0] != '\0')
            return record_error(v, DEJA_ECORRUPT, r->index, r->off - REC_HEADER,
                                "trace %s: seed %zu's name %s", id, i + 1, why);
    for (size_t i = 0; i < t->nrng; i++)
        if ((why = deja__text_problem(t->rng[i].name))[0] != '\0')
            return record_error(v, DEJA_ECORRUPT, r->index, r->off - REC_HEADER,
                                "trace %s: RNG stream %zu's name %s", id, i + 1, why);
    for (size_t i = 0; i < t->ncheckpoints; i++)
        if ((why = deja__text_problem(t->checkpoints[i].tensor.name))[0] != '\0')
            return record_error(v, DEJA_ECORRUPT, r->index, r->off - REC_HEADER,
                                "trace %s: checkpoint %zu's name %s", id, i + 1, why);
    return 0;
}

/* Check the texts of the manifest: models and plugin. */
static int check_manifest_texts(view *v)
{
    const deja_bundle_info *info = v->info;
    const char *why;

    for (size_t i = 0; i < info->nmodels; i++)
        if ((why = deja__text_problem(info->models[i].name))[0] != '\0' ||
            (why = deja__text_problem(info->models[i].version))[0] != '\0')
            return bundle_error(v, DEJA_ECORRUPT, "the manifest's model %zu: a name or version %s",
                                i + 1, why);
    if (info->plugin != NULL) {
        const deja_bundle_plugin *p = info->plugin;
        if ((why = deja__text_problem(p->spec))[0] != '\0' || (why = deja__text_problem(p->file))[0] != '\0' ||
            (why = deja__text_problem(p->model_name))[0] != '\0' ||
            (why = deja__text_problem(p->model_version))[0] != '\0')
            return bundle_error(v, DEJA_ECORRUPT, "the manifest's plugin: a name %s", why);
    }
    return 0;
}

/* Pass 2: decode every trace, reject duplicate ids, resolve its blobs and
 * environment, and check the manifest's counts and models. */
static int check_traces(view *v)
{
    const deja_bundle_info *info = v->info;
    uint64_t *counts = NULL;
    table models = {0};
    int rc = 0;

    if (info->nmodels > v->ntraces)
        return bundle_error(v, DEJA_ECORRUPT, "the manifest lists %zu models for %zu traces",
                            info->nmodels, v->ntraces);
    rc = check_manifest_texts(v);
    if (rc != 0)
        return rc;
    if (info->nmodels > 0) {
        counts = calloc(info->nmodels, sizeof *counts);
        if (counts == NULL)
            return bundle_error(v, DEJA_ENOMEM, "out of memory checking models");
    }
    for (size_t i = 0; i < info->nmodels && rc == 0; i++) {
        const deja_bundle_model *m = &info->models[i];
        uint8_t key[KEY];
        slot *s;
        int existed;

        model_key(m->name, m->version, m->digest, m->digest_size, key);
        rc = table_insert(&models, key, &s, &existed);
        if (rc == 0 && existed)
            rc = bundle_error(v, DEJA_ECORRUPT, "the manifest lists model %s %s twice", m->name,
                              m->version);
        else if (rc == 0)
            s->index = (uint32_t)i;
    }
    for (size_t i = 0; i < v->ntraces && rc == 0; i++) {
        const trace_ref *r = &v->traces[i];
        deja_trace *t = NULL;
        char id[DEJA_ID_STRLEN + 1];
        slot *s;
        long m;
        int existed;

        rc = deja__trace_decode(v->body + r->off, (size_t)r->size, &t);
        if (rc != 0) {
            rc = record_wrap(v, rc, r->index, r->off - REC_HEADER);
            break;
        }
        deja_id_format(&t->id, id);
        rc = check_texts(v, r, t, id);
        if (rc == 0)
            rc = table_insert(&v->ids, t->id.bytes, &s, &existed);
        if (rc == 0 && existed)
            rc = record_error(v, DEJA_ECORRUPT, r->index, r->off - REC_HEADER,
                              "duplicate trace %s (first in record %u)", id, s->index);
        if (rc == 0) {
            s->index = r->index;
            rc = check_refs(v, r, t, id);
        }
        if (rc == 0) {
            m = find_model(&models, info->models, t);
            if (m < 0)
                rc = record_error(v, DEJA_ECORRUPT, r->index, r->off - REC_HEADER,
                                  "trace %s: model %s %s is not in the manifest", id,
                                  t->model_name, t->model_version);
            else
                counts[m]++;
        }
        deja_trace_free(t);
    }
    if (rc == 0)
        rc = check_unreferenced(v, &v->blobs, "blob");
    if (rc == 0)
        rc = check_unreferenced(v, &v->envs, "environment");
    if (rc == 0 && (info->traces != v->ntraces || info->blobs != v->blobs.n ||
                    info->envs != v->envs.n))
        rc = bundle_error(v, DEJA_ECORRUPT,
                          "the manifest counts %llu traces, %llu blobs, %llu environments but the "
                          "bundle holds %zu, %zu, %zu",
                          (unsigned long long)info->traces, (unsigned long long)info->blobs,
                          (unsigned long long)info->envs, v->ntraces, v->blobs.n, v->envs.n);
    for (size_t i = 0; rc == 0 && i < info->nmodels; i++) {
        if (counts[i] != info->models[i].traces)
            rc = bundle_error(v, DEJA_ECORRUPT,
                              "the manifest counts %llu traces of model %s %s, the bundle holds "
                              "%llu",
                              (unsigned long long)info->models[i].traces, info->models[i].name,
                              info->models[i].version, (unsigned long long)counts[i]);
    }
    free(counts);
    table_free(&models);
    return rc;
}

/* Verify the `size` bytes at `file` as a bundle named `name`: header,
 * checksum, decompression, both passes. On success `*out` is the verified
 * view (free with view_free()). */
static int view_load(const void *file, size_t size, const char *name, view **out)
{
    view *v = calloc(1, sizeof *v);
    uint64_t dlen = 0;
    int rc;

    *out = NULL;
    if (v == NULL)
        return deja__error_set(DEJA_ENOMEM, "bundle '%s': out of memory", name);
    snprintf(v->name, sizeof v->name, "%s", name);
    v->file_bytes = size;
    rc = check_header(v, file, size, &dlen);
    if (rc == 0)
        rc = decompress_body(v, (const uint8_t *)file + DEJA__BUNDLE_HEADER,
                             size - DEJA__BUNDLE_HEADER, dlen);
    if (rc == 0)
        rc = index_records(v);
    if (rc == 0)
        rc = check_traces(v);
    if (rc != 0) {
        view_free(v);
        return clean_error(rc);
    }
    v->info->file_bytes = v->file_bytes;
    v->info->body_bytes = v->size;
    v->info->checksum = v->checksum;
    *out = v;
    return 0;
}

/* Map the file at `path` and verify it. */
static int view_open(const char *path, view **out)
{
    struct stat st;
    void *map = NULL;
    int fd = -1;
    int rc = 0;

    *out = NULL;
    if (path == NULL || path[0] == '\0')
        return deja__error_set(DEJA_EINVAL, "no bundle file given");
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        rc = deja__error_set(errno == ENOENT ? DEJA_ENOTFOUND : DEJA_EIO, "bundle '%s': %s", path,
                             strerror(errno));
        goto cleanup;
    }
    if (fstat(fd, &st) != 0) {
        rc = deja__error_set(DEJA_EIO, "bundle '%s': %s", path, strerror(errno));
        goto cleanup;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = deja__error_set(DEJA_EINVAL, "bundle '%s' is not a regular file", path);
        goto cleanup;
    }
    if ((uint64_t)st.st_size > DEJA__BUNDLE_MAX_BODY + DEJA__BUNDLE_HEADER + (1u << 20) ||
        (uint64_t)st.st_size > SIZE_MAX) {
        rc = deja__error_set(DEJA_ECORRUPT, "bundle '%s': %lld bytes is over the %llu cap", path,
                             (long long)st.st_size,
                             (unsigned long long)DEJA__BUNDLE_MAX_BODY + DEJA__BUNDLE_HEADER);
        goto cleanup;
    }
    if (st.st_size == 0) {
        rc = view_load("", 0, path, out);
        goto cleanup;
    }
    map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        map = NULL;
        rc = deja__error_set(DEJA_EIO, "bundle '%s': cannot map: %s", path, strerror(errno));
        goto cleanup;
    }
    rc = view_load(map, (size_t)st.st_size, path, out);
cleanup:
    if (map != NULL)
        munmap(map, (size_t)st.st_size);
    if (fd >= 0)
        close(fd);
    return rc;
}

int deja__bundle_check_memory(const void *data, size_t size, const char *name)
{
    view *v = NULL;
    int rc = view_load(size ? data : "", size, name ? name : "memory", &v);

    view_free(v);
    return rc;
}

/* Verify the bundle at `path`; hand its info to `*info` when asked. */
int deja_bundle_verify(const char *path, deja_bundle_info **info)
{
    view *v = NULL;
    int rc;

    if (info != NULL)
        *info = NULL;
    rc = view_open(path, &v);
    if (rc == 0 && info != NULL) {
        *info = v->info;
        v->info = NULL;
    }
    view_free(v);
    return rc;
}

/* Free info from deja_bundle_verify(). Accepts NULL. */
void deja_bundle_info_free(deja_bundle_info *info)
{
    deja__manifest_free(info);
}

/* ------------------------------------------------------------------------
 * Importing a verified view
 * ---------------------------------------------------------------------- */

typedef struct import_ctx {
    view *v;
    uint32_t gen; /* marks the environments stored by this run of fill */
    uint64_t traces_added;
} import_ctx;

/* Attach a copy of each blob payload `t` references, from the body. */
static int attach_blobs(view *v, deja_trace *t)
{
    for (int side = 0; side < 2; side++) {
        const deja_side sd = side == 0 ? DEJA_INPUT : DEJA_OUTPUT;
        const size_t n = side == 0 ? t->ninputs : t->noutputs;

        for (size_t i = 0; i < n; i++) {
            const deja_digest *d = deja__trace_blob(t, sd, i);
            const slot *s;
            uint8_t *copy;

            if (d == NULL)
                continue;
            s = table_find(&v->blobs, d->bytes);
            if (s == NULL) /* verified: cannot happen */
                return bundle_error(v, DEJA_ECORRUPT, "a blob vanished");
            copy = malloc(s->size - KEY + 1);
            if (copy == NULL)
                return bundle_error(v, DEJA_ENOMEM, "out of memory for a %llu-byte blob",
                                    (unsigned long long)(s->size - KEY));
            memcpy(copy, v->body + s->off + KEY, (size_t)(s->size - KEY));
            if (deja__trace_attach(t, sd, i, copy, (size_t)(s->size - KEY)) != 0)
                return bundle_error(v, DEJA_ECORRUPT, "%s", deja_error_last());
        }
    }
    return 0;
}

/* Store the environment of an added trace once per transaction. */
static int import_env(deja__wtxn *w, import_ctx *c, const deja_trace *t)
{
    deja_env *env = NULL;
    deja_digest d;
    slot *s = table_find(&c->v->envs, t->env.bytes);
    int rc;

    if (s == NULL)
        return bundle_error(c->v, DEJA_ECORRUPT, "an environment vanished");
    if (s->put == c->gen)
        return 0;
    rc = deja__env_decode(c->v->body + s->off + KEY, (size_t)(s->size - KEY), &env);
    if (rc == 0)
        rc = deja__wtxn_put_env(w, env, &d);
    if (rc == 0 && memcmp(d.bytes, t->env.bytes, KEY) != 0)
        rc = bundle_error(c->v, DEJA_ECORRUPT, "an environment changed digest when stored");
    if (rc == 0)
        s->put = c->gen;
    deja_env_free(env);
    return rc;
}

/* Write fill: every trace not yet in the store, with its blobs and
 * environment. Repeatable: each run starts from the first record. */
static int import_fill(deja__wtxn *w, void *payload)
{
    import_ctx *c = payload;
    view *v = c->v;
    int rc = 0;

    c->gen++;
    c->traces_added = 0;
    for (size_t i = 0; i < v->ntraces && rc == 0; i++) {
        const trace_ref *r = &v->traces[i];
        deja_trace *t = NULL;
        int added = 0;

        rc = deja__trace_decode(v->body + r->off, (size_t)r->size, &t);
        if (rc != 0) {
            rc = record_wrap(v, rc, r->index, r->off - REC_HEADER);
            break;
        }
        deja__progress(i + 1, v->ntraces);
        rc = attach_blobs(v, t);
        if (rc == 0)
            rc = deja__wtxn_put_trace(w, t, &added);
        if (rc == 0 && added) {
            c->traces_added++;
            if (t->has_env)
                rc = import_env(w, c, t);
        }
        deja_trace_free(t);
    }
    return rc;
}

/* Add the verified view `v` to `store` in one transaction. */
static int import_view(deja_store *store, view *v, deja_bundle_import_stats *out)
{
    deja_store_stats before, after;
    import_ctx c = {v, 0, 0};
    int rc;

    rc = deja_store_stats_get(store, &before);
    if (rc == 0)
        rc = deja__store_write(store, import_fill, &c);
    if (rc == 0)
        rc = deja_store_stats_get(store, &after);
    if (rc != 0)
        return rc;
    if (out != NULL) {
        memset(out, 0, sizeof *out);
        out->traces = v->ntraces;
        out->traces_added = c.traces_added;
        out->blobs = v->blobs.n;
        out->blobs_added = after.blobs > before.blobs ? after.blobs - before.blobs : 0;
        out->envs = v->envs.n;
        out->envs_added = after.envs > before.envs ? after.envs - before.envs : 0;
    }
    return 0;
}

/* Verify the bundle at `path`, then import it into `store`. */
int deja_bundle_import(deja_store *store, const char *path, deja_bundle_import_stats *out)
{
    view *v = NULL;
    int rc;

    if (out != NULL)
        memset(out, 0, sizeof *out);
    if (store == NULL)
        return deja__error_set(DEJA_EINVAL, "no store to import into");
    rc = view_open(path, &v);
    if (rc == 0) {
        rc = import_view(store, v, out);
        if (rc != 0)
            clean_error(rc);
    }
    view_free(v);
    return rc;
}

/* ------------------------------------------------------------------------
 * Opening a bundle in place: a private temporary store
 * ---------------------------------------------------------------------- */

struct deja_bundle {
    char *dir;
    deja_store *store;
    deja_bundle_info *info;
};


/* Verify the bundle at `path` and load it into a temporary store. */
int deja_bundle_open(deja_bundle **out, const char *path)
{
    deja_bundle *b = NULL;
    deja_store *w = NULL;
    view *v = NULL;
    char dir[PATH_MAX];
    int rc;

    *out = NULL;
    rc = view_open(path, &v);
    if (rc != 0)
        goto cleanup;
    b = calloc(1, sizeof *b);
    if (b == NULL) {
        rc = deja__error_set(DEJA_ENOMEM, "bundle '%s': out of memory", path);
        goto cleanup;
    }
    rc = deja__bundle_temp_make(dir, sizeof dir);
    if (rc != 0)
        goto cleanup;
    b->dir = strdup(dir);
    if (b->dir == NULL) {
        deja__bundle_temp_remove(dir);
        rc = deja__error_set(DEJA_ENOMEM, "bundle '%s': out of memory", path);
        goto cleanup;
    }
    rc = deja_store_open(&w, b->dir, DEJA_STORE_WRITE | DEJA__STORE_NOSYNC);
    if (rc == 0)
        rc = import_view(w, v, NULL);
    deja_store_close(w);
    if (rc == 0)
        rc = deja_store_open(&b->store, b->dir, DEJA_STORE_READONLY);
    if (rc != 0) {
        deja__error_wrap(rc, "bundle '%s': loading into a temporary store: ", path);
        goto cleanup;
    }
    b->info = v->info;
    v->info = NULL;
    *out = b;
    b = NULL;
cleanup:
    deja_bundle_close(b);
    view_free(v);
    return rc;
}

deja_store *deja_bundle_store(deja_bundle *bundle)
{
    return bundle != NULL ? bundle->store : NULL;
}

const deja_bundle_info *deja_bundle_info_get(const deja_bundle *bundle)
{
    return bundle != NULL ? bundle->info : NULL;
}

/* Close the store and remove its directory. Accepts NULL. */
void deja_bundle_close(deja_bundle *bundle)
{
    if (bundle == NULL)
        return;
    deja_store_close(bundle->store);
    if (bundle->dir != NULL)
        deja__bundle_temp_remove(bundle->dir);
    free(bundle->dir);
    deja__manifest_free(bundle->info);
    free(bundle);
}

/* ------------------------------------------------------------------------
 * Writing
 * ---------------------------------------------------------------------- */

typedef struct exporter {
    deja_store *store;
    int stage;           /* unlinked temporary file holding the records */
    uint64_t staged;     /* bytes written to it */
    table blobs;
    table envs;
    table ids;
    table model_keys;
    deja_bundle_model *models;
    size_t nmodels;
    size_t models_cap;
    uint64_t ntraces;
    deja__buf scratch;
} exporter;

/* Append one record [kind][len][prefix][data] to the staging file. */
static int stage_record(exporter *x, unsigned kind, const void *prefix, size_t plen,
                        const void *data, size_t size)
{
    uint8_t head[REC_HEADER];
    int rc;

    if (size > DEJA__MAX_RECORD - plen)
        return deja__error_set(DEJA_EINVAL, "a %s of %zu bytes is too large for a bundle "
                               "(at most %zu)", kind_name(kind), size, DEJA__MAX_RECORD - plen);
    head[0] = (uint8_t)kind;
    put_le(head + 1, plen + size, 4);
    rc = write_all(x->stage, head, sizeof head, "staging file");
    if (rc == 0 && plen > 0)
        rc = write_all(x->stage, prefix, plen, "staging file");
    if (rc == 0 && size > 0)
        rc = write_all(x->stage, data, size, "staging file");
    if (rc == 0)
        x->staged += REC_HEADER + plen + size;
    return rc;
}

/* Blob callback of the trace encoder: stage each distinct payload once. */
static int export_blob(const void *data, size_t size, deja_digest *out, void *payload)
{
    exporter *x = payload;
    slot *s;
    int existed, rc;

    *out = deja_digest_of(data, size);
    rc = table_insert(&x->blobs, out->bytes, &s, &existed);
    if (rc != 0 || existed)
        return rc;
    return stage_record(x, DEJA__BUNDLE_BLOB, out->bytes, KEY, data, size);
}

/* Stage the environment `d` once. */
static int export_env(exporter *x, const deja_digest *d)
{
    deja_env *env = NULL;
    deja__buf enc = {0};
    deja_digest got;
    char hex[33];
    slot *s;
    int existed, rc;

    if (table_find(&x->envs, d->bytes) != NULL)
        return 0;
    rc = deja_store_env_get(x->store, d, &env);
    if (rc == 0)
        rc = deja__env_encode(env, &enc);
    if (rc == 0) {
        got = deja_digest_of(enc.data, enc.size);
        if (memcmp(got.bytes, d->bytes, KEY) != 0) {
            deja_digest_format(d, hex);
            rc = deja__error_set(DEJA_ECORRUPT, "environment %s does not encode to its digest",
                                 hex);
        }
    }
    if (rc == 0)
        rc = table_insert(&x->envs, d->bytes, &s, &existed);
    if (rc == 0)
        rc = stage_record(x, DEJA__BUNDLE_ENV, d->bytes, KEY, enc.data, enc.size);
    deja__buf_free(&enc);
    deja_env_free(env);
    return rc;
}

/* Count `t` under its model identity, adding the identity when new. */
static int export_model(exporter *x, const deja_trace *t)
{
    deja_bundle_model *m;
    uint8_t key[KEY];
    slot *s;
    long i;
    int existed, rc;

    i = find_model(&x->model_keys, x->models, t);
    if (i >= 0) {
        x->models[i].traces++;
        return 0;
    }
    if (x->nmodels == x->models_cap) {
        size_t cap = x->models_cap ? x->models_cap * 2 : 8;
        deja_bundle_model *grown = realloc(x->models, cap * sizeof *grown);

        if (grown == NULL)
            return deja__error_set(DEJA_ENOMEM, "out of memory listing models");
        x->models = grown;
        x->models_cap = cap;
    }
    m = &x->models[x->nmodels];
    memset(m, 0, sizeof *m);
    m->name = strdup(t->model_name ? t->model_name : "");
    m->version = strdup(t->model_version ? t->model_version : "");
    m->digest_size = t->model_digest_size;
    m->digest = malloc(t->model_digest_size + 1);
    if (m->name == NULL || m->version == NULL || m->digest == NULL) {
        free((char *)m->name);
        free((char *)m->version);
        free((uint8_t *)m->digest);
        return deja__error_set(DEJA_ENOMEM, "out of memory listing models");
    }
    if (t->model_digest_size > 0)
        memcpy((uint8_t *)m->digest, t->model_digest, t->model_digest_size);
    m->traces = 1;
    x->nmodels++;
    model_key(m->name, m->version, m->digest, m->digest_size, key);
    rc = table_insert(&x->model_keys, key, &s, &existed);
    if (rc == 0)
        s->index = (uint32_t)(x->nmodels - 1);
    return rc;
}

/* Stage trace `id` (unless staged already) after its blobs and
 * environment. */
static int export_trace(exporter *x, const deja_id *id)
{
    deja_trace *t = NULL;
    char text[DEJA_ID_STRLEN + 1];
    slot *s;
    int existed, rc;

    rc = table_insert(&x->ids, id->bytes, &s, &existed);
    if (rc != 0 || existed)
        return rc;
    rc = deja_trace_get(x->store, id, &t);
    if (rc == 0)
        rc = deja__trace_encode(t, DEJA__INLINE_MAX, export_blob, x, &x->scratch);
    if (rc == 0 && t->has_env)
        rc = export_env(x, &t->env);
    if (rc == 0)
        rc = stage_record(x, DEJA__BUNDLE_TRACE, NULL, 0, x->scratch.data, x->scratch.size);
    if (rc == 0)
        rc = export_model(x, t);
    if (rc == 0)
        x->ntraces++;
    if (rc != 0 && rc != DEJA_ENOTFOUND) {
        deja_id_format(id, text);
        deja__error_wrap(rc, "trace %s: ", text);
    } else if (rc == DEJA_ENOTFOUND) {
        deja_id_format(id, text);
        deja__error_set(rc, "trace %s is not in the store", text);
    }
    deja_trace_free(t);
    return rc;
}

/* Read the plugin file at `path` (bounded) into `*data`. */
static int read_plugin(const char *path, uint8_t **data, size_t *size)
{
    struct stat st;
    uint8_t *buf = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    int rc = 0;

    *data = NULL;
    *size = 0;
    if (fd < 0)
        return deja__error_set(DEJA_ENOTFOUND, "plugin '%s': %s", path, strerror(errno));
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        rc = deja__error_set(DEJA_EIO, "plugin '%s' is not a readable file", path);
        goto cleanup;
    }
    if ((uint64_t)st.st_size > DEJA__BUNDLE_MAX_PLUGIN) {
        rc = deja__error_set(DEJA_EINVAL, "plugin '%s' is %lld bytes, over the %llu a bundle "
                             "holds", path, (long long)st.st_size,
                             (unsigned long long)DEJA__BUNDLE_MAX_PLUGIN);
        goto cleanup;
    }
    buf = malloc((size_t)st.st_size + 1);
    if (buf == NULL) {
        rc = deja__error_set(DEJA_ENOMEM, "plugin '%s': out of memory", path);
        goto cleanup;
    }
    rc = read_all(fd, buf, (size_t)st.st_size, path);
    if (rc != 0)
        goto cleanup;
    *data = buf;
    *size = (size_t)st.st_size;
    buf = NULL;
cleanup:
    free(buf);
    close(fd);
    return rc;
}

/* What --with-model records, and the memory behind it. */
typedef struct plugin_rec {
    deja_bundle_plugin pub;
    char *spec, *file, *name, *version;
    uint8_t *digest;
    uint8_t *data;
} plugin_rec;

static void plugin_rec_free(plugin_rec *p)
{
    free(p->spec);
    free(p->file);
    free(p->name);
    free(p->version);
    free(p->digest);
    free(p->data);
    memset(p, 0, sizeof *p);
}

/* Load the plugin `spec` to learn its file and identity (it is the
 * exporter's own plugin, never one named by a bundle). */
static int plugin_describe(const char *spec, int include, plugin_rec *p)
{
    deja_model *m = NULL;
    const uint8_t *wd;
    const char *path, *base;
    size_t wsize = 0, size = 0;
    int rc;

    memset(p, 0, sizeof *p);
    rc = deja_model_load(&m, spec);
    if (rc != 0)
        return deja__error_wrap(rc, "--with-model %s: ", spec);
    path = deja_model_path(m);
    wd = deja_model_digest(m, &wsize);
    base = strrchr(path, '/');
    base = base ? base + 1 : path;
    p->spec = strdup(spec);
    p->file = strdup(base);
    p->name = strdup(deja_model_name(m) ? deja_model_name(m) : "");
    p->version = strdup(deja_model_version(m) ? deja_model_version(m) : "");
    p->digest = malloc(wsize + 1);
    if (p->spec == NULL || p->file == NULL || p->name == NULL || p->version == NULL ||
        p->digest == NULL) {
        rc = deja__error_set(DEJA_ENOMEM, "out of memory describing the plugin");
        goto cleanup;
    }
    if (wsize > 0)
        memcpy(p->digest, wd, wsize);
    rc = read_plugin(path, &p->data, &size);
    if (rc != 0)
        goto cleanup;
    p->pub.spec = p->spec;
    p->pub.file = p->file;
    p->pub.file_digest = deja_digest_of(p->data, size);
    p->pub.file_size = size;
    p->pub.model_name = p->name;
    p->pub.model_version = p->version;
    p->pub.model_digest = p->digest;
    p->pub.model_digest_size = wsize;
    if (include) {
        p->pub.data = p->data;
        p->pub.size = size;
    } else {
        free(p->data);
        p->data = NULL;
    }
cleanup:
    deja_model_free(m);
    if (rc != 0)
        plugin_rec_free(p);
    return rc;
}

/* Compresses into the output file, hashing what it writes. */
typedef struct writer {
    int fd;
    ZSTD_CCtx *cctx;
    XXH3_state_t *hash;
    uint8_t *out;
    uint64_t clen;
} writer;

/* Feed `size` bytes to the compressor with directive `op`, writing all
 * output. */
static int writer_feed(writer *wr, const void *data, size_t size, ZSTD_EndDirective op)
{
    ZSTD_inBuffer in = {data, size, 0};
    size_t left;

    do {
        ZSTD_outBuffer o = {wr->out, CHUNK, 0};
        int rc;

        left = ZSTD_compressStream2(wr->cctx, &o, &in, op);
        if (ZSTD_isError(left))
            return deja__error_set(DEJA_EIO, "zstd: %s", ZSTD_getErrorName(left));
        rc = write_all(wr->fd, wr->out, o.pos, "bundle");
        if (rc != 0)
            return rc;
        if (XXH3_128bits_update(wr->hash, wr->out, o.pos) != XXH_OK)
            return deja__error_set(DEJA_EIO, "checksum update failed");
        wr->clen += o.pos;
    } while (op == ZSTD_e_end ? left != 0 : in.pos < in.size);
    return 0;
}

/* Fill `n` bytes at `p` with incompressible filler. */
static void fill_pad(uint8_t *p, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i += 8) {
        uint64_t x = XXH64(&i, sizeof i, seed);

        memcpy(p + i, &x, n - i < 8 ? n - i : 8);
    }
}

/* Write header, manifest record, staged records and `pad` filler bytes as
 * a bundle into the (empty) file `fd`. Returns 0 and the compressed length
 * in `*clen`. */
static int write_bundle(exporter *x, int fd, const deja__buf *manifest, int level, size_t pad,
                        uint64_t *clen)
{
    writer wr = {fd, NULL, NULL, NULL, 0};
    uint8_t head[DEJA__BUNDLE_HEADER];
    uint8_t rec[REC_HEADER];
    uint8_t *padbuf = NULL;
    uint8_t *inbuf = NULL;
    XXH128_canonical_t c;
    uint64_t dlen = REC_HEADER + manifest->size + x->staged + (pad ? REC_HEADER + pad : 0);
    uint64_t done = 0;
    int rc = 0;

    memset(head, 0, sizeof head);
    wr.cctx = ZSTD_createCCtx();
    wr.hash = XXH3_createState();
    wr.out = malloc(CHUNK);
    if (wr.cctx == NULL || wr.hash == NULL || wr.out == NULL || XXH3_128bits_reset(wr.hash)) {
        rc = deja__error_set(DEJA_ENOMEM, "out of memory writing a bundle");
        goto cleanup;
    }
    if (ZSTD_isError(ZSTD_CCtx_setParameter(wr.cctx, ZSTD_c_compressionLevel, level)) ||
        ZSTD_isError(ZSTD_CCtx_setPledgedSrcSize(wr.cctx, dlen))) {
        rc = deja__error_set(DEJA_EINVAL, "zstd refuses level %d", level);
        goto cleanup;
    }
    rc = write_all(fd, head, sizeof head, "bundle");
    if (rc != 0)
        goto cleanup;
    rec[0] = DEJA__BUNDLE_MANIFEST;
    put_le(rec + 1, manifest->size, 4);
    rc = writer_feed(&wr, rec, sizeof rec, ZSTD_e_continue);
    if (rc == 0)
        rc = writer_feed(&wr, manifest->data, manifest->size, ZSTD_e_continue);
    if (rc == 0 && lseek(x->stage, 0, SEEK_SET) != 0)
        rc = deja__error_set(DEJA_EIO, "staging file: seek failed: %s", strerror(errno));
    if (rc == 0 && x->staged > 0 && (inbuf = malloc(CHUNK)) == NULL)
        rc = deja__error_set(DEJA_ENOMEM, "out of memory writing a bundle");
    while (rc == 0 && done < x->staged) {
        size_t n = x->staged - done < CHUNK ? (size_t)(x->staged - done) : CHUNK;

        rc = read_all(x->stage, inbuf, n, "staging file");
        if (rc == 0)
            rc = writer_feed(&wr, inbuf, n, ZSTD_e_continue);
        done += n;
    }
    if (rc == 0 && pad > 0) {
        padbuf = malloc(pad);
        if (padbuf == NULL) {
            rc = deja__error_set(DEJA_ENOMEM, "out of memory writing a bundle");
            goto cleanup;
        }
        fill_pad(padbuf, pad, (uint64_t)deja__now_ns());
        rec[0] = DEJA__BUNDLE_PAD;
        put_le(rec + 1, pad, 4);
        rc = writer_feed(&wr, rec, sizeof rec, ZSTD_e_continue);
        if (rc == 0)
            rc = writer_feed(&wr, padbuf, pad, ZSTD_e_continue);
    }
    if (rc == 0)
        rc = writer_feed(&wr, NULL, 0, ZSTD_e_end);
    if (rc != 0)
        goto cleanup;
    memcpy(head, DEJA_BUNDLE_MAGIC, DEJA_BUNDLE_MAGIC_LEN);
    put_le(head + 8, DEJA__BUNDLE_FORMAT, 4);
    put_le(head + 12, 0, 4);
    put_le(head + 16, wr.clen, 8);
    put_le(head + 24, dlen, 8);
    if (XXH3_128bits_update(wr.hash, head, HEADER_HASHED) != XXH_OK) {
        rc = deja__error_set(DEJA_EIO, "checksum update failed");
        goto cleanup;
    }
    XXH128_canonicalFromHash(&c, XXH3_128bits_digest(wr.hash));
    memcpy(head + HEADER_HASHED, c.digest, KEY);
    if (pwrite(fd, head, sizeof head, 0) != (ssize_t)sizeof head) {
        rc = deja__error_set(DEJA_EIO, "bundle: writing the header failed: %s", strerror(errno));
        goto cleanup;
    }
    *clen = wr.clen;
cleanup:
    free(inbuf);
    free(padbuf);
    free(wr.out);
    XXH3_freeState(wr.hash);
    ZSTD_freeCCtx(wr.cctx);
    return rc;
}

/* Release what an exporter holds. */
static void exporter_free(exporter *x)
{
    if (x->stage >= 0)
        close(x->stage);
    table_free(&x->blobs);
    table_free(&x->envs);
    table_free(&x->ids);
    table_free(&x->model_keys);
    for (size_t i = 0; i < x->nmodels; i++) {
        free((char *)x->models[i].name);
        free((char *)x->models[i].version);
        free((uint8_t *)x->models[i].digest);
    }
    free(x->models);
    deja__buf_free(&x->scratch);
}

/* Check and complete the options. */
static int export_options(const deja_bundle_options *opts, deja_bundle_options *o)
{
    const deja_bundle_options defaults = DEJA_BUNDLE_OPTIONS_INIT;

    *o = defaults;
    if (opts != NULL) {
        if (opts->version == 0 || opts->version > DEJA_BUNDLE_OPTIONS_VERSION)
            return deja__error_set(DEJA_EINVAL, "bundle options version %u is unknown",
                                   opts->version);
        *o = *opts;
    }
    if (o->level == 0)
        o->level = DEFAULT_LEVEL;
    if (o->level < 1 || o->level > ZSTD_maxCLevel())
        return deja__error_set(DEJA_EINVAL, "compression level %d is not in 1..%d", o->level,
                               ZSTD_maxCLevel());
    if (o->include_plugin && (o->with_model == NULL || o->with_model[0] == '\0'))
        return deja__error_set(DEJA_EINVAL, "including the plugin needs a plugin (with_model)");
    return 0;
}

/* Write the bundle of `ids` to `path` through a temporary file. */
int deja_bundle_export(deja_store *store, const deja_id *ids, size_t n,
                       const deja_bundle_options *opts, const char *path)
{
    deja_bundle_options o;
    exporter x;
    plugin_rec plugin;
    deja_bundle_info info;
    deja__buf manifest = {0};
    char tmp[PATH_MAX];
    uint64_t clen = 0, dlen;
    int fd = -1, have_tmp = 0;
    int rc;

    memset(&x, 0, sizeof x);
    memset(&plugin, 0, sizeof plugin);
    x.stage = -1;
    x.store = store;
    rc = export_options(opts, &o);
    if (rc != 0)
        goto cleanup;
    if (store == NULL || path == NULL || path[0] == '\0' || (n > 0 && ids == NULL)) {
        rc = deja__error_set(DEJA_EINVAL, "export needs a store, traces and a file name");
        goto cleanup;
    }
    if (n == 0) {
        rc = deja__error_set(DEJA_EINVAL, "no traces to export");
        goto cleanup;
    }
    if (n > DEJA__BUNDLE_MAX_RECORDS / 2) {
        rc = deja__error_set(DEJA_EINVAL, "%zu traces are more than a bundle holds (%zu)", n,
                             DEJA__BUNDLE_MAX_RECORDS / 2);
        goto cleanup;
    }
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp-XXXXXX", path) >= sizeof tmp) {
        rc = deja__error_set(DEJA_EINVAL, "bundle path '%s' is too long", path);
        goto cleanup;
    }
    x.stage = temp_fd("export");
    if (x.stage < 0) {
        rc = x.stage;
        goto cleanup;
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = export_trace(&x, &ids[i]);
        deja__progress(i + 1, n);
    }
    if (rc == 0 && o.with_model != NULL && o.with_model[0] != '\0')
        rc = plugin_describe(o.with_model, o.include_plugin, &plugin);
    if (rc != 0)
        goto cleanup;
    if (x.ntraces + x.blobs.n + x.envs.n + 2 > DEJA__BUNDLE_MAX_RECORDS) {
        rc = deja__error_set(DEJA_EINVAL, "the selection needs more than the %zu records a "
                             "bundle holds", DEJA__BUNDLE_MAX_RECORDS);
        goto cleanup;
    }
    memset(&info, 0, sizeof info);
    info.format = DEJA__BUNDLE_FORMAT;
    info.deja_version = DEJA_VERSION_STRING;
    info.created_ns = deja__now_ns();
    info.traces = x.ntraces;
    info.blobs = x.blobs.n;
    info.envs = x.envs.n;
    info.models = x.models;
    info.nmodels = x.nmodels;
    info.plugin = plugin.spec != NULL ? &plugin.pub : NULL;
    rc = deja__manifest_encode(&info, &manifest);
    if (rc != 0)
        goto cleanup;
    if (manifest.size > DEJA__MAX_RECORD) {
        rc = deja__error_set(DEJA_EINVAL, "the manifest (%zu bytes) is too large", manifest.size);
        goto cleanup;
    }
    dlen = REC_HEADER + manifest.size + x.staged;
    if (dlen > DEJA__BUNDLE_MAX_BODY - ((uint64_t)16 << 20)) {
        rc = deja__error_set(DEJA_EINVAL, "the selection takes %llu bytes, over the %llu a bundle "
                             "holds", (unsigned long long)dlen,
                             (unsigned long long)DEJA__BUNDLE_MAX_BODY);
        goto cleanup;
    }
    fd = mkstemp(tmp);
    if (fd < 0) {
        rc = deja__error_set(DEJA_EIO, "cannot create a file next to '%s': %s", path,
                             strerror(errno));
        goto cleanup;
    }
    have_tmp = 1;
    /* mkstemp made it 0600: give it the mode a new file gets here. */
    if (fchmod(fd, 0666 & ~current_umask()) != 0) {
        rc = deja__error_set(DEJA_EIO, "'%s': %s", tmp, strerror(errno));
        goto cleanup;
    }
    rc = write_bundle(&x, fd, &manifest, o.level, 0, &clen);
    if (rc == 0 && dlen > DEJA__BUNDLE_MAX_RATIO * clen + DEJA__BUNDLE_RATIO_SLACK) {
        /* Too compressible for readers' bomb check: add incompressible
         * filler (about a thousandth of the content) and write again. */
        uint64_t pad = (dlen + REC_HEADER - DEJA__BUNDLE_RATIO_SLACK -
                        DEJA__BUNDLE_MAX_RATIO * clen) / (DEJA__BUNDLE_MAX_RATIO - 1) + 4096;

        if (ftruncate(fd, 0) != 0 || lseek(fd, 0, SEEK_SET) != 0) {
            rc = deja__error_set(DEJA_EIO, "'%s': %s", tmp, strerror(errno));
            goto cleanup;
        }
        rc = write_bundle(&x, fd, &manifest, o.level, (size_t)pad, &clen);
        dlen += REC_HEADER + pad;
        if (rc == 0 && dlen > DEJA__BUNDLE_MAX_RATIO * clen + DEJA__BUNDLE_RATIO_SLACK)
            rc = deja__error_set(DEJA_EIO, "the bundle stays too compressible (%llu to %llu "
                                 "bytes)", (unsigned long long)dlen, (unsigned long long)clen);
    }
    if (rc != 0)
        goto cleanup;
    if (fsync(fd) != 0) {
        rc = deja__error_set(DEJA_EIO, "'%s': %s", tmp, strerror(errno));
        goto cleanup;
    }
    if (close(fd) != 0) {
        fd = -1;
        rc = deja__error_set(DEJA_EIO, "'%s': %s", tmp, strerror(errno));
        goto cleanup;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        rc = deja__error_set(DEJA_EIO, "cannot write '%s': %s", path, strerror(errno));
        goto cleanup;
    }
    have_tmp = 0;
cleanup:
    if (fd >= 0)
        close(fd);
    if (have_tmp)
        unlink(tmp);
    deja__buf_free(&manifest);
    plugin_rec_free(&plugin);
    exporter_free(&x);
    return rc;
}

/* Wrap `size` bytes of records as a complete bundle file in `out`, with a
 * correct header and checksum (for tests and the fuzz target, which build
 * hostile bodies that must get past the checksum). */
int deja__bundle_wrap(const void *body, size_t size, deja__buf *out)
{
    size_t bound = ZSTD_compressBound(size);
    XXH3_state_t *st = NULL;
    XXH128_canonical_t c;
    size_t clen;
    int rc;

    out->size = 0;
    rc = deja__buf_reserve(out, DEJA__BUNDLE_HEADER + bound);
    if (rc != 0)
        return rc;
    clen = ZSTD_compress(out->data + DEJA__BUNDLE_HEADER, bound, size ? body : "", size, 1);
    if (ZSTD_isError(clen))
        return deja__error_set(DEJA_EIO, "zstd: %s", ZSTD_getErrorName(clen));
    memcpy(out->data, DEJA_BUNDLE_MAGIC, DEJA_BUNDLE_MAGIC_LEN);
    put_le(out->data + 8, DEJA__BUNDLE_FORMAT, 4);
    put_le(out->data + 12, 0, 4);
    put_le(out->data + 16, clen, 8);
    put_le(out->data + 24, size, 8);
    st = XXH3_createState();
    if (st == NULL || XXH3_128bits_reset(st) != XXH_OK ||
        XXH3_128bits_update(st, out->data + DEJA__BUNDLE_HEADER, clen) != XXH_OK ||
        XXH3_128bits_update(st, out->data, HEADER_HASHED) != XXH_OK) {
        XXH3_freeState(st);
        return deja__error_set(DEJA_ENOMEM, "out of memory hashing");
    }
    XXH128_canonicalFromHash(&c, XXH3_128bits_digest(st));
    XXH3_freeState(st);
    memcpy(out->data + HEADER_HASHED, c.digest, KEY);
    out->size = DEJA__BUNDLE_HEADER + clen;
    return 0;
}
