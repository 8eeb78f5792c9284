/*
 * tests/test_bundle.c -- bundles through the library: export, verify,
 * import and open, with real traces recorded by the textgen-v1 plugin.
 * Round trips are byte-identical and replay the same; every single-byte
 * change of a bundle is caught; hostile bodies (wrapped with a valid
 * checksum) are rejected with a message naming the record; imports are
 * idempotent and store shared payloads once; and a few thousand mutated
 * bundles go through the parser (the smoke run of the fuzz target).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <zstd.h>

#include "deja.h"
#include "proto/codec.h"
#include "bundle/bundle_internal.h"

static char root[] = "/tmp/deja-test-bundle-XXXXXX";
static char tmpdir[600];

/* A store recorded once for the whole file: ids in `ids`. */
#define NREC 6
static char store_a[600];
static deja_id ids[NREC];
static char bundle_a[600];

static const char *path_in(const char *name)
{
    static char bufs[8][600];
    static int next;
    char *b = bufs[next++ % 8];

    snprintf(b, sizeof bufs[0], "%s/%s", root, name);
    return b;
}

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rm_rf(const char *path)
{
    nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static uint8_t *slurp(const char *path, size_t *size)
{
    FILE *fp = fopen(path, "rb");
    uint8_t *buf;
    long n;

    assert_non_null(fp);
    assert_int_equal(fseek(fp, 0, SEEK_END), 0);
    n = ftell(fp);
    assert_true(n >= 0);
    rewind(fp);
    buf = malloc((size_t)n + 1);
    assert_non_null(buf);
    assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    *size = (size_t)n;
    return buf;
}

static void spit(const char *path, const void *data, size_t size)
{
    FILE *fp = fopen(path, "wb");

    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, size, fp), size);
    assert_int_equal(fclose(fp), 0);
}

/* Record one inference of `m` on `prompt` through a tracer. */
static void record_textgen(deja_tracer *t, deja_model *m, const char *prompt, double temp,
                           deja_id *id)
{
    deja_span *s = NULL;
    deja_ctx *ctx = NULL;
    size_t nd = 0;
    const uint8_t *digest = deja_model_digest(m, &nd);

    assert_int_equal(deja_span_begin(&s, t, deja_model_name(m), deja_model_version(m)), 0);
    assert_int_equal(deja_span_model_digest(s, digest, nd), 0);
    assert_int_equal(deja_span_add_text(s, DEJA_INPUT, "prompt", prompt, strlen(prompt)), 0);
    assert_int_equal(deja_span_param_num(s, "temperature", temp), 0);
    assert_int_equal(deja_span_param_num(s, "max_tokens", 60), 0);
    assert_int_equal(deja_span_tag(s, "case", "bundle"), 0);
    assert_int_equal(deja_ctx_record(&ctx, s, 42), 0);
    if (deja_model_infer(m, ctx) != 0)
        fail_msg("infer: %s", deja_error_last());
    deja_ctx_free(ctx);
    *id = *deja_span_id(s);
    assert_int_equal(deja_span_end(s, DEJA_STATUS_OK, NULL), 0);
}

static int group_setup(void **state)
{
    deja_tracer *t = NULL;
    deja_model *m = NULL;
    deja_store *s = NULL;
    char *big;
    (void)state;

    if (mkdtemp(root) == NULL)
        return -1;
    snprintf(tmpdir, sizeof tmpdir, "%s/tmp", root);
    if (mkdir(tmpdir, 0700) != 0)
        return -1;
    setenv("TMPDIR", tmpdir, 1);
    setenv("DEJA_PLUGIN_PATH", DEJA_LIB_DIR, 0);
    snprintf(store_a, sizeof store_a, "%s/a.store", root);
    snprintf(bundle_a, sizeof bundle_a, "%s/a.deja", root);
    if (deja_tracer_open(&t, store_a, NULL) != 0 || deja_model_load(&m, "textgen-v1") != 0)
        return -1;
    /* A prompt longer than the inline limit, so that the bundle has a blob. */
    big = malloc(3001);
    if (big == NULL)
        return -1;
    for (size_t i = 0; i < 3000; i++)
        big[i] = "The fox and the crow. "[i % 22];
    big[3000] = '\0';
    record_textgen(t, m, "The fox", 0.8, &ids[0]);
    record_textgen(t, m, "Once upon a time", 0.8, &ids[1]);
    record_textgen(t, m, big, 0.5, &ids[2]);
    record_textgen(t, m, big, 1.0, &ids[3]);
    record_textgen(t, m, "The wind said", 1.3, &ids[4]);
    record_textgen(t, m, "A lion lay", 0.8, &ids[5]);
    free(big);
    deja_model_free(m);
    deja_tracer_close(t);
    if (deja_store_open(&s, store_a, DEJA_STORE_READONLY) != 0)
        return -1;
    if (deja_bundle_export(s, ids, NREC, NULL, bundle_a) != 0) {
        fprintf(stderr, "export: %s\n", deja_error_last());
        deja_store_close(s);
        return -1;
    }
    deja_store_close(s);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    rm_rf(root);
    return 0;
}

/* Non-zero when `dir` holds no entries. */
static int dir_empty(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n == 0;
}

