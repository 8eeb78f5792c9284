/*
 * replay/diff.c -- comparing outputs, tensor by tensor and by dtype, and
 * comparing environments.
 *
 * Floats are compared element by element with NaN and Inf taken into
 * account (NaN matches NaN, an infinity the same infinity), measuring the
 * largest absolute and relative error and the largest distance in units in
 * the last place; scores (a class axis last) also compare arg-max and top-k
 * per row. Integers, bool and bytes compare exactly. Text gives the first
 * differing position and short word-level hunks around the differences.
 *
 * Every string of a result is built with open_memstream() and owned by the
 * result; deja_diff_free() releases them.
 */
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "deja.h"
#include "store/store.h"

/* Bounds: tensors and lists beyond these are refused, not allocated. */
#define MAX_OUTPUTS 65536
#define MAX_TOPK 64
/* The word hunk of a text diff: context words either side, and how far to
 * look for the point where the texts agree again. */
#define HUNK_CONTEXT 4
#define HUNK_WINDOW 64
#define HUNK_RESYNC 3
#define HUNK_SIDE_MAX 12   /* words shown of each changed side */
#define HUNK_WORD_BYTES 40 /* longer words are cut */
#define SUMMARY_MAX 400

/* Return the name of `verdict`. Never NULL. */
const char *deja_verdict_name(deja_verdict verdict)
{
    switch (verdict) {
    case DEJA_VERDICT_SAME:
        return "same";
    case DEJA_VERDICT_CLOSE:
        return "close";
    case DEJA_VERDICT_NONDETERMINISTIC:
        return "nondeterministic";
    case DEJA_VERDICT_DIVERGED:
        return "diverged";
    case DEJA_VERDICT_ERROR:
        return "error";
    default:
        return "unknown";
    }
}

/* ------------------------------------------------------------------------
 * Strings
 * ---------------------------------------------------------------------- */

/* A growing string over open_memstream(). */
typedef struct sbuf {
    FILE *fp;
    char *data;
    size_t size;
} sbuf;

/* Start an empty string. Returns 0 or DEJA_ENOMEM. */
static int sb_open(sbuf *sb)
{
    sb->data = NULL;
    sb->size = 0;
    sb->fp = open_memstream(&sb->data, &sb->size);
    return sb->fp ? 0 : deja__error_set(DEJA_ENOMEM, "diff: out of memory");
}

/* Finish the string: on success `*out` owns it (the caller frees it) and 0
 * is returned; on a write error the string is freed and DEJA_ENOMEM
 * returned. Safe on an sbuf whose open failed. */
static int sb_close(sbuf *sb, char **out)
{
    int bad = 0;
    *out = NULL;
    if (!sb->fp) {
        return deja__error_set(DEJA_ENOMEM, "diff: out of memory");
    }
    bad = ferror(sb->fp) != 0;
    if (fclose(sb->fp) != 0) {
        bad = 1;
    }
    sb->fp = NULL;
    if (bad || !sb->data) {
        free(sb->data);
        sb->data = NULL;
        return deja__error_set(DEJA_ENOMEM, "diff: out of memory building a message");
    }
    *out = sb->data;
    sb->data = NULL;
    return 0;
}

/* Length of the valid UTF-8 sequence starting at `s` (at most `n` bytes),
 * or 0 when the byte there does not start one. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    size_t len, i;
    unsigned cp;
    if (n == 0) {
        return 0;
    }
    if (s[0] < 0x80) {
        return 1;
    } else if ((s[0] & 0xe0) == 0xc0) {
        len = 2;
        cp = s[0] & 0x1f;
    } else if ((s[0] & 0xf0) == 0xe0) {
        len = 3;
        cp = s[0] & 0x0f;
    } else if ((s[0] & 0xf8) == 0xf0) {
        len = 4;
        cp = s[0] & 0x07;
    } else {
        return 0;
    }
    if (len > n) {
        return 0;
    }
    for (i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            return 0;
        }
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) {
        return 0;
    }
    return len;
}

/* Write at most `max` bytes of `s` (`n` bytes) to `fp`, escaping control
 * characters and invalid UTF-8 (\n, \xNN) and never cutting a character;
 * "..." marks a cut. */
static void put_escaped(FILE *fp, const unsigned char *s, size_t n, size_t max)
{
    size_t i = 0;
    while (i < n) {
        size_t len = utf8_seq(s + i, n - i);
        if (i >= max) {
            fputs("...", fp);
            return;
        }
        if (len == 0) {
            fprintf(fp, "\\x%02x", s[i]);
            i++;
        } else if (len == 1 && (s[i] < 0x20 || s[i] == 0x7f)) {
            if (s[i] == '\n') {
                fputs("\\n", fp);
            } else if (s[i] == '\t') {
                fputs("\\t", fp);
            } else {
                fprintf(fp, "\\x%02x", s[i]);
            }
            i++;
        } else {
            fwrite(s + i, 1, len, fp);
            i += len;
        }
    }
}

/* ------------------------------------------------------------------------
 * Elements
 * ---------------------------------------------------------------------- */

static int is_float(deja_dtype d)
{
    return d == DEJA_F16 || d == DEJA_BF16 || d == DEJA_F32 || d == DEJA_F64;
}

/* The raw bits of float element `i` of `data` (little-endian host layout). */
static uint64_t float_bits(deja_dtype d, const uint8_t *data, size_t i)
{
    uint16_t h;
    uint32_t w;
    uint64_t q;
    switch (d) {
    case DEJA_F16:
    case DEJA_BF16:
        memcpy(&h, data + i * 2, 2);
        return h;
    case DEJA_F32:
        memcpy(&w, data + i * 4, 4);
        return w;
    default:
        memcpy(&q, data + i * 8, 8);
        return q;
    }
}

/* The value of float bits `bits` of dtype `d`. */
static double bits_value(deja_dtype d, uint64_t bits)
{
    float f;
    double x;
    uint32_t w;
    switch (d) {
    case DEJA_F16:
        return deja_f16_value((uint16_t)bits);
    case DEJA_BF16:
        return deja_bf16_value((uint16_t)bits);
    case DEJA_F32:
        w = (uint32_t)bits;
        memcpy(&f, &w, 4);
        return f;
    default:
        memcpy(&x, &bits, 8);
        return x;
    }
}

/* Distance in units in the last place between float bits `a` and `b` of
 * dtype `d` (neither NaN): the bits are mapped onto a line where adjacent
 * floats are adjacent integers and -0.0 meets +0.0. Saturates. */
