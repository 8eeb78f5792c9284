/*
 * tests/test_cli.c -- the `deja` command, run as a user runs it: the real
 * binary on real files in a temporary directory, checking exit codes,
 * stdout and stderr. Records through `deja run` with the textgen-v1/v2
 * example plugins and reads back through ls, show, stats and verify.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <jansson.h>
#include <lmdb.h>

#include "cli_harness.h"

/* The helpers under test directly (time parsing, base64): linked from deja_cli. */
#include "cli/cli.h"

/* Traces with chosen times for `gc`, written through the library. */
#include "store/store.h"

static char tmp_root[] = "/tmp/deja-test-cli-XXXXXX";

/* A path under the temporary directory (cli_tmp_path). */
static const char *tmp_path(const char *name)
{
    return cli_tmp_path(tmp_root, name);
}

static int group_setup(void **state)
{
    (void)state;
    return cli_group_begin(tmp_root);
}

static int group_teardown(void **state)
{
    (void)state;
    cli_rm_rf(tmp_root);
    return 0;
}

/* Parse line `i` of stdout as JSON. */
static json_t *json_line(const cli_run *r, size_t i)
{
    char *line = cli_line(r->out, i);
    json_error_t err;
    json_t *j;

    assert_non_null(line);
    j = json_loads(line, 0, &err);
    if (j == NULL)
        fail_msg("line %zu is not JSON: %s: %s", i, err.text, line);
    free(line);
    return j;
}

/* The tensor called `name` in a JSON array of tensors. */
static json_t *find_tensor(json_t *arr, const char *name)
{
    size_t i;
    json_t *t;

    json_array_foreach(arr, i, t)
    {
        if (strcmp(json_string_value(json_object_get(t, "name")), name) == 0)
            return t;
    }
    fail_msg("no tensor '%s'", name);
    return NULL;
}

/* Assert that the JSON tensor `t` holds as "base64" exactly the `n` bytes at
 * `expect`. */
static void assert_base64_bytes(const json_t *t, const void *expect, size_t n)
{
    const json_t *b64 = json_object_get(t, "base64");
    uint8_t *bytes;
    size_t size;

    assert_int_equal(
        cli_base64_decode(json_string_value(b64), json_string_length(b64), &bytes, &size), 0);
    assert_int_equal(size, n);
    assert_memory_equal(bytes, expect, n);
    free(bytes);
}

/* Run `deja --store STORE run --model MODEL --requests FILE [extra]`. */
static void run_requests(cli_run *r, const char *store, const char *model, const char *file,
                         const char *extra1, const char *extra2)
{
    assert_int_equal(cli_exec(r, NULL, NULL, "--store", store, "run", "--model", model,
                              "--requests", file, extra1, extra2, NULL),
                     0);
}

/* Count the traces `ls` lists with the given filter arguments. */
static size_t ls_count(const char *store, const char *a1, const char *a2, const char *a3,
                       const char *a4)
{
    cli_run r;
    size_t n;

    assert_int_equal(
        cli_exec(&r, NULL, NULL, "--store", store, "ls", "--json", a1, a2, a3, a4, NULL), 0);
    if (r.status != 0)
        fail_msg("ls failed (%d): %s", r.status, r.err);
    n = cli_count_lines(r.out);
    cli_run_free(&r);
    return n;
}

static const char requests_main[] =
    "{\"inputs\": {\"prompt\": \"Once upon a time\"}, \"params\": {\"temperature\": 0.5, "
    "\"max_tokens\": 20, \"greedy\": true, \"style\": \"plain\"}, \"tags\": {\"user\": \"u1\"}, "
    "\"seed\": 42}\n"
    "{\"inputs\": {\"prompt\": \"h\\u00e9llo \\\"quoted\\\"\\n\", \"x\": [[1.5, 2], [3, -4.25]], "
    "\"ids\": {\"dtype\": \"i32\", \"shape\": [2, 3], \"base64\": "
    "\"AQAAAAIAAAADAAAABAAAAAUAAAD6////\"}}, \"params\": {\"max_tokens\": 10}, "
    "\"tags\": {\"user\": \"u2\", \"team\": \"a\"}, \"seed\": 7}\n"
    "\n"
    "{\"inputs\": {\"prompt\": \"The king\"}, \"seed\": 3}\n";

/* Record text, an f32 nested array, a base64 i32 tensor, params and tags,
 * and read them back byte for byte through ls --json and show --json. */
