/*
 * cli/cli_global.c -- what holds for every command: the global options
 * (--store, --color), taken wherever they stand on the command line, and the
 * end of standard output, whose failure is an error like any other.
 */
#include "cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* If argv[*i] is the global option `name` ("--store"), as "--store VALUE"
 * or "--store=VALUE": set *value, advance *i past it and return 1. Return 0
 * when it is not, -1 when its value is missing or empty (after a message). */
static int take_option(int argc, char **argv, int *i, const char *name, const char **value)
{
    const char *a = argv[*i];
    const size_t n = strlen(name);

    if (strncmp(a, name, n) != 0 || (a[n] != '\0' && a[n] != '='))
        return 0;
    if (a[n] == '=') {
        *value = a + n + 1;
    } else if (*i + 1 < argc) {
        *value = argv[++*i];
    } else {
        *value = NULL;
    }
    if (*value == NULL || (*value)[0] == '\0') {
        fprintf(stderr, "deja: option '%s' needs a value\n", name);
        return -1;
    }
    (*i)++;
    return 1;
}

/* Take the global options out of argv; see cli.h. */
int cli_global_options(int *argc, char **argv, int from, cli_global_opts *opts)
{
    int i = from, out = from;

    while (i < *argc) {
        int r;
        if (strcmp(argv[i], "--") == 0)
            break;
        r = take_option(*argc, argv, &i, "--store", &opts->store);
        if (r == 0)
            r = take_option(*argc, argv, &i, "--color", &opts->color);
        if (r < 0)
            return -1;
        if (r == 0)
            argv[out++] = argv[i++];
    }
    while (i < *argc)
        argv[out++] = argv[i++];
    argv[out] = NULL;
    *argc = out;
    return 0;
}

/* Resolve --color and NO_COLOR for standard output; see cli.h. */
int cli_color_mode(const char *option, int *color)
{
    const char *no_color = getenv("NO_COLOR");

    if (option == NULL || strcmp(option, "auto") == 0) {
        *color = isatty(STDOUT_FILENO) && (no_color == NULL || no_color[0] == '\0');
        if (*color) {
            const char *term = getenv("TERM");
            *color = term == NULL || strcmp(term, "dumb") != 0;
        }
    } else if (strcmp(option, "always") == 0) {
        *color = 1;
    } else if (strcmp(option, "never") == 0) {
        *color = 0;
    } else {
        fprintf(stderr, "deja: --color must be auto, always or never, not '%s'\n", option);
        return -1;
    }
    return 0;
}

/* Flush and close standard output; see cli.h. */
int cli_stdout_finish(int ret)
{
    int failed = 0, err = 0;

    errno = 0;
    if (fflush(stdout) != 0) {
        failed = 1;
        err = errno;
    }
    if (ferror(stdout))
        failed = 1;
    if (fclose(stdout) != 0 && !failed) {
        failed = 1;
        err = errno;
    }
    if (!failed)
        return ret;
    fprintf(stderr, "deja: cannot write the output: %s\n", err != 0 ? strerror(err) : "write error");
    return CLI_EXIT_TROUBLE;
}
