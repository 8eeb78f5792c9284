/*
 * cli/cli.h -- what the `deja` subcommands share.
 *
 * The command line is thin over the public API (include/deja.h): this header
 * holds the command table's types, exit codes and error printing, store path
 * resolution, option parsing, the filters of `ls` (also taken by replay,
 * export and bisect), time parsing, selection of traces by ids and filters,
 * and the JSON forms of traces, tensors and environments.
 * They are defined by concern: cli_error.c, cli_options.c, cli_select.c,
 * cli_format.c, cli_json.c, cli_encode.c (and cli_bundle.h for bundles).
 *
 * Exit codes follow diff(1): 0 success, 1 differences or problems found,
 * 2 trouble; every non-zero exit comes with a one-line message on stderr.
 */
#ifndef DEJA_CLI_CLI_H
#define DEJA_CLI_CLI_H

#include <getopt.h>
#include <pthread.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "deja.h"

#define CLI_EXIT_OK 0
#define CLI_EXIT_DIFF 1
#define CLI_EXIT_TROUBLE 2

/* What main() hands every command: the global options. */
typedef struct cli_global {
    const char *store; /* resolved store path: --store, else $DEJA_STORE, else ./deja.store */
    int color;         /* colour on stdout: --color, NO_COLOR and whether stdout is a terminal */
} cli_global;

/* ------------------------------------------------------------------------
 * Global options and standard output: cli/cli_global.c
 * ---------------------------------------------------------------------- */

/* The global options as given (NULL: not given). */
typedef struct cli_global_opts {
    const char *store;
    const char *color;
} cli_global_opts;

/* Take the global options (--store PATH, --color WHEN, also as --opt=VALUE)
 * out of argv[from..*argc-1], up to a "--", into `opts`: a later one wins.
 * argv and *argc are compacted over them. Returns 0, or -1 after a message
 * on stderr when an option lacks its value. */
int cli_global_options(int *argc, char **argv, int from, cli_global_opts *opts);

/* Whether to colour standard output: `option` "always", "never" or "auto"
 * (also NULL): auto is on a terminal only, unless $NO_COLOR is set and not
 * empty or TERM is "dumb". Returns 0, or -1 after a message on stderr. */
int cli_color_mode(const char *option, int *color);

/* ------------------------------------------------------------------------
 * Terminals: cli/cli_terminal.c
 * ---------------------------------------------------------------------- */

#define CLI_SGR_RESET "\033[0m"
#define CLI_SGR_RED "\033[31m"
#define CLI_SGR_GREEN "\033[32m"
#define CLI_SGR_YELLOW "\033[33m"
#define CLI_SGR_BOLD "\033[1m"

/* The width in columns of the terminal on stdout (TIOCGWINSZ, else
 * $COLUMNS, else 80), or 0 when stdout is not a terminal. */
int cli_term_width(void);

/* Write the `len` bytes of `line` (no newline) on `fp`, cut to `width`
 * columns with a final "…" when longer (width <= 0: whole). A UTF-8
 * character counts one column, colour escapes none. */
void cli_put_fitted(FILE *fp, const char *line, size_t len, int width);

/* `sgr` (a CLI_SGR_* escape) when g says to colour stdout, else "". */
const char *cli_sgr(const cli_global *g, const char *sgr);

/* The colour of a verdict or a status name: green for same and ok, yellow
 * for close and nondeterministic, red for the rest. */
const char *cli_verdict_sgr(const char *name);

/* A progress bar on a terminal (stderr), for commands that can run long:
 * drawn only when `fp` is a terminal and once `after_ns` have passed
 * ($DEJA_PROGRESS_DELAY_MS, when set, replaces the delay), redrawn at most
 * every 100 ms, erased before other output. Its functions may be called
 * from several threads. */
#define CLI_PROGRESS_WIDTH 30
#define CLI_PROGRESS_AFTER_NS ((int64_t)500000000)

typedef struct cli_progress {
    FILE *fp;
    int tty;
    int drawn;
    const char *label;
    int64_t after_ns;
    int64_t start_ns;
    int64_t drawn_ns; /* when last drawn */
    pthread_mutex_t lock;
} cli_progress;

