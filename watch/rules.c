/*
 * watch/rules.c -- validation rules: the rules file parser and the checks
 * applied to one trace (at record time by the tracer, over a store by
 * check.c, on replayed outputs by `deja replay --rules`).
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "watch/watch_internal.h"

#define RULES_FILE_MAX ((size_t)1 << 20)
#define RULES_MAX 4096
#define NAME_MAX_LEN 128
#define SET_MAX 1024
#define JSON_DEPTH_MAX 512

typedef enum check_kind {
    CHECK_FINITE,
    CHECK_RANGE,
    CHECK_SUM,
    CHECK_IN,
    CHECK_LENGTH,
    CHECK_MATCHES,
    CHECK_JSON,
    CHECK_NONEMPTY,
} check_kind;

typedef struct rule {
    char *name;
    deja_side side;
    char *tensor; /* NULL: every tensor ("*") */
    check_kind kind;
    double lo, hi;        /* range; sum target (lo) and tolerance (hi) */
    uint64_t len_lo, len_hi; /* length bounds, characters */
    char **set;           /* in */
    size_t nset;
    regex_t re;           /* matches */
    int has_re;
} rule;

struct deja_rules {
    rule *v;
    size_t n;
};

static void rule_free(rule *r)
{
    free(r->name);
    free(r->tensor);
    for (size_t i = 0; i < r->nset; i++)
        free(r->set[i]);
    free(r->set);
    if (r->has_re)
        regfree(&r->re);
}

void deja_rules_free(deja_rules *rules)
{
    if (rules == NULL)
        return;
    for (size_t i = 0; i < rules->n; i++)
        rule_free(&rules->v[i]);
    free(rules->v);
    free(rules);
}

size_t deja_rules_count(const deja_rules *rules)
{
    return rules ? rules->n : 0;
}

const char *deja_rules_name(const deja_rules *rules, size_t i)
{
    return rules && i < rules->n ? rules->v[i].name : NULL;
}

/* ------------------------------------------------------------------------
 * Parsing
 * ---------------------------------------------------------------------- */

/* The next whitespace-separated word of `*p` (NUL-terminated in place), or
 * NULL at the end of the line. */
static char *next_word(char **p)
{
    char *s = *p, *w;

    while (*s == ' ' || *s == '\t')
        s++;
    if (*s == '\0')
        return NULL;
    w = s;
    while (*s != '\0' && *s != ' ' && *s != '\t')
        s++;
    if (*s != '\0')
        *s++ = '\0';
    *p = s;
    return w;
}

/* Parse a finite number. */
static int parse_num(const char *text, double *out)
{
    char *end;

    errno = 0;
    *out = strtod(text, &end);
    return end != text && *end == '\0' && errno == 0 && isfinite(*out) ? 0 : -1;
}

/* Parse an unsigned length, or leave the default when empty. */
static int parse_len(const char *text, size_t n, uint64_t dflt, uint64_t *out)
{
    uint64_t v = 0;

    if (n == 0) {
        *out = dflt;
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)text[i]) || v > (UINT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (uint64_t)(text[i] - '0');
    }
    *out = v;
    return 0;
}

/* Split "A,B,C" into the rule's set. */
static int parse_set(rule *r, const char *text)
{
    const char *p = text;

    while (*p != '\0') {
        const char *comma = strchr(p, ',');
        const size_t n = comma ? (size_t)(comma - p) : strlen(p);
        char **grown;

        if (r->nset == SET_MAX)
            return -1;
        grown = realloc(r->set, (r->nset + 1) * sizeof *grown);
        if (grown == NULL)
            return -2;
        r->set = grown;
        r->set[r->nset] = strndup(p, n);
        if (r->set[r->nset] == NULL)
            return -2;
        r->nset++;
        p += n;
        if (*p == ',')
            p++;
    }
    return r->nset > 0 ? 0 : -1;
}

/* Parse one rule line (comments and blank lines already removed). Sets
 * the error message naming `where` on failure. */
