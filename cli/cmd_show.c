/*
 * cli/cmd_show.c -- `deja show ID`: one trace in full, as text, JSON or a
 * bug-report-ready Markdown summary.
 */
#include "cli.h"
#include "cli_bundle.h"
#include "cli_escape.h"
#include "cli_tree.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

static const char help[] =
    "usage: deja show ID [--json [--values] | --md]\n"
    "       deja show FILE.deja [ID] [--json [--values] | --md]\n"
    "\n"
    "Show one trace in full. ID is a trace id or any unique prefix of one.\n"
    "Given a bundle file, show what it holds, or one of its traces, without\n"
    "importing it.\n"
    "\n"
    "  --json   the complete trace as one JSON object: tensors with their data\n"
    "           (\"text\" for UTF-8 text, else \"base64\", byte-exact), params, seeds,\n"
    "           RNG streams with every draw (u64 values as decimal strings), clock\n"
    "           reads, tags, and the environment\n"
    "  --values with --json, numeric tensors as \"values\": a flat row-major array of\n"
    "           numbers (f16/bf16 decoded; NaN and infinities as \"nan\", \"inf\",\n"
    "           \"-inf\"; 64-bit integers beyond 2^53 as strings), instead of base64\n"
    "  --md     a Markdown summary for a bug report, with the command that replays it\n"
    "\n"
    "A trace that is part of a pipeline run (it has a parent or steps: deja_span_parent)\n"
    "is followed by the run's tree, this trace marked; with --json, its \"pipeline\" key;\n"
    "with --md, a Pipeline section with the command that replays the run step by step.\n";

#define PREVIEW_CHARS 200
#define MAX_SHOWN 8

/* Print the params as "k=v k=v". */
static void print_params(FILE *fp, const deja_trace *t)
{
    for (size_t i = 0; i < t->nparams; i++) {
        const deja_param *p = &t->params[i];
        fputs(i ? " " : "", fp);
        cli_put_term(fp, p->key);
        fputc('=', fp);
        if (p->kind == DEJA_PARAM_NUM) {
            char num[40];
            cli_format_double(p->num, num, sizeof num);
            fputs(num, fp);
        } else if (p->kind == DEJA_PARAM_STR) {
            fputc('"', fp);
            cli_put_term(fp, p->str);
            fputc('"', fp);
        } else
            fputs(p->flag ? "true" : "false", fp);
    }
}

/* Print the tensors, one per line, indented. */
static void print_tensors(FILE *fp, const char *indent, const deja_tensor *ts, size_t n,
                          size_t max_chars)
{
    for (size_t i = 0; i < n; i++) {
        char shape[160];
        cli_format_shape(&ts[i], shape, sizeof shape);
        fputs(indent, fp);
        cli_put_term(fp, ts[i].name);
        fprintf(fp, "  %s  %zu bytes  ", shape, ts[i].size);
        cli_print_preview(fp, &ts[i], max_chars);
        fputc('\n', fp);
    }
}

/* Print `s` (NULL as "?") for the terminal, or as a Markdown code span. */
static void put_field(FILE *fp, const char *s, int md)
{
    if (md)
        cli_put_md_code(fp, s != NULL ? s : "?", 0);
    else
        cli_put_term(fp, s != NULL ? s : "?");
}

/* A one-line summary of an environment, for the terminal or Markdown. */
static void print_env_summary(FILE *fp, const deja_env *e, int md)
{
    char mem[32];

    cli_format_bytes(e->memory_bytes, mem, sizeof mem);
    put_field(fp, e->arch, md);
    fputc(' ', fp);
    put_field(fp, e->cpu_model, md);
    fprintf(fp, ", %u cores, %s memory, ", e->cores, mem);
    put_field(fp, e->os, md);
    fputc(' ', fp);
    put_field(fp, e->kernel, md);
    fputs(", ", fp);
    put_field(fp, e->libc, md);
    fputs(", ", fp);
    put_field(fp, e->compiler, md);
    fprintf(fp, ", %u threads, fp ", e->threads);
    put_field(fp, e->fp_rounding, md);
    fprintf(fp, "%s%s", e->ftz ? " ftz" : "", e->daz ? " daz" : "");
    for (size_t i = 0; i < e->ngpus; i++) {
        fputs(", gpu ", fp);
        put_field(fp, e->gpus[i], md);
    }
}

