/*
 * cli/cli_fleet.c -- the fleet commands' shared options and signals.
 */
#include "cli_fleet.h"

#include <signal.h>
#include <string.h>

static volatile sig_atomic_t stop_flag;

int cli_fleet_option(deja_fleet_options *o, int opt, const char *arg, const char *help)
{
    uint64_t n;

    switch (opt) {
    case CLI_OPT_FLEET_USER:
        o->user = arg;
        return 1;
    case CLI_OPT_FLEET_PASSWORD:
        o->password = arg;
        return 1;
    case CLI_OPT_FLEET_TOKEN:
        o->token = arg;
        return 1;
    case CLI_OPT_FLEET_CREDS:
        o->creds = arg;
        return 1;
    case CLI_OPT_FLEET_REPLICAS:
        if (cli_parse_u64(arg, 5, &n) != 0 || n == 0) {
            cli_usage_error(help, "--replicas wants 1..5, not '%s'", arg);
            return -1;
        }
        o->replicas = (unsigned)n;
        return 1;
    case CLI_OPT_FLEET_TIMEOUT:
        if (cli_parse_u64(arg, 3600000, &n) != 0 || n == 0) {
            cli_usage_error(help, "--timeout wants milliseconds, not '%s'", arg);
            return -1;
        }
        o->timeout_ms = (unsigned)n;
        return 1;
    default:
        return 0;
    }
}

int cli_fleet_connect(const deja_fleet_options *o, deja_fleet **out)
{
    const int rc = deja_fleet_connect(out, o);

    if (rc != 0)
        return cli_error("%s", deja_error_last()[0] ? deja_error_last() : deja_strerror(rc));
    return 0;
}

static void on_signal(int sig)
{
    (void)sig;
    stop_flag = 1;
}

void cli_fleet_stop_on_signals(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

int cli_fleet_stopping(void)
{
    return stop_flag != 0;
}

int cli_fleet_replay_via(const char *servers, deja_store *store, const deja_id *ids, size_t n,
                         const char *spec, const deja_replay_options *o, deja_replay_cb cb,
                         void *payload, deja_replay_summary *sum)
{
    deja_fleet_options fo = DEJA_FLEET_OPTIONS_INIT;
    deja_fleet *fleet = NULL;
    int rc;

    fo.servers = servers;
    if (cli_fleet_connect(&fo, &fleet) != 0)
        return CLI_EXIT_TROUBLE;
    rc = deja_fleet_replay(fleet, store, ids, n, spec, o, cb, payload, sum);
    deja_fleet_close(fleet);
    if (rc != 0)
        return cli_lib_error(rc, "replay --via");
    return 0;
}
