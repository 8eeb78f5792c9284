/*
 * bench/serialize.c -- the baselines' forms of a record: one JSON object per
 * trace (hand-written encoder, as fast as a careful user would write it;
 * jansson for decoding, as a replayer would), and the raw limit's
 * already-serialized value. Ids are bench-local ULIDs.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

/* Make room for `extra` more bytes. Returns 0 or -1. */
int bench_buf_reserve(bench_buf *b, size_t extra)
{
    size_t cap;
    char *p;
    if (b->size + extra <= b->cap) {
        return 0;
    }
    cap = b->cap ? b->cap : 4096;
    while (cap < b->size + extra) {
        cap *= 2;
    }
    p = realloc(b->data, cap);
    if (p == NULL) {
        return -1;
    }
    b->data = p;
    b->cap = cap;
    return 0;
}

/* Free a buffer and zero it. */
void bench_buf_free(bench_buf *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

/* A new id: milliseconds now, then the thread's salt and a counter. */
void bench_id_new(uint8_t id[16], uint64_t thread_salt, uint64_t *counter)
{
    struct timespec ts;
    uint64_t ms, low;
    int i;
    clock_gettime(CLOCK_REALTIME, &ts);
    ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    low = (thread_salt << 40) ^ ++*counter;
    for (i = 0; i < 6; i++) {
        id[i] = (uint8_t)(ms >> (40 - 8 * i));
    }
    id[6] = (uint8_t)(thread_salt >> 8);
    id[7] = (uint8_t)thread_salt;
    for (i = 0; i < 8; i++) {
        id[8 + i] = (uint8_t)(low >> (56 - 8 * i));
    }
}

/* 26 Crockford base32 characters of the 128 bits, most significant first. */
void bench_id_format(const uint8_t id[16], char out[27])
{
    static const char alphabet[] = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
    int i;
    for (i = 0; i < 26; i++) {
        /* Character i holds bits [128 - 5*(26-i), ...): 130 bits padded. */
        const int bit = i * 5 - 2; /* first bit index of this character */
        unsigned v = 0;
        int k;
        for (k = 0; k < 5; k++) {
            const int b = bit + k;
            v <<= 1;
            if (b >= 0) {
                v |= (unsigned)(id[b / 8] >> (7 - b % 8)) & 1u;
            }
        }
        out[i] = alphabet[v];
    }
    out[26] = '\0';
}

/* Append `n` bytes; the caller reserved room (see json_bound). */
static void put(bench_buf *b, const void *s, size_t n)
{
    memcpy(b->data + b->size, s, n);
    b->size += n;
}

/* Append a NUL-terminated string. */
static void puts_lit(bench_buf *b, const char *s)
{
    put(b, s, strlen(s));
}

/* Append `v` in decimal. */
static void put_u64(bench_buf *b, uint64_t v)
{
    char tmp[24];
    int n = 0;
    do {
        tmp[23 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    put(b, tmp + 24 - n, (size_t)n);
}

/* Append `v` in decimal, with its sign. */
static void put_i64(bench_buf *b, int64_t v)
{
    if (v < 0) {
        puts_lit(b, "-");
        put_u64(b, (uint64_t)0 - (uint64_t)v);
    } else {
        put_u64(b, (uint64_t)v);
    }
}

/* Append a double with enough digits to read it back exactly. */
static void put_num(bench_buf *b, double v)
{
    char tmp[32];
    const int n = snprintf(tmp, sizeof(tmp), "%.17g", v);
    put(b, tmp, (size_t)n);
}

/* Append `n` bytes as lowercase hex. */
static void put_hex(bench_buf *b, const uint8_t *d, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t i;
    for (i = 0; i < n; i++) {
        b->data[b->size++] = hex[d[i] >> 4];
        b->data[b->size++] = hex[d[i] & 15];
    }
}

/* A JSON string; the caller reserved 6 bytes per input byte plus 2. */
static void put_str(bench_buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t i, run = 0;
    b->data[b->size++] = '"';
    for (i = 0; i < n; i++) {
        const unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            continue;
        }
        put(b, s + run, i - run);
        run = i + 1;
        b->data[b->size++] = '\\';
        switch (c) {
        case '"': b->data[b->size++] = '"'; break;
        case '\\': b->data[b->size++] = '\\'; break;
        case '\n': b->data[b->size++] = 'n'; break;
        case '\t': b->data[b->size++] = 't'; break;
        case '\r': b->data[b->size++] = 'r'; break;
        default:
            put(b, "u00", 3);
            b->data[b->size++] = hex[c >> 4];
            b->data[b->size++] = hex[c & 15];
        }
    }
    put(b, s + run, n - run);
    b->data[b->size++] = '"';
}

/* Append `n` bytes as a quoted base64 string. */
static void put_b64(bench_buf *b, const uint8_t *d, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t i;
    char *o = b->data + b->size;
    *o++ = '"';
    for (i = 0; i + 3 <= n; i += 3) {
        const uint32_t v = (uint32_t)d[i] << 16 | (uint32_t)d[i + 1] << 8 | d[i + 2];
        *o++ = tab[v >> 18];
        *o++ = tab[(v >> 12) & 63];
        *o++ = tab[(v >> 6) & 63];
        *o++ = tab[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)d[i] << 16;
        if (i + 1 < n) {
            v |= (uint32_t)d[i + 1] << 8;
        }
        *o++ = tab[v >> 18];
        *o++ = tab[(v >> 12) & 63];
        *o++ = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        *o++ = '=';
    }
    *o++ = '"';
    b->size = (size_t)(o - b->data);
}

/* Upper bound of the JSON size of `r`. */
static size_t json_bound(const bench_record *r)
{
    size_t n = 1024, i;
    for (i = 0; i < r->nin; i++) {
        n += 6 * r->in[i].size + 160;
    }
    for (i = 0; i < r->nout; i++) {
        n += 6 * r->out[i].size + 160;
    }
    for (i = 0; i < r->nparams; i++) {
        n += 64 + (r->params[i].str ? 6 * strlen(r->params[i].str) : 0);
    }
    for (i = 0; i < r->ntags; i++) {
        n += 16 + 6 * (strlen(r->tags[i].key) + strlen(r->tags[i].value));
    }
    return n;
}

/* Append a JSON array of tensors, with their payloads or only their sizes. */
static void put_tensors(bench_buf *b, const bench_tensor *t, size_t n, int payloads)
{
    size_t i;
    b->data[b->size++] = '[';
    for (i = 0; i < n; i++) {
        if (i > 0) {
            b->data[b->size++] = ',';
        }
        puts_lit(b, "{\"name\":");
        put_str(b, t[i].name, strlen(t[i].name));
        puts_lit(b, ",\"dtype\":\"");
        puts_lit(b, deja_dtype_name(t[i].dtype));
        puts_lit(b, "\",\"shape\":[");
        put_u64(b, t[i].shape[0]);
        b->data[b->size++] = ']';
        if (!payloads) {
            puts_lit(b, ",\"size\":");
            put_u64(b, t[i].size);
        } else if (t[i].dtype == DEJA_UTF8) {
            puts_lit(b, ",\"text\":");
            put_str(b, t[i].data, t[i].size);
        } else {
            puts_lit(b, ",\"b64\":");
            put_b64(b, t[i].data, t[i].size);
        }
        b->data[b->size++] = '}';
    }
    b->data[b->size++] = ']';
}

/* The JSON object of `r` with payloads inline or (raw form) left out. */
static int trace_object(bench_buf *b, const bench_record *r, const char *id, int64_t start_ns,
                       int64_t duration_ns, int payloads)
{
    static const uint8_t env[16] = {0x5e, 0x11, 0x0c, 0x4a, 0x27, 0x9b, 0xd3, 0x01,
                                    0x77, 0x42, 0xee, 0x90, 0x13, 0xab, 0x6c, 0x28};
    size_t i;
    b->size = 0;
    if (bench_buf_reserve(b, json_bound(r)) != 0) {
        return -1;
    }
    puts_lit(b, "{\"id\":\"");
    puts_lit(b, id);
    puts_lit(b, "\",\"start_ns\":");
    put_i64(b, start_ns);
    puts_lit(b, ",\"duration_ns\":");
    put_i64(b, duration_ns);
    puts_lit(b, ",\"model\":{\"name\":");
    put_str(b, r->model, strlen(r->model));
    puts_lit(b, ",\"version\":");
    put_str(b, r->version, strlen(r->version));
    puts_lit(b, ",\"digest\":\"");
    put_hex(b, r->digest, 16);
    puts_lit(b, "\"},\"env\":\"");
    put_hex(b, env, 16);
    puts_lit(b, "\",\"inputs\":");
    put_tensors(b, r->in, r->nin, payloads);
    puts_lit(b, ",\"outputs\":");
    put_tensors(b, r->out, r->nout, payloads);
    puts_lit(b, ",\"params\":{");
    for (i = 0; i < r->nparams; i++) {
        const bench_param *p = &r->params[i];
        if (i > 0) {
            b->data[b->size++] = ',';
        }
        put_str(b, p->key, strlen(p->key));
        b->data[b->size++] = ':';
        if (p->kind == DEJA_PARAM_STR) {
            put_str(b, p->str, strlen(p->str));
        } else if (p->kind == DEJA_PARAM_BOOL) {
            puts_lit(b, p->num != 0 ? "true" : "false");
        } else {
            put_num(b, p->num);
        }
    }
    puts_lit(b, "},\"seeds\":{\"seed\":");
    put_u64(b, r->seed);
    puts_lit(b, "},\"status\":\"ok\",\"tags\":{");
    for (i = 0; i < r->ntags; i++) {
        if (i > 0) {
            b->data[b->size++] = ',';
        }
        put_str(b, r->tags[i].key, strlen(r->tags[i].key));
        b->data[b->size++] = ':';
        put_str(b, r->tags[i].value, strlen(r->tags[i].value));
    }
    puts_lit(b, "}}");
    return 0;
}

/* See bench.h. */
int bench_json_record(bench_buf *b, const bench_record *r, const char *id, int64_t start_ns,
                      int64_t duration_ns)
{
    return trace_object(b, r, id, start_ns, duration_ns, 1);
}

/* See bench.h. */
int bench_raw_record(bench_buf *b, const bench_record *r, const char *id)
{
    size_t i, total = 0;
    if (trace_object(b, r, id, 0, 0, 0) != 0) {
        return -1;
    }
    for (i = 0; i < r->nin; i++) {
        total += r->in[i].size;
    }
    for (i = 0; i < r->nout; i++) {
        total += r->out[i].size;
    }
    if (bench_buf_reserve(b, total) != 0) {
        return -1;
    }
    for (i = 0; i < r->nin; i++) {
        put(b, r->in[i].data, r->in[i].size);
    }
    for (i = 0; i < r->nout; i++) {
        put(b, r->out[i].data, r->out[i].size);
    }
    return 0;
}

/* The value of one base64 character, or -1. */
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
    return c == '+' ? 62 : c == '/' ? 63 : -1;
}

/* Decode base64 `s` (length `n`) into `out`. Returns 0 or -1. */
static int b64_decode(bench_buf *out, const char *s, size_t n)
{
    size_t i;
    uint32_t acc = 0;
    int bits = 0;
    out->size = 0;
    if (bench_buf_reserve(out, n / 4 * 3 + 3) != 0) {
        return -1;
    }
    for (i = 0; i < n && s[i] != '='; i++) {
        const int v = b64_value((unsigned char)s[i]);
        if (v < 0) {
            return -1;
        }
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out->data[out->size++] = (char)(acc >> bits);
        }
    }
    return 0;
}

