/*
 * cli/cli_format.c -- formatting for terminals: times, durations, sizes, shapes and previews of
 * tensors.
 */
#include "cli.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>


/* Split nanoseconds into seconds and nanoseconds in [0, 1e9), flooring. */
static void split_ns(int64_t unix_ns, time_t *secs, int *ns)
{
    int64_t s = unix_ns / 1000000000;
    int64_t rem = unix_ns % 1000000000;

    if (rem < 0) {
        rem += 1000000000;
        s--;
    }
    *secs = (time_t)s;
    *ns = (int)rem;
}

/* Write `unix_ns` into `out` as "<date><sep><time>.<fraction><suffix>" with
 * 3 (milliseconds) or 9 (nanoseconds) fraction `digits`, in UTC when `utc` is
 * non-zero, else in local time; "@<seconds>.<fraction><suffix>" when the time
 * cannot be broken down. */
static void format_time(int64_t unix_ns, int utc, int digits, char *out, size_t cap)
{
    time_t secs;
    int ns;
    struct tm tm;
    char buf[64];
    const struct tm *got;

    split_ns(unix_ns, &secs, &ns);
    got = utc ? gmtime_r(&secs, &tm) : localtime_r(&secs, &tm);
    if (got == NULL ||
        strftime(buf, sizeof buf, utc ? "%Y-%m-%dT%H:%M:%S" : "%Y-%m-%d %H:%M:%S", &tm) == 0)
        snprintf(buf, sizeof buf, "@%lld", (long long)secs);
    if (snprintf(out, cap, "%s.%0*d%s", buf, digits, digits == 9 ? ns : ns / 1000000,
                 utc ? "Z" : "") >= (int)cap &&
        cap > 0)
        out[cap - 1] = '\0'; /* cut short: callers size `out` for any date */
}

/* "2026-11-27 14:03:00.123", local time. */
void cli_format_local(int64_t unix_ns, char *out, size_t cap)
{
    format_time(unix_ns, 0, 3, out, cap);
}

/* "2026-11-27T14:03:00.123Z". */
void cli_format_utc(int64_t unix_ns, char *out, size_t cap)
{
    format_time(unix_ns, 1, 3, out, cap);
}

/* "2026-11-27T14:03:00.123456789Z": RFC 3339, UTC, nanoseconds. */
void cli_format_rfc3339(int64_t unix_ns, char *out, size_t cap)
{
    format_time(unix_ns, 1, 9, out, cap);
}

/* "350us", "12.3ms", "1.25s". */
void cli_format_duration(int64_t ns, char *out, size_t cap)
{
    if (ns < 0)
        ns = 0;
    if (ns < 1000000)
        snprintf(out, cap, "%lldus", (long long)(ns / 1000));
    else if (ns < 1000000000)
        snprintf(out, cap, "%.1fms", (double)ns / 1e6);
    else
        snprintf(out, cap, "%.2fs", (double)ns / 1e9);
}

/* The shortest %g form of `v` that reads back as the same double. */
void cli_format_double(double v, char *out, size_t cap)
{
    for (int prec = 6; prec <= 17; prec++) {
        snprintf(out, cap, "%.*g", prec, v);
        if (strtod(out, NULL) == v || isnan(v))
            return;
    }
}

/* "512 B", "1.2 KiB", "3.4 MiB". */
void cli_format_bytes(uint64_t bytes, char *out, size_t cap)
{
    static const char *const units[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)bytes;
    size_t u = 0;

    if (bytes < 1024) {
        snprintf(out, cap, "%llu B", (unsigned long long)bytes);
        return;
    }
    v /= 1024;
    while (v >= 1024 && u + 1 < sizeof units / sizeof units[0]) {
        v /= 1024;
        u++;
    }
    snprintf(out, cap, "%.1f %s", v, units[u]);
}

/* "f32[2,3]". */
void cli_format_shape(const deja_tensor *t, char *out, size_t cap)
{
    const char *name = deja_dtype_name(t->dtype);
    size_t len;

    snprintf(out, cap, "%s[", name ? name : "?");
    for (size_t i = 0; i < t->ndim; i++) {
        len = strlen(out);
        if (len >= cap)
            return;
        snprintf(out + len, cap - len, "%s%llu", i ? "," : "", (unsigned long long)t->shape[i]);
    }
    len = strlen(out);
    if (len < cap)
        snprintf(out + len, cap - len, "]");
}