/* The canonical bytes of trace `id` in `store` (every payload inline). */
static void trace_bytes(deja_store *store, const deja_id *id, deja__buf *out)
{
    deja_trace *t = NULL;

    if (deja_trace_get(store, id, &t) != 0)
        fail_msg("trace_get: %s", deja_error_last());
    assert_int_equal(deja__trace_encode(t, (size_t)-1, NULL, NULL, out), 0);
    deja_trace_free(t);
}

typedef struct verdicts {
    deja_verdict v[NREC];
    size_t n;
} verdicts;

static int verdict_cb(const deja_replay_result *r, void *payload)
{
    verdicts *vs = payload;

    if (vs->n < NREC)
        vs->v[vs->n++] = r->verdict;
    return 0;
}

static void replay_all(deja_store *store, verdicts *vs)
{
    deja_replay_options o = DEJA_REPLAY_OPTIONS_INIT;
    deja_replay_summary sum;

    memset(vs, 0, sizeof *vs);
    if (deja_replay_run(store, ids, NREC, "textgen-v1", &o, verdict_cb, vs, &sum) != 0)
        fail_msg("replay: %s", deja_error_last());
    assert_int_equal(vs->n, NREC);
    assert_int_equal(sum.same, NREC);
}

static void test_bundle__round_trip_is_byte_identical(void **state)
{
    const char *path_b = path_in("b.store");
    deja_store *a = NULL, *b = NULL;
    deja_bundle_import_stats st;
    deja_store_stats sa, sb;
    verdicts va, vb;
    (void)state;

    assert_int_equal(deja_store_open(&a, store_a, DEJA_STORE_READONLY), 0);
    assert_int_equal(deja_store_open(&b, path_b, DEJA_STORE_WRITE), 0);
    if (deja_bundle_import(b, bundle_a, &st) != 0)
        fail_msg("import: %s", deja_error_last());
    assert_int_equal(st.traces, NREC);
    assert_int_equal(st.traces_added, NREC);
    assert_int_equal(st.blobs, 1);
    assert_int_equal(st.blobs_added, 1);
    assert_int_equal(st.envs, 1);
    assert_int_equal(st.envs_added, 1);
    for (size_t i = 0; i < NREC; i++) {
        deja__buf x = {0}, y = {0};
        trace_bytes(a, &ids[i], &x);
        trace_bytes(b, &ids[i], &y);
        assert_int_equal(x.size, y.size);
        assert_memory_equal(x.data, y.data, x.size);
        deja__buf_free(&x);
        deja__buf_free(&y);
    }
    assert_int_equal(deja_store_stats_get(a, &sa), 0);
    assert_int_equal(deja_store_stats_get(b, &sb), 0);
    assert_int_equal(sa.traces, sb.traces);
    assert_int_equal(sa.blobs, sb.blobs);
    assert_int_equal(sa.envs, sb.envs);
    assert_int_equal(deja_store_verify(b, NULL, NULL), 0);
    replay_all(a, &va);
    replay_all(b, &vb);
    assert_memory_equal(va.v, vb.v, sizeof va.v);
    deja_store_close(a);
    deja_store_close(b);
}

static void test_bundle__open_reads_and_replays_in_place(void **state)
{
    deja_bundle *bd = NULL;
    const deja_bundle_info *info;
    deja_store *a = NULL;
    verdicts vb;
    (void)state;

    if (deja_bundle_open(&bd, bundle_a) != 0)
        fail_msg("open: %s", deja_error_last());
    info = deja_bundle_info_get(bd);
    assert_int_equal(info->format, 1);
    assert_string_equal(info->deja_version, DEJA_VERSION_STRING);
    assert_int_equal(info->traces, NREC);
    assert_int_equal(info->blobs, 1);
    assert_int_equal(info->envs, 1);
    assert_int_equal(info->nmodels, 1);
    assert_string_equal(info->models[0].name, "textgen");
    assert_int_equal(info->models[0].traces, NREC);
    assert_int_equal(info->models[0].digest_size, 16);
    assert_null(info->plugin);
    assert_false(dir_empty(tmpdir));
    assert_int_equal(deja_store_open(&a, store_a, DEJA_STORE_READONLY), 0);
    for (size_t i = 0; i < NREC; i++) {
        deja__buf x = {0}, y = {0};
        trace_bytes(a, &ids[i], &x);
        trace_bytes(deja_bundle_store(bd), &ids[i], &y);
        assert_int_equal(x.size, y.size);
        assert_memory_equal(x.data, y.data, x.size);
        deja__buf_free(&x);
        deja__buf_free(&y);
    }
    deja_store_close(a);
    replay_all(deja_bundle_store(bd), &vb);
    deja_bundle_close(bd);
    /* The temporary store is gone. */
    assert_true(dir_empty(tmpdir));
    deja_bundle_close(NULL);
}

