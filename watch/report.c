/*
 * watch/report.c -- the HTML report: one self-contained file, charts as
 * inline SVG (svg.c), no script at all, every trace id a link to the
 * commands that show and replay it.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "watch/watch_internal.h"

#define SERIES_MAX 8
#define IDS_MAX 4096

static const char style[] =
    "body{font:14px/1.45 -apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:0;"
    "color:#1d2330;background:#f6f7f9}"
    "header{background:#1d2330;color:#fff;padding:18px 32px}header h1{margin:0;font-size:22px}"
    "header p{margin:4px 0 0;color:#c5cad3}nav{padding:8px 32px;background:#e8ebf0}"
    "nav a{margin-right:18px;color:#1d2330}main{padding:8px 32px 32px}"
    "section{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:12px 20px;"
    "margin:16px 0}h2{font-size:18px;margin:6px 0 10px}h3{font-size:15px;margin:14px 0 6px}"
    "table{border-collapse:collapse;font-size:13px;margin:6px 0}"
    "th,td{border-bottom:1px solid #e5e8ec;padding:4px 10px;text-align:right;vertical-align:top}"
    "th{background:#f0f2f5}td.l,th.l{text-align:left}"
    "tr.bad td{background:#fdecea}.tag{display:inline-block;padding:0 6px;border-radius:3px;"
    "font-size:12px;font-weight:600}.tag.bad{background:#d62728;color:#fff}"
    ".tag.ok{background:#2ca02c;color:#fff}.muted{color:#6b7380}"
    "a.id{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}"
    "pre{background:#f6f7f9;padding:6px 8px;white-space:pre-wrap;margin:2px 0;font-size:12px}"
    "code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}"
    ".charts{display:flex;flex-wrap:wrap;gap:12px}"
    "svg.chart{background:#fff;border:1px solid #e5e8ec;width:380px;height:auto}"
    "svg .grid{stroke:#eceef1}svg .axis{stroke:#888}"
    "svg text{font:11px sans-serif;fill:#444}svg .yl{text-anchor:end}svg .xl{text-anchor:middle}"
    "svg .unit{text-anchor:middle}svg .lg{font-size:12px}"
    ".cards{display:flex;gap:12px;flex-wrap:wrap}.card{border:1px solid #dde1e7;border-radius:6px;"
    "padding:8px 14px;min-width:120px}.card b{display:block;font-size:20px}";

/* The trace ids the report links to, for the "Traces" section. */
typedef struct id_set {
    deja_id ids[IDS_MAX];
    size_t n;
} id_set;

/* Print a linked trace id and remember it. */
static void id_link(FILE *fp, id_set *ids, const deja_id *id)
{
    char text[DEJA_ID_STRLEN + 1];
    size_t i;

    deja_id_format(id, text);
    for (i = 0; i < ids->n; i++)
        if (memcmp(ids->ids[i].bytes, id->bytes, 16) == 0)
            break;
    if (i == ids->n && ids->n < IDS_MAX)
        ids->ids[ids->n++] = *id;
    fprintf(fp, "<a class=\"id\" href=\"#t-%s\" title=\"deja show %s\">%s</a>", text, text, text);
}

static void esc(FILE *fp, const char *s)
{
    deja__html_escape(fp, s);
}

/* A duration in ns as "12.3 ms". */
static void print_ms(FILE *fp, double ns)
{
    if (isnan(ns))
        fputs("-", fp);
    else if (ns >= 1e9)
        fprintf(fp, "%.2f s", ns / 1e9);
    else if (ns >= 1e6)
        fprintf(fp, "%.1f ms", ns / 1e6);
    else
        fprintf(fp, "%.0f us", ns / 1e3);
}

static void print_utc(FILE *fp, int64_t ns)
{
    const time_t secs = (time_t)(ns / 1000000000LL);
    struct tm tm;
    char buf[64];

    if (gmtime_r(&secs, &tm) == NULL)
        fputs("?", fp);
    else {
        strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
        fputs(buf, fp);
    }
}

