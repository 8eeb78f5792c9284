/*
 * watch/svg.c -- the charts of the HTML report, as inline SVG: lines over
 * time (one series per version) and paired bars (baseline vs current
 * shares). Plain SVG 1.1 elements, no script, no external reference.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "watch/watch_internal.h"

#define W 640
#define H 230
#define ML 56 /* margins: left, right, top, bottom */
#define MR 12
#define MT 14
#define MB 44

static const char *const palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                      "#9467bd", "#8c564b", "#e377c2", "#17becf"};

const char *deja__svg_color(size_t i)
{
    return palette[i % (sizeof palette / sizeof palette[0])];
}

void deja__html_escape(FILE *fp, const char *s)
{
    for (; s != NULL && *s != '\0'; s++) {
        switch (*s) {
        case '&':
            fputs("&amp;", fp);
            break;
        case '<':
            fputs("&lt;", fp);
            break;
        case '>':
            fputs("&gt;", fp);
            break;
        case '"':
            fputs("&quot;", fp);
            break;
        case '\'':
            fputs("&#39;", fp);
            break;
        default:
            if ((unsigned char)*s < 0x20 && *s != '\n' && *s != '\t')
                fputc('?', fp);
            else
                fputc(*s, fp);
        }
    }
}

/* A "nice" step (1, 2 or 5 times a power of ten) giving about `n` ticks
 * up to `max`. */
static double nice_step(double max, int n)
{
    const double raw = max / n;
    const double p = pow(10, floor(log10(raw)));
    const double f = raw / p;

    return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * p;
}

/* A number for an axis: "1.5k", "250", "0.25". */
static void axis_number(char *out, size_t cap, double v)
{
    if (fabs(v) >= 1e6)
        snprintf(out, cap, "%.3gM", v / 1e6);
    else if (fabs(v) >= 1e3)
        snprintf(out, cap, "%.3gk", v / 1e3);
    else
        snprintf(out, cap, "%.3g", v);
}

/* A UTC time label: "14:03:20" over less than an hour, "14:03" within
 * a day, else "11-27 14:00". */
static void time_label(char *out, size_t cap, int64_t ns, double span_ns)
{
    const time_t secs = (time_t)(ns / 1000000000LL);
    struct tm tm;

    if (gmtime_r(&secs, &tm) == NULL)
        snprintf(out, cap, "?");
    else
        strftime(out, cap,
                 span_ns < 3600e9 ? "%H:%M:%S" : span_ns < 86400e9 ? "%H:%M" : "%m-%d %H:%M", &tm);
}

static void svg_open(FILE *fp, const char *title)
{
    fprintf(fp,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" width=\"%d\" "
            "height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\"><title>",
            W, H, W, H);
    deja__html_escape(fp, title);
    fputs("</title>\n", fp);
}

/* The y axis from 0 to `ymax` with grid lines; returns the top value. */
static double y_axis(FILE *fp, double ymax, const char *unit)
{
    const double step = nice_step(ymax > 0 ? ymax : 1, 4);
    const double top = step * ceil((ymax > 0 ? ymax : 1) / step);
    char label[32];

    for (double v = 0; v <= top + step / 2; v += step) {
        const double y = MT + (H - MT - MB) * (1 - v / top);

        axis_number(label, sizeof label, v);
        fprintf(fp,
                "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" class=\"grid\"/>"
                "<text x=\"%d\" y=\"%.1f\" class=\"yl\">%s</text>\n",
                ML, y, W - MR, y, ML - 6, y + 4, label);
    }
    fprintf(fp, "<text x=\"12\" y=\"%d\" class=\"unit\" transform=\"rotate(-90 12 %d)\">", H / 2,
            H / 2);
    deja__html_escape(fp, unit);
    fputs("</text>\n", fp);
    return top;
}

