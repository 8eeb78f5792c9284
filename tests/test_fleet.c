/*
 * tests/test_fleet.c -- `deja ship` and `deja pull` against a real NATS
 * JetStream server that the test starts on loopback and always stops:
 * store -> stream -> fresh store comes back byte-identical (show --json);
 * a ship killed with SIGKILL at random points and resumed loses nothing and
 * duplicates nothing; two stores shipping the same blob store it once;
 * --follow ships traces recorded while it runs; wrong credentials and an
 * unreachable server give one line, exit 2, and leave the store as it was;
 * replay --via three workers, one SIGKILLed holding jobs, gives every trace
 * exactly one verdict, the same as a local replay; on a 3-node cluster, a
 * node killed during a ship loses nothing; a server frozen, killed and
 * restarted under a ship's full window of batches in flight loses nothing;
 * chat histories stored as deltas ship and pull back byte for byte; the
 * chunks ship cuts reusing an earlier payload's are those of a full cut.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <jansson.h>

#include <lmdb.h>

#include "cli_harness.h"
#include "fleet/fleet_internal.h"
#include "nats_harness.h"
#include "store/store.h"
#include "store/store_internal.h"

static char tmp_root[] = "/tmp/deja-test-fleet-XXXXXX";
static nats_server server;
static char store_a[600]; /* 40 traces, some with blobs, shipped by the first case */

static const char *tmp_path(const char *name)
{
    return cli_tmp_path(tmp_root, name);
}

/* Write `n` requests to `path`: every 4th has a prompt beyond one chunk
 * (a chunked blob), every 4th+1 one beyond the inline limit (a whole blob),
 * and `shared` (when not NULL) as every request's suffix. */
static void write_requests(const char *path, int n, int first, const char *shared)
{
    FILE *fp = fopen(path, "w");

    assert_non_null(fp);
    for (int i = first; i < first + n; i++) {
        fprintf(fp, "{\"inputs\": {\"prompt\": \"Request %d. ", i);
        for (int k = 0; k < (i % 4 == 0 ? 600 : i % 4 == 1 ? 80 : 0); k++)
            fprintf(fp, "the %s fox %d jumps. ", k % 3 ? "brown" : "red", (i * 7 + k) % 13);
        fprintf(fp, "%s\"}, \"params\": {\"max_tokens\": %d}}\n", shared ? shared : "",
                10 + i % 20);
    }
    fclose(fp);
}

/* Record `n` traces into `store` with textgen-v1. */
static void record(const char *store, int n, int first, const char *shared)
{
    const char *req = tmp_path("req.jsonl");
    cli_run r;

    write_requests(req, n, first, shared);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "run", "--model", "textgen-v1",
                              "--requests", req, NULL),
                     0);
    if (r.status != 0)
        fail_msg("run: %s", r.err);
    cli_run_free(&r);
}

/* Run deja with the arguments and require exit 0. */
static void ok(cli_run *r, const char *const *args)
{
    assert_int_equal(cli_execv(r, NULL, NULL, args), 0);
    if (r->status != 0)
        fail_msg("deja %s: exit %d: %s", args[2], r->status, r->err);
}

/* The ids of `store`, as `ls --json` prints them (one per line). */
static char *ids_of(const char *store)
{
    const char *a[] = {"--store", store, "ls", "--json", NULL};
    cli_run r;
    size_t cap = 0, n = 0;
    char *out = NULL;

    ok(&r, a);
    for (size_t i = 0; i < cli_count_lines(r.out); i++) {
        char *line = cli_line(r.out, i);
        json_t *j = json_loads(line, 0, NULL);

        assert_non_null(j);
        if (n + 28 > cap) {
            cap = cap ? cap * 2 : 4096;
            out = realloc(out, cap);
            assert_non_null(out);
        }
        n += (size_t)snprintf(out + n, cap - n, "%s\n", json_string_value(json_object_get(j, "id")));
        json_decref(j);
        free(line);
    }
    cli_run_free(&r);
    return out ? out : strdup("");
}

/* Every trace of `a` is in `b` and shows the same, byte for byte. */
static void assert_same_traces(const char *a, const char *b)
{
    char *ia = ids_of(a), *ib = ids_of(b);
    size_t n = cli_count_lines(ia);

    assert_string_equal(ia, ib);
    for (size_t i = 0; i < n; i++) {
        char *id = cli_line(ia, i);
        const char *x[] = {"--store", a, "show", id, "--json", NULL};
        const char *y[] = {"--store", b, "show", id, "--json", NULL};
        cli_run ra, rb;

        ok(&ra, x);
        ok(&rb, y);
        assert_string_equal(ra.out, rb.out);
        cli_run_free(&ra);
        cli_run_free(&rb);
        free(id);
    }
    free(ia);
    free(ib);
}

static int group_setup(void **state)
{
    (void)state;
    if (cli_group_begin(tmp_root) != 0)
        return -1;
    if (nats_start(&server, tmp_path("nats"), NULL) != 0) {
        fprintf(stderr, "cannot start nats-server (is it installed?)\n");
        return -1;
    }
    snprintf(store_a, sizeof store_a, "%s/a.store", tmp_root);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    nats_stop(&server);
    cli_rm_rf(tmp_root);
    return 0;
}