static void test_cli__run_and_read_back(void **state)
{
    const char *store = tmp_path("main.store");
    const char *req = tmp_path("main.jsonl");
    char ids[3][DEJA_ID_STRLEN + 1];
    cli_run r;
    json_t *j, *t, *inputs;
    float expect_x[4] = {1.5f, 2.0f, 3.0f, -4.25f};

    (void)state;
    assert_int_equal(cli_write_file(req, requests_main), 0);
    run_requests(&r, store, "textgen-v1", req, "--tag", "env=test");
    if (r.status != 0)
        fail_msg("run failed (%d): %s", r.status, r.err);
    assert_int_equal(cli_count_lines(r.out), 3);
    assert_non_null(strstr(r.err, "recorded 3 traces (0 errors)"));
    for (size_t i = 0; i < 3; i++) {
        char *line = cli_line(r.out, i);
        assert_non_null(line);
        assert_true(strlen(line) > DEJA_ID_STRLEN && line[DEJA_ID_STRLEN] == ' ');
        memcpy(ids[i], line, DEJA_ID_STRLEN);
        ids[i][DEJA_ID_STRLEN] = '\0';
        assert_non_null(strstr(line, "ok"));
        free(line);
    }
    cli_run_free(&r);

    /* ls --json: newest first, tags merged with --tag. */
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "ls", "--json", NULL), 0);
    assert_int_equal(r.status, 0);
    assert_int_equal(cli_count_lines(r.out), 3);
    for (size_t i = 0; i < 3; i++) {
        j = json_line(&r, i);
        assert_string_equal(json_string_value(json_object_get(j, "id")), ids[2 - i]);
        assert_string_equal(json_string_value(json_object_get(json_object_get(j, "model"), "name")),
                            "textgen");
        assert_string_equal(json_string_value(json_object_get(j, "status")), "ok");
        assert_string_equal(json_string_value(json_object_get(json_object_get(j, "tags"), "env")),
                            "test");
        json_decref(j);
    }
    j = json_line(&r, 2);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "tags"), "user")),
                        "u1");
    json_decref(j);
    cli_run_free(&r);

    /* show --json of the second request: every tensor byte for byte. */
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "show", ids[1], "--json", NULL), 0);
    if (r.status != 0)
        fail_msg("show failed (%d): %s", r.status, r.err);
    assert_int_equal(cli_count_lines(r.out), 1);
    j = json_line(&r, 0);
    assert_string_equal(json_string_value(json_object_get(j, "id")), ids[1]);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "model"), "version")),
                        "1");
    inputs = json_object_get(j, "inputs");
    assert_int_equal(json_array_size(inputs), 3);
    t = find_tensor(inputs, "prompt");
    assert_string_equal(json_string_value(json_object_get(t, "dtype")), "utf8");
    assert_string_equal(json_string_value(json_object_get(t, "text")), "h\xc3\xa9llo \"quoted\"\n");
    assert_int_equal(json_integer_value(json_object_get(t, "size")), 16);
    t = find_tensor(inputs, "x");
    assert_string_equal(json_string_value(json_object_get(t, "dtype")), "f32");
    assert_int_equal(json_array_size(json_object_get(t, "shape")), 2);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(t, "shape"), 0)), 2);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(t, "shape"), 1)), 2);
    assert_base64_bytes(t, expect_x, sizeof expect_x);
    t = find_tensor(inputs, "ids");
    assert_string_equal(json_string_value(json_object_get(t, "dtype")), "i32");
    assert_int_equal(json_integer_value(json_array_get(json_object_get(t, "shape"), 1)), 3);
    assert_string_equal(json_string_value(json_object_get(t, "base64")),
                        "AQAAAAIAAAADAAAABAAAAAUAAAD6////");
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(j, "params"), "max_tokens")), 10);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "tags"), "team")),
                        "a");
    t = find_tensor(json_object_get(j, "outputs"), "completion");
    assert_string_equal(json_string_value(json_object_get(t, "dtype")), "utf8");
    assert_true(json_string_length(json_object_get(t, "text")) > 0);
    assert_true(json_is_object(json_object_get(j, "environment")));
    assert_true(json_array_size(json_object_get(j, "seeds")) +
                    json_array_size(json_object_get(j, "rng")) >
                0);
    json_decref(j);
    cli_run_free(&r);

    /* show of the first: params of every kind. */
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "show", ids[0], "--json", NULL), 0);
    assert_int_equal(r.status, 0);
    j = json_line(&r, 0);
    t = json_object_get(j, "params");
    assert_true(json_number_value(json_object_get(t, "temperature")) == 0.5);
    assert_true(json_is_true(json_object_get(t, "greedy")));
    assert_string_equal(json_string_value(json_object_get(t, "style")), "plain");
    json_decref(j);
    cli_run_free(&r);

    /* A unique prefix, the human form and the Markdown form. */
    {
        size_t unique = 0; /* the shortest prefix that no other trace shares */
        for (size_t k = 0; k < 2; k++) {
            size_t common = 0;
            while (common < DEJA_ID_STRLEN && ids[k][common] == ids[2][common])
                common++;
            if (common + 1 > unique)
                unique = common + 1;
        }
        assert_true(unique <= DEJA_ID_STRLEN);
        ids[2][unique] = '\0';
    }
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "show", ids[2], NULL), 0);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "textgen"));
    assert_non_null(strstr(r.out, "\"The king\""));
    cli_run_free(&r);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "show", "--md", ids[1], NULL), 0);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "replay "));
    assert_non_null(strstr(r.out, " --model textgen-v1"));
    assert_null(strstr(r.out, "--store /")); /* no path of the recording machine */
    cli_run_free(&r);
}

/* Payloads beyond the inline size (stored as blobs) come back byte for
 * byte too; ls previews them by dtype, shape and size. */
static void test_cli__large_payloads(void **state)
{
    const char *store = tmp_path("large.store");
    const char *req = tmp_path("large.jsonl");
    static char prompt[2001];
    static char text[40000];
    float expect[20][20];
    size_t len = 0;
    char id[DEJA_ID_STRLEN + 1];
    cli_run r;
    json_t *j, *t;

    (void)state;
    for (size_t i = 0; i < 2000; i++)
        prompt[i] = (char)('a' + (i * 7) % 26);
    len += (size_t)snprintf(text + len, sizeof text - len,
                            "{\"inputs\": {\"prompt\": \"%s\", \"v\": [", prompt);
    for (int a = 0; a < 20; a++) {
        len += (size_t)snprintf(text + len, sizeof text - len, "%s[", a ? "," : "");
        for (int b = 0; b < 20; b++) {
            expect[a][b] = (float)(a * 20 + b) / 8.0f;
            len += (size_t)snprintf(text + len, sizeof text - len, "%s%g", b ? "," : "",
                                    (double)expect[a][b]);
        }
        len += (size_t)snprintf(text + len, sizeof text - len, "]");
    }
    snprintf(text + len, sizeof text - len, "]}, \"seed\": 9}\n");
    assert_int_equal(cli_write_file(req, text), 0);
    run_requests(&r, store, "textgen-v1", req, NULL, NULL);
    if (r.status != 0)
        fail_msg("run failed (%d): %s", r.status, r.err);
    memcpy(id, r.out, DEJA_ID_STRLEN);
    id[DEJA_ID_STRLEN] = '\0';
    cli_run_free(&r);

    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "show", id, "--json", NULL), 0);
    assert_int_equal(r.status, 0);
    j = json_line(&r, 0);
    t = find_tensor(json_object_get(j, "inputs"), "prompt");
    assert_string_equal(json_string_value(json_object_get(t, "text")), prompt);
    t = find_tensor(json_object_get(j, "inputs"), "v");
    assert_int_equal(json_integer_value(json_object_get(t, "size")), sizeof expect);
    assert_base64_bytes(t, expect, sizeof expect);
    json_decref(j);
    cli_run_free(&r);

    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "ls", NULL), 0);
    assert_int_equal(r.status, 0);
    assert_int_equal(cli_count_lines(r.out), 1);
    assert_non_null(strstr(r.out, id));
    cli_run_free(&r);
}

