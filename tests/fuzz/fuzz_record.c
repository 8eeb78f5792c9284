/*
 * tests/fuzz/fuzz_record.c -- libFuzzer target for what the store reads
 * back: the first byte of an input picks the decoder the rest goes to,
 *   0: a stored record (header, zstd, dictionary id) and then, when it
 *      decodes, the Trace protobuf inside it;
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

/* One store for the whole run (records are decoded against its
 * dictionaries: none). Removed at exit. */
static deja_store *store;
static char dir[64];

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
        if (mkdtemp(dir) == NULL || deja_store_open(&store, dir, DEJA_STORE_WRITE) != 0)
            abort();
        atexit(remove_store);
    }
    return store;
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