/* Section: health per version, table and charts over time. */
static int write_health(FILE *fp, const deja_report *r)
{
    const deja_health *t = r->totals;
    uint64_t traces = 0, errors = 0, invalid = 0;

    fputs("<section id=\"health\"><h2>Health per version</h2>\n", fp);
    if (t == NULL || t->nrows == 0) {
        fputs("<p class=\"muted\">No traces in the selection.</p></section>\n", fp);
        return 0;
    }
    for (size_t i = 0; i < t->nrows; i++) {
        traces += t->rows[i].traces;
        errors += t->rows[i].errors;
        invalid += t->rows[i].invalid;
    }
    fprintf(fp,
            "<div class=\"cards\"><div class=\"card\"><b>%llu</b>traces</div>"
            "<div class=\"card\"><b>%zu</b>versions</div>"
            "<div class=\"card\"><b>%.2f%%</b>errors</div>"
            "<div class=\"card\"><b>%llu</b>invalid (rules at record time)</div>"
            "<div class=\"card\"><b>%llu / %llu</b>dropped / sampled out (store)</div></div>\n",
            (unsigned long long)traces, t->nrows,
            traces ? 100.0 * (double)errors / (double)traces : 0.0, (unsigned long long)invalid,
            (unsigned long long)t->dropped, (unsigned long long)t->sampled_out);
    fputs("<table><tr><th class=\"l\">version</th><th>traces</th><th>errors</th><th>error "
          "rate</th><th>invalid</th><th>p50</th><th>p95</th><th>p99</th><th>in bytes/trace</th>"
          "<th>out bytes/trace</th><th class=\"l\">first</th><th class=\"l\">last</th></tr>\n",
          fp);
    for (size_t i = 0; i < t->nrows; i++) {
        const deja_health_row *row = &t->rows[i];
        const double er = row->traces ? (double)row->errors / (double)row->traces : 0.0;

        fprintf(fp, "<tr%s><td class=\"l\">", er > 0.05 ? " class=\"bad\"" : "");
        esc(fp, row->group);
        fprintf(fp, "</td><td>%llu</td><td>%llu</td><td>%.2f%%</td><td>%llu</td><td>",
                (unsigned long long)row->traces, (unsigned long long)row->errors, 100 * er,
                (unsigned long long)row->invalid);
        print_ms(fp, row->latency_p50_ns);
        fputs("</td><td>", fp);
        print_ms(fp, row->latency_p95_ns);
        fputs("</td><td>", fp);
        print_ms(fp, row->latency_p99_ns);
        fprintf(fp, "</td><td>%.0f</td><td>%.0f</td><td class=\"l\">",
                row->traces ? (double)row->input_bytes / (double)row->traces : 0.0,
                row->traces ? (double)row->output_bytes / (double)row->traces : 0.0);
        print_utc(fp, row->first_ns);
        fputs("</td><td class=\"l\">", fp);
        print_utc(fp, row->last_ns);
        fputs("</td></tr>\n", fp);
    }
    fputs("</table>\n", fp);

    if (r->timeline != NULL && r->timeline->nrows > 0) {
        const deja_health *tl = r->timeline;
        deja__series s[3][SERIES_MAX];
        size_t ns = 0;
        int64_t x0 = tl->rows[0].bucket_ns, x1 = x0;
        double *buf = calloc(tl->nrows * 3, sizeof *buf);
        int64_t *xs = calloc(tl->nrows, sizeof *xs);

        if (buf == NULL || xs == NULL) {
            free(buf);
            free(xs);
            return deja__error_set(DEJA_ENOMEM, "report: out of memory");
        }
        /* Rows come grouped by version, buckets ascending. */
        for (size_t i = 0; i < tl->nrows; i++) {
            const deja_health_row *row = &tl->rows[i];

            if (i == 0 || strcmp(row->group, tl->rows[i - 1].group) != 0) {
                if (ns == SERIES_MAX)
                    break;
                for (int k = 0; k < 3; k++) {
                    s[k][ns].name = row->group;
                    s[k][ns].x = xs + i;
                    s[k][ns].y = buf + k * tl->nrows + i;
                    s[k][ns].n = 0;
                }
                ns++;
            }
            xs[i] = row->bucket_ns + r->every_ns / 2;
            buf[i] = (double)row->traces;
            buf[tl->nrows + i] = row->latency_p95_ns / 1e6;
            buf[2 * tl->nrows + i] = row->traces ? 100.0 * (double)row->errors / row->traces : 0;
            for (int k = 0; k < 3; k++)
                s[k][ns - 1].n++;
            if (row->bucket_ns < x0)
                x0 = row->bucket_ns;
            if (row->bucket_ns > x1)
                x1 = row->bucket_ns;
        }
        x1 += r->every_ns;
        fputs("<h3>Over time (UTC), per bucket of ", fp);
        print_ms(fp, (double)r->every_ns);
        fputs("</h3><div class=\"charts\">\n", fp);
        deja__svg_lines(fp, "traffic: traces per bucket", "traces", s[0], ns, x0, x1);
        deja__svg_lines(fp, "latency p95 (ms)", "p95 ms", s[1], ns, x0, x1);
        deja__svg_lines(fp, "error rate (%)", "errors %", s[2], ns, x0, x1);
        fputs("</div>\n", fp);
        free(buf);
        free(xs);
    }
    fputs("</section>\n", fp);
    return 0;
}