/* Malformed lines are named with their line number and skipped; the
 * others are still recorded; the exit is 2. */
static void test_cli__bad_lines(void **state)
{
    const char *store = tmp_path("bad.store");
    const char *req = tmp_path("requests.jsonl");
    cli_run r;

    (void)state;
    assert_int_equal(cli_write_file(req,
                                    "{\"inputs\": {\"prompt\": \"Once\"}}\n"
                                    "{\"inputs\": {\"prompt\": \"Once\"\n"
                                    "{\"inputs\": {\"prompt\": 5}}\n"
                                    "{\"inputs\": {\"prompt\": \"a\", \"x\": [[1, 2], [3]]}}\n"
                                    "{\"inputs\": {\"prompt\": \"a\", \"x\": {\"dtype\": \"i32\", "
                                    "\"shape\": [1], \"base64\": \"!!!!\"}}}\n"
                                    "{\"inputs\": {\"prompt\": \"a\", \"x\": {\"dtype\": \"q7\", "
                                    "\"base64\": \"AAAA\"}}}\n"
                                    "{\"inputs\": {\"prompt\": \"a\", \"x\": {\"dtype\": \"i32\", "
                                    "\"shape\": [2], \"base64\": \"AQAAAA==\"}}}\n"
                                    "{\"inputs\": {\"prompt\": \"Upon\"}}\n"),
                     0);
    run_requests(&r, store, "textgen-v1", req, NULL, NULL);
    assert_int_equal(r.status, 2);
    assert_int_equal(cli_count_lines(r.out), 2);
    assert_non_null(strstr(r.err, "requests.jsonl:2: bad JSON"));
    assert_non_null(strstr(r.err, "requests.jsonl:3: inputs.prompt: expected a string, number "
                                  "array or {dtype,shape,base64} object"));
    assert_non_null(strstr(r.err, "requests.jsonl:4: inputs.x: "));
    assert_non_null(strstr(r.err, "requests.jsonl:5: inputs.x: "));
    assert_non_null(strstr(r.err, "requests.jsonl:6: inputs.x: unknown dtype 'q7'"));
    assert_non_null(strstr(r.err, "requests.jsonl:7: inputs.x: "));
    assert_null(strstr(r.err, "requests.jsonl:1:"));
    assert_null(strstr(r.err, "requests.jsonl:8:"));
    cli_run_free(&r);
    assert_int_equal(ls_count(store, NULL, NULL, NULL, NULL), 2);
}

/* A model error is recorded as an error trace, and the run still exits 0. */
static void test_cli__model_error(void **state)
{
    const char *store = tmp_path("err.store");
    const char *req = tmp_path("err.jsonl");
    cli_run r;

    (void)state;
    assert_int_equal(cli_write_file(req, "{\"inputs\": {\"text\": \"no prompt here\"}}\n"
                                         "{\"inputs\": {\"prompt\": \"Once\"}}\n"),
                     0);
    run_requests(&r, store, "textgen-v1", req, NULL, NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "error"));
    assert_non_null(strstr(r.out, "prompt"));
    assert_non_null(strstr(r.err, "recorded 2 traces (1 error)"));
    cli_run_free(&r);
    assert_int_equal(ls_count(store, "--status", "error", NULL, NULL), 1);
    assert_int_equal(ls_count(store, "--status", "ok", NULL, NULL), 1);
}

/* Unknown ids and ambiguous prefixes are trouble with a message. */
static void test_cli__unknown_and_ambiguous_id(void **state)
{
    const char *store = tmp_path("main.store");
    cli_run r;

    (void)state;
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "show", "7ZZZZZ", NULL), 0);
    assert_int_equal(r.status, 2);
    cli_assert_one_error(&r, "no trace with id prefix '7ZZZZZ'");
    assert_string_equal(r.out, "");
    cli_run_free(&r);
    /* Not base32 at all (or past the largest id): named, exit 2. */
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "show", "ZZ!", NULL), 0);
    assert_int_equal(r.status, 2);
    cli_assert_one_error(&r, "'ZZ!'");
    cli_run_free(&r);
    /* Every trace recorded now shares the first character (the time). */
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "ls", "--limit", "1", NULL), 0);
    assert_int_equal(r.status, 0);
    char prefix[2] = {r.out[0], '\0'};
    cli_run_free(&r);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "show", prefix, NULL), 0);
    assert_int_equal(r.status, 2);
    cli_assert_one_error(&r, "");
    cli_run_free(&r);
}