/* Print element `i` of a numeric tensor; 0 if the dtype is not numeric. */
static int print_element(FILE *fp, const deja_tensor *t, size_t i)
{
    const uint8_t *p = (const uint8_t *)t->data + i * deja_dtype_size(t->dtype);

    switch (t->dtype) {
    case DEJA_F16: {
        uint16_t v;
        memcpy(&v, p, 2);
        fprintf(fp, "%g", deja_f16_value(v));
        return 1;
    }
    case DEJA_BF16: {
        uint16_t v;
        memcpy(&v, p, 2);
        fprintf(fp, "%g", deja_bf16_value(v));
        return 1;
    }
    case DEJA_F32: {
        float v;
        memcpy(&v, p, 4);
        fprintf(fp, "%g", (double)v);
        return 1;
    }
    case DEJA_F64: {
        double v;
        memcpy(&v, p, 8);
        fprintf(fp, "%g", v);
        return 1;
    }
    case DEJA_I8:
        fprintf(fp, "%d", (int)(int8_t)p[0]);
        return 1;
    case DEJA_U8:
        fprintf(fp, "%u", (unsigned)p[0]);
        return 1;
    case DEJA_BOOL:
        fputs(p[0] ? "true" : "false", fp);
        return 1;
    case DEJA_I16: {
        int16_t v;
        memcpy(&v, p, 2);
        fprintf(fp, "%d", (int)v);
        return 1;
    }
    case DEJA_U16: {
        uint16_t v;
        memcpy(&v, p, 2);
        fprintf(fp, "%u", (unsigned)v);
        return 1;
    }
    case DEJA_I32: {
        int32_t v;
        memcpy(&v, p, 4);
        fprintf(fp, "%ld", (long)v);
        return 1;
    }
    case DEJA_U32: {
        uint32_t v;
        memcpy(&v, p, 4);
        fprintf(fp, "%lu", (unsigned long)v);
        return 1;
    }
    case DEJA_I64: {
        int64_t v;
        memcpy(&v, p, 8);
        fprintf(fp, "%lld", (long long)v);
        return 1;
    }
    case DEJA_U64: {
        uint64_t v;
        memcpy(&v, p, 8);
        fprintf(fp, "%llu", (unsigned long long)v);
        return 1;
    }
    default:
        return 0;
    }
}

/* Print text quoted and escaped, at most `max_chars` characters. */
static void print_text(FILE *fp, const uint8_t *s, size_t size, size_t max_chars)
{
    size_t i = 0, chars = 0;

    fputc('"', fp);
    while (i < size && chars < max_chars) {
        size_t len = cli_utf8_seq(s + i, size - i);
        uint8_t c = s[i];
        if (len == 0) {
            fprintf(fp, "\\x%02x", c);
            i++;
        } else if (len == 2 && c == 0xc2 && s[i + 1] < 0xa0) { /* a C1 control: CSI... */
            fprintf(fp, "\\x%02x\\x%02x", c, s[i + 1]);
            i += len;
        } else if (len > 1) {
            fwrite(s + i, 1, len, fp);
            i += len;
        } else {
            if (c == '"' || c == '\\')
                fprintf(fp, "\\%c", c);
            else if (c == '\n')
                fputs("\\n", fp);
            else if (c == '\t')
                fputs("\\t", fp);
            else if (c == '\r')
                fputs("\\r", fp);
            else if (c < 0x20 || c == 0x7f)
                fprintf(fp, "\\x%02x", c);
            else
                fputc(c, fp);
            i++;
        }
        chars++;
    }
    fputc('"', fp);
    if (i < size)
        fprintf(fp, "... (%zu bytes)", size);
}

/* A short preview of a tensor; see cli.h. */
void cli_print_preview(FILE *fp, const deja_tensor *t, size_t max_chars)
{
    char shape[160];
    size_t esize = deja_dtype_size(t->dtype);

    cli_format_shape(t, shape, sizeof shape);
    if (t->data == NULL && t->size > 0) {
        fprintf(fp, "%s (%zu bytes)", shape, t->size);
        return;
    }
    if (t->dtype == DEJA_UTF8) {
        print_text(fp, t->data, t->size, max_chars);
        return;
    }
    if (t->dtype != DEJA_BYTES && esize > 0) {
        size_t count = t->size / esize;
        size_t shown = count < 6 ? count : 6;
        fputc('[', fp);
        for (size_t i = 0; i < shown; i++) {
            if (i)
                fputs(", ", fp);
            print_element(fp, t, i);
        }
        fprintf(fp, "%s] %s", shown < count ? ", ..." : "", shape);
        return;
    }
    fprintf(fp, "%s (%zu bytes)", shape, t->size);
    if (t->size > 0) {
        size_t shown = t->size < 16 ? t->size : 16;
        fputs(" 0x", fp);
        for (size_t i = 0; i < shown; i++)
            fprintf(fp, "%02x", ((const uint8_t *)t->data)[i]);
        if (shown < t->size)
            fputs("...", fp);
    }
}

/* "1 trace", "2 traces"; see cli.h. */
const char *cli_count(uint64_t n, const char *noun)
{
    static char bufs[8][64];
    static unsigned next;
    char *b = bufs[next++ % 8];

    snprintf(b, sizeof bufs[0], "%llu %s%s", (unsigned long long)n, noun, n == 1 ? "" : "s");
    return b;
}
