/*
 * cli/cmd_bisect.c -- `deja bisect V1 V2 ... Vn [selection]`: find the first
 * model version whose replay of the selected traces diverges from their
 * recorded outputs.
 */
#include "cli.h"
#include "cli_escape.h"
#include "cli_tree.h"

#include <stdlib.h>
#include <string.h>


static const char help[] =
    "usage: deja bisect PLUGIN[:ARG] PLUGIN[:ARG]... [--id ID]... [filters] [--invert]\n"
    "                   [--jobs N] [--repeat N] [--atol X] [--rtol Y] [--ulps N] [--force]\n"
    "                   [--isolate] [--timeout S] [--step NAME] [--max-hunks N] [--json]\n"
    "\n"
    "Versions are given oldest first. A version is bad when its replay of any selected\n"
    "trace diverges from the recorded outputs (or fails); with --invert, when it\n"
    "reproduces them. Both ends are replayed first and must disagree; then a binary\n"
    "search finds the first bad version in O(log n) replays. Prints every step, the\n"
    "first bad version and the evidence: which traces, which diff, and the likely\n"
    "cause (an environment difference the last good version did not show, else the\n"
    "model change between the two versions).\n"
    "\n"
    "  --id ID            a trace to replay (id or unique prefix; repeatable);\n"
    "                     with no --id and no filter, every trace in the store\n" CLI_FILTER_HELP
    "  --step NAME        bisect one step of pipelines: the selected traces are\n"
    "                     pipeline runs (`deja ls --tree`), and the traces replayed are\n"
    "                     their steps recorded by model NAME, each fed its recorded\n"
    "                     inputs (as `deja replay ROOT --isolated`)\n"
    "  --invert           bad when the version reproduces the recording\n"
    "  --jobs N           replay N traces in parallel\n"
    "  --repeat N         replay each trace N times (nondeterministic traces count for\n"
    "                     neither side; one whose stable output diverges is bad)\n"
    "  --atol X, --rtol Y, --ulps N   tolerances, as for replay\n"
    "  --max-hunks N      differing hunks of a text output described (default 3)\n"
    "  --force            replay traces recorded by a model of another name\n"
    "  --isolate          run each inference in a child process (a crash fails it)\n"
    "  --json             the steps, the first bad version and the evidence as one\n"
    "                     JSON object\n"
    "\n"
    "Exit status: 0 when the first bad version was found, 2 on trouble (both ends\n"
    "agree, a version that cannot load, a trace that cannot be replayed).\n";

/* Same codes as cmd_replay.c, for cli_replay_option. */
enum {
    OPT_ID = OPT_REPLAY_END,
    OPT_INVERT,
    OPT_STEP,
};

/* Evidence lines printed in the human form. */
#define EVIDENCE_SHOWN 10

typedef struct bisect_state {
    int json;
    size_t nspecs;
    size_t nsteps;
    cli_progress bar; /* the replay of the version being tried, on a terminal */
} bisect_state;

/* Replay progress of the version being tried: the bar. */
static void on_progress(size_t done, size_t total, void *payload)
{
    bisect_state *s = payload;
    cli_progress_draw(&s->bar, done, total, NULL);
}

/* Step callback: print the step as it completes. */
static void on_step(const deja_bisect_step *st, void *payload)
{
    bisect_state *s = payload;
    const deja_replay_summary *u = &st->summary;
    cli_progress_clear(&s->bar);
    s->nsteps++;
    if (s->json) {
        return;
    }
    printf("step %zu: version %zu/%zu %s: %s (%zu same, %zu close, %zu diverged, %zu error",
           s->nsteps, st->index + 1, s->nspecs, cli_term(st->spec), st->bad ? "bad" : "good", u->same,
           u->close, u->diverged, u->error);
    if (u->nondeterministic) {
        printf(", %zu nondeterministic", u->nondeterministic);
    }
    printf(")\n");
    fflush(stdout);
}