static int parse_line(rule *r, char *line, const char *where)
{
    char *p = line, *colon, *target, *check, *dot, *arg;
    size_t n;

    colon = strchr(line, ':');
    if (colon == NULL)
        return deja__error_set(DEJA_EINVAL, "%s: expected 'NAME: SIDE.TENSOR CHECK'", where);
    *colon = '\0';
    while (*p == ' ' || *p == '\t')
        p++;
    n = strlen(p);
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
        p[--n] = '\0';
    if (n == 0 || n > NAME_MAX_LEN)
        return deja__error_set(DEJA_EINVAL, "%s: a rule needs a name of 1..%d characters", where,
                               NAME_MAX_LEN);
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)p[i]) && p[i] != '_' && p[i] != '-' && p[i] != '.')
            return deja__error_set(DEJA_EINVAL,
                                   "%s: rule name '%s': only letters, digits, '_', '-' and '.'",
                                   where, p);
    if ((r->name = strdup(p)) == NULL)
        return deja__error_set(DEJA_ENOMEM, "rules: out of memory");
    p = colon + 1;
    target = next_word(&p);
    check = next_word(&p);
    if (target == NULL || check == NULL)
        return deja__error_set(DEJA_EINVAL, "%s: rule '%s': expected SIDE.TENSOR CHECK", where,
                               r->name);
    dot = strchr(target, '.');
    if (dot == NULL || dot[1] == '\0')
        return deja__error_set(DEJA_EINVAL, "%s: rule '%s': expected input.NAME or output.NAME, "
                                            "not '%s'", where, r->name, target);
    *dot = '\0';
    if (strcmp(target, "input") == 0)
        r->side = DEJA_INPUT;
    else if (strcmp(target, "output") == 0)
        r->side = DEJA_OUTPUT;
    else
        return deja__error_set(DEJA_EINVAL, "%s: rule '%s': side '%s' is neither input nor output",
                               where, r->name, target);
    if (strcmp(dot + 1, "*") != 0 && (r->tensor = strdup(dot + 1)) == NULL)
        return deja__error_set(DEJA_ENOMEM, "rules: out of memory");

    if (strcmp(check, "finite") == 0) {
        r->kind = CHECK_FINITE;
    } else if (strcmp(check, "json") == 0) {
        r->kind = CHECK_JSON;
    } else if (strcmp(check, "nonempty") == 0) {
        r->kind = CHECK_NONEMPTY;
    } else if (strcmp(check, "range") == 0) {
        char *lo = next_word(&p), *hi = next_word(&p);

        r->kind = CHECK_RANGE;
        if (lo == NULL || hi == NULL || parse_num(lo, &r->lo) != 0 || parse_num(hi, &r->hi) != 0 ||
            r->lo > r->hi)
            return deja__error_set(DEJA_EINVAL, "%s: rule '%s': expected 'range LO HI' with LO <= HI",
                                   where, r->name);
    } else if (strcmp(check, "sum") == 0) {
        char *target_sum = next_word(&p), *tol = next_word(&p);

        r->kind = CHECK_SUM;
        r->hi = 1e-3;
        if (target_sum == NULL || parse_num(target_sum, &r->lo) != 0 ||
            (tol != NULL && (parse_num(tol, &r->hi) != 0 || r->hi < 0)))
            return deja__error_set(DEJA_EINVAL, "%s: rule '%s': expected 'sum S [TOL]'", where,
                                   r->name);
    } else if (strcmp(check, "in") == 0) {
        char *set = next_word(&p);
        int rc;

        r->kind = CHECK_IN;
        if (set == NULL)
            return deja__error_set(DEJA_EINVAL, "%s: rule '%s': expected 'in A,B,...'", where,
                                   r->name);
        rc = parse_set(r, set);
        if (rc == -2)
            return deja__error_set(DEJA_ENOMEM, "rules: out of memory");
        if (rc != 0)
            return deja__error_set(DEJA_EINVAL, "%s: rule '%s': expected 1..%d words after 'in'",
                                   where, r->name, SET_MAX);
    } else if (strcmp(check, "length") == 0) {
        char *range = next_word(&p), *dots;

        r->kind = CHECK_LENGTH;
        dots = range ? strstr(range, "..") : NULL;
        if (dots == NULL || parse_len(range, (size_t)(dots - range), 0, &r->len_lo) != 0 ||
            parse_len(dots + 2, strlen(dots + 2), UINT64_MAX, &r->len_hi) != 0 ||
            r->len_lo > r->len_hi)
            return deja__error_set(DEJA_EINVAL,
                                   "%s: rule '%s': expected 'length MIN..MAX' (MIN <= MAX)", where,
                                   r->name);
    } else if (strcmp(check, "matches") == 0) {
        int rc;

        r->kind = CHECK_MATCHES;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p == '\0')
            return deja__error_set(DEJA_EINVAL, "%s: rule '%s': expected 'matches REGEX'", where,
                                   r->name);
        rc = regcomp(&r->re, p, REG_EXTENDED | REG_NOSUB);
        if (rc != 0) {
            char why[128];

            regerror(rc, &r->re, why, sizeof why);
            return deja__error_set(DEJA_EINVAL, "%s: rule '%s': bad regular expression: %s",
                                   where, r->name, why);
        }
        r->has_re = 1;
        p += strlen(p);
    } else {
        return deja__error_set(DEJA_EINVAL,
                               "%s: rule '%s': unknown check '%s' (finite, range, sum, in, length, "
                               "matches, json, nonempty)",
                               where, r->name, check);
    }
    arg = next_word(&p);
    if (arg != NULL)
        return deja__error_set(DEJA_EINVAL, "%s: rule '%s': unexpected '%s' after the check",
                               where, r->name, arg);
    return 0;
}