static uint64_t ulp_distance(deja_dtype d, uint64_t a, uint64_t b)
{
    unsigned width = d == DEJA_F64 ? 64 : d == DEJA_F32 ? 32 : 16;
    uint64_t sign = (uint64_t)1 << (width - 1);
    uint64_t ma = a & (sign - 1), mb = b & (sign - 1);
    int na = (a & sign) != 0, nb = (b & sign) != 0;
    if (na == nb) {
        return ma > mb ? ma - mb : mb - ma;
    }
    return ma > UINT64_MAX - mb ? UINT64_MAX : ma + mb;
}

/* ------------------------------------------------------------------------
 * One tensor
 * ---------------------------------------------------------------------- */

/* A tensor diff under construction: the public entry plus owned strings. */
typedef struct tdiff {
    deja_tensor_diff pub;
    char *name;
    char *detail;
    char *hunk;
} tdiff;

/* Write the multi-dimensional form "[1,2]" of flat index `i` under the
 * shape of `t` ("[i]" when it has no usable shape). */
static void put_index(FILE *fp, const deja_tensor *t, uint64_t i)
{
    uint64_t idx[DEJA_MAX_DIMS];
    size_t k, nd = t->ndim;
    if (nd == 0 || nd > DEJA_MAX_DIMS || !t->shape) {
        fprintf(fp, "[%llu]", (unsigned long long)i);
        return;
    }
    for (k = nd; k-- > 0;) {
        uint64_t dim = t->shape[k] ? t->shape[k] : 1;
        idx[k] = i % dim;
        i /= dim;
    }
    fputc('[', fp);
    for (k = 0; k < nd; k++) {
        fprintf(fp, "%s%llu", k ? "," : "", (unsigned long long)idx[k]);
    }
    fputc(']', fp);
}

/* Write "f32[2,3]". */
static void put_shape(FILE *fp, const deja_tensor *t)
{
    size_t k;
    const char *dn = deja_dtype_name(t->dtype);
    fprintf(fp, "%s[", dn ? dn : "?");
    for (k = 0; k < t->ndim && t->shape && k < DEJA_MAX_DIMS; k++) {
        fprintf(fp, "%s%llu", k ? "," : "", (unsigned long long)t->shape[k]);
    }
    fputc(']', fp);
}

/* Mark `td` as diverged by `kind` and write "<what> differs: " and both
 * tensors' dtype and shape, "<a> vs <b>", to `fp`. */
static void put_mismatch(tdiff *td, FILE *fp, deja_diff_kind kind, const char *what,
                         const deja_tensor *a, const deja_tensor *b)
{
    td->pub.kind = kind;
    td->pub.verdict = DEJA_VERDICT_DIVERGED;
    fprintf(fp, "%s differs: ", what);
    put_shape(fp, a);
    fputs(" vs ", fp);
    put_shape(fp, b);
}

/* Non-zero when `a` and `b` have the same shape. */
static int same_shape(const deja_tensor *a, const deja_tensor *b)
{
    size_t k;
    if (a->ndim != b->ndim) {
        return 0;
    }
    for (k = 0; k < a->ndim; k++) {
        if (a->shape[k] != b->shape[k]) {
            return 0;
        }
    }
    return 1;
}

/* Return the name of output kind `kind`. Never NULL. */
const char *deja_output_kind_name(deja_output_kind kind)
{
    switch (kind) {
    case DEJA_KIND_AUTO:
        return "auto";
    case DEJA_KIND_SCORES:
        return "scores";
    case DEJA_KIND_PROBS:
        return "probs";
    case DEJA_KIND_EMBEDDING:
        return "embedding";
    case DEJA_KIND_VALUES:
        return "values";
    case DEJA_KIND_TEXT:
        return "text";
    default:
        return "unknown";
    }
}

/* The declared kind of output `name` in the options (the first entry
 * wins), or DEJA_KIND_AUTO. */
static deja_output_kind kind_of(const deja_diff_options *o, const char *name)
{
    size_t i;
    for (i = 0; o->kinds && i < o->nkinds; i++) {
        if (o->kinds[i].name && name && strcmp(o->kinds[i].name, name) == 0) {
            return o->kinds[i].kind;
        }
    }
    return DEJA_KIND_AUTO;
}

/* Non-zero when the float tensor `t` is compared as scores: a class axis
 * last (at least 2 classes), and declared scores or probabilities, or, not
 * declared, a name saying so. */
static int looks_like_scores(const deja_tensor *t, deja_output_kind kind)
{
    static const char *const words[] = {"logit", "score", "prob", "class"};
    size_t i, j, n;
    const char *name = t->name ? t->name : "";
    if (!is_float(t->dtype) || t->ndim == 0 || !t->shape || t->shape[t->ndim - 1] < 2) {
        return 0;
    }
    if (kind != DEJA_KIND_AUTO) {
        return kind == DEJA_KIND_SCORES || kind == DEJA_KIND_PROBS;
    }
    n = strlen(name);
    for (i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        size_t wl = strlen(words[i]);
        for (j = 0; j + wl <= n; j++) {
            if (strncasecmp(name + j, words[i], wl) == 0) {
                return 1;
            }
        }
    }
    return 0;
}

/* The value used to rank classes: NaN ranks below everything. */
static double rank_value(deja_dtype d, const uint8_t *data, size_t i)
{
    double v = bits_value(d, float_bits(d, data, i));
    return isnan(v) ? -INFINITY : v;
}

/* Fill `top` with the indices of the `k` largest classes of the row of
 * `ncls` elements starting at element `row0` (ties: lower index first). */
static void row_topk(deja_dtype d, const uint8_t *data, size_t row0, size_t ncls, size_t k,
                     size_t *top)
{
    size_t c, j, have = 0;
    for (c = 0; c < ncls; c++) {
        double v = rank_value(d, data, row0 + c);
        if (have == k && !(v > rank_value(d, data, row0 + top[k - 1]))) {
            continue;
        }
        j = have < k ? have++ : k - 1;
        while (j > 0 && v > rank_value(d, data, row0 + top[j - 1])) {
            top[j] = top[j - 1];
            j--;
        }
        top[j] = c;
    }
}

/* Compare the arg-max and top-k of every row of two score tensors of
 * `count` elements with `ncls` classes. */
