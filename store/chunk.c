/*
 * store/chunk.c -- content-defined chunking of blob payloads, and the
 * chunked blob value (a manifest) that lists the chunks of a payload.
 *
 * A blob above one chunk's worth is cut where a gear rolling hash of the
 * last 64 bytes hits a mask (FastCDC with normalised chunking: a harder
 * mask before the average size, an easier one after), so that an insertion
 * or an edit moves only the cuts next to it and a payload that extends
 * another (a conversation that grows by one turn) shares every chunk but
 * the last ones. Each chunk is a record in the `chunks` database under its
 * XXH3-128 digest, stored once. The blob's own value becomes
 *   'C' | version 1 | varint total size | (varint chunk size | digest16)*
 * while a whole blob stays a record (magic 'D'), as every blob was before.
 * The gear table below is part of the on-disk format: changing it, or the
 * sizes in store_internal.h, would stop new payloads sharing chunks with
 * old ones (nothing would become unreadable).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/varint.h"
#include "store/store_internal.h"

/* splitmix64 values from the seed 0x64656a6163646300 ("dejacdc"). */
static const uint64_t gear[256] = {
    0x6d0c7fb3b123a47aull, 0x7d7ec5da2afa953bull, 0xdcf98500ff27a3e2ull, 0x10a76101c6257144ull,
    0x214eb09d386aee5aull, 0x29065243358f4164ull, 0x3dcd4df6160839e2ull, 0xe6012ff7893cde92ull,
    0xe4c9b6648726d7d4ull, 0xf2ffa8b98ab06bbaull, 0xb247674dccefdbf5ull, 0x2d7d356b4fe53709ull,
    0x3cc4784bd5fcd060ull, 0xc41e6ea0daf4c20bull, 0x2d7d7cabb41005f7ull, 0x26f4c9adf71f3fd4ull,
    0xb2e91d34705e1e1full, 0xea0a6a32cd7e6458ull, 0x2e2c10cb4ccd4317ull, 0x1d7a9cd7321c2e74ull,
    0xb78b777d0ac9a586ull, 0x2eb5f460e0d4e9a7ull, 0x8b9504cd3d480e4aull, 0x0245a7254b2a5817ull,
    0xb6bad33a4fd6fe96ull, 0xa826ef1bae39c315ull, 0x817bb19cb20fc263ull, 0x0c27133cfe5b6725ull,
    0x001e64f2bd8f9161ull, 0x16a923302e15ca9aull, 0x9fdcb248d87ae516ull, 0xb304865342eb7666ull,
    0xf65d1af41e96fec2ull, 0xdec04a2d128551d5ull, 0x0be00f55dfc11101ull, 0xd94e7d0a3d74d294ull,
    0xe6e1dcc4f2abcf08ull, 0xa3cb631548de8beaull, 0x4b43afbcda4ec804ull, 0x93fe056251ae55caull,
    0xcd6e5984beb65dd9ull, 0xdffa85594f393fcaull, 0x56bb25917eb84cb5ull, 0x9ce6d53d17dd9609ull,
    0x86f9513d158ca435ull, 0x5ee0af095c9a74b5ull, 0xaadde511ef910119ull, 0x38b7b40b9598c4d2ull,
    0xfa66d881b09fff87ull, 0x91254477dadfb05aull, 0xac5c0f2cd88a5f15ull, 0x700239196385ad48ull,
    0xf2d73da46ac0f338ull, 0x8954d8976970deafull, 0x2f96ec57e02f97b9ull, 0x26b60fbb235f8f06ull,
    0xec38e70d75bccf70ull, 0x2b410fd5fe320692ull, 0x4f3a48e69277a605ull, 0x8ef9dc188e4cfa83ull,
    0xd7beb6876fc0aa19ull, 0xd4842e4148f54e24ull, 0x6709af9202c6957eull, 0x54de020ec18dc15bull,
    0xacaca884b95873eaull, 0x41774a598e699c81ull, 0x0b94df3bb8fa077dull, 0x9a54c6a0b62914dcull,
    0xf1b5459bdd531277ull, 0xf8f95b12559b682full, 0xe0840bb817d38e25ull, 0x03b5c6d1bf9bddffull,
    0x972ffe20a17916d7ull, 0x81e0cf3a4d2af20eull, 0xea043053eeb6c0b3ull, 0x1fd5fd26b2b975f9ull,
    0x53a25449a90f5138ull, 0xf07aa2afc0f4da7dull, 0x41a06542ca61662dull, 0x11c41dd96425ca84ull,
    0x773da4769f847d79ull, 0x23870b75e7757d71ull, 0x18bb0a2d26c7dda6ull, 0xaeb7e69c7c1eca90ull,
    0x5f6930a10aa636e3ull, 0x5306202135ff7e95ull, 0xfd72333a6c4b34efull, 0x0425a44002212d90ull,
    0x9de72dac9e5ffe09ull, 0x4c4e3506de84e3dfull, 0x3b7013709affc0f3ull, 0x15233bfa55f95cf3ull,
    0x43a54b7975a8fefaull, 0x7c533dd8d2135809ull, 0x1c941d681d69822eull, 0xbb905bbd9db5ad42ull,
    0x1d829b11b71d9d63ull, 0x200318cb839191c0ull, 0x8aee2416da77693eull, 0x4511cd2ae1784319ull,
    0x252ce6a8b4e6fa04ull, 0xf1e7629fdcf6dc11ull, 0xc380ef7ad9335f76ull, 0xbd4c74987cfe1c2aull,
    0x883a448c4fc12cf1ull, 0x964d0b3f564a93f6ull, 0x75d5894dad4af6ddull, 0x26950e255359c67eull,
    0xb765204c5b2575c3ull, 0x540482ae2ba3cbd2ull, 0xd97b75d9b7118545ull, 0xc4fe5aa246c4f0c4ull,
    0xd852f6a7d8d19d3bull, 0x6a2afaf1dc57ff2full, 0x85d651f5f2c25dbfull, 0x483d71d8184c0083ull,
    0x904b37fdf061b52bull, 0x181278b0c39f50efull, 0xf9e6b34b013b1360ull, 0x77b7f6a94566a21eull,
    0xa5b4b672b880a463ull, 0x9ced4eceb4a60a14ull, 0xa2f526100450960full, 0x645ce180c8c45560ull,
    0xb5328fa65552f66bull, 0xcf0096bfe7ce8191ull, 0x4ea6cdef8c348fddull, 0x7782709485054b3dull,
    0x0e2edf0273621afeull, 0xf652f54b2b010d95ull, 0xfeacc791b733bbb4ull, 0x994afc50433f3a5full,
    0x8c6ab6cecde0004aull, 0x5b25aea7366f7ddbull, 0x6225d3f3d531f11full, 0x6bdb41939309b174ull,
    0x17a95b5a2c2c3995ull, 0x69c43bd6ec9ee101ull, 0xe68feaa6f6684802ull, 0x33dd5795daf5740full,
    0xa8ca86a9c036e03bull, 0x1813fd23d32e1364ull, 0x54ab1da2eff42c82ull, 0xc8012dcda6d07af5ull,
    0x916f5077b3b28743ull, 0x78895b3c6713c60eull, 0x62518cc0b427f214ull, 0x4abb758ff2b35ef9ull,
    0x2d9dc5b147048f8full, 0x5d33c57023caec2dull, 0x532737bb69a47bcaull, 0x6e089c5a0d6158cfull,
    0x307aa06136c5a226ull, 0x47b858f1f3375224ull, 0xda02491d3b5f7d3cull, 0xc1b0e63ce57250caull,
    0x0a58f63d5a767f54ull, 0xd95b68d1309b57bfull, 0x30c90e04ae90d1b9ull, 0xc1bff5d988f11dc9ull,
    0xad15572d938ca832ull, 0xee1ae689b2064a7full, 0xe20b908ab025a8ddull, 0x7b3b4fa03cde1ff9ull,
    0x8ea8080d3c35ecdfull, 0xbb1a7fb6fd9896d1ull, 0x17fdfd90073634ffull, 0x7e7b678d0135f567ull,
    0xd4046b909b86cbd0ull, 0x5903e3e85c0a0b79ull, 0x9bc53e874aa794a8ull, 0x0b2b1028fd1b8a6full,
    0x33ee0559d6bfa516ull, 0x403e67bd4f573b8eull, 0xcba59600aaec2df0ull, 0xfb31fb4466bd7b31ull,
    0x88f1f955e4212734ull, 0xbe876c2715d618c8ull, 0x30bb4ce885083ee5ull, 0xec48b19475a4e34full,
    0x3022bbced4a27224ull, 0xe8765a249b6d80fbull, 0xa9b81e684cbe0f59ull, 0x939ba49e859f3f17ull,
    0x01c8c58027495eb5ull, 0xf38786586172eaccull, 0xde6dd543d65930b0ull, 0x50755d3530843ceeull,
    0xef20bb17d65572ddull, 0xafbea9d6e9c3fc54ull, 0x7f16a2b5e907877dull, 0x8b92de3e901df119ull,
    0xf7beb4a373fb357bull, 0xac7c03d1d21a5d79ull, 0x0df214031e697ab8ull, 0xd04ed4d6da3cd3f0ull,
    0x86d652263c5442eeull, 0x4a93ca5065c9b3d4ull, 0x4278bfb6a67c1999ull, 0x32ae373578928819ull,
    0x813a6b149f60f5adull, 0xb1472145cf98e62bull, 0xc6a03975cd8c6829ull, 0xffd365855f4b0634ull,
    0x694045ce7ad47bc5ull, 0x3ca50208feaa9e8full, 0x3573cfccb44b0d09ull, 0x4cd52a0725da6236ull,
    0x46f6dd36e68a4896ull, 0x352290e0da3e3db0ull, 0xa5d7aff86738de18ull, 0xd14c1e07b59d207full,
    0x3bab8e7f9f2eee1eull, 0x411a6261f1ac06c9ull, 0x2784c830729fefeeull, 0x1be0fc235d0add6eull,
    0xb0abcbcc03a16469ull, 0xb650f9fdd0823ebaull, 0xef814cc7f045a46aull, 0x57bb7892bbe012e2ull,
    0x145aa5188d25e2ccull, 0x36640a9d669ef75cull, 0xe1c8e4471df1b1b2ull, 0x79a84bd0ee3e357aull,
    0xbc80f8c86b376ba9ull, 0x8be5f94ef76b1eb6ull, 0xb49a57a6de13da8full, 0x638f04ceb625eb7aull,
    0xc61f170aa7e3d28bull, 0xec5db338f34a1c29ull, 0x228c0f95c9ac679bull, 0x113ca55474229c64ull,
    0xc0c858d9362aa4a6ull, 0x6600b121ec9f9a24ull, 0xdc77351854fbc23full, 0x0b2f0b09d6efdb95ull,
    0xef666dd29b3e7e48ull, 0xe19b2318c2105c2eull, 0x941d8bae1e0e7b80ull, 0x625e78801f7a86c0ull,
    0x380038fedcad8606ull, 0x777ad85389e86c3dull, 0x2eed1da81c6142acull, 0x98dd8558ca3070d8ull,
    0xb40b4c2e2aaf7babull, 0x04f1611400b87c43ull, 0x73ea150acf7f4e21ull, 0x695aba90e21757e3ull,
    0x370cb6ef37628ebcull, 0x485dae77e4443418ull, 0x832bd0a35bd8d9afull, 0x997da040d8bbcc43ull,
    0x5760951f64fff945ull, 0xc8c705186da682b1ull, 0x0d397ce4be35c1edull, 0x93318be95a8734bcull,
};

