/*
 * tests/test_rules.c -- validation rules: the parser (and its messages),
 * every check on tensors made by hand, the tracer's record-time check,
 * `deja check` over a store, and `deja run|replay --rules`.
 */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>

#include "cli_harness.h"
#include "watch_harness.h"

static const char all_rules[] = "# every check once\n"
                                "finite: output.logits finite\n"
                                "range: input.features range -1 1   # a comment\n"
                                "probs: output.probs sum 1 0.01\n"
                                "label: output.label in cat,dog\n"
                                "top: output.logits in 0,1\n"
                                "size: output.text length 2..10\n"
                                "caps: output.text matches ^[A-Z]\n"
                                "json: output.json json\n"
                                "answer: output.text nonempty\n"
                                "\n"
                                "anything: output.* finite\n";

/* Parse `len` bytes of `text` expecting failure; the message must
 * contain `needle`. */
static void assert_parse_fails_n(const char *text, size_t len, const char *needle)
{
    deja_rules *r = NULL;

    assert_int_equal(deja_rules_parse(&r, text, len, "t.rules"), DEJA_EINVAL);
    assert_null(r);
    if (strstr(deja_error_last(), needle) == NULL) {
        fprintf(stderr, "message '%s' lacks '%s'\n", deja_error_last(), needle);
        fail();
    }
}

static void assert_parse_fails(const char *text, const char *needle)
{
    assert_parse_fails_n(text, strlen(text), needle);
}

static void test_rules__parse(void **state)
{
    deja_rules *r = NULL;

    (void)state;
    assert_int_equal(deja_rules_parse(&r, all_rules, strlen(all_rules), "t.rules"), 0);
    assert_int_equal(deja_rules_count(r), 10);
    assert_string_equal(deja_rules_name(r, 0), "finite");
    assert_string_equal(deja_rules_name(r, 9), "anything");
    assert_null(deja_rules_name(r, 10));
    deja_rules_free(r);
    deja_rules_free(NULL);

    assert_parse_fails("a: output.x fnite\n", "t.rules:1: rule 'a': unknown check 'fnite'");
    assert_parse_fails("# c\n\nb output.x finite\n", "t.rules:3: expected 'NAME: SIDE.TENSOR");
    assert_parse_fails("a: output.x finite\na: output.y finite\n", "t.rules:2: rule 'a' is "
                                                                   "defined twice");
    assert_parse_fails("a: middle.x finite\n", "side 'middle'");
    assert_parse_fails("a: output finite\n", "expected input.NAME or output.NAME");
    assert_parse_fails("a: output.x range 2 1\n", "LO <= HI");
    assert_parse_fails("a: output.x range 1 nan\n", "range LO HI");
    assert_parse_fails("a: output.x length 5..2\n", "MIN <= MAX");
    assert_parse_fails("a: output.x length 5\n", "length MIN..MAX");
    assert_parse_fails("a: output.x matches (\n", "bad regular expression");
    assert_parse_fails("a: output.x finite extra\n", "unexpected 'extra'");
    assert_parse_fails("a b: output.x finite\n", "only letters");
    assert_parse_fails("# nothing\n", "t.rules: no rules");
    assert_parse_fails_n("a: output.x finite\0\n", 20, "t.rules:1: a NUL byte");
}

typedef struct seen {
    char rules[16][64];
    char details[16][160];
    size_t n;
} seen;

static int record(const deja_violation *v, void *payload)
{
    seen *s = payload;

    if (s->n < 16) {
        snprintf(s->rules[s->n], sizeof s->rules[0], "%s@%s.%s", v->rule,
                 v->side == DEJA_INPUT ? "input" : "output", v->tensor);
        snprintf(s->details[s->n], sizeof s->details[0], "%s", v->detail);
        s->n++;
    }
    return 0;
}

/* Whether `s` holds a violation "rule@side.tensor" whose detail contains
 * `detail`. */
static int has(const seen *s, const char *what, const char *detail)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->rules[i], what) == 0 && strstr(s->details[i], detail) != NULL)
            return 1;
    return 0;
}

/* A trace with the given tensors (shapes owned by the caller). */
static deja_tensor text_tensor(const char *name, const char *text, uint64_t *shape)
{
    deja_tensor t = {name, DEJA_UTF8, 1, shape, text, strlen(text)};

    shape[0] = strlen(text);
    return t;
}