static void diff_scores(tdiff *td, const deja_tensor *a, const deja_tensor *b, size_t count,
                        const deja_diff_options *o)
{
    size_t ncls = (size_t)a->shape[a->ndim - 1], rows = count / ncls, r, j;
    size_t k = o->topk < MAX_TOPK ? o->topk : MAX_TOPK;
    size_t ta[MAX_TOPK], tb[MAX_TOPK];
    if (k > ncls) {
        k = ncls;
    }
    if (k == 0) {
        k = 1;
    }
    td->pub.is_scores = 1;
    td->pub.rows = rows;
    for (r = 0; r < rows; r++) {
        row_topk(a->dtype, a->data, r * ncls, ncls, k, ta);
        row_topk(b->dtype, b->data, r * ncls, ncls, k, tb);
        if (ta[0] != tb[0]) {
            if (td->pub.rows_label++ == 0) {
                td->pub.label_row = (int64_t)r;
                td->pub.label_a = (int64_t)ta[0];
                td->pub.label_b = (int64_t)tb[0];
            }
        }
        for (j = 0; j < k && o->topk > 0; j++) {
            if (ta[j] != tb[j]) {
                td->pub.rows_topk++;
                break;
            }
        }
    }
}

/* Compare two float tensors of the same dtype and `count` elements. */
static int diff_floats(tdiff *td, const deja_tensor *a, const deja_tensor *b, size_t count,
                       const deja_diff_options *o, FILE *fp)
{
    deja_dtype d = a->dtype;
    size_t i;
    double atol = o->atol, rtol = o->rtol;
    /* Per-dtype defaults (those of torch.testing.assert_close). */
    if (atol < 0) {
        atol = d == DEJA_F64 ? 1e-7 : 1e-5;
    }
    if (rtol < 0) {
        rtol = d == DEJA_F64 ? 1e-7 : d == DEJA_F32 ? 1.3e-6 : d == DEJA_F16 ? 1e-3 : 1.6e-2;
    }
    for (i = 0; i < count; i++) {
        uint64_t ba = float_bits(d, a->data, i), bb = float_bits(d, b->data, i);
        double va, vb, abs_err, rel, mag;
        int nan_a, nan_b, within;
        if (ba == bb) {
            continue;
        }
        if (td->pub.ndiff++ == 0) {
            td->pub.first = (int64_t)i;
        }
        va = bits_value(d, ba);
        vb = bits_value(d, bb);
        nan_a = isnan(va);
        nan_b = isnan(vb);
        if (nan_a && nan_b) {
            continue; /* two NaNs with different payloads: equal as values */
        }
        if (nan_a || nan_b || isinf(va) != isinf(vb) || (isinf(va) && va != vb)) {
            td->pub.nnan++;
            td->pub.nbeyond++;
            if (!isinf(td->pub.max_abs)) {
                td->pub.worst = (int64_t)i;
            }
            td->pub.max_abs = INFINITY;
            td->pub.max_rel = INFINITY;
            if (!nan_a && !nan_b) {
                uint64_t u = ulp_distance(d, ba, bb);
                td->pub.max_ulps = u > td->pub.max_ulps ? u : td->pub.max_ulps;
            }
            continue;
        }
        abs_err = fabs(va - vb);
        mag = fmax(fabs(va), fabs(vb));
        rel = mag > 0 ? abs_err / mag : 0.0;
        {
            uint64_t u = ulp_distance(d, ba, bb);
            td->pub.max_ulps = u > td->pub.max_ulps ? u : td->pub.max_ulps;
            within = abs_err <= atol + rtol * fabs(va) || (o->ulps > 0 && u <= o->ulps);
        }
        if (abs_err > td->pub.max_abs) {
            td->pub.max_abs = abs_err;
            td->pub.worst = (int64_t)i;
        }
        td->pub.max_rel = rel > td->pub.max_rel ? rel : td->pub.max_rel;
        if (!within) {
            td->pub.nbeyond++;
        }
    }
    if (looks_like_scores(a, kind_of(o, a->name))) {
        diff_scores(td, a, b, count, o);
    }
    if (td->pub.ndiff == 0) {
        return 0;
    }
    /* A changed label is the headline; the numbers follow. */
    if (td->pub.rows_label) {
        fprintf(fp, "label %lld \u2192 %lld", (long long)td->pub.label_a,
                (long long)td->pub.label_b);
        if (td->pub.rows > 1) {
            fprintf(fp, " (row %lld; %llu of %llu rows changed label)",
                    (long long)td->pub.label_row, (unsigned long long)td->pub.rows_label,
                    (unsigned long long)td->pub.rows);
        }
        fputs("; ", fp);
    }
    fprintf(fp, "%llu of %llu elements differ (first at ", (unsigned long long)td->pub.ndiff,
            (unsigned long long)count);
    put_index(fp, a, (uint64_t)td->pub.first);
    fprintf(fp, ": %.9g vs %.9g)", bits_value(d, float_bits(d, a->data, (size_t)td->pub.first)),
            bits_value(d, float_bits(d, b->data, (size_t)td->pub.first)));
    if (td->pub.worst >= 0 && td->pub.worst != td->pub.first) {
        fputs(", worst at ", fp);
        put_index(fp, a, (uint64_t)td->pub.worst);
        fprintf(fp, ": %.9g vs %.9g", bits_value(d, float_bits(d, a->data, (size_t)td->pub.worst)),
                bits_value(d, float_bits(d, b->data, (size_t)td->pub.worst)));
    }
    fprintf(fp, "; max abs %.3g, max rel %.3g, max %llu ulps", td->pub.max_abs, td->pub.max_rel,
            (unsigned long long)td->pub.max_ulps);
    if (td->pub.nnan) {
        fprintf(fp, ", %llu NaN/Inf mismatches", (unsigned long long)td->pub.nnan);
    }
    if (td->pub.nbeyond) {
        fprintf(fp, ", %llu beyond tolerance", (unsigned long long)td->pub.nbeyond);
    } else {
        fputs(", within tolerance", fp);
    }
    if (!td->pub.rows_label && td->pub.rows_topk) {
        fprintf(fp, "; top-%u order changed in %llu of %llu rows (arg-max kept)", o->topk,
                (unsigned long long)td->pub.rows_topk, (unsigned long long)td->pub.rows);
    }
    return 0;
}

/* Compare two integer or bool tensors of the same dtype, element by
 * element. */
