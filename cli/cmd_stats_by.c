/*
 * cli/cmd_stats_by.c -- `deja stats --by model|version|tag:KEY`: health per
 * group (and per time bucket with --every), over deja_health_compute().
 */
#include "cli_watch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli_escape.h"

/* Print a duration column: "-" when unknown. */
static void print_latency(double ns)
{
    char buf[32];

    if (ns != ns) {
        printf(" %8s", "-");
        return;
    }
    cli_format_duration((int64_t)(ns + 0.5), buf, sizeof buf);
    printf(" %8s", buf);
}

/* Print a bytes-per-trace column. */
static void print_mean_bytes(uint64_t total, uint64_t traces)
{
    char buf[32];

    cli_format_bytes(traces ? (total + traces / 2) / traces : 0, buf, sizeof buf);
    printf(" %10s", buf);
}

/* Groups wider than this are cut (with a final "…"). */
#define GROUP_COLUMNS 48

/* The columns a group's name takes once escaped for a terminal (a UTF-8
 * character one column): what the table prints, so what sizes it. */
static size_t group_columns(const char *group)
{
    size_t cols = 0;

    for (const char *p = cli_term(group); *p != '\0'; p++)
        cols += ((unsigned char)*p & 0xC0) != 0x80;
    return cols;
}

/* A group's name (a model name, version or tag value: text from the
 * store) escaped for a terminal, cut or padded to `width` columns. */
static void print_group(const char *group, size_t width)
{
    const char *text = cli_term(group);
    const size_t cols = group_columns(group);

    cli_put_fitted(stdout, text, strlen(text), (int)width);
    for (size_t i = cols; i < width; i++)
        fputc(' ', stdout);
}

/* The human table; `lost` when the rows carry their sampled-out and
 * dropped counts (by model or version, no buckets). */
static void print_table(const deja_health *h, int every, int lost)
{
    size_t width = 5;

    for (size_t i = 0; i < h->nrows; i++) {
        const size_t n = group_columns(h->rows[i].group);

        if (n > width)
            width = n < GROUP_COLUMNS ? n : GROUP_COLUMNS;
    }
    printf("%-*s", (int)width, "group");
    if (every)
        printf("  %-16s", "bucket");
    printf(" %8s %7s %6s %7s %8s %8s %8s %10s %10s", "traces", "errors", "err%", "invalid",
           "p50", "p95", "p99", "in/trace", "out/trace");
    if (lost)
        printf(" %8s %8s", "sampled", "dropped");
    fputc('\n', stdout);
    for (size_t i = 0; i < h->nrows; i++) {
        const deja_health_row *r = &h->rows[i];

        print_group(r->group, width);
        if (every) {
            char when[64];

            cli_format_local(r->bucket_ns, when, sizeof when);
            when[16] = '\0'; /* "2026-11-27 14:00" */
            printf("  %-16s", when);
        }
        printf(" %8llu %7llu %5.1f%% %7llu", (unsigned long long)r->traces,
               (unsigned long long)r->errors,
               r->traces ? 100.0 * (double)r->errors / (double)r->traces : 0.0,
               (unsigned long long)r->invalid);
        print_latency(r->latency_p50_ns);
        print_latency(r->latency_p95_ns);
        print_latency(r->latency_p99_ns);
        print_mean_bytes(r->input_bytes, r->traces);
        print_mean_bytes(r->output_bytes, r->traces);
        if (lost)
            printf(" %8llu %8llu", (unsigned long long)r->sampled_out,
                   (unsigned long long)r->dropped);
        fputc('\n', stdout);
    }
    if (h->nrows == 0)
        printf("(no traces match)\n");
    printf("not recorded (whole store): %llu dropped, %llu sampled out, %llu redacted\n",
           (unsigned long long)h->dropped, (unsigned long long)h->sampled_out,
           (unsigned long long)h->redacted);
}

/* A number or null (NaN). */
static json_t *num_or_null(double v)
{
    return v == v ? json_real(v) : json_null();
}

