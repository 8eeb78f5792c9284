/*
 * proto/peek.c -- a trace's summary read straight off its protobuf bytes:
 * id, times, model, status, tags, output kinds, and each tensor's name,
 * dtype and size, without unpacking payloads, parameters, seeds or clock
 * reads and without allocating per trace. For scans over millions of
 * traces (watch/'s health and drift) that need no payload.
 *
 * The wire format is walked by hand (varints and length-delimited fields,
 * the only ones deja.proto uses besides the fixed 64-bit double of a
 * Param, which is skipped). Every length is checked against the bytes
 * left; unknown fields are skipped as protobuf says.
 */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/varint.h"
#include "proto/codec.h"

/* Trace fields (deja.proto). */
enum {
    F_ID = 1,
    F_START = 2,
    F_DURATION = 3,
    F_MODEL = 4,
    F_INPUTS = 5,
    F_OUTPUTS = 6,
    F_ENV = 11,
    F_STATUS = 12,
    F_TAGS = 14,
    F_OUTPUT_KINDS = 16,
};

typedef struct cursor {
    const uint8_t *p, *end;
} cursor;

/* Read a varint; 0, or -1 when truncated or longer than 10 bytes. */
static int varint(cursor *c, uint64_t *out)
{
    return deja__varint_get(&c->p, c->end, 10, out);
}

/* Read one field's key and, for a length-delimited field, its bytes into
 * `sub`; for a varint its value into `*v`; other wire types are skipped.
 * 0, or -1 on malformed input. */
static int field(cursor *c, uint32_t *num, uint32_t *wire, uint64_t *v, cursor *sub)
{
    uint64_t key, len;

    if (varint(c, &key) != 0 || key >> 3 == 0 || key >> 3 > UINT32_MAX)
        return -1;
    *num = (uint32_t)(key >> 3);
    *wire = (uint32_t)(key & 7);
    switch (*wire) {
    case 0:
        return varint(c, v);
    case 1:
        if (c->end - c->p < 8)
            return -1;
        c->p += 8;
        return 0;
    case 2:
        if (varint(c, &len) != 0 || len > (uint64_t)(c->end - c->p))
            return -1;
        sub->p = c->p;
        sub->end = c->p + len;
        c->p += len;
        return 0;
    case 5:
        if (c->end - c->p < 4)
            return -1;
        c->p += 4;
        return 0;
    default:
        return -1;
    }
}

/* Copy the bytes of `s` into the text arena as a C string. The arena was
 * sized for the whole record up front, so it never moves while parsing. */
static const char *text(deja__peek *pk, const cursor *s)
{
    const size_t n = (size_t)(s->end - s->p);
    char *dst = pk->text + pk->text_used;

    memcpy(dst, s->p, n);
    dst[n] = '\0';
    pk->text_used += n + 1;
    return dst;
}

/* Make room for one more element in a growable array. */
static int grow(void **v, size_t *cap, size_t n, size_t width)
{
    void *bigger;
    size_t want;

    if (n < *cap)
        return 0;
    want = *cap ? *cap * 2 : 8;
    bigger = realloc(*v, want * width);
    if (bigger == NULL)
        return -1;
    *v = bigger;
    *cap = want;
    return 0;
}

/* Name (1), dtype (2), blob digest (5) and size (6) of a Tensor. */
static int tensor(deja__peek *pk, cursor c, deja_tensor *t, const uint8_t **blob)
{
    uint32_t num, wire;
    uint64_t v = 0;
    cursor sub = {NULL, NULL};

    memset(t, 0, sizeof *t);
    t->name = "";
    *blob = NULL;
    while (c.p < c.end) {
        if (field(&c, &num, &wire, &v, &sub) != 0)
            return -1;
        if (num == 1 && wire == 2)
            t->name = text(pk, &sub);
        else if (num == 2 && wire == 0)
            t->dtype = (deja_dtype)(v & 0xFF);
        else if (num == 5 && wire == 2 && sub.end - sub.p == 16)
            *blob = sub.p;
        else if (num == 5 && wire == 2 && sub.end != sub.p)
            return -1;
        else if (num == 6 && wire == 0)
            t->size = (size_t)v;
    }
    return 0;
}

/* Two strings of a message (fields 1 and 2) or a string and a varint. */
static int pair(deja__peek *pk, cursor c, const char **a, const char **b, uint64_t *n2)
{
    uint32_t num, wire;
    uint64_t v = 0;
    cursor sub = {NULL, NULL};

    *a = "";
    if (b != NULL)
        *b = "";
    while (c.p < c.end) {
        if (field(&c, &num, &wire, &v, &sub) != 0)
            return -1;
        if (num == 1 && wire == 2)
            *a = text(pk, &sub);
        else if (num == 2 && wire == 2 && b != NULL)
            *b = text(pk, &sub);
        else if (num == 2 && wire == 0 && n2 != NULL)
            *n2 = v;
    }
    return 0;
}

