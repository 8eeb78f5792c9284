/*
 * cli/cli_pipeline.c -- `deja replay ROOT --model STEP=SPEC ...`: replay a
 * pipeline run step by step (isolated or chained) and say which step went
 * wrong first, and which steps downstream changed because of it.
 */
#include "cli_bundle.h"
#include "cli_escape.h"
#include "cli_tree.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

enum {
    OPT_PIPE_ISOLATED = OPT_REPLAY_END + 50,
    OPT_PIPE_CHAINED,
};

/* At most this many --model options. */
#define MAX_MODELS 256

int cli_step_spec(const char *arg, char **step, const char **spec)
{
    const char *eq = strchr(arg, '=');
    const char *p;
    *step = NULL;
    *spec = arg;
    if (eq == NULL || eq == arg || eq[1] == '\0')
        return 0;
    for (p = arg; p < eq; p++) {
        if (!isalnum((unsigned char)*p) && *p != '_' && *p != '-' && *p != '.')
            return 0;
    }
    *step = strndup(arg, (size_t)(eq - arg));
    if (*step == NULL)
        return -1;
    *spec = eq + 1;
    return 1;
}

int cli_pipeline_wanted(int argc, char **argv)
{
    int i;
    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *value = NULL;
        char *step = NULL;
        const char *spec;
        int r;
        if (strcmp(a, "--") == 0)
            break;
        if (strcmp(a, "--isolated") == 0 || strcmp(a, "--chained") == 0)
            return 1;
        if (strcmp(a, "--model") == 0 && i + 1 < argc)
            value = argv[++i];
        else if (strncmp(a, "--model=", 8) == 0)
            value = a + 8;
        if (value == NULL)
            continue;
        r = cli_step_spec(value, &step, &spec);
        free(step);
        if (r != 0)
            return 1;
    }
    return 0;
}

typedef struct pipe_state {
    const cli_global *g;
    int json;
    deja_pipeline_options o;
    size_t roots, diverged, errors, not_replayed;
} pipe_state;

static const char *mode_name(deja_pipeline_mode m)
{
    return m == DEJA_PIPELINE_CHAINED ? "chained" : "isolated";
}

static json_t *id_json(const deja_id *id)
{
    char text[DEJA_ID_STRLEN + 1];
    deja_id_format(id, text);
    return cli_json_text(text);
}

/* A step as {"id", "step"}. */
static json_t *step_ref_json(const deja_tree_node *n)
{
    return json_pack("{s:o, s:o}", "id", id_json(&n->id), "step", cli_json_text(n->model_name));
}

/* One step of the result as JSON (the `pipeline_step` object). */
static json_t *step_json(const deja_pipeline_result *r, size_t i)
{
    const deja_tree_node *n = &r->tree->nodes[i];
    const deja_step_result *s = &r->steps[i];
    const int replayed = s->skip == DEJA_STEP_REPLAYED;
    json_t *o = json_pack(
        "{s:o, s:o, s:o, s:I, s:o, s:o, s:b, s:o, s:o, s:o, s:o, s:o, s:o, s:I, s:b, s:o, s:b, "
        "s:b, s:o}",
        "root", id_json(&r->tree->nodes[0].id), "id", id_json(&n->id), "parent",
        n->parent != DEJA_TREE_NONE ? id_json(&r->tree->nodes[n->parent].id) : json_null(),
        "depth", (json_int_t)n->depth, "step", cli_json_text(n->model_name), "recorded_version",
        cli_json_text(n->model_version), "replayed", replayed, "not_replayed",
        replayed ? json_null()
                 : json_string(s->skip == DEJA_STEP_RUN ? "run" : "no_model"),
        "spec", s->spec ? cli_json_text(s->spec) : json_null(), "version",
        s->model_version ? cli_json_text(s->model_version) : json_null(), "verdict",
        replayed ? json_string(deja_verdict_name(s->verdict)) : json_null(), "detail",
        cli_json_text(s->detail), "mode", json_string(mode_name(r->mode)), "fed",
        (json_int_t)s->nfed, "fed_changed", s->fed_changed, "alone",
        s->fed_changed ? json_string(deja_verdict_name(s->alone)) : json_null(), "own", s->own,
        "affected", s->affected, "cause",
        s->cause != DEJA_TREE_NONE ? id_json(&r->tree->nodes[s->cause].id) : json_null());
    json_t *env = json_array();
    int bad = o == NULL || env == NULL;
    for (size_t k = 0; !bad && k < s->nenv; k++)
        bad = json_array_append_new(env, cli_json_text(s->env[k])) != 0;
    /* json_object_set_new takes the reference, also when it fails. */
    if (!bad)
        bad = json_object_set_new(o, "environment_changes", env) != 0;
    else
        json_decref(env);
    if (bad) {
        json_decref(o);
        o = NULL;
    }
    if (o != NULL && json_object_set_new(o, "diff", s->diff ? cli_diff_json(s->diff)
                                                            : json_null()) != 0) {
        json_decref(o);
        o = NULL;
    }
    return o;
}

