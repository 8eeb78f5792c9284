/*
 * cli/cmd_stats.c -- `deja stats`: store size, dedup and compression ratios.
 */
#include "cli.h"
#include "cli_watch.h"

#include <string.h>

const char cli_stats_help[] =
    "usage: deja stats [--json] | deja stats --by model|version|tag:KEY [filters] [--every D] "
    "[--json]\n"
    "\n"
    "Show the store's figures: traces, blobs, environments, bytes before and after\n"
    "deduplication and compression, the ratios, compression dictionaries, traces\n"
    "dropped, sampled out or redacted by tracers, traces flagged by a validation\n"
    "rule at record time (tag deja.invalid), the disk budget with the traces evicted\n"
    "and pinned, every other counter (sampling decisions, ...), the on-disk format\n"
    "version, and the size of the store's file with the space free inside it\n"
    "(`deja compact` gives it back).\n"
    "\n"
    "With --by: health per group -- traces, errors and error rate, invalid traces,\n"
    "latency p50/p95/p99 (recorded durations, 1% relative error), mean input and\n"
    "output bytes per trace -- over the traces matching the filters.\n"
    "\n"
    "  --by model|version|tag:KEY   group by model name, name@version, or a tag's value\n"
    "  --every D          one row per group and time bucket of D (10m, 1h, 1d, ...)\n"
    CLI_FILTER_HELP
    "  --json             one JSON object\n";

static const char *const help = cli_stats_help;

/* a / b, or 0 when b is 0. */
static double ratio(uint64_t a, uint64_t b)
{
    return b == 0 ? 0.0 : (double)a / (double)b;
}

/* Print "label  1.2 MiB (1234567 bytes)". */
static void print_bytes(const char *label, uint64_t v)
{
    char human[32];

    cli_format_bytes(v, human, sizeof human);
    printf("%-22s %s (%llu bytes)\n", label, human, (unsigned long long)v);
}

/* Counters shown on lines of their own (the others are listed by name). */
static int is_shown_counter(const char *name)
{
    static const char *const shown[] = {"raw_bytes", "unique_bytes",  "stored_bytes",
                                        "dropped",   "sampled_out",   "redacted",
                                        "evicted",   "evicted_bytes", "evictions"};

    for (size_t i = 0; i < sizeof shown / sizeof shown[0]; i++)
        if (strcmp(name, shown[i]) == 0)
            return 1;
    return 0;
}

/* deja_store_counters callback: print the other counters as text. */
static int counter_text(const char *name, uint64_t value, void *payload)
{
    (void)payload;
    if (!is_shown_counter(name))
        printf("%-22s %llu\n", name, (unsigned long long)value);
    return 0;
}

/* deja_store_counters callback: add each counter to a JSON object. */
static int counter_json(const char *name, uint64_t value, void *payload)
{
    return json_object_set_new(payload, name, json_integer((json_int_t)value));
}

/* The JSON form. */
static int stats_json(deja_store *store, const deja_store_stats *st, uint64_t invalid,
                      uint64_t free_bytes, const deja_budget *b)
{
    json_t *counters = json_object();
    json_t *obj = json_pack(
        "{s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:I, s:I, s:I, s:I, s:I}", "traces",
        (json_int_t)st->traces, "blobs", (json_int_t)st->blobs, "environments",
        (json_int_t)st->envs, "raw_bytes", (json_int_t)st->raw_bytes, "unique_bytes",
        (json_int_t)st->unique_bytes, "stored_bytes", (json_int_t)st->stored_bytes, "file_bytes",
        (json_int_t)st->file_bytes, "compression_ratio", ratio(st->unique_bytes, st->stored_bytes),
        "dedup_ratio", ratio(st->raw_bytes, st->unique_bytes), "overall_ratio",
        ratio(st->raw_bytes, st->stored_bytes), "dictionaries", (json_int_t)st->dictionaries,
        "dropped", (json_int_t)st->dropped, "sampled_out", (json_int_t)st->sampled_out, "redacted",
        (json_int_t)st->redacted, "format", (json_int_t)st->format);

    if (obj != NULL)
        json_object_set_new(obj, "invalid", json_integer((json_int_t)invalid));
    if (obj != NULL)
        json_object_set_new(obj, "free_bytes", json_integer((json_int_t)free_bytes));
    if (obj == NULL || counters == NULL ||
        deja_store_counters(store, counter_json, counters) != 0) {
        json_decref(counters);
        json_decref(obj);
        return -1;
    }
    if (json_object_set_new(obj, "counters", counters) != 0) {
        json_decref(obj);
        return -1;
    }
    if (json_object_set_new(obj, "budget",
                            json_pack("{s:I,s:I,s:I,s:I,s:I}", "max_bytes",
                                      (json_int_t)b->max_bytes, "used_bytes",
                                      (json_int_t)b->used_bytes, "evicted",
                                      (json_int_t)b->evicted, "evictions",
                                      (json_int_t)b->evictions, "pinned",
                                      (json_int_t)b->pinned)) != 0) {
        json_decref(obj);
        return -1;
    }
    return cli_json_print(obj);
}

