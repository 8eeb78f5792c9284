/*
 * cli/cmd_worker.c -- `deja worker`: replay jobs of the fleet until
 * stopped, for `deja replay --via` run anywhere.
 */
#include "cli_fleet.h"

#include <stdlib.h>
#include <string.h>

static const char help[] =
    "usage: deja worker --from nats://HOST:PORT[,HOST:PORT...] [--model PLUGIN[:ARG]]\n"
    "                   [--ack-wait MS] [--prefetch N] [--max-jobs N] [connection options]\n"
    "\n"
    "Take replay jobs enqueued by `deja replay --via` on the work-queue stream DEJA_JOBS,\n"
    "fetch each trace and its blobs into the store (a local cache, created if needed),\n"
    "replay it and publish the result, until SIGINT or SIGTERM. Run any number of\n"
    "workers on any number of machines. A worker that dies loses its jobs to the others\n"
    "after the ack deadline; a running job is kept alive by a heartbeat.\n"
    "\n"
    "  --from URLS        the JetStream servers\n"
    "  --model PLUGIN[:ARG]\n"
    "                     replay on this model (default: the one each job names)\n"
    "  --ack-wait MS      the ack deadline of the workers' consumer, set by the first\n"
    "                     worker (default 10000)\n"
    "  --prefetch N       jobs taken and replayed at once (default 16)\n"
    "  --max-jobs N       stop after N jobs\n" CLI_FLEET_HELP
    "\n"
    "Exit status: 0 when stopped, 2 trouble.\n";

enum {
    OPT_FROM = CLI_OPT_FIRST_FREE,
    OPT_MODEL,
    OPT_ACK_WAIT,
    OPT_PREFETCH,
    OPT_MAX_JOBS,
};

static int stop_cb(void *payload)
{
    (void)payload;
    return cli_fleet_stopping();
}

/* `deja worker`. */
int cmd_worker(const cli_global *g, int argc, char **argv)
{
    static const struct option longopts[] = {
        CLI_LONGOPT_HELP,
        CLI_LONGOPTS_FLEET,
        {"from", required_argument, NULL, OPT_FROM},
        {"model", required_argument, NULL, OPT_MODEL},
        {"ack-wait", required_argument, NULL, OPT_ACK_WAIT},
        {"prefetch", required_argument, NULL, OPT_PREFETCH},
        {"max-jobs", required_argument, NULL, OPT_MAX_JOBS},
        CLI_LONGOPT_END,
    };
    deja_fleet_options fo = DEJA_FLEET_OPTIONS_INIT;
    deja_worker_options wo = DEJA_WORKER_OPTIONS_INIT;
    deja_worker_stats st;
    deja_store *cache = NULL;
    deja_fleet *fleet = NULL;
    uint64_t v;
    int json = 0, first = 1, ret = CLI_EXIT_TROUBLE, c, rc;

    while ((c = cli_getopt_common(argc, argv, longopts, help, &first, &json, &ret)) != -1) {
        if (c == '?')
            goto cleanup;
        rc = cli_fleet_option(&fo, c, optarg, help);
        if (rc < 0)
            goto cleanup;
        if (rc > 0)
            continue;
        if (c == OPT_FROM) {
            fo.servers = optarg;
        } else if (c == OPT_MODEL) {
            wo.model_spec = optarg;
        } else if (c == OPT_ACK_WAIT || c == OPT_PREFETCH || c == OPT_MAX_JOBS) {
            if (cli_parse_u64(optarg, c == OPT_MAX_JOBS ? UINT64_MAX / 2 : 3600000, &v) != 0 ||
                v == 0) {
                ret = cli_usage_error(help, "worker: %s wants a positive number, not '%s'",
                                      argv[optind - 1], optarg);
                goto cleanup;
            }
            if (c == OPT_ACK_WAIT)
                wo.ack_wait_ms = (unsigned)v;
            else if (c == OPT_PREFETCH)
                wo.prefetch = (unsigned)(v > 1024 ? 1024 : v);
            else
                wo.max_jobs = v;
        }
    }
    if (optind < argc) {
        ret = cli_usage_error(help, "worker: unexpected argument '%s'", argv[optind]);
        goto cleanup;
    }
    if (fo.servers == NULL || fo.servers[0] == '\0') {
        ret = cli_usage_error(help, "worker: from where? give --from nats://HOST:PORT");
        goto cleanup;
    }
    if (cli_fleet_connect(&fo, &fleet) != 0)
        goto cleanup;
    rc = deja_store_open(&cache, g->store, DEJA_STORE_WRITE);
    if (rc != 0) {
        cli_lib_error(rc, "store '%s'", g->store);
        goto cleanup;
    }
    cli_fleet_stop_on_signals();
    wo.stop = stop_cb;
    rc = deja_fleet_work(fleet, cache, &wo, &st);
    fprintf(stderr, "deja: worker: %llu jobs done (%llu errors)\n", (unsigned long long)st.jobs,
            (unsigned long long)st.errors);
    if (rc != 0) {
        cli_lib_error(rc, "worker");
        goto cleanup;
    }
    ret = CLI_EXIT_OK;

cleanup:
    deja_store_close(cache);
    deja_fleet_close(fleet);
    return ret;
}
