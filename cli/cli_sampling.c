/*
 * cli/cli_sampling.c -- the sampling options of `deja run`: a flat rate,
 * rates per model, latency and first-N keeps, dedup (deja_sampling).
 */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

void cli_sampling_init(cli_sampling *s)
{
    memset(s, 0, sizeof *s);
    s->policy = (deja_sampling)DEJA_SAMPLING_INIT;
}

void cli_sampling_free(cli_sampling *s)
{
    for (size_t i = 0; i < s->policy.nrates; i++) {
        free((char *)s->rates[i].model);
        free((char *)s->rates[i].version);
    }
    free(s->rates);
    s->rates = NULL;
    s->policy.nrates = 0;
}

/* Parse a rate in 0..1; -1 on anything else. */
static int parse_rate(const char *text, double *out)
{
    char *end = NULL;
    double v;

    errno = 0;
    v = strtod(text, &end);
    if (errno != 0 || end == text || *end != '\0' || !(v >= 0.0 && v <= 1.0))
        return -1;
    *out = v;
    return 0;
}

/* Parse a duration "250ms", "2s", "1.5s", "800us", "1m" into ns; -1 on
 * anything else. */
static int parse_duration(const char *text, int64_t *out)
{
    static const struct {
        const char *unit;
        double ns;
    } units[] = {{"ns", 1}, {"us", 1e3}, {"ms", 1e6}, {"s", 1e9}, {"m", 60e9}};
    char *end = NULL;
    double v;

    errno = 0;
    v = strtod(text, &end);
    if (errno != 0 || end == text || !(v > 0.0))
        return -1;
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strcmp(end, units[i].unit) == 0 && v * units[i].ns < 9e18) {
            *out = (int64_t)(v * units[i].ns);
            return *out > 0 ? 0 : -1;
        }
    }
    return -1;
}

/* Add a rate for model[@version]; 0 or -1 (out of memory). */
static int add_rate(cli_sampling *s, const char *model, size_t mlen, const char *version,
                    double rate)
{
    deja_sample_rate *grown = realloc(s->rates, (s->policy.nrates + 1) * sizeof *grown);
    deja_sample_rate *r;

    if (grown == NULL)
        return -1;
    s->rates = grown;
    s->policy.rates = grown;
    r = &grown[s->policy.nrates];
    r->model = strndup(model, mlen);
    r->version = version != NULL ? strdup(version) : NULL;
    r->rate = rate;
    if (r->model == NULL || (version != NULL && r->version == NULL)) {
        free((char *)r->model);
        free((char *)r->version);
        return -1;
    }
    s->policy.nrates++;
    return 0;
}

/* `--sample RATE` or `--sample model=NAME[@VERSION]:RATE`. */
static int sample_option(cli_sampling *s, const char *arg)
{
    const char *spec, *colon, *at;
    double rate;

    if (strncmp(arg, "model=", 6) != 0) {
        if (parse_rate(arg, &rate) < 0)
            return cli_error("--sample: '%s' is neither a rate from 0 to 1 nor "
                             "model=NAME[@VERSION]:RATE",
                             arg);
        s->policy.rate = rate;
        return 0;
    }
    spec = arg + 6;
    colon = strrchr(spec, ':');
    if (colon == NULL || colon == spec || parse_rate(colon + 1, &rate) < 0)
        return cli_error("--sample: cannot read '%s' (expected model=NAME[@VERSION]:RATE, "
                         "RATE from 0 to 1)",
                         arg);
    at = memchr(spec, '@', (size_t)(colon - spec));
    if (at != NULL) {
        char version[256];
        const size_t vlen = (size_t)(colon - at - 1);

        if (vlen == 0 || vlen >= sizeof version)
            return cli_error("--sample: '%s' has an empty or too long version", arg);
        memcpy(version, at + 1, vlen);
        version[vlen] = '\0';
        if (at == spec)
            return cli_error("--sample: '%s' names no model", arg);
        return add_rate(s, spec, (size_t)(at - spec), version, rate) < 0
                   ? cli_error("out of memory reading --sample")
                   : 0;
    }
    return add_rate(s, spec, (size_t)(colon - spec), NULL, rate) < 0
               ? cli_error("out of memory reading --sample")
               : 0;
}

/* One sampling option; see cli.h. */
int cli_sampling_option(cli_sampling *s, int opt, const char *arg)
{
    uint64_t n;

    switch (opt) {
    case CLI_OPT_SAMPLE:
        if (sample_option(s, arg) != 0)
            return -1;
        break;
    case CLI_OPT_KEEP_SLOWER:
        if (parse_duration(arg, &s->policy.keep_slower_ns) < 0) {
            cli_error("--keep-slower: cannot read duration '%s' (expected 250ms, 2s, 800us)", arg);
            return -1;
        }
        break;
    case CLI_OPT_KEEP_FIRST:
        if (cli_parse_u64(arg, 1u << 30, &n) < 0 || n == 0) {
            cli_error("--keep-first: '%s' is not a count from 1", arg);
            return -1;
        }
        s->policy.keep_first = (unsigned)n;
        break;
    case CLI_OPT_DEDUP:
        s->policy.dedup = 1;
        break;
    default:
        return 0;
    }
    s->given = 1;
    return 1;
}

/* Give the tracer the policy when any option was given; see cli.h. */
int cli_sampling_apply(const cli_sampling *s, deja_tracer *tracer)
{
    int rc;

    if (!s->given)
        return 0;
    rc = deja_tracer_sampling_set(tracer, &s->policy);
    return rc == 0 ? 0 : cli_lib_error(rc, "sampling");
}