static void diff_ints(tdiff *td, const deja_tensor *a, const deja_tensor *b, size_t count, FILE *fp)
{
    size_t es = deja_dtype_size(a->dtype), i;
    const uint8_t *pa = a->data, *pb = b->data;
    for (i = 0; i < count; i++) {
        if (memcmp(pa + i * es, pb + i * es, es) != 0 && td->pub.ndiff++ == 0) {
            td->pub.first = (int64_t)i;
        }
    }
    td->pub.nbeyond = td->pub.ndiff;
    if (td->pub.ndiff == 0) {
        return;
    }
    fprintf(fp, "%llu of %llu elements differ, first at ", (unsigned long long)td->pub.ndiff,
            (unsigned long long)count);
    put_index(fp, a, (uint64_t)td->pub.first);
    {
        size_t f = (size_t)td->pub.first;
        int64_t sa = 0, sb = 0;
        uint64_t ua = 0, ub = 0;
        int is_signed = a->dtype == DEJA_I8 || a->dtype == DEJA_I16 || a->dtype == DEJA_I32 ||
                        a->dtype == DEJA_I64;
        /* Little-endian host: copy the low bytes, then sign-extend. */
        memcpy(&ua, pa + f * es, es);
        memcpy(&ub, pb + f * es, es);
        if (is_signed) {
            unsigned shift = (unsigned)(64 - 8 * es);
            sa = (int64_t)(ua << shift) >> shift;
            sb = (int64_t)(ub << shift) >> shift;
            fprintf(fp, ": %lld vs %lld", (long long)sa, (long long)sb);
        } else {
            fprintf(fp, ": %llu vs %llu", (unsigned long long)ua, (unsigned long long)ub);
        }
    }
}

/* Count the differing bytes of two byte strings and find the first
 * (positions beyond the shorter one count as differing). */
static void count_bytes(tdiff *td, const deja_tensor *a, const deja_tensor *b)
{
    const uint8_t *pa = a->data, *pb = b->data;
    size_t n = a->size < b->size ? a->size : b->size, i;
    for (i = 0; i < n; i++) {
        if (pa[i] != pb[i] && td->pub.ndiff++ == 0) {
            td->pub.first = (int64_t)i;
        }
    }
    if (a->size != b->size) {
        if (td->pub.ndiff == 0) {
            td->pub.first = (int64_t)n;
        }
        td->pub.ndiff += (a->size > b->size ? a->size : b->size) - n;
    }
    td->pub.count = a->size > b->size ? a->size : b->size;
    td->pub.nbeyond = td->pub.ndiff;
}

/* Compare two byte strings: first differing offset and count. */
static void diff_bytes(tdiff *td, const deja_tensor *a, const deja_tensor *b, FILE *fp)
{
    count_bytes(td, a, b);
    if (td->pub.ndiff == 0) {
        return;
    }
    fprintf(fp, "%llu of %llu bytes differ, first at offset %lld",
            (unsigned long long)td->pub.ndiff, (unsigned long long)td->pub.count,
            (long long)td->pub.first);
    if (a->size != b->size) {
        fprintf(fp, " (length %zu vs %zu)", a->size, b->size);
    }
}

/* A word of a text: bytes [start, end). */
typedef struct word {
    size_t start;
    size_t end;
} word;

/* Split `s` (`n` bytes) into whitespace-separated words. `*out` is
 * malloc'd (may be NULL when there are none). Returns 0 or DEJA_ENOMEM. */
static int split_words(const unsigned char *s, size_t n, word **out, size_t *count)
{
    size_t i = 0, nw = 0, cap = 0;
    word *w = NULL;
    *out = NULL;
    *count = 0;
    while (i < n) {
        size_t st;
        while (i < n && isspace(s[i])) {
            i++;
        }
        if (i >= n) {
            break;
        }
        st = i;
        while (i < n && !isspace(s[i])) {
            i++;
        }
        if (nw == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            word *nwp = realloc(w, ncap * sizeof(*w));
            if (!nwp) {
                free(w);
                return deja__error_set(DEJA_ENOMEM, "diff: out of memory splitting text");
            }
            w = nwp;
            cap = ncap;
        }
        w[nw].start = st;
        w[nw].end = i;
        nw++;
    }
    *out = w;
    *count = nw;
    return 0;
}

static int word_eq(const unsigned char *a, const word *wa, const unsigned char *b, const word *wb)
{
    size_t la = wa->end - wa->start, lb = wb->end - wb->start;
    return la == lb && memcmp(a + wa->start, b + wb->start, la) == 0;
}

/* Write words [from, to) of `s` separated by spaces (at most `max` words;
 * "..." marks a cut, at the start when `tail` is set). */
static void put_words(FILE *fp, const unsigned char *s, const word *w, size_t from, size_t to,
                      size_t max, int tail)
{
    size_t i;
    if (to - from > max) {
        if (tail) {
            fputs("... ", fp);
            from = to - max;
        } else {
            to = from + max;
        }
    }
    for (i = from; i < to; i++) {
        if (i > from) {
            fputc(' ', fp);
        }
        put_escaped(fp, s + w[i].start, w[i].end - w[i].start, HUNK_WORD_BYTES);
    }
}

/* Write one changed side of a hunk: words [from, to) of `s` (at most
 * HUNK_SIDE_MAX, " ..." marking a cut) between `left` and `right`, as in
 * "[-removed-]" or "{+added+}". Writes nothing when the side is empty. */
static void put_side(FILE *fp, const unsigned char *s, const word *w, size_t from, size_t to,
                     const char *left, const char *right)
{
    if (to > from) {
        fputs(left, fp);
        put_words(fp, s, w, from, to, HUNK_SIDE_MAX, 0);
        if (to - from > HUNK_SIDE_MAX) {
            fputs(" ...", fp);
        }
        fputs(right, fp);
    }
}

/* One differing region of two texts: words [a0, a1) of a became words
 * [b0, b1) of b. */
typedef struct hunk {
    size_t a0, a1, b0, b1;
} hunk;

/* Find the differing region starting at words `pa` of a and `pb` of b (which
 * differ, or one text ends there): it ends where HUNK_RESYNC words agree
 * again (searched within HUNK_WINDOW words of each side), else at the
 * common tail of the texts. */