/* The summary of one pipeline as JSON (the `pipeline_summary` object). */
static json_t *summary_json(const deja_pipeline_result *r)
{
    json_t *aff = json_array(), *skipped = json_array(), *o;
    size_t i;
    int bad = aff == NULL || skipped == NULL;
    for (i = 0; !bad && i < r->tree->nnodes; i++) {
        const deja_tree_node *n = &r->tree->nodes[i];
        if (r->steps[i].affected)
            bad = json_array_append_new(aff, step_ref_json(n)) != 0;
        if (!bad && r->steps[i].skip == DEJA_STEP_NO_MODEL)
            bad = json_array_append_new(skipped, step_ref_json(n)) != 0;
    }
    if (bad) {
        json_decref(aff);
        json_decref(skipped);
        return NULL;
    }
    o = json_pack("{s:o, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:o, s:o, s:o}", "root",
                  id_json(&r->tree->nodes[0].id), "mode", mode_name(r->mode), "steps",
                  (json_int_t)r->tree->nnodes, "replayed", (json_int_t)r->replayed, "same",
                  (json_int_t)r->same, "close", (json_int_t)r->close, "diverged",
                  (json_int_t)r->diverged, "error", (json_int_t)r->error, "affected",
                  (json_int_t)r->affected, "first_divergence",
                  r->first != DEJA_TREE_NONE ? step_ref_json(&r->tree->nodes[r->first])
                                             : json_null(),
                  "affected_steps", aff, "not_replayed", skipped);
    return o;
}

