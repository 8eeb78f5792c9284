/*
 * store/trace_summary.c -- the summary a trace value carries in its refs
 * (format 4): its start, duration and payload sizes, uncompressed. With
 * the model, version, status and tags the refs already hold, it is all
 * that scans over whole stores read of a trace (stats --by, drift's first
 * pass, the filters of ls), so they never decompress a record they only
 * count or skip. Values without it (formats 1 to 3) are summarised from
 * their decompressed record instead (proto/peek.c), as before.
 *
 * The summary is four varints (see store_internal.h): the start as an
 * offset from the millisecond the trace's id begins with, zigzag-coded
 * (ids are stamped when a span begins: the offset is under a second,
 * 1-4 bytes), the duration, the input bytes and the output bytes, about
 * 8-12 bytes a trace.
 */
#include <stdio.h>
#include <string.h>

#include "core/varint.h"
#include "store/store_internal.h"

/* The nanosecond at which the millisecond of `id` (its first 6 bytes,
 * big-endian) begins, modulo 2^64: the summary's start is relative to it. */
static uint64_t id_base_ns(const deja_id *id)
{
    uint64_t ms = 0;

    for (int i = 0; i < 6; i++)
        ms = ms << 8 | id->bytes[i];
    return ms * 1000000u;
}

/* Zigzag coding of a two's complement 64-bit difference, in unsigned
 * arithmetic only (no overflow, whatever the values). */
static uint64_t zigzag(uint64_t d)
{
    return d << 1 ^ (0 - (d >> 63));
}

static uint64_t unzigzag(uint64_t z)
{
    return z >> 1 ^ (0 - (z & 1));
}

/* The int64 whose two's complement is `u`. */
static int64_t as_signed(uint64_t u)
{
    int64_t s;

    memcpy(&s, &u, sizeof s);
    return s;
}

void deja__trace_summary_sizes(const deja_trace *t, uint64_t *in, uint64_t *out)
{
    *in = *out = 0;
    for (size_t i = 0; i < t->ninputs; i++)
        *in += t->inputs[i].size;
    for (size_t i = 0; i < t->noutputs; i++)
        *out += t->outputs[i].size;
}

int deja__trace_summary_encode(const deja_trace *trace, deja__buf *out)
{
    uint64_t in, outb;

    deja__trace_summary_sizes(trace, &in, &outb);
    if (deja__varint_put(out, zigzag((uint64_t)trace->start_ns - id_base_ns(&trace->id))) != 0 ||
        deja__varint_put(out, zigzag((uint64_t)trace->duration_ns)) != 0 ||
        deja__varint_put(out, in) != 0 || deja__varint_put(out, outb) != 0)
        return DEJA_ENOMEM;
    return 0;
}

int deja__trace_summary_decode(const uint8_t **p, const uint8_t *end, deja__refs *r)
{
    uint64_t start, duration, in, outb;

    if (deja__varint_get(p, end, 10, &start) != 0 || deja__varint_get(p, end, 10, &duration) != 0 ||
        deja__varint_get(p, end, 10, &in) != 0 || deja__varint_get(p, end, 10, &outb) != 0)
        return -1;
    r->view.start_ns = as_signed(id_base_ns(&r->view.id) + unzigzag(start));
    r->view.duration_ns = as_signed(unzigzag(duration));
    r->input_bytes = in;
    r->output_bytes = outb;
    return 0;
}

int deja__trace_summary_agrees(const deja__refs *r, const deja_trace *t)
{
    uint64_t in, outb;

    deja__trace_summary_sizes(t, &in, &outb);
    return r->view.start_ns == t->start_ns && r->view.duration_ns == t->duration_ns &&
           r->input_bytes == in && r->output_bytes == outb;
}

/* "trace ID: " then the message of the last error with its "trace: " cut. */
static int name_trace(int rc, const deja_id *id)
{
    char text[DEJA_ID_STRLEN + 1], why[400];
    const char *msg = deja_error_last();

    if (strncmp(msg, "trace: ", 7) == 0)
        msg += 7;
    snprintf(why, sizeof why, "%s", msg);
    deja_id_format(id, text);
    return deja__error_set(rc, "trace %s: %s", text, why);
}

/* The summary of a value without one: its record decompressed and peeked. */
static int from_record(deja_store *store, MDB_txn *txn, const deja_id *id, const MDB_val *v,
                       deja__summary_reader *r, deja__trace_summary *out)
{
    int rc = deja__trace_value_record(store, txn, v, "trace", &r->raw);

    if (rc == 0)
        rc = deja__trace_peek(r->raw.data, r->raw.size, &r->pk);
    if (rc == 0 && memcmp(r->pk.t.id.bytes, id->bytes, 16) != 0)
        rc = deja__error_set(DEJA_ECORRUPT, "trace: record holds another id");
    if (rc != 0)
        return name_trace(rc, id);
    r->view = r->pk.t;
    deja__trace_summary_sizes(&r->view, &out->input_bytes, &out->output_bytes);
    r->view.inputs = r->view.outputs = NULL;
    r->view.ninputs = r->view.noutputs = 0;
    out->trace = &r->view;
    return 0;
}

int deja__trace_summary_read(deja_store *store, MDB_txn *txn, const deja_id *id,
                             const MDB_val *v, deja__summary_reader *r, deja__trace_summary *out)
{
    const uint8_t *refs, *rec;
    size_t nrefs, nrec;
    int rc;

    memset(out, 0, sizeof *out);
    if (deja__trace_value_split(v->mv_data, v->mv_size, &refs, &nrefs, &rec, &nrec) != 0)
        return name_trace(
            deja__error_set(DEJA_ECORRUPT, "trace: its references are malformed"), id);
    if (refs == NULL)
        return from_record(store, txn, id, v, r, out);
    rc = deja__refs_parse(id, refs, nrefs, &r->refs);
    if (rc == DEJA_ENOMEM)
        return deja__error_set(DEJA_ENOMEM, "scan: out of memory");
    if (rc != 0)
        return name_trace(
            deja__error_set(DEJA_ECORRUPT, "trace: its references are malformed"), id);
    if (!r->refs.has_summary)
        return from_record(store, txn, id, v, r, out);
    out->trace = &r->refs.view;
    out->input_bytes = r->refs.input_bytes;
    out->output_bytes = r->refs.output_bytes;
    return 0;
}

int deja__trace_summary_of(const deja_id *id, const MDB_val *v, deja__summary_reader *r,
                           deja__trace_summary *out)
{
    const uint8_t *refs, *rec;
    size_t nrefs, nrec;

    memset(out, 0, sizeof *out);
    if (deja__trace_value_split(v->mv_data, v->mv_size, &refs, &nrefs, &rec, &nrec) != 0 ||
        refs == NULL || deja__refs_parse(id, refs, nrefs, &r->refs) != 0 ||
        !r->refs.has_summary)
        return 0;
    out->trace = &r->refs.view;
    out->input_bytes = r->refs.input_bytes;
    out->output_bytes = r->refs.output_bytes;
    return 1;
}

void deja__summary_reader_free(deja__summary_reader *r)
{
    if (r == NULL)
        return;
    deja__refs_free(&r->refs);
    deja__buf_free(&r->raw);
    deja__peek_free(&r->pk);
    memset(r, 0, sizeof *r);
}