/* The result as one JSON object. */
static json_t *result_json(const deja_bisect_result *r)
{
    json_t *o = json_object(), *steps = json_array(), *ev = json_array();
    size_t i, k;
    int bad = !o || !steps || !ev;
    for (i = 0; !bad && i < r->nsteps; i++) {
        const deja_bisect_step *st = &r->steps[i];
        bad |= json_array_append_new(
                   steps,
                   json_pack("{s:I, s:s, s:b, s:I, s:I, s:I, s:I, s:I}", "version",
                             (json_int_t)st->index + 1, "spec", st->spec, "bad", st->bad, "same",
                             (json_int_t)st->summary.same, "close", (json_int_t)st->summary.close,
                             "diverged", (json_int_t)st->summary.diverged, "error",
                             (json_int_t)st->summary.error, "nondeterministic",
                             (json_int_t)st->summary.nondeterministic)) != 0;
    }
    for (i = 0; !bad && i < r->nevidence; i++) {
        const deja_bisect_evidence *e = &r->evidence[i];
        char id[DEJA_ID_STRLEN + 1];
        json_t *env = json_array(), *one;
        deja_id_format(&e->id, id);
        for (k = 0; env && k < e->nenv; k++) {
            bad |= json_array_append_new(env, cli_json_text(e->env[k])) != 0;
        }
        one = env ? json_pack("{s:s, s:s, s:o, s:b, s:o}", "id", id, "verdict",
                              deja_verdict_name(e->verdict), "detail", cli_json_text(e->detail),
                              "label_changed", e->label_changed, "environment_changes", env)
                  : NULL;
        /* The likely cause, when bisect names one beyond the environment. */
        if (one && e->cause)
            bad |= json_object_set_new(one, "cause", cli_json_text(e->cause)) != 0;
        bad |= !one || json_array_append_new(ev, one) != 0;
    }
    if (!bad) {
        bad |= json_object_set_new(o, "first_bad",
                                   json_pack("{s:I, s:s}", "version", (json_int_t)r->first_bad + 1,
                                             "spec", r->first_bad_spec)) != 0;
        bad |= json_object_set_new(o, "last_good", json_integer((json_int_t)r->last_good + 1));
        bad |= json_object_set_new(o, "steps", steps) != 0;
        bad |= json_object_set_new(o, "evidence", ev) != 0;
        steps = ev = NULL;
    }
    if (bad) {
        json_decref(o);
        json_decref(steps);
        json_decref(ev);
        return NULL;
    }
    return o;
}

