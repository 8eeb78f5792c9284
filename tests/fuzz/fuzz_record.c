/*
 * tests/fuzz/fuzz_record.c -- libFuzzer target for what the store reads
 * back: the first byte of an input picks the decoder the rest goes to,
 *   0: a stored record (header, zstd, dictionary id) and then, when it
 *      decodes, the Trace protobuf inside it (decoded into a buffer, and
 *      visited in place as the read path does);
 *   1: a Trace protobuf;
 *   2: an Environment protobuf;
 *   3: a chunked blob's list of chunks.
 * Decoding must never crash, leak or run away, whatever the bytes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto/codec.h"
#include "store/store.h"
#include "store/store_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One store for the whole run, holding dictionary 1 (FUZZ_DICT_SIZE bytes
 * of fuzz_dict(), a raw-content dictionary) so that records naming it take
 * the read path's decoders. Removed at exit. */
static deja_store *store;
static char dir[64];

#define FUZZ_DICT_SIZE 2048

/* The dictionary's bytes; corpus/record/record-dict was compressed with
 * them. */
static void fuzz_dict(uint8_t *d)
{
    static const char words[] = "the prompt completion model textgen deja trace ";

    for (size_t i = 0; i < FUZZ_DICT_SIZE; i++)
        d[i] = (uint8_t)words[(i * 7 + i / 13) % (sizeof words - 1)];
}

static int put_dict(deja__wtxn *w, void *payload)
{
    uint8_t d[FUZZ_DICT_SIZE];
    MDB_val k = {6, "dict/1"}, v = {sizeof d, d};

    (void)payload;
    fuzz_dict(d);
    return mdb_put(w->txn, w->store->meta, &k, &v, 0) == 0 ? 0 : DEJA_EIO;
}

static void remove_store(void)
{
    char path[128];

    deja_store_close(store);
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/lock.mdb", dir);
    unlink(path);
    rmdir(dir);
}

static deja_store *the_store(void)
{
    if (store == NULL) {
        snprintf(dir, sizeof dir, "/tmp/deja-fuzz-record-XXXXXX");
        if (mkdtemp(dir) == NULL || deja_store_open(&store, dir, DEJA_STORE_WRITE) != 0 ||
            deja__store_write(store, put_dict, NULL) != 0)
            abort();
        atexit(remove_store);
    }
    return store;
}

/* deja__record_visit's callback, as store/read.c's. */
static int decode_trace(const uint8_t *data, size_t size, void *arg)
{
    return deja__trace_decode(data, size, arg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    deja_trace *t = NULL;
    deja_env *e = NULL;

    if (size == 0)
        return 0;
    switch (data[0] % 4) {
    case 0: {
        deja_store *s = the_store();
        MDB_txn *txn = NULL;
        uint8_t *raw = NULL;
        size_t n = 0;
        if (deja__rtxn_begin(s, &txn) != 0)
            abort();
        if (deja__record_decode(s, txn, data + 1, size - 1, "trace", &raw, &n) == 0 &&
            deja__trace_decode(raw, n, &t) == 0)
            deja_trace_free(t);
        free(raw);
        /* the read path's door: the record visited in place */
        t = NULL;
        if (deja__record_visit(s, txn, data + 1, size - 1, "trace", decode_trace, &t, NULL) == 0)
            deja_trace_free(t);
        deja__rtxn_end(s, txn);
        break;
    }
    case 1:
        if (deja__trace_decode(data + 1, size - 1, &t) == 0)
            deja_trace_free(t);
        break;
    case 2:
        if (deja__env_decode(data + 1, size - 1, &e) == 0)
            deja_env_free(e);
        break;
    default: {
        deja__chunked it;
        const deja_digest blob = deja_digest_of(data + 1, size - 1);
        size_t cs;
        const uint8_t *cd;
        if (deja__chunked_parse(data + 1, size - 1, &blob, &it) == 0)
            while (deja__chunked_next(&it, &cs, &cd))
                ;
        break;
    }
    }
    return 0;
}