void cli_progress_init(cli_progress *p, FILE *fp, const char *label, int64_t after_ns);
/* Draw "[#####.....] done/total label what" (`what` may be NULL). */
void cli_progress_draw(cli_progress *p, size_t done, size_t total, const char *what);
/* Erase the bar if drawn (before printing anything else). */
void cli_progress_clear(cli_progress *p);
void cli_progress_free(cli_progress *p);
/* Start a bar labelled `label` on stderr that the library's long
 * operations (verify, gc, compact, export, import) run on this thread
 * draw through deja_progress_handler, until cli_progress_end (which erases
 * it and unsets the handler). */
void cli_progress_begin(cli_progress *p, const char *label);
void cli_progress_end(cli_progress *p);

/* Flush and close standard output. Returns `ret`, or CLI_EXIT_TROUBLE after
 * "deja: cannot write the output: <why>" on stderr when any write to it
 * failed (a full disk, a closed pipe whose SIGPIPE was ignored). */
int cli_stdout_finish(int ret);

/* A subcommand: argv[0] is the command's name; returns the exit code. */
typedef int (*cli_cmd_fn)(const cli_global *g, int argc, char **argv);

typedef struct cli_command {
    const char *name;
    cli_cmd_fn fn;
    const char *summary;
} cli_command;

int cmd_run(const cli_global *g, int argc, char **argv);
int cmd_ls(const cli_global *g, int argc, char **argv);
int cmd_show(const cli_global *g, int argc, char **argv);
int cmd_stats(const cli_global *g, int argc, char **argv);
int cmd_verify(const cli_global *g, int argc, char **argv);
int cmd_gc(const cli_global *g, int argc, char **argv);
int cmd_compact(const cli_global *g, int argc, char **argv);
int cmd_replay(const cli_global *g, int argc, char **argv);
int cmd_diff(const cli_global *g, int argc, char **argv);
int cmd_bisect(const cli_global *g, int argc, char **argv);
int cmd_export(const cli_global *g, int argc, char **argv);
int cmd_import(const cli_global *g, int argc, char **argv);
int cmd_drift(const cli_global *g, int argc, char **argv);
int cmd_check(const cli_global *g, int argc, char **argv);
int cmd_report(const cli_global *g, int argc, char **argv);
int cmd_pin(const cli_global *g, int argc, char **argv);
int cmd_unpin(const cli_global *g, int argc, char **argv);
int cmd_budget(const cli_global *g, int argc, char **argv);
int cmd_proxy(const cli_global *g, int argc, char **argv);
int cmd_serve(const cli_global *g, int argc, char **argv);

/* ------------------------------------------------------------------------
 * Servers (proxy, serve): cli/cli_server.c
 * ---------------------------------------------------------------------- */

#include <signal.h>

/* Block SIGINT and SIGTERM in this thread and those it starts afterwards
 * (into `set`), then wait for one of them; returns its number. */
void cli_signals_block(sigset_t *set);
int cli_signals_wait(const sigset_t *set);

/* Check that `listen` ("HOST:PORT") can be listened on, before anything
 * is created (a store): 0, or -1 after printing why not. */
int cli_listen_check(const char *listen);

/* Print the base URL "http://HOST:PORT/v1" on stdout (flushed: scripts read
 * it) and a human line on stderr. */
void cli_print_listening(const char *what, const char *listen, unsigned port, const char *extra);
int cmd_ship(const cli_global *g, int argc, char **argv);
int cmd_pull(const cli_global *g, int argc, char **argv);
int cmd_worker(const cli_global *g, int argc, char **argv);

/* ------------------------------------------------------------------------
 * Errors
 * ---------------------------------------------------------------------- */

/* Print "deja: <message>" and a newline on stderr; return CLI_EXIT_TROUBLE. */
int cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Print "deja: <what>: <library message>" for a failed library call returning
 * `code` (the message is deja_error_last(), else deja_strerror(code)); return
 * CLI_EXIT_TROUBLE. */
