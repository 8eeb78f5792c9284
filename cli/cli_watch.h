/*
 * cli/cli_watch.h -- what the watching commands share: `stats --by`
 * (cmd_stats_by.c), `drift`, `check` and `report`, and the --rules option of
 * `run` and `replay`. Functions here live in cli_watch.c unless noted.
 */
#ifndef DEJA_CLI_CLI_WATCH_H
#define DEJA_CLI_CLI_WATCH_H

#include <stdatomic.h>

#include "cli.h"

/* `deja stats --by ...` (cmd_stats_by.c): called by cmd_stats when --by is
 * among its arguments. Same contract as a command. */
int cli_stats_by(const cli_global *g, int argc, char **argv);

/* The help of `deja stats` (cmd_stats.c), which covers both forms. */
extern const char cli_stats_help[];

/* Parse a positive duration "90s", "10m", "1h", "2d", "1w" (a bare number
 * is seconds) into nanoseconds; 0 on success, -1 otherwise. */
int cli_parse_span(const char *text, int64_t *out_ns);

/* Parse a selection, one argument of space-separated key=value terms over
 * the filters of `ls` -- model=, version=, since=, until=, status=,
 * tag.KEY=, limit= -- into `f` (initialised by the caller). `what` names
 * the option in messages ("--baseline"). The filter's strings point into
 * `*buf`, which the caller frees (after the filter) whatever the result.
 * Returns 0, or -1 after printing "deja: --baseline: ..." on stderr. */
int cli_parse_selection(const char *text, const char *what, int64_t now_ns, cli_filter *f,
                        char **buf);

/* Load the rules file at `path`; on failure print the library's message
 * ("deja: rules.txt:3: unknown check 'fnite'") and return -1. */
int cli_rules_load(const char *path, deja_rules **out);

/* The record-time check of `deja run --rules`: deja_rules_tracer_check
 * over `rules`, counting the traces that broke a rule (the writer thread
 * calls it; read `invalid` after the tracer is flushed). */
typedef struct cli_rules_counter {
    deja_rules *rules;
    _Atomic unsigned long long invalid;
} cli_rules_counter;

size_t cli_rules_count_check(const struct deja_trace *trace, const char **failed, size_t cap,
                             void *payload);

/* Apply `rules` to the replayed outputs of `r` (with the recorded
 * inputs): with `obj` NULL print each violation under the result
 * ("    rule NAME: output.X detail"), else add them to `obj` as
 * "violations". Returns the number of rules broken, or -1 when out of
 * memory. Only output rules count: the inputs are the recorded ones. A
 * replay that failed breaks nothing. */
int cli_replay_rules(const deja_rules *rules, const deja_replay_result *r, json_t *obj);

/* A violation as JSON: {"id","rule","side","tensor","detail"}. New
 * reference, or NULL when out of memory. */
json_t *cli_violation_json(const deja_id *id, const deja_violation *v);

#endif /* DEJA_CLI_CLI_WATCH_H */
