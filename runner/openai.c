/*
 * runner/openai.c -- the client side of the OpenAI-compatible protocol:
 * which operation a path or an OpenTelemetry name means, and answers (a
 * JSON body or a server-sent event stream) read into the completion text,
 * finish reasons, usage and embeddings, handed out as output tensors.
 *
 * The endpoint model (endpoint.c) reads its server's answers with it, and
 * so does http/'s recording proxy with its upstream's. Everything here
 * parses network input: sizes are bounded by the callers (the body
 * limits), jansson validates UTF-8, and a part that does not parse is
 * skipped and flagged rather than trusted.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/core.h"
#include "runner/openai.h"

/* Non-zero when `s` ends with `suffix`. */
static int ends_with(const char *s, const char *suffix)
{
    size_t ls = strlen(s), lx = strlen(suffix);
    return ls >= lx && strcmp(s + ls - lx, suffix) == 0;
}

deja__op deja__op_of_path(const char *path)
{
    if (ends_with(path, "/chat/completions")) {
        return DEJA__OP_CHAT;
    }
    if (ends_with(path, "/completions")) {
        return DEJA__OP_COMPLETION;
    }
    if (ends_with(path, "/embeddings")) {
        return DEJA__OP_EMBEDDINGS;
    }
    return DEJA__OP_NONE;
}

const char *deja__op_name(deja__op op)
{
    switch (op) {
    case DEJA__OP_CHAT:
        return "chat";
    case DEJA__OP_COMPLETION:
        return "text_completion";
    case DEJA__OP_EMBEDDINGS:
        return "embeddings";
    default:
        return NULL;
    }
}

deja__op deja__op_of_name(const char *name)
{
    if (!name) {
        return DEJA__OP_NONE;
    }
    if (strcmp(name, "chat") == 0) {
        return DEJA__OP_CHAT;
    }
    if (strcmp(name, "text_completion") == 0) {
        return DEJA__OP_COMPLETION;
    }
    if (strcmp(name, "embeddings") == 0) {
        return DEJA__OP_EMBEDDINGS;
    }
    return DEJA__OP_NONE;
}

const char *deja__op_path(deja__op op)
{
    switch (op) {
    case DEJA__OP_CHAT:
        return "/chat/completions";
    case DEJA__OP_COMPLETION:
        return "/completions";
    case DEJA__OP_EMBEDDINGS:
        return "/embeddings";
    default:
        return "";
    }
}
/* ------------------------------------------------------------------------
 * Answers
 * ---------------------------------------------------------------------- */

void deja__answer_init(deja__answer *a)
{
    memset(a, 0, sizeof *a);
    a->input_tokens = -1;
    a->output_tokens = -1;
}

void deja__answer_free(deja__answer *a)
{
    size_t i;
    for (i = 0; i < DEJA__HTTP_MAX_CHOICES; i++) {
        deja__buf_free(&a->text[i]);
        free(a->finish[i]);
    }
    free(a->tool_calls);
    json_decref(a->tool_acc);
    free(a->id);
    free(a->model);
    free(a->fingerprint);
    free(a->embedding);
    free(a->error);
    deja__answer_init(a);
}

/* Keep a copy of the string `v` in `*slot` unless one is there already. */
static int keep_first(char **slot, json_t *v)
{
    if (*slot || !json_is_string(v) || json_string_length(v) == 0) {
        return 0;
    }
    *slot = strdup(json_string_value(v));
    return *slot ? 0 : deja__error_set(DEJA_ENOMEM, "http: out of memory");
}

/* Replace `*slot` by a copy of the string `v` (when it is one). */
static int keep_last(char **slot, json_t *v)
{
    if (!json_is_string(v)) {
        return 0;
    }
    char *copy = strdup(json_string_value(v));
    if (!copy) {
        return deja__error_set(DEJA_ENOMEM, "http: out of memory");
    }
    free(*slot);
    *slot = copy;
    return 0;
}

/* The fields every answer (or chunk) may carry: id, model, fingerprint,
 * usage, error. */
static int common_fields(deja__answer *a, json_t *o)
{
    int rc = keep_first(&a->id, json_object_get(o, "id"));
    if (rc == 0) {
        rc = keep_first(&a->model, json_object_get(o, "model"));
    }
    if (rc == 0) {
        rc = keep_first(&a->fingerprint, json_object_get(o, "system_fingerprint"));
    }
    json_t *usage = json_object_get(o, "usage");
    if (json_is_object(usage)) {
        json_t *in = json_object_get(usage, "prompt_tokens");
        json_t *out = json_object_get(usage, "completion_tokens");
        if (json_is_integer(in)) {
            a->input_tokens = json_integer_value(in);
        }
        if (json_is_integer(out)) {
            a->output_tokens = json_integer_value(out);
        }
    }
    json_t *err = json_object_get(o, "error");
    if (rc == 0 && json_is_object(err)) {
        rc = keep_last(&a->error, json_object_get(err, "message"));
        if (rc == 0 && !a->error) {
            a->error = strdup("(an error without a message)");
            rc = a->error ? 0 : DEJA_ENOMEM;
        }
    } else if (rc == 0 && json_is_string(err)) {
        rc = keep_last(&a->error, err);
    }
    return rc;
}

