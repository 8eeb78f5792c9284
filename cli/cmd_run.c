/*
 * cli/cmd_run.c -- `deja run`: run a model plugin on JSON-lines requests,
 * recording each inference through the tracer.
 */
#include "cli.h"
#include "cli_request.h"
#include "cli_watch.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "deja_model.h"

static const char help[] =
    "usage: deja run --model PLUGIN[:ARG] [--requests FILE.jsonl] [--tag K=V]... [--seed N] "
    "[--env-vars RULES] [--rules FILE] [--sample ...] [--keep-slower D] [--keep-first N] [--dedup]\n"
    "[--checkpoints all|none|NAME,...] [--checkpoints-digest] [--json]\n"
    "\n"
    "Run a model plugin on requests, one JSON object per line (stdin by default),\n"
    "recording each inference into the store (created if needed).\n"
    "\n"
    "  --model PLUGIN[:ARG]  plugin file or bare name (textgen-v1), found on\n"
    "                        $DEJA_PLUGIN_PATH; ARG is passed to the plugin\n"
    "  --requests FILE       read requests from FILE instead of stdin\n"
    "  --tag K=V             tag every trace (repeatable)\n"
    "  --seed N              base seed for requests without their own: line L gets N+L\n"
    "  --env-vars RULES      environment variables to record besides the defaults:\n"
    "                        NAME or PREFIX* adds, -NAME or -PREFIX* removes, after\n"
    "                        $DEJA_ENV_VARS; names that look like secrets never are\n"
    "  --rules FILE          validation rules (see deja check --help): a trace that\n"
    "                        breaks one is tagged deja.invalid=RULE, never blocked\n"
    CLI_SAMPLING_HELP
    "  --checkpoints SEL     record the model's checkpoints (deja_ctx_checkpoint): all,\n"
    "                        none (the default) or NAME,... (NAME* is a prefix); a\n"
    "                        replay names the first one that diverges\n"
    "  --checkpoints-digest  keep each checkpoint's digest and summary (shape, dtype,\n"
    "                        min, max, mean, NaN/Inf counts) instead of its bytes\n"
    "  --json                one JSON object per request on stdout\n"
    "\n"
    "A request:\n"
    "  {\"inputs\": {\"prompt\": \"Once upon\"}, \"params\": {\"temperature\": 0.8},\n"
    "   \"tags\": {\"user\": \"u1\"}, \"seed\": 42}\n"
    "An input is a string (utf8), a rectangular array of numbers (f32 of that shape),\n"
    "or {\"dtype\": \"i32\", \"shape\": [2,3], \"base64\": \"...\"} (or \"text\" for utf8).\n"
    "Params are numbers, strings or booleans; tags are strings.\n"
    "\n"
    "Exit status: 0 when every request was recorded (a model error is recorded as an\n"
    "error trace), 2 when a request could not be read or recorded.\n";

#define PREVIEW_CHARS 60

/* What the whole run shares. */
typedef struct run_state {
    cli_request_parser parser; /* file name for messages */
    deja_model *model;
    deja_tracer *tracer;
    deja_tag *tags; /* --tag */
    size_t ntags;
    int has_seed;
    uint64_t seed;
    int json;
    size_t recorded;
    size_t errors;
    size_t bad_lines;
} run_state;

/* Put the request into the span: inputs, params, tags. */
static int fill_span(run_state *s, deja_span *span, const cli_request *r)
{
    const char *key;
    json_t *v;
    int rc = 0;

    for (size_t i = 0; i < r->ninputs && rc == 0; i++) {
        const cli_request_tensor *q = &r->inputs[i];
        deja_tensor t = {q->name, q->dtype, q->ndim, q->shape, q->data, q->size};
        rc = deja_span_add(span, DEJA_INPUT, &t);
    }
    if (r->params != NULL) {
        json_object_foreach(r->params, key, v)
        {
            if (rc != 0)
                break;
            if (json_is_number(v))
                rc = deja_span_param_num(span, key, json_number_value(v));
            else if (json_is_string(v))
                rc = deja_span_param_str(span, key, json_string_value(v));
            else
                rc = deja_span_param_bool(span, key, json_is_true(v));
        }
    }
    for (size_t i = 0; i < s->ntags && rc == 0; i++) {
        if (r->tags != NULL && json_object_get(r->tags, s->tags[i].key) != NULL)
            continue; /* the request's own tag wins */
        rc = deja_span_tag(span, s->tags[i].key, s->tags[i].value);
    }
    if (r->tags != NULL) {
        json_object_foreach(r->tags, key, v)
        {
            if (rc != 0)
                break;
            rc = deja_span_tag(span, key, json_string_value(v));
        }
    }
    return rc;
}

