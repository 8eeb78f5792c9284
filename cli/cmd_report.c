/*
 * cli/cmd_report.c -- `deja report`: gather health, drift, rule
 * violations and replay results, and write them as one HTML file.
 */
#include "cli_watch.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static const char help[] =
    "usage: deja report [filters] [--baseline SELECTION [--current SELECTION]] [--rules FILE] "
    "[--replay RESULTS.json] [--every D] -o FILE.html\n"
    "\n"
    "Write one self-contained HTML file (no script, nothing loaded from the network,\n"
    "charts as inline SVG) about the traces matching the filters (all when none):\n"
    "health per version and over time (traffic, latency p95, error rate), drift against\n"
    "--baseline (a selection as in deja drift) with histograms of the most drifted\n"
    "fields, rule violations (of --rules FILE, else the traces tagged deja.invalid at\n"
    "record time), and replay or bisect results (the JSON output of deja replay --json\n"
    "or deja bisect --json). Every trace id links to the commands that show and replay it.\n"
    "\n" CLI_FILTER_HELP "  --baseline SEL     compare the selection with these traces\n"
    "  --current SEL      compare these traces rather than the whole selection\n"
    "  --rules FILE       check these rules over the selection\n"
    "  --replay FILE      replay or bisect results (JSON lines)\n"
    "  --every D          bucket of the charts over time (default: about 40 buckets)\n"
    "  -o, --output FILE  the report to write (required)\n"
    "\n"
    "Exit status: 0 when the report is written, 2 on trouble.\n";

#define LIST_MAX 200
#define RESULTS_MAX ((size_t)64 << 20)

/* What the report borrows, kept until it is written. */
typedef struct report_data {
    deja_report_trace *items; /* violations, then replayed */
    size_t nitems, cap;
    char **strings;
    size_t nstrings, capstrings;
    deja_report_step *steps;
    size_t nsteps;
    int oom;
} report_data;

/* Keep a copy of `s` (NULL stays NULL). */
static const char *keep(report_data *d, const char *s)
{
    char *copy;

    if (s == NULL)
        return NULL;
    if (d->nstrings == d->capstrings) {
        const size_t cap = d->capstrings ? d->capstrings * 2 : 64;
        char **grown = realloc(d->strings, cap * sizeof *grown);

        if (grown == NULL) {
            d->oom = 1;
            return "";
        }
        d->strings = grown;
        d->capstrings = cap;
    }
    copy = strdup(s);
    if (copy == NULL) {
        d->oom = 1;
        return "";
    }
    d->strings[d->nstrings++] = copy;
    return copy;
}

static deja_report_trace *add_item(report_data *d)
{
    if (d->nitems == d->cap) {
        const size_t cap = d->cap ? d->cap * 2 : 32;
        deja_report_trace *grown = realloc(d->items, cap * sizeof *grown);

        if (grown == NULL) {
            d->oom = 1;
            return NULL;
        }
        d->items = grown;
        d->cap = cap;
    }
    memset(&d->items[d->nitems], 0, sizeof d->items[0]);
    return &d->items[d->nitems++];
}

static void data_free(report_data *d)
{
    for (size_t i = 0; i < d->nstrings; i++)
        free(d->strings[i]);
    free(d->strings);
    free(d->items);
    free(d->steps);
}

typedef struct violations_state {
    report_data *d;
    uint64_t listed;
} violations_state;

/* deja_rules_check_store callback: list the first LIST_MAX violations. */
static int on_violation(const deja_trace *t, const deja_violation *v, void *payload)
{
    violations_state *s = payload;
    deja_report_trace *it;
    char detail[512];

    if (s->listed++ >= LIST_MAX)
        return 0;
    it = add_item(s->d);
    if (it == NULL)
        return 1;
    snprintf(detail, sizeof detail, "%s@%s: %s.%s %s", t->model_name ? t->model_name : "?",
             t->model_version ? t->model_version : "?",
             v->side == DEJA_INPUT ? "input" : "output", v->tensor, v->detail);
    it->id = t->id;
    it->label = keep(s->d, v->rule);
    it->detail = keep(s->d, detail);
    return 0;
}