static hunk find_hunk(const unsigned char *a, const word *wa, size_t ca, const unsigned char *b,
                      const word *wb, size_t cb, size_t pa, size_t pb)
{
    hunk h = {pa, ca, pb, cb};
    size_t i, j, best = SIZE_MAX;
    /* Tail agreement as the fallback end of the hunk. */
    while (h.a1 > pa && h.b1 > pb && word_eq(a, &wa[h.a1 - 1], b, &wb[h.b1 - 1])) {
        h.a1--;
        h.b1--;
    }
    for (i = 0; i <= HUNK_WINDOW && pa + i <= ca; i++) {
        for (j = 0; j <= HUNK_WINDOW && pb + j <= cb; j++) {
            size_t k = 0;
            if (i + j >= best || (i == 0 && j == 0)) {
                continue;
            }
            while (k < HUNK_RESYNC && pa + i + k < ca && pb + j + k < cb &&
                   word_eq(a, &wa[pa + i + k], b, &wb[pb + j + k])) {
                k++;
            }
            /* Agreement over HUNK_RESYNC words, or up to both ends. */
            if (k == HUNK_RESYNC || (pa + i + k == ca && pb + j + k == cb)) {
                best = i + j;
                h.a1 = pa + i;
                h.b1 = pb + j;
            }
        }
    }
    return h;
}

/* Write the word-level hunks of two texts, up to `max` of them: each as
 * "[-removed-]{+added+}" with HUNK_CONTEXT words of context either side
 * (the words between two close hunks in full, "..." for a longer gap), and
 * " ..." with "(more differences not shown)" when hunks remain past `max`. */
static int text_hunks(const unsigned char *a, size_t na, const unsigned char *b, size_t nb,
                      size_t max, FILE *fp)
{
    word *wa = NULL, *wb = NULL;
    hunk *hs = NULL;
    size_t ca = 0, cb = 0, pa = 0, pb = 0, nh = 0, i, pos = 0, end;
    int more = 0;
    int rc = split_words(a, na, &wa, &ca);
    if (rc == 0) {
        rc = split_words(b, nb, &wb, &cb);
    }
    if (rc == 0 && (hs = malloc(max * sizeof *hs)) == NULL) {
        rc = deja__error_set(DEJA_ENOMEM, "diff: out of memory");
    }
    if (rc != 0) {
        goto cleanup;
    }
    for (;;) {
        while (pa < ca && pb < cb && word_eq(a, &wa[pa], b, &wb[pb])) {
            pa++;
            pb++;
        }
        if (pa == ca && pb == cb) {
            break;
        }
        if (nh == max) {
            more = 1;
            break;
        }
        hs[nh] = find_hunk(a, wa, ca, b, wb, cb, pa, pb);
        pa = hs[nh].a1;
        pb = hs[nh].b1;
        nh++;
    }
    if (nh == 0) {
        /* Same words, different spacing. */
        fputs("(whitespace differs)", fp);
        goto cleanup;
    }
    for (i = 0; i < nh; i++) {
        const hunk *h = &hs[i];
        size_t gap = h->a0 - pos;
        if (i == 0 && gap > 0) {
            if (gap > HUNK_CONTEXT) {
                fputs("... ", fp);
            }
            put_words(fp, a, wa, gap > HUNK_CONTEXT ? h->a0 - HUNK_CONTEXT : 0, h->a0,
                      HUNK_CONTEXT, 1);
            fputc(' ', fp);
        } else if (i > 0) {
            fputc(' ', fp);
            if (gap > 2 * HUNK_CONTEXT) {
                put_words(fp, a, wa, pos, pos + HUNK_CONTEXT, HUNK_CONTEXT, 0);
                fputs(" ... ", fp);
                put_words(fp, a, wa, h->a0 - HUNK_CONTEXT, h->a0, HUNK_CONTEXT, 1);
                fputc(' ', fp);
            } else if (gap > 0) {
                put_words(fp, a, wa, pos, h->a0, 2 * HUNK_CONTEXT, 0);
                fputc(' ', fp);
            }
        }
        put_side(fp, a, wa, h->a0, h->a1, "[-", "-]");
        put_side(fp, b, wb, h->b0, h->b1, "{+", "+}");
        pos = h->a1;
    }
    /* Trailing context stops before the first difference not described. */
    end = more ? pa : ca;
    if (pos < end) {
        size_t to = pos + HUNK_CONTEXT < end ? pos + HUNK_CONTEXT : end;
        fputc(' ', fp);
        put_words(fp, a, wa, pos, to, HUNK_CONTEXT, 0);
    }
    if (pos < ca && (more || pos + HUNK_CONTEXT < ca)) {
        fputs(" ...", fp);
    }
    if (more) {
        fprintf(fp, " (more differences after %zu hunk%s)", nh, nh == 1 ? "" : "s");
    }
cleanup:
    free(hs);
    free(wa);
    free(wb);
    return rc;
}

/* Compare two texts: first differing byte (and character), counts, and a
 * word hunk. */
static int diff_text(tdiff *td, const deja_tensor *a, const deja_tensor *b, size_t max_hunks,
                     FILE *fp)
{
    const unsigned char *pa = a->data, *pb = b->data;
    size_t n = a->size < b->size ? a->size : b->size, i = 0, chars = 0, k;
    sbuf hb;
    int rc = 0;
    count_bytes(td, a, b);
    if (td->pub.ndiff == 0) {
        return 0;
    }
    while (i < n && pa[i] == pb[i]) {
        i++;
    }
    /* Back up to the start of the character the difference falls in (the
     * bytes before i are common to both texts). */
    while (i > 0 && i < a->size && (pa[i] & 0xc0) == 0x80) {
        i--;
    }
    for (k = 0; k < i; k++) {
        chars += (pa[k] & 0xc0) != 0x80;
    }
    td->pub.first = (int64_t)i;
    rc = sb_open(&hb);
    if (rc != 0) {
        return rc;
    }
    rc = text_hunks(pa, a->size, pb, b->size, max_hunks, hb.fp);
    {
        int rc2 = sb_close(&hb, &td->hunk);
        rc = rc ? rc : rc2;
    }
    if (rc != 0) {
        return rc;
    }
    td->pub.hunk = td->hunk;
    fprintf(fp, "text differs at byte %zu (character %zu)", i, chars);
    if (a->size != b->size) {
        fprintf(fp, ", length %zu vs %zu bytes", a->size, b->size);
    }
    fprintf(fp, ": %s", td->hunk);
    return 0;
}

/* Fill `td` with the comparison of `a` and `b` (either may be NULL: the
 * output exists on one side only). */