int cli_lib_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Print "deja: trace ID: <why>" for a record that cannot be read (the
 * arguments of a deja_bad_cb). */
void cli_bad_record(const deja_id *id, int code, const char *message);

/* Print "deja: <message>" then the usage line (the first line of `help`) on
 * stderr; return CLI_EXIT_TROUBLE. */
int cli_usage_error(const char *help, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Print a command's help text on stdout; return CLI_EXIT_OK. */
int cli_help(const char *help);

/* ------------------------------------------------------------------------
 * Options
 * ---------------------------------------------------------------------- */

/* Long-only option codes shared by several commands. */
enum {
    CLI_OPT_HELP = 'h',
    CLI_OPT_JSON = 1000,
    CLI_OPT_MODEL,
    CLI_OPT_VERSION,
    CLI_OPT_SINCE,
    CLI_OPT_UNTIL,
    CLI_OPT_STATUS,
    CLI_OPT_TAG,
    CLI_OPT_LIMIT,
    CLI_OPT_PINNED,
    CLI_OPT_SAMPLE,
    CLI_OPT_KEEP_SLOWER,
    CLI_OPT_KEEP_FIRST,
    CLI_OPT_DEDUP,
    CLI_OPT_FIRST_FREE = 1100, /* commands number their own options from here */
};

#define CLI_LONGOPT_HELP                                                                           \
    {                                                                                              \
        "help", no_argument, NULL, CLI_OPT_HELP                                                    \
    }
#define CLI_LONGOPT_JSON                                                                           \
    {                                                                                              \
        "json", no_argument, NULL, CLI_OPT_JSON                                                    \
    }
/* `--model M` as a filter; replay and bisect take --model as a plugin instead. */
#define CLI_LONGOPT_FILTER_MODEL                                                                   \
    {                                                                                              \
        "model", required_argument, NULL, CLI_OPT_MODEL                                            \
    }
/* The other filters of `ls`. */
#define CLI_LONGOPTS_FILTER                                                                        \
    {"version", required_argument, NULL, CLI_OPT_VERSION},                                         \
        {"since", required_argument, NULL, CLI_OPT_SINCE},                                         \
        {"until", required_argument, NULL, CLI_OPT_UNTIL},                                         \
        {"status", required_argument, NULL, CLI_OPT_STATUS},                                       \
        {"tag", required_argument, NULL, CLI_OPT_TAG},                                             \
        {"pinned", no_argument, NULL, CLI_OPT_PINNED},                                             \
    {                                                                                              \
        "limit", required_argument, NULL, CLI_OPT_LIMIT                                            \
    }
#define CLI_LONGOPT_END                                                                            \
    {                                                                                              \
        NULL, 0, NULL, 0                                                                           \
    }

/* The sampling options of `deja run` (cli_sampling.c). */
#define CLI_LONGOPTS_SAMPLING                                                                      \
    {"sample", required_argument, NULL, CLI_OPT_SAMPLE},                                           \
        {"keep-slower", required_argument, NULL, CLI_OPT_KEEP_SLOWER},                             \
        {"keep-first", required_argument, NULL, CLI_OPT_KEEP_FIRST},                               \
    {                                                                                              \
        "dedup", no_argument, NULL, CLI_OPT_DEDUP                                                  \
    }
#define CLI_SAMPLING_HELP                                                                          \
    "  --sample RATE         keep this share (0..1) of ok traces; errors and traces\n"              \
    "                        breaking a rule are always kept\n"                                     \
    "  --sample model=NAME[@VERSION]:RATE\n"                                                        \
    "                        a rate for one model (version); first match wins\n"                    \
    "  --keep-slower D       keep every trace slower than D (250ms, 2s)\n"                          \
    "  --keep-first N        keep the first N traces of each model version\n"                       \
    "  --dedup               keep one trace per identical request, count the repeats\n"

/* The help text lines describing the filters, for commands that take them. */
#define CLI_FILTER_HELP                                                                            \
    "  --model M          only traces of model M\n" CLI_FILTER_HELP_REST

/* The filters but --model (replay's --model names the plugin). */
#define CLI_FILTER_HELP_REST                                                                       \
    "  --version V        only traces of model version V\n"                                        \
    "  --since T          only traces started at or after T\n"                                     \
    "  --until T          only traces started before T\n"                                          \
    "                     T: 2026-11-27T14:03:00Z, '2026-11-27 14:03' (local), 2026-11-27,\n"      \
    "                     today, yesterday, @1764590000 (Unix seconds), or a time ago:\n"           \
    "                     30s, 10m, 2h, 3d, 1w, 1h30m\n"                                           \
    "  --status S         ok or error\n"                                                           \
    "  --tag K=V          only traces tagged K=V (repeatable: all must match)\n"                   \
    "  --limit N          at most N traces\n"                                                     \
    "  --pinned           only pinned traces (deja pin)\n"

/* getopt_long over a command's arguments (argv[0] is the command), with the
 * GNU argument permutation so that options and operands mix. Returns the
 * option code, -1 at the end (operands are then argv[optind..argc-1]), or
 * '?' after printing "deja: <cmd>: unknown option '--x'" (or a missing
 * value) and the usage line taken from `help`. Call with *first set to 1 on
 * the first call of a command; it resets getopt's state. */
int cli_getopt(int argc, char **argv, const struct option *longopts, const char *help, int *first);

/* cli_getopt for a command that takes --help and --json, handling both:
 * --json sets *json to 1 and reading goes on; --help prints the help text on
 * stdout and sets *ret to CLI_EXIT_OK. Returns the code of the next other
 * option, -1 at the end of the options, or '?' when the command must stop
 * now and return *ret: after --help, or after cli_getopt's message for a bad
 * option (*ret is then left as it was). */
int cli_getopt_common(int argc, char **argv, const struct option *longopts, const char *help,
                      int *first, int *json, int *ret);

/* Read the options of a command whose only options are --help and --json,
 * through cli_getopt_common (so *json and *ret as there); the operands are
 * then argv[optind..argc-1]. Returns 0 to go on, or -1 when the command must
 * stop now and return *ret. */
int cli_options_json_only(int argc, char **argv, const char *help, int *json, int *ret);

/* Parse a non-negative decimal integer that fits in `max`; 0 on success, -1
 * on anything else. */
int cli_parse_u64(const char *text, uint64_t max, uint64_t *out);

/* Parse a size: a whole number of bytes with an optional unit, K/M/G/T
 * (powers of 1024; "KiB", "MB", "k" and "kb" are read the same). 0 on
 * success, -1 on anything else or above 2^60 bytes. */
int cli_parse_size(const char *text, uint64_t *out);

/* A sampling policy read from options; init, then cli_sampling_option()
 * per option, cli_sampling_apply() on the tracer, cli_sampling_free(). */
typedef struct cli_sampling {
    deja_sampling policy;
    deja_sample_rate *rates; /* owned; policy.rates points here */
    int given;               /* any sampling option was given */
} cli_sampling;

void cli_sampling_init(cli_sampling *s);
void cli_sampling_free(cli_sampling *s);

/* Take option `opt` when it is a sampling option: 1 taken, 0 not one of
 * them, -1 malformed (the problem printed). */
int cli_sampling_option(cli_sampling *s, int opt, const char *arg);

/* Set the policy on `tracer` when any option was given: 0, or the library
 * error printed and CLI_EXIT_TROUBLE. */
int cli_sampling_apply(const cli_sampling *s, deja_tracer *tracer);

/* Parse "K=V" into freshly malloc'd key and value; -1 when there is no '='
 * or the key is empty (nothing allocated then). */
int cli_parse_kv(const char *text, char **key, char **value);

/* Parse a time for --since/--until into Unix nanoseconds: RFC 3339
 * ("2026-11-27T14:03:00Z", "...T14:03:00.250+02:00"), local "2026-11-27
 * 14:03[:05]", a local date "2026-11-27" (its midnight), "today" or
 * "yesterday" (local midnight), "now", Unix seconds "@1764590000[.5]", or a
 * duration ago relative to `now_ns`: "30s", "10m", "2h", "3d", "1w", or
 * compound "1h30m". 0 on success, -1 on anything else. */
int cli_parse_time(const char *text, int64_t now_ns, int64_t *out);

/* The current Unix time in nanoseconds. */
int64_t cli_now_ns(void);

/* ------------------------------------------------------------------------
 * Store
 * ---------------------------------------------------------------------- */

/* Resolve the store path: `opt` (from --store) when not NULL, else
 * $DEJA_STORE when set and non-empty, else "./deja.store". */
const char *cli_store_path(const char *opt);

/* Open the store for reading without ever creating it. On failure print
 * "deja: store 'P' does not exist (set --store or DEJA_STORE)" (or the
 * library's message) and return CLI_EXIT_TROUBLE; 0 on success. */
int cli_store_open_read(const cli_global *g, deja_store **out);

/* Open an existing store for writing (never creating it), printing the
 * problem and returning CLI_EXIT_TROUBLE on failure; 0 on success. */
int cli_store_open_write(const cli_global *g, deja_store **out);

/* For a command that takes no operands and reads the store: when operands
 * remain after the options (argv[optind..argc-1]; argv[0] is the command),
 * print "deja: <command>: unexpected argument 'X'" and the usage line taken
 * from `help`, and return CLI_EXIT_TROUBLE; else cli_store_open_read(). */
int cli_store_open_no_operands(const cli_global *g, int argc, char **argv, const char *help,
                               deja_store **out);

/* Resolve an id prefix to one trace. On failure print "deja: no trace with
 * id prefix 'X'" or the library's message and return CLI_EXIT_TROUBLE. */
int cli_resolve(deja_store *store, const char *prefix, deja_id *out);

/* ------------------------------------------------------------------------
 * Filters and selections
 * ---------------------------------------------------------------------- */

/* Append `id` to the growable array `*ids` of `*n` ids with room for
 * `*cap` (all zero at first; free(*ids) at the end). -1 when out of
 * memory, the array unchanged; 0 otherwise. */
int cli_ids_push(deja_id **ids, size_t *n, size_t *cap, const deja_id *id);

/* The filters given on a command line; owns its tag strings. */
typedef struct cli_filter {
    deja_filter filter;
    deja_tag *tags; /* filter.tags points here */
    size_t ntags;
    int given; /* number of filter options seen */
} cli_filter;

/* Zero-initialise `f` as a filter that selects everything. */
void cli_filter_init(cli_filter *f);

/* Release what `f` owns. Accepts a zeroed or initialised filter. */
void cli_filter_free(cli_filter *f);

/* If `opt` is a filter option (CLI_OPT_MODEL ... CLI_OPT_LIMIT), apply its
 * value `arg` to `f` and return 1; return 0 for any other option; print
 * "deja: --since: ..." and return -1 for a bad value. */
int cli_filter_option(cli_filter *f, int opt, const char *arg, int64_t now_ns);

/* Select traces: with ids (unique prefixes), those traces in the order given
 * (duplicates removed), kept only when they also match the filters if any
 * were given; with no ids, every trace matching the filters (every trace
 * when none), newest first. `*out` is malloc'd (free() it), `*n` its
 * length. Returns 0, or CLI_EXIT_TROUBLE after printing a message. Records
 * that cannot be read are reported on stderr and counted in `*bad` (may be
 * NULL). */
int cli_select(deja_store *store, char *const *ids, size_t nids, const cli_filter *f, deja_id **out,
               size_t *n, size_t *bad);

/* ------------------------------------------------------------------------
 * Formatting
 * ---------------------------------------------------------------------- */

/* Base64 (RFC 4648, padded). cli_base64_encode returns a malloc'd NUL-
 * terminated string or NULL. cli_base64_decode returns 0 and a malloc'd
 * buffer (possibly of size 0, never NULL on success), -1 on malformed
 * input or out of memory. */
char *cli_base64_encode(const void *data, size_t size);
int cli_base64_decode(const char *text, size_t len, uint8_t **out, size_t *size);

/* Non-zero when the `size` bytes at `data` are valid UTF-8. */
int cli_utf8_valid(const void *data, size_t size);

/* Length of the valid UTF-8 sequence at `s` (at most `n` bytes), or 0 when
 * the bytes there do not start one. */
size_t cli_utf8_seq(const uint8_t *s, size_t n);

/* Write a local time "2026-11-27 14:03:00.123" (ms) into `out`. */
void cli_format_local(int64_t unix_ns, char *out, size_t cap);

/* Write a UTC RFC 3339 time "2026-11-27T14:03:00.123Z" into `out`. */
void cli_format_utc(int64_t unix_ns, char *out, size_t cap);

/* "2026-11-27T14:03:00.123456789Z": RFC 3339 in UTC with nanoseconds, the
 * form of every time in JSON output (beside its *_ns integer). */
void cli_format_rfc3339(int64_t unix_ns, char *out, size_t cap);

/* "1 trace", "2 traces": `n` and `noun`, with an s unless n is 1. The
 * string is in one of 8 static buffers used in turn (so that one printf may
 * take several); main thread only. */
const char *cli_count(uint64_t n, const char *noun);

/* Write a duration "350us", "12.3ms", "1.25s" into `out`. */
void cli_format_duration(int64_t ns, char *out, size_t cap);

/* Write the shortest decimal form of `v` that reads back exactly ("0.8"). */
void cli_format_double(double v, char *out, size_t cap);

/* Write a byte count "1.2 MiB" (or "512 B") into `out`. */
void cli_format_bytes(uint64_t bytes, char *out, size_t cap);

/* Write "f32[2,3]" into `out`. */
void cli_format_shape(const deja_tensor *t, char *out, size_t cap);

/* Print a short preview of a tensor on `fp`: text as a quoted, escaped
 * string cut at `max_chars` characters (with "... (N bytes)" when cut),
 * numbers as their first few values and the shape, anything else as its
 * dtype, shape and size. A tensor whose data is not loaded prints its
 * dtype, shape and size. */
void cli_print_preview(FILE *fp, const deja_tensor *t, size_t max_chars);

/* The lowercase hex form of `size` bytes into a malloc'd string or NULL. */
char *cli_hex(const uint8_t *data, size_t size);

/* ------------------------------------------------------------------------
 * JSON
 * ---------------------------------------------------------------------- */

/* A tensor as JSON: {"name","dtype","shape","size"} and, when `with_data`
 * and its data is loaded, the data: "text" for a valid UTF-8 utf8 tensor,
 * else "base64", byte-exact. New reference, or NULL when out of memory. */
json_t *cli_tensor_json(const deja_tensor *t, int with_data);

/* `with_data` (and cli_trace_json's `full`) asking for numeric tensors as
 * "values": a flat row-major array of JSON numbers (f16 and bf16 decoded,
 * 64-bit integers beyond 2^53 as strings, NaN and infinities as the strings
 * "nan", "inf", "-inf"), bool as true/false, instead of "base64". */
#define CLI_JSON_VALUES 2

/* A trace as JSON. With `full`, every field and the tensors' data (see
 * cli_tensor_json), else the listing form (no data, no RNG draws). New
 * reference, or NULL when out of memory. */
json_t *cli_trace_json(const deja_trace *t, int full);

/* An environment as JSON. New reference, or NULL when out of memory. */
json_t *cli_env_json(const deja_env *env);

/* The version of deja's JSON output (doc/json.md), in every object printed
 * as "json_version". A key removed or changing meaning bumps it; new keys
 * do not. */
#define CLI_JSON_VERSION 1

/* Print `j` compactly on one line on stdout (JSON lines); steals the
 * reference. An object gets "json_version" (CLI_JSON_VERSION). Every integer beyond +-2^53 (nanosecond times, u64 counters) is
 * printed as a decimal string, so that any JSON reader (jq 1.6, JavaScript)
 * gets it exactly (doc/json.md). Returns 0, or -1 when `j` is NULL or cannot
 * be printed. */
int cli_json_print(json_t *j);

/* Status as text: "ok" or "error". */
const char *cli_status_name(deja_status status);

/* ------------------------------------------------------------------------
 * What replay, diff and bisect share (cmd_replay.c).
 * ---------------------------------------------------------------------- */

/* Install a handler that, if a model crashes this process during a replay,
 * names the trace on stderr and suggests --isolate (cmd_replay.c). */
void cli_crash_guard(void);

/* A JSON string of `s` (NULL: ""), with bytes that are not valid UTF-8
 * escaped as \xNN; NULL only when out of memory (cli_json.c). */
json_t *cli_json_text(const char *s);

/* Print the "Reproduce" section of `show --md` for trace `t`: the replay
 * command with the plugin as recorded, or `endpoint` (may be NULL) for a
 * trace recorded by the proxy (cli_reproduce.c). */
void cli_md_reproduce(FILE *fp, const deja_trace *t, const char *endpoint);

/* Option codes of the replay options, the same in every command. */
enum {
    OPT_PLUGIN = CLI_OPT_FIRST_FREE,
    OPT_JOBS,
    OPT_REPEAT,
    OPT_ATOL,
    OPT_RTOL,
    OPT_ULPS,
    OPT_FORCE,
    OPT_TRACE_MODEL,
    OPT_ISOLATE,
    OPT_REPLAY_TIMEOUT,
    OPT_REPLAY_BASELINE,
    OPT_REPLAY_MAX_DIVERGED,
    OPT_MAX_HUNKS,
    OPT_REPLAY_END /* a command's own options start here */
};

/* The long options of the replay options applied by cli_replay_option, for
 * the tables of the commands that replay (replay, bisect). */
#define CLI_LONGOPTS_REPLAY                                                                        \
    {"jobs", required_argument, NULL, OPT_JOBS}, {"repeat", required_argument, NULL, OPT_REPEAT},  \
        {"atol", required_argument, NULL, OPT_ATOL}, {"rtol", required_argument, NULL, OPT_RTOL},  \
        {"ulps", required_argument, NULL, OPT_ULPS}, {"force", no_argument, NULL, OPT_FORCE},      \
        {"timeout", required_argument, NULL, OPT_REPLAY_TIMEOUT},                                         \
        {"max-hunks", required_argument, NULL, OPT_MAX_HUNKS},                                    \
    {                                                                                              \
        "isolate", no_argument, NULL, OPT_ISOLATE                                                  \
    }

/* Apply a replay option (--jobs, --repeat, --atol, --rtol, --ulps, --force,
 * --isolate, --timeout, --max-hunks) to `o`: 1 when applied, 0 when `opt` is not one of them, -1
 * after printing an error for a bad value. */
int cli_replay_option(deja_replay_options *o, int opt, const char *arg);

/* Parse a finite non-negative number; 0 on success, -1 otherwise. */
int cli_parse_double(const char *text, double *out);

/* Print a diff in the human form, each line starting with `indent`; the two
 * sides are called `name_a` (expected) and `name_b` (actual). */
void cli_diff_print(FILE *fp, const deja_diff *d, const char *indent, const char *name_a,
                    const char *name_b);

/* The diff as a JSON object (new reference), or NULL when out of memory. */
json_t *cli_diff_json(const deja_diff *d);

/* cli_checkpoint.c: a trace's recorded checkpoints for `show` (nothing
 * printed when it has none), as a JSON array (bytes as cli_tensor_json's
 * `with_data`), and a replay's comparison of them (text lines starting
 * with `indent`, and JSON). */
void cli_checkpoints_print(FILE *fp, const deja_trace *t);
json_t *cli_checkpoints_json(const deja_trace *t, int with_data);
void cli_checkpoint_diff_print(FILE *fp, const deja_checkpoint_diff *c, const char *indent);
json_t *cli_checkpoint_diff_json(const deja_checkpoint_diff *c);

#endif /* DEJA_CLI_CLI_H */