/* Print the result line of one request. */
static void print_result(run_state *s, size_t line, const char *id, int failed, const char *error,
                         const deja_tensor *outs, size_t nouts)
{
    if (s->json) {
        json_t *obj = json_object();
        json_t *arr = json_array();
        int bad = obj == NULL || arr == NULL;
        for (size_t i = 0; i < nouts && !bad; i++)
            bad = json_array_append_new(arr, cli_tensor_json(&outs[i], 1)) != 0;
        bad = bad || json_object_set_new(obj, "line", json_integer((json_int_t)line)) != 0;
        bad = bad || json_object_set_new(obj, "id", json_string(id)) != 0;
        bad = bad || json_object_set_new(obj, "status", json_string(failed ? "error" : "ok")) != 0;
        if (failed)
            bad = bad || json_object_set_new(obj, "error", cli_json_text(error)) != 0;
        bad = bad || json_object_set(obj, "outputs", arr) != 0;
        json_decref(arr);
        if (bad) {
            json_decref(obj);
            cli_error("out of memory printing line %zu", line);
            return;
        }
        cli_json_print(obj);
        return;
    }
    printf("%s  %-5s  ", id, failed ? "error" : "ok");
    if (failed) {
        fputs(error, stdout);
    } else {
        for (size_t i = 0; i < nouts; i++) {
            if (i)
                fputs("  ", stdout);
            if (nouts > 1)
                printf("%s=", outs[i].name);
            cli_print_preview(stdout, &outs[i], PREVIEW_CHARS);
        }
    }
    fputc('\n', stdout);
}

/* Record one parsed request: span, ctx, inference, end. -1 on trouble (the
 * problem is reported). */
static int record_one(run_state *s, size_t line, const cli_request *r)
{
    deja_span *span = NULL;
    deja_ctx *ctx = NULL;
    const uint8_t *digest;
    size_t digest_size = 0;
    const deja_tensor *outs = NULL;
    size_t nouts = 0;
    char id[DEJA_ID_STRLEN + 1];
    char *error = NULL;
    deja_tracer_stats before, after;
    uint64_t seed = 0;
    int has_seed = 1;
    int rc;
    int ret = -1;

    rc = deja_span_begin(&span, s->tracer, deja_model_name(s->model), deja_model_version(s->model));
    if (rc < 0) {
        cli_lib_error(rc, "%s:%zu: cannot begin a span", s->parser.source, line);
        goto cleanup;
    }
    deja_id_format(deja_span_id(span), id);
    digest = deja_model_digest(s->model, &digest_size);
    if (digest != NULL && digest_size > 0)
        rc = deja_span_model_digest(span, digest, digest_size);
    if (rc == 0)
        rc = deja_span_model_config(span, deja_model_plugin_name(s->model),
                                    deja_model_config(s->model));
    if (rc == 0)
        rc = fill_span(s, span, r);
    if (rc < 0) {
        cli_lib_error(rc, "%s:%zu", s->parser.source, line);
        goto cleanup;
    }
    /* "seed": 0 is seed 0; only an absent seed is drawn from the OS (and
     * recorded as the tag deja.seed). */
    if (r->has_seed)
        seed = r->seed;
    else if (s->has_seed)
        seed = s->seed + line;
    else
        has_seed = 0;
    rc = deja_ctx_record_v2(&ctx, span, has_seed ? &seed : NULL);
    if (rc < 0) {
        cli_lib_error(rc, "%s:%zu: cannot make a recording context", s->parser.source, line);
        goto cleanup;
    }
    rc = deja_model_infer(s->model, ctx);
    if (rc < 0) {
        const char *msg = deja_error_last();
        if ((msg == NULL || msg[0] == '\0') && deja_ctx_error(ctx) != NULL)
            msg = deja_ctx_error(ctx);
        error = strdup(msg != NULL && msg[0] != '\0' ? msg : deja_strerror(rc));
        if (error == NULL) {
            cli_error("out of memory");
            goto cleanup;
        }
    } else {
        outs = deja_ctx_outputs(ctx, &nouts);
        if (outs == NULL)
            nouts = 0;
    }
    print_result(s, line, id, error != NULL, error, outs, nouts);
    deja_ctx_free(ctx);
    ctx = NULL;
    deja_tracer_stats_get(s->tracer, &before);
    rc = deja_span_end(span, error != NULL ? DEJA_STATUS_ERROR : DEJA_STATUS_OK, error);
    span = NULL;
    if (rc < 0) {
        cli_lib_error(rc, "%s:%zu: trace %s was not recorded", s->parser.source, line, id);
        goto cleanup;
    }
    /* Sampling decides when the span ends, after its line was printed:
     * say that the id just printed will not be in the store. */
    deja_tracer_stats_get(s->tracer, &after);
    if (after.sampled_out > before.sampled_out) {
        if (s->json)
            cli_json_print(json_pack("{s:s,s:b,s:s}", "id", id, "recorded", 0, "reason",
                                     "sampled out"));
        else
            printf("%s  left out by sampling\n", id);
    }
    s->recorded++;
    if (error != NULL)
        s->errors++;
    ret = 0;

cleanup:
    deja_ctx_free(ctx);
    deja_span_abort(span);
    free(error);
    return ret;
}

