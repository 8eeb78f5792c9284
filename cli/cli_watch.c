/*
 * cli/cli_watch.c -- helpers of the watching commands: durations,
 * selections given as one argument, rules files, violations as JSON.
 */
#include "cli_escape.h"
#include "cli_watch.h"

#include <stdlib.h>
#include <string.h>

int cli_parse_span(const char *text, int64_t *out_ns)
{
    static const struct {
        char unit;
        int64_t ns;
    } units[] = {{'s', 1000000000LL},      {'m', 60000000000LL}, {'h', 3600000000000LL},
                 {'d', 86400000000000LL}, {'w', 604800000000000LL}};
    uint64_t n = 0;
    size_t i = 0;
    int64_t unit = 1000000000LL;

    if (text == NULL || text[0] < '0' || text[0] > '9')
        return -1;
    for (; text[i] >= '0' && text[i] <= '9'; i++) {
        n = n * 10 + (uint64_t)(text[i] - '0');
        if (n > 100000000ULL)
            return -1;
    }
    if (text[i] != '\0') {
        size_t u;

        for (u = 0; u < sizeof units / sizeof units[0]; u++)
            if (text[i] == units[u].unit && text[i + 1] == '\0')
                break;
        if (u == sizeof units / sizeof units[0])
            return -1;
        unit = units[u].ns;
    }
    if (n == 0 || n > (uint64_t)(INT64_MAX / unit))
        return -1;
    *out_ns = (int64_t)n * unit;
    return 0;
}

int cli_parse_selection(const char *text, const char *what, int64_t now_ns, cli_filter *f,
                        char **buf)
{
    static const struct {
        const char *key;
        int opt;
    } keys[] = {{"model", CLI_OPT_MODEL}, {"version", CLI_OPT_VERSION}, {"since", CLI_OPT_SINCE},
                {"until", CLI_OPT_UNTIL}, {"status", CLI_OPT_STATUS},   {"limit", CLI_OPT_LIMIT}};
    char *copy = strdup(text ? text : "");
    char *save = NULL, *term;
    int ret = -1;

    *buf = copy;
    if (copy == NULL) {
        cli_error("out of memory");
        return -1;
    }
    for (term = strtok_r(copy, " \t", &save); term != NULL; term = strtok_r(NULL, " \t", &save)) {
        char *eq = strchr(term, '=');
        size_t k;

        if (eq == NULL || eq == term) {
            cli_error("%s: expected key=value terms (model=, version=, since=, until=, status=, "
                      "tag.KEY=), not '%s'",
                      what, term);
            goto cleanup;
        }
        *eq = '\0';
        if (strncmp(term, "tag.", 4) == 0 && term[4] != '\0') {
            *eq = '=';
            if (cli_filter_option(f, CLI_OPT_TAG, term + 4, now_ns) != 1)
                goto cleanup;
            continue;
        }
        for (k = 0; k < sizeof keys / sizeof keys[0]; k++)
            if (strcmp(keys[k].key, term) == 0)
                break;
        if (k == sizeof keys / sizeof keys[0]) {
            cli_error("%s: unknown key '%s' (model, version, since, until, status, tag.KEY, limit)",
                      what, term);
            goto cleanup;
        }
        if (cli_filter_option(f, keys[k].opt, eq + 1, now_ns) != 1)
            goto cleanup;
    }
    ret = 0;

cleanup:
    return ret;
}

int cli_rules_load(const char *path, deja_rules **out)
{
    int rc = deja_rules_load(out, path);

    if (rc < 0) {
        cli_error("%s", deja_error_last()[0] ? deja_error_last() : deja_strerror(rc));
        return -1;
    }
    return 0;
}

size_t cli_rules_count_check(const struct deja_trace *trace, const char **failed, size_t cap,
                             void *payload)
{
    cli_rules_counter *c = payload;
    const size_t n = deja_rules_tracer_check(trace, failed, cap, c->rules);

    if (n > 0)
        atomic_fetch_add(&c->invalid, 1);
    return n;
}

typedef struct replay_rules_state {
    const deja_id *id;
    json_t *list; /* NULL: print */
    int oom;
    const char *last; /* the rule of the last violation */
    int broken;       /* output rules broken */
} replay_rules_state;

static int print_replay_violation(const deja_violation *v, void *payload)
{
    replay_rules_state *s = payload;

    /* The inputs are the recorded ones: only outputs are news. */
    if (v->side == DEJA_INPUT)
        return 0;
    s->broken += s->last != v->rule;
    s->last = v->rule;
    if (s->list == NULL) {
        printf("    rule %s: %s.%s %s (replayed output)\n", cli_term(v->rule),
               v->side == DEJA_INPUT ? "input" : "output", cli_term(v->tensor),
               cli_term(v->detail));
        return 0;
    }
    if (json_array_append_new(s->list, cli_violation_json(s->id, v)) != 0)
        s->oom = 1;
    return s->oom;
}

int cli_replay_rules(const deja_rules *rules, const deja_replay_result *r, json_t *obj)
{
    replay_rules_state s = {&r->id, NULL, 0, NULL, 0};
    deja_trace t;
    int n;

    if (r->trace == NULL || r->verdict == DEJA_VERDICT_ERROR ||
        (r->outputs == NULL && r->noutputs > 0))
        return 0;
    t = *r->trace;
    t.outputs = r->outputs;
    t.noutputs = r->noutputs;
    t.status = DEJA_STATUS_OK;
    if (obj != NULL && (s.list = json_array()) == NULL)
        return -1;
    n = deja_rules_apply(rules, &t, print_replay_violation, &s);
    if (obj != NULL && (s.oom || json_object_set_new(obj, "violations", s.list) != 0))
        return -1;
    return n < 0 ? -1 : s.broken;
}

json_t *cli_violation_json(const deja_id *id, const deja_violation *v)
{
    char text[DEJA_ID_STRLEN + 1];

    deja_id_format(id, text);
    return json_pack("{s:s, s:s, s:s, s:s, s:s}", "id", text, "rule", v->rule, "side",
                     v->side == DEJA_INPUT ? "input" : "output", "tensor", v->tensor, "detail",
                     v->detail);
}