/* The human form of one pipeline's replay. */
static void print_result(const pipe_state *ps, const deja_pipeline_result *r)
{
    const deja_tree *t = r->tree;
    char root[DEJA_ID_STRLEN + 1], sid[DEJA_ID_STRLEN + 1];
    size_t i;
    int any;
    deja_id_format(&t->nodes[0].id, root);
    printf("pipeline %s (%s, %s)\n", root, mode_name(r->mode), cli_count(t->nnodes, "trace"));
    for (i = 0; i < t->nnodes; i++) {
        const deja_tree_node *n = &t->nodes[i];
        const deja_step_result *s = &r->steps[i];
        const char *verdict = s->skip == DEJA_STEP_REPLAYED ? deja_verdict_name(s->verdict)
                              : s->skip == DEJA_STEP_RUN   ? "run"
                                                           : "skipped";
        printf("  %*s", (int)(2 * n->depth), "");
        deja_id_format(&n->id, sid);
        printf("%s  ", sid);
        cli_put_term(stdout, n->model_name);
        putchar('@');
        cli_put_term(stdout, n->model_version);
        printf("  %s%s%s", cli_sgr(ps->g, cli_verdict_sgr(verdict)), verdict,
               cli_sgr(ps->g, CLI_SGR_RESET));
        if (s->skip == DEJA_STEP_RUN) {
            fputs("  the run itself, not replayed\n", stdout);
            continue;
        }
        if (s->skip == DEJA_STEP_NO_MODEL) {
            fputs("  not replayed: no --model ", stdout);
            cli_put_term(stdout, n->model_name);
            fputs("=SPEC given and no model recorded\n", stdout);
            continue;
        }
        fputs("  on ", stdout);
        cli_put_term(stdout, s->spec);
        if (s->model_version != NULL) {
            fputs(" (version ", stdout);
            cli_put_term(stdout, s->model_version);
            fputc(')', stdout);
        }
        if (s->nfed > 0)
            printf(", fed %zu replayed input%s%s", s->nfed, s->nfed == 1 ? "" : "s",
                   s->fed_changed ? " that changed" : "");
        fputs(": ", stdout);
        cli_put_term(stdout, s->detail);
        if (s->affected && s->cause != DEJA_TREE_NONE) {
            deja_id_format(&t->nodes[s->cause].id, sid);
            fputs(" [because of ", stdout);
            cli_put_term(stdout, t->nodes[s->cause].model_name);
            printf(" %s; on its recorded inputs: %s]", sid, deja_verdict_name(s->alone));
        } else if (s->affected) {
            printf(" [because of what it was fed; on its recorded inputs: %s]",
                   deja_verdict_name(s->alone));
        } else if (s->fed_changed && s->own) {
            printf(" [diverges on its recorded inputs too: %s]", deja_verdict_name(s->alone));
        }
        fputc('\n', stdout);
        for (size_t k = 0; k < s->nenv && !s->affected; k++) {
            printf("  %*s    likely cause: ", (int)(2 * n->depth), "");
            cli_put_term(stdout, s->env[k]);
            fputc('\n', stdout);
        }
    }
    if (r->first != DEJA_TREE_NONE) {
        const deja_tree_node *n = &t->nodes[r->first];
        deja_id_format(&n->id, sid);
        fputs("first divergence: step ", stdout);
        cli_put_term(stdout, n->model_name);
        printf(" (%s): ", sid);
        cli_put_term(stdout, r->steps[r->first].detail);
        fputc('\n', stdout);
    } else {
        printf("first divergence: none\n");
    }
    if (r->mode == DEJA_PIPELINE_CHAINED) {
        fputs("affected downstream:", stdout);
        for (i = 0, any = 0; i < t->nnodes; i++) {
            if (!r->steps[i].affected)
                continue;
            deja_id_format(&t->nodes[i].id, sid);
            fputs(any ? ", " : " ", stdout);
            cli_put_term(stdout, t->nodes[i].model_name);
            printf(" (%s)", sid);
            any = 1;
        }
        fputs(any ? "\n" : " none\n", stdout);
    }
    for (i = 0, any = 0; i < t->nnodes; i++) {
        if (r->steps[i].skip != DEJA_STEP_NO_MODEL)
            continue;
        deja_id_format(&t->nodes[i].id, sid);
        fputs(any ? ", " : "not replayed (give --model STEP=SPEC):", stdout);
        fputs(any ? "" : " ", stdout);
        cli_put_term(stdout, t->nodes[i].model_name);
        printf(" (%s)", sid);
        any = 1;
    }
    if (any)
        fputc('\n', stdout);
    printf("summary: %s replayed: %zu same, %zu close, %zu diverged, %zu error", 
           cli_count(r->replayed, "step"), r->same, r->close, r->diverged, r->error);
    if (r->mode == DEJA_PIPELINE_CHAINED)
        printf(" (%zu because of upstream)", r->affected);
    fputc('\n', stdout);
}

/* Replay one root and print it. Returns 0, or CLI_EXIT_TROUBLE after a
 * message. */
static int replay_root(pipe_state *ps, deja_store *store, const deja_id *root)
{
    deja_pipeline_result *r = NULL;
    size_t i;
    int ret = CLI_EXIT_TROUBLE;
    int rc = deja_pipeline_replay(store, root, &ps->o, &r);
    if (rc != 0) {
        char id[DEJA_ID_STRLEN + 1];
        deja_id_format(root, id);
        cli_lib_error(rc, "replay: pipeline %s", id);
        goto cleanup;
    }
    cli_tree_warn(r->tree);
    if (ps->json) {
        for (i = 0; i < r->tree->nnodes; i++) {
            if (cli_json_print(step_json(r, i)) < 0) {
                cli_error("out of memory");
                goto cleanup;
            }
        }
        if (cli_json_print(summary_json(r)) < 0) {
            cli_error("out of memory");
            goto cleanup;
        }
    } else {
        print_result(ps, r);
    }
    ps->roots++;
    ps->diverged += r->diverged;
    ps->errors += r->error;
    ps->not_replayed += r->skipped;
    ret = 0;

cleanup:
    deja_pipeline_result_free(r);
    return ret;
}

/* Collects the top-level traces a filter selects. */
typedef struct root_list {
    deja_id *ids;
    size_t n, cap, limit;
    int failed;
} root_list;

static int on_root(const deja_trace *t, void *payload)
{
    root_list *l = payload;
    if (t->has_parent)
        return 0;
    if (cli_ids_push(&l->ids, &l->n, &l->cap, &t->id) != 0) {
        l->failed = 1;
        return 1;
    }
    return 0;
}

