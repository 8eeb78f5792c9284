/*
 * tests/test_cli_bundle.c -- `deja export` and `deja import`, run as a user
 * runs them: the real binary on real files. Traces recorded by `deja run`
 * with textgen-v1 go store -> bundle -> fresh store and come back
 * byte-identical (`show --json`) and replay to the same verdicts; every
 * single-byte change of a bundle makes import fail with exit 2 and leaves
 * the store as it was; a second import changes nothing; 1,000 traces that
 * share one 100 KiB input store it once. Also cli_open_source(), which
 * lets `show` and `replay` take a bundle file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <jansson.h>

#include <dirent.h>

#include "cli_harness.h"

/* The helpers under test directly: linked from deja_cli. */
#include "cli/cli_bundle.h"

/* Every byte is damaged in turn; under the sanitizers, where each run of
 * the binary is slow, every header byte and every 5th byte after it
 * (tests/test_bundle.c damages every byte in memory in every build). */
#if defined(__SANITIZE_ADDRESS__)
#define TAMPER_STRIDE 5
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TAMPER_STRIDE 5
#endif
#endif
#ifndef TAMPER_STRIDE
#define TAMPER_STRIDE 1
#endif

static char tmp_root[] = "/tmp/deja-test-cli-bundle-XXXXXX";
static char tmpdir[600];

/* A path under the temporary directory (cli_tmp_path). */
static const char *tmp_path(const char *name)
{
    return cli_tmp_path(tmp_root, name);
}

/* The store every case reads: recorded once by `deja run`. */
static char store_a[600];

static const char requests[] =
    "{\"inputs\": {\"prompt\": \"The fox\"}, \"params\": {\"max_tokens\": 40}}\n"
    "{\"inputs\": {\"prompt\": \"Once upon a time\"}, \"params\": {\"temperature\": 1.3}}\n"
    "{\"inputs\": {\"prompt\": \"A lion lay\"}, \"params\": {\"temperature\": 0.5}}\n";

static int group_setup(void **state)
{
    cli_run r;
    char *req;
    FILE *fp;
    (void)state;

    if (cli_group_begin(tmp_root) != 0)
        return -1;
    snprintf(tmpdir, sizeof tmpdir, "%s/tmp", tmp_root);
    if (mkdir(tmpdir, 0700) != 0)
        return -1;
    setenv("TMPDIR", tmpdir, 1);
    snprintf(store_a, sizeof store_a, "%s/a.store", tmp_root);
    req = strdup(tmp_path("requests.jsonl"));
    fp = fopen(req, "w");
    if (fp == NULL)
        return -1;
    fputs(requests, fp);
    /* One prompt beyond the inline limit, so that the bundle holds a blob. */
    fputs("{\"inputs\": {\"prompt\": \"", fp);
    for (int i = 0; i < 150; i++)
        fputs("The crow and the jug. ", fp);
    fputs("\"}}\n", fp);
    fclose(fp);
    if (cli_exec(&r, NULL, NULL, "--store", store_a, "run", "--model", "textgen-v1",
                 "--requests", req, NULL) != 0 || r.status != 0) {
        fprintf(stderr, "run failed: %s\n", r.err);
        return -1;
    }
    cli_run_free(&r);
    free(req);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    cli_rm_rf(tmp_root);
    return 0;
}

/* Run deja and require exit 0. */
static void ok(cli_run *r, const char *store, const char *a1, const char *a2, const char *a3,
               const char *a4, const char *a5)
{
    const char *args[] = {"--store", store, a1, a2, a3, a4, a5, NULL};

    assert_int_equal(cli_execv(r, NULL, NULL, args), 0);
    if (r->status != 0)
        fail_msg("deja %s %s: exit %d: %s", a1, a2 ? a2 : "", r->status, r->err);
}

/* Assert that the file `path` holds exactly the `nb` bytes at `before` (a
 * store's data file left as it was). */
static void assert_file_holds(const char *path, const char *before, size_t nb)
{
    size_t na = 0;
    char *after = cli_slurp(path, &na);

    assert_int_equal(nb, na);
    assert_memory_equal(before, after, nb);
    free(after);
}

/* The ids printed by `ls --json`, one per line, into `ids` (at most 16). */
static size_t list_ids(const char *store, char ids[][DEJA_ID_STRLEN + 1])
{
    cli_run r;
    size_t n = 0;

    ok(&r, store, "ls", "--json", NULL, NULL, NULL);
    for (size_t i = 0; i < cli_count_lines(r.out) && n < 16; i++) {
        char *line = cli_line(r.out, i);
        json_t *j = json_loads(line, 0, NULL);
        assert_non_null(j);
        snprintf(ids[n++], DEJA_ID_STRLEN + 1, "%s", json_string_value(json_object_get(j, "id")));
        json_decref(j);
        free(line);
    }
    cli_run_free(&r);
    return n;
}

