/*
 * tests/test_trace_summary.c -- the summary a trace value carries in its
 * refs (format 4, store/trace_summary.c): encoded and read back, damaged
 * and cut short (a clean DEJA_ECORRUPT, never a crash), scans that read
 * it without decompressing any record, and stores of formats 1 to 3
 * (values without it) still scanned and listed the same.
 */
#include <lmdb.h>
#include <stdint.h>
#include <stdlib.h>

#include "cli_harness.h"
#include "core/varint.h"
#include "store/store_internal.h"
#include "watch_harness.h"

#define T0 1764000000000000000LL /* 2025-11-24T16:00:00Z */
#define MS 1000000LL

/* A temporary directory for one case in `root` (64 bytes). */
static void tmp_root(char *root)
{
    snprintf(root, 64, "/tmp/deja-summary-XXXXXX");
    assert_non_null(mkdtemp(root));
}

/* The refs of `t` parsed back through an encoded value. */
static void encode_parse(const deja_trace *t, deja__refs *r, size_t *summary_bytes)
{
    deja__buf plain = {0}, with = {0};
    const uint8_t *refs, *rec;
    size_t nrefs, nrec;

    assert_int_equal(deja__refs_encode(t, NULL, 0, 123, &with), 0);
    assert_int_equal(deja__trace_value_split(with.data, with.size, &refs, &nrefs, &rec, &nrec), 0);
    assert_non_null(refs);
    assert_int_equal(nrec, 0);
    assert_int_equal(deja__refs_parse(&t->id, refs, nrefs, r), 0);
    assert_true(r->has_summary);
    assert_int_equal(deja__trace_summary_encode(t, &plain), 0);
    *summary_bytes = plain.size;
    deja__buf_free(&plain);
    deja__buf_free(&with);
}

/* Start and duration come back exactly, near the id's millisecond or far
 * from it, and the payload sizes per side; a usual trace costs a few
 * bytes. */
static void test_trace_summary__round_trip(void **state)
{
    const int64_t starts[] = {T0 + 300000, T0 - 5 * MS, T0, 0, INT64_MAX, INT64_MIN, -1};
    const int64_t durations[] = {1234567, 0, -7, INT64_MAX, INT64_MIN, 250 * MS, 1};
    deja__refs r = {0};
    wtrace w;
    size_t n;

    (void)state;
    for (size_t i = 0; i < sizeof starts / sizeof starts[0]; i++) {
        wtrace_init(&w, "clf", "7", T0, 0);
        w.t.start_ns = starts[i];
        w.t.duration_ns = durations[i];
        wtrace_text(&w, DEJA_INPUT, "prompt", "hello there");
        wtrace_text(&w, DEJA_OUTPUT, "answer", "hi");
        wtrace_tag(&w, "user", "u1");
        encode_parse(&w.t, &r, &n);
        assert_true(r.view.start_ns == starts[i]);
        assert_true(r.view.duration_ns == durations[i]);
        assert_int_equal(r.input_bytes, 11);
        assert_int_equal(r.output_bytes, 2);
        assert_string_equal(r.view.model_name, "clf");
        assert_string_equal(r.view.model_version, "7");
        assert_int_equal(r.view.ntags, 1);
        assert_true(deja__trace_summary_agrees(&r, &w.t));
        if (i == 0) /* 0.3 ms after its id, 1.2 ms long: 3 + 4 + 1 + 1 */
            assert_int_equal(n, 9);
        w.t.duration_ns ^= 1;
        assert_false(deja__trace_summary_agrees(&r, &w.t));
    }
    deja__refs_free(&r);
}

/* The stored value of trace `id`, copied into `out`. */
static void value_of(deja_store *s, const deja_id *id, deja__buf *out)
{
    MDB_txn *txn = NULL;
    MDB_val k = {16, (void *)id->bytes}, v;

    assert_int_equal(deja__rtxn_begin(s, &txn), 0);
    assert_int_equal(mdb_get(txn, s->traces, &k, &v), 0);
    out->size = 0;
    assert_int_equal(deja__buf_append(out, v.mv_data, v.mv_size), 0);
    deja__rtxn_end(s, txn);
}