/* The human form. */
/* A pin: whether the trace is pinned, since when and why. */
typedef struct pin_info {
    int pinned;
    char *note;
    int64_t at_ns;
    uint64_t repeats; /* identical requests left out by dedup sampling */
} pin_info;

static void show_text(const deja_trace *t, const deja_env *env, const pin_info *pin)
{
    char id[DEJA_ID_STRLEN + 1];
    char local[64], utc[64], dur[32];
    char *digest = cli_hex(t->model_digest, t->model_digest_size);

    deja_id_format(&t->id, id);
    cli_format_local(t->start_ns, local, sizeof local);
    cli_format_utc(t->start_ns, utc, sizeof utc);
    cli_format_duration(t->duration_ns, dur, sizeof dur);
    printf("trace     %s\n", id);
    printf("start     %s (%s)\n", local, utc);
    printf("duration  %s\n", dur);
    fputs("model     ", stdout);
    cli_put_term(stdout, t->model_name);
    fputc(' ', stdout);
    cli_put_term(stdout, t->model_version);
    fputc('\n', stdout);
    printf("digest    %s\n", digest && digest[0] ? digest : "-");
    printf("status    %s\n", cli_status_name(t->status));
    if (t->status != DEJA_STATUS_OK || (t->error && t->error[0])) {
        fputs("error     ", stdout);
        cli_put_term(stdout, t->error);
        fputc('\n', stdout);
    }
    if (t->has_parent) {
        char parent[DEJA_ID_STRLEN + 1];
        deja_id_format(&t->parent, parent);
        printf("parent    %s\n", parent);
    }
    if (pin->pinned) {
        char at[64];

        cli_format_local(pin->at_ns, at, sizeof at);
        printf("pinned    %s%s%s\n", at, pin->note[0] ? ": " : "", pin->note);
    }
    if (pin->repeats > 0)
        printf("repeats   %llu more identical requests (dedup sampling)\n",
               (unsigned long long)pin->repeats);
    fputs("tags      ", stdout);
    if (t->ntags == 0)
        fputc('-', stdout);
    for (size_t i = 0; i < t->ntags; i++) {
        fputs(i ? " " : "", stdout);
        cli_put_term(stdout, t->tags[i].key);
        fputc('=', stdout);
        cli_put_term(stdout, t->tags[i].value);
    }
    fputs("\nparams    ", stdout);
    if (t->nparams == 0)
        fputc('-', stdout);
    print_params(stdout, t);
    fputc('\n', stdout);
    printf("inputs    %zu\n", t->ninputs);
    print_tensors(stdout, "  ", t->inputs, t->ninputs, PREVIEW_CHARS);
    printf("outputs   %zu\n", t->noutputs);
    print_tensors(stdout, "  ", t->outputs, t->noutputs, PREVIEW_CHARS);
    cli_checkpoints_print(stdout, t);
    printf("seeds     %zu\n", t->nseeds);
    for (size_t i = 0; i < t->nseeds; i++) {
        fputs("  ", stdout);
        cli_put_term(stdout, t->seeds[i].name);
        printf(" = %llu\n", (unsigned long long)t->seeds[i].value);
    }
    printf("rng       %zu streams\n", t->nrng);
    for (size_t i = 0; i < t->nrng; i++) {
        const deja_rng_stream *r = &t->rng[i];
        fputs("  ", stdout);
        cli_put_term(stdout, r->name);
        printf("  seed %llu, %zu draws", (unsigned long long)r->seed, r->ndraws);
        for (size_t k = 0; k < r->ndraws && k < 3; k++)
            printf("%s%016llx", k ? " " : ": ", (unsigned long long)r->draws[k]);
        printf("%s\n", r->ndraws > 3 ? " ..." : "");
    }
    printf("clock     %zu reads\n", t->nclock);
    for (size_t i = 0; i < t->nclock && i < MAX_SHOWN; i++) {
        cli_format_utc(t->clock_ns[i], utc, sizeof utc);
        printf("  %lld  %s\n", (long long)t->clock_ns[i], utc);
    }
    if (t->nclock > MAX_SHOWN)
        printf("  ... %zu more\n", t->nclock - MAX_SHOWN);
    if (t->has_env) {
        char d[33];
        deja_digest_format(&t->env, d);
        printf("env       %s\n", d);
        if (env != NULL) {
            fputs("  ", stdout);
            print_env_summary(stdout, env, 0);
            fputc('\n', stdout);
            for (size_t i = 0; i < env->nvars; i++) {
                if (deja_env_var_is_secret(env->vars[i].key))
                    continue; /* recorded before secrets were kept out */
                fputs("  ", stdout);
                cli_put_term(stdout, env->vars[i].key);
                fputc('=', stdout);
                cli_put_term(stdout, env->vars[i].value);
                fputc('\n', stdout);
            }
        }
    } else {
        printf("env       -\n");
    }
    free(digest);
}