/* Set obj[key] to its string followed by the string `piece` (when it is
 * one). Returns 0 or DEJA_ENOMEM. */
static int append_string(json_t *obj, const char *key, json_t *piece)
{
    json_t *old = json_object_get(obj, key);
    size_t ol = json_string_length(old), pl = json_string_length(piece);
    if (!json_is_string(piece) || pl == 0) {
        return 0;
    }
    char *both = malloc(ol + pl + 1);
    if (!both) {
        return deja__error_set(DEJA_ENOMEM, "http: out of memory");
    }
    memcpy(both, json_string_value(old) ? json_string_value(old) : "", ol);
    memcpy(both + ol, json_string_value(piece), pl);
    int rc = json_object_set_new(obj, key, json_stringn(both, ol + pl)) == 0
                 ? 0
                 : deja__error_set(DEJA_ENOMEM, "http: out of memory");
    free(both);
    return rc;
}

/* Add the tool calls of choice 0 (a whole message's, or a stream chunk's
 * pieces, merged by their index) to a->tool_acc, keeping what the model
 * decided: each call's type, function name and arguments. The server's
 * call ids are left out: they are random, and would make every replay
 * differ. */
static int add_tool_calls(deja__answer *a, json_t *calls)
{
    size_t k;
    json_t *d;
    if (!a->tool_acc && !(a->tool_acc = json_array())) {
        return deja__error_set(DEJA_ENOMEM, "http: out of memory");
    }
    json_t *acc = a->tool_acc;
    json_array_foreach(calls, k, d)
    {
        json_t *ix = json_object_get(d, "index");
        json_int_t idx = json_is_integer(ix) ? json_integer_value(ix) : (json_int_t)k;
        if (idx < 0 || idx >= 256) {
            a->malformed = 1;
            continue;
        }
        while (json_array_size(acc) <= (size_t)idx) {
            json_t *call = json_pack("{s:s, s:{s:s, s:s}}", "type", "function", "function", "name",
                                     "", "arguments", "");
            if (!call || json_array_append_new(acc, call) != 0) {
                return deja__error_set(DEJA_ENOMEM, "http: out of memory");
            }
        }
        json_t *call = json_array_get(acc, (size_t)idx);
        json_t *type = json_object_get(d, "type");
        if (json_is_string(type) && json_string_length(type) > 0) {
            json_object_set(call, "type", type);
        }
        json_t *fn = json_object_get(d, "function");
        int rc =
            append_string(json_object_get(call, "function"), "name", json_object_get(fn, "name"));
        if (rc == 0) {
            rc = append_string(json_object_get(call, "function"), "arguments",
                               json_object_get(fn, "arguments"));
        }
        if (rc != 0) {
            return rc;
        }
    }
    return 0;
}

/* The choice at `index` of a choices array element, or -1 when out of
 * range. */
static long choice_index(json_t *choice, size_t position)
{
    json_t *ix = json_object_get(choice, "index");
    long i = json_is_integer(ix) ? (long)json_integer_value(ix) : (long)position;
    return i >= 0 && i < DEJA__HTTP_MAX_CHOICES ? i : -1;
}

/* Read the choices of an answer or a stream chunk: `delta` selects the
 * streaming form (choices[].delta.content). Sets *text_seen when a
 * non-empty piece of text was found. */
