/*
 * cli/cli_fleet.h -- what `deja ship`, `deja pull`, `deja worker` and
 * `replay --via` share: the options that say where the fleet is and how to
 * log in, and stopping on SIGINT/SIGTERM.
 */
#ifndef DEJA_CLI_CLI_FLEET_H
#define DEJA_CLI_CLI_FLEET_H

#include "cli.h"

/* Option codes of the connection options (after the commands' own). */
enum {
    CLI_OPT_FLEET_USER = 1300,
    CLI_OPT_FLEET_PASSWORD,
    CLI_OPT_FLEET_TOKEN,
    CLI_OPT_FLEET_CREDS,
    CLI_OPT_FLEET_REPLICAS,
    CLI_OPT_FLEET_TIMEOUT,
    CLI_OPT_FLEET_VIA, /* replay --via */
};

/* `replay --via URLS`: replay through the fleet's workers. On success the
 * results have gone to `cb` as deja_fleet_replay says; returns 0, or
 * CLI_EXIT_TROUBLE after printing the problem. */
int cli_fleet_replay_via(const char *servers, deja_store *store, const deja_id *ids, size_t n,
                         const char *spec, const deja_replay_options *o, deja_replay_cb cb,
                         void *payload, deja_replay_summary *sum);

#define CLI_LONGOPTS_FLEET                                                                         \
    {"user", required_argument, NULL, CLI_OPT_FLEET_USER},                                         \
        {"password", required_argument, NULL, CLI_OPT_FLEET_PASSWORD},                             \
        {"token", required_argument, NULL, CLI_OPT_FLEET_TOKEN},                                   \
        {"creds", required_argument, NULL, CLI_OPT_FLEET_CREDS},                                   \
        {"replicas", required_argument, NULL, CLI_OPT_FLEET_REPLICAS},                             \
    {                                                                                              \
        "timeout", required_argument, NULL, CLI_OPT_FLEET_TIMEOUT                                  \
    }

#define CLI_FLEET_HELP                                                                             \
    "  --user U --password P, --token T, --creds FILE\n"                                           \
    "                     credentials (else user:password@ in the URL, else $NATS_USER,\n"       \
    "                     $NATS_PASSWORD, $NATS_TOKEN, $NATS_CREDS); never printed\n"             \
    "  --replicas N       replicas of the streams deja creates (default 1)\n"                     \
    "  --timeout MS       connecting and each answer (default 5000)\n"

/* If `opt` is a connection option, apply `arg` to `o` and return 1; 0 for
 * any other option; -1 after printing the problem with a bad value. */
int cli_fleet_option(deja_fleet_options *o, int opt, const char *arg, const char *help);

/* Connect, printing "deja: fleet ...: why" on failure; returns 0 or
 * CLI_EXIT_TROUBLE. */
int cli_fleet_connect(const deja_fleet_options *o, deja_fleet **out);

/* Stop on SIGINT and SIGTERM: cli_fleet_stop_on_signals installs the
 * handlers, cli_fleet_stopping says whether one arrived. */
void cli_fleet_stop_on_signals(void);
int cli_fleet_stopping(void);

#endif /* DEJA_CLI_CLI_FLEET_H */