/* For a trace recorded by deja proxy (params server.address and url.path):
 * the endpoint it was answered by, "http://HOST:PORT/v1", which is what
 * replays it. Returns 1 with it in `out`, else 0. */
static int endpoint_guess(const deja_trace *t, char *out, size_t cap)
{
    static const char *const ops[] = {"/chat/completions", "/completions", "/embeddings"};
    const char *server = NULL, *path = NULL;
    for (size_t i = 0; i < t->nparams; i++) {
        if (t->params[i].kind != DEJA_PARAM_STR)
            continue;
        if (strcmp(t->params[i].key, "server.address") == 0)
            server = t->params[i].str;
        else if (strcmp(t->params[i].key, "url.path") == 0)
            path = t->params[i].str;
    }
    if (server == NULL || path == NULL)
        return 0;
    size_t n = strlen(path);
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        size_t k = strlen(ops[i]);
        if (n >= k && strcmp(path + n - k, ops[i]) == 0) {
            snprintf(out, cap, "%s%.*s", server, (int)(n - k), path);
            return 1;
        }
    }
    return 0;
}

/* The Markdown form: every recorded string in a code span or escaped, only
 * the environment variables the README lists, and nothing of this machine
 * (no path of the store). */
static void show_md(const deja_trace *t, const deja_env *env)
{
    char id[DEJA_ID_STRLEN + 1];
    char utc[64], dur[32], plugin[512];
    char *digest = cli_hex(t->model_digest, t->model_digest_size);

    deja_id_format(&t->id, id);
    cli_format_utc(t->start_ns, utc, sizeof utc);
    cli_format_duration(t->duration_ns, dur, sizeof dur);
    if (!endpoint_guess(t, plugin, sizeof plugin))
        plugin[0] = '\0';
    printf("## deja trace `%s`\n\n", id);
    printf("| field | value |\n|---|---|\n");
    fputs("| model | ", stdout);
    cli_put_md_code(stdout, t->model_name, 1);
    fputs(" |\n| version | ", stdout);
    cli_put_md_code(stdout, t->model_version, 1);
    fputs(" |\n", stdout);
    printf("| weights digest | `%s` |\n", digest && digest[0] ? digest : "-");
    if (t->has_model_config) {
        fputs("| configuration | ", stdout);
        cli_put_md_code(stdout, t->model_config[0] ? t->model_config : "(no ARG)", 1);
        fputs(" |\n", stdout);
    }
    printf("| recorded | %s |\n", utc);
    printf("| duration | %s |\n", dur);
    printf("| status | %s |\n", cli_status_name(t->status));
    if (t->error && t->error[0]) {
        fputs("| error | ", stdout);
        cli_put_md_text(stdout, t->error);
        fputs(" |\n", stdout);
    }
    if (t->ntags > 0) {
        fputs("| tags |", stdout);
        for (size_t i = 0; i < t->ntags; i++) {
            fputc(' ', stdout);
            cli_md_kv(stdout, t->tags[i].key, t->tags[i].value, 1);
        }
        fputs(" |\n", stdout);
    }
    if (t->nparams > 0) {
        fputs("| params |", stdout);
        cli_md_params(stdout, t);
        fputs(" |\n", stdout);
    }
    if (t->has_parent) {
        char parent[DEJA_ID_STRLEN + 1];
        deja_id_format(&t->parent, parent);
        printf("| parent | `%s` |\n", parent);
    }
    printf("\n### Environment\n\n");
    if (env != NULL) {
        char d[33];
        deja_digest_format(&t->env, d);
        printf("- digest `%s`\n- ", d);
        print_env_summary(stdout, env, 1);
        fputc('\n', stdout);
        cli_md_env_vars(stdout, env);
    } else {
        printf("(not recorded)\n");
    }
    cli_md_trace_data(stdout, t, "###");
    cli_md_reproduce(stdout, t, plugin[0] ? plugin : NULL);
    free(digest);
}

