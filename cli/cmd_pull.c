/*
 * cli/cmd_pull.c -- `deja pull`: copy a selection of the fleet's traces,
 * with what they reference, into the local store.
 */
#include "cli_fleet.h"

#include <stdlib.h>
#include <string.h>

static const char help[] =
    "usage: deja pull --from nats://HOST:PORT[,HOST:PORT...] [ID...] [filters] [--json]\n"
    "                 [connection options]\n"
    "\n"
    "Copy the selected traces of the fleet (shipped with `deja ship`), with every blob and\n"
    "environment they reference, into the store (created if needed), so that show,\n"
    "replay, bisect and export work on them. Everything received is checked against its\n"
    "digest. Traces the store holds are left as they are: pulling twice changes nothing.\n"
    "Traces: ids or id prefixes and/or the filters of `ls`; with neither, every trace.\n"
    "\n"
    "  --from URLS        the JetStream servers\n"
    "  --json             print the summary as one JSON object\n" CLI_FILTER_HELP CLI_FLEET_HELP
    "\n"
    "Exit status: 0 pulled, 2 trouble (what was written before stays, whole traces only).\n";

enum { OPT_FROM = CLI_OPT_FIRST_FREE };

/* `deja pull`. */
int cmd_pull(const cli_global *g, int argc, char **argv)
{
    static const struct option longopts[] = {
        CLI_LONGOPT_HELP,   CLI_LONGOPT_JSON, CLI_LONGOPT_FILTER_MODEL,
        CLI_LONGOPTS_FILTER, CLI_LONGOPTS_FLEET, {"from", required_argument, NULL, OPT_FROM},
        CLI_LONGOPT_END,
    };
    deja_fleet_options fo = DEJA_FLEET_OPTIONS_INIT;
    deja_pull_stats st;
    deja_store *store = NULL;
    deja_fleet *fleet = NULL;
    cli_filter f;
    int json = 0, first = 1, ret = CLI_EXIT_TROUBLE, c, rc;

    cli_filter_init(&f);
    while ((c = cli_getopt_common(argc, argv, longopts, help, &first, &json, &ret)) != -1) {
        if (c == '?')
            goto cleanup;
        rc = cli_filter_option(&f, c, optarg, cli_now_ns());
        if (rc == 0)
            rc = cli_fleet_option(&fo, c, optarg, help);
        if (rc < 0)
            goto cleanup;
        if (rc == 0 && c == OPT_FROM)
            fo.servers = optarg;
    }
    if (fo.servers == NULL || fo.servers[0] == '\0') {
        ret = cli_usage_error(help, "pull: from where? give --from nats://HOST:PORT");
        goto cleanup;
    }
    for (int i = optind; i < argc; i++) {
        if (argv[i][0] == '\0' || strlen(argv[i]) > DEJA_ID_STRLEN) {
            ret = cli_usage_error(help, "pull: '%s' is not a trace id prefix", argv[i]);
            goto cleanup;
        }
    }
    if (cli_fleet_connect(&fo, &fleet) != 0)
        goto cleanup;
    rc = deja_store_open(&store, g->store, DEJA_STORE_WRITE);
    if (rc != 0) {
        cli_lib_error(rc, "store '%s'", g->store);
        goto cleanup;
    }
    rc = deja_fleet_pull(fleet, store, f.given ? &f.filter : NULL, (const char *const *)argv + optind,
                         (size_t)(argc - optind), &st);
    if (rc != 0) {
        cli_lib_error(rc, "pull");
        goto cleanup;
    }
    if (json) {
        json_t *j = json_pack("{s:I,s:I,s:I,s:I,s:I}", "traces", (json_int_t)st.traces,
                              "traces_added", (json_int_t)st.traces_added, "blobs_added",
                              (json_int_t)st.blobs_added, "envs_added",
                              (json_int_t)st.envs_added, "bytes", (json_int_t)st.bytes);
        if (cli_json_print(j) < 0) {
            cli_error("out of memory printing the summary");
            goto cleanup;
        }
    } else {
        printf("pulled %llu traces (%llu new), %llu blobs and %llu environments new to the "
               "store\n",
               (unsigned long long)st.traces, (unsigned long long)st.traces_added,
               (unsigned long long)st.blobs_added, (unsigned long long)st.envs_added);
    }
    ret = CLI_EXIT_OK;

cleanup:
    deja_store_close(store);
    deja_fleet_close(fleet);
    cli_filter_free(&f);
    return ret;
}