/* Cut thresholds on the top bits of the hash: a cut needs the top
 * AVG_BITS + 2 bits zero before the average size, AVG_BITS - 2 after. */
#define HARD ((uint64_t)1 << (64 - (DEJA__CHUNK_AVG_BITS + 2)))
#define EASY ((uint64_t)1 << (64 - (DEJA__CHUNK_AVG_BITS - 2)))

/* The length of the chunk that starts at `p`, `n` bytes remaining: between
 * DEJA__CHUNK_MIN + 1 and DEJA__CHUNK_MAX, or `n` when fewer remain. The
 * cut depends on the 64 bytes before it only. */
size_t deja__chunk_next(const uint8_t *p, size_t n)
{
    const size_t avg = (size_t)1 << DEJA__CHUNK_AVG_BITS;
    size_t i, mid;
    uint64_t h = 0;

    if (n <= DEJA__CHUNK_MIN)
        return n;
    if (n > DEJA__CHUNK_MAX)
        n = DEJA__CHUNK_MAX;
    mid = avg < n ? avg : n;
    for (i = DEJA__CHUNK_MIN - 64; i < DEJA__CHUNK_MIN; i++)
        h = (h << 1) + gear[p[i]];
    for (; i < mid; i++) {
        h = (h << 1) + gear[p[i]];
        if (h < HARD)
            return i + 1;
    }
    for (; i < n; i++) {
        h = (h << 1) + gear[p[i]];
        if (h < EASY)
            return i + 1;
    }
    return n;
}