int deja_rules_parse(deja_rules **out, const char *text, size_t len, const char *source)
{
    deja_rules *rs = NULL;
    char *line = NULL;
    size_t pos = 0, lineno = 0;
    int rc = 0;

    *out = NULL;
    if (source == NULL)
        source = "rules";
    if (text == NULL && len > 0)
        return deja__error_set(DEJA_EINVAL, "%s: no text", source);
    if (len > RULES_FILE_MAX)
        return deja__error_set(DEJA_EINVAL, "%s: larger than %zu bytes", source, RULES_FILE_MAX);
    rs = calloc(1, sizeof *rs);
    line = malloc(len + 1);
    if (rs == NULL || line == NULL) {
        rc = deja__error_set(DEJA_ENOMEM, "rules: out of memory");
        goto cleanup;
    }
    while (pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        const size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
        char where[300], *hash, *p;
        rule *grown;

        lineno++;
        memcpy(line, text + pos, n);
        line[n] = '\0';
        pos += n + (nl != NULL);
        if (memchr(line, '\0', n) != NULL) {
            rc = deja__error_set(DEJA_EINVAL, "%s:%zu: a NUL byte", source, lineno);
            goto cleanup;
        }
        /* A '#' starts a comment, but not inside a regular expression. */
        hash = strchr(line, '#');
        if (hash != NULL && strstr(line, " matches ") == NULL)
            *hash = '\0';
        if (n > 0 && line[n - 1] == '\r')
            line[n - 1] = '\0';
        for (p = line; *p == ' ' || *p == '\t'; p++)
            ;
        if (*p == '\0' || *p == '#')
            continue;
        if (rs->n == RULES_MAX) {
            rc = deja__error_set(DEJA_EINVAL, "%s:%zu: more than %d rules", source, lineno,
                                 RULES_MAX);
            goto cleanup;
        }
        grown = realloc(rs->v, (rs->n + 1) * sizeof *grown);
        if (grown == NULL) {
            rc = deja__error_set(DEJA_ENOMEM, "rules: out of memory");
            goto cleanup;
        }
        rs->v = grown;
        memset(&rs->v[rs->n], 0, sizeof rs->v[rs->n]);
        snprintf(where, sizeof where, "%s:%zu", source, lineno);
        rc = parse_line(&rs->v[rs->n], p, where);
        rs->n++;
        if (rc != 0)
            goto cleanup;
        for (size_t i = 0; i + 1 < rs->n; i++)
            if (strcmp(rs->v[i].name, rs->v[rs->n - 1].name) == 0) {
                rc = deja__error_set(DEJA_EINVAL, "%s: rule '%s' is defined twice", where,
                                     rs->v[i].name);
                goto cleanup;
            }
    }
    if (rs->n == 0) {
        rc = deja__error_set(DEJA_EINVAL, "%s: no rules", source);
        goto cleanup;
    }
    *out = rs;
    rs = NULL;

cleanup:
    free(line);
    deja_rules_free(rs);
    return rc;
}

int deja_rules_load(deja_rules **out, const char *path)
{
    FILE *fp;
    char *buf = NULL;
    size_t n;
    int rc;

    *out = NULL;
    fp = fopen(path, "rb");
    if (fp == NULL)
        return deja__error_set(errno == ENOENT ? DEJA_ENOTFOUND : DEJA_EIO, "%s: cannot open: %s",
                               path, strerror(errno));
    buf = malloc(RULES_FILE_MAX + 1);
    if (buf == NULL) {
        fclose(fp);
        return deja__error_set(DEJA_ENOMEM, "rules: out of memory");
    }
    n = fread(buf, 1, RULES_FILE_MAX + 1, fp);
    if (ferror(fp))
        rc = deja__error_set(DEJA_EIO, "%s: read error", path);
    else
        rc = deja_rules_parse(out, buf, n, path);
    fclose(fp);
    free(buf);
    return rc;
}