/* `show FILE.deja --md`: the bundle's Markdown report, as `export --md`
 * prints it. Returns the exit code. */
static int show_bundle_md(const char *path, deja_bundle *bundle)
{
    deja_store *store = deja_bundle_store(bundle);
    cli_filter all;
    deja_id *ids = NULL;
    size_t n = 0, bad = 0;
    int ret = CLI_EXIT_TROUBLE;

    cli_filter_init(&all);
    if (cli_select(store, NULL, 0, &all, &ids, &n, &bad) != 0)
        goto cleanup;
    ret = cli_bundle_md(stdout, store, ids, n, path, deja_bundle_info_get(bundle));

cleanup:
    free(ids);
    cli_filter_free(&all);
    return ret;
}

/* The JSON form, with the environment. */
static int show_json(const deja_trace *t, const deja_env *env, int values, const pin_info *pin,
                     const deja_tree *tree)
{
    json_t *obj = cli_trace_json(t, values ? CLI_JSON_VALUES : 1);

    if (obj != NULL && cli_tree_attach_json(obj, tree) != 0) {
        json_decref(obj);
        obj = NULL;
    }
    if (obj != NULL) {
        json_t *e = env != NULL ? cli_env_json(env) : json_null();
        json_t *p = json_null();

        if (pin->pinned) {
            char at[64];

            cli_format_utc(pin->at_ns, at, sizeof at);
            p = json_pack("{s:s,s:s}", "note", pin->note, "pinned_at", at);
        }
        if (e == NULL || json_object_set_new(obj, "environment", e) != 0 || p == NULL ||
            json_object_set_new(obj, "pin", p) != 0 ||
            json_object_set_new(obj, "checkpoints",
                                cli_checkpoints_json(t, values ? CLI_JSON_VALUES : 1)) != 0 ||
            json_object_set_new(obj, "repeats", json_integer((json_int_t)pin->repeats)) != 0) {
            json_decref(obj);
            obj = NULL;
        }
    }
    return cli_json_print(obj);
}

