/*
 * tests/test_report.c -- the HTML report: written by `deja report` from a
 * store with two versions, a drift, rule violations and replay results;
 * checked as text (sections, escaping, no external reference, every
 * trace link resolves) and rendered in headless Chromium (Debian's
 * chromium, installed by ./run): the page must show its sections and log
 * no console message. A page with a script error proves the check sees
 * one.
 */
#include <jansson.h>
#include <stdlib.h>

#include "cli_harness.h"
#include "watch_harness.h"

#define HOUR_NS 3600000000000LL
#define T0 1764000000000000000LL

/* Two versions over three hours: v1 features centred at 0, v2 shifted,
 * with errors and traces flagged at record time. */
static void make_store(const char *path)
{
    deja_store *store = NULL;
    wtrace w;

    assert_int_equal(deja_store_open(&store, path, DEJA_STORE_WRITE | DEJA__STORE_NOSYNC), 0);
    for (int i = 0; i < 240; i++) {
        const int v2 = i >= 120;
        const float g = (float)((i % 120 + 0.5) / 120);
        const float x[2] = {g, v2 ? g + 0.7f : g};
        const float s[3] = {0.2f, v2 ? 0.1f : 0.6f, v2 ? 0.7f : 0.2f};

        wtrace_init(&w, "clf", v2 ? "2" : "1", T0 + (int64_t)i * (3 * HOUR_NS / 240),
                    (v2 ? 20 : 10) * 1000000LL + i * 1000);
        wtrace_tag(&w, "phase", v2 ? "after" : "before");
        wtrace_f32(&w, DEJA_INPUT, "features", x, 2, 0);
        if (v2 && i % 10 == 0) {
            wtrace_error(&w, "timeout <upstream>");
        } else {
            wtrace_f32(&w, DEJA_OUTPUT, "probs", s, 3, 0);
            if (v2 && i % 7 == 0)
                wtrace_tag(&w, DEJA_INVALID_TAG, "range");
        }
        wtrace_put(store, &w);
    }
    deja_store_close(store);
}

/* The id of the newest trace, as listed by the binary. */
static char *newest_id(const char *store)
{
    cli_run r;
    char *id;

    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "ls", "--limit", "1", NULL), 0);
    assert_int_equal(r.status, 0);
    id = strndup(r.out, DEJA_ID_STRLEN);
    cli_run_free(&r);
    return id;
}

/* Every href="#t-ID" has its id="t-ID". */
static void assert_links_resolve(const char *html)
{
    const char *p = html;
    size_t links = 0;

    while ((p = strstr(p, "href=\"#t-")) != NULL) {
        char anchor[64];

        p += 9;
        snprintf(anchor, sizeof anchor, "id=\"t-%.*s\"", DEJA_ID_STRLEN, p);
        if (strstr(html, anchor) == NULL) {
            fprintf(stderr, "link to %s without its entry\n", anchor);
            fail();
        }
        links++;
    }
    assert_true(links > 3);
}

/* Render `html` in headless Chromium: the DOM into `dom`, the log into
 * `log`, a screenshot into `png` (may be NULL). Returns the exit status. */
static int render(const char *root, const char *html, const char *png)
{
    char cmd[4096];
    const char *profile = cli_tmp_path(root, "profile");
    const int n = snprintf(
        cmd, sizeof cmd,
        "cd '%s' && timeout 180 chromium --headless --no-sandbox --disable-gpu "
        "--disable-background-networking --disable-component-update --no-first-run "
        "--user-data-dir='%s' --enable-logging=stderr --v=0 --window-size=1280,2000 %s%s%s "
        "--dump-dom 'file://%s' > dom.html 2> log.txt",
        root, profile, png ? "--screenshot='" : "", png ? png : "", png ? "'" : "", html);

    assert_true(n > 0 && (size_t)n < sizeof cmd);
    return system(cmd);
}

/* The console messages in Chromium's log ("...:CONSOLE:...] "), or 0. */
static size_t console_lines(const char *log)
{
    size_t n = 0;

    for (const char *p = log; (p = strstr(p, ":CONSOLE")) != NULL; p++)
        n++;
    return n;
}