/* A drift field's two sides in words. */
static void drift_sides(FILE *fp, const deja_drift_field *f)
{
    if (f->kind == DEJA_DRIFT_NUMERIC)
        fprintf(fp, "mean %.4g &rarr; %.4g; p95 %.4g &rarr; %.4g", f->baseline.mean,
                f->current.mean, f->baseline.p95, f->current.p95);
    else if (f->kind == DEJA_DRIFT_LABELS)
        fprintf(fp, "%llu &rarr; %llu rows", (unsigned long long)f->baseline.n,
                (unsigned long long)f->current.n);
    else
        fprintf(fp, "%.1f%% &rarr; %.1f%%", 100 * f->baseline.rate, 100 * f->current.rate);
    if (!isnan(f->ks))
        fprintf(fp, "; KS %.3f (p %.2g)", f->ks, f->ks_p);
    if (!isnan(f->chi2))
        fprintf(fp, "; &chi;&sup2; %.1f (p %.2g)", f->chi2, f->chi2_p);
}

/* Section: drift. */
static int write_drift(FILE *fp, const deja_report *r, id_set *ids)
{
    const deja_drift *d = r->drift;
    size_t charts = 0;

    fputs("<section id=\"drift\"><h2>Drift</h2>\n", fp);
    if (d == NULL) {
        fputs("<p class=\"muted\">No baseline given (<code>deja report --baseline "
              "SELECTION</code>).</p></section>\n",
              fp);
        return 0;
    }
    fputs("<p>Baseline <code>", fp);
    esc(fp, r->baseline);
    fprintf(fp, "</code> (%llu traces, %llu sampled) against current <code>",
            (unsigned long long)d->baseline_traces, (unsigned long long)d->baseline_sampled);
    esc(fp, r->current);
    fprintf(fp,
            "</code> (%llu traces, %llu sampled): <b>%zu of %zu fields drifted</b>.</p>\n"
            "<table><tr><th></th><th class=\"l\">field</th><th class=\"l\">metric</th>"
            "<th>score</th><th>threshold</th><th class=\"l\">baseline &rarr; current</th>"
            "<th class=\"l\">where, examples</th></tr>\n",
            (unsigned long long)d->current_traces, (unsigned long long)d->current_sampled,
            d->ndrifted, d->nfields);
    for (size_t i = 0; i < d->nfields; i++) {
        const deja_drift_field *f = &d->fields[i];

        fprintf(fp, "<tr%s><td>%s</td><td class=\"l\">", f->drifted ? " class=\"bad\"" : "",
                f->drifted ? "<span class=\"tag bad\">drifted</span>" : "");
        esc(fp, f->name);
        fputs("</td><td class=\"l\">", fp);
        esc(fp, f->metric);
        if (isnan(f->score))
            fputs("</td><td>-", fp);
        else
            fprintf(fp, "</td><td>%.4f", f->score);
        fprintf(fp, "</td><td>%g</td><td class=\"l\">", f->threshold);
        drift_sides(fp, f);
        fputs("</td><td class=\"l\">", fp);
        if (f->drifted && f->region != NULL) {
            esc(fp, f->region);
            for (size_t k = 0; k < f->nexamples; k++) {
                fputs(k ? " " : ": ", fp);
                id_link(fp, ids, &f->examples[k]);
            }
        }
        fputs("</td></tr>\n", fp);
    }
    fputs("</table>\n", fp);
    for (size_t i = 0; i < d->nfields && charts < r->drift_charts; i++) {
        const deja_drift_field *f = &d->fields[i];
        const char **labels;

        if (!f->drifted || f->nbins == 0)
            continue;
        if (charts == 0)
            fputs("<h3>Baseline vs current, the most drifted fields</h3><div "
                  "class=\"charts\">\n",
                  fp);
        labels = calloc(f->nbins, sizeof *labels);
        char(*text)[32] = calloc(f->nbins, sizeof *text);
        if (labels == NULL || text == NULL) {
            free(labels);
            free(text);
            return deja__error_set(DEJA_ENOMEM, "report: out of memory");
        }
        for (size_t b = 0; b < f->nbins; b++) {
            if (f->labels != NULL)
                labels[b] = f->labels[b];
            else {
                if (b + 1 < f->nbins)
                    snprintf(text[b], sizeof text[b], "\xe2\x89\xa4%.3g", f->edges[b]);
                else if (b > 0)
                    snprintf(text[b], sizeof text[b], ">%.3g", f->edges[b - 1]);
                else
                    snprintf(text[b], sizeof text[b], "all");
                labels[b] = text[b];
            }
        }
        deja__svg_bars(fp, f->name, labels, f->base_share, f->cur_share, f->nbins, "baseline",
                       "current");
        free(labels);
        free(text);
        charts++;
    }
    if (charts > 0)
        fputs("</div>\n", fp);
    fputs("</section>\n", fp);
    return 0;
}