static void test_rules__checks(void **state)
{
    deja_rules *r = NULL;
    float features[4] = {0.5f, -0.5f, 1.5f, 0.0f};
    float logits[2][3] = {{0.1f, 0.7f, 0.2f}, {0.1f, 0.2f, NAN}};
    float probs[2][2] = {{0.5f, 0.5f}, {0.9f, 0.3f}};
    uint64_t fshape[1] = {4}, lshape[2] = {2, 3}, pshape[2] = {2, 2}, s1[1], s2[1], s3[1];
    deja_tensor in[1], out[5];
    deja_trace t;
    seen s;

    (void)state;
    assert_int_equal(deja_rules_parse(&r, all_rules, strlen(all_rules), "t.rules"), 0);
    memset(&t, 0, sizeof t);
    in[0] = (deja_tensor){"features", DEJA_F32, 1, fshape, features, sizeof features};
    out[0] = (deja_tensor){"logits", DEJA_F32, 2, lshape, logits, sizeof logits};
    out[1] = (deja_tensor){"probs", DEJA_F32, 2, pshape, probs, sizeof probs};
    out[2] = text_tensor("label", " bird \n", s1);
    out[3] = text_tensor("text", "hello world, too long", s2);
    out[4] = text_tensor("json", "{\"a\": [1, 2.5e3, \"x\\u00e9\"], \"b\": null}", s3);
    t.inputs = in;
    t.ninputs = 1;
    t.outputs = out;
    t.noutputs = 5;
    memset(&s, 0, sizeof s);
    /* finite, range, probs, label, size, caps, anything; not top (both rows'
     * arg-max is class 1: NaN ranks lowest), json nor answer. */
    assert_int_equal(deja_rules_apply(r, &t, record, &s), 7);
    assert_true(has(&s, "finite@output.logits", "element 5 is NaN"));
    assert_true(has(&s, "range@input.features", "element 2 is 1.5, outside [-1, 1]"));
    assert_true(has(&s, "probs@output.probs", "row 1 sums to 1.2"));
    assert_true(has(&s, "label@output.label", "'bird' is not one of the allowed words"));
    assert_false(has(&s, "top@output.logits", ""));
    assert_true(has(&s, "size@output.text", "length 21 is above 10"));
    assert_true(has(&s, "caps@output.text", "does not match"));
    /* `*` checks numeric outputs only: probs is finite, logits is not. */
    assert_true(has(&s, "anything@output.logits", "NaN"));
    assert_false(has(&s, "anything@output.text", ""));
    assert_false(has(&s, "json@output.json", ""));
    assert_false(has(&s, "answer@output.text", ""));
    deja_rules_free(r);
}

static void test_rules__checks_edge_cases(void **state)
{
    static const char text[] = "top: output.logits in 0,1\n"
                               "ints: output.ids in 3,4\n"
                               "json: output.json json\n"
                               "answer: output.missing nonempty\n"
                               "empty: output.text nonempty\n"
                               "short: output.text length 1..\n"
                               "wrong: output.logits length ..3\n"
                               "inputs: input.x range 0 1\n";
    static const char *const bad_json[] = {"", "{", "[1,]", "{\"a\" 1}", "01", "1.", "\"\\q\"",
                                           "nul", "[1] 2", "{\"a\":1,}"};
    static const char *const good_json[] = {"0", " -1.5e-3 ", "true", "[]", "{}", "\"\\n\"",
                                            "[[[{\"k\":[null,false]}]]]"};
    float logits[3] = {0.1f, 0.2f, 0.9f}; /* class 2 */
    int32_t ids[3] = {3, 4, 5};
    uint64_t lshape[1] = {3}, ishape[1] = {3}, s1[1], s2[1];
    deja_rules *r = NULL;
    deja_tensor out[4];
    deja_trace t;
    seen s;

    (void)state;
    assert_int_equal(deja_rules_parse(&r, text, strlen(text), NULL), 0);
    memset(&t, 0, sizeof t);
    out[0] = (deja_tensor){"logits", DEJA_F32, 1, lshape, logits, sizeof logits};
    out[1] = (deja_tensor){"ids", DEJA_I32, 1, ishape, ids, sizeof ids};
    out[2] = text_tensor("json", "[1]", s1);
    out[3] = text_tensor("text", "", s2);
    t.outputs = out;
    t.noutputs = 4;
    memset(&s, 0, sizeof s);
    /* top, ints, answer (missing), empty, short, wrong (type): 6 */
    assert_int_equal(deja_rules_apply(r, &t, record, &s), 6);
    assert_true(has(&s, "top@output.logits", "row 0: class 2"));
    assert_true(has(&s, "ints@output.ids", "element 2 is 5"));
    assert_true(has(&s, "answer@output.missing", "is missing"));
    assert_true(has(&s, "empty@output.text", "is empty"));
    assert_true(has(&s, "short@output.text", "length 0 is below 1"));
    assert_true(has(&s, "wrong@output.logits", "is f32"));
    /* An error trace: output rules do not apply. */
    t.status = DEJA_STATUS_ERROR;
    assert_int_equal(deja_rules_apply(r, &t, NULL, NULL), 0);
    t.status = DEJA_STATUS_OK;
    /* JSON, both ways. */
    t.noutputs = 3;
    for (size_t i = 0; i < sizeof bad_json / sizeof bad_json[0]; i++) {
        out[2] = text_tensor("json", bad_json[i], s1);
        memset(&s, 0, sizeof s);
        deja_rules_apply(r, &t, record, &s);
        if (!has(&s, "json@output.json", "not valid JSON")) {
            fprintf(stderr, "accepted bad JSON '%s'\n", bad_json[i]);
            fail();
        }
    }
    for (size_t i = 0; i < sizeof good_json / sizeof good_json[0]; i++) {
        out[2] = text_tensor("json", good_json[i], s1);
        memset(&s, 0, sizeof s);
        deja_rules_apply(r, &t, record, &s);
        if (has(&s, "json@output.json", "")) {
            fprintf(stderr, "rejected good JSON '%s'\n", good_json[i]);
            fail();
        }
    }
    deja_rules_free(r);
}