/* Read commands on a missing store: exit 2, a message, no store created. */
static void test_cli__missing_store(void **state)
{
    const char *store = tmp_path("nope.store");
    const char *empty = tmp_path("empty");
    static const char *const cmds[][3] = {
        {"ls", NULL, NULL},     {"show", "01ABC", NULL}, {"stats", NULL, NULL},
        {"verify", NULL, NULL}, {"ls", "--json", NULL},
    };
    char expect[600];
    cli_run r;

    (void)state;
    snprintf(expect, sizeof expect, "store '%s' does not exist (set --store or DEJA_STORE)", store);
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, cmds[i][0], cmds[i][1], NULL),
                         0);
        assert_int_equal(r.status, 2);
        cli_assert_one_error(&r, expect);
        assert_false(cli_exists(store));
        cli_run_free(&r);
    }
    /* The default store is ./deja.store, in the working directory. */
    assert_int_equal(mkdir(empty, 0755), 0);
    assert_int_equal(cli_exec(&r, empty, NULL, "ls", NULL), 0);
    assert_int_equal(r.status, 2);
    cli_assert_one_error(&r, "store './deja.store' does not exist (set --store or DEJA_STORE)");
    cli_run_free(&r);
    assert_false(cli_exists(tmp_path("empty/deja.store")));
}

/* A missing plugin or a shared object that is not a deja plugin: exit 2
 * with the library's message, and no store created. */
static void test_cli__bad_plugin(void **state)
{
    const char *store = tmp_path("plugin.store");
    const char *req = tmp_path("plugin.jsonl");
    cli_run r;

    (void)state;
    assert_int_equal(cli_write_file(req, "{\"inputs\": {\"prompt\": \"Once\"}}\n"), 0);
    run_requests(&r, store, "nosuchmodel-v9", req, NULL, NULL);
    assert_int_equal(r.status, 2);
    cli_assert_one_error(&r, "nosuchmodel-v9");
    assert_string_equal(r.out, "");
    assert_false(cli_exists(store));
    cli_run_free(&r);
    run_requests(&r, store, DEJA_LIB_DIR "/test-noentry.so", req, NULL, NULL);
    assert_int_equal(r.status, 2);
    cli_assert_one_error(&r, "test-noentry");
    assert_false(cli_exists(store));
    cli_run_free(&r);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "run", "--requests", req, NULL), 0);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "--model"));
    cli_run_free(&r);
}

/* ls filters: model, version, tags (all must match), status, limit, since
 * and until. */
static void test_cli__filters(void **state)
{
    const char *store = tmp_path("filter.store");
    const char *req1 = tmp_path("filter1.jsonl");
    const char *req2 = tmp_path("filter2.jsonl");
    cli_run r;

    (void)state;
    assert_int_equal(
        cli_write_file(req1, "{\"inputs\": {\"prompt\": \"a\"}, \"tags\": {\"user\": \"u1\"}}\n"
                             "{\"inputs\": {\"prompt\": \"b\"}, \"tags\": {\"user\": \"u2\"}}\n"
                             "{\"inputs\": {\"prompt\": \"c\"}, \"tags\": {\"user\": \"u1\", "
                             "\"team\": \"x\"}}\n"),
        0);
    assert_int_equal(cli_write_file(req2, "{\"inputs\": {\"prompt\": \"d\"}}\n"
                                          "{\"inputs\": {\"nope\": \"e\"}}\n"),
                     0);
    run_requests(&r, store, "textgen-v1", req1, NULL, NULL);
    assert_int_equal(r.status, 0);
    cli_run_free(&r);
    run_requests(&r, store, "textgen-v2", req2, "--tag", "user=u1");
    assert_int_equal(r.status, 0);
    cli_run_free(&r);

    assert_int_equal(ls_count(store, NULL, NULL, NULL, NULL), 5);
    assert_int_equal(ls_count(store, "--model", "textgen", NULL, NULL), 5);
    assert_int_equal(ls_count(store, "--model", "other", NULL, NULL), 0);
    assert_int_equal(ls_count(store, "--version", "2", NULL, NULL), 2);
    assert_int_equal(ls_count(store, "--model", "textgen", "--version", "1"), 3);
    assert_int_equal(ls_count(store, "--tag", "user=u1", NULL, NULL), 4);
    assert_int_equal(ls_count(store, "--tag", "user=u1", "--tag", "team=x"), 1);
    assert_int_equal(ls_count(store, "--tag", "user=u1", "--version", "2"), 2);
    assert_int_equal(ls_count(store, "--status", "error", NULL, NULL), 1);
    assert_int_equal(ls_count(store, "--status", "ok", "--tag", "user=u1"), 3);
    assert_int_equal(ls_count(store, "--limit", "2", NULL, NULL), 2);
    assert_int_equal(ls_count(store, "--since", "1h", NULL, NULL), 5);
    assert_int_equal(ls_count(store, "--since", "2000-01-01", NULL, NULL), 5);
    assert_int_equal(ls_count(store, "--until", "2000-01-01 12:00", NULL, NULL), 0);
    assert_int_equal(ls_count(store, "--since", "2200-01-01T00:00:00Z", NULL, NULL), 0);
    assert_int_equal(ls_count(store, "--since", "2999-01-01T00:00:00Z", NULL, NULL), 0);
    assert_int_equal(ls_count(store, "--until", "2999-01-01", NULL, NULL), 5);

    /* Newest first: the v2 error trace is listed first. */
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "ls", "--limit", "1", NULL), 0);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "textgen@2"));
    assert_non_null(strstr(r.out, "error"));
    cli_run_free(&r);

    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "ls", "--since", "last week", NULL),
                     0);
    assert_int_equal(r.status, 2);
    cli_assert_one_error(&r, "--since");
    cli_run_free(&r);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "ls", "--status", "fine", NULL), 0);
    assert_int_equal(r.status, 2);
    cli_assert_one_error(&r, "--status");
    cli_run_free(&r);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "ls", "--tag", "novalue", NULL), 0);
    assert_int_equal(r.status, 2);
    cli_assert_one_error(&r, "--tag");
    cli_run_free(&r);
}

