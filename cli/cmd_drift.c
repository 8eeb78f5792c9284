/*
 * cli/cmd_drift.c -- `deja drift`: compare two selections field by field,
 * rank the fields by drift, exit 1 when any crosses its threshold.
 */
#include "cli_escape.h"
#include "cli_watch.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char help[] =
    "usage: deja drift --baseline SELECTION --current SELECTION [--sample N] [--seed N] "
    "[--psi X] [--rate X] [--new-tokens X] [--bins N] [--top N] [--json]\n"
    "\n"
    "Compare the traces of two selections field by field: numeric inputs and outputs\n"
    "per position (PSI on the baseline's quantile bins, Kolmogorov-Smirnov), predicted\n"
    "labels of score outputs (PSI, chi-square), text lengths, empty outputs and words or\n"
    "characters never seen in the baseline, error rate and latency. Fields are ranked\n"
    "by drift, each with the current traces where it departs most (for show/replay).\n"
    "\n"
    "A SELECTION is one argument of space-separated key=value terms over the filters\n"
    "of ls: model=, version=, since=, until=, status=, tag.KEY=, e.g.\n"
    "  --baseline 'version=3 since=14d until=7d' --current 'version=4 since=7d'\n"
    "  --baseline tag.phase=before --current tag.phase=after\n"
    "\n"
    "  --baseline SEL     the reference traces (required)\n"
    "  --current SEL      the traces to check (required)\n"
    "  --sample N         traces per selection at most, chosen reproducibly (10000)\n"
    "  --seed N           seed of the sample (1)\n"
    "  --psi X            PSI above which a numeric or label field drifted (0.2)\n"
    "  --rate X           change of a rate (errors, empty text) that drifted (0.05)\n"
    "  --new-tokens X     excess share of new words or characters that drifted (0.1)\n"
    "  --bins N           quantile bins of numeric fields (10)\n"
    "  --top N            print the N most drifted fields only\n"
    "  --json             one JSON object\n"
    "\n"
    "Exit status: 0 when no field drifted, 1 when some did, 2 on trouble.\n";