/* Whether an output holds labels is what its producer declared (plugin ABI
 * v2 output kinds, recorded with the trace), the name deciding only when
 * nothing was declared. */
static void test_rules__declared_output_kinds(void **state)
{
    static const char text[] = "label: output.* in 0,1\n";
    float v[3] = {0.1f, 0.2f, 0.7f}; /* class 2 */
    uint64_t shape[2] = {1, 3};
    deja_output_decl decl[2];
    deja_rules *r = NULL;
    deja_tensor out[2];
    deja_trace t;
    seen s;

    (void)state;
    assert_int_equal(deja_rules_parse(&r, text, strlen(text), NULL), 0);
    memset(&t, 0, sizeof t);
    /* "y" says nothing by its name; "class_probs" says scores by its name. */
    out[0] = (deja_tensor){"y", DEJA_F32, 2, shape, v, sizeof v};
    out[1] = (deja_tensor){"class_probs", DEJA_F32, 2, shape, v, sizeof v};
    t.outputs = out;
    t.noutputs = 2;
    /* Undeclared: the name heuristic, "y" is plain values. */
    memset(&s, 0, sizeof s);
    assert_int_equal(deja_rules_apply(r, &t, record, &s), 1);
    assert_true(has(&s, "label@output.class_probs", "row 0: class 2"));
    assert_false(has(&s, "label@output.y", ""));
    /* Declared: "y" holds probabilities, "class_probs" an embedding. */
    decl[0] = (deja_output_decl){"y", DEJA_KIND_PROBS};
    decl[1] = (deja_output_decl){"class_probs", DEJA_KIND_EMBEDDING};
    t.output_kinds = decl;
    t.noutput_kinds = 2;
    memset(&s, 0, sizeof s);
    assert_int_equal(deja_rules_apply(r, &t, record, &s), 1);
    assert_true(has(&s, "label@output.y", "row 0: class 2"));
    assert_false(has(&s, "label@output.class_probs", ""));
    /* Scores too; text and values never. */
    decl[0].kind = DEJA_KIND_SCORES;
    decl[1].kind = DEJA_KIND_VALUES;
    memset(&s, 0, sizeof s);
    assert_int_equal(deja_rules_apply(r, &t, record, &s), 1);
    assert_true(has(&s, "label@output.y", "row 0: class 2"));
    assert_false(has(&s, "label@output.class_probs", ""));
    deja_rules_free(r);
}

/* Record 20 traces through a tracer with a record-time check: every
 * fourth has a feature out of range, every fifth an empty answer. */