static void test_fleet__round_trip_is_byte_identical(void **state)
{
    const char *b = tmp_path("b.store");
    const char *ship[] = {"--store", store_a, "ship", "--to", server.url, NULL};
    const char *pull[] = {"--store", b, "pull", "--from", server.url, NULL};
    const char *verify[] = {"--store", b, "verify", NULL};
    cli_run r;
    (void)state;

    record(store_a, 40, 0, NULL);
    ok(&r, ship);
    assert_non_null(strstr(r.out, "shipped 40 traces (0 already there)"));
    cli_run_free(&r);
    assert_int_equal(nats_stream_msgs(server.url, "DEJA_TRACES"), 40);
    ok(&r, pull);
    assert_non_null(strstr(r.out, "pulled 40 traces (40 new)"));
    cli_run_free(&r);
    assert_same_traces(store_a, b);
    ok(&r, verify);
    cli_run_free(&r);
    /* Idempotent: a second pull adds nothing; a second ship stores nothing new. */
    ok(&r, pull);
    assert_non_null(strstr(r.out, "pulled 40 traces (0 new), 0 blobs and 0 environments"));
    cli_run_free(&r);
    ok(&r, ship);
    cli_run_free(&r);
    assert_int_equal(nats_stream_msgs(server.url, "DEJA_TRACES"), 40);
}

static void test_fleet__pull_selects(void **state)
{
    const char *c = tmp_path("c.store");
    char *ids = ids_of(store_a);
    char prefix[27];
    cli_run r;
    (void)state;

    snprintf(prefix, sizeof prefix, "%.26s", ids); /* ids of one run share long prefixes */
    {
        const char *pull[] = {"--store", c, "pull", "--from", server.url, prefix, NULL};
        ok(&r, pull);
        if (strstr(r.out, "pulled 1 traces (1 new)") == NULL)
            fail_msg("%s: %s", prefix, r.out);
        cli_run_free(&r);
    }
    {
        const char *pull[] = {"--store", c, "pull", "--from", server.url, "--model", "nosuch", NULL};
        ok(&r, pull);
        assert_non_null(strstr(r.out, "pulled 0 traces"));
        cli_run_free(&r);
    }
    {
        const char *pull[] = {"--store", c,       "pull",   "--from", server.url,
                              "--model", "textgen", "--limit", "5",    NULL};
        ok(&r, pull);
        assert_non_null(strstr(r.out, "pulled 5 traces"));
        cli_run_free(&r);
    }
    free(ids);
}

/* SIGKILL a ship at random points, resume, and find every trace exactly once. */
static void test_fleet__killed_ship_resumes(void **state)
{
    const char *d = tmp_path("d.store");
    const char *e = tmp_path("e.store");
    const char *ship[] = {DEJA_BIN, "--store", d, "ship", "--to", server.url, "--batch", "4", NULL};
    const long long before = nats_stream_msgs(server.url, "DEJA_TRACES");
    cli_run r;
    (void)state;

    record(d, 240, 1000, NULL);
    srand((unsigned)time(NULL));
    for (int k = 0; k < 6; k++) {
        pid_t pid;
        int fd;

        fflush(NULL);
        pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            fd = open("/dev/null", O_WRONLY);
            dup2(fd, 1);
            dup2(fd, 2);
            execv(DEJA_BIN, (char *const *)ship);
            _exit(127);
        }
        nats_sleep_ms(5 + rand() % 120);
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    {
        const char *rest[] = {"--store", d, "ship", "--to", server.url, "--json", NULL};
        ok(&r, rest);
        cli_run_free(&r);
    }
    assert_int_equal(nats_stream_msgs(server.url, "DEJA_TRACES"), before + 240);
    /* Everything of d came through: pull all into e and compare d's traces. */
    {
        const char *pull[] = {"--store", e, "pull", "--from", server.url, NULL};
        ok(&r, pull);
        cli_run_free(&r);
    }
    {
        char *id_d = ids_of(d), *id_e = ids_of(e);
        size_t n = cli_count_lines(id_d);

        for (size_t i = 0; i < n; i++) {
            char *id = cli_line(id_d, i);
            assert_non_null(strstr(id_e, id));
            free(id);
        }
        free(id_d);
        free(id_e);
    }
}

/* Two hosts recording the same large input ship it once. */
static void test_fleet__same_blob_stored_once(void **state)
{
    const char *f1 = tmp_path("f1.store");
    const char *f2 = tmp_path("f2.store");
    const char *s1[] = {"--store", f1, "ship", "--to", server.url, "--json", NULL};
    const char *s2[] = {"--store", f2, "ship", "--to", server.url, "--json", NULL};
    char shared[4000];
    long long objects;
    cli_run r;
    json_t *j;
    (void)state;

    memset(shared, 0, sizeof shared);
    for (size_t k = 0; strlen(shared) + 40 < sizeof shared; k++)
        snprintf(shared + strlen(shared), sizeof shared - strlen(shared), "shared system prompt %zu. ", k);
    record(f1, 1, 5000, shared);
    record(f2, 1, 5000, shared);
    ok(&r, s1);
    cli_run_free(&r);
    objects = nats_stream_msgs(server.url, "DEJA_OBJECTS");
    ok(&r, s2);
    j = json_loads(r.out, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "traces")), 1);
    assert_int_equal(json_integer_value(json_object_get(j, "traces_present")), 0);
    json_decref(j);
    cli_run_free(&r);
    /* The second host's blob and environment were there already. */
    assert_int_equal(nats_stream_msgs(server.url, "DEJA_OBJECTS"), objects);
}

