/*
 * cli/cmd_replay.c -- `deja replay`: re-run traces on a model, diff the
 * outputs, print a verdict per trace and a summary.
 *
 * Also the printing of diffs shared with `deja diff` and `deja bisect`
 * (cli_diff_print, cli_diff_json, cli_parse_double below).
 */
#include "cli.h"
#include "cli_escape.h"
#include "cli_bundle.h"
#include "cli_fleet.h"
#include "cli_tree.h"
#include "cli_watch.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


static const char help[] =
    "usage: deja replay [FILE.deja] [ID...] [filters] --model PLUGIN[:ARG] [--jobs N]\n"
    "                   [--repeat N] [--atol X] [--rtol Y] [--ulps N] [--force] [--isolate]\n"
    "                   [--rules FILE] [--timeout S] [--baseline PLUGIN[:ARG]]\n"
    "                   [--max-diverged N|P%] [--max-hunks N] [--stop-at-first] [--json]\n"
    "       deja replay [FILE.deja] ROOT... --model STEP=SPEC... [--isolated | --chained]\n"
    "                   [--atol X] [--rtol Y] [--ulps N] [--json]\n"
    "\n"
    "Re-run the selected traces on a model plugin, feeding each its recorded inputs,\n"
    "params, seeds, RNG draws and clock reads, and diff the outputs against the\n"
    "recorded ones. Traces: ids or unique id prefixes and/or the filters of `ls`;\n"
    "with neither, every trace in the store. Given a bundle file first, the traces\n"
    "come from the bundle, replayed in place without importing it.\n"
    "\n"
    "Verdicts: same (bit-identical), close (within tolerance), diverged, error, and\n"
    "with --repeat, nondeterministic (the replays disagree among themselves: some\n"
    "source of randomness was not captured; not counted as a regression). The\n"
    "verdict is earned per output: an output that differs from the recording the\n"
    "same way on every repeat is a divergence even when another output varies.\n"
    "A trace recorded as failed is reproduced when the replay fails with the same\n"
    "message after writing the same outputs.\n"
    "\n"
    "  --model PLUGIN[:ARG]  the model to replay on (a path or a bare name such as\n"
    "                     textgen-v4, looked up in $DEJA_PLUGIN_PATH)\n"
    "  --jobs N           replay N traces in parallel (default 1)\n"
    "  --repeat N         replay each trace N times to detect nondeterminism\n"
    "  --atol X           absolute tolerance for floats (default by dtype: 1e-5,\n"
    "                     1e-7 for f64)\n"
    "  --rtol Y           relative tolerance for floats (default by dtype: 1.3e-6\n"
    "                     for f32, 1e-7 f64, 1e-3 f16, 1.6e-2 bf16)\n"
    "  --ulps N           floats at most N units in the last place apart are close\n"
    "  --max-hunks N      describe up to N differing hunks of a text output (default 3)\n"
    "  --force            replay traces recorded by a model of another name\n"
    "  --isolate          run each inference in a child process: a model that crashes\n"
    "                     fails its trace (error), the others still replay\n"
    "  --rules FILE       check the replayed outputs against validation rules\n"
    "                     (deja check --help): exit 1 when one breaks a rule\n"
    "  --baseline PLUGIN[:ARG]  replay each trace on this model too (the version that\n"
    "                     recorded it): an output it also replays differently from\n"
    "                     the recording is noise, reported apart, not a divergence\n"
    "  --max-diverged N|P%  a gate for CI: exit 1 only when more than N traces (or\n"
    "                     P percent of them) diverged, else 0\n"
    "  --timeout S        a trace whose inferences (all repeats) take longer than S\n"
    "                     seconds is an error \"timed out\" (default 300; 0: none);\n"
    "                     with --isolate its worker is killed\n"
    "  --stop-at-first    stop each inference at its first checkpoint that differs\n"
    "                     from the recording (traces recorded with --checkpoints): the\n"
    "                     verdict is that checkpoint's\n"
    "  --json             one JSON object per trace (verdict and diff)\n"
    "\n"
    "Pipelines (a root trace and its steps, recorded with deja_span_parent; see\n"
    "`deja ls --tree`): with --isolated, --chained or a --model STEP=SPEC, each ROOT\n"
    "is replayed step by step. STEP is a step's recorded model name; a bare --model\n"
    "SPEC serves the steps named like its model; a step given no model replays on the\n"
    "model it recorded (deja run and the span API record it), else it is listed as\n"
    "not replayed. The summary names the first step that diverges on its own.\n"
    "  --isolated         feed each step its recorded inputs: each is judged alone\n"
    "                     (the default)\n"
    "  --chained          feed each step what the steps before it produced on replay:\n"
    "                     a recorded input byte-equal to an earlier step's recorded\n"
    "                     output gets that step's replayed output; names the steps\n"
    "                     downstream that changed because of the first divergence\n"
    "  --via URLS         replay on the `deja worker`s of a NATS JetStream fleet\n"
    "                     (credentials in the URL or $NATS_*): same verdicts, summary\n"
    "                     and exit status, each trace exactly once\n"
    "  --trace-model M    only traces recorded by model M (the `ls --model` "
    "filter)\n" CLI_FILTER_HELP_REST "\n"
    "Exit status: 0 when every trace is same, close, noise or nondeterministic, 1 when\n"
    "any diverged (beyond --max-diverged), 2 on trouble (bad selection, model that cannot load, a trace that\n"
    "could not be replayed).\n";