/* `deja show`. */
int cmd_show(const cli_global *g, int argc, char **argv)
{
    enum { OPT_MD = CLI_OPT_FIRST_FREE, OPT_VALUES };
    static const struct option longopts[] = {
        CLI_LONGOPT_HELP,
        CLI_LONGOPT_JSON,
        {"md", no_argument, NULL, OPT_MD},
        {"values", no_argument, NULL, OPT_VALUES},
        CLI_LONGOPT_END,
    };
    deja_store *store = NULL;
    deja_bundle *bundle = NULL;
    deja_trace *t = NULL;
    deja_env *env = NULL;
    deja_tree *tree = NULL;
    size_t mark = DEJA_TREE_NONE;
    pin_info pin = {0, NULL, 0, 0};
    deja_id id;
    int json = 0, md = 0, values = 0;
    int first = 1;
    int ret = CLI_EXIT_TROUBLE;
    int c, rc;

    while ((c = cli_getopt_common(argc, argv, longopts, help, &first, &json, &ret)) != -1) {
        if (c == OPT_MD)
            md = 1;
        else if (c == OPT_VALUES)
            values = 1;
        else
            goto cleanup;
    }
    if (values && !json) {
        ret = cli_usage_error(help, "show: --values goes with --json");
        goto cleanup;
    }
    if (json && md) {
        ret = cli_usage_error(help, "show: --json and --md exclude each other");
        goto cleanup;
    }
    if (argc - optind >= 1) {
        rc = cli_open_source(argv[optind], &store, &bundle);
        if (rc < 0)
            goto cleanup;
        if (rc == 1) {
            optind++;
            if (argc == optind && md) {
                ret = show_bundle_md(argv[optind - 1], bundle);
                goto cleanup;
            }
            if (argc == optind) {
                ret = cli_bundle_print(argv[optind - 1], bundle, json);
                goto cleanup;
            }
        }
    }
    if (argc - optind != 1) {
        ret = cli_usage_error(help, argc == optind ? "show: which trace? give an ID"
                                                   : "show: one ID at a time");
        goto cleanup;
    }
    if ((bundle == NULL && cli_store_open_read(g, &store) != 0) ||
        cli_resolve(store, argv[optind], &id) != 0)
        goto cleanup;
    rc = deja_trace_get(store, &id, &t);
    if (rc < 0) {
        char text[DEJA_ID_STRLEN + 1];
        deja_id_format(&id, text);
        cli_lib_error(rc, "trace %s", text);
        goto cleanup;
    }
    if (t->has_env) {
        rc = deja_store_env_get(store, &t->env, &env);
        if (rc < 0) {
            char d[33];
            deja_digest_format(&t->env, d);
            cli_lib_error(rc, "environment %s", d);
            goto cleanup;
        }
    }
    rc = bundle != NULL ? 0 : deja_trace_pin_get(store, &id, &pin.note, &pin.at_ns);
    if (rc < 0) {
        cli_lib_error(rc, "trace %s: pin", argv[optind]);
        goto cleanup;
    }
    pin.pinned = rc == 1;
    rc = deja_trace_repeats(store, &id, &pin.repeats);
    if (rc < 0) {
        cli_lib_error(rc, "trace %s: repeats", argv[optind]);
        goto cleanup;
    }
    /* Part of a pipeline: its tree. A tree that cannot be drawn (a cycle of
     * parents) is trouble, after the trace itself. */
    rc = cli_tree_of(store, &id, &tree, &mark);
    if (json) {
        if (show_json(t, env, values, &pin, tree) < 0) {
            cli_error("out of memory printing the trace");
            goto cleanup;
        }
    } else if (md) {
        show_md(t, env);
        if (tree != NULL)
            cli_tree_md(stdout, tree, mark);
    } else {
        show_text(t, env, &pin);
        if (tree != NULL) {
            printf("\npipeline  %s\n", cli_count(tree->nnodes, "trace"));
            cli_tree_print(stdout, g, tree, 0, mark, "  ");
        }
    }
    ret = rc == 0 ? CLI_EXIT_OK : CLI_EXIT_TROUBLE;

cleanup:
    free(pin.note);
    deja_tree_free(tree);
    deja_env_free(env);
    deja_trace_free(t);
    if (bundle != NULL)
        deja_bundle_close(bundle);
    else
        deja_store_close(store);
    return ret;
}