/* Print the result in the human form. */
static void result_print(const deja_bisect_result *r, const char *const *specs, size_t nspecs,
                         size_t ntraces)
{
    size_t i, k, shown = 0, pass;
    printf("first bad version: %s (version %zu of %zu); last good: %s\n",
           cli_term(r->first_bad_spec), r->first_bad + 1, nspecs, cli_term(specs[r->last_good]));
    printf("evidence: %zu of %s on %s%s:\n", r->nevidence, cli_count(ntraces, "trace"),
           cli_term(r->first_bad_spec),
           r->nevidence > EVIDENCE_SHOWN ? " (changed labels first)" : "");
    /* Changed labels first: they are what a user reported. */
    for (pass = 0; pass < 2; pass++) {
        for (i = 0; i < r->nevidence; i++) {
            const deja_bisect_evidence *e = &r->evidence[i];
            char id[DEJA_ID_STRLEN + 1];
            if (e->label_changed != (pass == 0)) {
                continue;
            }
            if (shown++ == EVIDENCE_SHOWN) {
                printf("  ... and %zu more (--json lists them all)\n",
                       r->nevidence - EVIDENCE_SHOWN);
                return;
            }
            deja_id_format(&e->id, id);
            printf("  %s  %-9s %s\n", id, deja_verdict_name(e->verdict), cli_term(e->detail));
            for (k = 0; k < e->nenv; k++) {
                printf("      likely cause: environment: %s\n", cli_term(e->env[k]));
            }
            if (e->cause) {
                printf("      likely cause: %s\n", cli_term(e->cause));
            }
        }
    }
}
/* `deja bisect`. */
int cmd_bisect(const cli_global *g, int argc, char **argv)
{
    static const struct option longopts[] = {
        CLI_LONGOPT_HELP,
        CLI_LONGOPT_JSON,
        CLI_LONGOPT_FILTER_MODEL,
        {"id", required_argument, NULL, OPT_ID},
        {"invert", no_argument, NULL, OPT_INVERT},
        {"step", required_argument, NULL, OPT_STEP},
        CLI_LONGOPTS_REPLAY,
        CLI_LONGOPTS_FILTER,
        CLI_LONGOPT_END,
    };
    deja_bisect_options o = DEJA_BISECT_OPTIONS_INIT;
    deja_bisect_result *res = NULL;
    bisect_state s;
    cli_filter f;
    deja_store *store = NULL;
    deja_id *ids = NULL;
    char **want = NULL;
    size_t nwant = 0, n = 0, bad = 0, nspecs;
    int64_t now = cli_now_ns();
    int first = 1, ret = CLI_EXIT_TROUBLE, c, rc, r;
    const char *step = NULL;

    memset(&s, 0, sizeof(s));
    cli_filter_init(&f);
    want = calloc((size_t)argc + 1, sizeof(*want));
    if (!want) {
        cli_error("bisect: out of memory");
        goto cleanup;
    }
    while ((c = cli_getopt_common(argc, argv, longopts, help, &first, &s.json, &ret)) != -1) {
        if (c == OPT_ID) {
            want[nwant++] = optarg;
        } else if (c == OPT_STEP) {
            step = optarg;
        } else if (c == OPT_INVERT) {
            o.invert = 1;
        } else if (c == '?') {
            goto cleanup;
        } else if ((r = cli_replay_option(&o.replay, c, optarg)) != 0) {
            if (r < 0) {
                goto cleanup;
            }
        } else if (cli_filter_option(&f, c, optarg, now) != 1) {
            goto cleanup;
        }
    }
    nspecs = (size_t)(argc - optind);
    if (nspecs < 2) {
        ret = cli_usage_error(help, "bisect: give at least two versions, oldest first (got %zu)",
                              nspecs);
        goto cleanup;
    }
    if (cli_store_open_read(g, &store) != 0) {
        goto cleanup;
    }
    if (cli_select(store, want, nwant, &f, &ids, &n, &bad) != 0) {
        goto cleanup;
    }
    if (n == 0) {
        cli_error("bisect: no traces selected%s", bad ? " (some records could not be read)" : "");
        goto cleanup;
    }
    if (step != NULL) {
        deja_id *steps = NULL;
        if (cli_pipeline_steps(store, ids, n, step, &steps, &n) != 0)
            goto cleanup;
        free(ids);
        ids = steps;
    }
    s.nspecs = nspecs;
    o.on_step = on_step;
    o.payload = &s;
    o.replay.progress = on_progress;
    o.replay.progress_payload = &s;
    if (!s.json) {
        printf("bisecting %zu versions over %zu trace%s%s\n", nspecs, n, n == 1 ? "" : "s",
               o.invert ? " (inverted: bad = reproduces)" : "");
        fflush(stdout);
    }
    cli_progress_init(&s.bar, stderr, "traces replayed on a version", CLI_PROGRESS_AFTER_NS);
    if (!o.replay.isolate) {
        cli_crash_guard();
    }
    rc = deja_bisect(store, ids, n, (const char *const *)(argv + optind), nspecs, &o, &res);
    cli_progress_free(&s.bar);
    fflush(stdout);
    if (rc != 0) {
        cli_lib_error(rc, "bisect");
        goto cleanup;
    }
    if (s.json) {
        /* One object, {"summary": {...}}, like the last line of replay --json. */
        json_t *j = result_json(res);
        if (cli_json_print(j ? json_pack("{s:o}", "summary", j) : NULL) != 0) {
            cli_error("bisect: out of memory printing the result");
            goto cleanup;
        }
    } else {
        result_print(res, (const char *const *)(argv + optind), nspecs, n);
    }
    fflush(stdout);
    if (bad > 0) {
        cli_error("bisect: %zu records could not be read", bad);
        goto cleanup;
    }
    ret = CLI_EXIT_OK;
cleanup:
    deja_bisect_result_free(res);
    free(ids);
    free(want);
    deja_store_close(store);
    cli_filter_free(&f);
    return ret;
}