static int diff_one(tdiff *td, const deja_tensor *a, const deja_tensor *b,
                    const deja_diff_options *o)
{
    const deja_tensor *any = a ? a : b;
    sbuf sb;
    int rc;
    memset(td, 0, sizeof(*td));
    td->pub.first = -1;
    td->pub.worst = -1;
    td->pub.label_row = -1;
    td->pub.label_a = -1;
    td->pub.label_b = -1;
    td->pub.dtype_a = a ? a->dtype : DEJA_DTYPE_INVALID;
    td->pub.dtype_b = b ? b->dtype : DEJA_DTYPE_INVALID;
    td->name = strdup(any->name ? any->name : "");
    if (!td->name) {
        return deja__error_set(DEJA_ENOMEM, "diff: out of memory");
    }
    td->pub.name = td->name;
    rc = sb_open(&sb);
    if (rc != 0) {
        return rc;
    }
    if (!a || !b) {
        td->pub.kind = a ? DEJA_DIFF_ONLY_A : DEJA_DIFF_ONLY_B;
        td->pub.verdict = DEJA_VERDICT_DIVERGED;
        fprintf(sb.fp, "only in %s (", a ? "a" : "b");
        put_shape(sb.fp, any);
        fputc(')', sb.fp);
        goto done;
    }
    if ((a->ndim && !a->shape) || (b->ndim && !b->shape) || a->ndim > DEJA_MAX_DIMS ||
        b->ndim > DEJA_MAX_DIMS) {
        rc = deja__error_set(DEJA_EINVAL, "diff: output '%s' has a malformed shape", td->name);
        goto done;
    }
    if (a->dtype != b->dtype) {
        put_mismatch(td, sb.fp, DEJA_DIFF_DTYPE, "dtype", a, b);
        goto done;
    }
    if ((a->size && !a->data) || (b->size && !b->data)) {
        rc = deja__error_set(DEJA_EINVAL, "diff: output '%s' has no data loaded", td->name);
        goto done;
    }
    if (a->dtype == DEJA_UTF8 || a->dtype == DEJA_BYTES) {
        td->pub.count = a->size > b->size ? a->size : b->size;
        if (a->dtype == DEJA_UTF8 || kind_of(o, a->name) == DEJA_KIND_TEXT) {
            rc = diff_text(td, a, b, o->max_hunks ? o->max_hunks : DEJA_DIFF_MAX_HUNKS, sb.fp);
        } else {
            diff_bytes(td, a, b, sb.fp);
        }
        td->pub.kind = td->pub.ndiff ? DEJA_DIFF_VALUES : DEJA_DIFF_EQUAL;
        td->pub.verdict = td->pub.ndiff ? DEJA_VERDICT_DIVERGED : DEJA_VERDICT_SAME;
        goto done;
    }
    {
        size_t es = deja_dtype_size(a->dtype);
        if (es == 0) {
            rc = deja__error_set(DEJA_EINVAL, "diff: output '%s' has an invalid dtype (%d)",
                                 td->name, (int)a->dtype);
            goto done;
        }
        if (!same_shape(a, b) || a->size != b->size || a->size % es != 0) {
            put_mismatch(td, sb.fp, DEJA_DIFF_SHAPE, "shape", a, b);
            if (same_shape(a, b)) {
                fprintf(sb.fp, " (%zu vs %zu bytes)", a->size, b->size);
            }
            goto done;
        }
        td->pub.count = a->size / es;
        if (is_float(a->dtype)) {
            rc = diff_floats(td, a, b, (size_t)td->pub.count, o, sb.fp);
        } else {
            diff_ints(td, a, b, (size_t)td->pub.count, sb.fp);
        }
    }
    td->pub.kind = td->pub.ndiff ? DEJA_DIFF_VALUES : DEJA_DIFF_EQUAL;
    if (td->pub.ndiff == 0) {
        td->pub.verdict = DEJA_VERDICT_SAME;
    } else if (td->pub.nbeyond == 0 && td->pub.rows_label == 0) {
        td->pub.verdict = DEJA_VERDICT_CLOSE;
    } else {
        td->pub.verdict = DEJA_VERDICT_DIVERGED;
    }
done : {
    int rc2 = sb_close(&sb, &td->detail);
    rc = rc ? rc : rc2;
}
    td->pub.detail = td->detail ? td->detail : "";
    return rc;
}

/* ------------------------------------------------------------------------
 * Sets of outputs
 * ---------------------------------------------------------------------- */

/* The diff as allocated: public part first, then the owned entries. */
typedef struct diff_impl {
    deja_diff pub;
    tdiff *t;
    size_t nt;
    char *summary;
} diff_impl;

/* Free a diff and everything it owns. Accepts NULL. */
void deja_diff_free(deja_diff *diff)
{
    diff_impl *d = (diff_impl *)diff;
    size_t i;
    if (!d) {
        return;
    }
    for (i = 0; i < d->nt; i++) {
        free(d->t[i].name);
        free(d->t[i].detail);
        free(d->t[i].hunk);
    }
    free((void *)d->pub.tensors);
    free(d->t);
    free(d->summary);
    free(d);
}

/* Fill the options to use from `opts` (NULL: defaults). */
static int options_of(const deja_diff_options *opts, deja_diff_options *o)
{
    static const deja_diff_options dflt = DEJA_DIFF_OPTIONS_INIT;
    *o = dflt;
    if (!opts) {
        return 0;
    }
    if (opts->version != DEJA_DIFF_OPTIONS_VERSION) {
        return deja__error_set(DEJA_EVERSION, "diff: options version %u, expected %u",
                               opts->version, DEJA_DIFF_OPTIONS_VERSION);
    }
    if (isnan(opts->atol) || isnan(opts->rtol)) {
        return deja__error_set(DEJA_EINVAL, "diff: tolerances must be numbers");
    }
    if (opts->max_hunks > DEJA_DIFF_MAX_HUNKS_LIMIT) {
        return deja__error_set(DEJA_EINVAL, "diff: max_hunks %u is beyond %u", opts->max_hunks,
                               DEJA_DIFF_MAX_HUNKS_LIMIT);
    }
    *o = *opts;
    return 0;
}

/* Build the one-line summary of `d`. */
static int build_summary(diff_impl *d)
{
    sbuf sb;
    size_t i, shown = 0, nd = 0;
    int rc = sb_open(&sb);
    if (rc != 0) {
        return rc;
    }
    for (i = 0; i < d->nt; i++) {
        nd += d->t[i].pub.kind != DEJA_DIFF_EQUAL;
    }
    if (nd == 0) {
        fprintf(sb.fp, "%zu output%s bit-identical", d->nt, d->nt == 1 ? "" : "s");
    } else {
        long pos;
        if (nd > 1) {
            fprintf(sb.fp, "%zu of %zu outputs differ: ", nd, d->nt);
        }
        for (i = 0; i < d->nt; i++) {
            const tdiff *t = &d->t[i];
            if (t->pub.kind == DEJA_DIFF_EQUAL) {
                continue;
            }
            pos = ftell(sb.fp);
            if (pos > SUMMARY_MAX) {
                fprintf(sb.fp, "; ... (%zu more)", nd - shown);
                break;
            }
            fprintf(sb.fp, "%s%s: %s", shown ? "; " : "", t->pub.name, t->pub.detail);
            shown++;
        }
    }
    rc = sb_close(&sb, &d->summary);
    d->pub.summary = d->summary;
    return rc;
}

