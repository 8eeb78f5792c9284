/*
 * tests/test_cli_json.c -- every command's --json output against its
 * documentation, doc/json.md: the schema at its end is read from the file,
 * every command is run (the real binary, on a store recorded by `deja run`)
 * and every object it prints must match its documented shape, with no
 * undocumented key. Also the number rule: integers beyond 2^53 are decimal
 * strings, and times come with their RFC 3339 form.
 */
#include <ctype.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <jansson.h>

#include "cli_harness.h"

static char tmp_root[] = "/tmp/deja-test-cli-json-XXXXXX";
static char store[600];
static char bundle[600];
static json_t *defs; /* the schema's $defs */
static char id_a[27], id_b[27];

static const char requests[] =
    "{\"inputs\": {\"prompt\": \"The fox\"}, \"params\": {\"max_tokens\": 20, \"temperature\": "
    "0.8, \"greedy\": false, \"style\": \"fable\"}, \"tags\": {\"user\": \"u1\"}, \"seed\": 7}\n"
    "{\"inputs\": {\"prompt\": \"A lion lay\"}, \"params\": {\"temperature\": 0.5}}\n";

/* ---- a validator for the schema subset doc/json.md describes ---- */

static int validate(json_t *v, json_t *schema, const char *path, char *why, size_t cap);

static int type_is(json_t *v, const char *t)
{
    if (strcmp(t, "object") == 0)
        return json_is_object(v);
    if (strcmp(t, "array") == 0)
        return json_is_array(v);
    if (strcmp(t, "string") == 0)
        return json_is_string(v);
    if (strcmp(t, "integer") == 0)
        return json_is_integer(v);
    if (strcmp(t, "number") == 0)
        return json_is_number(v);
    if (strcmp(t, "boolean") == 0)
        return json_is_boolean(v);
    if (strcmp(t, "null") == 0)
        return json_is_null(v);
    return 0;
}

/* "2026-12-01T15:03:32.245649931Z": exactly that shape. */
static int is_rfc3339_ns(const char *s)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddddddddZ";
    if (strlen(s) != sizeof shape - 1)
        return 0;
    for (size_t i = 0; shape[i]; i++) {
        if (shape[i] == 'd' ? !isdigit((unsigned char)s[i]) : s[i] != shape[i])
            return 0;
    }
    return 1;
}

static int is_decimal(const char *s)
{
    if (*s == '-')
        s++;
    if (*s == '\0')
        return 0;
    for (; *s; s++) {
        if (!isdigit((unsigned char)*s))
            return 0;
    }
    return 1;
}

static int failf(char *why, size_t cap, const char *path, const char *what)
{
    snprintf(why, cap, "%s: %s", path, what);
    return -1;
}