static int read_choices(deja__answer *a, deja__op op, json_t *o, int delta, int *text_seen)
{
    size_t pos;
    json_t *c;
    json_t *choices = json_object_get(o, "choices");
    if (!json_is_array(choices)) {
        return 0;
    }
    json_array_foreach(choices, pos, c)
    {
        long i = choice_index(c, pos);
        json_t *text = NULL;
        int rc;
        if (i < 0) {
            continue;
        }
        if ((size_t)i + 1 > a->nchoices) {
            a->nchoices = (size_t)i + 1;
        }
        if (op == DEJA__OP_CHAT) {
            json_t *msg = json_object_get(c, delta ? "delta" : "message");
            text = json_object_get(msg, "content");
            json_t *calls = json_object_get(msg, "tool_calls");
            if (i == 0 && json_is_array(calls) && (rc = add_tool_calls(a, calls)) != 0) {
                return rc;
            }
        } else {
            text = json_object_get(c, "text");
        }
        if (json_is_string(text)) {
            rc = deja__buf_append(&a->text[i], json_string_value(text), json_string_length(text));
            if (rc != 0) {
                return rc;
            }
            if (json_string_length(text) > 0) {
                *text_seen = 1;
            }
        } else if (!a->text[i].data && (rc = deja__buf_append(&a->text[i], "", 0)) != 0) {
            return rc;
        }
        json_t *fr = json_object_get(c, "finish_reason");
        if (json_is_string(fr) && (rc = keep_last(&a->finish[i], fr)) != 0) {
            return rc;
        }
    }
    return 0;
}

/* Read the embeddings of an answer: data[].embedding as numbers or as
 * base64 of little-endian f32. Every vector must have the first one's
 * length. */
static int read_embeddings(deja__answer *a, json_t *o)
{
    size_t i;
    json_t *d;
    json_t *data = json_object_get(o, "data");
    if (!json_is_array(data) || json_array_size(data) == 0) {
        return 0;
    }
    size_t n = json_array_size(data);
    json_array_foreach(data, i, d)
    {
        json_t *e = json_object_get(d, "embedding");
        uint8_t *raw = NULL;
        size_t dim = 0, rawsize = 0;
        if (json_is_array(e)) {
            dim = json_array_size(e);
        } else if (json_is_string(e)) {
            int rc =
                deja__base64_decode(json_string_value(e), json_string_length(e), &raw, &rawsize);
            if (rc == DEJA_ENOMEM) {
                return rc;
            }
            if (rc != 0 || rawsize % sizeof(float) != 0) {
                free(raw);
                a->malformed = 1;
                return 0;
            }
            dim = rawsize / sizeof(float);
        } else {
            a->malformed = 1;
            return 0;
        }
        if (i == 0) {
            if (dim == 0 || n > ((size_t)1 << 40) / dim / sizeof(float)) {
                free(raw);
                a->malformed = 1;
                return 0;
            }
            a->dim = dim;
            a->embedding = malloc(n * dim * sizeof(float));
            if (!a->embedding) {
                free(raw);
                return deja__error_set(DEJA_ENOMEM, "http: out of memory for embeddings");
            }
        } else if (dim != a->dim) {
            free(raw);
            a->malformed = 1;
            return 0;
        }
        float *row = a->embedding + i * a->dim;
        if (raw) {
            memcpy(row, raw, dim * sizeof(float)); /* little-endian, as the host */
        } else {
            for (size_t k = 0; k < dim; k++) {
                row[k] = (float)json_number_value(json_array_get(e, k));
            }
        }
        free(raw);
        a->nvec = i + 1;
    }
    return 0;
}

/* Parse one JSON answer or stream chunk `o`. */
static int read_object(deja__answer *a, deja__op op, json_t *o, int delta, int *text_seen)
{
    int rc = common_fields(a, o);
    if (rc == 0 && op == DEJA__OP_EMBEDDINGS && !delta) {
        rc = read_embeddings(a, o);
    } else if (rc == 0) {
        rc = read_choices(a, op, o, delta, text_seen);
    }
    return rc;
}

/* Parse one server-sent event whose data lines, joined, are `data`. */
static int read_event(deja__answer *a, deja__op op, const char *data, size_t len, size_t end)
{
    json_error_t jerr;
    int text_seen = 0, rc = 0;
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
        a->done = 1;
        return 0;
    }
    json_t *o = json_loadb(data, len, 0, &jerr);
    if (!json_is_object(o)) {
        a->malformed = 1;
        json_decref(o);
        return 0;
    }
    rc = read_object(a, op, o, 1, &text_seen);
    if (rc == 0 && text_seen && a->first_token_end == 0) {
        a->first_token_end = end;
    }
    json_decref(o);
    return rc;
}

/* Parse an SSE stream: events separated by blank lines, "data:" lines
 * joined with "\n"; other fields and comments ignored. An event cut off
 * at the end of the stream is parsed as it is. */
