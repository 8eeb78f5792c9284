/*
 * cli/cli_options.c -- option parsing (getopt with the common options) and argument parsing
 * (numbers, key=value).
 */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>


/* getopt_long with our own messages; see cli.h. */
int cli_getopt(int argc, char **argv, const struct option *longopts, const char *help, int *first)
{
    int c;

    if (*first) {
        optind = 0; /* glibc: a full re-initialisation */
        *first = 0;
    }
    opterr = 0;
    c = getopt_long(argc, argv, ":h", longopts, NULL);
    if (c == '?') {
        if (optopt > 0 && optopt < 256)
            cli_usage_error(help, "%s: unknown option '-%c'", argv[0], optopt);
        else
            cli_usage_error(help, "%s: unknown option '%s'", argv[0], argv[optind - 1]);
        return '?';
    }
    if (c == ':') {
        cli_usage_error(help, "%s: option '%s' needs a value", argv[0], argv[optind - 1]);
        return '?';
    }
    return c;
}

/* cli_getopt with --help and --json handled here; see cli.h. */
int cli_getopt_common(int argc, char **argv, const struct option *longopts, const char *help,
                      int *first, int *json, int *ret)
{
    int c;

    while ((c = cli_getopt(argc, argv, longopts, help, first)) == CLI_OPT_JSON)
        *json = 1;
    if (c == CLI_OPT_HELP) {
        *ret = cli_help(help);
        return '?';
    }
    return c;
}

/* The options of a command that takes only --help and --json; see cli.h. */
int cli_options_json_only(int argc, char **argv, const char *help, int *json, int *ret)
{
    static const struct option longopts[] = {
        CLI_LONGOPT_HELP,
        CLI_LONGOPT_JSON,
        CLI_LONGOPT_END,
    };
    int first = 1;

    return cli_getopt_common(argc, argv, longopts, help, &first, json, ret) == -1 ? 0 : -1;
}

/* Parse a decimal integer in [0, max]. */
int cli_parse_u64(const char *text, uint64_t max, uint64_t *out)
{
    char *end = NULL;
    unsigned long long v;

    if (text == NULL || !isdigit((unsigned char)text[0]))
        return -1;
    errno = 0;
    v = strtoull(text, &end, 10);
    if (errno != 0 || *end != '\0' || v > max)
        return -1;
    *out = (uint64_t)v;
    return 0;
}

/* Split "K=V" into malloc'd copies. */
int cli_parse_kv(const char *text, char **key, char **value)
{
    const char *eq = strchr(text, '=');
    char *k = NULL;
    char *v = NULL;

    if (eq == NULL || eq == text)
        return -1;
    k = strndup(text, (size_t)(eq - text));
    v = strdup(eq + 1);
    if (k == NULL || v == NULL) {
        free(k);
        free(v);
        return -1;
    }
    *key = k;
    *value = v;
    return 0;
}

/* Parse a size with an optional binary unit; see cli.h. */
int cli_parse_size(const char *text, uint64_t *out)
{
    static const char units[] = "KMGT";
    const char *p = text;
    uint64_t n = 0;
    unsigned shift = 0;

    if (text == NULL || !isdigit((unsigned char)*p))
        return -1;
    for (; isdigit((unsigned char)*p); p++) {
        if (n > ((uint64_t)1 << 60) / 10)
            return -1;
        n = n * 10 + (uint64_t)(*p - '0');
    }
    if (*p != '\0') {
        const char *u = strchr(units, toupper((unsigned char)*p));

        if (u == NULL)
            return -1;
        shift = 10 * (unsigned)(u - units + 1);
        p++;
        if (*p == 'i' && (p[1] == 'B' || p[1] == 'b'))
            p += 2;
        else if (*p == 'B' || *p == 'b')
            p++;
        if (*p != '\0')
            return -1;
    }
    if (n > ((uint64_t)1 << 60) >> shift)
        return -1;
    *out = n << shift;
    return 0;
}

/* Parse a finite non-negative number; 0 on success, -1 otherwise. */
int cli_parse_double(const char *text, double *out)
{
    char *end = NULL;
    double v;
    if (!text || !*text) {
        return -1;
    }
    v = strtod(text, &end);
    if (*end != '\0' || !isfinite(v) || v < 0) {
        return -1;
    }
    *out = v;
    return 0;
}