/* Diff output sets `a` (expected) and `b` (actual), pairing tensors by
 * name: entries follow a's order, then b's outputs absent from a. The
 * caller frees `*out` with deja_diff_free(). Returns 0, DEJA_EINVAL,
 * DEJA_EVERSION or DEJA_ENOMEM; `*out` is NULL on failure. */
int deja_diff_outputs(const deja_tensor *a, size_t na, const deja_tensor *b, size_t nb,
                      const deja_diff_options *opts, deja_diff **out)
{
    deja_diff_options o;
    diff_impl *d = NULL;
    unsigned char *used = NULL;
    size_t i, j;
    int rc;
    if (!out) {
        return deja__error_set(DEJA_EINVAL, "diff: out is NULL");
    }
    *out = NULL;
    rc = options_of(opts, &o);
    if (rc != 0) {
        goto cleanup;
    }
    if ((na && !a) || (nb && !b) || na > MAX_OUTPUTS || nb > MAX_OUTPUTS) {
        rc = deja__error_set(DEJA_EINVAL, "diff: bad output lists (%zu and %zu tensors)", na, nb);
        goto cleanup;
    }
    d = calloc(1, sizeof(*d));
    used = calloc(nb + 1, 1);
    if (!d || !used || (na + nb && !(d->t = calloc(na + nb, sizeof(*d->t))))) {
        rc = deja__error_set(DEJA_ENOMEM, "diff: out of memory");
        goto cleanup;
    }
    for (i = 0; i < na; i++) {
        const deja_tensor *match = NULL;
        const char *an = a[i].name ? a[i].name : "";
        for (j = 0; j < nb; j++) {
            if (!used[j] && strcmp(an, b[j].name ? b[j].name : "") == 0) {
                match = &b[j];
                used[j] = 1;
                break;
            }
        }
        d->nt++;
        rc = diff_one(&d->t[d->nt - 1], &a[i], match, &o);
        if (rc != 0) {
            goto cleanup;
        }
    }
    for (j = 0; j < nb; j++) {
        if (!used[j]) {
            d->nt++;
            rc = diff_one(&d->t[d->nt - 1], NULL, &b[j], &o);
            if (rc != 0) {
                goto cleanup;
            }
        }
    }
    d->pub.verdict = DEJA_VERDICT_SAME;
    for (i = 0; i < d->nt; i++) {
        if (d->t[i].pub.verdict > d->pub.verdict) {
            d->pub.verdict = d->t[i].pub.verdict;
        }
    }
    rc = build_summary(d);
    if (rc != 0) {
        goto cleanup;
    }
    {
        deja_tensor_diff *pubs = calloc(d->nt + 1, sizeof(*pubs));
        if (!pubs) {
            rc = deja__error_set(DEJA_ENOMEM, "diff: out of memory");
            goto cleanup;
        }
        /* The public entries form one array; the strings stay owned by t. */
        for (i = 0; i < d->nt; i++) {
            pubs[i] = d->t[i].pub;
        }
        d->pub.tensors = pubs;
        d->pub.ntensors = d->nt;
    }
    *out = &d->pub;
    d = NULL;
cleanup:
    free(used);
    deja_diff_free(d ? &d->pub : NULL);
    return rc;
}

/* Diff tensor `a` against `b` as one output, whatever their names (a's
 * name is kept). The caller frees `*out` with deja_diff_free(). */
int deja_diff_tensor(const deja_tensor *a, const deja_tensor *b, const deja_diff_options *opts,
                     deja_diff **out)
{
    deja_tensor bb;
    if (!a || !b) {
        if (out) {
            *out = NULL;
        }
        return deja__error_set(DEJA_EINVAL, "diff: both tensors are required");
    }
    bb = *b;
    bb.name = a->name;
    return deja_diff_outputs(a, 1, &bb, 1, opts, out);
}

/* ------------------------------------------------------------------------
 * Environments
 * ---------------------------------------------------------------------- */

#define MAX_ENV_LINES 4096

/* A list of lines under construction. */
typedef struct lines {
    char **v;
    size_t n;
    size_t cap;
    int rc;
} lines;

/* Append a formatted line; failures are remembered in `l->rc`. */
static void line_add(lines *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void line_add(lines *l, const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    int len;
    if (l->rc != 0 || l->n >= MAX_ENV_LINES) {
        return;
    }
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 16;
        char **nv = realloc(l->v, ncap * sizeof(*nv));
        if (!nv) {
            l->rc = deja__error_set(DEJA_ENOMEM, "env compare: out of memory");
            return;
        }
        l->v = nv;
        l->cap = ncap;
    }
    va_start(ap, fmt);
    len = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (len < 0) {
        l->rc = deja__error_set(DEJA_ENOMEM, "env compare: out of memory");
        return;
    }
    l->v[l->n++] = s;
}

static const char *str_or(const char *s, const char *dflt)
{
    return s && *s ? s : dflt;
}

/* Non-zero when two optional strings differ. */
static int str_differ(const char *a, const char *b)
{
    return strcmp(a ? a : "", b ? b : "") != 0;
}

/* Non-zero when an ISA flag can change numerical results: vector widths
 * (which change reduction order in vectorised kernels), fused multiply-add,
 * and reduced-precision arithmetic. */
static int isa_relevant(const char *flag)
{
    static const char *const words[] = {"avx",   "fma", "sse",  "f16c", "amx",  "neon",
                                        "asimd", "sve", "vnni", "bf16", "fp16", "fphp"};
    size_t i;
    for (i = 0; i < sizeof(words) / sizeof(words[0]); i++) {
        if (strstr(flag, words[i])) {
            return 1;
        }
    }
    return 0;
}

/* Non-zero when `flag` is in the list `v` of `n` names. */
static int has_name(const char *const *v, size_t n, const char *flag)
{
    size_t i;
    for (i = 0; i < n; i++) {
        if (v[i] && strcmp(v[i], flag) == 0) {
            return 1;
        }
    }
    return 0;
}