static int parse_sse(deja__answer *a, deja__op op, const char *body, size_t len)
{
    deja__buf data = {0};
    size_t p = 0;
    int rc = 0, have = 0;
    while (p < len && rc == 0) {
        const char *nl = memchr(body + p, '\n', len - p);
        size_t end = nl ? (size_t)(nl - body) : len;
        size_t next = nl ? end + 1 : len;
        size_t l = end - p;
        const char *line = body + p;
        if (l > 0 && line[l - 1] == '\r') {
            l--;
        }
        if (l == 0) {
            if (have) {
                rc = read_event(a, op, deja__buf_chars(&data), data.size, next);
            }
            data.size = 0;
            have = 0;
        } else if (l >= 5 && memcmp(line, "data:", 5) == 0) {
            size_t skip = (l > 5 && line[5] == ' ') ? 6 : 5;
            if (have) {
                rc = deja__buf_append(&data, "\n", 1);
            }
            if (rc == 0) {
                rc = deja__buf_append(&data, line + skip, l - skip);
            }
            have = 1;
        }
        p = next;
    }
    if (rc == 0 && have) {
        rc = read_event(a, op, deja__buf_chars(&data), data.size, len);
    }
    deja__buf_free(&data);
    return rc;
}

int deja__answer_parse(deja__answer *a, deja__op op, const char *body, size_t len, int sse)
{
    json_error_t jerr;
    int text_seen = 0, rc = 0;
    if (sse) {
        rc = parse_sse(a, op, body, len);
    } else {
        json_t *o = json_loadb(body, len, 0, &jerr);
        if (json_is_object(o)) {
            rc = read_object(a, op, o, 0, &text_seen);
        } else {
            a->malformed = 1;
        }
        json_decref(o);
    }
    if (rc == 0 && a->tool_acc && json_array_size(a->tool_acc) > 0 && !a->tool_calls) {
        a->tool_calls = json_dumps(a->tool_acc, JSON_COMPACT | JSON_ENSURE_ASCII);
        if (!a->tool_calls) {
            rc = deja__error_set(DEJA_ENOMEM, "http: out of memory");
        }
    }
    return rc;
}

/* Hand one text tensor `name` (with suffix ".N" for N > 0) to fn. */
static int text_out(deja__tensor_fn fn, void *payload, const char *name, size_t n, const char *text,
                    size_t len)
{
    char nm[64];
    uint64_t shape[1] = {len};
    if (n == 0) {
        snprintf(nm, sizeof nm, "%s", name);
    } else {
        snprintf(nm, sizeof nm, "%s.%zu", name, n);
    }
    deja_tensor t = {nm, DEJA_UTF8, 1, shape, text ? text : "", len};
    return fn(&t, payload);
}

int deja__answer_outputs(const deja__answer *a, deja__tensor_fn fn, void *payload)
{
    int rc = 0;
    size_t i;
    if (a->nvec > 0) {
        uint64_t shape[2] = {a->nvec, a->dim};
        deja_tensor t = {"embedding", DEJA_F32,     2,
                         shape,       a->embedding, a->nvec * a->dim * sizeof(float)};
        return fn(&t, payload);
    }
    for (i = 0; i < a->nchoices && rc == 0; i++) {
        rc = text_out(fn, payload, "completion", i, deja__buf_chars(&a->text[i]), a->text[i].size);
        if (rc == 0) {
            const char *fr = a->finish[i] ? a->finish[i] : "";
            rc = text_out(fn, payload, "finish_reason", i, fr, strlen(fr));
        }
    }
    if (rc == 0 && a->tool_calls) {
        rc = text_out(fn, payload, "tool_calls", 0, a->tool_calls, strlen(a->tool_calls));
    }
    return rc;
}

void deja__http_error_text(char *out, size_t cap, long status, const deja__answer *a)
{
    snprintf(out, cap, "HTTP %ld: %.900s", status,
             a && a->error ? a->error : "(no error message in the body)");
}

/* ------------------------------------------------------------------------
 * Base64
 * ---------------------------------------------------------------------- */

/* The value of base64 character `c`, or -1. */
static int b64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '+' || c == '-') {
        return 62;
    }
    if (c == '/' || c == '_') {
        return 63;
    }
    return -1;
}

int deja__base64_decode(const char *text, size_t len, uint8_t **out, size_t *size)
{
    uint8_t *buf;
    uint32_t acc = 0;
    size_t n = 0, bits = 0, i;
    *out = NULL;
    *size = 0;
    while (len > 0 && text[len - 1] == '=') {
        len--;
    }
    buf = malloc(len / 4 * 3 + 3);
    if (!buf) {
        return deja__error_set(DEJA_ENOMEM, "base64: out of memory");
    }
    for (i = 0; i < len; i++) {
        int v = b64_value((unsigned char)text[i]);
        if (v < 0) {
            free(buf);
            return deja__error_set(DEJA_EINVAL, "base64: bad character at %zu", i);
        }
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            buf[n++] = (uint8_t)(acc >> bits);
        }
    }
    *out = buf;
    *size = n;
    return 0;
}