/* The chunks of `n` bytes at `p` cut from scratch, as the store cuts. */
static void full_cut(const uint8_t *p, size_t n, deja__cuts *out)
{
    out->n = 0;
    for (size_t off = 0; off < n;) {
        const size_t k = deja__store_cut(p + off, n - off);
        const deja_digest d = deja_digest_of(p + off, k);

        if (out->n == out->cap) {
            out->cap = out->cap ? out->cap * 2 : 64;
            out->c = realloc(out->c, out->cap * sizeof *out->c);
            assert_non_null(out->c);
        }
        out->c[out->n].size = (uint32_t)k;
        memcpy(out->c[out->n].digest, d.bytes, 16);
        out->n++;
        off += k;
    }
}

static void assert_cuts_equal(const deja__cuts *a, const deja__cuts *b)
{
    assert_int_equal(a->n, b->n);
    for (size_t i = 0; i < a->n; i++) {
        assert_int_equal(a->c[i].size, b->c[i].size);
        assert_memory_equal(a->c[i].digest, b->c[i].digest, 16);
    }
}

/* `n` bytes of words from `*seed`. */
static void words(uint8_t *p, size_t n, uint64_t *seed)
{
    static const char *const w[] = {"the ", "model ", "said ", "a ", "reply ", "of ", "user: ",
                                    "assistant: ", "when ", "which\n"};

    for (size_t i = 0; i < n;) {
        const char *x;

        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        x = w[*seed % 10];
        for (size_t j = 0; x[j] != '\0' && i < n; j++)
            p[i++] = (uint8_t)x[j];
    }
}

/* Cutting with the memory of earlier payloads gives the full cut, whatever
 * is remembered: a conversation that grows turn by turn (the reuse), its
 * turns out of order and shrinking, one that agrees with a remembered one
 * only up to the middle, one whose remembered chunk is longer than what is
 * left, and the same payload twice. */
static void test_fleet__cuts_reuse_gives_full_cut(void **state)
{
    enum { CAP = 64 * 1024 };
    uint8_t *convo = malloc(CAP), *other = malloc(CAP);
    deja__cutmemo memo = {0};
    deja__cuts got = {0}, want = {0};
    uint64_t seed = 7;
    size_t lens[40], reused = 0;
    (void)state;

    assert_non_null(convo);
    assert_non_null(other);
    words(convo, CAP, &seed);
    for (int k = 0; k < 40; k++) {
        lens[k] = 300 + (size_t)k * 1500 + (size_t)(seed % 400);
        seed = seed * 6364136223846793005u + 1;
        full_cut(convo, lens[k], &want);
        assert_int_equal(deja__cuts_of(&memo, convo, lens[k], &got), 0);
        assert_cuts_equal(&got, &want);
    }
    /* The reuse happened: the long turns were cut from their prefix. */
    assert_true(memo.reused > 100);
    reused = memo.reused;
    for (int k = 39; k >= 0; k -= 3) {
        full_cut(convo, lens[k], &want);
        assert_int_equal(deja__cuts_of(&memo, convo, lens[k], &got), 0);
        assert_cuts_equal(&got, &want);
    }
    /* The same start, other bytes from the middle on. */
    memcpy(other, convo, CAP);
    words(other + CAP / 2, CAP / 2, &seed);
    for (size_t n = CAP / 2 - 700; n <= CAP; n += 4093) {
        full_cut(other, n, &want);
        assert_int_equal(deja__cuts_of(&memo, other, n, &got), 0);
        assert_cuts_equal(&got, &want);
        full_cut(convo, n, &want);
        assert_int_equal(deja__cuts_of(&memo, convo, n, &got), 0);
        assert_cuts_equal(&got, &want);
    }
    /* One byte changed inside a chunk that would be reused. */
    other[5000] ^= 1;
    full_cut(other, 20000, &want);
    assert_int_equal(deja__cuts_of(&memo, other, 20000, &got), 0);
    assert_cuts_equal(&got, &want);
    assert_int_equal(deja__cuts_of(&memo, other, 20000, &got), 0);
    assert_cuts_equal(&got, &want);
    /* The same first bytes (the memory's key), other bytes just after. */
    memcpy(other, convo, CAP);
    words(other + 530, CAP - 530, &seed);
    for (int round = 0; round < 2; round++) {
        full_cut(other, 30000, &want);
        assert_int_equal(deja__cuts_of(&memo, other, 30000, &got), 0);
        assert_cuts_equal(&got, &want);
        full_cut(convo, 31000, &want);
        assert_int_equal(deja__cuts_of(&memo, convo, 31000, &got), 0);
        assert_cuts_equal(&got, &want);
    }
    /* Tiny payloads: one chunk, not remembered. */
    full_cut(convo, 100, &want);
    assert_int_equal(deja__cuts_of(&memo, convo, 100, &got), 0);
    assert_cuts_equal(&got, &want);
    assert_int_equal(got.n, 1);
    assert_true(memo.reused > reused);
    deja__cutmemo_free(&memo);
    free(got.c);
    free(want.c);
    free(convo);
    free(other);
}