/* Read the summary of value `v` of trace `id`: its code (0 or an error). */
static int summary_read(deja_store *s, const deja_id *id, const uint8_t *v, size_t n,
                        deja__summary_reader *r, deja__trace_summary *sum)
{
    MDB_txn *txn = NULL;
    MDB_val val = {n, (void *)v};
    int rc;

    assert_int_equal(deja__rtxn_begin(s, &txn), 0);
    rc = deja__trace_summary_read(s, txn, id, &val, r, sum);
    (void)deja__trace_summary_of(id, &val, r, sum);
    deja__rtxn_end(s, txn);
    return rc;
}

/* Every value whose refs are cut short gives DEJA_ECORRUPT naming the
 * trace; every byte of the refs damaged gives 0 or DEJA_ECORRUPT (ASan
 * and UBSan watch the reads). */
static void test_trace_summary__damaged_or_cut(void **state)
{
    char root[64], text[DEJA_ID_STRLEN + 1], want[128];
    const char *path;
    deja_store *s = NULL;
    deja__summary_reader r = {0};
    deja__trace_summary sum;
    deja__buf v = {0}, cut = {0};
    const uint8_t *refs, *rec;
    size_t nrefs, nrec, at;
    wtrace w;

    (void)state;
    tmp_root(root);
    path = cli_tmp_path(root, "damaged.store");
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_WRITE | DEJA__STORE_NOSYNC), 0);
    wtrace_init(&w, "clf", "1", T0 + 42, 3 * MS);
    wtrace_text(&w, DEJA_INPUT, "prompt", "hello");
    wtrace_tag(&w, "user", "u9");
    wtrace_put(s, &w);
    value_of(s, &w.t.id, &v);
    assert_int_equal(summary_read(s, &w.t.id, v.data, v.size, &r, &sum), 0);
    assert_true(sum.trace->start_ns == T0 + 42 && sum.trace->duration_ns == 3 * MS);
    assert_int_equal(sum.input_bytes, 5);
    assert_int_equal(sum.output_bytes, 0);
    assert_int_equal(sum.trace->ntags, 1);

    assert_int_equal(deja__trace_value_split(v.data, v.size, &refs, &nrefs, &rec, &nrec), 0);
    deja_id_format(&w.t.id, text);
    snprintf(want, sizeof want, "trace %s: its references are malformed", text);
    /* Refs cut short, the record after them. */
    for (size_t k = 0; k < nrefs; k++) {
        cut.size = 0;
        assert_int_equal(deja__buf_append(&cut, "R", 1), 0);
        assert_int_equal(deja__varint_put(&cut, k), 0);
        assert_int_equal(deja__buf_append(&cut, refs, k), 0);
        assert_int_equal(deja__buf_append(&cut, rec, nrec), 0);
        assert_int_equal(summary_read(s, &w.t.id, cut.data, cut.size, &r, &sum), DEJA_ECORRUPT);
        assert_string_equal(deja_error_last(), want);
    }
    /* The value itself cut anywhere inside its refs. */
    at = (size_t)(refs - v.data);
    for (size_t k = 1; k < at + nrefs; k++)
        assert_int_equal(summary_read(s, &w.t.id, v.data, k, &r, &sum), DEJA_ECORRUPT);
    /* Each byte of the prefix damaged three ways. */
    for (size_t k = 0; k < at + nrefs; k++) {
        const uint8_t how[] = {0x00, 0xFF, 0x80};

        for (size_t j = 0; j < sizeof how; j++) {
            int rc;

            cut.size = 0;
            assert_int_equal(deja__buf_append(&cut, v.data, v.size), 0);
            cut.data[k] = j == 2 ? cut.data[k] ^ how[j] : how[j];
            rc = summary_read(s, &w.t.id, cut.data, cut.size, &r, &sum);
            assert_true(rc == 0 || rc == DEJA_ECORRUPT);
        }
    }
    deja__summary_reader_free(&r);
    deja__buf_free(&v);
    deja__buf_free(&cut);
    deja_store_close(s);
    cli_rm_rf(root);
}

/* Rewrite the value of trace `id` in `s` (opened for writing) as older
 * deja wrote it: `format` 1 (the record alone) or 2 (refs without the
 * summary); or, with `format` 0, keep the refs and damage the record. */
