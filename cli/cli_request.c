/*
 * cli/cli_request.c -- parse and check a request line of `deja run`
 * (see cli_request.h).
 */
#include "cli_request.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

#define MAX_ELEMENTS ((uint64_t)1 << 31)

void cli_request_free(cli_request *r)
{
    for (size_t i = 0; i < r->ninputs; i++) {
        free(r->inputs[i].name);
        free(r->inputs[i].data);
    }
    free(r->inputs);
    json_decref(r->root);
    memset(r, 0, sizeof *r);
}

/* Report a malformed line: "deja: FILE:N: <what>"; returns -1. */
static int line_error(cli_request_parser *s, size_t line, const char *what, const char *detail)
{
    cli_error("%s:%zu: %s%s%s", s->source, line, what, detail ? ": " : "", detail ? detail : "");
    return -1;
}

/* Work out the shape of a nested JSON number array by following first
 * elements; -1 when it nests deeper than DEJA_MAX_DIMS. */
static int array_shape(const json_t *v, size_t *ndim, uint64_t *shape)
{
    *ndim = 0;
    while (json_is_array(v)) {
        if (*ndim == DEJA_MAX_DIMS)
            return -1;
        shape[(*ndim)++] = json_array_size(v);
        if (json_array_size(v) == 0)
            break;
        v = json_array_get(v, 0);
    }
    return 0;
}

/* Fill `out` (advancing *pos) from the nested array `v` at depth `d`,
 * checking that it is rectangular and numeric; -1 if not. */
static int array_fill(const json_t *v, size_t d, size_t ndim, const uint64_t *shape, float *out,
                      size_t *pos)
{
    if (d == ndim) {
        if (!json_is_number(v))
            return -1;
        if (out != NULL)
            out[*pos] = (float)json_number_value(v);
        (*pos)++;
        return 0;
    }
    if (!json_is_array(v) || json_array_size(v) != shape[d])
        return -1;
    for (size_t i = 0; i < shape[d]; i++) {
        if (array_fill(json_array_get(v, i), d + 1, ndim, shape, out, pos) < 0)
            return -1;
    }
    return 0;
}

/* Product of a shape, bounded; -1 beyond MAX_ELEMENTS. */
static int shape_count(size_t ndim, const uint64_t *shape, uint64_t *count)
{
    uint64_t n = 1;

    for (size_t i = 0; i < ndim; i++) {
        if (shape[i] != 0 && n > MAX_ELEMENTS / shape[i])
            return -1;
        n *= shape[i];
    }
    *count = n;
    return 0;
}

/* Parse a number-array input into an f32 tensor. */
static int parse_f32(cli_request_parser *s, size_t line, const char *where, const json_t *v, cli_request_tensor *t)
{
    uint64_t count;
    size_t pos = 0;
    float *data;

    if (array_shape(v, &t->ndim, t->shape) < 0)
        return line_error(s, line, where, "array nests deeper than 8 dimensions");
    if (shape_count(t->ndim, t->shape, &count) < 0)
        return line_error(s, line, where, "array is too large");
    /* The shape came from the first elements only: check that the whole
     * array has it before allocating (each number takes at least one
     * character of the line, so a true count is below its length). */
    if (count > s->line_len || array_fill(v, 0, t->ndim, t->shape, NULL, &pos) < 0)
        return line_error(s, line, where,
                          "expected a rectangular array of numbers (every row the same length)");
    pos = 0;
    data = malloc(count ? (size_t)count * sizeof(float) : 1);
    if (data == NULL)
        return line_error(s, line, where, "out of memory");
    if (array_fill(v, 0, t->ndim, t->shape, data, &pos) < 0) {
        free(data);
        return line_error(s, line, where,
                          "expected a rectangular array of numbers (every row the same length)");
    }
    t->dtype = DEJA_F32;
    t->data = (uint8_t *)data;
    t->size = (size_t)count * sizeof(float);
    return 0;
}