/* How many blobs of `store` are stored as deltas. */
static size_t deltas_in(const char *store)
{
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_dbi dbi;
    MDB_val k, v;
    size_t n = 0;

    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 32), 0);
    assert_int_equal(mdb_env_open(env, store, MDB_RDONLY, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "blobs", 0, &dbi), 0);
    assert_int_equal(mdb_cursor_open(txn, dbi, &cur), 0);
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
        n += v.mv_size > 0 && ((const uint8_t *)v.mv_data)[0] == DEJA__DELTA_MAGIC;
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    mdb_env_close(env);
    return n;
}

/* Chat histories (each prompt the previous one and a new turn), which the
 * store keeps as deltas against the previous trace: shipped, pulled into a
 * fresh store, and shown byte for byte; shipping them again to the same
 * streams (another filter, so no position) adds no object. */
static void test_fleet__chat_deltas_round_trip(void **state)
{
    const char *c = tmp_path("chat.store");
    const char *d = tmp_path("chat-pulled.store");
    const char *req = tmp_path("chat.jsonl");
    const char *run[] = {"--store", c, "run", "--model", "textgen-v1", "--requests", req, NULL};
    const char *ship[] = {"--store", c, "ship", "--to", server.url, NULL};
    const char *since[] = {"--store", c, "ship", "--to", server.url, "--since", "@1", "--json",
                           NULL};
    const char *verify[] = {"--store", d, "verify", NULL};
    const char *pull[64] = {"--store", d, "pull", "--from", server.url};
    char *history = calloc(1, 64 * 1024), *ids;
    long long objects;
    cli_run r;
    json_t *j;
    FILE *fp = fopen(req, "w");
    (void)state;

    assert_non_null(fp);
    assert_non_null(history);
    /* Three conversations, their turns interleaved. */
    for (int turn = 0; turn < 12; turn++) {
        for (int conv = 0; conv < 3; conv++) {
            size_t n = 0;

            for (int t = 0; t <= turn; t++) {
                uint8_t words_[300];
                uint64_t s2 = (uint64_t)(conv * 1000 + t + 1) * 2654435761u;

                words(words_, sizeof words_, &s2);
                n += (size_t)snprintf(history + n, 64 * 1024 - n, "conversation %d turn %d: %.*s ",
                                      conv, t, (int)sizeof words_, (const char *)words_);
            }
            for (size_t i = 0; i < n; i++)
                if (history[i] == '\n' || history[i] == '"')
                    history[i] = ' ';
            fprintf(fp, "{\"inputs\": {\"prompt\": \"%s\"}, \"params\": {\"max_tokens\": 12}}\n",
                    history);
        }
    }
    fclose(fp);
    ok(&r, run);
    cli_run_free(&r);
    /* The histories past the inline limit are deltas, most of them. */
    assert_true(deltas_in(c) >= 15);
    ok(&r, ship);
    cli_run_free(&r);
    /* Pulled by id: the streams hold the other cases' traces too. */
    ids = ids_of(c);
    assert_int_equal(cli_count_lines(ids), 36);
    for (size_t i = 0; i < 36; i++)
        pull[5 + i] = cli_line(ids, i);
    ok(&r, pull);
    assert_non_null(strstr(r.out, "pulled 36 traces (36 new)"));
    cli_run_free(&r);
    for (size_t i = 0; i < 36; i++)
        free((char *)pull[5 + i]);
    free(ids);
    assert_same_traces(c, d);
    ok(&r, verify);
    cli_run_free(&r);
    objects = nats_stream_msgs(server.url, "DEJA_OBJECTS");
    /* Shipped again from scratch (another selection: no position): every
     * object and trace is there already, and the stream holds no more. */
    ok(&r, since);
    j = json_loads(r.out, 0, NULL);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "traces")), 36);
    assert_int_equal(json_integer_value(json_object_get(j, "traces_present")), 36);
    assert_int_equal(json_integer_value(json_object_get(j, "objects")),
                     json_integer_value(json_object_get(j, "objects_present")));
    json_decref(j);
    cli_run_free(&r);
    assert_int_equal(nats_stream_msgs(server.url, "DEJA_OBJECTS"), objects);
    free(history);
}