static void test_report__html_and_chromium(void **state)
{
    char root[] = "/tmp/deja-report-XXXXXX";
    const char *store, *rules, *results, *html, *bad;
    char *text, *dom, *log, *id;
    char line[1024];
    size_t len;
    cli_run r;
    int status;

    (void)state;
    assert_int_equal(cli_group_begin(root), 0);
    store = cli_tmp_path(root, "report.store");
    rules = cli_tmp_path(root, "r.rules");
    results = cli_tmp_path(root, "results.json");
    html = cli_tmp_path(root, "report.html");
    make_store(store);
    assert_int_equal(cli_write_file(rules, "range: input.features range 0 1\n"), 0);
    /* Results as deja replay --json prints them, one hostile. */
    id = newest_id(store);
    snprintf(line, sizeof line,
             "{\"id\": \"%s\", \"verdict\": \"diverged\", \"replayed\": {\"model\": \"clf\", "
             "\"version\": \"3\"}, \"diff\": {\"verdict\": \"diverged\", \"summary\": \"1 output "
             "differs\", \"outputs\": [{\"name\": \"probs\", \"detail\": \"label 2 -> 1 "
             "<script>alert(1)</script>\"}]}}\n"
             "{\"id\": \"%s\", \"verdict\": \"same\", \"replayed\": {\"model\": \"clf\", "
             "\"version\": \"3\"}, \"diff\": {\"summary\": \"same\", \"outputs\": []}}\n"
             "{\"summary\": {\"model\": \"clf-v3\", \"traces\": 2, \"same\": 1, \"diverged\": 1}}\n",
             id, id);
    assert_int_equal(cli_write_file(results, line), 0);

    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "report", "--version", "2",
                              "--baseline", "version=1", "--rules", rules, "--replay", results,
                              "-o", html, NULL),
                     0);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "wrote "));
    assert_non_null(strstr(r.out, "120 traces, 1 versions"));
    cli_run_free(&r);

    text = cli_slurp(html, &len);
    assert_non_null(text);
    for (const char *const *s = (const char *const[]){"id=\"health\"", "id=\"drift\"",
                                                       "id=\"rules\"", "id=\"replay\"",
                                                       "id=\"traces\"", NULL};
         *s != NULL; s++)
        assert_non_null(strstr(text, *s));
    /* Charts, the drifted input, the replay's detail escaped, no script,
     * nothing fetched: the one URL is SVG's namespace. */
    assert_true(strstr(text, "<svg") != NULL);
    assert_non_null(strstr(text, "input.features[1]"));
    assert_non_null(strstr(text, "&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert_null(strstr(text, "<script"));
    assert_null(strstr(text, "https://"));
    for (const char *p = text; (p = strstr(p, "http://")) != NULL; p++)
        assert_int_equal(strncmp(p, "http://www.w3.org/2000/svg\"", 27), 0);
    assert_links_resolve(text);
    free(text);

    /* Rendered: sections present, no console message at all. */
    status = render(root, html, cli_tmp_path(root, "report.png"));
    dom = cli_slurp(cli_tmp_path(root, "dom.html"), &len);
    log = cli_slurp(cli_tmp_path(root, "log.txt"), &len);
    assert_non_null(dom);
    assert_non_null(log);
    if (status != 0)
        fprintf(stderr, "chromium failed (%d): %s\n", status, log);
    assert_int_equal(status, 0);
    assert_non_null(strstr(dom, "<h2>Health per version</h2>"));
    assert_non_null(strstr(dom, "<h2>Drift</h2>"));
    assert_non_null(strstr(dom, "<h2>Rule violations</h2>"));
    assert_non_null(strstr(dom, "<h2>Replay</h2>"));
    assert_non_null(strstr(dom, "<svg"));
    if (console_lines(log) != 0) {
        fprintf(stderr, "console messages:\n%s\n", log);
        fail();
    }
    {
        char *png = cli_slurp(cli_tmp_path(root, "report.png"), &len);

        assert_non_null(png);
        assert_true(len > 10000);
        assert_memory_equal(png, "\x89PNG", 4);
        free(png);
    }
    free(dom);
    free(log);

    /* The check sees a script error when there is one. */
    bad = cli_tmp_path(root, "bad.html");
    assert_int_equal(cli_write_file(bad, "<!DOCTYPE html><html><body><p>x</p>"
                                         "<script>throw new Error('boom')</script></body></html>"),
                     0);
    assert_int_equal(render(root, bad, NULL), 0);
    log = cli_slurp(cli_tmp_path(root, "log.txt"), &len);
    assert_non_null(log);
    assert_true(console_lines(log) > 0);
    assert_non_null(strstr(log, "Uncaught Error: boom"));
    free(log);
    free(id);
    cli_rm_rf(root);
}

static void test_report__cli_errors(void **state)
{
    char root[] = "/tmp/deja-report-XXXXXX";
    const char *store, *results, *html;
    cli_run r;

    (void)state;
    assert_int_equal(cli_group_begin(root), 0);
    store = cli_tmp_path(root, "e.store");
    results = cli_tmp_path(root, "bad.json");
    html = cli_tmp_path(root, "e.html");
    make_store(store);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "report", NULL), 0);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "-o FILE.html is required"));
    cli_run_free(&r);
    assert_int_equal(cli_write_file(results, "{\"id\": \"x\"}\nnot json\n"), 0);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "report", "--replay", results,
                              "-o", html, NULL),
                     0);
    assert_int_equal(r.status, 2);
    cli_assert_one_error(&r, "bad.json:1: neither a replay nor a bisect result");
    assert_false(cli_exists(html));
    cli_run_free(&r);
    /* Without extras: every section still there, saying what would fill it. */
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "report", "-o", html, NULL), 0);
    assert_int_equal(r.status, 0);
    cli_run_free(&r);
    {
        size_t len;
        char *text = cli_slurp(html, &len);

        assert_non_null(text);
        assert_non_null(strstr(text, "No baseline given"));
        assert_non_null(strstr(text, "No replay results given"));
        assert_non_null(strstr(text, "tagged <code>deja.invalid</code> at record time, of 240: "
                                     "<b>15 invalid</b>"));
        free(text);
    }
    cli_rm_rf(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_report__html_and_chromium),
        cmocka_unit_test(test_report__cli_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
