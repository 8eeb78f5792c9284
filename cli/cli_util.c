/*
 * cli/cli_util.c -- helpers shared by the deja subcommands: errors, options,
 * filters and selections, time parsing and formatting, previews, JSON.
 */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------------
 * Errors
 * ---------------------------------------------------------------------- */

/* Print "deja: <message>" on stderr, the message made by `fmt` and `ap`,
 * then ": <cause>" when `cause` is not NULL, then a newline. A cause that
 * already starts with the message (the library names the trace too) is
 * printed alone, so that nothing reads twice. */
static void print_error_line(const char *cause, const char *fmt, va_list ap)
{
    char what[1024];
    const int n = vsnprintf(what, sizeof what, fmt, ap);
    const size_t len = n < 0 ? 0 : (size_t)n < sizeof what ? (size_t)n : sizeof what - 1;

    if (cause == NULL)
        fprintf(stderr, "deja: %s\n", what);
    else if (len > 0 && strncmp(cause, what, len) == 0)
        fprintf(stderr, "deja: %s\n", cause);
    else
        fprintf(stderr, "deja: %s: %s\n", what, cause);
}

/* print_error_line with variadic arguments. */
static void print_cause(const char *cause, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    print_error_line(cause, fmt, ap);
    va_end(ap);
}

/* Print "deja: <message>" on stderr and return CLI_EXIT_TROUBLE. */
int cli_error(const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    print_error_line(NULL, fmt, ap);
    va_end(ap);
    return CLI_EXIT_TROUBLE;
}

/* Print "deja: <what>: <library message>" and return CLI_EXIT_TROUBLE. */
int cli_lib_error(int code, const char *fmt, ...)
{
    va_list ap;
    const char *msg = deja_error_last();

    if (msg == NULL || msg[0] == '\0')
        msg = deja_strerror(code);
    va_start(ap, fmt);
    print_error_line(msg, fmt, ap);
    va_end(ap);
    return CLI_EXIT_TROUBLE;
}

/* Print "deja: trace ID: <why>" for a record that cannot be read, as a
 * deja_bad_cb reports it (stdout is flushed first, so that the line lands
 * among the listed ones). */
void cli_bad_record(const deja_id *id, int code, const char *message)
{
    char text[DEJA_ID_STRLEN + 1];

    deja_id_format(id, text);
    fflush(stdout);
    print_cause(message != NULL && message[0] != '\0' ? message : deja_strerror(code),
                "trace %s", text);
}

/* Print the first line of `help` (the usage line) on stderr. */
static void print_usage_line(const char *help)
{
    const char *nl = strchr(help, '\n');
    int len = nl ? (int)(nl - help) : (int)strlen(help);

    fprintf(stderr, "%.*s\n", len, help);
}

/* Print "deja: <message>" and the usage line; return CLI_EXIT_TROUBLE. */
int cli_usage_error(const char *help, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    print_error_line(NULL, fmt, ap);
    va_end(ap);
    print_usage_line(help);
    return CLI_EXIT_TROUBLE;
}

/* Print `help` on stdout; return CLI_EXIT_OK. */
int cli_help(const char *help)
{
    fputs(help, stdout);
    return CLI_EXIT_OK;
}

/* ------------------------------------------------------------------------
 * Options
 * ---------------------------------------------------------------------- */

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

/* The current Unix time in nanoseconds. */
int64_t cli_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Read exactly `n` digits at *p into *out and advance; -1 if not digits. */
static int read_digits(const char **p, int n, int *out)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return -1;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return 0;
}

/* A relative time "10m" ago; 1 if `text` is not of that form, -1 if bad. */
static int parse_ago(const char *text, int64_t now_ns, int64_t *out)
{
    uint64_t n = 0;
    int64_t unit;
    size_t len = strlen(text);
    char num[32];

    if (len < 2 || len >= sizeof num || !isdigit((unsigned char)text[0]))
        return 1;
    switch (text[len - 1]) {
    case 's':
        unit = 1;
        break;
    case 'm':
        unit = 60;
        break;
    case 'h':
        unit = 3600;
        break;
    case 'd':
        unit = 86400;
        break;
    case 'w':
        unit = 7 * 86400;
        break;
    default:
        return 1;
    }
    memcpy(num, text, len - 1);
    num[len - 1] = '\0';
    if (cli_parse_u64(num, (uint64_t)(INT64_MAX / 1000000000 / unit), &n) < 0)
        return 1;
    *out = now_ns - (int64_t)n * unit * 1000000000;
    return 0;
}