static void test_bundle__import_twice_changes_nothing(void **state)
{
    const char *path_c = path_in("c.store");
    char data[700];
    deja_store *c = NULL;
    deja_bundle_import_stats st;
    uint8_t *before, *after;
    size_t nb, na;
    (void)state;

    snprintf(data, sizeof data, "%s/data.mdb", path_c);
    assert_int_equal(deja_store_open(&c, path_c, DEJA_STORE_WRITE), 0);
    assert_int_equal(deja_bundle_import(c, bundle_a, &st), 0);
    assert_int_equal(st.traces_added, NREC);
    deja_store_close(c);
    before = slurp(data, &nb);
    assert_int_equal(deja_store_open(&c, path_c, DEJA_STORE_WRITE), 0);
    assert_int_equal(deja_bundle_import(c, bundle_a, &st), 0);
    assert_int_equal(st.traces, NREC);
    assert_int_equal(st.traces_added, 0);
    assert_int_equal(st.blobs_added, 0);
    assert_int_equal(st.envs_added, 0);
    deja_store_close(c);
    after = slurp(data, &na);
    assert_int_equal(nb, na);
    assert_memory_equal(before, after, nb);
    free(before);
    free(after);
}

static void test_bundle__every_byte_change_is_detected(void **state)
{
    deja_store *s = NULL;
    const char *small = path_in("small.deja");
    uint8_t *file;
    size_t size;
    (void)state;

    assert_int_equal(deja_store_open(&s, store_a, DEJA_STORE_READONLY), 0);
    assert_int_equal(deja_bundle_export(s, ids, 2, NULL, small), 0);
    deja_store_close(s);
    file = slurp(small, &size);
    assert_int_equal(deja__bundle_check_memory(file, size, "small.deja"), 0);
    for (size_t i = 0; i < size; i++) {
        for (unsigned flip = 1; flip < 256; flip <<= 3) {
            int rc;
            file[i] ^= (uint8_t)flip;
            rc = deja__bundle_check_memory(file, size, "small.deja");
            if (rc != DEJA_ECORRUPT && rc != DEJA_EVERSION)
                fail_msg("byte %zu ^ %u: rc %d (%s)", i, flip, rc, deja_error_last());
            file[i] ^= (uint8_t)flip;
        }
    }
    /* Every truncation, and one extra byte. */
    for (size_t n = 0; n < size; n++)
        assert_int_equal(deja__bundle_check_memory(file, n, "small.deja"), DEJA_ECORRUPT);
    {
        uint8_t *longer = malloc(size + 1);
        assert_non_null(longer);
        memcpy(longer, file, size);
        longer[size] = 0;
        assert_int_equal(deja__bundle_check_memory(longer, size + 1, "x"), DEJA_ECORRUPT);
        assert_non_null(strstr(deja_error_last(), "unexpected bytes after the body"));
        free(longer);
    }
    free(file);
}

static void test_bundle__damaged_file_leaves_store_untouched(void **state)
{
    const char *path_d = path_in("d.store");
    const char *bad = path_in("bad.deja");
    char data[700];
    deja_store *d = NULL;
    deja_store_stats s0, s1;
    uint8_t *file, *before, *after;
    size_t size, nb, na;
    (void)state;

    snprintf(data, sizeof data, "%s/data.mdb", path_d);
    assert_int_equal(deja_store_open(&d, path_d, DEJA_STORE_WRITE), 0);
    deja_store_close(d);
    before = slurp(data, &nb);
    file = slurp(bundle_a, &size);
    file[size / 2] ^= 0x40;
    spit(bad, file, size);
    assert_int_equal(deja_store_open(&d, path_d, DEJA_STORE_WRITE), 0);
    assert_int_equal(deja_store_stats_get(d, &s0), 0);
    assert_int_equal(deja_bundle_import(d, bad, NULL), DEJA_ECORRUPT);
    assert_non_null(strstr(deja_error_last(), "checksum mismatch"));
    assert_non_null(strstr(deja_error_last(), "bad.deja"));
    assert_int_equal(deja_store_stats_get(d, &s1), 0);
    assert_int_equal(s1.traces, s0.traces);
    assert_int_equal(s1.blobs, s0.blobs);
    deja_store_close(d);
    after = slurp(data, &na);
    assert_int_equal(nb, na);
    assert_memory_equal(before, after, nb);
    assert_int_equal(deja_bundle_verify(path_in("missing.deja"), NULL), DEJA_ENOTFOUND);
    assert_int_equal(deja_bundle_verify(root, NULL), DEJA_EINVAL);
    free(file);
    free(before);
    free(after);
}

/* ------------------------------------------------------------------------
 * Hostile bodies, wrapped with a valid checksum.
 * ---------------------------------------------------------------------- */

/* Append a record [kind][len][a][b]. */
static void rec(deja__buf *body, unsigned kind, const void *a, size_t na, const void *b, size_t nb)
{
    uint8_t h[5];
    uint32_t len = (uint32_t)(na + nb);

    h[0] = (uint8_t)kind;
    for (int i = 0; i < 4; i++)
        h[1 + i] = (uint8_t)(len >> (8 * i));
    assert_int_equal(deja__buf_append(body, h, 5), 0);
    assert_int_equal(deja__buf_append(body, a, na), 0);
    assert_int_equal(deja__buf_append(body, b, nb), 0);
}

/* The decompressed body of a valid bundle file. */
static void unwrap(const uint8_t *file, size_t size, deja__buf *body)
{
    uint64_t dlen = 0;

    for (int i = 7; i >= 0; i--)
        dlen = dlen << 8 | file[24 + i];
    body->size = 0;
    assert_int_equal(deja__buf_reserve(body, (size_t)dlen), 0);
    assert_int_equal(ZSTD_decompress(body->data, (size_t)dlen, file + 48, size - 48), dlen);
    body->size = (size_t)dlen;
}