/* Start a manifest for a payload of `total` bytes in `out` (replaced). */
int deja__chunked_begin(deja__buf *out, size_t total)
{
    uint8_t head[2] = {DEJA__CHUNKED_MAGIC, DEJA__CHUNKED_VERSION};

    out->size = 0;
    if (deja__buf_append(out, head, 2) != 0)
        return deja__error_set(DEJA_ENOMEM, "chunking a blob: out of memory");
    if (deja__varint_put(out, total) != 0)
        return deja__error_set(DEJA_ENOMEM, "chunking a blob: out of memory");
    return 0;
}

/* Append the chunk `digest` of `size` bytes to the manifest in `out`. */
int deja__chunked_add(deja__buf *out, size_t size, const deja_digest *digest)
{
    if (deja__varint_put(out, size) != 0 || deja__buf_append(out, digest->bytes, 16) != 0)
        return deja__error_set(DEJA_ENOMEM, "chunking a blob: out of memory");
    return 0;
}

/* Check the manifest `v` (`n` bytes) of blob `blob` and set `it` to walk
 * it: the sizes are bounded and add up to the total, which is at most
 * DEJA__MAX_RECORD. DEJA_ECORRUPT naming the blob otherwise. */
int deja__chunked_parse(const void *v, size_t n, const deja_digest *blob, deja__chunked *it)
{
    const uint8_t *p = v, *end = p + n;
    uint64_t total, size, sum = 0, count = 0;

    memset(it, 0, sizeof *it);
    if (n < 2 || p[0] != DEJA__CHUNKED_MAGIC)
        return deja__blob_malformed(blob, "chunk list", "no header");
    if (p[1] != DEJA__CHUNKED_VERSION)
        return deja__blob_malformed(blob, "chunk list", "unknown version");
    p += 2;
    if (deja__varint_get(&p, end, 5, &total) != 0 || total > DEJA__MAX_RECORD)
        return deja__blob_malformed(blob, "chunk list", "bad total size");
    it->entries = p;
    while (p < end) {
        if (deja__varint_get(&p, end, 5, &size) != 0 || size == 0 || size > total - sum)
            return deja__blob_malformed(blob, "chunk list", "bad chunk size");
        if ((size_t)(end - p) < 16)
            return deja__blob_malformed(blob, "chunk list", "cut short");
        p += 16;
        sum += size;
        count++;
    }
    if (sum != total)
        return deja__blob_malformed(blob, "chunk list", "chunk sizes do not add up to the total");
    it->end = end;
    it->total = (size_t)total;
    it->count = (size_t)count;
    return 0;
}