/* Progress is drawn only when a replay lasts longer than this. */
#define PROGRESS_AFTER_NS 300000000LL
#define PROGRESS_WIDTH 30

/* ------------------------------------------------------------------------
 * deja replay
 * ---------------------------------------------------------------------- */

typedef struct replay_state {
    const cli_global *g;
    int json;
    int oom;
    const char *spec;
    unsigned repeat;
    /* Progress bar (stderr on a terminal). */
    int tty;
    int drawn;
    int64_t start_ns;
    pthread_mutex_t lock;
    deja_rules *rules; /* --rules: checked on the replayed outputs */
    size_t invalid;    /* replayed traces that broke a rule */
} replay_state;

/* Erase the progress bar if drawn. Called with the state's lock held. */
static void bar_clear(replay_state *s)
{
    if (s->drawn) {
        fputs("\r\033[K", stderr);
        fflush(stderr);
        s->drawn = 0;
    }
}

/* Progress callback: draw "[#####.....] 12/40" once the replay has lasted
 * long enough to deserve one. */
static void on_progress(size_t done, size_t total, void *payload)
{
    replay_state *s = payload;
    char bar[PROGRESS_WIDTH + 1];
    size_t i, fill;
    if (!s->tty || total < 2 || cli_now_ns() - s->start_ns < PROGRESS_AFTER_NS) {
        return;
    }
    fill = total ? done * PROGRESS_WIDTH / total : 0;
    for (i = 0; i < PROGRESS_WIDTH; i++) {
        bar[i] = i < fill ? '#' : '.';
    }
    bar[PROGRESS_WIDTH] = '\0';
    pthread_mutex_lock(&s->lock);
    fprintf(stderr, "\r[%s] %zu/%zu replayed", bar, done, total);
    fflush(stderr);
    s->drawn = done < total;
    if (done >= total) {
        fputs("\r\033[K", stderr);
    }
    pthread_mutex_unlock(&s->lock);
}

/* Add a JSON array of strings to `o` under `key`; non-zero on failure. */
static int json_set_lines(json_t *o, const char *key, const char *const *v, size_t n)
{
    json_t *a = json_array();
    size_t i;
    if (!a) {
        return -1;
    }
    for (i = 0; i < n; i++) {
        if (json_array_append_new(a, cli_json_text(v[i])) != 0) {
            json_decref(a);
            return -1;
        }
    }
    return json_object_set_new(o, key, a);
}