/* The JSON form: one object with the rows. */
static int print_json(const deja_health *h, const char *by, int64_t every_ns, int lost)
{
    json_t *rows = json_array();
    json_t *obj;

    if (rows == NULL)
        return -1;
    for (size_t i = 0; i < h->nrows; i++) {
        const deja_health_row *r = &h->rows[i];
        char when[64];
        json_t *row;

        cli_format_rfc3339(r->bucket_ns, when, sizeof when);
        row = json_pack(
            "{s:o, s:I, s:f, s:I, s:I, s:o, s:o, s:o, s:o, s:f, s:f, s:I, s:I}", "group",
            cli_json_text(r->group),
            "traces", (json_int_t)r->traces, "error_rate",
            r->traces ? (double)r->errors / (double)r->traces : 0.0, "errors",
            (json_int_t)r->errors, "invalid", (json_int_t)r->invalid, "latency_p50_ms",
            num_or_null(r->latency_p50_ns / 1e6), "latency_p95_ms",
            num_or_null(r->latency_p95_ns / 1e6), "latency_p99_ms",
            num_or_null(r->latency_p99_ns / 1e6), "latency_max_ms",
            num_or_null(r->latency_max_ns / 1e6), "input_bytes_mean",
            r->traces ? (double)r->input_bytes / (double)r->traces : 0.0, "output_bytes_mean",
            r->traces ? (double)r->output_bytes / (double)r->traces : 0.0, "first_ns",
            (json_int_t)r->first_ns, "last_ns", (json_int_t)r->last_ns);
        if (row != NULL && lost) {
            json_object_set_new(row, "sampled_out", json_integer((json_int_t)r->sampled_out));
            json_object_set_new(row, "dropped", json_integer((json_int_t)r->dropped));
        }
        if (row != NULL && every_ns > 0) {
            json_object_set_new(row, "bucket", json_string(when));
            json_object_set_new(row, "bucket_ns", json_integer((json_int_t)r->bucket_ns));
        }
        if (row == NULL || json_array_append_new(rows, row) != 0) {
            json_decref(rows);
            return -1;
        }
    }
    obj = json_pack("{s:s, s:I, s:I, s:o, s:{s:I, s:I, s:I}}", "by", by, "every_s",
                    (json_int_t)(every_ns / 1000000000LL), "traces", (json_int_t)h->traces,
                    "rows", rows, "not_recorded", "dropped", (json_int_t)h->dropped,
                    "sampled_out", (json_int_t)h->sampled_out, "redacted",
                    (json_int_t)h->redacted);
    return cli_json_print(obj);
}

int cli_stats_by(const cli_global *g, int argc, char **argv)
{
    enum { OPT_BY = CLI_OPT_FIRST_FREE, OPT_EVERY };
    static const struct option longopts[] = {
        CLI_LONGOPT_HELP,
        CLI_LONGOPT_JSON,
        CLI_LONGOPT_FILTER_MODEL,
        CLI_LONGOPTS_FILTER,
        {"by", required_argument, NULL, OPT_BY},
        {"every", required_argument, NULL, OPT_EVERY},
        CLI_LONGOPT_END,
    };
    deja_health_options o = DEJA_HEALTH_OPTIONS_INIT;
    deja_health *h = NULL;
    deja_store *store = NULL;
    cli_filter f;
    const char *by = NULL;
    int64_t now = cli_now_ns();
    int json = 0, first = 1, lost;
    int ret = CLI_EXIT_TROUBLE;
    int c, rc;

    cli_filter_init(&f);
    while ((c = cli_getopt_common(argc, argv, longopts, cli_stats_help, &first, &json, &ret)) !=
           -1) {
        if (c == '?')
            goto cleanup;
        if (c == OPT_BY) {
            by = optarg;
        } else if (c == OPT_EVERY) {
            if (cli_parse_span(optarg, &o.every_ns) != 0) {
                cli_error("--every: expected a duration such as 10m, 1h or 1d, not '%s'", optarg);
                goto cleanup;
            }
        } else if (cli_filter_option(&f, c, optarg, now) != 1) {
            goto cleanup;
        }
    }
    if (by == NULL || strcmp(by, "version") == 0) {
        o.by = DEJA_GROUP_VERSION;
    } else if (strcmp(by, "model") == 0) {
        o.by = DEJA_GROUP_MODEL;
    } else if (strncmp(by, "tag:", 4) == 0 && by[4] != '\0') {
        o.by = DEJA_GROUP_TAG;
        o.tag_key = by + 4;
    } else {
        ret = cli_usage_error(cli_stats_help, "--by: expected model, version or tag:KEY, not '%s'",
                              by);
        goto cleanup;
    }
    if (cli_store_open_no_operands(g, argc, argv, cli_stats_help, &store) != 0)
        goto cleanup;
    rc = deja_health_compute(store, &f.filter, &o, &h);
    lost = o.every_ns == 0 && o.by != DEJA_GROUP_TAG;
    if (rc < 0) {
        cli_lib_error(rc, "store '%s'", g->store);
        goto cleanup;
    }
    if (json) {
        if (print_json(h, by ? by : "version", o.every_ns, lost) < 0) {
            cli_error("out of memory printing stats");
            goto cleanup;
        }
    } else {
        print_table(h, o.every_ns > 0, lost);
    }
    fflush(stdout);
    if (h->bad > 0) {
        cli_error("%llu record%s could not be read", (unsigned long long)h->bad,
                  h->bad == 1 ? "" : "s");
        goto cleanup;
    }
    ret = CLI_EXIT_OK;

cleanup:
    deja_health_free(h);
    deja_store_close(store);
    cli_filter_free(&f);
    return ret;
}
