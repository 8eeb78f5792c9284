/*
 * cli/main.c -- the `deja` command: global options and the command table.
 *
 * To add a command: write cli/cmd_<name>.c with
 *   int cmd_<name>(const cli_global *g, int argc, char **argv);
 * declare it in cli/cli.h, and add one line to `commands` below.
 */
#include "cli.h"
#include "cli_signals.h"

#include <stdlib.h>
#include <string.h>

static const cli_command commands[] = {
    {"run", cmd_run, "run a model plugin on requests, recording each inference"},
    {"ls", cmd_ls, "list traces, newest first"},
    {"show", cmd_show, "show one trace in full (--json, or --md for a bug report)"},
    {"stats", cmd_stats, "store size, dedup and compression ratios"},
    {"verify", cmd_verify, "check the store's integrity"},
    {"gc", cmd_gc, "delete old traces and what only they referenced"},
    {"compact", cmd_compact, "rewrite the store without its free space, atomically"},
    {"replay", cmd_replay, "re-run traces on a model and diff the outputs"},
    {"diff", cmd_diff, "diff the outputs of two recorded traces"},
    {"bisect", cmd_bisect, "find the first model version that diverges"},
    {"export", cmd_export, "write traces into one self-contained bundle file"},
    {"import", cmd_import, "verify a bundle and add what it holds to the store"},
    {"drift", cmd_drift, "compare two selections field by field, ranked by drift"},
    {"check", cmd_check, "apply validation rules to recorded traces"},
    {"report", cmd_report, "write a self-contained HTML report: health, drift, rules"},
    {"proxy", cmd_proxy, "record the traffic of an OpenAI-compatible LLM server"},
    {"serve", cmd_serve, "serve a model as an OpenAI-compatible endpoint"},
    {"ship", cmd_ship, "publish traces to NATS JetStream (resumable, --follow)"},
    {"pull", cmd_pull, "copy traces from NATS JetStream into the store"},
    {"worker", cmd_worker, "replay jobs of `replay --via` from NATS JetStream"},
    {"pin", cmd_pin, "keep traces whatever gc and the disk budget do"},
    {"unpin", cmd_unpin, "let gc and the disk budget delete pinned traces again"},
    {"budget", cmd_budget, "show or set the store's disk budget"},
};

#define NCOMMANDS (sizeof commands / sizeof commands[0])

static const char usage[] = "usage: deja [--store PATH] COMMAND [ARGS...]  (deja --help)\n";

/* Print the top-level help on stdout. */
static int print_help(void)
{
    fputs("usage: deja [--store PATH] COMMAND [ARGS...]\n"
          "\n"
          "deja, a flight recorder and replay debugger for ML inference.\n"
          "\n"
          "Commands:\n",
          stdout);
    for (size_t i = 0; i < NCOMMANDS; i++)
        printf("  %-8s %s\n", commands[i].name, commands[i].summary);
    fputs("\n"
          "Options:\n"
          "  --store PATH   the store (a directory); default $DEJA_STORE, else ./deja.store\n"
          "  --color WHEN   colour the output: auto (on a terminal, unless $NO_COLOR is\n"
          "                 set), always or never\n"
          "  --help         this help; 'deja COMMAND --help' for a command's\n"
          "  --version      print deja's version\n"
          "\n"
          "The global options may also follow the command: deja ls --store PATH.\n"
          "\n"
          "Exit status: 0 success, 1 differences or problems found, 2 trouble.\n",
          stdout);
    return CLI_EXIT_OK;
}

/* The command called `name`, or NULL. */
static const cli_command *find_command(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++) {
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    }
    return NULL;
}

/* Print an unknown-command error and the usage line; return 2. */
static int unknown_command(const char *name)
{
    fprintf(stderr, "deja: unknown command '%s' (commands:", name);
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(stderr, " %s", commands[i].name);
    fputs(")\n", stderr);
    fputs(usage, stderr);
    return CLI_EXIT_TROUBLE;
}

int main(int argc, char **argv)
{
    cli_global_opts opts = {NULL, NULL};
    const cli_command *cmd;
    cli_global g;
    int i, ret;

    /* The global options may stand before the command or among its own. */
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--store") == 0 || strncmp(a, "--store=", 8) == 0 ||
            strcmp(a, "--color") == 0 || strncmp(a, "--color=", 8) == 0) {
            if (cli_global_options(&argc, argv, i, &opts) != 0) {
                fputs(usage, stderr);
                return CLI_EXIT_TROUBLE;
            }
            i--; /* argv[i] is now the argument after them */
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            return cli_stdout_finish(print_help());
        } else if (strcmp(a, "--version") == 0 || strcmp(a, "-V") == 0) {
            printf("deja %s\n", DEJA_VERSION_STRING);
            return cli_stdout_finish(CLI_EXIT_OK);
        } else if (strcmp(a, "--") == 0) {
            i++;
            break;
        } else if (a[0] == '-') {
            fprintf(stderr, "deja: unknown option '%s'\n%s", a, usage);
            return CLI_EXIT_TROUBLE;
        } else {
            break;
        }
    }
    if (i >= argc) {
        fprintf(stderr, "deja: no command given\n%s", usage);
        return CLI_EXIT_TROUBLE;
    }
    if (cli_global_options(&argc, argv, i + 1, &opts) != 0) {
        fputs(usage, stderr);
        return CLI_EXIT_TROUBLE;
    }
    if (cli_color_mode(opts.color, &g.color) != 0)
        return CLI_EXIT_TROUBLE;
    if (strcmp(argv[i], "help") == 0) {
        char *help_argv[3];
        if (i + 1 >= argc)
            return cli_stdout_finish(print_help());
        cmd = find_command(argv[i + 1]);
        if (cmd == NULL)
            return unknown_command(argv[i + 1]);
        help_argv[0] = argv[i + 1];
        help_argv[1] = (char *)"--help";
        help_argv[2] = NULL;
        g.store = cli_store_path(opts.store);
        return cli_stdout_finish(cmd->fn(&g, 2, help_argv));
    }
    cmd = find_command(argv[i]);
    if (cmd == NULL)
        return unknown_command(argv[i]);
    g.store = cli_store_path(opts.store);
    cli_signals_install(g.store, argv[i]);
    ret = cmd->fn(&g, argc - i, argv + i);
    return cli_stdout_finish(ret);
}