static int on_unreadable(const deja_id *id, int code, const char *message, void *payload)
{
    (void)payload;
    cli_bad_record(id, code, message);
    return 0;
}

/* The pipeline runs a filter selects: top-level traces that have steps,
 * newest first; --limit counts runs. Two scans of the store in all.
 * Returns 0, or CLI_EXIT_TROUBLE after a message. */
static int select_runs(deja_store *store, const cli_filter *f, deja_id **out, size_t *n)
{
    deja_filter filter = f->filter;
    root_list l = {0};
    deja_tree *t = NULL;
    size_t i, k = 0;
    int rc, ret = CLI_EXIT_TROUBLE;
    *out = NULL;
    *n = 0;
    filter.limit = 0;
    rc = deja_store_list(store, &filter, on_root, on_unreadable, &l);
    if (rc != 0 || l.failed) {
        cli_lib_error(rc ? rc : DEJA_ENOMEM, "replay: selecting pipeline runs");
        goto cleanup;
    }
    if (l.n > DEJA_TREE_MAX_NODES) {
        cli_error("replay: %zu top-level traces selected; select at most %d runs at once "
                  "(--limit, --since)", l.n, DEJA_TREE_MAX_NODES);
        goto cleanup;
    }
    rc = deja_tree_get(store, l.ids, l.n, &t);
    if (rc != 0) {
        cli_lib_error(rc, "replay: selecting pipeline runs");
        goto cleanup;
    }
    for (i = 0; i < t->nnodes && (f->filter.limit == 0 || k < f->filter.limit); i++) {
        if (t->nodes[i].depth == 0 && t->nodes[i].nsteps > 0)
            l.ids[k++] = t->nodes[i].id;
    }
    *out = l.ids;
    *n = k;
    l.ids = NULL;
    ret = 0;

cleanup:
    deja_tree_free(t);
    free(l.ids);
    return ret;
}

int cli_pipeline_replay(const cli_global *g, int argc, char **argv, const char *help)
{
    static const struct option longopts[] = {
        CLI_LONGOPT_HELP,
        CLI_LONGOPT_JSON,
        {"model", required_argument, NULL, OPT_PLUGIN},
        {"isolated", no_argument, NULL, OPT_PIPE_ISOLATED},
        {"chained", no_argument, NULL, OPT_PIPE_CHAINED},
        {"atol", required_argument, NULL, OPT_ATOL},
        {"rtol", required_argument, NULL, OPT_RTOL},
        {"ulps", required_argument, NULL, OPT_ULPS},
        {"trace-model", required_argument, NULL, OPT_TRACE_MODEL},
        CLI_LONGOPTS_FILTER,
        CLI_LONGOPT_END,
    };
    deja_replay_options ro = DEJA_REPLAY_OPTIONS_INIT;
    deja_step_model models[MAX_MODELS];
    char *steps[MAX_MODELS];
    size_t nmodels = 0, n = 0, bad = 0, i;
    pipe_state ps;
    cli_filter f;
    deja_store *store = NULL;
    deja_bundle *bundle = NULL;
    deja_id *ids = NULL;
    int64_t now = cli_now_ns();
    int first = 1, ret = CLI_EXIT_TROUBLE, c, r, mode_given = 0;

    memset(&ps, 0, sizeof ps);
    ps.g = g;
    ps.o = (deja_pipeline_options)DEJA_PIPELINE_OPTIONS_INIT;
    cli_filter_init(&f);
    while ((c = cli_getopt_common(argc, argv, longopts, help, &first, &ps.json, &ret)) != -1) {
        if (c == OPT_PLUGIN) {
            const char *spec;
            if (nmodels == MAX_MODELS) {
                cli_error("replay: more than %d --model options", MAX_MODELS);
                goto cleanup;
            }
            if (cli_step_spec(optarg, &steps[nmodels], &spec) < 0) {
                cli_error("out of memory");
                goto cleanup;
            }
            models[nmodels].step = steps[nmodels];
            models[nmodels].spec = spec;
            nmodels++;
        } else if (c == OPT_PIPE_ISOLATED || c == OPT_PIPE_CHAINED) {
            deja_pipeline_mode m = c == OPT_PIPE_CHAINED ? DEJA_PIPELINE_CHAINED
                                                         : DEJA_PIPELINE_ISOLATED;
            if (mode_given && ps.o.mode != m) {
                ret = cli_usage_error(help, "replay: --isolated and --chained exclude each other");
                goto cleanup;
            }
            ps.o.mode = m;
            mode_given = 1;
        } else if (c == '?') {
            goto cleanup;
        } else if ((r = cli_replay_option(&ro, c, optarg)) != 0) {
            if (r < 0)
                goto cleanup;
        } else if (cli_filter_option(&f, c == OPT_TRACE_MODEL ? CLI_OPT_MODEL : c, optarg, now) !=
                   1) {
            goto cleanup;
        }
    }
    ps.o.diff = ro.diff;
    ps.o.models = models;
    ps.o.nmodels = nmodels;
    if (optind < argc) {
        r = cli_open_source(argv[optind], &store, &bundle);
        if (r < 0)
            goto cleanup;
        optind += r;
    }
    if (bundle == NULL && cli_store_open_read(g, &store) != 0)
        goto cleanup;
    if (optind == argc && !f.given) {
        ret = cli_usage_error(help, "replay: a pipeline replay needs ROOT ids or filters");
        goto cleanup;
    }
    /* Given by id: each one (a step is refused with the root to use);
     * chosen by filters: the runs among the top-level traces. */
    if (optind < argc) {
        if (cli_select(store, argv + optind, (size_t)(argc - optind), &f, &ids, &n, &bad) != 0)
            goto cleanup;
    } else if (select_runs(store, &f, &ids, &n) != 0) {
        goto cleanup;
    }
    for (i = 0; i < n; i++) {
        if (replay_root(&ps, store, &ids[i]) != 0)
            goto cleanup;
    }
    if (ps.roots == 0) {
        cli_error("replay: no pipeline selected%s",
                  bad ? " (some records could not be read)" : "");
        goto cleanup;
    }
    fflush(stdout);
    if (ps.errors > 0) {
        cli_error("replay: %zu step%s could not be replayed", ps.errors,
                  ps.errors == 1 ? "" : "s");
        goto cleanup;
    }
    ret = ps.diverged > 0 ? CLI_EXIT_DIFF : CLI_EXIT_OK;

cleanup:
    for (i = 0; i < nmodels; i++)
        free(steps[i]);
    free(ids);
    cli_filter_free(&f);
    if (bundle != NULL)
        deja_bundle_close(bundle);
    else
        deja_store_close(store);
    return ret;
}