/* A list of traces with a label and a detail. */
static void trace_table(FILE *fp, const deja_report_trace *ts, size_t n, const char *label,
                        id_set *ids)
{
    fprintf(fp, "<table><tr><th class=\"l\">trace</th><th class=\"l\">%s</th><th "
                "class=\"l\">detail</th></tr>\n",
            label);
    for (size_t i = 0; i < n; i++) {
        fputs("<tr><td class=\"l\">", fp);
        id_link(fp, ids, &ts[i].id);
        fputs("</td><td class=\"l\">", fp);
        esc(fp, ts[i].label);
        fputs("</td><td class=\"l\"><pre>", fp);
        esc(fp, ts[i].detail);
        fputs("</pre></td></tr>\n", fp);
    }
    fputs("</table>\n", fp);
}

/* Section: rule violations. */
static void write_rules(FILE *fp, const deja_report *r, id_set *ids)
{
    fputs("<section id=\"rules\"><h2>Rule violations</h2>\n<p>", fp);
    if (r->rules != NULL) {
        fputs("Rules of <code>", fp);
        esc(fp, r->rules);
        fprintf(fp, "</code> over %llu traces: ", (unsigned long long)r->checked);
    } else {
        fprintf(fp, "Traces tagged <code>deja.invalid</code> at record time, of %llu: ",
                (unsigned long long)r->checked);
    }
    fprintf(fp, "<b>%llu invalid</b>", (unsigned long long)r->invalid);
    if (r->nviolations < r->invalid && r->nviolations > 0)
        fprintf(fp, " (the newest %zu listed)", r->nviolations);
    fputs(".</p>\n", fp);
    if (r->nviolations > 0)
        trace_table(fp, r->violations, r->nviolations, "rule", ids);
    fputs("</section>\n", fp);
}

/* Section: replay and bisect results. */
static void write_replay(FILE *fp, const deja_report *r, id_set *ids)
{
    static const char *const names[5] = {"same", "close", "nondeterministic", "diverged",
                                         "error"};

    fputs("<section id=\"replay\"><h2>Replay</h2>\n", fp);
    if (r->replay_source == NULL) {
        fputs("<p class=\"muted\">No replay results given (<code>deja replay ... --json &gt; "
              "results.json; deja report --replay results.json</code>).</p></section>\n",
              fp);
        return;
    }
    fputs("<p>From <code>", fp);
    esc(fp, r->replay_source);
    fputs("</code>", fp);
    if (r->replay_model != NULL) {
        fputs(", replayed on <code>", fp);
        esc(fp, r->replay_model);
        fputs("</code>", fp);
    }
    fputs(".</p><div class=\"cards\">", fp);
    for (int v = 0; v < 5; v++)
        fprintf(fp, "<div class=\"card\"><b>%llu</b>%s</div>", (unsigned long long)r->verdicts[v],
                names[v]);
    fputs("</div>\n", fp);
    if (r->nsteps > 0) {
        fputs("<h3>Bisection</h3><table><tr><th class=\"l\">version</th><th></th><th>same</th>"
              "<th>close</th><th>diverged</th><th>error</th></tr>\n",
              fp);
        for (size_t i = 0; i < r->nsteps; i++) {
            const deja_report_step *s = &r->steps[i];

            fprintf(fp, "<tr%s><td class=\"l\">", s->bad ? " class=\"bad\"" : "");
            esc(fp, s->spec);
            fprintf(fp,
                    "</td><td><span class=\"tag %s\">%s</span></td><td>%llu</td><td>%llu</td>"
                    "<td>%llu</td><td>%llu</td></tr>\n",
                    s->bad ? "bad" : "ok", s->bad ? "bad" : "good", (unsigned long long)s->same,
                    (unsigned long long)s->close, (unsigned long long)s->diverged,
                    (unsigned long long)s->error);
        }
        fputs("</table>\n", fp);
        if (r->first_bad != NULL) {
            fputs("<p>First bad version: <b>", fp);
            esc(fp, r->first_bad);
            fputs("</b></p>\n", fp);
        }
    }
    if (r->nreplayed > 0) {
        fputs("<h3>Divergent traces</h3>\n", fp);
        trace_table(fp, r->replayed, r->nreplayed, "verdict", ids);
    }
    fputs("</section>\n", fp);
}