/* One result as a JSON object. */
static json_t *result_json(const deja_replay_result *r)
{
    char id[DEJA_ID_STRLEN + 1];
    json_t *o = json_object();
    int bad = !o;
    deja_id_format(&r->id, id);
    if (bad) {
        return NULL;
    }
    bad |= json_object_set_new(o, "id", json_string(id));
    bad |= json_object_set_new(o, "verdict", json_string(deja_verdict_name(r->verdict)));
    if (r->trace) {
        bad |= json_object_set_new(
            o, "recorded",
            json_pack("{s:o, s:o}", "model", cli_json_text(r->trace->model_name), "version",
                      cli_json_text(r->trace->model_version)));
    }
    bad |= json_object_set_new(
        o, "replayed",
        json_pack("{s:o, s:o}", "model", cli_json_text(r->model_name), "version",
                  cli_json_text(r->model_version)));
    if (r->error && *r->error) {
        bad |= json_object_set_new(o, "error", cli_json_text(r->error));
    }
    if (r->diff) {
        json_t *d = cli_diff_json(r->diff);
        bad |= !d || json_object_set_new(o, "diff", d) != 0;
    }
    bad |= json_set_lines(o, "environment_changes", r->env, r->nenv) != 0;
    bad |= json_set_lines(o, "unrecorded", r->unrecorded, r->nunrecorded) != 0;
    bad |= json_set_lines(o, "unconsumed", r->unconsumed, r->nunconsumed) != 0;
    bad |= json_set_lines(o, "model_changes", r->model_changes, r->nmodel_changes) != 0;
    bad |= json_set_lines(o, "notes", r->notes, r->nnotes) != 0;
    bad |= json_set_lines(o, "noise", r->noise, r->nnoise) != 0;
    if (r->nvarying > 0 || r->verdict == DEJA_VERDICT_NONDETERMINISTIC) {
        bad |= json_set_lines(o, "varying", r->varying, r->nvarying) != 0;
    }
    if (r->checkpoints) {
        json_t *ck = cli_checkpoint_diff_json(r->checkpoints);
        bad |= !ck || json_object_set_new(o, "checkpoints", ck) != 0;
    }
    if (bad) {
        json_decref(o);
        return NULL;
    }
    return o;
}

/* The number of outputs of `d` that are not bit-identical. */
static size_t ndiffer(const deja_diff *d)
{
    size_t i, k = 0;
    for (i = 0; i < d->ntensors; i++) {
        k += d->tensors[i].kind != DEJA_DIFF_EQUAL;
    }
    return k;
}

/* Print the notes on the comparison of `r` (truncated outputs) and the
 * differences the baseline shows too. */
static void print_notes(const deja_replay_result *r)
{
    size_t i;
    for (i = 0; i < r->nnotes; i++) {
        printf("    note: %s\n", cli_term(r->notes[i]));
    }
    for (i = 0; i < r->nnoise; i++) {
        printf("    noise (the baseline differs too): %s\n", cli_term(r->noise[i]));
    }
}