/* --follow ships what is recorded while it runs, and stops on SIGTERM. */
static void test_fleet__follow(void **state)
{
    const char *g = tmp_path("g.store");
    const char *out = tmp_path("follow.out");
    const char *args[] = {DEJA_BIN, "--store", g,     "ship",   "--to", server.url,
                          "--follow", "--poll", "50", NULL};
    const long long before = nats_stream_msgs(server.url, "DEJA_TRACES");
    pid_t pid;
    int status = 0;
    char *text;
    (void)state;

    record(g, 3, 7000, NULL);
    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(fd, 1);
        dup2(fd, 2);
        execv(DEJA_BIN, (char *const *)args);
        _exit(127);
    }
    for (int i = 0; i < 200 && nats_stream_msgs(server.url, "DEJA_TRACES") < before + 3; i++)
        nats_sleep_ms(50);
    record(g, 5, 7100, NULL);
    for (int i = 0; i < 200 && nats_stream_msgs(server.url, "DEJA_TRACES") < before + 8; i++)
        nats_sleep_ms(50);
    kill(pid, SIGTERM);
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(nats_stream_msgs(server.url, "DEJA_TRACES"), before + 8);
    text = cli_slurp(out, NULL);
    assert_non_null(text);
    assert_non_null(strstr(text, "lag "));
    assert_non_null(strstr(text, "shipped 8 traces (0 already there)"));
    free(text);
}

/* Wrong credentials and an unreachable server: one line, exit 2, the store
 * as it was (byte for byte), nothing created by pull. */
static void test_fleet__refused_and_unreachable(void **state)
{
    const char *h = tmp_path("h.store");
    const char *missing = tmp_path("never.store");
    const char *auth[] = {"--user", "deja", "--pass", "right-secret", NULL};
    nats_server locked = {0};
    char data[700], bad_url[128];
    char *before;
    size_t nb = 0, na = 0;
    cli_run r;
    (void)state;

    record(h, 2, 9000, NULL);
    assert_int_equal(nats_start(&locked, tmp_path("nats-auth"), auth), 0);
    snprintf(data, sizeof data, "%s/data.mdb", h);
    before = cli_slurp(data, &nb);
    assert_non_null(before);
    {
        const char *a[] = {"--store", h, "ship", "--to", locked.url, "--user", "deja",
                           "--password", "wrong-secret", NULL};
        assert_int_equal(cli_execv(&r, NULL, NULL, a), 0);
        assert_int_equal(r.status, 2);
        cli_assert_one_error(&r, "authentication refused");
        assert_null(strstr(r.err, "wrong-secret"));
        cli_run_free(&r);
    }
    /* Credentials in the URL are never printed either. */
    snprintf(bad_url, sizeof bad_url, "nats://deja:wrong-secret@127.0.0.1:%d", locked.port);
    {
        const char *a[] = {"--store", h, "ship", "--to", bad_url, NULL};
        assert_int_equal(cli_execv(&r, NULL, NULL, a), 0);
        assert_int_equal(r.status, 2);
        cli_assert_one_error(&r, "authentication refused");
        assert_null(strstr(r.err, "wrong-secret"));
        cli_run_free(&r);
    }
    {
        const char *a[] = {"--store", h, "ship", "--to", locked.url, "--user", "deja",
                           "--password", "right-secret", NULL};
        ok(&r, a);
        assert_non_null(strstr(r.out, "shipped 2 traces"));
        cli_run_free(&r);
    }
    nats_stop(&locked);
    {
        char *after = NULL;
        const char *a[] = {"--store", h, "ship", "--to", locked.url, "--timeout", "500", NULL};
        const char *p[] = {"--store", missing, "pull", "--from", locked.url, "--timeout", "500",
                           NULL};

        free(before);
        before = cli_slurp(data, &nb);
        assert_int_equal(cli_execv(&r, NULL, NULL, a), 0);
        assert_int_equal(r.status, 2);
        cli_assert_one_error(&r, "no server reachable");
        cli_run_free(&r);
        after = cli_slurp(data, &na);
        assert_int_equal(na, nb);
        assert_memory_equal(before, after, nb);
        free(after);
        assert_int_equal(cli_execv(&r, NULL, NULL, p), 0);
        assert_int_equal(r.status, 2);
        cli_assert_one_error(&r, "no server reachable");
        cli_run_free(&r);
        assert_false(cli_exists(missing));
    }
    free(before);
}

/* A 3-node cluster on loopback, streams replicated 3 times: one node is
 * killed while a ship runs; the ship goes on through the others and every
 * trace is there exactly once. */