/* Check the wrapped `body`: it fails with `code` and a message containing
 * `needle`. */
static void expect_body(const deja__buf *body, int code, const char *needle)
{
    deja__buf file = {0};
    int rc;

    assert_int_equal(deja__bundle_wrap(body->data, body->size, &file), 0);
    rc = deja__bundle_check_memory(file.data, file.size, "evil.deja");
    if (rc != code || strstr(deja_error_last(), needle) == NULL)
        fail_msg("rc %d, message '%s'; wanted %d and '%s'", rc, deja_error_last(), code, needle);
    if (code != 0)
        assert_non_null(strstr(deja_error_last(), "bundle 'evil.deja': "));
    deja__buf_free(&file);
}

/* Build in `evil` a body whose manifest (the record of `body` that ends at
 * `end`) is decoded, changed by `tamper` and encoded again, followed by the
 * rest of `body`; check that it fails as corrupt with a message containing
 * `needle`. */
static void expect_tampered_manifest(deja__buf *evil, const deja__buf *body, size_t end,
                                     void (*tamper)(deja_bundle_info *), const char *needle)
{
    deja_bundle_info *info = NULL;
    deja__buf man = {0};

    evil->size = 0;
    assert_int_equal(deja__manifest_decode(body->data + 5, end - 5, &info), 0);
    tamper(info);
    assert_int_equal(deja__manifest_encode(info, &man), 0);
    rec(evil, DEJA__BUNDLE_MANIFEST, man.data, man.size, NULL, 0);
    assert_int_equal(deja__buf_append(evil, body->data + end, body->size - end), 0);
    expect_body(evil, DEJA_ECORRUPT, needle);
    deja__manifest_free(info);
    deja__buf_free(&man);
}

/* Tampers for expect_tampered_manifest: count one trace too many; list no
 * model at all. */
static void lie_about_traces(deja_bundle_info *info)
{
    info->traces += 1;
}

static void forget_models(deja_bundle_info *info)
{
    info->nmodels = 0;
}

static void hostile_version(deja_bundle_info *info)
{
    ((deja_bundle_model *)info->models)[0].version = "1\x1b[2J; touch /tmp/deja-pwned";
}

static void flip_plugin_byte(deja_bundle_info *info)
{
    ((uint8_t *)info->plugin->data)[info->plugin->size / 2] ^= 0x5a;
}

/* Offsets of the records of `body`: kinds and starts, at most 64. */
static size_t records(const deja__buf *body, size_t *off, unsigned *kind)
{
    size_t n = 0;

    for (size_t pos = 0; pos + 5 <= body->size && n < 64; n++) {
        uint32_t len = (uint32_t)body->data[pos + 1] | (uint32_t)body->data[pos + 2] << 8 |
                       (uint32_t)body->data[pos + 3] << 16 | (uint32_t)body->data[pos + 4] << 24;
        off[n] = pos;
        kind[n] = body->data[pos];
        pos += 5 + len;
    }
    return n;
}

/* Blob callback that names a blob no bundle holds. */
static int missing_blob(const void *data, size_t size, deja_digest *out, void *payload)
{
    (void)data;
    (void)size;
    (void)payload;
    *out = deja_digest_of("missing", 7);
    return 0;
}