static int validate(json_t *v, json_t *schema, const char *path, char *why, size_t cap)
{
    json_t *ref = json_object_get(schema, "$ref");
    json_t *any = json_object_get(schema, "anyOf");
    json_t *type = json_object_get(schema, "type");
    json_t *en = json_object_get(schema, "enum");
    json_t *fmt = json_object_get(schema, "format");

    if (ref != NULL) {
        json_t *target = json_object_get(defs, json_string_value(ref));
        if (target == NULL)
            return failf(why, cap, path, "the schema refers to an unknown $def");
        return validate(v, target, path, why, cap);
    }
    if (any != NULL) {
        for (size_t i = 0; i < json_array_size(any); i++) {
            if (validate(v, json_array_get(any, i), path, why, cap) == 0)
                return 0;
        }
        return failf(why, cap, path, "matches none of its anyOf forms");
    }
    if (type != NULL) {
        int ok = 0;
        if (json_is_string(type)) {
            ok = type_is(v, json_string_value(type));
        } else {
            for (size_t i = 0; i < json_array_size(type) && !ok; i++)
                ok = type_is(v, json_string_value(json_array_get(type, i)));
        }
        if (!ok)
            return failf(why, cap, path, "has the wrong type");
    }
    if (json_is_integer(v) && (json_integer_value(v) > ((json_int_t)1 << 53) ||
                               json_integer_value(v) < -((json_int_t)1 << 53)))
        return failf(why, cap, path, "is an integer beyond 2^53 (must be a string)");
    if (en != NULL) {
        int ok = 0;
        for (size_t i = 0; i < json_array_size(en) && !ok; i++)
            ok = json_equal(v, json_array_get(en, i));
        if (!ok)
            return failf(why, cap, path, "is not one of its enum values");
    }
    if (fmt != NULL && json_is_string(v)) {
        const char *f = json_string_value(fmt);
        if (strcmp(f, "rfc3339") == 0 && !is_rfc3339_ns(json_string_value(v)))
            return failf(why, cap, path, "is not an RFC 3339 time with nanoseconds");
        if (strcmp(f, "decimal") == 0 && !is_decimal(json_string_value(v)))
            return failf(why, cap, path, "is not a decimal integer string");
    }
    if (json_is_object(v) && (json_object_get(schema, "properties") != NULL ||
                              json_object_get(schema, "additionalProperties") != NULL)) {
        json_t *props = json_object_get(schema, "properties");
        json_t *extra = json_object_get(schema, "additionalProperties");
        json_t *req = json_object_get(schema, "required");
        const char *key;
        json_t *item;
        char sub[512];
        for (size_t i = 0; i < json_array_size(req); i++) {
            const char *k = json_string_value(json_array_get(req, i));
            if (json_object_get(v, k) == NULL) {
                snprintf(sub, sizeof sub, "%s.%s", path, k);
                return failf(why, cap, sub, "is required and missing");
            }
        }
        json_object_foreach(v, key, item)
        {
            json_t *s = props != NULL ? json_object_get(props, key) : NULL;
            snprintf(sub, sizeof sub, "%s.%s", path, key);
            if (s == NULL && json_is_object(extra))
                s = extra;
            if (s == NULL)
                return failf(why, cap, sub, "is not documented in doc/json.md");
            if (validate(item, s, sub, why, cap) != 0)
                return -1;
        }
    }
    if (json_is_array(v) && json_object_get(schema, "items") != NULL) {
        char sub[512];
        for (size_t i = 0; i < json_array_size(v); i++) {
            snprintf(sub, sizeof sub, "%s[%zu]", path, i);
            if (validate(json_array_get(v, i), json_object_get(schema, "items"), sub, why, cap) != 0)
                return -1;
        }
    }
    return 0;
}

/* Check one printed line against the $def `name`. */
static void check_line(const char *line, const char *name, const char *what)
{
    json_error_t jerr;
    json_t *v = json_loads(line, 0, &jerr);
    json_t *s = json_object_get(defs, name);
    char why[600];

    if (v == NULL)
        fail_msg("%s: not JSON (%s): %s", what, jerr.text, line);
    if (s == NULL)
        fail_msg("doc/json.md has no $def '%s'", name);
    if (validate(v, s, name, why, sizeof why) != 0)
        fail_msg("%s: %s\nin: %s", what, why, line);
    json_decref(v);
}

/* Run deja with the store and `args`; expect exit `status`; check the
 * first line against `first` (NULL: as the others), every other line
 * against `each` (NULL: none expected but the last), the last against `last`
 * (NULL: as `each`). Returns the number of lines. */
static size_t check_lines(const char *const *args, int status, const char *first,
                          const char *each, const char *last)
{
    const char *argv[CLI_MAX_ARGS];
    size_t n = 0, lines;
    cli_run r;
    char what[256] = "deja";

    argv[n++] = "--store";
    argv[n++] = store;
    for (size_t i = 0; args[i] != NULL; i++) {
        argv[n++] = args[i];
        strncat(what, " ", sizeof what - strlen(what) - 1);
        strncat(what, args[i], sizeof what - strlen(what) - 1);
    }
    argv[n] = NULL;
    assert_int_equal(cli_execv(&r, NULL, NULL, argv), 0);
    if (r.status != status)
        fail_msg("%s: exit %d, stderr %s", what, r.status, r.err);
    lines = cli_count_lines(r.out);
    if (lines == 0)
        fail_msg("%s printed nothing", what);
    for (size_t i = 0; i < lines; i++) {
        char *line = cli_line(r.out, i);
        const char *def = i + 1 == lines && last != NULL ? last : each;
        if (i == 0 && first != NULL)
            def = first;
        if (def == NULL)
            fail_msg("%s: %zu lines, expected one", what, lines);
        check_line(line, def, what);
        free(line);
    }
    cli_run_free(&r);
    return lines;
}