/* Add one line naming the relevant flags of `from` missing from `to`. */
static void isa_missing(lines *l, const deja_env *from, const deja_env *to, const char *what)
{
    sbuf sb;
    size_t i, count = 0;
    char *s = NULL;
    if (sb_open(&sb) != 0) {
        l->rc = DEJA_ENOMEM;
        return;
    }
    for (i = 0; i < from->nisa; i++) {
        const char *f = from->isa[i];
        if (f && isa_relevant(f) && !has_name(to->isa, to->nisa, f)) {
            fprintf(sb.fp, "%s%s", count++ ? ", " : "", f);
        }
    }
    if (sb_close(&sb, &s) != 0) {
        l->rc = DEJA_ENOMEM;
        return;
    }
    if (count) {
        line_add(l, "isa: %s %s", s, what);
    }
    free(s);
}

/* Find `key` in a list of pairs, or NULL. */
static const char *kv_get(const deja_kv *v, size_t n, const char *key)
{
    size_t i;
    for (i = 0; i < n; i++) {
        if (v[i].key && strcmp(v[i].key, key) == 0) {
            return v[i].value ? v[i].value : "";
        }
    }
    return NULL;
}

/* Add a line per key whose value differs between two lists of pairs. */
static void kv_compare(lines *l, const deja_kv *rv, size_t rn, const deja_kv *cv, size_t cn,
                       const char *what)
{
    size_t i;
    for (i = 0; i < rn; i++) {
        const char *now;
        if (!rv[i].key) {
            continue;
        }
        now = kv_get(cv, cn, rv[i].key);
        if (!now) {
            line_add(l, "%s %s: '%s' recorded, unset now", what, rv[i].key,
                     str_or(rv[i].value, ""));
        } else if (strcmp(now, rv[i].value ? rv[i].value : "") != 0) {
            line_add(l, "%s %s: '%s' recorded, '%s' now", what, rv[i].key, str_or(rv[i].value, ""),
                     now);
        }
    }
    for (i = 0; i < cn; i++) {
        if (cv[i].key && !kv_get(rv, rn, cv[i].key)) {
            line_add(l, "%s %s: unset when recorded, '%s' now", what, cv[i].key,
                     str_or(cv[i].value, ""));
        }
    }
}

/* Free an environment diff. Accepts NULL. */
void deja_env_diff_free(deja_env_diff *diff)
{
    size_t i;
    if (!diff) {
        return;
    }
    for (i = 0; i < diff->nlines; i++) {
        free((void *)diff->lines[i]);
    }
    free((void *)diff->lines);
    free(diff);
}

/* Compare the recorded environment with the current one, keeping only the
 * differences that can change numerical results, one line each. Either may
 * be NULL (a line then says it is unknown). The caller frees `*out` with
 * deja_env_diff_free(). Returns 0, DEJA_EINVAL or DEJA_ENOMEM. */
int deja_env_compare(const deja_env *recorded, const deja_env *current, deja_env_diff **out)
{
    lines l = {NULL, 0, 0, 0};
    deja_env_diff *d = NULL;
    const deja_env *r = recorded, *c = current;
    size_t i;
    int rc = 0;
    if (!out) {
        return deja__error_set(DEJA_EINVAL, "env compare: out is NULL");
    }
    *out = NULL;
    if (!r || !c) {
        line_add(&l, "%s environment unknown: its differences cannot be checked",
                 !r ? "recorded" : "current");
        goto build;
    }
    if (str_differ(r->arch, c->arch)) {
        line_add(&l, "arch: %s recorded, %s now", str_or(r->arch, "?"), str_or(c->arch, "?"));
    }
    if (str_differ(r->cpu_vendor, c->cpu_vendor) || str_differ(r->cpu_model, c->cpu_model)) {
        line_add(&l, "cpu: '%s %s' recorded, '%s %s' now", str_or(r->cpu_vendor, "?"),
                 str_or(r->cpu_model, "?"), str_or(c->cpu_vendor, "?"), str_or(c->cpu_model, "?"));
    }
    isa_missing(&l, r, c, "recorded, absent now");
    isa_missing(&l, c, r, "absent when recorded, present now");
    if (r->threads != c->threads) {
        line_add(&l, "threads: %u recorded, %u now", r->threads, c->threads);
    }
    if (r->cores != c->cores) {
        line_add(&l, "cores: %u recorded, %u now", r->cores, c->cores);
    }
    if (str_differ(r->fp_rounding, c->fp_rounding)) {
        line_add(&l, "fp rounding: %s recorded, %s now", str_or(r->fp_rounding, "?"),
                 str_or(c->fp_rounding, "?"));
    }
    if (!r->ftz != !c->ftz) {
        line_add(&l, "fp flush-to-zero: %s recorded, %s now", r->ftz ? "on" : "off",
                 c->ftz ? "on" : "off");
    }
    if (!r->daz != !c->daz) {
        line_add(&l, "fp denormals-are-zero: %s recorded, %s now", r->daz ? "on" : "off",
                 c->daz ? "on" : "off");
    }
    if (str_differ(r->libc, c->libc)) {
        line_add(&l, "libc: %s recorded, %s now", str_or(r->libc, "?"), str_or(c->libc, "?"));
    }
    for (i = 0; i < r->ngpus || i < c->ngpus; i++) {
        const char *gr = i < r->ngpus ? r->gpus[i] : NULL, *gc = i < c->ngpus ? c->gpus[i] : NULL;
        if (str_differ(gr, gc)) {
            line_add(&l, "gpu %zu: %s recorded, %s now", i, str_or(gr, "none"), str_or(gc, "none"));
        }
    }
    kv_compare(&l, r->libs, r->nlibs, c->libs, c->nlibs, "library");
    kv_compare(&l, r->vars, r->nvars, c->vars, c->nvars, "variable");
build:
    if (l.rc != 0) {
        rc = l.rc;
        goto cleanup;
    }
    d = calloc(1, sizeof(*d));
    if (!d) {
        rc = deja__error_set(DEJA_ENOMEM, "env compare: out of memory");
        goto cleanup;
    }
    d->lines = (const char *const *)l.v;
    d->nlines = l.n;
    l.v = NULL;
    l.n = 0;
    *out = d;
cleanup:
    for (i = 0; i < l.n; i++) {
        free(l.v[i]);
    }
    free(l.v);
    return rc;
}