/* A number or null (NaN, infinity). */
static json_t *num(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

/* An id list as JSON strings. */
static json_t *ids_json(const deja_id *ids, size_t n)
{
    json_t *a = json_array();

    for (size_t i = 0; a != NULL && i < n; i++) {
        char text[DEJA_ID_STRLEN + 1];

        deja_id_format(&ids[i], text);
        json_array_append_new(a, json_string(text));
    }
    return a;
}

static json_t *side_json(const deja_drift_field *f, const deja_drift_side *s)
{
    if (f->kind == DEJA_DRIFT_NUMERIC)
        return json_pack("{s:I, s:I, s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "n",
                         (json_int_t)s->n, "nan", (json_int_t)s->nan, "inf", (json_int_t)s->inf,
                         "mean", num(s->mean), "std", num(s->std), "min", num(s->min), "max",
                         num(s->max), "p50", num(s->p50), "p95", num(s->p95), "p99", num(s->p99));
    return json_pack("{s:I, s:o}", "n", (json_int_t)s->n, "rate", num(s->rate));
}

static const char *kind_name(deja_drift_kind k)
{
    return k == DEJA_DRIFT_NUMERIC ? "numeric"
           : k == DEJA_DRIFT_LABELS ? "labels"
           : k == DEJA_DRIFT_NEW_TOKENS ? "new tokens"
                                        : "rate";
}

static json_t *field_json(const deja_drift_field *f)
{
    json_t *o = json_pack(
        "{s:s, s:s, s:s, s:o, s:f, s:b, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:s?, s:o}", "field",
        f->name, "kind", kind_name(f->kind), "metric", f->metric, "score", num(f->score),
        "threshold", f->threshold, "drifted", f->drifted, "psi", num(f->psi), "ks", num(f->ks),
        "ks_p", num(f->ks_p), "chi2", num(f->chi2), "chi2_p", num(f->chi2_p), "baseline",
        side_json(f, &f->baseline), "current", side_json(f, &f->current), "region", f->region,
        "examples", ids_json(f->examples, f->nexamples));

    if (o != NULL && f->nbins > 0) {
        json_t *bins = json_array();

        for (size_t i = 0; bins != NULL && i < f->nbins; i++) {
            json_t *b = json_pack("{s:f, s:f}", "baseline", f->base_share[i], "current",
                                  f->cur_share[i]);

            if (b != NULL && f->labels != NULL)
                json_object_set_new(b, "label", json_string(f->labels[i]));
            if (b != NULL && f->edges != NULL && i > 0)
                json_object_set_new(b, "above", json_real(f->edges[i - 1]));
            if (b != NULL && f->edges != NULL && i + 1 < f->nbins)
                json_object_set_new(b, "upto", json_real(f->edges[i]));
            json_array_append_new(bins, b);
        }
        json_object_set_new(o, "histogram", bins);
    }
    return o;
}

static int print_json(const deja_drift *d, const deja_drift_options *o, size_t top)
{
    json_t *fields = json_array();
    json_t *obj;

    for (size_t i = 0; fields != NULL && i < d->nfields && i < top; i++)
        if (json_array_append_new(fields, field_json(&d->fields[i])) != 0) {
            json_decref(fields);
            return -1;
        }
    obj = json_pack("{s:{s:I, s:I}, s:{s:I, s:I}, s:{s:f, s:f, s:f}, s:I, s:I, s:o}", "baseline",
                    "traces", (json_int_t)d->baseline_traces, "sampled",
                    (json_int_t)d->baseline_sampled, "current", "traces",
                    (json_int_t)d->current_traces, "sampled", (json_int_t)d->current_sampled,
                    "thresholds", "psi", o->psi_threshold, "rate", o->rate_threshold,
                    "new_tokens", o->new_token_threshold, "drifted", (json_int_t)d->ndrifted,
                    "seed", (json_int_t)o->seed, "fields", fields);
    return cli_json_print(obj);
}

/* "0.52 -> 0.91" style summary of the two sides of a field. */
static void print_sides(const deja_drift_field *f)
{
    if (f->kind == DEJA_DRIFT_NUMERIC) {
        printf("mean %.4g -> %.4g, p50 %.4g -> %.4g, p95 %.4g -> %.4g", f->baseline.mean,
               f->current.mean, f->baseline.p50, f->current.p50, f->baseline.p95, f->current.p95);
        if (!isnan(f->ks))
            printf(", KS %.3f (p %.2g)", f->ks, f->ks_p);
        if (f->current.nan + f->current.inf + f->baseline.nan + f->baseline.inf > 0)
            printf(", non-finite %llu -> %llu",
                   (unsigned long long)(f->baseline.nan + f->baseline.inf),
                   (unsigned long long)(f->current.nan + f->current.inf));
    } else if (f->kind == DEJA_DRIFT_LABELS) {
        printf("%llu -> %llu rows", (unsigned long long)f->baseline.n,
               (unsigned long long)f->current.n);
        if (!isnan(f->chi2))
            printf(", chi2 %.1f (p %.2g)", f->chi2, f->chi2_p);
    } else if (f->kind == DEJA_DRIFT_NEW_TOKENS) {
        printf("new %.1f%% (baseline halves) -> %.1f%%", 100 * f->baseline.rate,
               100 * f->current.rate);
    } else {
        printf("%.1f%% -> %.1f%% of %llu -> %llu traces", 100 * f->baseline.rate,
               100 * f->current.rate, (unsigned long long)f->baseline.n,
               (unsigned long long)f->current.n);
    }
}

static void print_human(const deja_drift *d, const deja_drift_options *o, size_t top)
{
    size_t width = 5;

    printf("baseline: %llu traces (%llu sampled), current: %llu traces (%llu sampled), seed %llu\n",
           (unsigned long long)d->baseline_traces, (unsigned long long)d->baseline_sampled,
           (unsigned long long)d->current_traces, (unsigned long long)d->current_sampled,
           (unsigned long long)o->seed);
    printf("thresholds: psi > %g (numeric fields, labels), rate change > %g, new-share excess > "
           "%g\n\n",
           o->psi_threshold, o->rate_threshold, o->new_token_threshold);
    for (size_t i = 0; i < d->nfields && i < top; i++)
        if (strlen(d->fields[i].name) > width)
            width = strlen(d->fields[i].name);
    if (width > 44)
        width = 44;
    printf("%-7s %-*s %-16s %8s %6s  %s\n", "", (int)width, "field", "metric", "score", "thr",
           "baseline -> current");
    for (size_t i = 0; i < d->nfields && i < top; i++) {
        const deja_drift_field *f = &d->fields[i];

        printf("%-7s %-*.*s %-16s ", f->drifted ? "DRIFTED" : "", (int)width, (int)width,
               cli_term(f->name), f->metric);
        if (isnan(f->score))
            printf("%8s", "-");
        else
            printf("%8.4f", f->score);
        printf(" %6g  ", f->threshold);
        print_sides(f);
        fputc('\n', stdout);
        if (f->drifted && f->nexamples > 0) {
            printf("%-7s   %s:", "", f->region ? cli_term(f->region) : "examples");
            for (size_t k = 0; k < f->nexamples; k++) {
                char text[DEJA_ID_STRLEN + 1];

                deja_id_format(&f->examples[k], text);
                printf(" %s", text);
            }
            fputc('\n', stdout);
        }
    }
    printf("\n%zu of %zu fields drifted\n", d->ndrifted, d->nfields);
}

/* Parse a positive finite number option. */
static int positive(const char *name, const char *arg, double *out)
{
    if (cli_parse_double(arg, out) != 0 || !(*out > 0)) {
        cli_error("%s: expected a positive number, not '%s'", name, arg);
        return -1;
    }
    return 0;
}

int cmd_drift(const cli_global *g, int argc, char **argv)
{
    enum {
        OPT_BASELINE = CLI_OPT_FIRST_FREE,
        OPT_CURRENT,
        OPT_SAMPLE,
        OPT_SEED,
        OPT_PSI,
        OPT_RATE,
        OPT_NEW,
        OPT_BINS,
        OPT_TOP
    };
    static const struct option longopts[] = {
        CLI_LONGOPT_HELP,
        CLI_LONGOPT_JSON,
        {"baseline", required_argument, NULL, OPT_BASELINE},
        {"current", required_argument, NULL, OPT_CURRENT},
        {"sample", required_argument, NULL, OPT_SAMPLE},
        {"seed", required_argument, NULL, OPT_SEED},
        {"psi", required_argument, NULL, OPT_PSI},
        {"rate", required_argument, NULL, OPT_RATE},
        {"new-tokens", required_argument, NULL, OPT_NEW},
        {"bins", required_argument, NULL, OPT_BINS},
        {"top", required_argument, NULL, OPT_TOP},
        CLI_LONGOPT_END,
    };
    deja_drift_options o = DEJA_DRIFT_OPTIONS_INIT;
    cli_filter base, cur;
    const char *base_text = NULL, *cur_text = NULL;
    char *base_buf = NULL, *cur_buf = NULL;
    deja_store *store = NULL;
    deja_drift *d = NULL;
    uint64_t n, top = SIZE_MAX;
    int64_t now = cli_now_ns();
    int json = 0, first = 1;
    int ret = CLI_EXIT_TROUBLE;
    int c, rc;

    cli_filter_init(&base);
    cli_filter_init(&cur);
    while ((c = cli_getopt_common(argc, argv, longopts, help, &first, &json, &ret)) != -1) {
        switch (c) {
        case OPT_BASELINE:
            base_text = optarg;
            break;
        case OPT_CURRENT:
            cur_text = optarg;
            break;
        case OPT_SAMPLE:
        case OPT_BINS:
        case OPT_TOP:
            if (cli_parse_u64(optarg, c == OPT_BINS ? 100 : 1u << 22, &n) != 0 || n == 0 ||
                (c == OPT_BINS && n < 2)) {
                cli_error("--%s: expected a number %s, not '%s'",
                          c == OPT_SAMPLE ? "sample" : c == OPT_BINS ? "bins" : "top",
                          c == OPT_BINS ? "in 2..100" : "in 1..4194304", optarg);
                goto cleanup;
            }
            if (c == OPT_SAMPLE)
                o.sample = (size_t)n;
            else if (c == OPT_BINS)
                o.bins = (unsigned)n;
            else
                top = n;
            break;
        case OPT_SEED:
            if (cli_parse_u64(optarg, UINT64_MAX, &o.seed) != 0) {
                cli_error("--seed: expected a non-negative integer, not '%s'", optarg);
                goto cleanup;
            }
            break;
        case OPT_PSI:
            if (positive("--psi", optarg, &o.psi_threshold) != 0)
                goto cleanup;
            break;
        case OPT_RATE:
            if (positive("--rate", optarg, &o.rate_threshold) != 0)
                goto cleanup;
            break;
        case OPT_NEW:
            if (positive("--new-tokens", optarg, &o.new_token_threshold) != 0)
                goto cleanup;
            break;
        default:
            goto cleanup;
        }
    }
    if (base_text == NULL || cur_text == NULL) {
        ret = cli_usage_error(help, "drift: --baseline and --current are required");
        goto cleanup;
    }
    if (cli_parse_selection(base_text, "--baseline", now, &base, &base_buf) != 0 ||
        cli_parse_selection(cur_text, "--current", now, &cur, &cur_buf) != 0)
        goto cleanup;
    if (cli_store_open_no_operands(g, argc, argv, help, &store) != 0)
        goto cleanup;
    rc = deja_drift_compute(store, &base.filter, &cur.filter, &o, &d);
    if (rc < 0) {
        cli_lib_error(rc, "store '%s'", g->store);
        goto cleanup;
    }
    if (json ? print_json(d, &o, (size_t)top) != 0 : (print_human(d, &o, (size_t)top), 0)) {
        cli_error("out of memory printing the drift");
        goto cleanup;
    }
    fflush(stdout);
    if (d->bad > 0) {
        cli_error("%llu record%s could not be read", (unsigned long long)d->bad,
                  d->bad == 1 ? "" : "s");
        goto cleanup;
    }
    if (d->ndrifted > 0) {
        fprintf(stderr, "deja: drift: %zu of %zu fields drifted, first %s\n", d->ndrifted,
                d->nfields, cli_term(d->fields[0].name));
        ret = CLI_EXIT_DIFF;
        goto cleanup;
    }
    ret = CLI_EXIT_OK;

cleanup:
    deja_drift_free(d);
    deja_store_close(store);
    cli_filter_free(&base);
    cli_filter_free(&cur);
    free(base_buf);
    free(cur_buf);
    return ret;
}