static void test_bundle__hostile_bodies_are_named(void **state)
{
    deja__buf body = {0}, evil = {0};
    uint8_t *file;
    size_t size, off[64], n, blob = 0, trace = 0, env = 0;
    unsigned kind[64];
    (void)state;

    file = slurp(bundle_a, &size);
    unwrap(file, size, &body);
    n = records(&body, off, kind);
    assert_int_equal(kind[0], DEJA__BUNDLE_MANIFEST);
    for (size_t i = 0; i < n; i++) {
        if (kind[i] == DEJA__BUNDLE_BLOB && blob == 0)
            blob = i;
        if (kind[i] == DEJA__BUNDLE_TRACE && trace == 0)
            trace = i;
        if (kind[i] == DEJA__BUNDLE_ENV && env == 0)
            env = i;
    }
    assert_true(blob > 0 && trace > 0 && env > 0);
    expect_body(&body, 0, "");

    /* A blob whose content no longer matches its digest. */
    assert_int_equal(deja__buf_append(&evil, body.data, body.size), 0);
    evil.data[off[blob] + 5 + 16 + 7] ^= 1;
    {
        char needle[64];
        snprintf(needle, sizeof needle, "record %zu at offset %zu: blob digest mismatch", blob,
                 off[blob]);
        expect_body(&evil, DEJA_ECORRUPT, needle);
    }
    /* An environment likewise. */
    evil.size = 0;
    assert_int_equal(deja__buf_append(&evil, body.data, body.size), 0);
    evil.data[off[env] + 5 + 20] ^= 1;
    expect_body(&evil, DEJA_ECORRUPT, "environment digest mismatch");

    /* A record length far beyond the body. */
    evil.size = 0;
    assert_int_equal(deja__buf_append(&evil, body.data, body.size), 0);
    memset(evil.data + off[trace] + 1, 0xff, 4);
    expect_body(&evil, DEJA_ECORRUPT, "bytes but only");

    /* Cut short inside a record header. */
    evil.size = 0;
    assert_int_equal(deja__buf_append(&evil, body.data, body.size), 0);
    evil.size = off[trace] + 3;
    expect_body(&evil, DEJA_ECORRUPT, "truncated record header");

    /* A trace without its blob: drop the blob record. */
    evil.size = 0;
    assert_int_equal(deja__buf_append(&evil, body.data, off[blob]), 0);
    {
        size_t next = off[blob + 1];
        assert_int_equal(deja__buf_append(&evil, body.data + next, body.size - next), 0);
    }
    expect_body(&evil, DEJA_ECORRUPT, "which the bundle lacks");

    /* A duplicate trace. */
    evil.size = 0;
    assert_int_equal(deja__buf_append(&evil, body.data, body.size), 0);
    {
        size_t len = (trace + 1 < n ? off[trace + 1] : body.size) - off[trace];
        assert_int_equal(deja__buf_append(&evil, body.data + off[trace], len), 0);
    }
    expect_body(&evil, DEJA_ECORRUPT, "duplicate trace");

    /* An extra blob nobody references. */
    evil.size = 0;
    assert_int_equal(deja__buf_append(&evil, body.data, body.size), 0);
    {
        deja_digest d = deja_digest_of("stowaway", 8);
        rec(&evil, DEJA__BUNDLE_BLOB, d.bytes, 16, "stowaway", 8);
    }
    expect_body(&evil, DEJA_ECORRUPT, "referenced by no trace");

    /* An unknown kind; no manifest first; an empty body. */
    evil.size = 0;
    assert_int_equal(deja__buf_append(&evil, body.data, body.size), 0);
    rec(&evil, 77, "x", 1, NULL, 0);
    expect_body(&evil, DEJA_ECORRUPT, "unknown record kind 77");
    evil.size = 0;
    assert_int_equal(deja__buf_append(&evil, body.data + off[1], body.size - off[1]), 0);
    expect_body(&evil, DEJA_ECORRUPT, "record 0 at offset 0: the first record is of kind");
    evil.size = 0;
    expect_body(&evil, DEJA_ECORRUPT, "too few for a manifest");

    /* A manifest whose counts lie. */
    expect_tampered_manifest(&evil, &body, off[1], lie_about_traces, "the manifest counts");
    /* A manifest that forgets the model. */
    expect_tampered_manifest(&evil, &body, off[1], forget_models,
                             "model textgen 1 is not in the manifest");
    /* A hostile tensor name cannot break the one-line message. */
    evil.size = 0;
    assert_int_equal(deja__buf_append(&evil, body.data, body.size), 0);
    {
        static uint8_t payload[2000];
        deja_tensor in;
        deja_trace tr;
        deja__buf enc = {0};
        const char *msg;
        deja__buf f = {0};

        memset(&in, 0, sizeof in);
        in.name = "evil\nname\x1b[2J";
        in.dtype = DEJA_BYTES;
        in.data = payload;
        in.size = sizeof payload;
        memset(&tr, 0, sizeof tr);
        memset(tr.id.bytes, 0x42, 16);
        tr.model_name = "textgen";
        tr.model_version = "1";
        tr.error = "";
        tr.inputs = &in;
        tr.ninputs = 1;
        assert_int_equal(deja__trace_encode(&tr, 1024, missing_blob, NULL, &enc), 0);
        rec(&evil, DEJA__BUNDLE_TRACE, enc.data, enc.size, NULL, 0);
        deja__buf_free(&enc);
        assert_int_equal(deja__bundle_wrap(evil.data, evil.size, &f), 0);
        assert_int_equal(deja__bundle_check_memory(f.data, f.size, "evil.deja"), DEJA_ECORRUPT);
        msg = deja_error_last();
        assert_non_null(strstr(msg, "a tensor name holds a control character"));
        assert_null(strchr(msg, '\n'));
        assert_null(strchr(msg, '\x1b'));
        deja__buf_free(&f);
    }
    /* Names, versions and tags with control characters are refused, in the
     * manifest and in a trace, without repeating them. */
    expect_tampered_manifest(&evil, &body, off[1], hostile_version,
                             "model 1: a name or version holds a control character");
    evil.size = 0;
    assert_int_equal(deja__buf_append(&evil, body.data, body.size), 0);
    {
        deja_trace tr;
        deja_tag tag = {"user", "u1\r\nok"};
        deja__buf enc = {0};

        memset(&tr, 0, sizeof tr);
        memset(tr.id.bytes, 0x43, 16);
        tr.model_name = "textgen";
        tr.model_version = "1";
        tr.error = "";
        tr.tags = &tag;
        tr.ntags = 1;
        assert_int_equal(deja__trace_encode(&tr, 1024, missing_blob, NULL, &enc), 0);
        rec(&evil, DEJA__BUNDLE_TRACE, enc.data, enc.size, NULL, 0);
        deja__buf_free(&enc);
        expect_body(&evil, DEJA_ECORRUPT, "tag 1 holds a control character");
        assert_null(strchr(deja_error_last(), '\r'));
    }
    /* An environment whose variable holds an escape sequence is refused:
     * `deja replay` would print it among the likely causes. */
    evil.size = 0;
    assert_int_equal(deja__buf_append(&evil, body.data, body.size), 0);
    {
        deja_env e = *deja_env_current(NULL);
        const deja_kv var = {"OMP_NUM_THREADS", "4\x1b]0;pwned\x07"};
        deja__buf enc = {0};
        deja_digest d;

        e.vars = &var;
        e.nvars = 1;
        assert_int_equal(deja__env_encode(&e, &enc), 0);
        d = deja_digest_of(enc.data, enc.size);
        rec(&evil, DEJA__BUNDLE_ENV, d.bytes, 16, enc.data, enc.size);
        deja__buf_free(&enc);
        expect_body(&evil, DEJA_ECORRUPT, "environment: a name or value holds a control character");
    }
    /* Padding is skipped. */
    evil.size = 0;
    assert_int_equal(deja__buf_append(&evil, body.data, body.size), 0);
    rec(&evil, DEJA__BUNDLE_PAD, "filler", 6, NULL, 0);
    expect_body(&evil, 0, "");
    deja__buf_free(&evil);
    deja__buf_free(&body);
    free(file);
}