/* Print one result in the human form. */
static void result_print(const replay_state *s, const deja_replay_result *r)
{
    char id[DEJA_ID_STRLEN + 1];
    size_t i;
    deja_id_format(&r->id, id);
    if (r->env_first && r->nenv > 0) {
        printf("environment: %zu difference%s from the recording that can change numerics:\n",
               r->nenv, r->nenv == 1 ? "" : "s");
        for (i = 0; i < r->nenv; i++) {
            printf("    %s\n", cli_term(r->env[i]));
        }
    }
    {
        const char *vname = r->nnoise > 0 && r->verdict <= DEJA_VERDICT_CLOSE
                                ? "noise"
                                : deja_verdict_name(r->verdict);
        printf("%s  %s%-16s%s", id, cli_sgr(s->g, cli_verdict_sgr(vname)), vname,
               cli_sgr(s->g, CLI_SGR_RESET));
    }
    if (r->checkpoints && r->checkpoints->stopped) {
        printf("  stopped at the first divergent checkpoint: outputs not compared\n");
        cli_checkpoint_diff_print(stdout, r->checkpoints, "    ");
        return;
    }
    switch (r->verdict) {
    case DEJA_VERDICT_SAME:
        if (r->nnoise > 0) {
            printf("  every difference is one the baseline shows too\n");
        } else if (r->trace && r->trace->status == DEJA_STATUS_ERROR) {
            printf("  the recorded failure, reproduced after the same outputs (%s)\n",
                   cli_term(r->diff->summary));
        } else {
            printf("  %s\n", cli_term(r->diff->summary));
        }
        print_notes(r);
        break;
    case DEJA_VERDICT_CLOSE:
        printf("  %zu of %zu output%s within tolerance\n", ndiffer(r->diff), r->diff->ntensors,
               r->diff->ntensors == 1 ? "" : "s");
        cli_diff_print(stdout, r->diff, "    ", "recorded", "replayed");
        print_notes(r);
        break;
    case DEJA_VERDICT_ERROR:
        printf("  %s\n", cli_term(r->error));
        break;
    case DEJA_VERDICT_NONDETERMINISTIC:
        printf("  outputs vary between %u replays:", s->repeat);
        for (i = 0; i < r->nvarying; i++) {
            printf("%s %s", i ? "," : "", cli_term(r->varying[i]));
        }
        if (r->nunrecorded > 0) {
            /* The values were asked of the ctx, which had to make them up. */
            printf("\n    the model asked its ctx for values the recording lacks, made up anew "
                   "on each replay (not counted as a regression):\n");
            for (i = 0; i < r->nunrecorded; i++) {
                printf("    unrecorded: %s\n", cli_term(r->unrecorded[i]));
            }
        } else {
            printf("\n    some source of randomness or time was not captured: the model reads "
                   "it outside deja_ctx (not counted as a regression)\n");
        }
        print_notes(r);
        break;
    default:
        if (r->error && *r->error) {
            printf("  %s\n", cli_term(r->error));
        } else {
            printf("  %zu of %zu output%s differ%s\n", ndiffer(r->diff), r->diff->ntensors,
                   r->diff->ntensors == 1 ? "" : "s", ndiffer(r->diff) == 1 ? "s" : "");
        }
        cli_diff_print(stdout, r->diff, "    ", "recorded", "replayed");
        print_notes(r);
        if (r->nvarying > 0) {
            printf("    also varying between %u replays (not counted):", s->repeat);
            for (i = 0; i < r->nvarying; i++) {
                printf("%s %s", i ? "," : "", cli_term(r->varying[i]));
            }
            printf("\n");
        }
        for (i = 0; i < r->nmodel_changes; i++) {
            printf("    likely cause: %s\n", cli_term(r->model_changes[i]));
        }
        for (i = 0; i < r->nenv; i++) {
            printf("    likely cause: environment: %s\n", cli_term(r->env[i]));
        }
        for (i = 0; i < r->nunrecorded; i++) {
            printf("    likely cause: unrecorded: %s\n", cli_term(r->unrecorded[i]));
        }
        for (i = 0; i < r->nunconsumed; i++) {
            printf("    likely cause: fewer values consumed: %s\n", cli_term(r->unconsumed[i]));
        }
        if (r->nmodel_changes == 0 && r->nenv == 0 && r->nunrecorded == 0 &&
            r->nunconsumed == 0 && s->repeat < 2) {
            printf("    same model version, configuration and weights, same environment: "
                   "--repeat 3 tells nondeterminism from a regression\n");
        }
        break;
    }
}

/* Print how the checkpoints compared, after the result's lines. */
static void result_print_checkpoints(const deja_replay_result *r)
{
    if (r->checkpoints && !r->checkpoints->stopped)
        cli_checkpoint_diff_print(stdout, r->checkpoints, "    ");
}

/* Result callback: print. */
static int on_result(const deja_replay_result *r, void *payload)
{
    replay_state *s = payload;
    pthread_mutex_lock(&s->lock);
    bar_clear(s);
    if (r->trace && r->verdict != DEJA_VERDICT_ERROR && r->model_name &&
        strcmp(r->trace->model_name ? r->trace->model_name : "", r->model_name) != 0) {
        char id[DEJA_ID_STRLEN + 1];
        deja_id_format(&r->id, id);
        fflush(stdout);
        fprintf(stderr,
                "deja: warning: trace %s was recorded by model '%s', replayed on '%s' "
                "(--force)\n",
                id, r->trace->model_name, r->model_name);
    }
    if (s->json) {
        json_t *o = result_json(r);
        int broken = o != NULL && s->rules != NULL ? cli_replay_rules(s->rules, r, o) : 0;

        s->invalid += broken > 0;
        if (broken < 0) {
            json_decref(o);
            o = NULL;
        }
        if (cli_json_print(o) != 0) {
            s->oom = 1;
        }
    } else {
        result_print(s, r);
        result_print_checkpoints(r);
        if (s->rules != NULL)
            s->invalid += cli_replay_rules(s->rules, r, NULL) > 0;
    }
    fflush(stdout);
    pthread_mutex_unlock(&s->lock);
    return s->oom;
}

/* The CI gate of --max-diverged: at most `count` traces, or `percent` of
 * them when `is_percent`. */
typedef struct gate {
    int set;
    int is_percent;
    double limit;
} replay_gate;