static void test_cli_bundle__round_trip_is_byte_identical(void **state)
{
    const char *file = tmp_path("all.deja");
    const char *store_b = tmp_path("b.store");
    char ids[16][DEJA_ID_STRLEN + 1], ids_b[16][DEJA_ID_STRLEN + 1];
    cli_run r, ra, rb;
    size_t n;
    (void)state;

    ok(&r, store_a, "export", "-o", file, NULL, NULL);
    assert_non_null(strstr(r.out, "exported 4 traces, 1 blob, 1 environment to "));
    cli_run_free(&r);
    ok(&r, store_b, "import", file, NULL, NULL, NULL);
    assert_string_equal(r.out, "imported 4 traces (0 already present), 1 blob (1 new), "
                               "1 environment (1 new)\n");
    assert_string_equal(r.err, "");
    cli_run_free(&r);

    n = list_ids(store_a, ids);
    assert_int_equal(n, 4);
    assert_int_equal(list_ids(store_b, ids_b), 4);
    assert_memory_equal(ids, ids_b, sizeof ids[0] * n);
    for (size_t i = 0; i < n; i++) {
        ok(&ra, store_a, "show", ids[i], "--json", NULL, NULL);
        ok(&rb, store_b, "show", ids[i], "--json", NULL, NULL);
        assert_string_equal(ra.out, rb.out);
        cli_run_free(&ra);
        cli_run_free(&rb);
    }
    ok(&ra, store_a, "ls", "--json", NULL, NULL, NULL);
    ok(&rb, store_b, "ls", "--json", NULL, NULL, NULL);
    assert_string_equal(ra.out, rb.out);
    cli_run_free(&ra);
    cli_run_free(&rb);
    /* The same verdicts, on the recording version and on the buggy one. */
    ok(&ra, store_a, "replay", "--model", "textgen-v1", "--json", NULL);
    ok(&rb, store_b, "replay", "--model", "textgen-v1", "--json", NULL);
    assert_string_equal(ra.out, rb.out);
    assert_int_equal(cli_count_lines(ra.out), 4 + 1); /* a line per trace, then the summary */
    assert_null(strstr(ra.out, "\"verdict\":\"diverged\""));
    cli_run_free(&ra);
    cli_run_free(&rb);
    {
        const char *a[] = {"--store", store_a, "replay", "--model", "textgen-v4", "--json", NULL};
        const char *b[] = {"--store", store_b, "replay", "--model", "textgen-v4", "--json", NULL};
        assert_int_equal(cli_execv(&ra, NULL, NULL, a), 0);
        assert_int_equal(cli_execv(&rb, NULL, NULL, b), 0);
        assert_int_equal(ra.status, 1);
        assert_int_equal(rb.status, 1);
        assert_string_equal(ra.out, rb.out);
        assert_non_null(strstr(ra.out, "\"verdict\":\"diverged\""));
        cli_run_free(&ra);
        cli_run_free(&rb);
    }
    ok(&r, store_b, "verify", NULL, NULL, NULL, NULL);
    cli_run_free(&r);
}

/* `deja show FILE`, `deja show FILE ID` and `deja replay FILE` read a
 * bundle in place: the same answers as the store it came from, and no store
 * is created. */
static void test_cli_bundle__used_in_place(void **state)
{
    const char *file = tmp_path("inplace.deja");
    const char *nostore = tmp_path("never.store");
    char ids[16][DEJA_ID_STRLEN + 1];
    cli_run r, ra, rb;
    (void)state;

    ok(&r, store_a, "export", "-o", file, NULL, NULL);
    cli_run_free(&r);
    assert_int_equal(list_ids(store_a, ids), 4);

    ok(&r, nostore, "show", file, NULL, NULL, NULL);
    assert_non_null(strstr(r.out, "holds     4 traces, 1 blob, 1 environment"));
    for (size_t i = 0; i < 4; i++)
        assert_non_null(strstr(r.out, ids[i]));
    cli_run_free(&r);

    ok(&ra, nostore, "show", file, ids[2], "--json", NULL);
    ok(&rb, store_a, "show", ids[2], "--json", NULL, NULL);
    assert_string_equal(ra.out, rb.out);
    cli_run_free(&ra);
    cli_run_free(&rb);

    ok(&ra, nostore, "replay", file, "--model", "textgen-v1", "--json");
    ok(&rb, store_a, "replay", "--model", "textgen-v1", "--json", NULL);
    assert_string_equal(ra.out, rb.out);
    cli_run_free(&ra);
    cli_run_free(&rb);
    {
        const char *a[] = {"--store", nostore, "replay", file, ids[0], "--model", "textgen-v4",
                           NULL};
        assert_int_equal(cli_execv(&r, NULL, NULL, a), 0);
        assert_int_equal(r.status, 1);
        assert_non_null(strstr(r.out, "1 trace replayed"));
        cli_run_free(&r);
    }
    assert_false(cli_exists(nostore));
}

