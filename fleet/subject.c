/*
 * fleet/subject.c -- subjects: a model name or version as one subject token,
 * the subject of a trace and of an object.
 */
#include <stdio.h>
#include <string.h>

#include "fleet/fleet_internal.h"

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
    char hex[33];

    deja_digest_format(d, hex);
    snprintf(out, 64, "%s.%c.%s", DEJA__FLEET_OBJECTS_SUBJECT, kind, hex);
}

int deja__fleet_match(const deja_trace *t, const deja_filter *f)
{
    const char *name = t->model_name ? t->model_name : "";
    const char *version = t->model_version ? t->model_version : "";

    if (f == NULL)
        return 1;
    if (f->model != NULL && strcmp(f->model, name) != 0)
        return 0;
    if (f->model_version != NULL && strcmp(f->model_version, version) != 0)
        return 0;
    if (f->since_ns != 0 && t->start_ns < f->since_ns)
        return 0;
    if (f->until_ns != 0 && t->start_ns >= f->until_ns)
        return 0;
    if (f->status >= 0 && (int)t->status != f->status)
        return 0;
    for (size_t i = 0; i < f->ntags; i++) {
        size_t j;

        for (j = 0; j < t->ntags; j++)
            if (strcmp(t->tags[j].key ? t->tags[j].key : "",
                       f->tags[i].key ? f->tags[i].key : "") == 0 &&
                strcmp(t->tags[j].value ? t->tags[j].value : "",
                       f->tags[i].value ? f->tags[i].value : "") == 0)
                break;
        if (j == t->ntags)
            return 0;
    }
    return 1;
}