/* Parse "N" or "P%" into `g`; 0 or -1. */
static int parse_gate(const char *text, replay_gate *g)
{
    size_t n = strlen(text);
    char buf[64];
    uint64_t u = 0;
    if (n == 0 || n >= sizeof(buf)) {
        return -1;
    }
    if (text[n - 1] == '%') {
        memcpy(buf, text, n - 1);
        buf[n - 1] = '\0';
        if (cli_parse_double(buf, &g->limit) != 0 || g->limit > 100) {
            return -1;
        }
        g->is_percent = 1;
    } else {
        if (cli_parse_u64(text, UINT64_MAX, &u) != 0) {
            return -1;
        }
        g->limit = (double)u;
        g->is_percent = 0;
    }
    g->set = 1;
    return 0;
}

/* `deja replay`'s own option codes, past the shared ones. */
enum { OPT_STOP_AT_FIRST = OPT_REPLAY_END + 20 };

/* `deja replay`. */
int cmd_replay(const cli_global *g, int argc, char **argv)
{
    static const struct option longopts[] = {
        CLI_LONGOPT_HELP,
        CLI_LONGOPT_JSON,
        {"model", required_argument, NULL, OPT_PLUGIN},
        CLI_LONGOPTS_REPLAY,
        {"trace-model", required_argument, NULL, OPT_TRACE_MODEL},
        {"via", required_argument, NULL, CLI_OPT_FLEET_VIA},
        {"rules", required_argument, NULL, OPT_REPLAY_END},
        {"baseline", required_argument, NULL, OPT_REPLAY_BASELINE},
        {"max-diverged", required_argument, NULL, OPT_REPLAY_MAX_DIVERGED},
        {"stop-at-first", no_argument, NULL, OPT_STOP_AT_FIRST},
        CLI_LONGOPTS_FILTER,
        CLI_LONGOPT_END,
    };
    deja_replay_options o = DEJA_REPLAY_OPTIONS_INIT;
    deja_replay_summary sum;
    replay_state s;
    replay_gate gate = {0, 0, 0};
    cli_filter f;
    deja_store *store = NULL;
    deja_bundle *bundle = NULL;
    deja_id *ids = NULL;
    size_t n = 0, bad = 0;
    int64_t now = cli_now_ns();
    int first = 1, ret = CLI_EXIT_TROUBLE, c, rc, r;
    const char *via = NULL;

    if (cli_pipeline_wanted(argc, argv))
        return cli_pipeline_replay(g, argc, argv, help);
    memset(&s, 0, sizeof(s));
    s.g = g;
    memset(&sum, 0, sizeof(sum));
    pthread_mutex_init(&s.lock, NULL);
    cli_filter_init(&f);
    while ((c = cli_getopt_common(argc, argv, longopts, help, &first, &s.json, &ret)) != -1) {
        if (c == OPT_PLUGIN) {
            s.spec = optarg;
        } else if (c == CLI_OPT_FLEET_VIA) {
            via = optarg;
        } else if (c == OPT_REPLAY_END) {
            deja_rules_free(s.rules);
            s.rules = NULL;
            if (cli_rules_load(optarg, &s.rules) != 0)
                goto cleanup;
        } else if (c == OPT_STOP_AT_FIRST) {
            o.stop_at_first = 1;
        } else if (c == OPT_REPLAY_BASELINE) {
            o.baseline = optarg;
        } else if (c == OPT_REPLAY_MAX_DIVERGED) {
            if (parse_gate(optarg, &gate) != 0) {
                cli_error("--max-diverged: expected a count N or a percentage P%%, got '%s'",
                          optarg);
                goto cleanup;
            }
        } else if (c == '?') {
            goto cleanup;
        } else if ((r = cli_replay_option(&o, c, optarg)) != 0) {
            if (r < 0) {
                goto cleanup;
            }
        } else if (cli_filter_option(&f, c == OPT_TRACE_MODEL ? CLI_OPT_MODEL : c, optarg, now) !=
                   1) {
            goto cleanup;
        }
    }
    if (!s.spec) {
        ret = cli_usage_error(help, "replay: --model PLUGIN[:ARG] is required");
        goto cleanup;
    }
    /* `deja replay FILE.deja ...` replays a bundle in place, unimported. */
    if (optind < argc) {
        r = cli_open_source(argv[optind], &store, &bundle);
        if (r < 0) {
            goto cleanup;
        }
        optind += r;
    }
    if (bundle == NULL && cli_store_open_read(g, &store) != 0) {
        goto cleanup;
    }
    if (cli_select(store, argv + optind, (size_t)(argc - optind), &f, &ids, &n, &bad) != 0) {
        goto cleanup;
    }
    if (n == 0) {
        cli_error("replay: no traces selected%s", bad ? " (some records could not be read)" : "");
        goto cleanup;
    }
    s.repeat = o.repeat;
    s.tty = isatty(STDERR_FILENO);
    s.start_ns = cli_now_ns();
    o.progress = on_progress;
    o.progress_payload = &s;
    if (via != NULL && o.stop_at_first) {
        /* The fleet's workers replay to the end: refuse rather than ignore. */
        ret = cli_usage_error(help, "replay: --stop-at-first does not apply with --via");
        goto cleanup;
    }
    if (via != NULL) {
        if (cli_fleet_replay_via(via, store, ids, n, s.spec, &o, on_result, &s, &sum) != 0)
            goto cleanup;
        rc = 0;
    } else {
        if (!o.isolate) {
            cli_crash_guard();
        }
        rc = deja_replay_run(store, ids, n, s.spec, &o, on_result, &s, &sum);
    }
    pthread_mutex_lock(&s.lock);
    bar_clear(&s);
    pthread_mutex_unlock(&s.lock);
    fflush(stdout);
    if (rc != 0) {
        cli_lib_error(rc, "replay: model '%s'", s.spec);
        goto cleanup;
    }
    if (s.oom) {
        cli_error("replay: out of memory printing results");
        goto cleanup;
    }
    if (!s.json) {
        printf("%zu trace%s replayed: %zu same, %zu close, %zu diverged, %zu error", sum.total,
               sum.total == 1 ? "" : "s", sum.same, sum.close, sum.diverged, sum.error);
        if (o.repeat > 1 || sum.nondeterministic) {
            printf(", %zu nondeterministic", sum.nondeterministic);
        }
        if (s.rules != NULL)
            printf("; %zu break a rule", s.invalid);
        if (o.baseline) {
            printf("; %zu with noise the baseline shows too", sum.noisy);
        }
        printf("\n");
        fflush(stdout);
    } else {
        /* The last line: {"summary": {...}}, the counts of the human form. */
        json_t *j = json_pack("{s:{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I}}", "summary", "model",
                              s.spec, "traces", (json_int_t)sum.total, "same",
                              (json_int_t)sum.same, "close", (json_int_t)sum.close,
                              "nondeterministic", (json_int_t)sum.nondeterministic, "diverged",
                              (json_int_t)sum.diverged, "error", (json_int_t)sum.error,
                              "unreadable", (json_int_t)bad);
        if (cli_json_print(j) != 0) {
            cli_error("replay: out of memory printing the summary");
            goto cleanup;
        }
    }
    if (sum.error > 0 || bad > 0) {
        cli_error("replay: %zu of %zu traces could not be replayed%s", sum.error + bad,
                  sum.total + bad,
                  sum.name_mismatch && !o.force ? " (recorded by another model: see --force)" : "");
        goto cleanup;
    }
    if (gate.set) {
        double allowed = gate.is_percent ? gate.limit * (double)sum.total / 100.0 : gate.limit;
        int pass = (double)sum.diverged <= allowed;
        fprintf(stderr, "deja: replay: %zu of %zu traces diverged on %s; at most %g%s allowed: %s\n",
                sum.diverged, sum.total, s.spec, gate.limit, gate.is_percent ? "%" : "",
                pass ? "pass" : "FAIL");
        ret = pass ? CLI_EXIT_OK : CLI_EXIT_DIFF;
        goto cleanup;
    }
    if (sum.diverged > 0) {
        fprintf(stderr, "deja: replay: %zu of %s diverged on %s\n", sum.diverged,
                cli_count(sum.total, "trace"), s.spec);
        ret = CLI_EXIT_DIFF;
        goto cleanup;
    }
    if (s.invalid > 0) {
        fprintf(stderr, "deja: replay: %zu of %zu replayed traces break a rule\n", s.invalid,
                sum.total);
        ret = CLI_EXIT_DIFF;
        goto cleanup;
    }
    ret = CLI_EXIT_OK;
cleanup:
    deja_rules_free(s.rules);
    free(ids);
    if (bundle != NULL) {
        deja_bundle_close(bundle);
    } else {
        deja_store_close(store);
    }
    cli_filter_free(&f);
    pthread_mutex_destroy(&s.lock);
    return ret;
}