static void rewrite(deja_store *s, const deja_id *id, int format)
{
    MDB_txn *txn = NULL;
    MDB_val k = {16, (void *)id->bytes}, v;
    deja__buf old = {0}, out = {0}, refs2 = {0};
    const uint8_t *refs, *rec, *p, *end;
    size_t nrefs, nrec;
    uint64_t x;

    value_of(s, id, &old);
    assert_int_equal(deja__trace_value_split(old.data, old.size, &refs, &nrefs, &rec, &nrec), 0);
    assert_non_null(refs);
    if (format == 1) {
        assert_int_equal(deja__buf_append(&out, rec, nrec), 0);
    } else if (format == 2) {
        /* raw_bytes, status, flags, [env]: kept; the summary's four
         * varints: left out; the rest: kept. */
        p = refs;
        end = refs + nrefs;
        assert_int_equal(deja__varint_get(&p, end, 10, &x), 0);
        assert_true(p[1] & DEJA__REFS_HAS_SUMMARY);
        p += 2 + ((p[1] & DEJA__REFS_HAS_ENV) ? 16 : 0);
        assert_int_equal(deja__buf_append(&refs2, refs, (size_t)(p - refs)), 0);
        for (int i = 0; i < 4; i++)
            assert_int_equal(deja__varint_get(&p, end, 10, &x), 0);
        assert_int_equal(deja__buf_append(&refs2, p, (size_t)(end - p)), 0);
        assert_int_equal(deja__buf_append(&out, "R", 1), 0);
        assert_int_equal(deja__varint_put(&out, refs2.size), 0);
        assert_int_equal(deja__buf_append(&out, refs2.data, refs2.size), 0);
        assert_int_equal(deja__buf_append(&out, rec, nrec), 0);
    } else {
        assert_int_equal(deja__buf_append(&out, old.data, old.size), 0);
        assert_true(nrec > 20);
        memset(out.data + (old.size - nrec) + 12, 0xA5, nrec - 12);
    }
    if (format == 2) {
        /* Clear the flag bit: the flags byte follows raw_bytes and status. */
        const uint8_t *q = out.data + 1;

        assert_int_equal(deja__varint_get(&q, out.data + out.size, 10, &x), 0);
        assert_int_equal(deja__varint_get(&q, out.data + out.size, 10, &x), 0);
        out.data[(size_t)(q - out.data) + 1] &= (uint8_t)~DEJA__REFS_HAS_SUMMARY;
    }
    v.mv_data = out.data;
    v.mv_size = out.size;
    assert_int_equal(mdb_txn_begin(s->env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_put(txn, s->traces, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    deja__buf_free(&old);
    deja__buf_free(&out);
    deja__buf_free(&refs2);
}

/* Set the store's format version in meta. */
static void set_format(deja_store *s, uint32_t format)
{
    MDB_txn *txn = NULL;
    uint8_t b[4] = {(uint8_t)format, (uint8_t)(format >> 8), (uint8_t)(format >> 16),
                    (uint8_t)(format >> 24)};
    MDB_val k = {6, "format"}, v = {4, b};

    assert_int_equal(mdb_txn_begin(s->env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_put(txn, s->meta, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
}

/* 60 traces of two versions: durations 1..60 ms, every 7th an error, every
 * 5th tagged invalid, inputs of i bytes, outputs on version 2. */
static void fill(deja_store *s, deja_id *ids)
{
    static char text[64];
    wtrace w;

    memset(text, 'x', sizeof text - 1);
    for (int i = 0; i < 60; i++) {
        wtrace_init(&w, "clf", i < 30 ? "1" : "2", T0 + (int64_t)i * 1000 * MS + 17,
                    (int64_t)(i + 1) * MS);
        if (i % 7 == 0)
            wtrace_error(&w, "boom");
        if (i % 5 == 0)
            wtrace_tag(&w, DEJA_INVALID_TAG, "range");
        wtrace_text(&w, DEJA_INPUT, "prompt", text + sizeof text - 1 - (size_t)(i % 50 + 1));
        if (i >= 30)
            wtrace_text(&w, DEJA_OUTPUT, "label", "cat");
        wtrace_put(s, &w);
        ids[i] = w.t.id;
    }
}

static deja_health *health_of(deja_store *s)
{
    deja_health_options o = DEJA_HEALTH_OPTIONS_INIT;
    deja_health *h = NULL;

    assert_int_equal(deja_health_compute(s, NULL, &o, &h), 0);
    return h;
}

static void assert_same_health(const deja_health *a, const deja_health *b)
{
    assert_int_equal(a->nrows, b->nrows);
    assert_int_equal(a->traces, b->traces);
    assert_int_equal(a->bad, b->bad);
    for (size_t i = 0; i < a->nrows; i++) {
        const deja_health_row *x = &a->rows[i], *y = &b->rows[i];

        assert_string_equal(x->group, y->group);
        assert_int_equal(x->traces, y->traces);
        assert_int_equal(x->errors, y->errors);
        assert_int_equal(x->invalid, y->invalid);
        assert_int_equal(x->input_bytes, y->input_bytes);
        assert_int_equal(x->output_bytes, y->output_bytes);
        assert_true(x->first_ns == y->first_ns && x->last_ns == y->last_ns);
        assert_true(x->latency_p50_ns == y->latency_p50_ns);
        assert_true(x->latency_p99_ns == y->latency_p99_ns);
        assert_true(x->latency_max_ns == y->latency_max_ns);
    }
}

typedef struct counted {
    size_t traces, bad;
} counted;

static int count_trace(const deja_trace *t, void *payload)
{
    (void)t;
    ((counted *)payload)->traces++;
    return 0;
}

static int count_bad(const deja_id *id, int code, const char *message, void *payload)
{
    (void)id;
    (void)code;
    (void)message;
    ((counted *)payload)->bad++;
    return 0;
}

/* Traces matching `f` listed in full, and unreadable ones. */
static counted list(deja_store *s, const deja_filter *f)
{
    counted c = {0, 0};

    assert_int_equal(deja_store_list(s, f, count_trace, count_bad, &c), 0);
    return c;
}

/* A store whose values are of formats 1, 2 and 3 mixed (as a store of
 * format 2 upgraded by a writer holds) gives the same health, listing and
 * filtering as the same store all of format 4; a store left at format 2
 * is read as it is, and a writer upgrades it. */
static void test_trace_summary__older_formats_scanned(void **state)
{
    char root[64];
    const char *path;
    deja_store *s = NULL;
    deja_health *want = NULL, *got = NULL;
    deja_filter errors = DEJA_FILTER_INIT, late = DEJA_FILTER_INIT;
    deja_store_stats st;
    deja_id ids[60];
    counted c;
    wtrace w;

    (void)state;
    tmp_root(root);
    path = cli_tmp_path(root, "old.store");
    errors.status = DEJA_STATUS_ERROR;
    late.since_ns = T0 + 40 * 1000 * MS;
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_WRITE | DEJA__STORE_NOSYNC), 0);
    fill(s, ids);
    want = health_of(s);
    assert_int_equal(want->traces, 60);
    assert_int_equal(list(s, &errors).traces, 9);
    assert_int_equal(list(s, &late).traces, 20);
    for (int i = 0; i < 60; i++)
        if (i % 3 != 2)
            rewrite(s, &ids[i], i % 3 + 1);
    set_format(s, 2);
    deja_store_close(s);

    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);
    assert_int_equal(deja_store_stats_get(s, &st), 0);
    assert_int_equal(st.format, 2);
    got = health_of(s);
    assert_same_health(want, got);
    deja_health_free(got);
    c = list(s, &errors);
    assert_true(c.traces == 9 && c.bad == 0);
    c = list(s, &late);
    assert_true(c.traces == 20 && c.bad == 0);
    assert_int_equal(deja_store_verify(s, NULL, NULL), 0);
    deja_store_close(s);

    /* Format 3 (chat deltas) wrote the same trace values as format 2. */
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_WRITE | DEJA__STORE_NOSYNC), 0);
    set_format(s, 3);
    deja_store_close(s);
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_READONLY), 0);
    assert_int_equal(deja_store_stats_get(s, &st), 0);
    assert_int_equal(st.format, 3);
    got = health_of(s);
    assert_same_health(want, got);
    deja_health_free(got);
    deja_store_close(s);

    /* A writer upgrades it; its new trace carries a summary. */
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_WRITE | DEJA__STORE_NOSYNC), 0);
    assert_int_equal(deja_store_stats_get(s, &st), 0);
    assert_int_equal(st.format, DEJA__FORMAT_VERSION);
    wtrace_init(&w, "clf", "2", T0 + 90 * 1000 * MS, 5 * MS);
    wtrace_put(s, &w);
    got = health_of(s);
    assert_int_equal(got->traces, 61);
    deja_health_free(got);
    assert_int_equal(list(s, &late).traces, 21);
    assert_int_equal(deja_store_verify(s, NULL, NULL), 0);
    deja_store_close(s);
    deja_health_free(want);
    cli_rm_rf(root);
}