/* The next chunk of a parsed manifest: 1 with `*size` and `*digest` set,
 * 0 at the end. */
int deja__chunked_next(deja__chunked *it, size_t *size, const uint8_t **digest)
{
    uint64_t x = 0;

    if (it->entries >= it->end)
        return 0;
    (void)deja__varint_get(&it->entries, it->end, 5, &x); /* checked by the parse */
    *size = (size_t)x;
    *digest = it->entries;
    it->entries += 16;
    return 1;
}

/* "blob B: chunk C" (or "chunk C" when `blob` is NULL) into `what`. */
static void chunk_name(char *what, size_t cap, const deja_digest *blob, const uint8_t *digest)
{
    char bhex[33], chex[33];
    deja_digest d;

    memcpy(d.bytes, digest, 16);
    deja_digest_format(&d, chex);
    if (blob != NULL) {
        deja_digest_format(blob, bhex);
        snprintf(what, cap, "blob %s: chunk %s", bhex, chex);
    } else {
        snprintf(what, cap, "chunk %s", chex);
    }
}

/* Decode the chunk record `rec` (`n` bytes) stored under `digest` into
 * `dst`, which has room for exactly `size` bytes; its size and digest are
 * checked. Errors name `blob` (may be NULL) and the chunk. */
static int chunk_decode(deja_store *store, MDB_txn *txn, const void *rec, size_t n,
                        const uint8_t *digest, size_t size, const deja_digest *blob, uint8_t *dst)
{
    const uint8_t *p = rec;
    uint8_t *raw = NULL;
    const uint8_t *src;
    size_t got = 0;
    char what[112];
    deja_digest d;
    int rc = 0;

    if (n == DEJA__RECORD_HEADER + size && p[0] == DEJA__RECORD_MAGIC && p[1] == DEJA__CODEC_RAW &&
        (p[2] | p[3] | p[4] | p[5]) == 0 &&
        ((uint32_t)p[6] | (uint32_t)p[7] << 8 | (uint32_t)p[8] << 16 | (uint32_t)p[9] << 24) ==
            size) {
        /* A raw record: its header is checked by the size, copy in place. */
        src = p + DEJA__RECORD_HEADER;
        got = size;
    } else {
        chunk_name(what, sizeof what, blob, digest);
        rc = deja__record_decode(store, txn, rec, n, what, &raw, &got);
        if (rc != 0)
            return rc;
        src = raw;
    }
    if (got != size) {
        chunk_name(what, sizeof what, blob, digest);
        rc = deja__error_set(DEJA_ECORRUPT, "%s: holds %zu bytes, the chunk list says %zu", what,
                             got, size);
        goto cleanup;
    }
    d = deja_digest_of(src, size);
    if (memcmp(d.bytes, digest, 16) != 0) {
        chunk_name(what, sizeof what, blob, digest);
        rc = deja__error_set(DEJA_ECORRUPT, "%s: content does not match its digest", what);
        goto cleanup;
    }
    memcpy(dst, src, size);

cleanup:
    free(raw);
    return rc;
}