typedef struct tagged_state {
    report_data *d;
    uint64_t traces, invalid;
} tagged_state;

/* deja_store_list callback: traces tagged deja.invalid at record time. */
static int on_tagged(const deja_trace *t, void *payload)
{
    tagged_state *s = payload;
    int listed = 0;

    s->traces++;
    for (size_t i = 0; i < t->ntags; i++) {
        deja_report_trace *it;
        char detail[256];

        if (strcmp(t->tags[i].key, DEJA_INVALID_TAG) != 0)
            continue;
        if (!listed)
            s->invalid++;
        listed = 1;
        if (s->d->nitems >= LIST_MAX || (it = add_item(s->d)) == NULL)
            continue;
        snprintf(detail, sizeof detail, "%s@%s: flagged at record time",
                 t->model_name ? t->model_name : "?", t->model_version ? t->model_version : "?");
        it->id = t->id;
        it->label = keep(s->d, t->tags[i].value);
        it->detail = keep(s->d, detail);
    }
    return 0;
}

/* The text of a replay result's diff: summary, then each output's detail
 * and hunk. */
static void diff_text(json_t *diff, char *out, size_t cap)
{
    size_t n = 0;
    json_t *outs = json_object_get(diff, "outputs"), *o;
    size_t i;

    n += (size_t)snprintf(out, cap, "%s", json_string_value(json_object_get(diff, "summary"))
                                              ? json_string_value(json_object_get(diff, "summary"))
                                              : "");
    json_array_foreach(outs, i, o)
    {
        const char *name = json_string_value(json_object_get(o, "name"));
        const char *detail = json_string_value(json_object_get(o, "detail"));
        const char *hunk = json_string_value(json_object_get(o, "hunk"));

        if (n >= cap || detail == NULL || detail[0] == '\0')
            continue;
        n += (size_t)snprintf(out + n, cap - n, "\n%s: %s", name ? name : "?", detail);
        if (hunk != NULL && n < cap)
            n += (size_t)snprintf(out + n, cap - n, "\n  %s", hunk);
    }
}

/* Read replay (JSON lines, one per trace) or bisect (one object) results
 * into `r` and `d`. Returns 0, or -1 after printing a message. */