/* cli_select (shared by replay, export and bisect): ids or prefixes in the
 * order given, kept only if they match the filters; with no ids, every
 * trace matching the filters, newest first. Uses the filter store. */
static void test_cli__select(void **state)
{
    deja_store *store = NULL;
    deja_id *ids = NULL;
    deja_id *all = NULL;
    size_t n = 0, nall = 0, bad = 0;
    char text[3][DEJA_ID_STRLEN + 1];
    char *args[3];
    cli_filter f;

    (void)state;
    assert_int_equal(deja_store_open(&store, tmp_path("filter.store"), DEJA_STORE_READONLY), 0);
    cli_filter_init(&f);
    assert_int_equal(cli_select(store, NULL, 0, &f, &all, &nall, &bad), 0);
    assert_int_equal(nall, 5);
    assert_int_equal(bad, 0);
    for (size_t i = 1; i < nall; i++)
        assert_true(memcmp(&all[i - 1], &all[i], sizeof(deja_id)) > 0); /* newest first */

    /* Ids in the order given, duplicates removed. */
    deja_id_format(&all[3], text[0]);
    deja_id_format(&all[0], text[1]);
    deja_id_format(&all[3], text[2]);
    args[0] = text[0];
    args[1] = text[1];
    args[2] = text[2];
    assert_int_equal(cli_select(store, args, 3, &f, &ids, &n, NULL), 0);
    assert_int_equal(n, 2);
    assert_memory_equal(&ids[0], &all[3], sizeof(deja_id));
    assert_memory_equal(&ids[1], &all[0], sizeof(deja_id));
    free(ids);

    /* Ids and a filter: only the ids that match (all[0] is the v2 error). */
    assert_int_equal(cli_filter_option(&f, CLI_OPT_VERSION, "1", 0), 1);
    assert_int_equal(cli_select(store, args, 3, &f, &ids, &n, NULL), 0);
    assert_int_equal(n, 1);
    assert_memory_equal(&ids[0], &all[3], sizeof(deja_id));
    free(ids);

    /* A filter alone. */
    assert_int_equal(cli_filter_option(&f, CLI_OPT_TAG, "user=u1", 0), 1);
    assert_int_equal(cli_select(store, NULL, 0, &f, &ids, &n, NULL), 0);
    assert_int_equal(n, 2);
    free(ids);

    /* An unknown id is trouble. */
    args[0] = (char *)"7ZZZZZ";
    assert_int_equal(cli_select(store, args, 1, &f, &ids, &n, NULL), CLI_EXIT_TROUBLE);
    assert_null(ids);
    cli_filter_free(&f);
    free(all);
    deja_store_close(store);
}

/* stats counts what was recorded; verify passes on a sound store. */
static void test_cli__stats_and_verify(void **state)
{
    const char *store = tmp_path("stats.store");
    const char *req = tmp_path("stats.jsonl");
    char text[8192] = "";
    cli_run r;
    json_t *j;

    (void)state;
    for (int i = 0; i < 20; i++) {
        char line[256];
        snprintf(line, sizeof line,
                 "{\"inputs\": {\"prompt\": \"The same long opening, again and again: %d\"}, "
                 "\"seed\": %d}\n",
                 i % 4, i + 1);
        strcat(text, line);
    }
    assert_int_equal(cli_write_file(req, text), 0);
    run_requests(&r, store, "textgen-v1", req, NULL, NULL);
    assert_int_equal(r.status, 0);
    cli_run_free(&r);

    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "stats", "--json", NULL), 0);
    assert_int_equal(r.status, 0);
    assert_int_equal(cli_count_lines(r.out), 1);
    j = json_line(&r, 0);
    assert_int_equal(json_integer_value(json_object_get(j, "traces")), 20);
    assert_true(json_integer_value(json_object_get(j, "environments")) >= 1);
    assert_true(json_integer_value(json_object_get(j, "format")) >= 1);
    assert_true(json_integer_value(json_object_get(j, "raw_bytes")) > 0);
    assert_true(json_integer_value(json_object_get(j, "stored_bytes")) > 0);
    assert_true(json_integer_value(json_object_get(j, "file_bytes")) > 0);
    assert_int_equal(json_integer_value(json_object_get(j, "dropped")), 0);
    json_decref(j);
    cli_run_free(&r);

    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "stats", NULL), 0);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "traces"));
    assert_non_null(strstr(r.out, "20"));
    cli_run_free(&r);

    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "verify", NULL), 0);
    if (r.status != 0)
        fail_msg("verify failed (%d): %s%s", r.status, r.out, r.err);
    assert_non_null(strstr(r.out, "store OK: 20 traces"));
    assert_string_equal(r.err, "");
    cli_run_free(&r);
}

/* Overwrite the stored value of trace `id` (26-character text) in the store
 * at `path` with bytes that are a record header and nothing valid after it,
 * as a damaged disk would. */