/* Parse --since/--until times; see cli.h. */
int cli_parse_time(const char *text, int64_t now_ns, int64_t *out)
{
    const char *p = text;
    struct tm tm;
    int year, mon, day, hour = 0, min = 0, sec = 0;
    int64_t frac_ns = 0;
    int has_zone = 0;
    int64_t offset_s = 0;
    time_t secs;
    int r = parse_ago(text, now_ns, out);

    if (r <= 0)
        return r;
    if (read_digits(&p, 4, &year) < 0 || *p++ != '-' || read_digits(&p, 2, &mon) < 0 ||
        *p++ != '-' || read_digits(&p, 2, &day) < 0)
        return -1;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        p++;
        if (read_digits(&p, 2, &hour) < 0 || *p++ != ':' || read_digits(&p, 2, &min) < 0)
            return -1;
        if (*p == ':') {
            p++;
            if (read_digits(&p, 2, &sec) < 0)
                return -1;
            if (*p == '.' || *p == ',') {
                int64_t scale = 100000000;
                p++;
                if (!isdigit((unsigned char)*p))
                    return -1;
                for (; isdigit((unsigned char)*p); p++) {
                    frac_ns += (*p - '0') * scale;
                    scale /= 10;
                }
            }
        }
        if (*p == 'Z' || *p == 'z') {
            has_zone = 1;
            p++;
        } else if (*p == '+' || *p == '-') {
            int sign = *p == '-' ? -1 : 1;
            int oh, om;
            p++;
            if (read_digits(&p, 2, &oh) < 0)
                return -1;
            if (*p == ':')
                p++;
            if (read_digits(&p, 2, &om) < 0 || oh > 23 || om > 59)
                return -1;
            has_zone = 1;
            offset_s = sign * (oh * 3600 + om * 60);
        }
    }
    if (*p != '\0')
        return -1;
    if (mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 || sec > 60)
        return -1;
    memset(&tm, 0, sizeof tm);
    tm.tm_year = year - 1900;
    tm.tm_mon = mon - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = min;
    tm.tm_sec = sec;
    if (has_zone) {
        secs = timegm(&tm);
        secs -= (time_t)offset_s;
    } else {
        tm.tm_isdst = -1;
        secs = mktime(&tm);
    }
    if (secs == (time_t)-1 || tm.tm_mday != day || tm.tm_mon != mon - 1)
        return -1; /* February 30th and friends were normalised away */
    /* Nanoseconds since 1970 in an int64 span 1677..2262: clamp beyond. */
    if ((int64_t)secs >= INT64_MAX / 1000000000)
        *out = INT64_MAX;
    else if ((int64_t)secs <= INT64_MIN / 1000000000)
        *out = INT64_MIN + 1;
    else
        *out = (int64_t)secs * 1000000000 + frac_ns;
    return 0;
}

/* ------------------------------------------------------------------------
 * Store
 * ---------------------------------------------------------------------- */

/* --store, else $DEJA_STORE, else ./deja.store. */
const char *cli_store_path(const char *opt)
{
    const char *env = getenv("DEJA_STORE");

    if (opt != NULL)
        return opt;
    if (env != NULL && env[0] != '\0')
        return env;
    return "./deja.store";
}

/* Open the store read-only, never creating it. */
int cli_store_open_read(const cli_global *g, deja_store **out)
{
    int rc = deja_store_open(out, g->store, DEJA_STORE_READONLY);

    if (rc == DEJA_ENOTFOUND)
        return cli_error("store '%s' does not exist (set --store or DEJA_STORE)", g->store);
    if (rc < 0)
        return cli_lib_error(rc, "store '%s'", g->store);
    return 0;
}

/* No operands, then the store opened for reading; see cli.h. */
int cli_store_open_no_operands(const cli_global *g, int argc, char **argv, const char *help,
                               deja_store **out)
{
    if (optind < argc)
        return cli_usage_error(help, "%s: unexpected argument '%s'", argv[0], argv[optind]);
    return cli_store_open_read(g, out);
}

/* Resolve an id prefix, printing the problem on failure. */
int cli_resolve(deja_store *store, const char *prefix, deja_id *out)
{
    int rc;

    if (prefix[0] == '\0')
        return cli_error("empty trace id");
    rc = deja_store_resolve(store, prefix, out);
    if (rc == DEJA_ENOTFOUND)
        return cli_error("no trace with id prefix '%s'", prefix);
    if (rc == DEJA_EAMBIGUOUS || rc == DEJA_EINVAL) {
        const char *msg = deja_error_last();
        if (msg != NULL && msg[0] != '\0')
            return cli_error("%s", msg);
        return cli_error(rc == DEJA_EINVAL ? "'%s' is not a trace id prefix"
                                           : "id prefix '%s' matches several traces",
                         prefix);
    }
    if (rc < 0)
        return cli_lib_error(rc, "id prefix '%s'", prefix);
    return 0;
}

/* ------------------------------------------------------------------------
 * Filters and selections
 * ---------------------------------------------------------------------- */

/* A filter that selects everything. */
void cli_filter_init(cli_filter *f)
{
    const deja_filter init = DEJA_FILTER_INIT;

    memset(f, 0, sizeof *f);
    f->filter = init;
}

