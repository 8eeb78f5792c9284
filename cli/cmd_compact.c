/*
 * cli/cmd_compact.c -- `deja compact`: rewrite the store without its free
 * pages, atomically.
 */
#include "cli.h"

#include <string.h>

static const char help[] =
    "usage: deja compact [--json]\n"
    "\n"
    "Rewrite the store compacted, as `mdb_copy -c` does: only the pages in use,\n"
    "so that the space gc freed (see `deja stats`, \"free in the file\") goes back\n"
    "to the file system. The compacted copy is checked, then exchanged with the\n"
    "store in one atomic rename: a reader sees the old store or the new one, whole\n"
    "(readers already open keep the old copy until they reopen). Refused while a\n"
    "process has the store open for writing (a tracer, run, import, gc, proxy);\n"
    "writers that open the store meanwhile wait for compact to finish.\n"
    "\n"
    "  --json   print the sizes before and after as one JSON object\n"
    "\n"
    "Exit status: 0 compacted, 2 trouble (the store is left as it was).\n";

/* `deja compact`. */
int cmd_compact(const cli_global *g, int argc, char **argv)
{
    uint64_t before = 0, after = 0;
    char a[32], b[32];
    int json = 0, ret = CLI_EXIT_TROUBLE, rc;

    if (cli_options_json_only(argc, argv, help, &json, &ret) != 0)
        return ret;
    if (optind < argc)
        return cli_usage_error(help, "compact: unexpected argument '%s'", argv[optind]);
    {
        cli_progress bar;
        cli_progress_begin(&bar, "bytes copied");
        rc = deja_store_compact(g->store, &before, &after);
        cli_progress_end(&bar);
    }
    if (rc != 0)
        return cli_lib_error(rc, "compact");
    if (json) {
        if (cli_json_print(json_pack("{s:s, s:I, s:I}", "store", g->store, "file_bytes_before",
                                     (json_int_t)before, "file_bytes", (json_int_t)after)) != 0)
            return cli_error("compact: out of memory printing the sizes");
    } else {
        cli_format_bytes(before, a, sizeof a);
        cli_format_bytes(after, b, sizeof b);
        printf("compacted %s: %s -> %s\n", g->store, a, b);
    }
    return CLI_EXIT_OK;
}