/* Non-zero when the line holds only white space. */
static int blank(const char *text, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (text[i] != ' ' && text[i] != '\t' && text[i] != '\r' && text[i] != '\n')
            return 0;
    }
    return 1;
}

/* A stop asked for while requests are recorded: SIGINT, SIGTERM, SIGHUP,
 * or SIGPIPE from a reader of stdout that went away (`deja run | head`).
 * The run stops reading requests, commits what it recorded, then takes
 * the signal's default action: no printed id is left unrecorded. */
static volatile sig_atomic_t stop_signal;
static int requests_fd = -1; /* the descriptor the requests are read from */
static int null_fd = -1;     /* /dev/null, opened beforehand */

/* Note the signal and put /dev/null in place of the requests, so that the
 * next read ends whether the signal came during it or just before it (a
 * flag alone races with a read about to block). */
static void on_stop(int sig)
{
    const int saved = errno;

    if (stop_signal != 0) { /* asked twice: stop now */
        signal(sig, SIG_DFL);
        raise(sig);
    }
    stop_signal = sig;
    if (requests_fd >= 0 && null_fd >= 0)
        (void)dup2(null_fd, requests_fd);
    errno = saved;
}

/* Catch the stop signals while requests are read from `in` (without
 * SA_RESTART, so that a blocked read returns); a signal ignored by whoever
 * started deja stays ignored. */
static void catch_stops(FILE *in)
{
    static const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGPIPE};
    struct sigaction sa;

    null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    requests_fd = fileno(in);
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_stop;
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        struct sigaction old;
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler != SIG_IGN)
            sigaction(sigs[i], &sa, NULL);
    }
}

/* After the store is closed: take the default action of the stop signal
 * that ended the run, if one did. */