/* Free the tag strings. */
void cli_filter_free(cli_filter *f)
{
    for (size_t i = 0; i < f->ntags; i++) {
        free((char *)f->tags[i].key);
        free((char *)f->tags[i].value);
    }
    free(f->tags);
    f->tags = NULL;
    f->ntags = 0;
    f->filter.tags = NULL;
    f->filter.ntags = 0;
}

/* Apply one filter option; see cli.h. */
int cli_filter_option(cli_filter *f, int opt, const char *arg, int64_t now_ns)
{
    uint64_t n;
    deja_tag *grown;

    switch (opt) {
    case CLI_OPT_MODEL:
        f->filter.model = arg;
        break;
    case CLI_OPT_VERSION:
        f->filter.model_version = arg;
        break;
    case CLI_OPT_SINCE:
    case CLI_OPT_UNTIL: {
        int64_t t;
        if (cli_parse_time(arg, now_ns, &t) < 0) {
            cli_error("%s: cannot read time '%s' (expected 2026-11-27T14:03:00Z, "
                      "'2026-11-27 14:03', 2026-11-27, or 10m, 2h, 3d ago)",
                      opt == CLI_OPT_SINCE ? "--since" : "--until", arg);
            return -1;
        }
        if (t == 0)
            t = 1; /* 0 means "no bound" to the library */
        if (opt == CLI_OPT_SINCE)
            f->filter.since_ns = t;
        else
            f->filter.until_ns = t;
        break;
    }
    case CLI_OPT_STATUS:
        if (strcmp(arg, "ok") == 0) {
            f->filter.status = DEJA_STATUS_OK;
        } else if (strcmp(arg, "error") == 0) {
            f->filter.status = DEJA_STATUS_ERROR;
        } else {
            cli_error("--status: expected ok or error, not '%s'", arg);
            return -1;
        }
        break;
    case CLI_OPT_TAG: {
        char *k, *v;
        if (cli_parse_kv(arg, &k, &v) < 0) {
            cli_error("--tag: expected KEY=VALUE, not '%s'", arg);
            return -1;
        }
        grown = realloc(f->tags, (f->ntags + 1) * sizeof *grown);
        if (grown == NULL) {
            free(k);
            free(v);
            cli_error("out of memory");
            return -1;
        }
        f->tags = grown;
        f->tags[f->ntags].key = k;
        f->tags[f->ntags].value = v;
        f->ntags++;
        f->filter.tags = f->tags;
        f->filter.ntags = f->ntags;
        break;
    }
    case CLI_OPT_LIMIT:
        if (cli_parse_u64(arg, SIZE_MAX, &n) < 0 || n == 0) {
            cli_error("--limit: expected a positive number, not '%s'", arg);
            return -1;
        }
        f->filter.limit = (size_t)n;
        break;
    default:
        return 0;
    }
    f->given++;
    return 1;
}

/* A growable list of ids. */
typedef struct id_list {
    deja_id *ids;
    size_t n;
    size_t cap;
    size_t bad;
    int oom;
} id_list;

/* Append an id; -1 when out of memory. */
static int id_list_push(id_list *l, const deja_id *id)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        deja_id *grown;
        if (cap > SIZE_MAX / sizeof *grown)
            return -1;
        grown = realloc(l->ids, cap * sizeof *grown);
        if (grown == NULL)
            return -1;
        l->ids = grown;
        l->cap = cap;
    }
    l->ids[l->n++] = *id;
    return 0;
}

/* deja_store_list callback: collect the ids. */
static int collect_cb(const deja_trace *trace, void *payload)
{
    id_list *l = payload;

    if (id_list_push(l, &trace->id) < 0) {
        l->oom = 1;
        return 1;
    }
    return 0;
}

/* deja_store_list callback for records that cannot be read. */
static int bad_cb(const deja_id *id, int code, const char *message, void *payload)
{
    id_list *l = payload;

    cli_bad_record(id, code, message);
    l->bad++;
    return 0;
}

/* Collect into `all` the ids of the traces of `store` that match `filter`,
 * reporting unreadable records on stderr (bad_cb). Returns 0, or
 * CLI_EXIT_TROUBLE after printing the problem; `all` holds what was
 * collected either way (the caller frees all->ids). */
static int select_list(deja_store *store, const deja_filter *filter, id_list *all)
{
    int rc = deja_store_list(store, filter, collect_cb, bad_cb, all);

    if (rc < 0)
        rc = cli_lib_error(rc, "listing traces");
    else if (all->oom)
        rc = cli_error("out of memory listing traces");
    else
        rc = 0;
    return rc;
}

/* Order ids by their bytes. */
static int id_cmp(const void *a, const void *b)
{
    return memcmp(a, b, sizeof(deja_id));
}