/* `deja stats`. */
int cmd_stats(const cli_global *g, int argc, char **argv)
{
    deja_store *store = NULL;
    deja_store_stats st;
    uint64_t invalid = 0, file_bytes = 0, free_bytes = 0;
    deja_budget b;
    int json = 0;
    int ret = CLI_EXIT_TROUBLE;
    int rc;

    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--by") == 0 || strncmp(argv[i], "--by=", 5) == 0)
            return cli_stats_by(g, argc, argv);
    if (cli_options_json_only(argc, argv, help, &json, &ret) != 0 ||
        cli_store_open_no_operands(g, argc, argv, help, &store) != 0)
        goto cleanup;
    rc = deja_store_stats_get(store, &st);
    if (rc == 0)
        rc = deja_store_invalid_count(store, &invalid);
    if (rc == 0)
        rc = deja_store_space(store, &file_bytes, &free_bytes);
    if (rc == 0)
        rc = deja_store_budget_get(store, &b);
    if (rc < 0) {
        cli_lib_error(rc, "store '%s'", g->store);
        goto cleanup;
    }
    if (json) {
        if (stats_json(store, &st, invalid, free_bytes, &b) < 0) {
            cli_error("out of memory printing stats");
            goto cleanup;
        }
    } else {
        printf("%-22s %s\n", "store", g->store);
        printf("%-22s %llu\n", "traces", (unsigned long long)st.traces);
        printf("%-22s %llu\n", "blobs", (unsigned long long)st.blobs);
        printf("%-22s %llu\n", "environments", (unsigned long long)st.envs);
        print_bytes("raw bytes", st.raw_bytes);
        print_bytes("unique bytes", st.unique_bytes);
        print_bytes("stored bytes", st.stored_bytes);
        print_bytes("file bytes", st.file_bytes);
        print_bytes("free in the file", free_bytes);
        printf("%-22s %.2fx (unique / stored)\n", "compression ratio",
               ratio(st.unique_bytes, st.stored_bytes));
        printf("%-22s %.2fx (raw / unique)\n", "dedup ratio", ratio(st.raw_bytes, st.unique_bytes));
        printf("%-22s %.2fx (raw / stored)\n", "overall ratio",
               ratio(st.raw_bytes, st.stored_bytes));
        printf("%-22s %u\n", "dictionaries", (unsigned)st.dictionaries);
        printf("%-22s %llu dropped, %llu sampled out, %llu redacted\n", "not recorded",
               (unsigned long long)st.dropped, (unsigned long long)st.sampled_out,
               (unsigned long long)st.redacted);
        printf("%-22s %llu traces tagged deja.invalid\n", "invalid",
               (unsigned long long)invalid);
        if (b.max_bytes > 0) {
            char max[32], used[32];

            cli_format_bytes(b.max_bytes, max, sizeof max);
            cli_format_bytes(b.used_bytes, used, sizeof used);
            printf("%-22s %s, %s in use\n", "budget", max, used);
        } else {
            printf("%-22s none\n", "budget");
        }
        printf("%-22s %llu traces in %llu rounds\n", "evicted (budget)",
               (unsigned long long)b.evicted, (unsigned long long)b.evictions);
        printf("%-22s %llu\n", "pinned", (unsigned long long)b.pinned);
        if (deja_store_counters(store, counter_text, NULL) != 0) {
            cli_lib_error(DEJA_EIO, "store '%s': counters", g->store);
            goto cleanup;
        }
        printf("%-22s %u\n", "format version", (unsigned)st.format);
    }
    ret = CLI_EXIT_OK;

cleanup:
    deja_store_close(store);
    return ret;
}