/* Scans read summaries only: with every record damaged (the refs intact),
 * stats --by still counts every trace, and a listing whose filter the
 * summaries refuse skips them without reading their records; a listing
 * that must decode them reports them. verify names a summary that
 * disagrees with its record. */
static void test_trace_summary__scans_decompress_nothing(void **state)
{
    char root[64];
    const char *path;
    deja_store *s = NULL;
    deja_health *want = NULL, *got = NULL;
    deja_filter errors = DEJA_FILTER_INIT;
    deja_id ids[60];
    counted c;

    (void)state;
    tmp_root(root);
    path = cli_tmp_path(root, "scan.store");
    errors.status = DEJA_STATUS_ERROR;
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_WRITE | DEJA__STORE_NOSYNC), 0);
    fill(s, ids);
    want = health_of(s);
    for (int i = 0; i < 60; i++)
        if (i % 7 != 0) /* the errors stay readable */
            rewrite(s, &ids[i], 0);
    got = health_of(s);
    assert_same_health(want, got);
    assert_int_equal(got->bad, 0);
    deja_health_free(got);
    /* status=error alone walks ix_status (the errors only); with a model
     * the walk is ix_model's, over every trace, and the summaries refuse
     * the others before their records are read. */
    errors.model = "clf";
    c = list(s, &errors);
    assert_true(c.traces == 9 && c.bad == 0);
    c = list(s, NULL);
    assert_true(c.traces == 9 && c.bad == 51);
    deja_store_close(s);
    deja_health_free(want);
    cli_rm_rf(root);
}