/* Check every tensor of a JSON array and decode its payload into
 * `scratch`, as a replayer would. Returns 0 or -1. */
static int decode_tensors(json_t *arr, bench_buf *scratch)
{
    size_t i;
    json_t *t;
    if (!json_is_array(arr)) {
        return -1;
    }
    json_array_foreach(arr, i, t) {
        json_t *text = json_object_get(t, "text");
        json_t *b64 = json_object_get(t, "b64");
        if (json_string_value(json_object_get(t, "name")) == NULL ||
            deja_dtype_parse(json_string_value(json_object_get(t, "dtype"))) ==
                DEJA_DTYPE_INVALID ||
            !json_is_array(json_object_get(t, "shape"))) {
            return -1;
        }
        if (text != NULL) {
            if (json_string_value(text) == NULL) {
                return -1;
            }
        } else if (b64 == NULL ||
                   b64_decode(scratch, json_string_value(b64), json_string_length(b64)) != 0) {
            return -1;
        }
    }
    return 0;
}

/* See bench.h. */
int bench_json_decode(const char *text, size_t len, bench_buf *scratch)
{
    json_error_t err;
    json_t *o = json_loadb(text, len, 0, &err);
    json_t *model;
    int rc = -1;
    if (o == NULL) {
        return -1;
    }
    model = json_object_get(o, "model");
    if (json_string_value(json_object_get(o, "id")) == NULL ||
        !json_is_integer(json_object_get(o, "start_ns")) ||
        json_string_value(json_object_get(model, "name")) == NULL ||
        json_string_value(json_object_get(model, "version")) == NULL ||
        !json_is_object(json_object_get(o, "params")) ||
        !json_is_object(json_object_get(o, "seeds")) ||
        !json_is_object(json_object_get(o, "tags"))) {
        goto cleanup;
    }
    if (decode_tensors(json_object_get(o, "inputs"), scratch) != 0 ||
        decode_tensors(json_object_get(o, "outputs"), scratch) != 0) {
        goto cleanup;
    }
    rc = 0;
cleanup:
    json_decref(o);
    return rc;
}