int cli_pipeline_steps(deja_store *store, const deja_id *ids, size_t n, const char *step,
                       deja_id **out, size_t *nout)
{
    deja_tree *t = NULL;
    deja_id *v = NULL;
    size_t i, k = 0;
    int rc, ret = CLI_EXIT_TROUBLE;
    *out = NULL;
    *nout = 0;
    rc = deja_tree_get(store, ids, n, &t);
    if (rc != 0) {
        cli_lib_error(rc, "pipeline steps");
        goto cleanup;
    }
    cli_tree_warn(t);
    v = malloc((t->nnodes ? t->nnodes : 1) * sizeof *v);
    if (v == NULL) {
        cli_error("out of memory");
        goto cleanup;
    }
    for (i = 0; i < t->nnodes; i++) {
        if (t->nodes[i].has_parent && strcmp(t->nodes[i].model_name, step) == 0)
            v[k++] = t->nodes[i].id;
    }
    if (k == 0) {
        cli_error("no step named '%s' in the %s selected", step, cli_count(n, "pipeline"));
        goto cleanup;
    }
    *out = v;
    *nout = k;
    v = NULL;
    ret = 0;

cleanup:
    free(v);
    deja_tree_free(t);
    return ret;
}

int cli_pipeline_expand(deja_store *store, deja_id **ids, size_t *n)
{
    deja_tree *t = NULL;
    deja_id *v = NULL;
    size_t i;
    int rc = deja_tree_get(store, *ids, *n, &t);
    if (rc != 0)
        return cli_lib_error(rc, "the steps of the selected traces");
    cli_tree_warn(t);
    v = malloc((t->nnodes ? t->nnodes : 1) * sizeof *v);
    if (v == NULL) {
        deja_tree_free(t);
        return cli_error("out of memory");
    }
    for (i = 0; i < t->nnodes; i++)
        v[i] = t->nodes[i].id;
    free(*ids);
    *ids = v;
    *n = t->nnodes;
    deja_tree_free(t);
    return 0;
}