static void test_cli_bundle__import_twice_changes_nothing(void **state)
{
    const char *file = tmp_path("twice.deja");
    const char *store_c = tmp_path("c.store");
    char data[700];
    char *before;
    size_t nb = 0;
    cli_run r;
    (void)state;

    snprintf(data, sizeof data, "%s/data.mdb", store_c);
    ok(&r, store_a, "export", "-o", file, NULL, NULL);
    cli_run_free(&r);
    ok(&r, store_c, "import", file, NULL, NULL, NULL);
    cli_run_free(&r);
    before = cli_slurp(data, &nb);
    assert_non_null(before);
    ok(&r, store_c, "import", file, "--json", NULL, NULL);
    {
        json_t *j = json_loads(r.out, 0, NULL);
        assert_non_null(j);
        assert_int_equal(json_integer_value(json_object_get(j, "traces")), 4);
        assert_int_equal(json_integer_value(json_object_get(j, "traces_added")), 0);
        assert_int_equal(json_integer_value(json_object_get(j, "blobs_added")), 0);
        assert_int_equal(json_integer_value(json_object_get(j, "environments_added")), 0);
        json_decref(j);
    }
    cli_run_free(&r);
    ok(&r, store_c, "import", file, NULL, NULL, NULL);
    assert_string_equal(r.out, "imported 0 traces (4 already present), 1 blob (0 new), "
                               "1 environment (0 new)\n");
    cli_run_free(&r);
    assert_file_holds(data, before, nb);
    free(before);
}

static void test_cli_bundle__any_damaged_byte_fails_and_leaves_the_store(void **state)
{
    const char *file = tmp_path("small.deja");
    const char *bad = tmp_path("bad.deja");
    const char *store_d = tmp_path("d.store");
    const char *fresh = tmp_path("fresh.store");
    char ids[16][DEJA_ID_STRLEN + 1];
    char data[700];
    char *orig, *before;
    size_t size = 0, nb = 0;
    cli_run r;
    (void)state;

    list_ids(store_a, ids);
    ok(&r, store_a, "export", ids[0], "-o", file, NULL);
    cli_run_free(&r);
    orig = cli_slurp(file, &size);
    assert_non_null(orig);
    /* A store that holds something already. */
    snprintf(data, sizeof data, "%s/data.mdb", store_d);
    ok(&r, store_d, "import", tmp_path("all.deja"), NULL, NULL, NULL);
    cli_run_free(&r);
    before = cli_slurp(data, &nb);
    for (size_t i = 0; i < size; i += i < 48 ? 1 : TAMPER_STRIDE) {
        FILE *fp = fopen(bad, "wb");
        assert_non_null(fp);
        orig[i] ^= 0x20;
        assert_int_equal(fwrite(orig, 1, size, fp), size);
        fclose(fp);
        orig[i] ^= 0x20;
        assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store_d, "import", bad, NULL), 0);
        if (r.status != 2)
            fail_msg("byte %zu: exit %d", i, r.status);
        cli_assert_one_error(&r, "bundle '");
        cli_run_free(&r);
    }
    assert_file_holds(data, before, nb);
    /* A damaged bundle never creates a store either. */
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", fresh, "import", bad, NULL), 0);
    assert_int_equal(r.status, 2);
    cli_assert_one_error(&r, "checksum mismatch");
    assert_false(cli_exists(fresh));
    cli_run_free(&r);
    /* Cut short. */
    {
        FILE *fp = fopen(bad, "wb");
        assert_non_null(fp);
        assert_int_equal(fwrite(orig, 1, size - 10, fp), size - 10);
        fclose(fp);
    }
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store_d, "import", bad, NULL), 0);
    assert_int_equal(r.status, 2);
    cli_assert_one_error(&r, "truncated");
    cli_run_free(&r);
    free(orig);
    free(before);
}