static void test_fleet__cluster_node_killed_during_ship(void **state)
{
    const char *k = tmp_path("k.store");
    const char *l = tmp_path("l.store");
    nats_server node[3];
    char name[3][8], cport[3][40], routes[3][128], urls[256], dir[3][32];
    char *ids_k, *ids_l;
    pid_t pid;
    int status = 0;
    (void)state;

    memset(node, 0, sizeof node);
    for (int i = 0; i < 3; i++) {
        node[i].port = nats_free_port();
        node[i].cluster_port = nats_free_port();
    }
    for (int i = 0; i < 3; i++) {
        snprintf(name[i], sizeof name[i], "n%d", i);
        snprintf(cport[i], sizeof cport[i], "nats://127.0.0.1:%d", node[i].cluster_port);
        snprintf(routes[i], sizeof routes[i], "nats://127.0.0.1:%d,nats://127.0.0.1:%d",
                 node[(i + 1) % 3].cluster_port, node[(i + 2) % 3].cluster_port);
        snprintf(dir[i], sizeof dir[i], "cluster-%d", i);
    }
    for (int i = 0; i < 3; i++) {
        const char *extra[] = {"-n", name[i], "--cluster", cport[i], "--cluster_name", "deja",
                               "--routes", routes[i], NULL};
        assert_int_equal(nats_start(&node[i], tmp_path(dir[i]), extra), 0);
    }
    snprintf(urls, sizeof urls, "%s,%s,%s", node[0].url, node[1].url, node[2].url);
    record(k, 200, 20000, NULL);
    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        const char *args[] = {DEJA_BIN,    "--store", k,   "ship",      "--to", urls,
                              "--replicas", "3",      "--batch", "4", "--timeout", "2000",
                              NULL};
        int fd = open(tmp_path("cluster-ship.out"), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(fd, 1);
        dup2(fd, 2);
        execv(DEJA_BIN, (char *const *)args);
        _exit(127);
    }
    /* Kill a node once the ship has started publishing. */
    for (int i = 0; i < 400 && nats_stream_msgs(node[1].url, "DEJA_TRACES") < 20; i++)
        nats_sleep_ms(25);
    nats_stop_sig(&node[0], 1);
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        char *out = cli_slurp(tmp_path("cluster-ship.out"), NULL);
        char text[600];

        snprintf(text, sizeof text, "%s", out ? out : "?");
        free(out);
        fail_msg("ship through a lost node: %s", text);
    }
    {
        /* The survivors elect a new stream leader after the kill: on a
         * loaded machine the stream's info may not answer at once. */
        long n = -1;

        for (int i = 0; i < 100 && (n = nats_stream_msgs(node[1].url, "DEJA_TRACES")) < 0; i++)
            nats_sleep_ms(100);
        assert_int_equal(n, 200);
    }
    {
        char from[160];
        const char *pull[] = {"--store", l, "pull", "--from", from, NULL};
        cli_run r;

        snprintf(from, sizeof from, "%s,%s", node[1].url, node[2].url);
        ok(&r, pull);
        assert_non_null(strstr(r.out, "pulled 200 traces (200 new)"));
        cli_run_free(&r);
    }
    ids_k = ids_of(k);
    ids_l = ids_of(l);
    assert_string_equal(ids_k, ids_l);
    free(ids_k);
    free(ids_l);
    for (int i = 0; i < 3; i++)
        nats_stop(&node[i]);
}

/* Start `deja ship --batch 4` on `store` to `url` in the background, its
 * output to `out`. */
static pid_t start_ship(const char *store, const char *url, const char *out)
{
    const char *args[] = {DEJA_BIN, "--store", store,       "ship",  "--to", url,
                          "--batch", "4",    "--timeout", "1500", NULL};
    pid_t pid;

    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(fd, 1);
        dup2(fd, 2);
        execv(DEJA_BIN, (char *const *)args);
        _exit(127);
    }
    return pid;
}

/* Batches in flight when the server goes: ship publishes up to 8 batches
 * before their acknowledgements come. The server is frozen (SIGSTOP) once
 * the ship is under way, so that the ship fills its whole window with
 * batches nobody acknowledges, then killed and restarted: the ship goes
 * on and every trace is stored once. Then a ship is SIGKILLed while its
 * full window waits on a frozen server, and a resumed ship completes it:
 * nothing lost, nothing stored twice, the pull gives back every trace. */
static void test_fleet__window_in_flight_when_the_server_goes(void **state)
{
    const char *m = tmp_path("window.store");
    const char *n = tmp_path("window-pull.store");
    const char *out = tmp_path("window-ship.out");
    nats_server w;
    char *ids_m, *ids_n;
    pid_t pid;
    int status = 0;
    (void)state;

    memset(&w, 0, sizeof w);
    assert_int_equal(nats_start(&w, tmp_path("window-nats"), NULL), 0);
    record(m, 160, 30000, NULL);

    /* 1. Frozen, killed and restarted under a full window. */
    pid = start_ship(m, w.url, out);
    for (int i = 0; i < 400 && nats_stream_msgs(w.url, "DEJA_TRACES") < 12; i++)
        nats_sleep_ms(10);
    kill(w.pid, SIGSTOP);
    nats_sleep_ms(400);
    nats_stop_sig(&w, 1);
    assert_int_equal(nats_start(&w, tmp_path("window-nats"), NULL), 0);
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        char *text = cli_slurp(out, NULL);
        char msg[600];

        snprintf(msg, sizeof msg, "%s", text ? text : "?");
        free(text);
        fail_msg("ship through a restarted server: %s", msg);
    }
    assert_int_equal(nats_stream_msgs(w.url, "DEJA_TRACES"), 160);

    /* 2. A ship killed while its window waits on a frozen server. */
    record(m, 40, 31000, NULL);
    pid = start_ship(m, w.url, out);
    for (int i = 0; i < 400 && nats_stream_msgs(w.url, "DEJA_TRACES") < 164; i++)
        nats_sleep_ms(10);
    kill(w.pid, SIGSTOP);
    nats_sleep_ms(300);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    kill(w.pid, SIGCONT);
    pid = start_ship(m, w.url, out);
    waitpid(pid, &status, 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_int_equal(nats_stream_msgs(w.url, "DEJA_TRACES"), 200);
    {
        const char *pull[] = {"--store", n, "pull", "--from", w.url, NULL};
        cli_run r;

        ok(&r, pull);
        assert_non_null(strstr(r.out, "pulled 200 traces (200 new)"));
        cli_run_free(&r);
    }
    ids_m = ids_of(m);
    ids_n = ids_of(n);
    assert_string_equal(ids_m, ids_n);
    free(ids_m);
    free(ids_n);
    nats_stop(&w);
}