static void reraise_stop(void)
{
    const int sig = stop_signal;

    if (null_fd >= 0)
        close(null_fd);
    null_fd = -1;
    requests_fd = -1;
    if (sig == 0)
        return;
    if (sig != SIGPIPE)
        cli_error("stopped by %s: the requests recorded so far are committed",
                  sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "SIGHUP");
    fflush(stdout);
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Read every request from `in` and record it, until the input ends, a
 * stop signal comes or stdout cannot be written any more. */
static void run_requests(run_state *s, FILE *in)
{
    char *buf = NULL;
    size_t cap = 0;
    ssize_t len;
    size_t line = 0;

    while (stop_signal == 0 && !ferror(stdout) && (len = getline(&buf, &cap, in)) >= 0) {
        cli_request r;
        line++;
        if (stop_signal != 0)
            break; /* the line may be cut short by the stop */
        if (blank(buf, (size_t)len))
            continue;
        if (cli_request_parse(&s->parser, line, buf, (size_t)len, &r) < 0 || record_one(s, line, &r) < 0)
            s->bad_lines++;
        cli_request_free(&r);
        fflush(stdout);
    }
    free(buf);
}

/* After a store error: mark on stdout each printed id that was not
 * committed ("ID  not committed", or {"id": ID, "committed": false}), the
 * ids printed before it having looked fine. */
static void print_not_committed(run_state *s, uint64_t failed)
{
    const size_t cap = failed < 4096 ? (size_t)failed : 4096;
    deja_id *ids = malloc(cap * sizeof *ids);
    size_t n;

    if (ids == NULL) {
        cli_error("%llu traces were not committed (out of memory listing them)",
                  (unsigned long long)failed);
        return;
    }
    n = deja_tracer_failed_ids(s->tracer, ids, cap);
    for (size_t i = 0; i < n && i < cap; i++) {
        char id[DEJA_ID_STRLEN + 1];
        deja_id_format(&ids[i], id);
        if (s->json)
            cli_json_print(json_pack("{s:s,s:b}", "id", id, "committed", 0));
        else
            printf("%s  not committed\n", id);
    }
    if (failed > n)
        cli_error("%llu more traces were not committed", (unsigned long long)(failed - n));
    fflush(stdout);
    free(ids);
}

/* `deja run`. */
int cmd_run(const cli_global *g, int argc, char **argv)
{
    enum {
        OPT_REQUESTS = CLI_OPT_FIRST_FREE,
        OPT_SEED,
        OPT_ENV_VARS,
        OPT_RULES,
        OPT_CHECKPOINTS,
        OPT_CHECKPOINTS_DIGEST
    };
    static const struct option longopts[] = {
        CLI_LONGOPT_HELP,
        CLI_LONGOPT_JSON,
        {"model", required_argument, NULL, CLI_OPT_MODEL},
        {"tag", required_argument, NULL, CLI_OPT_TAG},
        {"requests", required_argument, NULL, OPT_REQUESTS},
        {"seed", required_argument, NULL, OPT_SEED},
        {"env-vars", required_argument, NULL, OPT_ENV_VARS},
        {"rules", required_argument, NULL, OPT_RULES},
        {"checkpoints", required_argument, NULL, OPT_CHECKPOINTS},
        {"checkpoints-digest", no_argument, NULL, OPT_CHECKPOINTS_DIGEST},
        CLI_LONGOPTS_SAMPLING,
        CLI_LONGOPT_END,
    };
    cli_sampling sampling;
    run_state s;
    deja_tracer_options topts = DEJA_TRACER_OPTIONS_INIT;
    cli_rules_counter rules = {NULL, 0};
    const char *rules_path = NULL;
    cli_filter tags; /* reuses the --tag parser */
    const char *spec = NULL;
    const char *requests = NULL;
    FILE *in = NULL;
    struct timespec t0, t1;
    deja_tracer_stats ts;
    int first = 1;
    int ret = CLI_EXIT_TROUBLE;
    int c, rc;

    memset(&s, 0, sizeof s);
    cli_filter_init(&tags);
    cli_sampling_init(&sampling);
    while ((c = cli_getopt_common(argc, argv, longopts, help, &first, &s.json, &ret)) != -1) {
        switch (c) {
        case CLI_OPT_MODEL:
            spec = optarg;
            break;
        case CLI_OPT_TAG:
            if (cli_filter_option(&tags, c, optarg, 0) < 0)
                goto cleanup;
            break;
        case OPT_REQUESTS:
            requests = optarg;
            break;
        case OPT_SEED:
            if (cli_parse_u64(optarg, UINT64_MAX, &s.seed) < 0) {
                cli_error("--seed: expected a non-negative integer, not '%s'", optarg);
                goto cleanup;
            }
            s.has_seed = 1;
            break;
        case OPT_ENV_VARS:
            topts.env_vars = optarg;
            break;
        case OPT_RULES:
            rules_path = optarg;
            break;
        case OPT_CHECKPOINTS:
            if (deja_checkpoint_select_check(optarg) != 0) {
                cli_error("--%s", deja_error_last());
                goto cleanup;
            }
            topts.checkpoints = optarg;
            break;
        case OPT_CHECKPOINTS_DIGEST:
            topts.checkpoints_digest = 1;
            break;
        default:
            if (cli_sampling_option(&sampling, c, optarg) != 1)
                goto cleanup;
        }
    }
    if (optind < argc) {
        ret = cli_usage_error(help, "run: unexpected argument '%s'", argv[optind]);
        goto cleanup;
    }
    if (spec == NULL) {
        ret = cli_usage_error(help, "run: --model PLUGIN is required");
        goto cleanup;
    }
    if (topts.checkpoints_digest && topts.checkpoints == NULL)
        topts.checkpoints = "all"; /* digests of what, else? every checkpoint */
    s.tags = tags.tags;
    s.ntags = tags.ntags;
    if (requests != NULL && strcmp(requests, "-") != 0) {
        in = fopen(requests, "r");
        if (in == NULL) {
            cli_error("%s: cannot open: %s", requests, strerror(errno));
            goto cleanup;
        }
        s.parser.source = requests;
    } else {
        in = stdin;
        s.parser.source = "<stdin>";
    }
    if (rules_path != NULL) {
        if (cli_rules_load(rules_path, &rules.rules) != 0)
            goto cleanup;
        topts.check = cli_rules_count_check;
        topts.check_payload = &rules;
    }
    /* The model first: a missing plugin must not leave a new store behind. */
    rc = deja_model_load(&s.model, spec);
    if (rc < 0) {
        const char *msg = deja_error_last();
        if (msg != NULL && msg[0] != '\0')
            cli_error("%s", msg);
        else
            cli_error("model '%s': %s", spec, deja_strerror(rc));
        goto cleanup;
    }
    /* A model in another process runs in its own environment: what its
     * runner named (torch, its threads, ...) is recorded with the host's.
     * Best effort, as the environment is. */
    size_t nlibs = 0;
    const deja_kv *libs = deja_model_libs(s.model, &nlibs);
    for (size_t i = 0; i < nlibs; i++)
        (void)deja_env_lib_set(libs[i].key, libs[i].value);
    /* The libraries the plugin reported join the recorded environment. */
    topts.libs = deja_model_libs(s.model, &topts.nlibs);
    rc = deja_tracer_open(&s.tracer, g->store, &topts);
    if (rc == DEJA_EINVAL) { /* the variables' rules: the store is untouched */
        cli_error("%s", deja_error_last());
        goto cleanup;
    }
    if (rc < 0) {
        cli_lib_error(rc, "store '%s'", g->store);
        goto cleanup;
    }
    if (cli_sampling_apply(&sampling, s.tracer) != 0)
        goto cleanup;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    catch_stops(in);
    run_requests(&s, in);
    if (ferror(in) && stop_signal == 0) {
        cli_error("%s: read error", s.parser.source);
        s.bad_lines++;
    }
    rc = deja_tracer_flush(s.tracer);
    deja_tracer_stats_get(s.tracer, &ts);
    if (ts.failed > 0)
        print_not_committed(&s, ts.failed);
    if (rc < 0) {
        cli_lib_error(rc, "store '%s': flushing traces", g->store);
        goto cleanup;
    }
    if (ts.failed > 0) {
        cli_error("store '%s': %llu traces could not be written", g->store,
                  (unsigned long long)ts.failed);
        goto cleanup;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    fflush(stdout);
    {
        const uint64_t left_out = ts.sampled_out + ts.dropped + ts.redacted;
        const size_t kept = s.recorded > left_out ? s.recorded - (size_t)left_out : 0;
        const double secs =
            (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
        char invalid[64] = "";

        if (rules.rules != NULL)
            snprintf(invalid, sizeof invalid, ", %llu invalid",
                     (unsigned long long)atomic_load(&rules.invalid));
        if (left_out > 0 || sampling.given)
            fprintf(stderr, "ran %s: recorded %zu (%s%s), %llu left out by sampling, dedup or a "
                            "full queue (see deja stats) in %.1f s\n",
                    cli_count(s.recorded, "request"), kept, cli_count(s.errors, "error"), invalid,
                    (unsigned long long)left_out, secs);
        else
            fprintf(stderr, "recorded %s (%s%s) in %.1f s\n", cli_count(s.recorded, "trace"),
                    cli_count(s.errors, "error"), invalid, secs);
    }
    if (s.bad_lines > 0) {
        cli_error("%zu request lines could not be recorded", s.bad_lines);
        goto cleanup;
    }
    ret = CLI_EXIT_OK;

cleanup:
    deja_tracer_close(s.tracer);
    deja_rules_free(rules.rules);
    deja_model_free(s.model);
    if (in != NULL && in != stdin)
        fclose(in);
    cli_filter_free(&tags);
    cli_sampling_free(&sampling);
    reraise_stop();
    return ret;
}