static void test_bundle__header_bounds(void **state)
{
    deja__buf f = {0};
    uint8_t *zeros;
    const size_t nz = (size_t)8 << 20;
    (void)state;

    /* A decompression bomb: 8 MiB of zeros in a few hundred bytes. */
    zeros = calloc(1, nz);
    assert_non_null(zeros);
    assert_int_equal(deja__bundle_wrap(zeros, nz, &f), 0);
    assert_int_equal(deja__bundle_check_memory(f.data, f.size, "bomb.deja"), DEJA_ECORRUPT);
    assert_non_null(strstr(deja_error_last(), "decompression bomb"));
    free(zeros);

    /* A small body that claims a huge decompressed size. */
    assert_int_equal(deja__bundle_wrap("abcdefgh", 8, &f), 0);
    for (int i = 0; i < 8; i++)
        f.data[24 + i] = 0xff;
    assert_int_equal(deja__bundle_check_memory(f.data, f.size, "big.deja"), DEJA_ECORRUPT);
    assert_non_null(strstr(deja_error_last(), "over the"));

    /* A newer format. */
    assert_int_equal(deja__bundle_wrap("abcdefgh", 8, &f), 0);
    f.data[8] = 2;
    assert_int_equal(deja__bundle_check_memory(f.data, f.size, "new.deja"), DEJA_EVERSION);
    assert_non_null(strstr(deja_error_last(), "upgrade deja"));

    /* Not a bundle at all. */
    assert_int_equal(deja__bundle_check_memory("hello world, this is no bundle at all, really!!",
                                               48, "x"), DEJA_ECORRUPT);
    assert_non_null(strstr(deja_error_last(), "not a deja bundle"));
    deja__buf_free(&f);
}

static void test_bundle__shared_input_is_stored_once(void **state)
{
    const char *src = path_in("shared.store");
    const char *dst = path_in("shared-import.store");
    const char *file = path_in("shared.deja");
    const size_t big = 100 << 10;
    deja_tracer *t = NULL;
    deja_store *s = NULL;
    deja_id *list;
    char *input;
    deja_bundle_info *info = NULL;
    deja_bundle_import_stats st;
    deja_store_stats ss;
    struct stat fst;
    (void)state;

    input = malloc(big);
    list = calloc(1000, sizeof *list);
    assert_non_null(input);
    assert_non_null(list);
    for (size_t i = 0; i < big; i++)
        input[i] = (char)('a' + (i * 7919 % 26));
    assert_int_equal(deja_tracer_open(&t, src, NULL), 0);
    for (int i = 0; i < 1000; i++) {
        deja_span *sp = NULL;
        char out[32];
        int n = snprintf(out, sizeof out, "answer %d", i);
        assert_int_equal(deja_span_begin(&sp, t, "echo", "1"), 0);
        assert_int_equal(deja_span_add_text(sp, DEJA_INPUT, "doc", input, big), 0);
        assert_int_equal(deja_span_add_text(sp, DEJA_OUTPUT, "answer", out, (size_t)n), 0);
        list[i] = *deja_span_id(sp);
        assert_int_equal(deja_span_end(sp, DEJA_STATUS_OK, NULL), 0);
    }
    deja_tracer_close(t);
    assert_int_equal(deja_store_open(&s, src, DEJA_STORE_READONLY), 0);
    assert_int_equal(deja_bundle_export(s, list, 1000, NULL, file), 0);
    deja_store_close(s);
    assert_int_equal(deja_bundle_verify(file, &info), 0);
    assert_int_equal(info->traces, 1000);
    assert_int_equal(info->blobs, 1);
    assert_int_equal(stat(file, &fst), 0);
    assert_int_equal((uint64_t)fst.st_size, info->file_bytes);
    assert_true(info->body_bytes < big + 1000 * 1024);
    deja_bundle_info_free(info);
    assert_int_equal(deja_store_open(&s, dst, DEJA_STORE_WRITE), 0);
    assert_int_equal(deja_bundle_import(s, file, &st), 0);
    assert_int_equal(st.traces_added, 1000);
    assert_int_equal(st.blobs_added, 1);
    assert_int_equal(deja_store_stats_get(s, &ss), 0);
    assert_int_equal(ss.traces, 1000);
    assert_int_equal(ss.blobs, 1);
    deja_store_close(s);
    free(list);
    free(input);
}

