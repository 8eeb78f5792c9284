/*
 * cli/cli_json.c -- JSON output: the JSON forms of traces, tensors and environments, and
 * printing them.
 */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>


/* "ok" or "error". */
const char *cli_status_name(deja_status status)
{
    return status == DEJA_STATUS_OK ? "ok" : "error";
}

/* A copy of `s` with every byte that is not part of valid UTF-8 written
 * as \xNN (a backslash itself as \\ when anything is escaped), or NULL
 * when out of memory. The caller frees it. */
static char *utf8_escaped(const char *s)
{
    size_t n = strlen(s), o = 0;
    char *out = malloc(4 * n + 1);
    const unsigned char *p = (const unsigned char *)s;
    if (out == NULL)
        return NULL;
    for (size_t i = 0; i < n;) {
        size_t len = 0;
        unsigned c = p[i];
        if (c < 0x80)
            len = 1;
        else if ((c & 0xe0) == 0xc0 && c >= 0xc2)
            len = 2;
        else if ((c & 0xf0) == 0xe0)
            len = 3;
        else if ((c & 0xf8) == 0xf0 && c <= 0xf4)
            len = 4;
        unsigned cp = len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
        for (size_t k = 1; k < len; k++) {
            if (i + k >= n || (p[i + k] & 0xc0) != 0x80) {
                len = 0;
                break;
            }
            cp = cp << 6 | (p[i + k] & 0x3f);
        }
        /* overlong, surrogate or beyond U+10FFFF */
        if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
            (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
            len = 0;
        if (len == 0) {
            o += (size_t)sprintf(out + o, "\\x%02x", c);
            i++;
        } else if (c == '\\') {
            out[o++] = '\\';
            out[o++] = '\\';
            i++;
        } else {
            memcpy(out + o, s + i, len);
            o += len;
            i += len;
        }
    }
    out[o] = '\0';
    return out;
}

/* A JSON string of `s` (NULL: ""): as it is when valid UTF-8, else with
 * the invalid bytes escaped as \xNN, so that one bad name never fails a
 * whole listing. New reference, or NULL when out of memory. */
json_t *cli_json_text(const char *s)
{
    json_t *j;
    char *esc;
    if (s == NULL)
        s = "";
    if ((j = json_string(s)) != NULL)
        return j;
    esc = utf8_escaped(s);
    j = esc != NULL ? json_string(esc) : NULL;
    free(esc);
    return j;
}

/* Set obj[key] = value, stealing value (a key that is not valid UTF-8 is
 * escaped as cli_json_text does); -1 when value is NULL or the set fails. */
static int jset(json_t *obj, const char *key, json_t *value)
{
    int rc;
    char *esc;
    if (value == NULL)
        return -1;
    if (json_object_set_new(obj, key, json_incref(value)) == 0) {
        json_decref(value);
        return 0;
    }
    esc = utf8_escaped(key);
    rc = esc != NULL && json_object_set_new(obj, esc, value) == 0 ? 0 : -1;
    if (esc == NULL)
        json_decref(value);
    free(esc);
    return rc;
}

/* Set obj[key] = *value unless `*bad`, taking it (then *value is NULL);
 * sets `*bad` when that fails. What is not taken is the caller's to
 * release, so that nothing leaks when an earlier step failed. */
static void adopt(int *bad, json_t *obj, const char *key, json_t **value)
{
    if (*bad)
        return;
    *bad = jset(obj, key, *value) < 0;
    *value = NULL; /* taken by jset, even when it failed */
}

/* A number for JSON: a real when finite, else the string "nan", "inf" or
 * "-inf" (JSON has no such numbers; the README states this rule). */
static json_t *json_num(double v)
{
    if (isnan(v))
        return cli_json_text("nan");
    if (isinf(v))
        return cli_json_text(v > 0 ? "inf" : "-inf");
    return json_real(v);
}

/* A u64 as a decimal JSON string (JSON numbers lose the top bit). */
static json_t *json_u64(uint64_t v)
{
    char buf[32];

    snprintf(buf, sizeof buf, "%llu", (unsigned long long)v);
    return cli_json_text(buf);
}

/* A float as JSON: a number, or "nan", "inf", "-inf". */
static json_t *json_float(double v)
{
    if (isnan(v))
        return cli_json_text("nan");
    if (isinf(v))
        return cli_json_text(v > 0 ? "inf" : "-inf");
    return json_real(v);
}

/* The elements of a numeric or bool tensor as a flat JSON array, or NULL
 * when `t` is text or bytes, or its size does not match its shape. */
static json_t *tensor_values(const deja_tensor *t)
{
    const size_t es = deja_dtype_size(t->dtype);
    const unsigned char *p = t->data;
    json_t *arr;
    size_t n = 1;

    if (t->dtype == DEJA_UTF8 || t->dtype == DEJA_BYTES || es == 0)
        return NULL;
    for (size_t i = 0; i < t->ndim; i++)
        n *= (size_t)t->shape[i];
    if (n * es != t->size)
        return NULL;
    arr = json_array();
    for (size_t i = 0; i < n && arr != NULL; i++, p += es) {
        json_t *v = NULL;
        uint16_t h;
        float f;
        double d;
        uint64_t u = 0;
        int64_t s = 0;
        switch (t->dtype) {
        case DEJA_F16:
            memcpy(&h, p, 2);
            v = json_float(deja_f16_value(h));
            break;
        case DEJA_BF16:
            memcpy(&h, p, 2);
            v = json_float(deja_bf16_value(h));
            break;
        case DEJA_F32:
            memcpy(&f, p, 4);
            v = json_float(f);
            break;
        case DEJA_F64:
            memcpy(&d, p, 8);
            v = json_float(d);
            break;
        case DEJA_BOOL:
            v = json_boolean(p[0] != 0);
            break;
        case DEJA_I8: case DEJA_I16: case DEJA_I32: case DEJA_I64:
            memcpy(&s, p, es); /* little-endian: the low bytes */
            if (es < 8 && (p[es - 1] & 0x80)) /* sign-extend */
                s |= (int64_t)(~(uint64_t)0 << (8 * es));
            v = json_integer((json_int_t)s);
            break;
        default: /* unsigned */
            memcpy(&u, p, es);
            if (u > (uint64_t)INT64_MAX) {
                char buf[32];
                snprintf(buf, sizeof buf, "%llu", (unsigned long long)u);
                v = cli_json_text(buf);
            } else {
                v = json_integer((json_int_t)u);
            }
            break;
        }
        if (json_array_append_new(arr, v) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    }
    return arr;
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
        bad = bad || jset(obj, "name", cli_json_text(t->name ? t->name : "")) < 0;
        bad = bad || jset(obj, "dtype", cli_json_text(dtype ? dtype : "invalid")) < 0;
        adopt(&bad, obj, "shape", &shape);
        bad = bad || jset(obj, "size", json_integer((json_int_t)t->size)) < 0;
    }
    if (!bad && with_data == CLI_JSON_VALUES && (t->data != NULL || t->size == 0)) {
        json_t *values = tensor_values(t);
        if (values != NULL) {
            bad = jset(obj, "values", values) < 0;
            with_data = 0; /* done */
        }
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
            bad = b64 == NULL || jset(obj, "base64", cli_json_text(b64)) < 0;
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
    cli_format_rfc3339(t->start_ns, when, sizeof when);
    bad = bad || jset(obj, "id", cli_json_text(id)) < 0;
    bad = bad || jset(obj, "start", cli_json_text(when)) < 0;
    bad = bad || jset(obj, "start_ns", json_integer(t->start_ns)) < 0;
    bad = bad || jset(obj, "duration_ns", json_integer(t->duration_ns)) < 0;
    bad = bad || jset(model, "name", cli_json_text(t->model_name ? t->model_name : "")) < 0;
    bad = bad || jset(model, "version", cli_json_text(t->model_version ? t->model_version : "")) < 0;
    bad = bad || jset(model, "digest", cli_json_text(digest)) < 0;
    adopt(&bad, obj, "model", &model);
    bad = bad || jset(obj, "status", cli_json_text(cli_status_name(t->status))) < 0;
    bad = bad || jset(obj, "error", cli_json_text(t->error ? t->error : "")) < 0;
    for (size_t i = 0; i < t->ntags && !bad; i++)
        bad = jset(tags, t->tags[i].key, cli_json_text(t->tags[i].value)) < 0;
    adopt(&bad, obj, "tags", &tags);
    if (t->has_parent) {
        char parent[DEJA_ID_STRLEN + 1];
        deja_id_format(&t->parent, parent);
        bad = bad || jset(obj, "parent", cli_json_text(parent)) < 0;
    } else {
        bad = bad || jset(obj, "parent", json_null()) < 0;
    }
    bad = bad || jset(obj, "inputs", tensors_json(t->inputs, t->ninputs, full)) < 0;
    bad = bad || jset(obj, "outputs", tensors_json(t->outputs, t->noutputs, full)) < 0;
    for (size_t i = 0; i < t->nparams && !bad; i++) {
        const deja_param *p = &t->params[i];
        json_t *v = p->kind == DEJA_PARAM_NUM   ? json_num(p->num)
                    : p->kind == DEJA_PARAM_STR ? cli_json_text(p->str ? p->str : "")
                                                : json_boolean(p->flag);
        if (p->kind == DEJA_PARAM_NUM && isfinite(p->num) && p->num == floor(p->num) &&
            fabs(p->num) < 9e15) {
            json_decref(v);
            v = json_integer((json_int_t)p->num);
        }
        bad = jset(params, p->key, v) < 0;
    }
    adopt(&bad, obj, "params", &params);
    for (size_t i = 0; i < t->nseeds && !bad; i++) {
        json_t *s = json_object();
        bad = s == NULL || jset(s, "name", cli_json_text(t->seeds[i].name)) < 0 ||
              jset(s, "value", json_u64(t->seeds[i].value)) < 0 || json_array_append(seeds, s) != 0;
        json_decref(s);
    }
    adopt(&bad, obj, "seeds", &seeds);
    for (size_t i = 0; i < t->nrng && !bad; i++) {
        const deja_rng_stream *r = &t->rng[i];
        json_t *s = json_object();
        json_t *draws = full ? json_array() : NULL;
        bad = s == NULL || (full && draws == NULL);
        bad = bad || jset(s, "name", cli_json_text(r->name)) < 0;
        bad = bad || jset(s, "seed", json_u64(r->seed)) < 0;
        bad = bad || jset(s, "ndraws", json_integer((json_int_t)r->ndraws)) < 0;
        for (size_t k = 0; full && k < r->ndraws && !bad; k++)
            bad = json_array_append_new(draws, json_u64(r->draws[k])) != 0;
        if (full) {
            adopt(&bad, s, "draws", &draws);
        }
        bad = bad || json_array_append(rng, s) != 0;
        json_decref(draws);
        json_decref(s);
    }
    adopt(&bad, obj, "rng", &rng);
    for (size_t i = 0; i < t->nclock && !bad; i++)
        bad = json_array_append_new(clock, json_integer(t->clock_ns[i])) != 0;
    adopt(&bad, obj, "clock_ns", &clock);
    /* The same clock reads as RFC 3339 times. */
    json_t *clock_rfc = json_array();
    bad = bad || clock_rfc == NULL;
    for (size_t i = 0; i < t->nclock && !bad; i++) {
        char read[64];
        cli_format_rfc3339(t->clock_ns[i], read, sizeof read);
        bad = json_array_append_new(clock_rfc, cli_json_text(read)) != 0;
    }
    if (!bad)
        bad = jset(obj, "clock", clock_rfc) < 0; /* stolen, even on failure */
    else
        json_decref(clock_rfc);
    if (t->has_env) {
        char env[33];
        deja_digest_format(&t->env, env);
        bad = bad || jset(obj, "environment_digest", cli_json_text(env)) < 0;
    } else {
        bad = bad || jset(obj, "environment_digest", json_null()) < 0;
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
    return s != NULL ? cli_json_text(s) : json_null();
}

/* An array of strings, or NULL. */
static json_t *json_strings(const char *const *v, size_t n)
{
    json_t *arr = json_array();

    for (size_t i = 0; i < n && arr != NULL; i++) {
        if (json_array_append_new(arr, cli_json_text(v[i] ? v[i] : "")) != 0) {
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
        if (deja_env_var_is_secret(kv[i].key))
            continue; /* recorded before secrets were kept out */
        if (jset(obj, kv[i].key, cli_json_text(kv[i].value ? kv[i].value : "")) < 0) {
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
/* The largest magnitude a double, and so jq 1.6 or JavaScript, holds
 * exactly: 2^53. */
#define JSON_EXACT_MAX ((json_int_t)1 << 53)

/* Replace, in place and recursively, every integer beyond +-2^53 in `j` by
 * its decimal string. Returns 0, or -1 when out of memory. */
static int strings_for_big_integers(json_t *j)
{
    if (json_is_object(j)) {
        const char *key;
        json_t *v;
        json_object_foreach(j, key, v)
        {
            if (json_is_integer(v) && (json_integer_value(v) > JSON_EXACT_MAX ||
                                       json_integer_value(v) < -JSON_EXACT_MAX)) {
                char buf[32];
                snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
                if (json_object_set_new(j, key, cli_json_text(buf)) != 0)
                    return -1;
            } else if (strings_for_big_integers(v) != 0) {
                return -1;
            }
        }
    } else if (json_is_array(j)) {
        for (size_t i = 0; i < json_array_size(j); i++) {
            json_t *v = json_array_get(j, i);
            if (json_is_integer(v) && (json_integer_value(v) > JSON_EXACT_MAX ||
                                       json_integer_value(v) < -JSON_EXACT_MAX)) {
                char buf[32];
                snprintf(buf, sizeof buf, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
                if (json_array_set_new(j, i, cli_json_text(buf)) != 0)
                    return -1;
            } else if (strings_for_big_integers(v) != 0) {
                return -1;
            }
        }
    }
    return 0;
}

int cli_json_print(json_t *j)
{
    int rc;

    if (j == NULL)
        return -1;
    if (json_is_object(j) && json_object_get(j, "json_version") == NULL &&
        json_object_set_new(j, "json_version", json_integer(CLI_JSON_VERSION)) != 0) {
        json_decref(j);
        return -1;
    }
    if (strings_for_big_integers(j) != 0) {
        json_decref(j);
        return -1;
    }
    rc = json_dumpf(j, stdout, JSON_COMPACT);
    json_decref(j);
    if (rc != 0)
        return -1;
    fputc('\n', stdout);
    return 0;
}