/* Read the chunk `digest` of `size` bytes (named in errors with `blob`,
 * which may be NULL) into `dst`. A missing chunk is DEJA_ECORRUPT when
 * `blob` is given (the blob is damaged), DEJA_ENOTFOUND otherwise. */
int deja__chunk_read(deja_store *store, MDB_txn *txn, const uint8_t *digest, size_t size,
                     const deja_digest *blob, uint8_t *dst)
{
    MDB_val k = {16, (void *)digest}, v;
    char what[112];
    int rc = store->has_chunks ? mdb_get(txn, store->chunks, &k, &v) : MDB_NOTFOUND;

    if (rc == MDB_NOTFOUND) {
        chunk_name(what, sizeof what, blob, digest);
        return deja__error_set(blob != NULL ? DEJA_ECORRUPT : DEJA_ENOTFOUND, "%s is missing",
                               what);
    }
    if (rc != 0) {
        chunk_name(what, sizeof what, blob, digest);
        return deja__mdb_error(rc, what);
    }
    return chunk_decode(store, txn, v.mv_data, v.mv_size, digest, size, blob, dst);
}

/* The cache is two-way: a chunk lives in one of the two slots of its set,
 * the newer in the even one. (One way lost a fifth of a conversation's
 * histories to collisions between being read as a trace's blob and being
 * read again as the base of the next turn's delta.) */
static size_t set_of(const uint8_t *digest)
{
    return (((size_t)digest[14] | (size_t)digest[15] << 8) % DEJA__CHUNK_CACHE_SLOTS) & ~(size_t)1;
}

static int holds(const deja__chunk_slot *s, const uint8_t *digest, size_t size)
{
    return s->data != NULL && s->size == size && memcmp(s->digest, digest, 16) == 0;
}

/* Copy the cached chunk `digest` of `size` bytes into `dst`: 1 if it was
 * cached, 0 if not. */
static int cache_get(deja_store *store, const uint8_t *digest, size_t size, uint8_t *dst)
{
    const deja__chunk_slot *s;
    int hit = 0;

    pthread_mutex_lock(&store->lock);
    if (store->chunk_cache != NULL) {
        s = &store->chunk_cache[set_of(digest)];
        if (holds(&s[0], digest, size) || holds(&s[1], digest, size)) {
            memcpy(dst, holds(&s[0], digest, size) ? s[0].data : s[1].data, size);
            hit = 1;
        }
    }
    pthread_mutex_unlock(&store->lock);
    return hit;
}