static void test_bundle__very_compressible_bundle_still_reads(void **state)
{
    const char *src = path_in("zeros.store");
    const char *file = path_in("zeros.deja");
    const size_t big = (size_t)24 << 20;
    deja_tracer *t = NULL;
    deja_store *s = NULL;
    deja_span *sp = NULL;
    deja_bundle_info *info = NULL;
    deja_id id;
    void *zeros = calloc(1, big);
    (void)state;

    assert_non_null(zeros);
    assert_int_equal(deja_tracer_open(&t, src, NULL), 0);
    assert_int_equal(deja_span_begin(&sp, t, "mask", "1"), 0);
    assert_int_equal(deja_span_add_bytes(sp, DEJA_INPUT, "mask", zeros, big), 0);
    id = *deja_span_id(sp);
    assert_int_equal(deja_span_end(sp, DEJA_STATUS_OK, NULL), 0);
    deja_tracer_close(t);
    free(zeros);
    assert_int_equal(deja_store_open(&s, src, DEJA_STORE_READONLY), 0);
    if (deja_bundle_export(s, &id, 1, NULL, file) != 0)
        fail_msg("export: %s", deja_error_last());
    deja_store_close(s);
    /* 24 MiB of zeros compress far beyond 1000:1; the writer pads the file
     * so that readers' decompression-bomb bound still accepts it. */
    if (deja_bundle_verify(file, &info) != 0)
        fail_msg("verify: %s", deja_error_last());
    assert_int_equal(info->blobs, 1);
    assert_true(info->body_bytes <= 1000 * (info->file_bytes - 48) + (1 << 20));
    deja_bundle_info_free(info);
}

static void test_bundle__large_body_goes_through_a_file(void **state)
{
    const uint64_t saved = deja__bundle_mem_max;
    deja_bundle_info *info = NULL;
    (void)state;

    deja__bundle_mem_max = 0;
    assert_int_equal(deja_bundle_verify(bundle_a, &info), 0);
    assert_int_equal(info->traces, NREC);
    deja_bundle_info_free(info);
    deja__bundle_mem_max = saved;
    assert_true(dir_empty(tmpdir));
}

static void test_bundle__plugin_is_recorded_not_run(void **state)
{
    const char *file = path_in("plugin.deja");
    const char *dst = path_in("plugin-import.store");
    deja_bundle_options o = DEJA_BUNDLE_OPTIONS_INIT;
    deja_bundle_info *info = NULL;
    deja_store *s = NULL;
    deja_model *m = NULL;
    const uint8_t *wd;
    size_t wn = 0;
    (void)state;

    assert_int_equal(deja_store_open(&s, store_a, DEJA_STORE_READONLY), 0);
    o.include_plugin = 1;
    assert_int_equal(deja_bundle_export(s, ids, 1, &o, file), DEJA_EINVAL);
    o.with_model = "textgen-v1";
    o.include_plugin = 0;
    assert_int_equal(deja_bundle_export(s, ids, 1, &o, file), 0);
    assert_int_equal(deja_bundle_verify(file, &info), 0);
    assert_non_null(info->plugin);
    assert_string_equal(info->plugin->spec, "textgen-v1");
    assert_string_equal(info->plugin->file, "textgen-v1.so");
    assert_string_equal(info->plugin->model_name, "textgen");
    assert_null(info->plugin->data);
    assert_int_equal(deja_model_load(&m, "textgen-v1"), 0);
    wd = deja_model_digest(m, &wn);
    assert_int_equal(info->plugin->model_digest_size, wn);
    assert_memory_equal(info->plugin->model_digest, wd, wn);
    {
        size_t n;
        uint8_t *so = slurp(deja_model_path(m), &n);
        deja_digest d = deja_digest_of(so, n);
        assert_memory_equal(d.bytes, info->plugin->file_digest.bytes, 16);
        assert_int_equal(info->plugin->file_size, n);
        free(so);
    }
    deja_model_free(m);
    deja_bundle_info_free(info);

    o.include_plugin = 1;
    assert_int_equal(deja_bundle_export(s, ids, 1, &o, file), 0);
    deja_store_close(s);
    assert_int_equal(deja_bundle_verify(file, &info), 0);
    assert_non_null(info->plugin->data);
    assert_int_equal(info->plugin->size, info->plugin->file_size);
    deja_bundle_info_free(info);
    /* An included plugin file whose bytes are not the recorded file's (the
     * same size, one byte changed, the checksum made right) is refused. */
    {
        size_t n, noff;
        uint8_t *raw = slurp(file, &n);
        deja__buf body = {0}, evil = {0};
        size_t off[64];
        unsigned kind[64];
        unwrap(raw, n, &body);
        noff = records(&body, off, kind);
        assert_true(noff >= 2);
        expect_tampered_manifest(&evil, &body, off[1], flip_plugin_byte,
                                 "does not match its recorded XXH3-128 digest");
        deja__buf_free(&evil);
        deja__buf_free(&body);
        free(raw);
    }
    /* Importing writes the store and nothing else. */
    assert_int_equal(deja_store_open(&s, dst, DEJA_STORE_WRITE), 0);
    assert_int_equal(deja_bundle_import(s, file, NULL), 0);
    deja_store_close(s);
    assert_true(dir_empty(tmpdir));
}

