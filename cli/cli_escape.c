/*
 * cli/cli_escape.c -- escaping untrusted text for a terminal, a shell and
 * Markdown; see escape.h.
 */
#include "cli_escape.h"

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Length of the valid UTF-8 sequence at `s` (1..4), or 0 when the bytes
 * there are not one (overlong forms, surrogates and values past U+10FFFF
 * included). `*cp` receives the code point. */
static size_t utf8_next(const unsigned char *s, uint32_t *cp)
{
    const unsigned char c = s[0];
    size_t n;
    uint32_t v, min;

    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf)
        n = 2, v = c & 0x1fu, min = 0x80;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3, v = c & 0x0fu, min = 0x800;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4, v = c & 0x07u, min = 0x10000;
    else
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80) /* also stops at the terminating NUL */
            return 0;
        v = v << 6 | (s[i] & 0x3fu);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return n;
}

/* Whether code point `cp` is a control character. */
static int is_control(uint32_t cp)
{
    return cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f);
}

/* Print the escape of the control character or bad byte sequence of `n`
 * bytes at `s` (`n` 0: one bad byte). */
static void put_escape(FILE *fp, const unsigned char *s, size_t n)
{
    if (n == 1 && s[0] == '\n')
        fputs("\\n", fp);
    else if (n == 1 && s[0] == '\t')
        fputs("\\t", fp);
    else if (n == 1 && s[0] == '\r')
        fputs("\\r", fp);
    else
        for (size_t i = 0; i < (n == 0 ? 1 : n); i++)
            fprintf(fp, "\\x%02x", s[i]);
}

/* Print `s`, escaping controls and bad bytes, and passing each other ASCII
 * byte to `ascii` when not NULL (which prints it), else printing it. */
static void put_escaped(FILE *fp, const char *s, void (*ascii)(FILE *, int, int), int arg)
{
    const unsigned char *p = (const unsigned char *)s;
    uint32_t cp = 0;

    while (p != NULL && *p != '\0') {
        const size_t n = utf8_next(p, &cp);
        if (n == 0 || is_control(cp)) {
            put_escape(fp, p, n);
            p += n == 0 ? 1 : n;
            continue;
        }
        if (n == 1 && ascii != NULL)
            ascii(fp, *p, arg);
        else
            fwrite(p, 1, n, fp);
        p += n;
    }
}

void cli_put_term(FILE *fp, const char *s)
{
    put_escaped(fp, s, NULL, 0);
}

/* The escaped copies cli_term() handed out: static, so that what is still
 * held at exit is reachable rather than leaked. */
static char *term_ring[CLI_TERM_RING];
static size_t term_next;

/* Whether `s` holds a control character or invalid UTF-8. */
static int has_control(const char *s);

const char *cli_term(const char *s)
{
    char *copy = NULL;
    size_t size = 0;
    FILE *mem;

    if (s == NULL)
        return "";
    if (!has_control(s))
        return s;
    mem = open_memstream(&copy, &size);
    if (mem == NULL)
        return "?";
    cli_put_term(mem, s);
    if (fclose(mem) != 0) {
        free(copy);
        return "?";
    }
    free(term_ring[term_next]);
    term_ring[term_next] = copy;
    term_next = (term_next + 1) % CLI_TERM_RING;
    return copy;
}

/* Whether `s` needs no quoting at all. */
static int shell_plain(const char *s)
{
    if (*s == '\0')
        return 0;
    for (const char *p = s; *p != '\0'; p++) {
        const char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              strchr("_@%+=:,./-", c) != NULL))
            return 0;
    }
    return 1;
}

/* Whether `s` holds a control character or invalid UTF-8. */
static int has_control(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    uint32_t cp = 0;

    while (*p != '\0') {
        const size_t n = utf8_next(p, &cp);
        if (n == 0 || is_control(cp))
            return 1;
        p += n;
    }
    return 0;
}

void cli_put_shell(FILE *fp, const char *s)
{
    if (s == NULL)
        s = "";
    if (shell_plain(s)) {
        fputs(s, fp);
        return;
    }
    if (!has_control(s)) {
        fputc('\'', fp);
        for (const char *p = s; *p != '\0'; p++)
            if (*p == '\'')
                fputs("'\\''", fp);
            else
                fputc(*p, fp);
        fputc('\'', fp);
        return;
    }
    /* $'...': every byte that is not printable ASCII as \xNN, so that the
     * word reads back byte for byte. */
    fputs("$'", fp);
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++)
        if (*p == '\'' || *p == '\\')
            fprintf(fp, "\\%c", *p);
        else if (*p < 0x20 || *p >= 0x7f)
            fprintf(fp, "\\x%02x", *p);
        else
            fputc(*p, fp);
    fputc('\'', fp);
}

/* ASCII printer of a code span: `|` escaped inside a table. */
static void code_ascii(FILE *fp, int c, int in_table)
{
    if (c == '|' && in_table)
        fputc('\\', fp);
    fputc(c, fp);
}

void cli_put_md_code(FILE *fp, const char *s, int in_table)
{
    size_t run = 0, longest = 0;

    if (s == NULL)
        s = "";
    for (const char *p = s; *p != '\0'; p++) {
        run = *p == '`' ? run + 1 : 0;
        if (run > longest)
            longest = run;
    }
    const size_t n = strlen(s);
    /* A span that starts or ends with a backtick (or is empty) needs a space
     * inside its fences, which Markdown strips again. */
    const int pad = n == 0 || s[0] == '`' || s[n - 1] == '`';
    for (size_t i = 0; i <= longest; i++)
        fputc('`', fp);
    if (pad)
        fputc(' ', fp);
    put_escaped(fp, s, code_ascii, in_table);
    if (pad)
        fputc(' ', fp);
    for (size_t i = 0; i <= longest; i++)
        fputc('`', fp);
}

/* ASCII printer of Markdown text: punctuation escaped. */
static void text_ascii(FILE *fp, int c, int unused)
{
    (void)unused;
    if (strchr("\\`*_{}[]<>()#|~!&", c) != NULL)
        fputc('\\', fp);
    fputc(c, fp);
}

void cli_put_md_text(FILE *fp, const char *s)
{
    put_escaped(fp, s, text_ascii, 0);
}