/* Parse an {"dtype","shape","base64"|"text"} input. */
static int parse_raw(cli_request_parser *s, size_t line, const char *where, const json_t *v, cli_request_tensor *t)
{
    const json_t *dtype = json_object_get(v, "dtype");
    const json_t *shape = json_object_get(v, "shape");
    const json_t *b64 = json_object_get(v, "base64");
    const json_t *text = json_object_get(v, "text");
    const char *key;
    const json_t *val;
    char msg[256];
    size_t esize;
    uint64_t count = 0;

    json_object_foreach((json_t *)v, key, val)
    {
        if (strcmp(key, "dtype") != 0 && strcmp(key, "shape") != 0 && strcmp(key, "base64") != 0 &&
            strcmp(key, "text") != 0 && strcmp(key, "name") != 0 && strcmp(key, "size") != 0) {
            snprintf(msg, sizeof msg, "unknown field '%.100s' (expected dtype, shape, base64)",
                     key);
            return line_error(s, line, where, msg);
        }
    }
    if (!json_is_string(dtype))
        return line_error(s, line, where, "expected a \"dtype\" string such as \"i32\"");
    t->dtype = deja_dtype_parse(json_string_value(dtype));
    esize = deja_dtype_size(t->dtype);
    if (t->dtype == DEJA_DTYPE_INVALID || esize == 0) {
        snprintf(msg, sizeof msg, "unknown dtype '%.100s'", json_string_value(dtype));
        return line_error(s, line, where, msg);
    }
    if ((b64 != NULL) == (text != NULL) || (b64 != NULL && !json_is_string(b64)) ||
        (text != NULL && !json_is_string(text)))
        return line_error(s, line, where, "expected the data as a \"base64\" string");
    if (text != NULL) {
        if (t->dtype != DEJA_UTF8 && t->dtype != DEJA_BYTES)
            return line_error(s, line, where, "\"text\" is only for dtype utf8 or bytes");
        t->size = json_string_length(text);
        t->data = malloc(t->size ? t->size : 1);
        if (t->data == NULL)
            return line_error(s, line, where, "out of memory");
        memcpy(t->data, json_string_value(text), t->size);
    } else if (cli_base64_decode(json_string_value(b64), json_string_length(b64), &t->data,
                                 &t->size) < 0) {
        return line_error(s, line, where, "\"base64\" is not valid base64");
    }
    if (shape == NULL) {
        if (t->size % esize != 0)
            return line_error(s, line, where, "data size is not a multiple of the dtype size");
        t->ndim = 1;
        t->shape[0] = t->size / esize;
        return 0;
    }
    if (!json_is_array(shape) || json_array_size(shape) > DEJA_MAX_DIMS)
        return line_error(s, line, where, "\"shape\" must be an array of at most 8 sizes");
    t->ndim = json_array_size(shape);
    for (size_t i = 0; i < t->ndim; i++) {
        const json_t *d = json_array_get(shape, i);
        if (!json_is_integer(d) || json_integer_value(d) < 0)
            return line_error(s, line, where, "\"shape\" must hold non-negative integers");
        t->shape[i] = (uint64_t)json_integer_value(d);
    }
    if (shape_count(t->ndim, t->shape, &count) < 0 || count > SIZE_MAX / esize) {
        snprintf(msg, sizeof msg, "\"shape\" holds more than %llu elements",
                 (unsigned long long)MAX_ELEMENTS);
        return line_error(s, line, where, msg);
    }
    if (count * esize != t->size) {
        snprintf(msg, sizeof msg, "data is %zu bytes, but %s of that shape needs %llu", t->size,
                 deja_dtype_name(t->dtype), (unsigned long long)(count * esize));
        return line_error(s, line, where, msg);
    }
    return 0;
}

