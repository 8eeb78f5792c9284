/*
 * fleet/subject.c -- subjects: a model name or version as one subject token,
 * the subject of a trace and of an object.
 */
#include <stdio.h>
#include <string.h>

#include "fleet/fleet_internal.h"
#include "store/store.h"

int deja__fleet_token(const char *name, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;

    if (name == NULL || name[0] == '\0') {
        if (cap < 2)
            return deja__error_set(DEJA_EINVAL, "subject token does not fit");
        memcpy(out, "%", 2);
        return 0;
    }
    for (const unsigned char *p = (const unsigned char *)name; *p != '\0'; p++) {
        const int keep = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
                         (*p >= '0' && *p <= '9') || *p == '_' || *p == '-';

        if (o + (keep ? 1 : 3) + 1 > cap)
            return deja__error_set(DEJA_EINVAL, "model name or version too long for a subject");
        if (keep) {
            out[o++] = (char)*p;
        } else {
            out[o++] = '%';
            out[o++] = hex[*p >> 4];
            out[o++] = hex[*p & 15];
        }
    }
    out[o] = '\0';
    return 0;
}

int deja__fleet_trace_subject(const char *model, const char *version, const deja_id *id,
                              char *out, size_t cap)
{
    char m[DEJA__FLEET_TOKEN_MAX], v[DEJA__FLEET_TOKEN_MAX], text[DEJA_ID_STRLEN + 1];
    int rc = deja__fleet_token(model, m, sizeof m);

    if (rc == 0)
        rc = deja__fleet_token(version, v, sizeof v);
    if (rc != 0)
        return rc;
    deja_id_format(id, text);
    if ((size_t)snprintf(out, cap, "%s.%s.%s.%s", DEJA__FLEET_TRACES_SUBJECT, m, v, text) >= cap)
        return deja__error_set(DEJA_EINVAL, "subject too long");
    return 0;
}

void deja__fleet_obj_subject(char kind, const deja_digest *d, char out[64])
{
    /* One per object shipped or fetched: put together, not printed. */
    const size_t n = sizeof DEJA__FLEET_OBJECTS_SUBJECT - 1;

    memcpy(out, DEJA__FLEET_OBJECTS_SUBJECT, n);
    out[n] = '.';
    out[n + 1] = kind;
    out[n + 2] = '.';
    deja_digest_format(d, out + n + 3);
}

int deja__fleet_match(const deja_trace *t, const deja_filter *f)
{
    return f == NULL || deja__trace_matches(t, f);
}