static void record_with_rules(const char *path, const deja_rules *rules)
{
    deja_tracer_options o = DEJA_TRACER_OPTIONS_INIT;
    deja_tracer *tr = NULL;
    deja_tracer_stats st;

    o.check = deja_rules_tracer_check;
    o.check_payload = (void *)rules;
    assert_int_equal(deja_tracer_open(&tr, path, &o), 0);
    for (int i = 0; i < 20; i++) {
        const float x[2] = {i % 4 == 0 ? 3.0f : 0.5f, 0.25f};
        const uint64_t shape[1] = {2};
        const deja_tensor in = {"x", DEJA_F32, 1, shape, x, sizeof x};
        deja_span *sp = NULL;

        assert_int_equal(deja_span_begin(&sp, tr, "m", "1"), 0);
        assert_int_equal(deja_span_add(sp, DEJA_INPUT, &in), 0);
        assert_int_equal(deja_span_add_text(sp, DEJA_OUTPUT, "answer", "yes", i % 5 == 0 ? 0 : 3),
                         0);
        assert_int_equal(deja_span_tag(sp, "i", i % 2 ? "odd" : "even"), 0);
        assert_int_equal(deja_span_end(sp, DEJA_STATUS_OK, NULL), 0);
    }
    assert_int_equal(deja_tracer_flush(tr), 0);
    deja_tracer_stats_get(tr, &st);
    assert_int_equal(st.written, 20); /* nothing blocked or dropped */
    deja_tracer_close(tr);
}

typedef struct tag_count {
    size_t traces, range, answer;
} tag_count;

static int count_tags(const deja_trace *t, void *payload)
{
    tag_count *c = payload;

    c->traces++;
    for (size_t i = 0; i < t->ntags; i++) {
        if (strcmp(t->tags[i].key, DEJA_INVALID_TAG) != 0)
            continue;
        c->range += strcmp(t->tags[i].value, "range") == 0;
        c->answer += strcmp(t->tags[i].value, "answer") == 0;
    }
    return 0;
}

static const char tracer_rules[] = "range: input.x range 0 1\n"
                                   "answer: output.answer nonempty\n";

static void test_rules__record_time(void **state)
{
    char root[] = "/tmp/deja-rules-XXXXXX";
    const char *path;
    deja_rules *rules = NULL;
    deja_store *store = NULL;
    deja_filter f = DEJA_FILTER_INIT;
    deja_tag tag = {DEJA_INVALID_TAG, "answer"};
    deja_check_summary sum;
    tag_count c = {0, 0, 0};
    uint64_t invalid = 0;

    (void)state;
    assert_int_equal(cli_group_begin(root), 0);
    path = cli_tmp_path(root, "rules.store");
    assert_int_equal(deja_rules_parse(&rules, tracer_rules, strlen(tracer_rules), "r"), 0);
    record_with_rules(path, rules);
    assert_int_equal(deja_store_open(&store, path, DEJA_STORE_READONLY), 0);
    assert_int_equal(deja_store_list(store, NULL, count_tags, NULL, &c), 0);
    assert_int_equal(c.traces, 20);
    assert_int_equal(c.range, 5);  /* i = 0, 4, 8, 12, 16 */
    assert_int_equal(c.answer, 4); /* i = 0, 5, 10, 15 */
    /* The tag is indexed: ls --tag deja.invalid=answer. */
    memset(&c, 0, sizeof c);
    f.tags = &tag;
    f.ntags = 1;
    assert_int_equal(deja_store_list(store, &f, count_tags, NULL, &c), 0);
    assert_int_equal(c.traces, 4);
    /* Distinct traces: i = 0 broke both. */
    assert_int_equal(deja_store_invalid_count(store, &invalid), 0);
    assert_int_equal(invalid, 8);
    /* The same verdicts over the store. */
    assert_int_equal(deja_rules_check_store(store, rules, NULL, NULL, NULL, NULL, &sum), 0);
    assert_int_equal(sum.traces, 20);
    assert_int_equal(sum.invalid, 8);
    assert_int_equal(sum.violations, 9);
    f.tags = NULL;
    f.ntags = 0;
    f.model_version = "2";
    assert_int_equal(deja_rules_check_store(store, rules, &f, NULL, NULL, NULL, &sum), 0);
    assert_int_equal(sum.traces, 0);
    deja_store_close(store);
    deja_rules_free(rules);
    cli_rm_rf(root);
}