/* Parse one input value into `t`. */
static int parse_input(cli_request_parser *s, size_t line, const char *name, const json_t *v, cli_request_tensor *t)
{
    char where[300];

    snprintf(where, sizeof where, "inputs.%.200s", name);
    t->name = strdup(name);
    if (t->name == NULL)
        return line_error(s, line, where, "out of memory");
    if (json_is_string(v)) {
        t->dtype = DEJA_UTF8;
        t->size = json_string_length(v);
        t->ndim = 1;
        t->shape[0] = t->size;
        t->data = malloc(t->size ? t->size : 1);
        if (t->data == NULL)
            return line_error(s, line, where, "out of memory");
        memcpy(t->data, json_string_value(v), t->size);
        return 0;
    }
    if (json_is_array(v))
        return parse_f32(s, line, where, v, t);
    if (json_is_object(v))
        return parse_raw(s, line, where, v, t);
    return line_error(s, line, where,
                      "expected a string, number array or {dtype,shape,base64} object");
}

/* Parse and check a whole request line; -1 after reporting a problem. */
int cli_request_parse(cli_request_parser *s, size_t line, const char *text, size_t len, cli_request *r)
{
    json_error_t err;
    const char *key;
    json_t *v;
    json_t *inputs;
    char msg[300];

    memset(r, 0, sizeof *r);
    s->line_len = len;
    {
        const char *nul = memchr(text, '\0', len);
        if (nul != NULL) {
            snprintf(msg, sizeof msg, "a NUL byte at column %zu (JSON text holds none)",
                     (size_t)(nul - text) + 1);
            return line_error(s, line, "bad JSON", msg);
        }
    }
    r->root = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &err);
    if (r->root == NULL) {
        snprintf(msg, sizeof msg, "%s (column %d)", err.text, err.column);
        return line_error(s, line, "bad JSON", msg);
    }
    if (!json_is_object(r->root))
        return line_error(s, line, "expected a JSON object {\"inputs\": {...}, ...}", NULL);
    json_object_foreach(r->root, key, v)
    {
        if (strcmp(key, "inputs") != 0 && strcmp(key, "params") != 0 && strcmp(key, "tags") != 0 &&
            strcmp(key, "seed") != 0) {
            snprintf(msg, sizeof msg,
                     "unknown field '%.200s' (expected inputs, params, tags, seed)", key);
            return line_error(s, line, msg, NULL);
        }
    }
    inputs = json_object_get(r->root, "inputs");
    if (!json_is_object(inputs))
        return line_error(s, line, "inputs", "expected an object of named inputs");
    r->inputs = calloc(json_object_size(inputs) ? json_object_size(inputs) : 1, sizeof *r->inputs);
    if (r->inputs == NULL)
        return line_error(s, line, "inputs", "out of memory");
    json_object_foreach(inputs, key, v)
    {
        if (parse_input(s, line, key, v, &r->inputs[r->ninputs++]) < 0)
            return -1;
    }
    r->params = json_object_get(r->root, "params");
    if (r->params != NULL && !json_is_object(r->params))
        return line_error(s, line, "params", "expected an object");
    if (r->params != NULL) {
        json_object_foreach(r->params, key, v)
        {
            if (!json_is_number(v) && !json_is_string(v) && !json_is_boolean(v)) {
                snprintf(msg, sizeof msg, "params.%.200s", key);
                return line_error(s, line, msg, "expected a number, string or boolean");
            }
        }
    }
    r->tags = json_object_get(r->root, "tags");
    if (r->tags != NULL && !json_is_object(r->tags))
        return line_error(s, line, "tags", "expected an object of strings");
    if (r->tags != NULL) {
        json_object_foreach(r->tags, key, v)
        {
            if (!json_is_string(v) || key[0] == '\0') {
                snprintf(msg, sizeof msg, "tags.%.200s", key);
                return line_error(s, line, msg, "expected a string");
            }
        }
    }
    v = json_object_get(r->root, "seed");
    if (v != NULL) {
        if (json_is_integer(v) && json_integer_value(v) >= 0) {
            r->seed = (uint64_t)json_integer_value(v);
        } else if (!json_is_string(v) ||
                   cli_parse_u64(json_string_value(v), UINT64_MAX, &r->seed) < 0) {
            return line_error(s, line, "seed", "expected a non-negative integer");
        }
        r->has_seed = 1;
    }
    return 0;
}