/* Select traces by ids and/or filters; see cli.h. */
int cli_select(deja_store *store, char *const *ids, size_t nids, const cli_filter *f, deja_id **out,
               size_t *n, size_t *bad)
{
    id_list all = {0};
    id_list chosen = {0};
    deja_filter filter = f->filter;
    int ret = CLI_EXIT_TROUBLE;

    *out = NULL;
    *n = 0;
    if (nids == 0) {
        if (select_list(store, &filter, &all) != 0)
            goto cleanup;
        chosen = all;
        all.ids = NULL;
    } else {
        if (f->given) {
            filter.limit = 0; /* the limit applies to the result, below */
            if (select_list(store, &filter, &all) != 0)
                goto cleanup;
            qsort(all.ids, all.n, sizeof *all.ids, id_cmp);
        }
        for (size_t i = 0; i < nids; i++) {
            deja_id id;
            int seen = 0;
            if (cli_resolve(store, ids[i], &id) != 0)
                goto cleanup;
            for (size_t j = 0; j < chosen.n && !seen; j++)
                seen = memcmp(&chosen.ids[j], &id, sizeof id) == 0;
            if (seen)
                continue;
            if (f->given && bsearch(&id, all.ids, all.n, sizeof *all.ids, id_cmp) == NULL)
                continue;
            if (f->filter.limit != 0 && chosen.n >= f->filter.limit)
                break;
            if (id_list_push(&chosen, &id) < 0) {
                cli_error("out of memory");
                goto cleanup;
            }
        }
        chosen.bad = all.bad;
    }
    if (bad != NULL)
        *bad = chosen.bad;
    *out = chosen.ids;
    *n = chosen.n;
    chosen.ids = NULL;
    ret = 0;

cleanup:
    free(all.ids);
    free(chosen.ids);
    return ret;
}

/* ------------------------------------------------------------------------
 * Base64, UTF-8, hex
 * ---------------------------------------------------------------------- */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Padded base64 of `size` bytes; malloc'd, or NULL. */
char *cli_base64_encode(const void *data, size_t size)
{
    const uint8_t *in = data;
    char *out, *o;
    size_t i;

    if (size > (SIZE_MAX - 1) / 4 * 3 - 3)
        return NULL;
    out = malloc((size + 2) / 3 * 4 + 1);
    if (out == NULL)
        return NULL;
    o = out;
    for (i = 0; i + 2 < size; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        *o++ = b64_alphabet[v >> 18];
        *o++ = b64_alphabet[(v >> 12) & 63];
        *o++ = b64_alphabet[(v >> 6) & 63];
        *o++ = b64_alphabet[v & 63];
    }
    if (i < size) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < size)
            v |= (uint32_t)in[i + 1] << 8;
        *o++ = b64_alphabet[v >> 18];
        *o++ = b64_alphabet[(v >> 12) & 63];
        *o++ = i + 1 < size ? b64_alphabet[(v >> 6) & 63] : '=';
        *o++ = '=';
    }
    *o = '\0';
    return out;
}

/* Value of a base64 character, or -1. */
static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+' || c == '-')
        return 62;
    if (c == '/' || c == '_')
        return 63;
    return -1;
}

/* Decode base64 (standard or URL alphabet, padding optional). */
int cli_base64_decode(const char *text, size_t len, uint8_t **out, size_t *size)
{
    uint8_t *buf;
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;
    size_t end = len;

    while (end > 0 && text[end - 1] == '=')
        end--;
    if (len - end > 2 || (len % 4 != 0 && len != end))
        return -1;
    buf = malloc(end / 4 * 3 + 3);
    if (buf == NULL)
        return -1;
    for (size_t i = 0; i < end; i++) {
        int v = b64_value(text[i]);
        if (v < 0) {
            free(buf);
            return -1;
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[n++] = (uint8_t)(acc >> bits);
        }
    }
    /* Leftover bits must be the zero padding of the last character; a single
     * leftover character (6 bits) cannot encode anything. */
    if (bits >= 6 || (acc & ((1u << bits) - 1)) != 0) {
        free(buf);
        return -1;
    }
    *out = buf;
    *size = n;
    return 0;
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0. */
static size_t utf8_seq(const uint8_t *s, size_t n)
{
    size_t len;
    uint32_t cp;

    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xC2 && s[0] <= 0xDF) {
        len = 2;
        cp = s[0] & 0x1F;
    } else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
        len = 3;
        cp = s[0] & 0x0F;
    } else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
        len = 4;
        cp = s[0] & 0x07;
    } else {
        return 0;
    }
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        return 0;
    return len;
}

/* Non-zero when the bytes are valid UTF-8. */
int cli_utf8_valid(const void *data, size_t size)
{
    const uint8_t *s = data;
    size_t i = 0;

    while (i < size) {
        size_t len = utf8_seq(s + i, size - i);
        if (len == 0)
            return 0;
        i += len;
    }
    return 1;
}

/* Lowercase hex; malloc'd, or NULL. */
char *cli_hex(const uint8_t *data, size_t size)
{
    static const char digits[] = "0123456789abcdef";
    char *out;

    if (size > (SIZE_MAX - 1) / 2)
        return NULL;
    out = malloc(size * 2 + 1);
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < size; i++) {
        out[2 * i] = digits[data[i] >> 4];
        out[2 * i + 1] = digits[data[i] & 15];
    }
    out[size * 2] = '\0';
    return out;
}