/* ------------------------------------------------------------------------
 * JSON validation: one value, RFC 8259, depth bounded.
 * ---------------------------------------------------------------------- */

typedef struct jscan {
    const uint8_t *s;
    size_t n, i;
} jscan;

static void jws(jscan *j)
{
    while (j->i < j->n && (j->s[j->i] == ' ' || j->s[j->i] == '\t' || j->s[j->i] == '\n' ||
                           j->s[j->i] == '\r'))
        j->i++;
}

static int jlit(jscan *j, const char *w)
{
    const size_t n = strlen(w);

    if (j->n - j->i < n || memcmp(j->s + j->i, w, n) != 0)
        return -1;
    j->i += n;
    return 0;
}

static int jstring(jscan *j)
{
    j->i++; /* the opening quote */
    while (j->i < j->n) {
        const uint8_t c = j->s[j->i++];

        if (c == '"')
            return 0;
        if (c < 0x20)
            return -1;
        if (c == '\\') {
            if (j->i >= j->n)
                return -1;
            const uint8_t e = j->s[j->i++];
            if (e == 'u') {
                for (int k = 0; k < 4; k++, j->i++)
                    if (j->i >= j->n || !isxdigit(j->s[j->i]))
                        return -1;
            } else if (strchr("\"\\/bfnrt", e) == NULL || e == '\0') {
                return -1;
            }
        }
    }
    return -1;
}

static int jnumber(jscan *j)
{
    size_t digits = 0;

    if (j->i < j->n && j->s[j->i] == '-')
        j->i++;
    if (j->i < j->n && j->s[j->i] == '0') {
        j->i++;
        digits = 1;
    } else {
        while (j->i < j->n && isdigit(j->s[j->i])) {
            j->i++;
            digits++;
        }
    }
    if (digits == 0)
        return -1;
    if (j->i < j->n && j->s[j->i] == '.') {
        j->i++;
        digits = 0;
        while (j->i < j->n && isdigit(j->s[j->i])) {
            j->i++;
            digits++;
        }
        if (digits == 0)
            return -1;
    }
    if (j->i < j->n && (j->s[j->i] == 'e' || j->s[j->i] == 'E')) {
        j->i++;
        if (j->i < j->n && (j->s[j->i] == '+' || j->s[j->i] == '-'))
            j->i++;
        digits = 0;
        while (j->i < j->n && isdigit(j->s[j->i])) {
            j->i++;
            digits++;
        }
        if (digits == 0)
            return -1;
    }
    return 0;
}

static int jvalue(jscan *j, int depth)
{
    if (depth > JSON_DEPTH_MAX)
        return -1;
    jws(j);
    if (j->i >= j->n)
        return -1;
    switch (j->s[j->i]) {
    case '"':
        return jstring(j);
    case 't':
        return jlit(j, "true");
    case 'f':
        return jlit(j, "false");
    case 'n':
        return jlit(j, "null");
    case '[':
    case '{': {
        const int obj = j->s[j->i] == '{';
        const uint8_t close = obj ? '}' : ']';

        j->i++;
        jws(j);
        if (j->i < j->n && j->s[j->i] == close) {
            j->i++;
            return 0;
        }
        for (;;) {
            if (obj) {
                jws(j);
                if (j->i >= j->n || j->s[j->i] != '"' || jstring(j) != 0)
                    return -1;
                jws(j);
                if (j->i >= j->n || j->s[j->i] != ':')
                    return -1;
                j->i++;
            }
            if (jvalue(j, depth + 1) != 0)
                return -1;
            jws(j);
            if (j->i >= j->n)
                return -1;
            if (j->s[j->i] == close) {
                j->i++;
                return 0;
            }
            if (j->s[j->i] != ',')
                return -1;
            j->i++;
        }
    }
    default:
        return jnumber(j);
    }
}

/* Whether `size` bytes are exactly one JSON value (surrounding blanks
 * allowed). */
