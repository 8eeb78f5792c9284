/*
 * cli/cmd_verify.c -- `deja verify`: check the store's integrity.
 */
#include "cli.h"
#include "cli_escape.h"

#include <string.h>

static const char help[] =
    "usage: deja verify [--json]\n"
    "\n"
    "Check that every record decodes, every blob matches its digest, and every\n"
    "reference (blob, environment, index entry) resolves. Prints each problem.\n"
    "\n"
    "  --json   one JSON object per problem ({\"problem\": ...}), then a summary object\n"
    "\n"
    "Exit status: 0 when the store is sound, 1 when problems were found, 2 when the\n"
    "check could not run.\n";

typedef struct verify_state {
    int json;
    int failed; /* out of memory printing */
    cli_progress bar;
} verify_state;

/* deja_store_verify callback: print one problem. */
static void problem_cb(const char *line, void *payload)
{
    verify_state *s = payload;

    cli_progress_clear(&s->bar);
    if (s->json) {
        if (cli_json_print(json_pack("{s:o}", "problem", cli_json_text(line))) < 0)
            s->failed = 1;
    } else {
        printf("%s\n", cli_term(line));
    }
}

/* `deja verify`. */
int cmd_verify(const cli_global *g, int argc, char **argv)
{
    deja_store *store = NULL;
    deja_store_stats st;
    verify_state s = {0};
    int ret = CLI_EXIT_TROUBLE;
    int rc, problems;

    if (cli_options_json_only(argc, argv, help, &s.json, &ret) != 0 ||
        cli_store_open_no_operands(g, argc, argv, help, &store) != 0)
        goto cleanup;
    cli_progress_begin(&s.bar, "records verified");
    problems = deja_store_verify(store, problem_cb, &s);
    cli_progress_end(&s.bar);
    if (problems < 0) {
        cli_lib_error(problems, "store '%s': verify", g->store);
        goto cleanup;
    }
    rc = deja_store_stats_get(store, &st);
    if (rc < 0 && problems == 0) {
        cli_lib_error(rc, "store '%s'", g->store);
        goto cleanup;
    }
    if (rc < 0)
        memset(&st, 0, sizeof st); /* a damaged store may not count; the problems stand */
    if (s.json) {
        if (cli_json_print(json_pack("{s:b, s:i, s:I, s:I}", "ok", problems == 0, "problems",
                                     problems, "traces", (json_int_t)st.traces, "blobs",
                                     (json_int_t)st.blobs)) < 0)
            s.failed = 1;
    } else if (problems == 0) {
        printf("store OK: %s, %s verified\n", cli_count(st.traces, "trace"),
               cli_count(st.blobs, "blob"));
    } else {
        printf("store has %s (%s, %s)\n", cli_count((uint64_t)problems, "problem"),
               cli_count(st.traces, "trace"), cli_count(st.blobs, "blob"));
    }
    fflush(stdout);
    if (s.failed) {
        cli_error("out of memory printing problems");
        goto cleanup;
    }
    if (problems > 0) {
        cli_error("store '%s': %d problem%s found", g->store, problems, problems == 1 ? "" : "s");
        ret = CLI_EXIT_DIFF;
        goto cleanup;
    }
    ret = CLI_EXIT_OK;

cleanup:
    deja_store_close(store);
    return ret;
}