/* ------------------------------------------------------------------------
 * Formatting
 * ---------------------------------------------------------------------- */

/* Split nanoseconds into seconds and milliseconds, flooring. */
static void split_ms(int64_t unix_ns, time_t *secs, int *ms)
{
    int64_t s = unix_ns / 1000000000;
    int64_t rem = unix_ns % 1000000000;

    if (rem < 0) {
        rem += 1000000000;
        s--;
    }
    *secs = (time_t)s;
    *ms = (int)(rem / 1000000);
}

/* Write `unix_ns` into `out` as "<date><sep><time>.<ms><suffix>", in UTC when
 * `utc` is non-zero, else in local time; "@<seconds>.<ms><suffix>" when the
 * time cannot be broken down. */
static void format_time(int64_t unix_ns, int utc, char *out, size_t cap)
{
    time_t secs;
    int ms;
    struct tm tm;
    char buf[64];
    const struct tm *got;

    split_ms(unix_ns, &secs, &ms);
    got = utc ? gmtime_r(&secs, &tm) : localtime_r(&secs, &tm);
    if (got == NULL ||
        strftime(buf, sizeof buf, utc ? "%Y-%m-%dT%H:%M:%S" : "%Y-%m-%d %H:%M:%S", &tm) == 0)
        snprintf(buf, sizeof buf, "@%lld", (long long)secs);
    if (snprintf(out, cap, "%s.%03d%s", buf, ms, utc ? "Z" : "") >= (int)cap && cap > 0)
        out[cap - 1] = '\0'; /* cut short: callers size `out` for any date */
}

/* "2026-11-27 14:03:00.123", local time. */
void cli_format_local(int64_t unix_ns, char *out, size_t cap)
{
    format_time(unix_ns, 0, out, cap);
}

/* "2026-11-27T14:03:00.123Z". */
void cli_format_utc(int64_t unix_ns, char *out, size_t cap)
{
    format_time(unix_ns, 1, out, cap);
}

/* "350us", "12.3ms", "1.25s". */
void cli_format_duration(int64_t ns, char *out, size_t cap)
{
    if (ns < 0)
        ns = 0;
    if (ns < 1000000)
        snprintf(out, cap, "%lldus", (long long)(ns / 1000));
    else if (ns < 1000000000)
        snprintf(out, cap, "%.1fms", (double)ns / 1e6);
    else
        snprintf(out, cap, "%.2fs", (double)ns / 1e9);
}

/* The shortest %g form of `v` that reads back as the same double. */
void cli_format_double(double v, char *out, size_t cap)
{
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(out, cap, "%.*g", prec, v);
        if (strtod(out, NULL) == v || isnan(v))
            return;
    }
}

/* "512 B", "1.2 KiB", "3.4 MiB". */
void cli_format_bytes(uint64_t bytes, char *out, size_t cap)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)bytes;
    size_t u = 0;

    if (bytes < 1024) {
        snprintf(out, cap, "%llu B", (unsigned long long)bytes);
        return;
    }
    v /= 1024;
    while (v >= 1024 && u + 1 < sizeof units / sizeof units[0]) {
        v /= 1024;
        u++;
    }
    snprintf(out, cap, "%.1f %s", v, units[u]);
}

/* "f32[2,3]". */
void cli_format_shape(const deja_tensor *t, char *out, size_t cap)
{
    const char *name = deja_dtype_name(t->dtype);
    size_t len;

    snprintf(out, cap, "%s[", name ? name : "?");
    for (size_t i = 0; i < t->ndim; i++) {
        len = strlen(out);
        if (len >= cap)
            return;
        snprintf(out + len, cap - len, "%s%llu", i ? "," : "", (unsigned long long)t->shape[i]);
    }
    len = strlen(out);
    if (len < cap)
        snprintf(out + len, cap - len, "]");
}