static int json_valid(const uint8_t *s, size_t size)
{
    jscan j = {s, size, 0};

    if (jvalue(&j, 0) != 0)
        return 0;
    jws(&j);
    return j.i == j.n;
}

/* ------------------------------------------------------------------------
 * Checking
 * ---------------------------------------------------------------------- */

static int is_text(const deja_tensor *t)
{
    return t->dtype == DEJA_UTF8;
}

/* Whether a check applies to a tensor of this type (and declared kind). */
static int applies(const rule *r, const deja_tensor *t, deja_output_kind kind)
{
    switch (r->kind) {
    case CHECK_FINITE:
    case CHECK_RANGE:
    case CHECK_SUM:
        return deja__watch_is_numeric(t->dtype);
    case CHECK_IN:
        return is_text(t) || deja__watch_is_scores(t, kind) ||
               (deja__watch_is_numeric(t->dtype) && !deja__watch_is_float(t->dtype));
    case CHECK_LENGTH:
    case CHECK_MATCHES:
    case CHECK_JSON:
        return is_text(t);
    case CHECK_NONEMPTY:
        return 1;
    }
    return 0;
}

/* Whether `text` of `n` bytes is one of the rule's words. */
static int in_set(const rule *r, const char *text, size_t n)
{
    for (size_t i = 0; i < r->nset; i++)
        if (strlen(r->set[i]) == n && memcmp(r->set[i], text, n) == 0)
            return 1;
    return 0;
}

/* Check one tensor; on a violation write the detail into `why` and return
 * 1; 0 when it passes; DEJA_ENOMEM. */
static int check_tensor(const rule *r, const deja_tensor *t, deja_output_kind kind, char *why,
                        size_t cap)
{
    const uint8_t *s = t->data;
    size_t n;

    if (!applies(r, t, kind)) {
        snprintf(why, cap, "is %s, which '%s' does not apply to", deja_dtype_name(t->dtype) ?
                 deja_dtype_name(t->dtype) : "?", r->name);
        return 1;
    }
    if (t->size > 0 && t->data == NULL) {
        snprintf(why, cap, "payload not loaded");
        return 1;
    }
    switch (r->kind) {
    case CHECK_NONEMPTY:
        if (t->size == 0) {
            snprintf(why, cap, "is empty");
            return 1;
        }
        return 0;
    case CHECK_FINITE:
        n = deja__watch_count(t);
        for (size_t i = 0; i < n; i++) {
            const double v = deja__watch_value(t, i);

            if (!isfinite(v)) {
                snprintf(why, cap, "element %zu is %s", i, isnan(v) ? "NaN" : "infinite");
                return 1;
            }
        }
        return 0;
    case CHECK_RANGE:
        n = deja__watch_count(t);
        for (size_t i = 0; i < n; i++) {
            const double v = deja__watch_value(t, i);

            if (!(v >= r->lo && v <= r->hi)) {
                snprintf(why, cap, "element %zu is %g, outside [%g, %g]", i, v, r->lo, r->hi);
                return 1;
            }
        }
        return 0;
    case CHECK_SUM: {
        size_t classes, rows;

        if (t->ndim == 0) {
            classes = deja__watch_count(t);
            rows = classes ? 1 : 0;
        } else {
            rows = deja__watch_rows(t, &classes);
        }
        for (size_t row = 0; row < rows; row++) {
            double sum = 0;

            for (size_t c = 0; c < classes; c++)
                sum += deja__watch_value(t, row * classes + c);
            if (!(fabs(sum - r->lo) <= r->hi)) {
                snprintf(why, cap, "row %zu sums to %.6g, not %g within %g", row, sum, r->lo,
                         r->hi);
                return 1;
            }
        }
        return 0;
    }
    case CHECK_IN:
        if (is_text(t)) {
            size_t a = 0, b = t->size;

            while (a < b && isspace(s[a]))
                a++;
            while (b > a && isspace(s[b - 1]))
                b--;
            if (!in_set(r, (const char *)s + a, b - a)) {
                snprintf(why, cap, "'%.*s' is not one of the allowed words",
                         (int)(b - a > 60 ? 60 : b - a), (const char *)s + a);
                return 1;
            }
            return 0;
        }
        if (deja__watch_is_scores(t, kind)) {
            size_t classes, rows = deja__watch_rows(t, &classes);

            for (size_t row = 0; row < rows; row++) {
                char label[32];
                const size_t k = deja__watch_argmax(t, row, classes);

                snprintf(label, sizeof label, "%zu", k);
                if (!in_set(r, label, strlen(label))) {
                    snprintf(why, cap, "row %zu: class %zu is not an allowed label", row, k);
                    return 1;
                }
            }
            return 0;
        }
        n = deja__watch_count(t);
        for (size_t i = 0; i < n; i++) {
            char label[32];
            const double v = deja__watch_value(t, i);

            snprintf(label, sizeof label, "%.0f", v);
            if (!in_set(r, label, strlen(label))) {
                snprintf(why, cap, "element %zu is %s, not an allowed label", i, label);
                return 1;
            }
        }
        return 0;
    case CHECK_LENGTH: {
        const uint64_t chars = deja__watch_utf8_chars(s, t->size);

        if (chars < r->len_lo || chars > r->len_hi) {
            if (chars < r->len_lo)
                snprintf(why, cap, "length %llu is below %llu", (unsigned long long)chars,
                         (unsigned long long)r->len_lo);
            else
                snprintf(why, cap, "length %llu is above %llu", (unsigned long long)chars,
                         (unsigned long long)r->len_hi);
            return 1;
        }
        return 0;
    }
    case CHECK_MATCHES: {
        char *copy = malloc(t->size + 1);
        int m;

        if (copy == NULL)
            return deja__error_set(DEJA_ENOMEM, "rules: out of memory");
        if (t->size)
            memcpy(copy, s, t->size);
        copy[t->size] = '\0';
        m = regexec(&r->re, copy, 0, NULL, 0);
        free(copy);
        if (m != 0) {
            snprintf(why, cap, "does not match the pattern");
            return 1;
        }
        return 0;
    }
    case CHECK_JSON:
        if (!json_valid(s, t->size)) {
            snprintf(why, cap, "is not valid JSON");
            return 1;
        }
        return 0;
    }
    return 0;
}