static void corrupt_record(const char *path, const char *id)
{
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_dbi dbi;
    deja_id key;
    static const char junk[] = "D\001\000\000\000\000\100\000\000\000this is not zstd at all";
    MDB_val k = {sizeof key.bytes, key.bytes}, v = {sizeof junk, (void *)junk};

    assert_int_equal(deja_id_parse(&key, id), 0);
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 16), 0);
    assert_int_equal(mdb_env_open(env, path, 0, 0644), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "traces", 0, &dbi), 0);
    assert_int_equal(mdb_put(txn, dbi, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

/* A damaged record: `show` names it (exit 2), `ls` still lists the others
 * and names it on stderr (exit 2), `verify` reports it (exit 1). */
static void test_cli__corrupt_record(void **state)
{
    const char *store = tmp_path("corrupt.store");
    const char *req = tmp_path("corrupt.jsonl");
    char id[3][DEJA_ID_STRLEN + 1];
    cli_run r;

    (void)state;
    assert_int_equal(cli_write_file(req, "{\"inputs\": {\"prompt\": \"The fox\"}}\n"
                                         "{\"inputs\": {\"prompt\": \"The crow\"}}\n"
                                         "{\"inputs\": {\"prompt\": \"The lion\"}}\n"),
                     0);
    run_requests(&r, store, "textgen-v1", req, NULL, NULL);
    assert_int_equal(r.status, 0);
    for (size_t i = 0; i < 3; i++) {
        char *line = cli_line(r.out, i);
        snprintf(id[i], sizeof id[i], "%.26s", line);
        free(line);
    }
    cli_run_free(&r);
    corrupt_record(store, id[1]);

    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "show", id[1], NULL), 0);
    assert_int_equal(r.status, 2);
    cli_assert_one_error(&r, id[1]);
    assert_null(strstr(strstr(r.err, id[1]) + DEJA_ID_STRLEN, id[1])); /* named once */
    assert_string_equal(r.out, "");
    cli_run_free(&r);

    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "ls", NULL), 0);
    assert_int_equal(r.status, 2);
    assert_int_equal(cli_count_lines(r.out), 2);
    assert_non_null(strstr(r.out, id[0]));
    assert_non_null(strstr(r.out, id[2]));
    assert_null(strstr(r.out, id[1]));
    assert_non_null(strstr(r.err, id[1]));
    cli_run_free(&r);

    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "show", id[2], NULL), 0);
    assert_int_equal(r.status, 0);
    cli_run_free(&r);

    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "verify", NULL), 0);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.out, id[1]));
    cli_run_free(&r);
}

/* Usage: help, version, unknown commands and options. */
static void test_cli__usage(void **state)
{
    cli_run r;

    (void)state;
    assert_int_equal(cli_exec(&r, NULL, NULL, "--help", NULL), 0);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "  run "));
    assert_non_null(strstr(r.out, "  ls "));
    assert_non_null(strstr(r.out, "  verify "));
    cli_run_free(&r);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--version", NULL), 0);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.out, "deja " DEJA_VERSION_STRING "\n");
    cli_run_free(&r);
    static const char *const cmds[] = {"run",  "ls",     "show",   "stats", "verify", "replay",
                                       "diff", "bisect", "export", "import", "gc"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        char expect[64];
        snprintf(expect, sizeof expect, "usage: deja %s", cmds[i]);
        assert_int_equal(cli_exec(&r, NULL, NULL, cmds[i], "--help", NULL), 0);
        assert_int_equal(r.status, 0);
        assert_non_null(strstr(r.out, expect));
        cli_run_free(&r);
    }
    assert_int_equal(cli_exec(&r, NULL, NULL, NULL), 0);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "usage: deja"));
    cli_run_free(&r);
    assert_int_equal(cli_exec(&r, NULL, NULL, "frob", NULL), 0);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "deja: unknown command 'frob'"));
    cli_run_free(&r);
    assert_int_equal(cli_exec(&r, NULL, NULL, "ls", "--frob", NULL), 0);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "deja: ls: unknown option '--frob'"));
    assert_non_null(strstr(r.err, "usage: deja ls"));
    cli_run_free(&r);
    assert_int_equal(cli_exec(&r, NULL, NULL, "ls", "--limit", NULL), 0);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "needs a value"));
    cli_run_free(&r);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--bogus", "ls", NULL), 0);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "deja: unknown option '--bogus'"));
    cli_run_free(&r);
}

/* --since/--until times: RFC 3339, local, dates, and durations ago. */
static void test_cli__parse_time(void **state)
{
    const int64_t s = 1795788180; /* 2026-11-27T14:03:00Z */
    const int64_t now = (int64_t)2000000000 * 1000000000;
    int64_t t;

    (void)state;
    assert_int_equal(cli_parse_time("2026-11-27T14:03:00Z", now, &t), 0);
    assert_true(t == s * 1000000000);
    assert_int_equal(cli_parse_time("2026-11-27t14:03:00.250+02:00", now, &t), 0);
    assert_true(t == (s - 7200) * 1000000000 + 250000000);
    assert_int_equal(cli_parse_time("2026-11-27 14:03", now, &t), 0); /* TZ=UTC */
    assert_true(t == s * 1000000000);
    assert_int_equal(cli_parse_time("2026-11-27", now, &t), 0);
    assert_true(t == (s - 14 * 3600 - 3 * 60) * 1000000000);
    assert_int_equal(cli_parse_time("10m", now, &t), 0);
    assert_true(t == now - (int64_t)600 * 1000000000);
    assert_int_equal(cli_parse_time("3d", now, &t), 0);
    assert_true(t == now - (int64_t)3 * 86400 * 1000000000);
    assert_int_equal(cli_parse_time("2026-02-30", now, &t), -1);
    assert_int_equal(cli_parse_time("2026-11-27T25:00Z", now, &t), -1);
    /* Named days are local midnights (TZ=UTC here), compound durations
     * add up, @N is Unix seconds. */
    assert_int_equal(cli_parse_time("today", now, &t), 0);
    assert_true(t == (now / 1000000000 / 86400) * 86400 * 1000000000);
    assert_int_equal(cli_parse_time("yesterday", now, &t), 0);
    assert_true(t == ((now / 1000000000 / 86400) - 1) * 86400 * 1000000000);
    assert_int_equal(cli_parse_time("1h30m", now, &t), 0);
    assert_true(t == now - (int64_t)5400 * 1000000000);
    assert_int_equal(cli_parse_time("1w2d3h4m5s", now, &t), 0);
    assert_true(t == now - (int64_t)(9 * 86400 + 3 * 3600 + 4 * 60 + 5) * 1000000000);
    assert_int_equal(cli_parse_time("@1764590000", now, &t), 0);
    assert_true(t == (int64_t)1764590000 * 1000000000);
    assert_int_equal(cli_parse_time("@1764590000.25", now, &t), 0);
    assert_true(t == (int64_t)1764590000 * 1000000000 + 250000000);
    assert_int_equal(cli_parse_time("now", now, &t), 0);
    assert_true(t == now);
    assert_int_equal(cli_parse_time("1h30", now, &t), -1);
    assert_int_equal(cli_parse_time("1h30x", now, &t), -1);
    assert_int_equal(cli_parse_time("@", now, &t), -1);
    assert_int_equal(cli_parse_time("@12x", now, &t), -1);
    assert_int_equal(cli_parse_time("99999999999999999999d", now, &t), -1);
    assert_int_equal(cli_parse_time("tomorrow", now, &t), -1);
    assert_int_equal(cli_parse_time("10x", now, &t), -1);
    assert_int_equal(cli_parse_time("2026-11-27T14:03:00Zjunk", now, &t), -1);
    assert_int_equal(cli_parse_time("", now, &t), -1);
}