/* Print element `i` of a numeric tensor; 0 if the dtype is not numeric. */
static int print_element(FILE *fp, const deja_tensor *t, size_t i)
{
    const uint8_t *p = (const uint8_t *)t->data + i * deja_dtype_size(t->dtype);

    switch (t->dtype) {
    case DEJA_F16: {
        uint16_t v;
        memcpy(&v, p, 2);
        fprintf(fp, "%g", deja_f16_value(v));
        return 1;
    }
    case DEJA_BF16: {
        uint16_t v;
        memcpy(&v, p, 2);
        fprintf(fp, "%g", deja_bf16_value(v));
        return 1;
    }
    case DEJA_F32: {
        float v;
        memcpy(&v, p, 4);
        fprintf(fp, "%g", (double)v);
        return 1;
    }
    case DEJA_F64: {
        double v;
        memcpy(&v, p, 8);
        fprintf(fp, "%g", v);
        return 1;
    }
    case DEJA_I8:
        fprintf(fp, "%d", (int)(int8_t)p[0]);
        return 1;
    case DEJA_U8:
        fprintf(fp, "%u", (unsigned)p[0]);
        return 1;
    case DEJA_BOOL:
        fputs(p[0] ? "true" : "false", fp);
        return 1;
    case DEJA_I16: {
        int16_t v;
        memcpy(&v, p, 2);
        fprintf(fp, "%d", (int)v);
        return 1;
    }
    case DEJA_U16: {
        uint16_t v;
        memcpy(&v, p, 2);
        fprintf(fp, "%u", (unsigned)v);
        return 1;
    }
    case DEJA_I32: {
        int32_t v;
        memcpy(&v, p, 4);
        fprintf(fp, "%ld", (long)v);
        return 1;
    }
    case DEJA_U32: {
        uint32_t v;
        memcpy(&v, p, 4);
        fprintf(fp, "%lu", (unsigned long)v);
        return 1;
    }
    case DEJA_I64: {
        int64_t v;
        memcpy(&v, p, 8);
        fprintf(fp, "%lld", (long long)v);
        return 1;
    }
    case DEJA_U64: {
        uint64_t v;
        memcpy(&v, p, 8);
        fprintf(fp, "%llu", (unsigned long long)v);
        return 1;
    }
    default:
        return 0;
    }
}

/* Print text quoted and escaped, at most `max_chars` characters. */
static void print_text(FILE *fp, const uint8_t *s, size_t size, size_t max_chars)
{
    size_t i = 0, chars = 0;

    fputc('"', fp);
    while (i < size && chars < max_chars) {
        size_t len = utf8_seq(s + i, size - i);
        uint8_t c = s[i];
        if (len == 0) {
            fprintf(fp, "\\x%02x", c);
            i++;
        } else if (len > 1) {
            fwrite(s + i, 1, len, fp);
            i += len;
        } else {
            if (c == '"' || c == '\\')
                fprintf(fp, "\\%c", c);
            else if (c == '\n')
                fputs("\\n", fp);
            else if (c == '\t')
                fputs("\\t", fp);
            else if (c == '\r')
                fputs("\\r", fp);
            else if (c < 0x20 || c == 0x7f)
                fprintf(fp, "\\x%02x", c);
            else
                fputc(c, fp);
            i++;
        }
        chars++;
    }
    fputc('"', fp);
    if (i < size)
        fprintf(fp, "... (%zu bytes)", size);
}

/* A short preview of a tensor; see cli.h. */
void cli_print_preview(FILE *fp, const deja_tensor *t, size_t max_chars)
{
    char shape[160];
    size_t esize = deja_dtype_size(t->dtype);

    cli_format_shape(t, shape, sizeof shape);
    if (t->data == NULL && t->size > 0) {
        fprintf(fp, "%s (%zu bytes)", shape, t->size);
        return;
    }
    if (t->dtype == DEJA_UTF8) {
        print_text(fp, t->data, t->size, max_chars);
        return;
    }
    if (t->dtype != DEJA_BYTES && esize > 0) {
        size_t count = t->size / esize;
        size_t shown = count < 6 ? count : 6;
        fputc('[', fp);
        for (size_t i = 0; i < shown; i++) {
            if (i)
                fputs(", ", fp);
            print_element(fp, t, i);
        }
        fprintf(fp, "%s] %s", shown < count ? ", ..." : "", shape);
        return;
    }
    fprintf(fp, "%s (%zu bytes)", shape, t->size);
    if (t->size > 0) {
        size_t shown = t->size < 16 ? t->size : 16;
        fputs(" 0x", fp);
        for (size_t i = 0; i < shown; i++)
            fprintf(fp, "%02x", ((const uint8_t *)t->data)[i]);
        if (shown < t->size)
            fputs("...", fp);
    }
}

/* ------------------------------------------------------------------------
 * JSON
 * ---------------------------------------------------------------------- */

/* "ok" or "error". */
const char *cli_status_name(deja_status status)
{
    return status == DEJA_STATUS_OK ? "ok" : "error";
}

/* Set obj[key] = value, stealing value; -1 when value is NULL or the set
 * fails. */
static int jset(json_t *obj, const char *key, json_t *value)
{
    if (value == NULL)
        return -1;
    return json_object_set_new(obj, key, value) == 0 ? 0 : -1;
}

/* A u64 as a decimal JSON string (JSON numbers lose the top bit). */
static json_t *json_u64(uint64_t v)
{
    char buf[32];

    snprintf(buf, sizeof buf, "%llu", (unsigned long long)v);
    return json_string(buf);
}