int deja_rules_apply(const deja_rules *rules, const deja_trace *trace, deja_violation_cb cb,
                     void *payload)
{
    int broken = 0;
    int stop = 0;

    for (size_t i = 0; i < rules->n && !stop; i++) {
        const rule *r = &rules->v[i];
        const deja_tensor *ts = r->side == DEJA_INPUT ? trace->inputs : trace->outputs;
        const size_t nts = r->side == DEJA_INPUT ? trace->ninputs : trace->noutputs;
        int this_rule = 0, found = 0;

        if (r->side == DEJA_OUTPUT && trace->status == DEJA_STATUS_ERROR)
            continue;
        for (size_t k = 0; k < nts && !stop; k++) {
            const deja_tensor *t = &ts[k];
            deja_output_kind kind;
            char why[256];
            int rc;

            if (r->tensor != NULL && strcmp(r->tensor, t->name ? t->name : "") != 0)
                continue;
            found = 1;
            kind = r->side == DEJA_OUTPUT ? deja__watch_kind_of(trace, t->name) : DEJA_KIND_AUTO;
            if (r->tensor == NULL && !applies(r, t, kind))
                continue;
            rc = check_tensor(r, t, kind, why, sizeof why);
            if (rc < 0)
                return rc;
            if (rc == 1) {
                deja_violation v = {r->name, r->side, t->name ? t->name : "", why};

                this_rule = 1;
                if (cb != NULL && cb(&v, payload) != 0)
                    stop = 1;
            }
        }
        if (!found && r->kind == CHECK_NONEMPTY && r->tensor != NULL) {
            deja_violation v = {r->name, r->side, r->tensor, "is missing"};

            this_rule = 1;
            if (cb != NULL && cb(&v, payload) != 0)
                stop = 1;
        }
        broken += this_rule;
    }
    return broken;
}

/* Collects the names of broken rules for the tracer. */
typedef struct collect {
    const char **failed;
    size_t cap, n;
} collect;

static int collect_cb(const deja_violation *v, void *payload)
{
    collect *c = payload;

    if (c->n > 0 && strcmp(c->failed[c->n - 1], v->rule) == 0)
        return 0;
    if (c->n < c->cap)
        c->failed[c->n++] = v->rule;
    return 0;
}

size_t deja_rules_tracer_check(const deja_trace *trace, const char **failed, size_t cap,
                               void *payload)
{
    collect c = {failed, cap, 0};

    if (payload == NULL || trace == NULL)
        return 0;
    if (deja_rules_apply(payload, trace, collect_cb, &c) < 0)
        return 0;
    return c.n;
}
