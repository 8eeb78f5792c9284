/*
 * cli/cli_encode.c -- text encodings: base64, UTF-8 validation, hex.
 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>


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
size_t cli_utf8_seq(const uint8_t *s, size_t n)
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
        size_t len = cli_utf8_seq(s + i, size - i);
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