/* Start `deja worker` in the background with its cache `cache`. */
static pid_t start_worker(const char *cache, const char *prefetch)
{
    const char *args[] = {DEJA_BIN,     "--store",  cache,      "worker",     "--from",
                          server.url,   "--ack-wait", "1500",   "--prefetch", prefetch,
                          NULL};
    pid_t pid;

    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int fd = open("/dev/null", O_WRONLY);
        dup2(fd, 1);
        dup2(fd, 2);
        execv(DEJA_BIN, (char *const *)args);
        _exit(127);
    }
    return pid;
}

/* replay --via with three workers, one SIGKILLed while it holds jobs it has
 * not acknowledged: every trace gets exactly one verdict, the same verdicts
 * and exit status as a local replay. */
static void test_fleet__replay_via_workers_one_killed(void **state)
{
    const char *m = tmp_path("m.store");
    const char *out = tmp_path("via.out");
    const char *local[] = {"--store", m, "replay", "--model", "textgen-v4", "--repeat", "20",
                           "--json", NULL};
    const char *via[] = {DEJA_BIN, "--store", m,       "replay", "--model", "textgen-v4", "--repeat",
                         "20",     "--json",  "--via", server.url, NULL};
    long long pending = 0, delivered = 0;
    pid_t coord, a, b, c;
    int status = 0, killed = 0;
    char *got;
    cli_run r;
    (void)state;

    record(m, 40, 30000, NULL);
    assert_int_equal(cli_execv(&r, NULL, NULL, local), 0);
    assert_int_equal(r.status, 1); /* textgen-v4 diverges from v1 */
    a = start_worker(tmp_path("wa.cache"), "8");
    fflush(NULL);
    coord = fork();
    assert_true(coord >= 0);
    if (coord == 0) {
        int fd = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(fd, 1);
        execv(DEJA_BIN, (char *const *)via);
        _exit(127);
    }
    /* Freeze A while it holds unacknowledged jobs, then kill it. */
    for (int i = 0; i < 2000 && !killed; i++) {
        if (nats_consumer_counts(server.url, "DEJA_JOBS", "deja-workers", &pending,
                                 &delivered) == 0 &&
            pending >= 2) {
            kill(a, SIGSTOP);
            if (nats_consumer_counts(server.url, "DEJA_JOBS", "deja-workers", &pending,
                                     &delivered) == 0 &&
                pending >= 1) {
                kill(a, SIGKILL);
                killed = 1;
            } else {
                kill(a, SIGCONT);
            }
        }
        if (!killed)
            nats_sleep_ms(2);
    }
    assert_true(killed);
    waitpid(a, NULL, 0);
    b = start_worker(tmp_path("wb.cache"), "1");
    c = start_worker(tmp_path("wc.cache"), "2");
    waitpid(coord, &status, 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 1);
    got = cli_slurp(out, NULL);
    assert_non_null(got);
    /* One line per trace (then the summary object), the same as locally. */
    assert_true(cli_count_lines(r.out) >= 40);
    assert_string_equal(got, r.out);
    {
        size_t verdicts = 0;

        for (size_t i = 0; i < cli_count_lines(got); i++) {
            char *line = cli_line(got, i);
            verdicts += strncmp(line, "{\"id\":", 6) == 0;
            free(line);
        }
        assert_int_equal(verdicts, 40);
    }
    assert_int_equal(nats_consumer_counts(server.url, "DEJA_JOBS", "deja-workers", &pending,
                                          &delivered),
                     0);
    /* The killed worker's jobs went out again: more deliveries than jobs. */
    assert_true(delivered > 40);
    free(got);
    cli_run_free(&r);
    kill(b, SIGTERM);
    kill(c, SIGTERM);
    waitpid(b, &status, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    waitpid(c, &status, 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* A replay job carries its trace's record; a job without one (an older
 * coordinator's) still reads, and a cut record is refused. */
static void test_fleet__job_carries_the_trace(void **state)
{
    static const uint8_t record[] = {0x0a, 0x03, 'a', 'b', 'c', 0x10, 0x2a};
    deja__job j, back;
    deja__buf body = {0};

    (void)state;
    memset(&j, 0, sizeof j);
    j.index = 7;
    j.spec = "textgen-v1";
    j.trace_subject = "deja.traces.m.1.X";
    j.reply = "deja.results.R";
    j.opts.repeat = 2;
    j.trace = record;
    j.trace_size = sizeof record;
    assert_int_equal(deja__job_pack(&j, &body), 0);
    assert_int_equal(deja__job_unpack(body.data, body.size, &back), 0);
    assert_int_equal(back.index, 7);
    assert_string_equal(back.trace_subject, "deja.traces.m.1.X");
    assert_int_equal(back.opts.repeat, 2);
    assert_int_equal(back.trace_size, sizeof record);
    assert_memory_equal(back.trace, record, sizeof record);
    deja__job_free(&back);
    /* Cut inside the record: malformed. */
    assert_int_equal(deja__job_unpack(body.data, body.size - 1, &back), DEJA_ECORRUPT);
    /* Without a record: the worker fetches it. */
    j.trace = NULL;
    j.trace_size = 0;
    assert_int_equal(deja__job_pack(&j, &body), 0);
    assert_int_equal(deja__job_unpack(body.data, body.size, &back), 0);
    assert_null(back.trace);
    assert_int_equal(back.trace_size, 0);
    deja__job_free(&back);
    deja__buf_free(&body);
}

/* A ship to a cluster whose third node is not up yet waits for the
 * replicas to find room ("no suitable peers for placement" meanwhile) and
 * then ships everything, instead of failing at once. */
static void test_fleet__cluster_forming_waits_for_peers(void **state)
{
    const char *k = tmp_path("forming.store");
    nats_server node[3];
    char name[3][8], cport[3][40], routes[3][128], urls[256], dir[3][40];
    pid_t pid;
    int status = 0;
    (void)state;

    memset(node, 0, sizeof node);
    for (int i = 0; i < 3; i++) {
        node[i].port = nats_free_port();
        node[i].cluster_port = nats_free_port();
    }
    for (int i = 0; i < 3; i++) {
        snprintf(name[i], sizeof name[i], "f%d", i);
        snprintf(cport[i], sizeof cport[i], "nats://127.0.0.1:%d", node[i].cluster_port);
        snprintf(routes[i], sizeof routes[i], "nats://127.0.0.1:%d,nats://127.0.0.1:%d",
                 node[(i + 1) % 3].cluster_port, node[(i + 2) % 3].cluster_port);
        snprintf(dir[i], sizeof dir[i], "forming-%d", i);
    }
    for (int i = 0; i < 2; i++) {
        const char *extra[] = {"-n", name[i], "--cluster", cport[i], "--cluster_name", "forming",
                               "--routes", routes[i], NULL};
        assert_int_equal(nats_start(&node[i], tmp_path(dir[i]), extra), 0);
    }
    snprintf(urls, sizeof urls, "%s,%s", node[0].url, node[1].url);
    record(k, 10, 30000, NULL);
    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        const char *args[] = {DEJA_BIN, "--store", k, "ship", "--to", urls, "--replicas", "3",
                              "--timeout", "2000", NULL};
        int fd = open(tmp_path("forming-ship.out"), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        dup2(fd, 1);
        dup2(fd, 2);
        execv(DEJA_BIN, (char *const *)args);
        _exit(127);
    }
    /* Longer than the ship's timeout: it must still be waiting. */
    nats_sleep_ms(3000);
    {
        const char *extra[] = {"-n", name[2], "--cluster", cport[2], "--cluster_name", "forming",
                               "--routes", routes[2], NULL};
        assert_int_equal(nats_start(&node[2], tmp_path(dir[2]), extra), 0);
    }
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        char *out = cli_slurp(tmp_path("forming-ship.out"), NULL);
        char text[600];

        snprintf(text, sizeof text, "%s", out ? out : "?");
        free(out);
        for (int i = 0; i < 3; i++)
            nats_stop(&node[i]);
        fail_msg("ship to a forming cluster: %s", text);
    }
    {
        char *out = cli_slurp(tmp_path("forming-ship.out"), NULL);

        assert_non_null(out);
        assert_non_null(strstr(out, "shipped 10 traces"));
        free(out);
    }
    for (int i = 0; i < 3; i++)
        nats_stop(&node[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fleet__job_carries_the_trace),
        cmocka_unit_test(test_fleet__round_trip_is_byte_identical),
        cmocka_unit_test(test_fleet__pull_selects),
        cmocka_unit_test(test_fleet__killed_ship_resumes),
        cmocka_unit_test(test_fleet__same_blob_stored_once),
        cmocka_unit_test(test_fleet__cuts_reuse_gives_full_cut),
        cmocka_unit_test(test_fleet__chat_deltas_round_trip),
        cmocka_unit_test(test_fleet__follow),
        cmocka_unit_test(test_fleet__refused_and_unreachable),
        cmocka_unit_test(test_fleet__replay_via_workers_one_killed),
        cmocka_unit_test(test_fleet__cluster_node_killed_during_ship),
        cmocka_unit_test(test_fleet__window_in_flight_when_the_server_goes),
        cmocka_unit_test(test_fleet__cluster_forming_waits_for_peers),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