/* Base64 round trips and rejects malformed text. */
static void test_cli__base64(void **state)
{
    uint8_t data[256];
    uint8_t *back;
    size_t size;

    (void)state;
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 7 + 3);
    for (size_t n = 0; n * 29 <= sizeof data; n++) {
        char *b64 = cli_base64_encode(data, n * 29);
        assert_non_null(b64);
        assert_int_equal(cli_base64_decode(b64, strlen(b64), &back, &size), 0);
        assert_int_equal(size, n * 29);
        assert_memory_equal(back, data, size);
        free(back);
        free(b64);
    }
    assert_int_equal(cli_base64_decode("AQAAAA==", 8, &back, &size), 0);
    assert_int_equal(size, 4);
    free(back);
    assert_int_equal(cli_base64_decode("!!!!", 4, &back, &size), -1);
    assert_int_equal(cli_base64_decode("AQAAA===", 8, &back, &size), -1);
    assert_int_equal(cli_base64_decode("A", 1, &back, &size), -1);
    assert_true(cli_utf8_valid("h\xc3\xa9", 3));
    assert_false(cli_utf8_valid("\xc3", 1));
    assert_false(cli_utf8_valid("\xed\xa0\x80", 3)); /* a surrogate */
}

/* fill callback: store the traces of a NULL-terminated array. */
static int gc_put_traces(deja__wtxn *w, void *payload)
{
    deja_trace **t = payload;
    int rc = 0;

    for (size_t i = 0; rc == 0 && t[i] != NULL; i++)
        rc = deja__wtxn_put_trace(w, t[i], NULL);
    return rc;
}

/* `deja gc`: two traces of 2020 (written through the library) and fresh
 * ones from `deja run`; gc --older-than 30d deletes the old ones only, a
 * dry run first changes nothing, verify stays clean, a second gc is a
 * no-op. A missing store or a missing --older-than: exit 2. */
static void test_cli__gc(void **state)
{
    const char *store = tmp_path("gc.store");
    const char *req = tmp_path("gc.jsonl");
    const char *nope = tmp_path("gc-nope.store");
    static const uint64_t shape[1] = {5};
    deja_trace old[2], *list[3] = {&old[0], &old[1], NULL};
    deja_tensor in = {"prompt", DEJA_UTF8, 1, shape, "hello", 5};
    deja_tag tag = {"era", "ancient"};
    deja_store *s = NULL;
    size_t fresh;
    cli_run r;
    json_t *j;

    (void)state;
    memset(old, 0, sizeof old);
    for (int i = 0; i < 2; i++) {
        deja__id_new_at(&old[i].id, (int64_t)1600000000000 + i);
        old[i].start_ns = ((int64_t)1600000000000 + i) * 1000000;
        old[i].model_name = "ancient";
        old[i].model_version = "0.1";
        old[i].inputs = &in;
        old[i].ninputs = 1;
        old[i].error = "";
        old[i].tags = &tag;
        old[i].ntags = 1;
    }
    assert_int_equal(deja_store_open(&s, store, DEJA_STORE_WRITE), 0);
    assert_int_equal(deja__store_write(s, gc_put_traces, list), 0);
    deja_store_close(s);
    assert_int_equal(cli_write_file(req, "{\"inputs\": {\"prompt\": \"Once upon a time\"}, "
                                         "\"seed\": 1}\n{\"inputs\": {\"prompt\": \"The king\"}, "
                                         "\"seed\": 2}\n"),
                     0);
    run_requests(&r, store, "textgen-v1", req, NULL, NULL);
    assert_int_equal(r.status, 0);
    cli_run_free(&r);
    fresh = ls_count(store, "--model", "textgen", NULL, NULL);
    assert_int_equal(fresh, 2);
    assert_int_equal(ls_count(store, NULL, NULL, NULL, NULL), 4);

    assert_int_equal(
        cli_exec(&r, NULL, NULL, "--store", store, "gc", "--older-than", "30d", "--dry-run", NULL),
        0);
    if (r.status != 0)
        fail_msg("gc --dry-run failed (%d): %s", r.status, r.err);
    assert_non_null(strstr(r.out, "would delete 2 traces, 0 blobs, 0 chunks"));
    cli_run_free(&r);
    assert_int_equal(ls_count(store, NULL, NULL, NULL, NULL), 4);

    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "gc", "--older-than", "30d", NULL),
                     0);
    if (r.status != 0)
        fail_msg("gc failed (%d): %s", r.status, r.err);
    assert_non_null(strstr(r.out, "deleted 2 traces, 0 blobs, 0 chunks"));
    assert_non_null(strstr(r.out, "freed)"));
    assert_string_equal(r.err, "");
    cli_run_free(&r);
    assert_int_equal(ls_count(store, NULL, NULL, NULL, NULL), fresh);
    assert_int_equal(ls_count(store, "--model", "ancient", NULL, NULL), 0);
    assert_int_equal(ls_count(store, "--tag", "era=ancient", NULL, NULL), 0);
    assert_int_equal(ls_count(store, "--model", "textgen", NULL, NULL), fresh);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "verify", NULL), 0);
    if (r.status != 0)
        fail_msg("verify after gc failed (%d): %s%s", r.status, r.out, r.err);
    cli_run_free(&r);

    /* Again: nothing left to delete. */
    assert_int_equal(
        cli_exec(&r, NULL, NULL, "--store", store, "gc", "--older-than", "30d", "--json", NULL), 0);
    assert_int_equal(r.status, 0);
    j = json_line(&r, 0);
    assert_int_equal(json_integer_value(json_object_get(j, "traces")), 0);
    assert_int_equal(json_integer_value(json_object_get(j, "blobs")), 0);
    assert_int_equal(json_integer_value(json_object_get(j, "environments")), 0);
    json_decref(j);
    cli_run_free(&r);

    /* A missing store is not created. */
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", nope, "gc", "--older-than", "30d", NULL),
                     0);
    assert_int_equal(r.status, 2);
    cli_assert_one_error(&r, "does not exist");
    assert_false(cli_exists(nope));
    cli_run_free(&r);

    /* --older-than is required, and must be a time. */
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "gc", NULL), 0);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "deja: gc: --older-than or --max-size is required"));
    assert_non_null(strstr(r.err, "usage: deja gc"));
    cli_run_free(&r);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "gc", "--older-than", "soon", NULL),
                     0);
    assert_int_equal(r.status, 2);
    cli_assert_one_error(&r, "--older-than: cannot read time 'soon'");
    cli_run_free(&r);
    assert_int_equal(ls_count(store, NULL, NULL, NULL, NULL), fresh);
}

