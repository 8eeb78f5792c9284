/*
 * cli/cmd_budget.c -- `deja budget`: show or set the store's disk budget.
 */
#include "cli.h"

#include <string.h>

static const char help[] =
    "usage: deja budget [SIZE | none] [--protect-share PCT] [--protect-tag KEY] [--json]\n"
    "\n"
    "Without SIZE, show the store's disk budget, the bytes in use, the file's size,\n"
    "the traces evicted so far and the pinned traces. With SIZE, set the budget: when\n"
    "the pages in use exceed it, the writer that notices evicts the oldest traces\n"
    "down to 90% of it, with the blobs, chunks and environments only they used, in\n"
    "one transaction; every writer of the store honours it from its next commit, and\n"
    "it is enforced once right away. 'none' removes the budget. Setting a budget on\n"
    "a store that does not exist yet creates it.\n"
    "\n"
    "Never evicted: pinned traces ('deja pin'). Evicted last, and only while they\n"
    "hold more than their share of the budget: errors, traces that broke a\n"
    "validation rule (tag deja.invalid) and traces carrying the protect tag.\n"
    "\n"
    "  SIZE                bytes, or with a unit: 500K, 64M, 2G (powers of 1024)\n"
    "  --protect-share PCT share of the budget protected traces may keep (default 25)\n"
    "  --protect-tag KEY   tag key that protects a trace (default deja.keep)\n"
    "  --json              print the budget as one JSON object\n"
    "\n"
    "Exit status: 0, or 2 when the store is missing, a value is malformed or the\n"
    "store cannot be written.\n";

enum { OPT_SHARE = CLI_OPT_FIRST_FREE, OPT_TAG };

/* Print the budget `b` as text or JSON. */
static int print_budget(const char *path, const deja_budget *b, int json)
{
    char a[32], u[32], f[32], e[32];

    if (json) {
        json_t *j = json_pack(
            "{s:I,s:I,s:s,s:I,s:I,s:I,s:I,s:I,s:I}", "max_bytes", (json_int_t)b->max_bytes,
            "protect_percent", (json_int_t)b->protect_percent, "protect_tag", b->protect_tag,
            "used_bytes", (json_int_t)b->used_bytes, "file_bytes", (json_int_t)b->file_bytes,
            "evicted", (json_int_t)b->evicted, "evicted_bytes", (json_int_t)b->evicted_bytes,
            "evictions", (json_int_t)b->evictions, "pinned", (json_int_t)b->pinned);
        return cli_json_print(j);
    }
    cli_format_bytes(b->max_bytes, a, sizeof a);
    cli_format_bytes(b->used_bytes, u, sizeof u);
    cli_format_bytes(b->file_bytes, f, sizeof f);
    cli_format_bytes(b->evicted_bytes, e, sizeof e);
    printf("%-16s %s\n", "store", path);
    if (b->max_bytes == 0)
        printf("%-16s none\n", "budget");
    else
        printf("%-16s %s (%llu bytes)\n", "budget", a, (unsigned long long)b->max_bytes);
    printf("%-16s %s in use, file %s\n", "use", u, f);
    printf("%-16s %u%% of the budget for errors, rule violations and tag %s\n", "protected",
           b->protect_percent, b->protect_tag);
    printf("%-16s %llu traces (%s) in %llu rounds\n", "evicted", (unsigned long long)b->evicted, e,
           (unsigned long long)b->evictions);
    printf("%-16s %llu traces\n", "pinned", (unsigned long long)b->pinned);
    return 0;
}

/* `deja budget`. */
int cmd_budget(const cli_global *g, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"protect-share", required_argument, NULL, OPT_SHARE},
        {"protect-tag", required_argument, NULL, OPT_TAG},
        CLI_LONGOPT_HELP,
        CLI_LONGOPT_JSON,
        CLI_LONGOPT_END,
    };
    deja_store *store = NULL;
    deja_budget b;
    const char *share = NULL, *tag = NULL;
    uint64_t size = 0, pct = 0;
    int first = 1, json = 0, c, rc;
    int ret = CLI_EXIT_TROUBLE;

    while ((c = cli_getopt_common(argc, argv, longopts, help, &first, &json, &ret)) != -1) {
        if (c == OPT_SHARE)
            share = optarg;
        else if (c == OPT_TAG)
            tag = optarg;
        else
            goto cleanup; /* '?': help printed or a bad option reported */
    }
    if (argc - optind > 1) {
        ret = cli_usage_error(help, "budget: unexpected argument '%s'", argv[optind + 1]);
        goto cleanup;
    }
    if (optind < argc && strcmp(argv[optind], "none") != 0 &&
        (cli_parse_size(argv[optind], &size) < 0 || size == 0)) {
        ret = cli_error("budget: cannot read size '%s' (expected bytes, or 500K, 64M, 2G, or "
                        "none)",
                        argv[optind]);
        goto cleanup;
    }
    if (share != NULL && (cli_parse_u64(share, 100, &pct) < 0)) {
        ret = cli_error("--protect-share: '%s' is not a percentage from 0 to 100", share);
        goto cleanup;
    }
    if (tag != NULL && (tag[0] == '\0' || strlen(tag) >= sizeof b.protect_tag)) {
        ret = cli_error("--protect-tag: a tag key of 1 to %zu bytes is expected",
                        sizeof b.protect_tag - 1);
        goto cleanup;
    }
    if (optind == argc && share == NULL && tag == NULL) {
        if (cli_store_open_read(g, &store) != 0)
            goto cleanup;
    } else {
        /* Setting a budget may come first, before anything is recorded:
         * it creates the store. */
        rc = deja_store_open(&store, g->store, DEJA_STORE_WRITE);
        if (rc != 0) {
            cli_lib_error(rc, "store '%s'", g->store);
            goto cleanup;
        }
    }
    rc = deja_store_budget_get(store, &b);
    if (rc == 0 && (optind < argc || share != NULL || tag != NULL)) {
        if (optind < argc)
            b.max_bytes = size;
        if (share != NULL)
            b.protect_percent = (unsigned)pct;
        if (tag != NULL)
            snprintf(b.protect_tag, sizeof b.protect_tag, "%s", tag);
        rc = deja_store_budget_set(store, &b);
        if (rc == 0)
            rc = deja_store_budget_get(store, &b);
    }
    if (rc != 0) {
        cli_lib_error(rc, "store '%s': budget", g->store);
        goto cleanup;
    }
    if (print_budget(g->store, &b, json) < 0) {
        cli_error("out of memory printing the budget");
        goto cleanup;
    }
    ret = CLI_EXIT_OK;

cleanup:
    deja_store_close(store);
    return ret;
}
