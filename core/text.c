/*
 * core/text.c -- the rule for names (see text.h).
 */
#include "core/text.h"

#include <stddef.h>

#include "core/limits.h"

const char *deja__text_problem(const char *s)
{
    const unsigned char *p = (const unsigned char *)(s != NULL ? s : "");
    size_t len = 0;

    /* Printable ASCII first: the names of a hot path are made of it. */
    while (*p >= 0x20 && *p < 0x7f && len < DEJA__MAX_NAME) {
        p++;
        len++;
    }
    while (*p != '\0') {
        unsigned c = *p, n, v, min;
        if (++len > DEJA__MAX_NAME)
            return "is too long";
        if (c < 0x20 || c == 0x7f)
            return "holds a control character";
        if (c < 0x80) {
            p++;
            continue;
        }
        if (c >= 0xc2 && c <= 0xdf)
            n = 1, v = c & 0x1f, min = 0x80;
        else if (c >= 0xe0 && c <= 0xef)
            n = 2, v = c & 0x0f, min = 0x800;
        else if (c >= 0xf0 && c <= 0xf4)
            n = 3, v = c & 0x07, min = 0x10000;
        else
            return "is not valid UTF-8";
        for (unsigned i = 1; i <= n; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return "is not valid UTF-8";
            v = v << 6 | (p[i] & 0x3fu);
        }
        if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
            return "is not valid UTF-8";
        if (v >= 0x80 && v <= 0x9f)
            return "holds a control character";
        p += n + 1;
        len += n;
    }
    return "";
}