static void test_cli_bundle__shared_input_is_stored_once(void **state)
{
    const char *src = tmp_path("shared.store");
    const char *dst = tmp_path("shared-import.store");
    const char *file = tmp_path("shared.deja");
    const size_t big = 100 << 10;
    deja_tracer *t = NULL;
    char *input = malloc(big);
    cli_run r;
    json_t *j;
    (void)state;

    assert_non_null(input);
    for (size_t i = 0; i < big; i++)
        input[i] = (char)('a' + (i * 31 % 26));
    assert_int_equal(deja_tracer_open(&t, src, NULL), 0);
    for (int i = 0; i < 1000; i++) {
        deja_span *sp = NULL;
        char out[32];
        int n = snprintf(out, sizeof out, "summary %d", i);
        assert_int_equal(deja_span_begin(&sp, t, "summarise", "2"), 0);
        assert_int_equal(deja_span_add_text(sp, DEJA_INPUT, "document", input, big), 0);
        assert_int_equal(deja_span_add_text(sp, DEJA_OUTPUT, "summary", out, (size_t)n), 0);
        assert_int_equal(deja_span_end(sp, DEJA_STATUS_OK, NULL), 0);
    }
    deja_tracer_close(t);
    free(input);
    ok(&r, src, "export", "-o", file, "--json", NULL);
    j = json_loads(r.out, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "traces")), 1000);
    assert_int_equal(json_integer_value(json_object_get(j, "blobs")), 1);
    json_decref(j);
    cli_run_free(&r);
    ok(&r, dst, "import", file, NULL, NULL, NULL);
    assert_string_equal(r.out, "imported 1000 traces (0 already present), 1 blob (1 new), "
                               "1 environment (1 new)\n");
    cli_run_free(&r);
    ok(&r, dst, "stats", "--json", NULL, NULL, NULL);
    j = json_loads(r.out, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "traces")), 1000);
    assert_int_equal(json_integer_value(json_object_get(j, "blobs")), 1);
    json_decref(j);
    cli_run_free(&r);
}

static void test_cli_bundle__md_is_a_bug_report(void **state)
{
    const char *file = tmp_path("report.deja");
    char ids[16][DEJA_ID_STRLEN + 1];
    char want[128];
    cli_run r;
    (void)state;

    list_ids(store_a, ids);
    ok(&r, store_a, "export", ids[1], "-o", file, "--md");
    assert_non_null(strstr(r.out, "## deja bundle `report.deja`"));
    assert_non_null(strstr(r.out, "| model | `textgen` version `1`, weights digest `"));
    assert_non_null(strstr(r.out, "deja replay report.deja --model textgen-v1\n"));
    assert_non_null(strstr(r.out, "deja --store repro.store import report.deja\n"));
    snprintf(want, sizeof want, "deja --store repro.store replay %s --model textgen-v1", ids[1]);
    assert_non_null(strstr(r.out, want));
    assert_non_null(strstr(r.out, "#### Inputs"));
    assert_non_null(strstr(r.out, "- `prompt` utf8["));
    assert_non_null(strstr(r.out, "#### Outputs"));
    assert_non_null(strstr(r.out, "RNG stream `sampling`: seed "));
    assert_non_null(strstr(r.out, "#### Environment"));
    cli_run_free(&r);

    /* With the plugin recorded. */
    {
        const char *args[] = {"--store",      store_a,      "export", "-o", file,
                              "--with-model", "textgen-v1", "--md",   NULL};
        assert_int_equal(cli_execv(&r, NULL, NULL, args), 0);
        assert_int_equal(r.status, 0);
    }
    assert_non_null(strstr(r.out, "| plugin | `textgen-v1`: file `textgen-v1.so`, "));
    assert_null(strstr(r.out, "(included)"));
    cli_run_free(&r);
}