/* Keep the first problem verify reports. */
static void first_problem(const char *line, void *payload)
{
    char *first = payload;

    if (first[0] == '\0')
        snprintf(first, 512, "%s", line);
}

/* verify names a summary that says another start than its record. */
static void test_trace_summary__verify_compares(void **state)
{
    char root[64], first[512] = "";
    const char *path;
    deja_store *s = NULL;
    deja__buf v = {0};
    MDB_txn *txn = NULL;
    MDB_val k, val;
    const uint8_t *p;
    uint64_t x;
    wtrace w;

    (void)state;
    tmp_root(root);
    path = cli_tmp_path(root, "verify.store");
    assert_int_equal(deja_store_open(&s, path, DEJA_STORE_WRITE | DEJA__STORE_NOSYNC), 0);
    wtrace_init(&w, "clf", "1", T0 + 5000, MS);
    wtrace_put(s, &w);
    assert_int_equal(deja_store_verify(s, first_problem, first), 0);
    assert_string_equal(first, "");
    /* 'R', the length, raw_bytes, status, flags (no environment here),
     * then the summary: change the start by 1 ns. */
    value_of(s, &w.t.id, &v);
    p = v.data + 1;
    assert_int_equal(deja__varint_get(&p, v.data + v.size, 10, &x), 0);
    assert_int_equal(deja__varint_get(&p, v.data + v.size, 10, &x), 0);
    assert_int_equal(p[1], DEJA__REFS_HAS_SUMMARY);
    v.data[(size_t)(p + 2 - v.data)] ^= 2;
    k.mv_size = 16;
    k.mv_data = w.t.id.bytes;
    val.mv_size = v.size;
    val.mv_data = v.data;
    assert_int_equal(mdb_txn_begin(s->env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_put(txn, s->traces, &k, &val, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    assert_int_not_equal(deja_store_verify(s, first_problem, first), 0);
    assert_non_null(strstr(first, "another start, duration or payload size"));
    deja__buf_free(&v);
    deja_store_close(s);
    cli_rm_rf(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_trace_summary__round_trip),
        cmocka_unit_test(test_trace_summary__damaged_or_cut),
        cmocka_unit_test(test_trace_summary__older_formats_scanned),
        cmocka_unit_test(test_trace_summary__scans_decompress_nothing),
        cmocka_unit_test(test_trace_summary__verify_compares),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