static void test_bundle__export_errors(void **state)
{
    deja_store *s = NULL;
    deja_id missing;
    deja_bundle_options o = DEJA_BUNDLE_OPTIONS_INIT;
    const char *file = path_in("never.deja");
    (void)state;

    memset(&missing, 0x11, sizeof missing);
    assert_int_equal(deja_store_open(&s, store_a, DEJA_STORE_READONLY), 0);
    assert_int_equal(deja_bundle_export(s, ids, 0, NULL, file), DEJA_EINVAL);
    assert_int_equal(deja_bundle_export(s, &missing, 1, NULL, file), DEJA_ENOTFOUND);
    o.level = 99;
    assert_int_equal(deja_bundle_export(s, ids, 1, &o, file), DEJA_EINVAL);
    o.level = 0;
    o.with_model = "no-such-plugin";
    assert_int_equal(deja_bundle_export(s, ids, 1, &o, file), DEJA_ENOTFOUND);
    assert_int_equal(deja_bundle_export(s, ids, 1, NULL, path_in("no/such/dir/x.deja")),
                     DEJA_EIO);
    /* A failed export leaves an existing file as it was. */
    {
        const char *keep = path_in("keep.deja");
        size_t n;
        uint8_t *back;
        spit(keep, "old content", 11);
        assert_int_equal(deja_bundle_export(s, &missing, 1, NULL, keep), DEJA_ENOTFOUND);
        back = slurp(keep, &n);
        assert_int_equal(n, 11);
        assert_memory_equal(back, "old content", 11);
        free(back);
        assert_int_equal(deja_bundle_export(s, ids, 1, NULL, keep), 0);
        assert_int_equal(deja_bundle_verify(keep, NULL), 0);
    }
    deja_store_close(s);
    /* Nothing was left behind, neither the file nor a temporary one. */
    assert_int_equal(access(file, F_OK), -1);
    {
        DIR *d = opendir(root);
        struct dirent *e;
        assert_non_null(d);
        while ((e = readdir(d)) != NULL)
            assert_null(strstr(e->d_name, ".tmp-"));
        closedir(d);
    }
}

/* The smoke run of the fuzz target: mutated real bundles, each wrapped with
 * a valid checksum so that the parser proper sees them. */
static void test_bundle__mutated_bodies_never_crash(void **state)
{
    deja__buf body = {0}, evil = {0}, file = {0};
    uint8_t *orig;
    size_t size, off[64], n;
    unsigned kind[64];
    uint64_t x = 0x243f6a8885a308d3ULL;
    (void)state;

    orig = slurp(bundle_a, &size);
    unwrap(orig, size, &body);
    n = records(&body, off, kind);
    for (int round = 0; round < 3000; round++) {
        int rc;

        evil.size = 0;
        assert_int_equal(deja__buf_append(&evil, body.data, body.size), 0);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        switch (round % 4) {
        case 0: /* a few bit flips */
            for (int k = 0; k < 1 + (int)(x % 4); k++)
                evil.data[(x >> (8 + k * 12)) % evil.size] ^= (uint8_t)(1u << ((x >> k) & 7));
            break;
        case 1: /* truncation */
            evil.size = (size_t)(x % evil.size);
            break;
        case 2: { /* a record length set huge or off by a little */
            size_t r = (size_t)(x % n);
            uint32_t len = (x >> 20) & 1 ? 0xffffffffu : (uint32_t)((x >> 24) % 70000);
            for (int i = 0; i < 4; i++)
                evil.data[off[r] + 1 + i] = (uint8_t)(len >> (8 * i));
            break;
        }
        default: { /* a byte inside a record's protobuf set to 0xff */
            size_t r = (size_t)(x % n);
            size_t end = r + 1 < n ? off[r + 1] : body.size;
            if (end > off[r] + 5)
                evil.data[off[r] + 5 + (size_t)((x >> 16) % (end - off[r] - 5))] = 0xff;
            break;
        }
        }
        assert_int_equal(deja__bundle_wrap(evil.data, evil.size, &file), 0);
        rc = deja__bundle_check_memory(file.data, file.size, "fuzz.deja");
        assert_true(rc == 0 || rc == DEJA_ECORRUPT);
        if (rc != 0)
            assert_non_null(strstr(deja_error_last(), "bundle 'fuzz.deja': "));
    }
    deja__buf_free(&file);
    deja__buf_free(&evil);
    deja__buf_free(&body);
    free(orig);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bundle__round_trip_is_byte_identical),
        cmocka_unit_test(test_bundle__open_reads_and_replays_in_place),
        cmocka_unit_test(test_bundle__import_twice_changes_nothing),
        cmocka_unit_test(test_bundle__every_byte_change_is_detected),
        cmocka_unit_test(test_bundle__damaged_file_leaves_store_untouched),
        cmocka_unit_test(test_bundle__hostile_bodies_are_named),
        cmocka_unit_test(test_bundle__header_bounds),
        cmocka_unit_test(test_bundle__shared_input_is_stored_once),
        cmocka_unit_test(test_bundle__very_compressible_bundle_still_reads),
        cmocka_unit_test(test_bundle__large_body_goes_through_a_file),
        cmocka_unit_test(test_bundle__plugin_is_recorded_not_run),
        cmocka_unit_test(test_bundle__export_errors),
        cmocka_unit_test(test_bundle__mutated_bodies_never_crash),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