void deja__svg_lines(FILE *fp, const char *title, const char *unit, const deja__series *series,
                     size_t nseries, int64_t x0, int64_t x1)
{
    double ymax = 0;
    double top;
    const double span = x1 > x0 ? (double)(x1 - x0) : 1.0;

    svg_open(fp, title);
    for (size_t s = 0; s < nseries; s++)
        for (size_t i = 0; i < series[s].n; i++)
            if (isfinite(series[s].y[i]) && series[s].y[i] > ymax)
                ymax = series[s].y[i];
    top = y_axis(fp, ymax, unit);
    /* Five time labels along the x axis. */
    for (int k = 0; k <= 4; k++) {
        const int64_t t = x0 + (int64_t)(span * k / 4);
        const double x = ML + (W - ML - MR) * (double)k / 4;
        char label[32];

        time_label(label, sizeof label, t, span);
        fprintf(fp, "<text x=\"%.1f\" y=\"%d\" class=\"xl\"%s>%s</text>\n", x, H - MB + 16,
                k == 0 ? " style=\"text-anchor:start\"" : k == 4 ? " style=\"text-anchor:end\"" : "", label);
    }
    fprintf(fp, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" class=\"axis\"/>\n", ML, H - MB,
            W - MR, H - MB);
    for (size_t s = 0; s < nseries; s++) {
        const deja__series *se = &series[s];
        int open = 0;

        for (size_t i = 0; i < se->n; i++) {
            const double x = ML + (W - ML - MR) * (double)(se->x[i] - x0) / span;
            const double y = MT + (H - MT - MB) * (1 - (isfinite(se->y[i]) ? se->y[i] : 0) / top);

            if (!open) {
                fprintf(fp, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"",
                        deja__svg_color(s));
                open = 1;
            }
            fprintf(fp, "%.1f,%.1f ", x, y);
        }
        if (open)
            fputs("\"/>\n", fp);
        for (size_t i = 0; i < se->n; i++) {
            const double x = ML + (W - ML - MR) * (double)(se->x[i] - x0) / span;
            const double y = MT + (H - MT - MB) * (1 - (isfinite(se->y[i]) ? se->y[i] : 0) / top);

            fprintf(fp, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.5\" fill=\"%s\"><title>", x, y,
                    deja__svg_color(s));
            deja__html_escape(fp, se->name);
            fprintf(fp, ": %.4g</title></circle>", se->y[i]);
        }
        fputc('\n', fp);
    }
    /* Legend. */
    for (size_t s = 0; s < nseries; s++) {
        const int x = ML + (int)(s % 4) * 150, y = H - 12 + 0 * (int)(s / 4);

        fprintf(fp,
                "<rect x=\"%d\" y=\"%d\" width=\"10\" height=\"10\" fill=\"%s\"/>"
                "<text x=\"%d\" y=\"%d\" class=\"lg\">",
                x, y - 9, deja__svg_color(s), x + 14, y);
        deja__html_escape(fp, series[s].name);
        fputs("</text>\n", fp);
    }
    fputs("</svg>\n", fp);
}

void deja__svg_bars(FILE *fp, const char *title, const char *const *labels, const double *a,
                    const double *b, size_t n, const char *name_a, const char *name_b)
{
    double ymax = 0, top;
    const double slot = n ? (double)(W - ML - MR) / (double)n : 1;
    const double bw = slot * 0.38;

    svg_open(fp, title);
    for (size_t i = 0; i < n; i++) {
        if (a[i] > ymax)
            ymax = a[i];
        if (b[i] > ymax)
            ymax = b[i];
    }
    top = y_axis(fp, ymax * 100, "% of traces") / 100;
    for (size_t i = 0; i < n; i++) {
        const double x = ML + slot * (double)i + slot * 0.1;
        const double ha = (H - MT - MB) * a[i] / top, hb = (H - MT - MB) * b[i] / top;

        fprintf(fp,
                "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#9aa5b1\">"
                "<title>%s %.1f%%</title></rect>"
                "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#ff7f0e\">"
                "<title>%s %.1f%%</title></rect>\n",
                x, H - MB - ha, bw, ha, name_a, 100 * a[i], x + bw, H - MB - hb, bw, hb, name_b,
                100 * b[i]);
        if (n <= 12 || i % ((n + 11) / 12) == 0) {
            fprintf(fp, "<text x=\"%.1f\" y=\"%d\" class=\"xl\">", x + bw, H - MB + 16);
            deja__html_escape(fp, labels[i]);
            fputs("</text>\n", fp);
        }
    }
    fprintf(fp, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" class=\"axis\"/>\n", ML, H - MB,
            W - MR, H - MB);
    fprintf(fp,
            "<rect x=\"%d\" y=\"%d\" width=\"10\" height=\"10\" fill=\"#9aa5b1\"/>"
            "<text x=\"%d\" y=\"%d\" class=\"lg\">%s</text>"
            "<rect x=\"%d\" y=\"%d\" width=\"10\" height=\"10\" fill=\"#ff7f0e\"/>"
            "<text x=\"%d\" y=\"%d\" class=\"lg\">%s</text>\n</svg>\n",
            ML, H - 21, ML + 14, H - 12, name_a, ML + 110, H - 21, ML + 124, H - 12, name_b);
}