static void test_cli_bundle__usage_errors(void **state)
{
    const char *never = tmp_path("never.store");
    cli_run r;
    (void)state;

    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store_a, "export", NULL), 0);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "deja: export: where to? give -o FILE.deja"));
    cli_run_free(&r);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store_a, "export", "-o",
                              tmp_path("x.deja"), "--model", "nosuchmodel", NULL),
                     0);
    assert_int_equal(r.status, 2);
    cli_assert_one_error(&r, "no trace matches");
    assert_false(cli_exists(tmp_path("x.deja")));
    cli_run_free(&r);
    assert_int_equal(
        cli_exec(&r, NULL, NULL, "--store", never, "export", "-o", tmp_path("x.deja"), NULL), 0);
    assert_int_equal(r.status, 2);
    cli_assert_one_error(&r, "does not exist");
    assert_false(cli_exists(never));
    cli_run_free(&r);
    assert_int_equal(
        cli_exec(&r, NULL, NULL, "--store", never, "import", tmp_path("missing.deja"), NULL), 0);
    assert_int_equal(r.status, 2);
    cli_assert_one_error(&r, "missing.deja");
    assert_false(cli_exists(never));
    cli_run_free(&r);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", never, "import", tmp_root, NULL), 0);
    assert_int_equal(r.status, 2);
    cli_assert_one_error(&r, "not a regular file");
    cli_run_free(&r);
    assert_int_equal(cli_exec(&r, NULL, NULL, "import", "--help", NULL), 0);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "usage: deja import FILE.deja"));
    cli_run_free(&r);
    assert_int_equal(cli_exec(&r, NULL, NULL, "export", "--help", NULL), 0);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "usage: deja export"));
    cli_run_free(&r);
}

static int count_cb(const deja_trace *t, void *payload)
{
    (void)t;
    (*(size_t *)payload)++;
    return 0;
}

static void test_cli_bundle__open_source_tells_bundles_apart(void **state)
{
    const char *file = tmp_path("all.deja");
    const char *bad = tmp_path("bad2.deja");
    deja_store *store = NULL;
    deja_bundle *bundle = NULL;
    deja_filter all = DEJA_FILTER_INIT;
    size_t size = 0;
    char *bytes;
    FILE *fp;
    (void)state;

    /* A store directory, a plain file, a missing path: not bundles. */
    assert_int_equal(cli_open_source(store_a, &store, &bundle), 0);
    assert_int_equal(cli_open_source(tmp_path("requests.jsonl"), &store, &bundle), 0);
    assert_int_equal(cli_open_source(tmp_path("nothing"), &store, &bundle), 0);
    assert_null(store);
    assert_null(bundle);
    /* A bundle opens in place, read-only, and its store lists the traces. */
    assert_int_equal(cli_open_source(file, &store, &bundle), 1);
    assert_non_null(bundle);
    assert_ptr_equal(store, deja_bundle_store(bundle));
    assert_int_equal(deja_bundle_info_get(bundle)->traces, 4);
    {
        size_t count = 0;
        assert_int_equal(deja_store_list(store, &all, count_cb, NULL, &count), 0);
        assert_int_equal(count, 4);
    }
    /* What `deja show FILE` prints, as text and as JSON lines. */
    {
        const char *out = tmp_path("print.txt");
        char *text;
        int saved;
        json_t *j;
        char *line;

        fflush(stdout);
        saved = dup(1);
        assert_true(freopen(out, "w", stdout) != NULL);
        assert_int_equal(cli_bundle_print(file, bundle, 0), 0);
        assert_int_equal(cli_bundle_print(file, bundle, 1), 0);
        fflush(stdout);
        assert_int_equal(dup2(saved, 1), 1);
        close(saved);
        text = cli_slurp(out, NULL);
        assert_non_null(text);
        assert_non_null(strstr(text, "holds     4 traces, 1 blob, 1 environment\n"));
        assert_non_null(strstr(text, "model     textgen 1, digest "));
        assert_non_null(strstr(text, "textgen@1  ok"));
        line = strstr(text, "{\"bundle\":");
        assert_non_null(line);
        *strchr(line, '\n') = '\0';
        j = json_loads(line, 0, NULL);
        assert_non_null(j);
        assert_int_equal(json_integer_value(json_object_get(j, "traces")), 4);
        assert_int_equal(json_integer_value(json_object_get(j, "format")), 1);
        assert_string_equal(json_string_value(json_object_get(
                                json_array_get(json_object_get(j, "models"), 0), "name")),
                            "textgen");
        json_decref(j);
        free(text);
    }
    deja_bundle_close(bundle);
    bundle = NULL;
    store = NULL;
    /* A damaged bundle: -1 after one message. */
    bytes = cli_slurp(file, &size);
    assert_non_null(bytes);
    bytes[size - 1] ^= 1;
    fp = fopen(bad, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(bytes, 1, size, fp), size);
    fclose(fp);
    free(bytes);
    assert_int_equal(cli_open_source(bad, &store, &bundle), -1);
    assert_null(bundle);
    /* Every temporary store was removed. */
    {
        DIR *d = opendir(tmpdir);
        struct dirent *e;
        assert_non_null(d);
        while ((e = readdir(d)) != NULL)
            assert_true(e->d_name[0] == '.');
        closedir(d);
    }
}