static size_t check_command(const char *const *args, int status, const char *each,
                            const char *last)
{
    return check_lines(args, status, NULL, each, last);
}

static int group_setup(void **state)
{
    cli_run r;
    const char *req;
    char *doc, *begin, *end;
    json_error_t jerr;
    json_t *schema;
    int ok;

    (void)state;
    if (cli_group_begin(tmp_root) != 0)
        return -1;
    snprintf(store, sizeof store, "%s/s.store", tmp_root);
    snprintf(bundle, sizeof bundle, "%s/b.deja", tmp_root);
    doc = cli_slurp(DEJA_SOURCE_DIR "/doc/json.md", NULL);
    if (doc == NULL)
        return -1;
    begin = strstr(doc, "<!-- schema: begin -->\n```json\n");
    end = begin ? strstr(begin, "\n```\n<!-- schema: end -->") : NULL;
    if (begin == NULL || end == NULL) {
        free(doc);
        return -1;
    }
    begin += strlen("<!-- schema: begin -->\n```json\n");
    schema = json_loadb(begin, (size_t)(end - begin), 0, &jerr);
    free(doc);
    if (schema == NULL) {
        fprintf(stderr, "doc/json.md: the schema is not JSON: %s (line %d)\n", jerr.text,
                jerr.line);
        return -1;
    }
    defs = json_incref(json_object_get(schema, "$defs"));
    json_decref(schema);
    req = cli_tmp_path(tmp_root, "requests.jsonl");
    if (defs == NULL || cli_write_file(req, requests) != 0)
        return -1;
    if (cli_exec(&r, NULL, req, "--store", store, "run", "--model", "textgen-v1", NULL) != 0)
        return -1;
    ok = r.status == 0;
    cli_run_free(&r);
    if (!ok || cli_exec(&r, NULL, NULL, "--store", store, "ls", NULL) != 0)
        return -1;
    ok = r.status == 0 && cli_count_lines(r.out) == 2;
    if (ok) {
        memcpy(id_a, r.out, 26);
        memcpy(id_b, strchr(r.out, '\n') + 1, 26);
    }
    cli_run_free(&r);
    return ok ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    json_decref(defs);
    cli_rm_rf(tmp_root);
    return 0;
}

/* The validator itself: it must fail on what the documentation forbids. */
static void test_cli_json__validator_rejects(void **state)
{
    static const char *const bad[] = {
        "{\"problem\": \"x\", \"json_version\": 1, \"undocumented\": 1}",
        "{\"problem\": \"x\"}",
        "{\"problem\": 3, \"json_version\": 1}",
        "{\"problem\": \"x\", \"json_version\": 2}",
    };
    char why[600];
    (void)state;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *v = json_loads(bad[i], 0, NULL);
        assert_non_null(v);
        if (validate(v, json_object_get(defs, "problem"), "problem", why, sizeof why) == 0)
            fail_msg("accepted %s", bad[i]);
        json_decref(v);
    }
    json_t *big = json_pack("{s:I}", "traces", (json_int_t)1 << 60);
    json_t *s = json_pack("{s:{s:{s:s}}}", "properties", "traces", "$ref", "int");
    assert_int_equal(validate(big, s, "x", why, sizeof why), -1);
    json_decref(big);
    json_decref(s);
    assert_true(is_rfc3339_ns("2026-12-01T15:03:32.245649931Z"));
    assert_false(is_rfc3339_ns("2026-12-01T15:03:32.245Z"));
}

