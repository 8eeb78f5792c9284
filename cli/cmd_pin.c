/*
 * cli/cmd_pin.c -- `deja pin` and `deja unpin`: keep traces whatever gc,
 * --older-than and the disk budget do, and let them go again.
 */
#include "cli.h"

#include <stdlib.h>

static const char pin_help[] =
    "usage: deja pin ID... [--note TEXT]\n"
    "\n"
    "Pin traces (ids or unique prefixes): gc, --older-than and the disk budget never\n"
    "delete a pinned trace, nor anything it references. Pin the trace a bug report\n"
    "points at. Pinning a pinned trace replaces its note. 'deja ls --pinned' lists\n"
    "them, 'deja show' prints the note.\n"
    "\n"
    "  --note TEXT   why it is pinned (at most 4096 bytes), e.g. a ticket\n"
    "\n"
    "Exit status: 0, or 2 when an id is unknown or the store cannot be written\n"
    "(the ids before it are pinned).\n";

static const char unpin_help[] =
    "usage: deja unpin ID...\n"
    "\n"
    "Unpin traces: gc and the disk budget may delete them again.\n"
    "\n"
    "Exit status: 0, or 2 when an id is unknown or not pinned (the ids before it\n"
    "are unpinned).\n";

enum { OPT_NOTE = CLI_OPT_FIRST_FREE };

/* Pin (or, with `unpin`, unpin) every id operand of argv. */
static int pin_all(const cli_global *g, int argc, char **argv, const char *help, int unpin)
{
    static const struct option longopts[] = {
        {"note", required_argument, NULL, OPT_NOTE},
        CLI_LONGOPT_HELP,
        CLI_LONGOPT_END,
    };
    static const struct option unpin_longopts[] = {CLI_LONGOPT_HELP, CLI_LONGOPT_END};
    deja_store *store = NULL;
    const char *note = NULL;
    int first = 1, json = 0, c, rc;
    int ret = CLI_EXIT_TROUBLE;

    while ((c = cli_getopt_common(argc, argv, unpin ? unpin_longopts : longopts, help, &first,
                                  &json, &ret)) != -1) {
        if (c == OPT_NOTE)
            note = optarg;
        else
            goto cleanup; /* '?': help printed or a bad option reported */
    }
    if (optind >= argc) {
        ret = cli_usage_error(help, "%s: no trace id given", argv[0]);
        goto cleanup;
    }
    if (cli_store_open_write(g, &store) != 0)
        goto cleanup;
    for (int i = optind; i < argc; i++) {
        char text[DEJA_ID_STRLEN + 1];
        deja_id id;

        if (cli_resolve(store, argv[i], &id) != 0)
            goto cleanup;
        rc = unpin ? deja_trace_unpin(store, &id) : deja_trace_pin(store, &id, note);
        if (rc != 0) {
            cli_lib_error(rc, "%s %s", argv[0], argv[i]);
            goto cleanup;
        }
        deja_id_format(&id, text);
        printf("%s %s\n", unpin ? "unpinned" : "pinned", text);
    }
    ret = CLI_EXIT_OK;

cleanup:
    deja_store_close(store);
    return ret;
}

/* `deja pin`. */
int cmd_pin(const cli_global *g, int argc, char **argv)
{
    return pin_all(g, argc, argv, pin_help, 0);
}

/* `deja unpin`. */
int cmd_unpin(const cli_global *g, int argc, char **argv)
{
    return pin_all(g, argc, argv, unpin_help, 1);
}