static void test_rules__cli_check_run_replay(void **state)
{
    char root[] = "/tmp/deja-rules-XXXXXX";
    const char *store, *rules, *bad, *reqs, *labels;
    cli_run r;
    json_t *j;

    (void)state;
    assert_int_equal(cli_group_begin(root), 0);
    store = cli_tmp_path(root, "cli.store");
    rules = cli_tmp_path(root, "r.rules");
    bad = cli_tmp_path(root, "bad.rules");
    reqs = cli_tmp_path(root, "req.jsonl");
    labels = cli_tmp_path(root, "labels.rules");
    assert_int_equal(cli_write_file(rules, "finite: output.logits finite\n"
                                           "range: input.features range -1 1\n"),
                     0);
    assert_int_equal(cli_write_file(bad, "finite: output.logits fnite\n"), 0);
    /* Labels 0..9 of the classifier: only the first five allowed. */
    assert_int_equal(cli_write_file(labels, "low: output.logits in 0,1,2,3,4\n"), 0);
    assert_int_equal(
        cli_write_file(reqs,
                       "{\"inputs\": {\"features\": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, "
                       "0.9, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]}}\n"
                       "{\"inputs\": {\"features\": [1.5, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, "
                       "0.9, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7]}}\n"
                       "{\"inputs\": {\"features\": [-0.9, 0.8, -0.3, 0.4, -0.5, 0.6, -0.7, 0.8, "
                       "-0.9, 0.1, -0.2, 0.3, -0.4, 0.5, -0.6, 0.7]}}\n"),
        0);

    /* A bad rules file: exit 2, one line, nothing created. */
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "run", "--model", "classifier-v1",
                              "--requests", reqs, "--rules", bad, NULL),
                     0);
    assert_int_equal(r.status, 2);
    cli_assert_one_error(&r, "bad.rules:1: rule 'finite': unknown check 'fnite'");
    assert_false(cli_exists(store));
    cli_run_free(&r);

    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "run", "--model", "classifier-v1",
                              "--requests", reqs, "--rules", rules, NULL),
                     0);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.err, "recorded 3 traces (0 errors, 1 invalid)"));
    cli_run_free(&r);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "ls", "--tag",
                              "deja.invalid=range", NULL),
                     0);
    assert_int_equal(cli_count_lines(r.out), 1);
    cli_run_free(&r);

    assert_int_equal(
        cli_exec(&r, NULL, NULL, "--store", store, "check", "--rules", rules, "--json", NULL), 0);
    assert_int_equal(r.status, 1);
    assert_int_equal(cli_count_lines(r.out), 1);
    j = json_loads(r.out, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "rule")), "range");
    assert_string_equal(json_string_value(json_object_get(j, "tensor")), "features");
    json_decref(j);
    cli_assert_one_error(&r, "check: 1 of 3 traces break a rule");
    cli_run_free(&r);

    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "check", "--rules", rules,
                              "--status", "error", NULL),
                     0);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "checked 0 traces against 2 rules: 0 invalid"));
    cli_run_free(&r);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "check", NULL), 0);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "--rules FILE is required"));
    cli_run_free(&r);

    /* Replayed outputs that reproduce the recording bit for bit, and still
     * break a rule: the replay says so and exits 1. */
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "replay", "--model",
                              "classifier-v1", "--rules", labels, NULL),
                     0);
    assert_non_null(strstr(r.out, "3 traces replayed: 3 same"));
    if (strstr(r.out, "rule low: output.logits") != NULL) {
        assert_int_equal(r.status, 1);
        cli_assert_one_error(&r, "replayed traces break a rule");
    } else {
        assert_int_equal(r.status, 0);
    }
    cli_run_free(&r);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "check", "--rules", labels, NULL),
                     0);
    {
        /* check and replay --rules agree on the recorded outputs. */
        const int broken = r.status == 1;
        cli_run r2;

        cli_run_free(&r);
        assert_int_equal(cli_exec(&r2, NULL, NULL, "--store", store, "replay", "--model",
                                  "classifier-v1", "--rules", labels, "--json", NULL),
                         0);
        assert_int_equal(r2.status, broken ? 1 : 0);
        assert_int_equal(strstr(r2.out, "\"violations\": [{") != NULL ||
                             strstr(r2.out, "\"violations\":[{") != NULL,
                         broken);
        cli_run_free(&r2);
    }
    cli_rm_rf(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rules__parse),
        cmocka_unit_test(test_rules__checks),
        cmocka_unit_test(test_rules__checks_edge_cases),
        cmocka_unit_test(test_rules__declared_output_kinds),
        cmocka_unit_test(test_rules__record_time),
        cmocka_unit_test(test_rules__cli_check_run_replay),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
