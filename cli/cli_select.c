/*
 * cli/cli_select.c -- time parsing, opening the store, resolving ids, the filters of `ls` and
 * selections of traces by ids and filters.
 */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* A duration ago: "10m", or compound "1h30m", "2d12h", "1w2d" (units w, d,
 * h, m, s, each a whole number). 1 if `text` is not of that form, -1 if bad
 * (an overflow), else 0 with `now_ns` minus the duration in *out. */
static int parse_ago(const char *text, int64_t now_ns, int64_t *out)
{
    const int64_t max_s = INT64_MAX / 1000000000;
    const char *p = text;
    int64_t total = 0;

    if (!isdigit((unsigned char)*p))
        return 1;
    while (*p != '\0') {
        int64_t n = 0, unit;
        if (!isdigit((unsigned char)*p))
            return 1;
        for (; isdigit((unsigned char)*p); p++) {
            if (n > (max_s - (*p - '0')) / 10)
                return -1;
            n = n * 10 + (*p - '0');
        }
        switch (*p++) {
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
        if (n > (max_s - total) / unit)
            return -1;
        total += n * unit;
    }
    *out = now_ns - total * 1000000000;
    return 0;
}

/* "today" and "yesterday" (local midnight), "now", and "@SECONDS[.FRACTION]"
 * (Unix time). 1 if `text` is none of these, -1 if bad, else 0. */
static int parse_named(const char *text, int64_t now_ns, int64_t *out)
{
    if (strcmp(text, "now") == 0) {
        *out = now_ns;
        return 0;
    }
    if (strcmp(text, "today") == 0 || strcmp(text, "yesterday") == 0) {
        const time_t now_s = (time_t)(now_ns / 1000000000);
        struct tm tm;
        time_t midnight;
        if (localtime_r(&now_s, &tm) == NULL)
            return -1;
        tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
        tm.tm_mday -= text[0] == 'y'; /* mktime normalises the 0th */
        tm.tm_isdst = -1;
        midnight = mktime(&tm);
        if (midnight == (time_t)-1)
            return -1;
        *out = (int64_t)midnight * 1000000000;
        return 0;
    }
    if (text[0] == '@') {
        const char *p = text + 1;
        int64_t secs = 0, frac = 0, scale = 100000000;
        int neg = *p == '-';
        p += neg;
        if (!isdigit((unsigned char)*p))
            return -1;
        for (; isdigit((unsigned char)*p); p++) {
            if (secs > (INT64_MAX / 1000000000 - 1 - (*p - '0')) / 10)
                return -1;
            secs = secs * 10 + (*p - '0');
        }
        if (*p == '.') {
            p++;
            if (!isdigit((unsigned char)*p))
                return -1;
            for (; isdigit((unsigned char)*p); p++, scale /= 10)
                frac += (*p - '0') * scale;
        }
        if (*p != '\0')
            return -1;
        *out = (neg ? -1 : 1) * (secs * 1000000000 + frac);
        return 0;
    }
    return 1;
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
    r = parse_named(text, now_ns, out);
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
    if (deja_store_unlocked(*out))
        fprintf(stderr, "deja: warning: store '%s': lock.mdb is not writable: reading without "
                        "locks (a concurrent writer may change what is read)\n",
                g->store);
    return 0;
}

/* Open an existing store for writing, never creating it; see cli.h. */
int cli_store_open_write(const cli_global *g, deja_store **out)
{
    int rc;

    /* deja_store_open creates a missing store when asked to write: check
     * that it exists first. */
    if (cli_store_open_read(g, out) != 0)
        return CLI_EXIT_TROUBLE;
    deja_store_close(*out);
    *out = NULL;
    rc = deja_store_open(out, g->store, DEJA_STORE_WRITE);
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
    case CLI_OPT_PINNED:
        f->filter.pinned = 1;
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

int cli_ids_push(deja_id **ids, size_t *n, size_t *cap, const deja_id *id)
{
    if (*n == *cap) {
        size_t grow = *cap ? *cap * 2 : 64;
        deja_id *grown;
        if (grow > SIZE_MAX / sizeof *grown)
            return -1;
        grown = realloc(*ids, grow * sizeof *grown);
        if (grown == NULL)
            return -1;
        *ids = grown;
        *cap = grow;
    }
    (*ids)[(*n)++] = *id;
    return 0;
}

/* Append an id; -1 when out of memory. */
static int id_list_push(id_list *l, const deja_id *id)
{
    return cli_ids_push(&l->ids, &l->n, &l->cap, id);
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