/* Keep a copy of the checked chunk `digest` (`size` bytes at `data`) in
 * the cache, the newest of its set (the older one of the set goes), while
 * the cache stays under its byte bound. Out of memory only means the chunk
 * is not kept. */
static void cache_put(deja_store *store, const uint8_t *digest, const uint8_t *data, size_t size)
{
    deja__chunk_slot *s;
    uint8_t *copy, *old = NULL;

    if (size > DEJA__CHUNK_CACHE_BYTES / 16)
        return;
    copy = malloc(size > 0 ? size : 1);
    if (copy == NULL)
        return;
    memcpy(copy, data, size);
    pthread_mutex_lock(&store->lock);
    if (store->chunk_cache == NULL)
        store->chunk_cache = calloc(DEJA__CHUNK_CACHE_SLOTS, sizeof *store->chunk_cache);
    if (store->chunk_cache != NULL) {
        deja__chunk_slot *out;

        s = &store->chunk_cache[set_of(digest)];
        /* The slot that goes: this chunk's own, else an empty one, else
         * the older one. */
        out = holds(&s[0], digest, size)   ? &s[0]
              : holds(&s[1], digest, size) ? &s[1]
              : s[0].data == NULL          ? &s[0]
                                           : &s[1];
        if (store->chunk_cache_bytes - (out->data != NULL ? out->size : 0) + size <=
            DEJA__CHUNK_CACHE_BYTES) {
            if (out->data != NULL)
                store->chunk_cache_bytes -= out->size;
            old = out->data;
            if (out == &s[1])
                s[1] = s[0];
            memcpy(s[0].digest, digest, 16);
            s[0].size = size;
            s[0].data = copy;
            store->chunk_cache_bytes += size;
            copy = NULL;
        }
    }
    pthread_mutex_unlock(&store->lock);
    free(old);
    free(copy);
}

/* The chunk cache for other content-addressed payloads (a delta's, once
 * reconstructed): see store_internal.h. */
int deja__chunk_cache_get(deja_store *store, const uint8_t *digest, size_t size, uint8_t *dst)
{
    return cache_get(store, digest, size, dst);
}

void deja__chunk_cache_put(deja_store *store, const uint8_t *digest, const uint8_t *data,
                           size_t size)
{
    cache_put(store, digest, data, size);
}

/* Free the chunk cache (at close: no other thread uses the handle). */
void deja__chunk_cache_free(deja_store *store)
{
    if (store->chunk_cache != NULL)
        for (size_t i = 0; i < DEJA__CHUNK_CACHE_SLOTS; i++)
            free(store->chunk_cache[i].data);
    free(store->chunk_cache);
    store->chunk_cache = NULL;
    store->chunk_cache_bytes = 0;
}

/* Reassemble the chunked blob `blob` from its manifest `v` (`n` bytes) in
 * `txn`: every chunk and the whole payload are checked against their
 * digests; with `cached`, through the handle's chunk cache. The caller
 * frees `*data`. */
int deja__chunked_read(deja_store *store, MDB_txn *txn, const deja_digest *blob, const void *v,
                       size_t n, int cached, void **data, size_t *size)
{
    deja__chunked it;
    uint8_t *buf = NULL;
    const uint8_t *cd;
    size_t off = 0, cs;
    char hex[33];
    int rc;

    *data = NULL;
    *size = 0;
    rc = deja__chunked_parse(v, n, blob, &it);
    if (rc != 0)
        return rc;
    buf = malloc(it.total > 0 ? it.total : 1);
    if (buf == NULL) {
        deja_digest_format(blob, hex);
        return deja__error_set(DEJA_ENOMEM, "blob %s: out of memory for %zu bytes", hex, it.total);
    }
    while (deja__chunked_next(&it, &cs, &cd)) {
        if (!cached || !cache_get(store, cd, cs, buf + off)) {
            rc = deja__chunk_read(store, txn, cd, cs, blob, buf + off);
            if (rc != 0)
                goto cleanup;
            if (cached)
                cache_put(store, cd, buf + off, cs);
        }
        off += cs;
    }
    rc = deja__blob_check(blob, buf, it.total);
    if (rc != 0)
        goto cleanup;
    *data = buf;
    *size = it.total;
    buf = NULL;

cleanup:
    free(buf);
    return rc;
}
