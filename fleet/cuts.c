/*
 * fleet/cuts.c -- the chunks of a payload to ship, cut the way the store
 * cuts (deja__store_cut), remembering the chunks of the payloads already
 * cut so that a payload which extends one of them is not cut again.
 *
 * A chat history grows by a turn at a time: the history of turn n is the
 * one of turn n-1 with a reply and a message appended. Cutting it anew
 * costs a gear hash over every byte of every turn. But a cut the cutter
 * made before the end of its input depends only on the bytes before it
 * (store/chunk.c: deja__chunk_next reads the chunk's own bytes only, and
 * its thresholds do not depend on how much follows), so a payload that
 * holds the same bytes as an earlier one up to one of its cuts has that cut
 * too. Cutting a payload therefore looks up the last payload remembered
 * under the digest of its first KEY_BYTES bytes, takes that payload's
 * chunks (all but its last, which ended where its input did) as long as
 * the bytes here have the same digest -- the digest each chunk needs
 * anyway -- and cuts from where they stop agreeing. The chunks are exactly
 * those a full cut gives, whatever was remembered: the key only picks
 * which payload to try.
 */
#include <stdlib.h>
#include <string.h>

#include "fleet/fleet_internal.h"
#include "store/store.h"

/* Payloads remembered (direct-mapped by their first chunk's digest), and
 * the chunks they may hold in all before the memory starts again. */
#define SLOTS 4096
#define MEMO_CUTS_MAX ((size_t)1 << 18)
#define KEY_BYTES 512

typedef struct memo_slot {
    uint8_t key[16]; /* the digest of the payload's first KEY_BYTES bytes */
    deja__cut *cuts; /* NULL: empty */
    size_t n;
} memo_slot;

static size_t slot_of(const uint8_t key[16])
{
    uint64_t h;

    memcpy(&h, key, 8);
    return (size_t)(h * 0x9E3779B97F4A7C15u >> 52) & (SLOTS - 1);
}

static int push(deja__cuts *out, size_t size, const deja_digest *d)
{
    if (out->n == out->cap) {
        const size_t cap = out->cap ? out->cap * 2 : 64;
        deja__cut *c = realloc(out->c, cap * sizeof *c);

        if (c == NULL)
            return deja__error_set(DEJA_ENOMEM, "out of memory");
        out->c = c;
        out->cap = cap;
    }
    out->c[out->n].size = (uint32_t)size;
    memcpy(out->c[out->n].digest, d->bytes, 16);
    out->n++;
    return 0;
}

/* Remember the chunks `c` (`n`, n >= 2) under `key`; out of memory only
 * forgets. */
static void remember(deja__cutmemo *m, const deja_digest *key, const deja__cut *c, size_t n)
{
    memo_slot *s;
    deja__cut *copy;

    if (n > MEMO_CUTS_MAX)
        return;
    if (m->slots == NULL && (m->slots = calloc(SLOTS, sizeof(memo_slot))) == NULL)
        return;
    s = &((memo_slot *)m->slots)[slot_of(key->bytes)];
    if (m->held - s->n + n > MEMO_CUTS_MAX)
        deja__cutmemo_clear(m);
    copy = s->n >= n ? s->cuts : realloc(s->cuts, n * sizeof *copy);
    if (copy == NULL)
        return;
    memcpy(copy, c, n * sizeof *copy);
    m->held = m->held - s->n + n;
    memcpy(s->key, key->bytes, 16);
    s->cuts = copy;
    s->n = n;
}

int deja__cuts_of(deja__cutmemo *m, const uint8_t *data, size_t size, deja__cuts *out)
{
    const memo_slot *s = NULL;
    deja_digest d, key;
    size_t off = 0;
    int rc = 0;

    out->n = 0;
    memset(&key, 0, sizeof key);
    if (size >= KEY_BYTES) {
        key = deja_digest_of(data, KEY_BYTES);
        if (m->slots != NULL) {
            s = &((const memo_slot *)m->slots)[slot_of(key.bytes)];
            if (s->cuts == NULL || memcmp(s->key, key.bytes, 16) != 0)
                s = NULL;
        }
    }
    /* The remembered payload's chunks but its last, while they agree. */
    for (size_t j = 0; rc == 0 && s != NULL && j + 1 < s->n && off < size; j++) {
        const size_t n = s->cuts[j].size;

        if (n > size - off)
            break;
        d = deja_digest_of(data + off, n);
        if (memcmp(d.bytes, s->cuts[j].digest, 16) != 0)
            break;
        rc = push(out, n, &d);
        off += n;
        m->reused++;
    }
    while (rc == 0 && off < size) {
        const size_t n = deja__store_cut(data + off, size - off);

        d = deja_digest_of(data + off, n);
        rc = push(out, n, &d);
        off += n;
    }
    if (rc == 0 && out->n >= 2 && size >= KEY_BYTES)
        remember(m, &key, out->c, out->n);
    return rc;
}

void deja__cutmemo_clear(deja__cutmemo *m)
{
    memo_slot *slots = m->slots;

    for (size_t i = 0; slots != NULL && i < SLOTS; i++) {
        free(slots[i].cuts);
        memset(&slots[i], 0, sizeof slots[i]);
    }
    m->held = 0;
}

void deja__cutmemo_free(deja__cutmemo *m)
{
    deja__cutmemo_clear(m);
    free(m->slots);
    memset(m, 0, sizeof *m);
}