/* Every command's JSON, as documented. */
static void test_cli_json__every_command_as_documented(void **state)
{
    const char *req = cli_tmp_path(tmp_root, "requests.jsonl");
    (void)state;
    {
        const char *a[] = {"run", "--model", "textgen-v1", "--requests", req, "--json", NULL};
        assert_int_equal(check_command(a, 0, "run_line", NULL), 2);
    }
    {
        const char *a[] = {"ls", "--json", NULL};
        assert_true(check_command(a, 0, "trace", NULL) >= 2);
    }
    {
        const char *a[] = {"show", id_a, "--json", NULL};
        check_command(a, 0, NULL, "trace");
    }
    {
        const char *a[] = {"stats", "--json", NULL};
        check_command(a, 0, NULL, "stats");
    }
    {
        const char *a[] = {"stats", "--by", "model", "--every", "1h", "--json", NULL};
        check_command(a, 0, NULL, "health");
    }
    {
        const char *a[] = {"verify", "--json", NULL};
        check_command(a, 0, NULL, "verify_summary");
    }
    {
        const char *a[] = {"gc", "--older-than", "1d", "--dry-run", "--json", NULL};
        check_command(a, 0, NULL, "gc");
    }
    {
        const char *a[] = {"budget", "--json", NULL};
        check_command(a, 0, NULL, "budget");
    }
    {
        const char *a[] = {"compact", "--json", NULL};
        check_command(a, 0, NULL, "compact");
    }
    {
        const char *a[] = {"replay", "--model", "textgen-v4", "--json", NULL};
        assert_true(check_command(a, 1, "replay_result", "replay_summary") >= 3);
    }
    {
        const char *a[] = {"replay", id_a, "--model", "textgen-v1", "--repeat", "2", "--json",
                           NULL};
        check_command(a, 0, "replay_result", "replay_summary");
    }
    {
        const char *a[] = {"diff", id_a, id_b, "--json", NULL};
        check_command(a, 1, NULL, "diff");
    }
    {
        const char *a[] = {"bisect", "textgen-v1", "textgen-v2", "textgen-v4", "--json", NULL};
        check_command(a, 0, NULL, "bisect_summary");
    }
    {
        const char *a[] = {"export", "-o", bundle, "--with-model", "textgen-v1", "--json", NULL};
        check_command(a, 0, NULL, "export");
    }
    {
        const char *a[] = {"show", bundle, "--json", NULL};
        assert_true(check_lines(a, 0, "bundle", "trace", NULL) >= 1 + 2);
    }
    {
        const char *a[] = {"show", bundle, id_b, "--json", NULL};
        check_command(a, 0, NULL, "trace");
    }
    {
        const char *a[] = {"import", bundle, "--json", NULL};
        check_command(a, 0, NULL, "import");
    }
}

/* show --json --values: numbers as numbers, in row-major order, NaN and
 * infinities spelled out, against the schema too. */
static void test_cli_json__values(void **state)
{
    const char *req = cli_tmp_path(tmp_root, "values.jsonl");
    const char *vstore = cli_tmp_path(tmp_root, "values.store");
    char id[27];
    cli_run r;
    json_t *v, *inputs;

    (void)state;
    /* f32 [2,2] with 1.5, -2, 0.25, 1e30*1e30 (inf as f32); i16 1, -1, -32768;
     * u64 2^64-1; f16 bits 0x3c00 (1.0) and 0x7e00 (nan). */
    assert_int_equal(cli_write_file(req,
                                    "{\"inputs\": {\"prompt\": \"The\", \"x\": [[1.5, -2], "
                                    "[0.25, 1e39]], \"n\": {\"dtype\": \"i16\", \"shape\": [3], "
                                    "\"base64\": \"AQD//wCA\"}, \"u\": {\"dtype\": \"u64\", "
                                    "\"shape\": [1], \"base64\": \"//////////8=\"}, \"h\": "
                                    "{\"dtype\": \"f16\", \"shape\": [2], \"base64\": "
                                    "\"ADwAfg==\"}}}\n"),
                     0);
    assert_int_equal(cli_exec(&r, NULL, req, "--store", vstore, "run", "--model", "textgen-v1",
                              NULL),
                     0);
    assert_int_equal(r.status, 0);
    cli_run_free(&r);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", vstore, "ls", NULL), 0);
    memcpy(id, r.out, 26);
    id[26] = '\0';
    cli_run_free(&r);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", vstore, "show", id, "--json", "--values",
                              NULL),
                     0);
    assert_int_equal(r.status, 0);
    check_line(r.out, "trace", "show --json --values");
    v = json_loads(r.out, 0, NULL);
    assert_non_null(v);
    inputs = json_object_get(v, "inputs");
    for (size_t i = 0; i < json_array_size(inputs); i++) {
        json_t *t = json_array_get(inputs, i);
        const char *name = json_string_value(json_object_get(t, "name"));
        char *dump = json_dumps(json_object_get(t, "values"), JSON_COMPACT);
        if (strcmp(name, "prompt") == 0) {
            assert_null(dump);
            assert_string_equal(json_string_value(json_object_get(t, "text")), "The");
        } else if (strcmp(name, "x") == 0) {
            assert_string_equal(dump, "[1.5,-2.0,0.25,\"inf\"]");
        } else if (strcmp(name, "n") == 0) {
            assert_string_equal(dump, "[1,-1,-32768]");
        } else if (strcmp(name, "u") == 0) {
            assert_string_equal(dump, "[\"18446744073709551615\"]");
        } else if (strcmp(name, "h") == 0) {
            assert_string_equal(dump, "[1.0,\"nan\"]");
        }
        assert_null(json_object_get(t, "base64"));
        free(dump);
    }
    json_decref(v);
    cli_run_free(&r);
}