int deja__trace_peek(const void *data, size_t size, deja__peek *pk)
{
    cursor c = {data, (const uint8_t *)data + size}, sub = {NULL, NULL};
    deja_trace *t = &pk->t;
    size_t nin = 0, nout = 0;
    uint32_t num, wire;
    uint64_t v = 0;
    int has_id = 0;

    /* Every string is a piece of the record: the record's size plus one
     * NUL per byte bounds the arena. */
    if (pk->text_cap < 2 * size + 1) {
        char *bigger = realloc(pk->text, 2 * size + 1);

        if (bigger == NULL)
            return deja__error_set(DEJA_ENOMEM, "trace: out of memory");
        pk->text = bigger;
        pk->text_cap = 2 * size + 1;
    }
    pk->text_used = 0;
    pk->ntensors = pk->ntags = pk->nkinds = 0;
    memset(t, 0, sizeof *t);
    t->model_name = t->model_version = t->error = "";
    while (c.p < c.end) {
        if (field(&c, &num, &wire, &v, &sub) != 0)
            goto corrupt;
        switch (num) {
        case F_ID:
            if (wire != 2 || sub.end - sub.p != 16)
                goto corrupt;
            memcpy(t->id.bytes, sub.p, 16);
            has_id = 1;
            break;
        case F_START:
            if (wire == 0)
                t->start_ns = (int64_t)v;
            break;
        case F_DURATION:
            if (wire == 0)
                t->duration_ns = (int64_t)v;
            break;
        case F_MODEL:
            if (wire == 2 && pair(pk, sub, &t->model_name, &t->model_version, NULL) != 0)
                goto corrupt;
            break;
        case F_INPUTS:
        case F_OUTPUTS:
            if (wire != 2)
                break;
            if (grow((void **)&pk->tensors, &pk->cap_tensors, pk->ntensors, sizeof(deja_tensor)) !=
                    0 ||
                grow((void **)&pk->sides, &pk->cap_sides, pk->ntensors, 1) != 0 ||
                grow((void **)&pk->blobs, &pk->cap_blobs, 2 * pk->ntensors + 1,
                     sizeof(const uint8_t *)) != 0)
                goto nomem;
            if (tensor(pk, sub, &pk->tensors[pk->ntensors], &pk->blobs[pk->ntensors]) != 0)
                goto corrupt;
            pk->sides[pk->ntensors++] = num == F_INPUTS ? 0 : 1;
            nin += num == F_INPUTS;
            nout += num == F_OUTPUTS;
            break;
        case F_ENV:
            if (wire != 2)
                break;
            if (sub.end - sub.p == 16) {
                memcpy(t->env.bytes, sub.p, 16);
                t->has_env = 1;
            } else if (sub.end != sub.p) {
                goto corrupt;
            }
            break;
        case F_STATUS:
            if (wire == 0)
                t->status = v == 1 ? DEJA_STATUS_ERROR : DEJA_STATUS_OK;
            break;
        case F_TAGS: {
            deja_tag *tag;

            if (wire != 2)
                break;
            if (grow((void **)&pk->tags, &pk->cap_tags, pk->ntags, sizeof(deja_tag)) != 0)
                goto nomem;
            tag = &pk->tags[pk->ntags++];
            if (pair(pk, sub, &tag->key, &tag->value, NULL) != 0)
                goto corrupt;
            break;
        }
        case F_OUTPUT_KINDS: {
            deja_output_decl *d;
            uint64_t kind = 0;

            if (wire != 2)
                break;
            if (grow((void **)&pk->kinds, &pk->cap_kinds, pk->nkinds, sizeof(deja_output_decl)) !=
                0)
                goto nomem;
            d = &pk->kinds[pk->nkinds++];
            if (pair(pk, sub, &d->name, NULL, &kind) != 0)
                goto corrupt;
            d->kind = kind <= DEJA_KIND_MAX ? (deja_output_kind)kind : DEJA_KIND_AUTO;
            break;
        }
        default:
            break;
        }
    }
    if (!has_id)
        goto corrupt;
    /* Inputs first, then outputs, each in record order: a stable sort of
     * the tensors by side, in the scratch space after them. */
    if (nin != 0 && nout != 0) {
        size_t i = 0, o = nin;

        if (grow((void **)&pk->tensors, &pk->cap_tensors, 2 * pk->ntensors, sizeof(deja_tensor)) !=
            0)
            goto nomem;
        for (size_t k = 0; k < pk->ntensors; k++) {
            const size_t to = pk->ntensors + (pk->sides[k] ? o++ : i++);

            pk->tensors[to] = pk->tensors[k];
            pk->blobs[to] = pk->blobs[k];
        }
        memmove(pk->tensors, pk->tensors + pk->ntensors, pk->ntensors * sizeof(deja_tensor));
        memmove(pk->blobs, pk->blobs + pk->ntensors, pk->ntensors * sizeof(const uint8_t *));
    }
    t->inputs = pk->tensors;
    t->ninputs = nin;
    t->outputs = pk->tensors != NULL ? pk->tensors + nin : NULL;
    t->noutputs = nout;
    t->tags = pk->tags;
    t->ntags = pk->ntags;
    t->output_kinds = pk->kinds;
    t->noutput_kinds = pk->nkinds;
    return 0;

corrupt:
    return deja__error_set(DEJA_ECORRUPT, "trace: record is not a valid Trace");
nomem:
    return deja__error_set(DEJA_ENOMEM, "trace: out of memory");
}

void deja__peek_free(deja__peek *pk)
{
    if (pk == NULL)
        return;
    free(pk->text);
    free(pk->tensors);
    free(pk->sides);
    free(pk->blobs);
    free(pk->tags);
    free(pk->kinds);
    memset(pk, 0, sizeof *pk);
}

const uint8_t *deja__peek_blob(const deja__peek *pk, deja_side side, size_t index)
{
    const size_t n = side == DEJA_INPUT ? pk->t.ninputs : pk->t.noutputs;

    if (index >= n)
        return NULL;
    return pk->blobs[(side == DEJA_INPUT ? 0 : pk->t.ninputs) + index];
}
