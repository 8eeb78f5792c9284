/*
 * cli/cmd_gc.c -- `deja gc`: retention. Delete the traces older than a time,
 * or the oldest ones down to a size, and every blob, chunk and environment
 * only they referenced. Pinned traces stay.
 */
#include "cli.h"

#include <string.h>

static const char help[] =
    "usage: deja gc [--older-than T] [--max-size SIZE] [--keep-errors] [--dry-run] [--json]\n"
    "\n"
    "Delete the traces started before T (by their id's time), then, with --max-size,\n"
    "the oldest traces until the store's pages in use fit SIZE (errors, rule\n"
    "violations and traces with the budget's protect tag last: see 'deja budget'),\n"
    "with their index entries and the blobs, chunks and environments no remaining\n"
    "trace references, in one transaction: all or nothing. Pinned traces ('deja pin')\n"
    "are never deleted. A record that cannot be decoded is kept.\n"
    "\n"
    "  --older-than T   T: 2026-11-27T14:03:00Z, '2026-11-27 14:03' (local), 2026-11-27,\n"
    "                   today, yesterday, @1764590000 (Unix seconds), or a time ago:\n"
    "                   30s, 10m, 2h, 3d, 1w, 1h30m (30d: older than 30 days)\n"
    "  --max-size SIZE  evict the oldest traces until the pages in use fit SIZE\n"
    "                   (bytes, or with a unit: 500K, 64M, 2G)\n"
    "  --keep-errors    keep error traces whatever their age\n"
    "  --dry-run        count what would be deleted, delete nothing\n"
    "  --json           print the counts as one JSON object\n"
    "\n"
    "Exit status: 0, or 2 when the store is missing or cannot be written.\n";

enum { OPT_OLDER_THAN = CLI_OPT_FIRST_FREE, OPT_MAX_SIZE, OPT_KEEP_ERRORS, OPT_DRY_RUN };

/* `deja gc`. */
int cmd_gc(const cli_global *g, int argc, char **argv)
{
    static const struct option longopts[] = {
        {"older-than", required_argument, NULL, OPT_OLDER_THAN},
        {"max-size", required_argument, NULL, OPT_MAX_SIZE},
        {"keep-errors", no_argument, NULL, OPT_KEEP_ERRORS},
        {"dry-run", no_argument, NULL, OPT_DRY_RUN},
        CLI_LONGOPT_HELP,
        CLI_LONGOPT_JSON,
        CLI_LONGOPT_END,
    };
    deja_gc_options o = DEJA_GC_OPTIONS_INIT;
    deja_gc_stats st;
    deja_store *store = NULL;
    const int64_t now = cli_now_ns();
    char freed[32];
    int first = 1, json = 0, given = 0, c, rc = 0;
    int ret = CLI_EXIT_TROUBLE;

    while ((c = cli_getopt_common(argc, argv, longopts, help, &first, &json, &ret)) != -1) {
        if (c == OPT_OLDER_THAN) {
            if (cli_parse_time(optarg, now, &o.before_ns) < 0) {
                ret = cli_error("--older-than: cannot read time '%s' (expected "
                                "2026-11-27T14:03:00Z, '2026-11-27 14:03', 2026-11-27, "
                                "or 10m, 2h, 30d ago)",
                                optarg);
                goto cleanup;
            }
            given = 1;
        } else if (c == OPT_MAX_SIZE) {
            if (cli_parse_size(optarg, &o.max_bytes) < 0 || o.max_bytes == 0) {
                ret = cli_error("--max-size: cannot read size '%s' (expected bytes, or 500K, "
                                "64M, 2G)",
                                optarg);
                goto cleanup;
            }
            given = 1;
        } else if (c == OPT_KEEP_ERRORS) {
            o.keep_errors = 1;
        } else if (c == OPT_DRY_RUN) {
            o.dry_run = 1;
        } else {
            goto cleanup; /* '?': help printed or a bad option reported */
        }
    }
    if (!given) {
        ret = cli_usage_error(help, "gc: --older-than or --max-size is required (e.g. "
                                    "--older-than 30d)");
        goto cleanup;
    }
    if (optind < argc) {
        ret = cli_usage_error(help, "gc: unexpected argument '%s'", argv[optind]);
        goto cleanup;
    }
    if (cli_store_open_read(g, &store) != 0)
        goto cleanup;
    rc = 0;
    /* A dry run reads only. */
    if (!o.dry_run) {
        deja_store_close(store);
        store = NULL;
        rc = deja_store_open(&store, g->store, DEJA_STORE_WRITE);
    }
    if (rc != 0) {
        cli_lib_error(rc, "store '%s'", g->store);
        goto cleanup;
    }
    {
        cli_progress bar;
        cli_progress_begin(&bar, "records collected");
        rc = deja_store_gc(store, &o, &st);
        cli_progress_end(&bar);
    }
    if (rc != 0) {
        cli_lib_error(rc, "store '%s': gc", g->store);
        goto cleanup;
    }
    if (json) {
        json_t *j = json_pack("{s:b,s:I,s:I,s:I,s:I,s:I}", "dry_run", o.dry_run, "traces",
                              (json_int_t)st.traces, "blobs", (json_int_t)st.blobs, "chunks",
                              (json_int_t)st.chunks, "environments", (json_int_t)st.envs, "bytes",
                              (json_int_t)st.bytes);
        if (cli_json_print(j) < 0) {
            cli_error("out of memory printing the counts");
            goto cleanup;
        }
    } else {
        cli_format_bytes(st.bytes, freed, sizeof freed);
        printf("%s %s, %s, %s, %s (%s freed)\n", o.dry_run ? "would delete" : "deleted",
               cli_count(st.traces, "trace"), cli_count(st.blobs, "blob"),
               cli_count(st.chunks, "chunk"), cli_count(st.envs, "environment"), freed);
    }
    ret = CLI_EXIT_OK;

cleanup:
    deja_store_close(store);
    return ret;
}