/* Section: the commands for every linked trace. */
static void write_traces(FILE *fp, const deja_report *r, const id_set *ids)
{
    fputs("<section id=\"traces\"><h2>Traces</h2>\n<p>Each trace named above, with the "
          "commands that show and replay it.</p><table>\n",
          fp);
    for (size_t i = 0; i < ids->n; i++) {
        char text[DEJA_ID_STRLEN + 1];

        deja_id_format(&ids->ids[i], text);
        fprintf(fp, "<tr id=\"t-%s\"><td class=\"l\"><code>%s</code></td><td class=\"l\">"
                    "<code>deja --store '",
                text, text);
        esc(fp, r->store);
        fprintf(fp, "' show %s</code><br><code>deja --store '", text);
        esc(fp, r->store);
        fprintf(fp, "' replay %s --model PLUGIN</code></td></tr>\n", text);
    }
    if (ids->n == 0)
        fputs("<tr><td class=\"muted\">(none)</td></tr>\n", fp);
    fputs("</table></section>\n", fp);
}

static int write_all(FILE *fp, const deja_report *r, id_set *ids)
{
    int rc;

    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
          "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
          "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; "
          "style-src 'unsafe-inline'; img-src data:\">\n<title>deja report: ",
          fp);
    esc(fp, r->store);
    fprintf(fp, "</title>\n<style>%s</style></head>\n<body>\n<header><h1>deja report</h1><p>",
            style);
    fputs("store <code>", fp);
    esc(fp, r->store);
    fputs("</code> &middot; selection: ", fp);
    esc(fp, r->selection ? r->selection : "all traces");
    fputs(" &middot; generated ", fp);
    print_utc(fp, r->generated_ns);
    fputs("</p></header>\n<nav><a href=\"#health\">Health</a><a href=\"#drift\">Drift</a>"
          "<a href=\"#rules\">Rule violations</a><a href=\"#replay\">Replay</a>"
          "<a href=\"#traces\">Traces</a></nav>\n<main>\n",
          fp);
    if ((rc = write_health(fp, r)) != 0 || (rc = write_drift(fp, r, ids)) != 0)
        return rc;
    write_rules(fp, r, ids);
    write_replay(fp, r, ids);
    write_traces(fp, r, ids);
    fputs("</main>\n</body></html>\n", fp);
    return 0;
}

int deja_report_write(const deja_report *report, const char *path)
{
    char *tmp = NULL;
    FILE *fp = NULL;
    id_set *ids = NULL;
    int rc = 0;

    if (report == NULL || path == NULL || report->version != DEJA_REPORT_VERSION ||
        report->store == NULL)
        return deja__error_set(DEJA_EINVAL, "report: version %u, store and path are required",
                               report ? report->version : 0);
    if (asprintf(&tmp, "%s.tmp.%ld", path, (long)getpid()) < 0 ||
        (ids = calloc(1, sizeof *ids)) == NULL) {
        free(tmp);
        return deja__error_set(DEJA_ENOMEM, "report: out of memory");
    }
    fp = fopen(tmp, "w");
    if (fp == NULL) {
        rc = deja__error_set(DEJA_EIO, "%s: cannot create: %s", path, strerror(errno));
        goto cleanup;
    }
    rc = write_all(fp, report, ids);
    if (fflush(fp) != 0 || ferror(fp)) {
        if (rc == 0)
            rc = deja__error_set(DEJA_EIO, "%s: cannot write: %s", path, strerror(errno));
    }
    if (fclose(fp) != 0 && rc == 0)
        rc = deja__error_set(DEJA_EIO, "%s: cannot write: %s", path, strerror(errno));
    fp = NULL;
    if (rc == 0 && rename(tmp, path) != 0)
        rc = deja__error_set(DEJA_EIO, "%s: cannot rename into place: %s", path,
                             strerror(errno));
    if (rc != 0)
        unlink(tmp);

cleanup:
    free(tmp);
    free(ids);
    return rc;
}