/* `diff` and `replay` describe every differing hunk of a text up to
 * --max-hunks, and announce the rest. */
static void test_cli__max_hunks(void **state)
{
    (void)state;
    const char *store = tmp_path("hunks.store");
    static const char *const outs[2] = {
        "w1 A w2 w3 w4 w5 w6 w7 w8 w9 w10 w11 B x1 x2 x3 C y1 y2 y3 D z1",
        "w1 a w2 w3 w4 w5 w6 w7 w8 w9 w10 w11 b x1 x2 x3 c y1 y2 y3 d z1"};
    char id[2][DEJA_ID_STRLEN + 1];
    deja_tracer *t = NULL;
    cli_run r;

    assert_int_equal(deja_tracer_open(&t, store, NULL), 0);
    for (int i = 0; i < 2; i++) {
        deja_span *s = NULL;
        assert_int_equal(deja_span_begin(&s, t, "m", "1"), 0);
        deja_id_format(deja_span_id(s), id[i]);
        assert_int_equal(deja_span_add_text(s, DEJA_OUTPUT, "text", outs[i], strlen(outs[i])), 0);
        assert_int_equal(deja_span_end(s, DEJA_STATUS_OK, NULL), 0);
    }
    deja_tracer_close(t);

    /* The default, 3: A, B and C described, D announced. */
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "diff", id[0], id[1], NULL), 0);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.out, "[-A-]{+a+}"));
    assert_non_null(strstr(r.out, "[-C-]{+c+}"));
    assert_null(strstr(r.out, "[-D-]{+d+}"));
    assert_non_null(strstr(r.out, "(more differences after 3 hunks)"));
    cli_run_free(&r);

    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "diff", id[0], id[1],
                              "--max-hunks", "1", "--json", NULL),
                     0);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.out, "(more differences after 1 hunk)"));
    assert_null(strstr(r.out, "[-B-]{+b+}"));
    cli_run_free(&r);

    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "diff", id[0], id[1],
                              "--max-hunks", "10", NULL),
                     0);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.out, "[-D-]{+d+} z1"));
    assert_null(strstr(r.out, "more differences"));
    cli_run_free(&r);

    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "diff", id[0], id[1],
                              "--max-hunks", "0", NULL),
                     0);
    assert_int_equal(r.status, 2);
    cli_assert_one_error(&r, "--max-hunks: expected a count from 1 to 10000, got '0'");
    cli_run_free(&r);

    /* replay takes it too (here it fails to load the model, after parsing). */
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "replay", "--model",
                              "textgen-v1", "--max-hunks", "x", NULL),
                     0);
    assert_int_equal(r.status, 2);
    cli_assert_one_error(&r, "--max-hunks: expected a count from 1 to 10000, got 'x'");
    cli_run_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli__parse_time),
        cmocka_unit_test(test_cli__base64),
        cmocka_unit_test(test_cli__usage),
        cmocka_unit_test(test_cli__run_and_read_back),
        cmocka_unit_test(test_cli__large_payloads),
        cmocka_unit_test(test_cli__bad_lines),
        cmocka_unit_test(test_cli__model_error),
        cmocka_unit_test(test_cli__unknown_and_ambiguous_id),
        cmocka_unit_test(test_cli__missing_store),
        cmocka_unit_test(test_cli__bad_plugin),
        cmocka_unit_test(test_cli__filters),
        cmocka_unit_test(test_cli__select),
        cmocka_unit_test(test_cli__stats_and_verify),
        cmocka_unit_test(test_cli__gc),
        cmocka_unit_test(test_cli__corrupt_record),
        cmocka_unit_test(test_cli__max_hunks),
    };

    return cmocka_run_group_tests_name("test_cli", tests, group_setup, group_teardown);
}