static int read_results(const char *path, deja_report *r, report_data *d)
{
    static const char *const verdicts[5] = {"same", "close", "nondeterministic", "diverged",
                                            "error"};
    FILE *fp = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0, total = 0, lineno = 0, first_item = d->nitems;
    ssize_t len;
    int ret = -1;

    if (fp == NULL) {
        cli_error("%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    while ((len = getline(&line, &cap, fp)) > 0) {
        json_error_t err;
        json_t *j;
        const char *verdict;

        lineno++;
        total += (size_t)len;
        if (total > RESULTS_MAX) {
            cli_error("%s: larger than %zu bytes", path, RESULTS_MAX);
            goto cleanup;
        }
        if (strspn(line, " \t\r\n") == (size_t)len)
            continue;
        j = json_loadb(line, (size_t)len, 0, &err);
        if (j == NULL || !json_is_object(j)) {
            json_decref(j);
            cli_error("%s:%zu: not a JSON object (expected deja replay --json or deja bisect "
                      "--json output)",
                      path, lineno);
            goto cleanup;
        }
        /* The last line of replay --json, or bisect --json's one object:
         * {"summary": {...}}. */
        if (json_is_object(json_object_get(j, "summary"))) {
            json_t *inner = json_incref(json_object_get(j, "summary"));

            json_decref(j);
            j = inner;
            if (json_object_get(j, "first_bad") == NULL) {
                if (r->replay_model == NULL)
                    r->replay_model = keep(d, json_string_value(json_object_get(j, "model")));
                json_decref(j);
                continue;
            }
        }
        if (json_object_get(j, "first_bad") != NULL) {
            json_t *steps = json_object_get(j, "steps"), *ev = json_object_get(j, "evidence"), *s;
            size_t i;

            free(d->steps);
            d->steps = calloc(json_array_size(steps) + 1, sizeof *d->steps);
            d->nsteps = 0;
            if (d->steps == NULL)
                d->oom = 1;
            json_array_foreach(steps, i, s)
            {
                deja_report_step *st;

                if (d->steps == NULL)
                    break;
                st = &d->steps[d->nsteps++];
                st->spec = keep(d, json_string_value(json_object_get(s, "spec")));
                st->bad = json_is_true(json_object_get(s, "bad"));
                st->same = (uint64_t)json_integer_value(json_object_get(s, "same"));
                st->close = (uint64_t)json_integer_value(json_object_get(s, "close"));
                st->diverged = (uint64_t)json_integer_value(json_object_get(s, "diverged"));
                st->error = (uint64_t)json_integer_value(json_object_get(s, "error"));
            }
            r->first_bad = keep(
                d, json_string_value(json_object_get(json_object_get(j, "first_bad"), "spec")));
            json_array_foreach(ev, i, s)
            {
                deja_report_trace *it;
                const char *id = json_string_value(json_object_get(s, "id"));

                if (id == NULL || d->nitems - first_item >= LIST_MAX)
                    continue;
                if ((it = add_item(d)) == NULL)
                    break;
                if (deja_id_parse(&it->id, id) != 0) {
                    d->nitems--;
                    continue;
                }
                it->label = keep(d, json_string_value(json_object_get(s, "verdict")));
                it->detail = keep(d, json_string_value(json_object_get(s, "detail")));
            }
            json_decref(j);
            continue;
        }
        verdict = json_string_value(json_object_get(j, "verdict"));
        if (verdict == NULL || json_string_value(json_object_get(j, "id")) == NULL) {
            json_decref(j);
            cli_error("%s:%zu: neither a replay nor a bisect result", path, lineno);
            goto cleanup;
        }
        for (int v = 0; v < 5; v++)
            if (strcmp(verdict, verdicts[v]) == 0)
                r->verdicts[v]++;
        if (r->replay_model == NULL) {
            json_t *rep = json_object_get(j, "replayed");
            char model[256];

            snprintf(model, sizeof model, "%s %s",
                     json_string_value(json_object_get(rep, "model"))
                         ? json_string_value(json_object_get(rep, "model"))
                         : "?",
                     json_string_value(json_object_get(rep, "version"))
                         ? json_string_value(json_object_get(rep, "version"))
                         : "");
            r->replay_model = keep(d, model);
        }
        if (strcmp(verdict, "same") != 0 && strcmp(verdict, "close") != 0 &&
            d->nitems - first_item < LIST_MAX) {
            deja_report_trace *it = add_item(d);
            char detail[4096];

            if (it == NULL || deja_id_parse(&it->id, json_string_value(json_object_get(j, "id"))) !=
                                  0) {
                if (it != NULL)
                    d->nitems--;
                json_decref(j);
                continue;
            }
            if (json_object_get(j, "diff") != NULL)
                diff_text(json_object_get(j, "diff"), detail, sizeof detail);
            else
                detail[0] = '\0';
            if (json_string_value(json_object_get(j, "error")) != NULL)
                snprintf(detail + strlen(detail), sizeof detail - strlen(detail), "%s%s",
                         detail[0] ? "\n" : "", json_string_value(json_object_get(j, "error")));
            it->label = keep(d, verdict);
            it->detail = keep(d, detail);
        }
        json_decref(j);
    }
    if (ferror(fp)) {
        cli_error("%s: read error", path);
        goto cleanup;
    }
    r->replay_source = path;
    ret = 0;

cleanup:
    free(line);
    fclose(fp);
    return ret;
}

/* A bucket giving about 40 points over the selection's time span. */
static int64_t auto_every(const deja_health *h)
{
    static const int64_t steps[] = {1LL,    5LL,         15LL,        60LL,    300LL,
                                    900LL,  3600LL,      3 * 3600LL,  6 * 3600LL, 86400LL,
                                    7 * 86400LL};
    int64_t lo = 0, hi = 0;

    for (size_t i = 0; i < h->nrows; i++) {
        if (i == 0 || h->rows[i].first_ns < lo)
            lo = h->rows[i].first_ns;
        if (i == 0 || h->rows[i].last_ns > hi)
            hi = h->rows[i].last_ns;
    }
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++)
        if ((hi - lo) / (steps[i] * 1000000000LL) <= 40)
            return steps[i] * 1000000000LL;
    return 30 * 86400LL * 1000000000LL;
}

