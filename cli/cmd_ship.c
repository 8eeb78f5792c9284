/*
 * cli/cmd_ship.c -- `deja ship`: publish the store's traces, and what they
 * reference, to NATS JetStream; resumable, optionally following new ones.
 */
#include "cli_fleet.h"

#include <stdlib.h>
#include <string.h>

static const char help[] =
    "usage: deja ship --to nats://HOST:PORT[,HOST:PORT...] [filters] [--follow]\n"
    "                 [--poll MS] [--settle MS] [--batch N] [--json] [connection options]\n"
    "\n"
    "Publish the traces of the store to the JetStream stream DEJA_TRACES (subject\n"
    "deja.traces.<model>.<version>.<id>, the id as Nats-Msg-Id) and the blobs, chunks and\n"
    "environments they reference to DEJA_OBJECTS (one message per digest, fleet-wide).\n"
    "The last acknowledged position is kept in the store: a ship that is stopped or\n"
    "killed resumes there, and what it sends again is stored once.\n"
    "\n"
    "  --to URLS          the JetStream servers (a cluster: several, comma-separated)\n"
    "  --follow           keep shipping traces as they commit, until SIGINT or SIGTERM;\n"
    "                     prints each batch and its lag (trace end to acknowledgement)\n"
    "  --poll MS          --follow: look for new traces this often (default 200)\n"
    "  --settle MS        look again this far behind the position, for spans that\n"
    "                     committed late (default 60000)\n"
    "  --batch N          traces per acknowledged batch (default 256)\n"
    "  --json             print the summary as one JSON object\n" CLI_FILTER_HELP CLI_FLEET_HELP
    "\n"
    "Exit status: 0 shipped, 2 trouble (the position stays at the last acknowledged batch).\n";

enum {
    OPT_TO = CLI_OPT_FIRST_FREE,
    OPT_FOLLOW,
    OPT_POLL,
    OPT_SETTLE,
    OPT_BATCH,
};

typedef struct ship_state {
    int follow;
    uint64_t printed_traces;
} ship_state;

/* Print each batch when following; stop on a signal. */
static int on_progress(const deja_ship_stats *s, void *payload)
{
    ship_state *st = payload;

    if (st->follow && s->traces > st->printed_traces) {
        char id[DEJA_ID_STRLEN + 1];

        deja_id_format(&s->position, id);
        printf("shipped %llu traces (%llu in all), lag %.1f ms, position %s\n",
               (unsigned long long)(s->traces - st->printed_traces),
               (unsigned long long)s->traces, (double)s->lag_ns / 1e6, id);
        fflush(stdout);
        st->printed_traces = s->traces;
    }
    return cli_fleet_stopping();
}

static int parse_ms(const char *arg, const char *name, uint64_t max, unsigned *out)
{
    uint64_t n;

    if (cli_parse_u64(arg, max, &n) != 0 || n == 0)
        return cli_usage_error(help, "ship: %s wants a positive number, not '%s'", name, arg);
    *out = (unsigned)n;
    return 0;
}

/* `deja ship`. */
int cmd_ship(const cli_global *g, int argc, char **argv)
{
    static const struct option longopts[] = {
        CLI_LONGOPT_HELP,
        CLI_LONGOPT_JSON,
        CLI_LONGOPT_FILTER_MODEL,
        CLI_LONGOPTS_FILTER,
        CLI_LONGOPTS_FLEET,
        {"to", required_argument, NULL, OPT_TO},
        {"follow", no_argument, NULL, OPT_FOLLOW},
        {"poll", required_argument, NULL, OPT_POLL},
        {"settle", required_argument, NULL, OPT_SETTLE},
        {"batch", required_argument, NULL, OPT_BATCH},
        CLI_LONGOPT_END,
    };
    deja_fleet_options fo = DEJA_FLEET_OPTIONS_INIT;
    deja_ship_options so = DEJA_SHIP_OPTIONS_INIT;
    deja_ship_stats st;
    deja_store *store = NULL;
    deja_fleet *fleet = NULL;
    ship_state state = {0, 0};
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
        if (rc > 0)
            continue;
        if (c == OPT_TO)
            fo.servers = optarg;
        else if (c == OPT_FOLLOW)
            so.follow = 1;
        else if (c == OPT_POLL && parse_ms(optarg, "--poll", 3600000, &so.poll_ms) != 0)
            goto cleanup;
        else if (c == OPT_SETTLE && parse_ms(optarg, "--settle", 86400000, &so.settle_ms) != 0)
            goto cleanup;
        else if (c == OPT_BATCH && parse_ms(optarg, "--batch", 65536, &so.batch) != 0)
            goto cleanup;
    }
    if (optind < argc) {
        ret = cli_usage_error(help, "ship: unexpected argument '%s'", argv[optind]);
        goto cleanup;
    }
    if (fo.servers == NULL || fo.servers[0] == '\0') {
        ret = cli_usage_error(help, "ship: where to? give --to nats://HOST:PORT");
        goto cleanup;
    }
    /* The store must exist; nothing is written to it before the fleet answers. */
    if (cli_store_open_read(g, &store) != 0)
        goto cleanup;
    deja_store_close(store);
    store = NULL;
    if (cli_fleet_connect(&fo, &fleet) != 0)
        goto cleanup;
    rc = deja_store_open(&store, g->store, DEJA_STORE_WRITE);
    if (rc != 0) {
        cli_lib_error(rc, "store '%s'", g->store);
        goto cleanup;
    }
    if (f.given)
        so.filter = &f.filter;
    state.follow = so.follow;
    so.progress = on_progress;
    so.payload = &state;
    if (so.follow)
        cli_fleet_stop_on_signals();
    rc = deja_fleet_ship(fleet, store, &so, &st);
    if (rc != 0) {
        cli_lib_error(rc, "ship");
        goto cleanup;
    }
    if (json) {
        char pos[DEJA_ID_STRLEN + 1];
        json_t *j;

        deja_id_format(&st.position, pos);
        j = json_pack("{s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:s}", "traces", (json_int_t)st.traces,
                      "traces_present", (json_int_t)st.traces_present, "objects",
                      (json_int_t)st.objects, "objects_present", (json_int_t)st.objects_present,
                      "objects_skipped", (json_int_t)st.objects_skipped, "bytes",
                      (json_int_t)st.bytes, "filtered", (json_int_t)st.filtered, "position", pos);
        if (cli_json_print(j) < 0) {
            cli_error("out of memory printing the summary");
            goto cleanup;
        }
    } else {
        char size[32];

        cli_format_bytes(st.bytes, size, sizeof size);
        printf("shipped %llu traces (%llu already there), %llu objects (%llu already there, "
               "%llu known and not sent), %s\n",
               (unsigned long long)st.traces, (unsigned long long)st.traces_present,
               (unsigned long long)st.objects, (unsigned long long)st.objects_present,
               (unsigned long long)st.objects_skipped, size);
    }
    ret = CLI_EXIT_OK;

cleanup:
    deja_store_close(store);
    deja_fleet_close(fleet);
    cli_filter_free(&f);
    return ret;
}