/* The times: start_ns is the exact decimal string, start its RFC 3339 form,
 * and jq (when installed) reads both exactly. */
static void test_cli_json__times_are_exact(void **state)
{
    cli_run r;
    json_t *v;
    const char *ns, *when;
    char cmd[1200], *jq;

    (void)state;
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "show", id_a, "--json", NULL), 0);
    assert_int_equal(r.status, 0);
    v = json_loads(r.out, 0, NULL);
    assert_non_null(v);
    ns = json_string_value(json_object_get(v, "start_ns"));
    when = json_string_value(json_object_get(v, "start"));
    assert_non_null(ns);
    assert_non_null(when);
    /* The RFC 3339 form says the same instant, to the nanosecond. */
    {
        struct tm tm = {0};
        long long secs;
        assert_non_null(strptime(when, "%Y-%m-%dT%H:%M:%S", &tm));
        secs = (long long)timegm(&tm);
        char want[64];
        snprintf(want, sizeof want, "%lld%s", secs, strchr(when, '.') + 1);
        want[strlen(want) - 1] = '\0'; /* the Z */
        assert_string_equal(ns, want);
    }
    if (system("command -v jq >/dev/null 2>&1") == 0) {
        const char *out = cli_tmp_path(tmp_root, "jq.out");
        snprintf(cmd, sizeof cmd, "'%s' --store '%s' show %s --json | jq -r .start_ns > '%s'",
                 DEJA_BIN, store, id_a, out);
        assert_int_equal(system(cmd), 0);
        jq = cli_slurp(out, NULL);
        assert_non_null(jq);
        jq[strcspn(jq, "\n")] = '\0';
        assert_string_equal(jq, ns);
        free(jq);
    }
    json_decref(v);
    cli_run_free(&r);
}

/* Pipelines: show's "pipeline" key, ls --tree, and a pipeline replay, in a
 * store of their own (the documented objects, checked like the others). */
static void test_cli_json__pipeline(void **state)
{
    char cmd[2048], root[27] = "", saved[sizeof store];
    FILE *fp;
    (void)state;
    memcpy(saved, store, sizeof store);
    snprintf(store, sizeof store, "%s/pipeline.store", tmp_root);
    snprintf(cmd, sizeof cmd, "%s/pipeline %s preprocess classifier-v1 postprocess 2",
             DEJA_BIN_DIR, store);
    fp = popen(cmd, "r");
    assert_non_null(fp);
    assert_non_null(fgets(root, sizeof root, fp));
    while (fgetc(fp) != EOF)
        ;
    assert_int_equal(pclose(fp), 0);
    {
        const char *a[] = {"show", root, "--json", NULL};
        check_command(a, 0, NULL, "trace");
    }
    {
        const char *a[] = {"ls", "--tree", "--json", NULL};
        assert_int_equal(check_command(a, 0, "tree_node", NULL), 2);
    }
    {
        const char *a[] = {"replay", root, "--model", "classifier=classifier-v5", "--chained",
                           "--json", NULL};
        assert_int_equal(check_command(a, 1, "pipeline_step", "pipeline_summary"), 5);
    }
    memcpy(store, saved, sizeof store);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli_json__validator_rejects),
        cmocka_unit_test(test_cli_json__every_command_as_documented),
        cmocka_unit_test(test_cli_json__times_are_exact),
        cmocka_unit_test(test_cli_json__values),
        cmocka_unit_test(test_cli_json__pipeline),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