/* The tensor as JSON; see cli.h. */
json_t *cli_tensor_json(const deja_tensor *t, int with_data)
{
    json_t *obj = json_object();
    json_t *shape = json_array();
    const char *dtype = deja_dtype_name(t->dtype);
    int bad = obj == NULL || shape == NULL;

    if (!bad) {
        for (size_t i = 0; i < t->ndim && !bad; i++)
            bad = json_array_append_new(shape, json_integer((json_int_t)t->shape[i])) != 0;
        bad = bad || jset(obj, "name", json_string(t->name ? t->name : "")) < 0;
        bad = bad || jset(obj, "dtype", json_string(dtype ? dtype : "invalid")) < 0;
        bad = bad || jset(obj, "shape", shape) < 0;
        shape = NULL;
        bad = bad || jset(obj, "size", json_integer((json_int_t)t->size)) < 0;
    }
    if (!bad && with_data && (t->data != NULL || t->size == 0)) {
        json_t *text = NULL;
        static const char empty[1] = "";
        const void *data = t->data != NULL ? t->data : empty;
        if (t->dtype == DEJA_UTF8)
            text = json_stringn(data, t->size); /* NULL when not valid UTF-8 */
        if (text != NULL) {
            bad = jset(obj, "text", text) < 0;
        } else {
            char *b64 = cli_base64_encode(data, t->size);
            bad = b64 == NULL || jset(obj, "base64", json_string(b64)) < 0;
            free(b64);
        }
    }
    json_decref(shape);
    if (bad) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

/* A list of tensors as a JSON array, or NULL. */
static json_t *tensors_json(const deja_tensor *ts, size_t n, int with_data)
{
    json_t *arr = json_array();

    for (size_t i = 0; i < n && arr != NULL; i++) {
        if (json_array_append_new(arr, cli_tensor_json(&ts[i], with_data)) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    return arr;
}

/* The trace as JSON; see cli.h. */
json_t *cli_trace_json(const deja_trace *t, int full)
{
    json_t *obj = json_object();
    json_t *model = json_object();
    json_t *params = json_object();
    json_t *tags = json_object();
    json_t *seeds = json_array();
    json_t *rng = json_array();
    json_t *clock = json_array();
    char id[DEJA_ID_STRLEN + 1];
    char when[64];
    char *digest = cli_hex(t->model_digest, t->model_digest_size);
    int bad = obj == NULL || model == NULL || params == NULL || tags == NULL || seeds == NULL ||
              rng == NULL || clock == NULL || digest == NULL;

    deja_id_format(&t->id, id);
    cli_format_utc(t->start_ns, when, sizeof when);
    bad = bad || jset(obj, "id", json_string(id)) < 0;
    bad = bad || jset(obj, "start", json_string(when)) < 0;
    bad = bad || jset(obj, "start_ns", json_integer(t->start_ns)) < 0;
    bad = bad || jset(obj, "duration_ns", json_integer(t->duration_ns)) < 0;
    bad = bad || jset(model, "name", json_string(t->model_name ? t->model_name : "")) < 0;
    bad = bad || jset(model, "version", json_string(t->model_version ? t->model_version : "")) < 0;
    bad = bad || jset(model, "digest", json_string(digest)) < 0;
    bad = bad || jset(obj, "model", model) < 0;
    model = NULL;
    bad = bad || jset(obj, "status", json_string(cli_status_name(t->status))) < 0;
    bad = bad || jset(obj, "error", json_string(t->error ? t->error : "")) < 0;
    for (size_t i = 0; i < t->ntags && !bad; i++)
        bad = jset(tags, t->tags[i].key, json_string(t->tags[i].value)) < 0;
    bad = bad || jset(obj, "tags", tags) < 0;
    tags = NULL;
    if (t->has_parent) {
        char parent[DEJA_ID_STRLEN + 1];
        deja_id_format(&t->parent, parent);
        bad = bad || jset(obj, "parent", json_string(parent)) < 0;
    } else {
        bad = bad || jset(obj, "parent", json_null()) < 0;
    }
    bad = bad || jset(obj, "inputs", tensors_json(t->inputs, t->ninputs, full)) < 0;
    bad = bad || jset(obj, "outputs", tensors_json(t->outputs, t->noutputs, full)) < 0;
    for (size_t i = 0; i < t->nparams && !bad; i++) {
        const deja_param *p = &t->params[i];
        json_t *v = p->kind == DEJA_PARAM_NUM   ? json_real(p->num)
                    : p->kind == DEJA_PARAM_STR ? json_string(p->str ? p->str : "")
                                                : json_boolean(p->flag);
        if (p->kind == DEJA_PARAM_NUM && p->num == floor(p->num) && fabs(p->num) < 9e15) {
            json_decref(v);
            v = json_integer((json_int_t)p->num);
        }
        bad = jset(params, p->key, v) < 0;
    }
    bad = bad || jset(obj, "params", params) < 0;
    params = NULL;
    for (size_t i = 0; i < t->nseeds && !bad; i++) {
        json_t *s = json_object();
        bad = s == NULL || jset(s, "name", json_string(t->seeds[i].name)) < 0 ||
              jset(s, "value", json_u64(t->seeds[i].value)) < 0 || json_array_append(seeds, s) != 0;
        json_decref(s);
    }
    bad = bad || jset(obj, "seeds", seeds) < 0;
    seeds = NULL;
    for (size_t i = 0; i < t->nrng && !bad; i++) {
        const deja_rng_stream *r = &t->rng[i];
        json_t *s = json_object();
        json_t *draws = full ? json_array() : NULL;
        bad = s == NULL || (full && draws == NULL);
        bad = bad || jset(s, "name", json_string(r->name)) < 0;
        bad = bad || jset(s, "seed", json_u64(r->seed)) < 0;
        bad = bad || jset(s, "ndraws", json_integer((json_int_t)r->ndraws)) < 0;
        for (size_t k = 0; full && k < r->ndraws && !bad; k++)
            bad = json_array_append_new(draws, json_u64(r->draws[k])) != 0;
        if (full) {
            bad = bad || jset(s, "draws", draws) < 0;
            draws = NULL;
        }
        bad = bad || json_array_append(rng, s) != 0;
        json_decref(draws);
        json_decref(s);
    }
    bad = bad || jset(obj, "rng", rng) < 0;
    rng = NULL;
    for (size_t i = 0; i < t->nclock && !bad; i++)
        bad = json_array_append_new(clock, json_integer(t->clock_ns[i])) != 0;
    bad = bad || jset(obj, "clock_ns", clock) < 0;
    clock = NULL;
    if (t->has_env) {
        char env[33];
        deja_digest_format(&t->env, env);
        bad = bad || jset(obj, "env_digest", json_string(env)) < 0;
    } else {
        bad = bad || jset(obj, "env_digest", json_null()) < 0;
    }
    json_decref(model);
    json_decref(params);
    json_decref(tags);
    json_decref(seeds);
    json_decref(rng);
    json_decref(clock);
    free(digest);
    if (bad) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

/* A string or null. */
static json_t *json_str_or_null(const char *s)
{
    return s != NULL ? json_string(s) : json_null();
}

/* An array of strings, or NULL. */
static json_t *json_strings(const char *const *v, size_t n)
{
    json_t *arr = json_array();

    for (size_t i = 0; i < n && arr != NULL; i++) {
        if (json_array_append_new(arr, json_string(v[i] ? v[i] : "")) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    return arr;
}

/* key/value pairs as an object, or NULL. */
static json_t *json_kvs(const deja_kv *kv, size_t n)
{
    json_t *obj = json_object();

    for (size_t i = 0; i < n && obj != NULL; i++) {
        if (jset(obj, kv[i].key, json_string(kv[i].value ? kv[i].value : "")) < 0) {
            json_decref(obj);
            obj = NULL;
        }
    }
    return obj;
}

/* The environment as JSON; see cli.h. */
json_t *cli_env_json(const deja_env *env)
{
    json_t *obj = json_object();
    int bad = obj == NULL;

    bad = bad || jset(obj, "arch", json_str_or_null(env->arch)) < 0;
    bad = bad || jset(obj, "cpu_vendor", json_str_or_null(env->cpu_vendor)) < 0;
    bad = bad || jset(obj, "cpu_model", json_str_or_null(env->cpu_model)) < 0;
    bad = bad || jset(obj, "isa", json_strings(env->isa, env->nisa)) < 0;
    bad = bad || jset(obj, "cores", json_integer(env->cores)) < 0;
    bad = bad || jset(obj, "memory_bytes", json_integer((json_int_t)env->memory_bytes)) < 0;
    bad = bad || jset(obj, "os", json_str_or_null(env->os)) < 0;
    bad = bad || jset(obj, "kernel", json_str_or_null(env->kernel)) < 0;
    bad = bad || jset(obj, "libc", json_str_or_null(env->libc)) < 0;
    bad = bad || jset(obj, "compiler", json_str_or_null(env->compiler)) < 0;
    bad = bad || jset(obj, "gpus", json_strings(env->gpus, env->ngpus)) < 0;
    bad = bad || jset(obj, "threads", json_integer(env->threads)) < 0;
    bad = bad || jset(obj, "fp_rounding", json_str_or_null(env->fp_rounding)) < 0;
    bad = bad || jset(obj, "ftz", json_boolean(env->ftz)) < 0;
    bad = bad || jset(obj, "daz", json_boolean(env->daz)) < 0;
    bad = bad || jset(obj, "vars", json_kvs(env->vars, env->nvars)) < 0;
    bad = bad || jset(obj, "libs", json_kvs(env->libs, env->nlibs)) < 0;
    if (bad) {
        json_decref(obj);
        return NULL;
    }
    return obj;
}

/* Print compactly on one line; steals `j`. */
int cli_json_print(json_t *j)
{
    int rc;

    if (j == NULL)
        return -1;
    rc = json_dumpf(j, stdout, JSON_COMPACT);
    json_decref(j);
    if (rc != 0)
        return -1;
    fputc('\n', stdout);
    return 0;
}
