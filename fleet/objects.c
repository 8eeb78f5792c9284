/*
 * fleet/objects.c -- fetching content-addressed objects back from the
 * fleet: a blob whole or reassembled from its chunks, every piece checked
 * against its digest before anyone sees it (what comes from the network is
 * untrusted).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet/fleet_internal.h"
#include "store/store.h"

static uint64_t get_le(const uint8_t *p, size_t n)
{
    uint64_t x = 0;

    for (size_t i = n; i > 0; i--)
        x = x << 8 | p[i - 1];
    return x;
}

static int corrupt(const deja_digest *d, const char *why)
{
    char hex[33];

    deja_digest_format(d, hex);
    return deja__error_set(DEJA_ECORRUPT, "fleet blob %s: %s", hex, why);
}

/* Fetch chunk `c` of `size` bytes into `dst`, checked. */
static int fetch_chunk(deja_fleet *f, const deja_digest *blob, const uint8_t *c, size_t size,
                       uint8_t *dst, uint64_t *bytes)
{
    char subject[64];
    natsMsg *m = NULL;
    deja_digest cd, got;
    int rc;

    memcpy(cd.bytes, c, 16);
    deja__fleet_obj_subject(DEJA__OBJ_CHUNK, &cd, subject);
    rc = deja__fleet_get(f, DEJA__FLEET_OBJECTS, subject, &m);
    if (rc == DEJA_ENOTFOUND)
        return corrupt(blob, "a chunk is missing from the fleet");
    if (rc != 0)
        return rc;
    *bytes += (uint64_t)natsMsg_GetDataLength(m);
    if ((size_t)natsMsg_GetDataLength(m) != size) {
        natsMsg_Destroy(m);
        return corrupt(blob, "a chunk has the wrong size");
    }
    got = deja_digest_of(natsMsg_GetData(m), size);
    if (memcmp(got.bytes, c, 16) != 0) {
        natsMsg_Destroy(m);
        return corrupt(blob, "a chunk does not match its digest");
    }
    memcpy(dst, natsMsg_GetData(m), size);
    natsMsg_Destroy(m);
    return 0;
}

int deja__fleet_blob_fetch(deja_fleet *f, const deja_digest *d, void **data, size_t *size,
                           uint64_t *bytes)
{
    char subject[64];
    natsMsg *m = NULL;
    const uint8_t *p;
    uint8_t *buf = NULL;
    size_t n, total, count, off = 0;
    deja_digest got;
    int rc;

    *data = NULL;
    *size = 0;
    deja__fleet_obj_subject(DEJA__OBJ_BLOB, d, subject);
    rc = deja__fleet_get(f, DEJA__FLEET_OBJECTS, subject, &m);
    if (rc == DEJA_ENOTFOUND) {
        char hex[33];

        deja_digest_format(d, hex);
        return deja__error_set(DEJA_ENOTFOUND, "fleet blob %s is missing", hex);
    }
    if (rc != 0)
        return rc;
    p = (const uint8_t *)natsMsg_GetData(m);
    n = (size_t)natsMsg_GetDataLength(m);
    *bytes += n;
    if (n >= 1 && p[0] == DEJA__BLOB_WHOLE) {
        total = n - 1;
        buf = malloc(total ? total : 1);
        if (buf == NULL) {
            rc = deja__error_set(DEJA_ENOMEM, "out of memory");
            goto cleanup;
        }
        memcpy(buf, p + 1, total);
    } else if (n >= DEJA__BLOB_LIST_HEAD && p[0] == DEJA__BLOB_CHUNKS) {
        total = (size_t)get_le(p + 1, 8);
        count = (size_t)get_le(p + 9, 4);
        /* Bound everything before allocating: the list must hold exactly
         * `count` entries and the sizes must add up to `total`. */
        if (count != (n - DEJA__BLOB_LIST_HEAD) / DEJA__BLOB_LIST_ENTRY ||
            (n - DEJA__BLOB_LIST_HEAD) % DEJA__BLOB_LIST_ENTRY != 0 || total > DEJA__MAX_RECORD ||
            count == 0) {
            rc = corrupt(d, "malformed chunk list");
            goto cleanup;
        }
        buf = malloc(total ? total : 1);
        if (buf == NULL) {
            rc = deja__error_set(DEJA_ENOMEM, "out of memory");
            goto cleanup;
        }
        for (size_t i = 0; i < count; i++) {
            const uint8_t *e = p + DEJA__BLOB_LIST_HEAD + i * DEJA__BLOB_LIST_ENTRY;
            const size_t cs = (size_t)get_le(e, 4);

            if (cs == 0 || cs > total - off) {
                rc = corrupt(d, "chunk sizes do not add up");
                goto cleanup;
            }
            rc = fetch_chunk(f, d, e + 4, cs, buf + off, bytes);
            if (rc != 0)
                goto cleanup;
            off += cs;
        }
        if (off != total) {
            rc = corrupt(d, "chunk sizes do not add up");
            goto cleanup;
        }
    } else {
        rc = corrupt(d, "unknown object form");
        goto cleanup;
    }
    got = deja_digest_of(buf, total);
    if (memcmp(got.bytes, d->bytes, 16) != 0) {
        rc = corrupt(d, "content does not match its digest");
        goto cleanup;
    }
    *data = buf;
    *size = total;
    buf = NULL;

cleanup:
    free(buf);
    natsMsg_Destroy(m);
    return rc;
}