/* import --extract-plugins DIR writes the plugin a bundle carries, byte for
 * byte and not executable; never over a file; refuses names with '..'; and
 * says so when the bundle carries none. */
static void test_cli_bundle__extract_plugins(void **state)
{
    const char *file = tmp_path("with-plugin.deja");
    const char *dir = tmp_path("plugins");
    const char *store = tmp_path("extract.store");
    char got_path[700], *want, *got;
    size_t nwant = 0, ngot = 0;
    struct stat st;
    cli_run r;

    (void)state;
    {
        const char *a[] = {"--store", store_a, "export", "-o", file, "--with-model", "textgen-v1",
                           "--include-plugin", NULL};
        assert_int_equal(cli_execv(&r, NULL, NULL, a), 0);
        assert_int_equal(r.status, 0);
        cli_run_free(&r);
    }
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "import", file,
                              "--extract-plugins", dir, NULL),
                     0);
    if (r.status != 0)
        fail_msg("import --extract-plugins: %s", r.err);
    cli_run_free(&r);
    snprintf(got_path, sizeof got_path, "%s/textgen-v1.so", dir);
    want = cli_slurp(DEJA_LIB_DIR "/textgen-v1.so", &nwant);
    got = cli_slurp(got_path, &ngot);
    assert_non_null(want);
    assert_non_null(got);
    assert_int_equal(nwant, ngot);
    assert_memory_equal(want, got, nwant);
    assert_int_equal(stat(got_path, &st), 0);
    assert_int_equal(st.st_mode & 0111, 0);
    free(want);
    free(got);
    /* Never over an existing file; the store is then left as it was. */
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", tmp_path("extract2.store"), "import",
                              file, "--extract-plugins", dir, NULL),
                     0);
    assert_int_equal(r.status, 2);
    cli_assert_one_error(&r, "File exists");
    cli_run_free(&r);
    assert_false(cli_exists(tmp_path("extract2.store")));
    /* A plugin file whose name holds "..". */
    {
        char cmd[1600];
        const char *odd = tmp_path("odd");
        const char *bad = tmp_path("dotdot.deja");
        char spec[700];
        snprintf(cmd, sizeof cmd,
                 "mkdir -p '%s' && cp '%s/textgen-v1.so' '%s/a..b.so' && "
                 "cp '%s/textgen.model' '%s/'",
                 odd, DEJA_LIB_DIR, odd, DEJA_LIB_DIR, odd);
        assert_int_equal(system(cmd), 0);
        snprintf(spec, sizeof spec, "%s/a..b.so", odd);
        const char *a[] = {"--store", store_a, "export", "-o", bad, "--with-model", spec,
                           "--include-plugin", NULL};
        assert_int_equal(cli_execv(&r, NULL, NULL, a), 0);
        assert_int_equal(r.status, 0);
        cli_run_free(&r);
        assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "import", bad,
                                  "--extract-plugins", dir, NULL),
                         0);
        assert_int_equal(r.status, 2);
        cli_assert_one_error(&r, "refusing the plugin file name 'a..b.so'");
        cli_run_free(&r);
    }
    /* A bundle without a plugin. */
    {
        const char *plain = tmp_path("plain.deja");
        const char *a[] = {"--store", store_a, "export", "-o", plain, NULL};
        assert_int_equal(cli_execv(&r, NULL, NULL, a), 0);
        cli_run_free(&r);
        assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "import", plain,
                                  "--extract-plugins", dir, NULL),
                         0);
        assert_int_equal(r.status, 2);
        cli_assert_one_error(&r, "carries no plugin file");
        cli_run_free(&r);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli_bundle__round_trip_is_byte_identical),
        cmocka_unit_test(test_cli_bundle__used_in_place),
        cmocka_unit_test(test_cli_bundle__import_twice_changes_nothing),
        cmocka_unit_test(test_cli_bundle__any_damaged_byte_fails_and_leaves_the_store),
        cmocka_unit_test(test_cli_bundle__shared_input_is_stored_once),
        cmocka_unit_test(test_cli_bundle__md_is_a_bug_report),
        cmocka_unit_test(test_cli_bundle__usage_errors),
        cmocka_unit_test(test_cli_bundle__extract_plugins),
        cmocka_unit_test(test_cli_bundle__open_source_tells_bundles_apart),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