/* Append "--opt value" to the words of the selection. */
static void describe(char *buf, size_t cap, const char *opt, const char *value)
{
    const size_t n = strlen(buf);

    snprintf(buf + n, cap - n, "%s%s %s", n ? " " : "", opt, value);
}

int cmd_report(const cli_global *g, int argc, char **argv)
{
    enum {
        OPT_BASELINE = CLI_OPT_FIRST_FREE,
        OPT_CURRENT,
        OPT_RULES,
        OPT_REPLAY,
        OPT_EVERY,
        OPT_OUTPUT
    };
    static const struct option longopts[] = {
        CLI_LONGOPT_HELP,
        CLI_LONGOPT_FILTER_MODEL,
        CLI_LONGOPTS_FILTER,
        {"baseline", required_argument, NULL, OPT_BASELINE},
        {"current", required_argument, NULL, OPT_CURRENT},
        {"rules", required_argument, NULL, OPT_RULES},
        {"replay", required_argument, NULL, OPT_REPLAY},
        {"every", required_argument, NULL, OPT_EVERY},
        {"output", required_argument, NULL, OPT_OUTPUT},
        CLI_LONGOPT_END,
    };
    deja_report r;
    deja_health_options ho = DEJA_HEALTH_OPTIONS_INIT;
    deja_drift_options dopt = DEJA_DRIFT_OPTIONS_INIT;
    deja_health *totals = NULL, *timeline = NULL;
    deja_drift *drift = NULL;
    deja_rules *rules = NULL;
    deja_store *store = NULL;
    report_data d;
    cli_filter f, base, cur;
    char words[1024] = "";
    char *base_buf = NULL, *cur_buf = NULL;
    const char *current = NULL;
    const char *baseline = NULL, *rules_path = NULL, *replay = NULL, *out = NULL;
    size_t nviolations = 0;
    int64_t now = cli_now_ns(), every = 0;
    int first = 1, json = 0;
    int ret = CLI_EXIT_TROUBLE;
    int c, rc;

    memset(&r, 0, sizeof r);
    memset(&d, 0, sizeof d);
    cli_filter_init(&f);
    cli_filter_init(&base);
    cli_filter_init(&cur);
    /* -o is the one short option. */
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "-o") == 0)
            argv[i] = (char *)"--output";
    while ((c = cli_getopt_common(argc, argv, longopts, help, &first, &json, &ret)) != -1) {
        switch (c) {
        case OPT_BASELINE:
            baseline = optarg;
            break;
        case OPT_CURRENT:
            current = optarg;
            break;
        case OPT_RULES:
            rules_path = optarg;
            break;
        case OPT_REPLAY:
            replay = optarg;
            break;
        case OPT_OUTPUT:
            out = optarg;
            break;
        case OPT_EVERY:
            if (cli_parse_span(optarg, &every) != 0) {
                cli_error("--every: expected a duration such as 10m, 1h or 1d, not '%s'", optarg);
                goto cleanup;
            }
            break;
        default:
            if (c == '?' || cli_filter_option(&f, c, optarg, now) != 1)
                goto cleanup;
            for (size_t k = 0; longopts[k].name != NULL; k++)
                if (longopts[k].val == c)
                    describe(words, sizeof words, longopts[k].name, optarg);
        }
    }
    if (out == NULL) {
        ret = cli_usage_error(help, "report: -o FILE.html is required");
        goto cleanup;
    }
    if (current != NULL && baseline == NULL) {
        ret = cli_usage_error(help, "report: --current needs --baseline");
        goto cleanup;
    }
    if (baseline != NULL && cli_parse_selection(baseline, "--baseline", now, &base, &base_buf) != 0)
        goto cleanup;
    if (current != NULL && cli_parse_selection(current, "--current", now, &cur, &cur_buf) != 0)
        goto cleanup;
    if (rules_path != NULL && cli_rules_load(rules_path, &rules) != 0)
        goto cleanup;
    if (cli_store_open_no_operands(g, argc, argv, help, &store) != 0)
        goto cleanup;
    r.version = DEJA_REPORT_VERSION;
    r.store = g->store;
    r.selection = words[0] ? words : "all traces";
    r.generated_ns = now;
    rc = deja_health_compute(store, &f.filter, &ho, &totals);
    if (rc == 0) {
        ho.every_ns = every ? every : auto_every(totals);
        rc = deja_health_compute(store, &f.filter, &ho, &timeline);
    }
    if (rc == 0 && baseline != NULL)
        rc = deja_drift_compute(store, &base.filter, current ? &cur.filter : &f.filter, &dopt,
                                &drift);
    if (rc < 0) {
        cli_lib_error(rc, "store '%s'", g->store);
        goto cleanup;
    }
    r.totals = totals;
    r.timeline = timeline;
    r.every_ns = ho.every_ns;
    r.drift = drift;
    r.baseline = baseline;
    r.current = current ? current : r.selection;
    r.drift_charts = 4;
    if (rules != NULL) {
        violations_state vs = {&d, 0};
        deja_check_summary sum;

        rc = deja_rules_check_store(store, rules, &f.filter, on_violation, NULL, &vs, &sum);
        r.rules = rules_path;
        r.checked = sum.traces;
        r.invalid = sum.invalid;
    } else {
        tagged_state ts = {&d, 0, 0};

        rc = deja_store_list(store, &f.filter, on_tagged, NULL, &ts);
        r.checked = ts.traces;
        r.invalid = ts.invalid;
    }
    if (rc < 0) {
        cli_lib_error(rc, "store '%s'", g->store);
        goto cleanup;
    }
    nviolations = d.nitems;
    if (replay != NULL && read_results(replay, &r, &d) != 0)
        goto cleanup;
    if (d.oom) {
        cli_error("out of memory");
        goto cleanup;
    }
    /* Items may have moved while growing: point into the final array. */
    r.violations = d.items;
    r.nviolations = nviolations;
    r.replayed = d.items + nviolations;
    r.nreplayed = d.nitems - nviolations;
    r.steps = d.steps;
    r.nsteps = d.nsteps;
    rc = deja_report_write(&r, out);
    if (rc < 0) {
        cli_lib_error(rc, "report");
        goto cleanup;
    }
    printf("wrote %s: %llu traces, %zu versions", out, (unsigned long long)totals->traces,
           totals->nrows);
    if (drift != NULL)
        printf(", %zu of %zu fields drifted", drift->ndrifted, drift->nfields);
    printf(", %llu invalid", (unsigned long long)r.invalid);
    if (replay != NULL)
        printf(", %zu divergent replays", r.nreplayed);
    printf("\n");
    ret = CLI_EXIT_OK;

cleanup:
    deja_drift_free(drift);
    deja_health_free(totals);
    deja_health_free(timeline);
    deja_rules_free(rules);
    deja_store_close(store);
    data_free(&d);
    cli_filter_free(&f);
    cli_filter_free(&base);
    cli_filter_free(&cur);
    free(base_buf);
    free(cur_buf);
    return ret;
}
