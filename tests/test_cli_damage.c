/*
 * tests/test_cli_damage.c -- a damaged store: a few hundred copies of a real
 * store's data.mdb, each with one byte changed, and the read commands and
 * gc run on each by the real binary. None may crash or hang: each exits 0
 * (the byte did not matter), 1 (verify found problems) or 2 with a message
 * on stderr. Plus the cases a damaged or hostile store directory gives
 * (truncated, empty, symlinked files).
 */
#include "cli_harness.h"

#include <errno.h>
#include <signal.h>

#include "deja.h"
#include <sys/stat.h>

#define DAMAGES 300
#define HANG_SECONDS 20 /* far above any run; a hang is a hang */

static char tmp_root[] = "/tmp/deja-test-damage-XXXXXX";

static int group_setup(void **state)
{
    (void)state;
    return cli_group_begin(tmp_root);
}

static int group_teardown(void **state)
{
    (void)state;
    cli_rm_rf(tmp_root);
    return 0;
}

/* Run DEJA_BIN with `args` (NULL-terminated, argv[0] excluded), stdout and
 * stderr to files under tmp_root; kill it after HANG_SECONDS. The exit
 * status, 128 + signal when killed; -1 for a hang. `err` receives stderr. */
static int run_bounded(const char *const *args, char *err, size_t cap)
{
    const char *argv[16];
    const char *err_path = cli_tmp_path(tmp_root, "err.txt");
    size_t n = 0;
    int status = 0;
    pid_t pid;

    argv[n++] = DEJA_BIN;
    while (args[n - 1] != NULL && n < 15) {
        argv[n] = args[n - 1];
        n++;
    }
    argv[n] = NULL;
    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int out = open("/dev/null", O_WRONLY);
        int e = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (out < 0 || e < 0 || dup2(out, 1) < 0 || dup2(e, 2) < 0)
            _exit(126);
        execv(DEJA_BIN, (char *const *)argv);
        _exit(127);
    }
    for (long waited_ms = 0;; waited_ms += 5) {
        pid_t got = waitpid(pid, &status, WNOHANG);
        if (got == pid)
            break;
        if (waited_ms > HANG_SECONDS * 1000L) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        struct timespec ts = {0, 5000000};
        nanosleep(&ts, NULL);
    }
    {
        char *text = cli_slurp(err_path, NULL);
        snprintf(err, cap, "%s", text != NULL ? text : "");
        free(text);
    }
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

/* A real store: textgen traces, some with inputs large enough to be blobs
 * on overflow pages; `id` receives one trace id. */
static const char *make_store(char *id, size_t cap)
{
    const char *store = cli_tmp_path(tmp_root, "good.store");
    const char *reqs = cli_tmp_path(tmp_root, "reqs.jsonl");
    FILE *fp = fopen(reqs, "w");
    cli_run r;

    assert_non_null(fp);
    for (int i = 0; i < 40; i++) {
        fprintf(fp, "{\"inputs\": {\"prompt\": \"The fox %d ", i);
        for (int k = 0; k < (i % 4 == 0 ? 1500 : 3); k++)
            fprintf(fp, "w%d ", (k * 7 + i) % 97);
        fprintf(fp, "\"}, \"params\": {\"max_tokens\": %d}, \"tags\": {\"user\": \"u%d\"}}\n",
                4 + i % 5, i % 3);
    }
    assert_int_equal(fclose(fp), 0);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "run", "--model", "textgen-v1",
                              "--requests", reqs, NULL),
                     0);
    assert_int_equal(r.status, 0);
    cli_run_free(&r);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "ls", "--limit", "1", NULL), 0);
    assert_int_equal(r.status, 0);
    snprintf(id, cap, "%.26s", r.out);
    cli_run_free(&r);
    return store;
}

static void write_bytes(const char *path, const void *data, size_t n)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, n, fp), n);
    assert_int_equal(fclose(fp), 0);
}

static void test_cli_damage__single_bytes(void **state)
{
    (void)state;
    char id[32], err[4096];
    const char *good = make_store(id, sizeof id);
    char data_path[600], dir[512], file[600];
    size_t size = 0;
    uint8_t *orig, *copy;
    uint64_t x = 0x9E3779B97F4A7C15ull;
    int crashes = 0, hangs = 0, silent = 0, refused = 0, caught = 0;

    snprintf(data_path, sizeof data_path, "%s/data.mdb", good);
    orig = (uint8_t *)cli_slurp(data_path, &size);
    assert_non_null(orig);
    assert_true(size > 16384);
    copy = malloc(size);
    assert_non_null(copy);
    snprintf(dir, sizeof dir, "%s/damaged.store", tmp_root);
    snprintf(file, sizeof file, "%s/data.mdb", dir);
    for (int i = 0; i < DAMAGES; i++) {
        static const char *const cmds[][6] = {
            {"verify", NULL},
            {"ls", NULL},
            {"show", "ID", NULL},
            {"gc", "--dry-run", "--older-than", "0s", NULL},
            {"stats", NULL},
            {"gc", "--older-than", "0s", NULL},
            {"ls", "--tag", "user=u1", NULL},
            {"export", "-o", "OUT", NULL},
        };
        const char *const *cmd = cmds[i % (sizeof cmds / sizeof cmds[0])];
        const char *args[12] = {"--store", dir};
        size_t n = 2;
        const char *out_bundle = cli_tmp_path(tmp_root, "out.deja");

        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        /* Half the changes anywhere, half where LMDB's structure lives: a
         * page's header and node offsets, or the nodes at its end. */
        const uint64_t r = (x * 0x2545F4914F6CDD1Dull) >> 11;
        const size_t page = (size_t)(r % (size / 4096)) * 4096;
        const size_t off = i % 2 == 0 ? (size_t)(r % size)
                           : (r >> 40) % 2 ? page + (size_t)(r >> 20) % 48
                                           : page + 4095 - (size_t)(r >> 20) % 512;
        memcpy(copy, orig, size);
        copy[off] ^= (uint8_t)(1 + (x >> 56) % 255);
        cli_rm_rf(dir);
        assert_int_equal(mkdir(dir, 0700), 0);
        write_bytes(file, copy, size);
        unlink(out_bundle);
        for (size_t k = 0; cmd[k] != NULL; k++)
            args[n++] = strcmp(cmd[k], "ID") == 0 ? id : strcmp(cmd[k], "OUT") == 0 ? out_bundle
                                                                                    : cmd[k];
        args[n] = NULL;
        const int status = run_bounded(args, err, sizeof err);
        if (status < 0) {
            hangs++;
            print_message("hang: %s after byte %zu changed\n", cmd[0], off);
        } else if (status > 2) {
            crashes++;
            print_message("crash: %s exit %d after byte %zu changed: %s\n", cmd[0], status, off,
                          err);
        } else if (status != 0 && strncmp(err, "deja: ", 6) != 0) {
            silent++;
            print_message("no message: %s exit %d after byte %zu changed\n", cmd[0], status, off);
        } else if (status != 0) {
            refused++;
        }
        /* A fault turned into a message by the command's handler: verify and
         * gc check every page first and must never get there. */
        if (status == 2 && strstr(err, " while using it)") != NULL) {
            caught++;
            print_message("fault caught: %s after byte %zu changed\n", cmd[0], off);
            if (strcmp(cmd[0], "verify") == 0 || strcmp(cmd[0], "gc") == 0)
                crashes++;
        }
    }
    print_message("%d damaged stores: %d refused with a message (%d faults caught), %d crashes, "
                  "%d hangs\n",
                  DAMAGES, refused, caught, crashes, hangs);
    assert_int_equal(crashes, 0);
    assert_int_equal(hangs, 0);
    assert_int_equal(silent, 0);
    assert_true(refused > DAMAGES / 20); /* the damage was seen */
    free(copy);
    free(orig);
}

/* A copy of the good store (made by single_bytes) at `name`. */
static const char *copy_store(const char *name)
{
    const char *dst = cli_tmp_path(tmp_root, name);
    char cmd[1200];

    cli_rm_rf(dst);
    snprintf(cmd, sizeof cmd, "cp -r '%s' '%s'", cli_tmp_path(tmp_root, "good.store"), dst);
    assert_int_equal(system(cmd), 0);
    return dst;
}

/* A data.mdb cut short, or empty: a message before anything is mapped
 * (LMDB would fault reading past the end), for readers and writers. */
static void test_cli_damage__truncated_and_empty(void **state)
{
    (void)state;
    static const char *const cmds[][3] = {{"ls", NULL}, {"verify", NULL}, {"stats", NULL}};
    char err[4096], data[600], store[512];
    struct stat st;

    snprintf(store, sizeof store, "%s", copy_store("cut.store"));
    snprintf(data, sizeof data, "%s/data.mdb", store);
    assert_int_equal(stat(data, &st), 0);
    const off_t full = st.st_size;
    const off_t cuts[] = {8192, full / 4, full / 2, full - 4096, 0};
    for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
        assert_int_equal(truncate(data, cuts[c]), 0);
        for (size_t k = 0; k < sizeof cmds / sizeof cmds[0]; k++) {
            const char *args[] = {"--store", store, cmds[k][0], NULL};
            const int status = run_bounded(args, err, sizeof err);
            if (status != 2 || strncmp(err, "deja: ", 6) != 0 || strstr(err, "damaged") == NULL ||
                strstr(err, "while using it") != NULL)
                fail_msg("%s on data.mdb cut at %lld: exit %d, '%s'", cmds[k][0],
                         (long long)cuts[c], status, err);
            if (cuts[c] == 0 && strstr(err, "empty") == NULL)
                fail_msg("%s on an empty data.mdb: '%s'", cmds[k][0], err);
        }
    }
}

/* A lock.mdb or data.mdb that is a symbolic link is refused by every
 * command, and the link's target is left alone. */
static void test_cli_damage__symlinks_refused(void **state)
{
    (void)state;
    static const char *const files[] = {"lock.mdb", "data.mdb"};
    char err[4096], path[600], moved[600], target[512], store[512];

    snprintf(target, sizeof target, "%s", cli_tmp_path(tmp_root, "precious.txt"));
    for (size_t f = 0; f < 2; f++) {
        snprintf(store, sizeof store, "%s", copy_store("link.store"));
        snprintf(path, sizeof path, "%s/%s", store, files[f]);
        snprintf(moved, sizeof moved, "%s/%s.real", store, files[f]);
        assert_int_equal(cli_write_file(target, "precious\n"), 0);
        if (f == 0) {
            unlink(path);
            assert_int_equal(symlink(target, path), 0);
        } else {
            assert_int_equal(rename(path, moved), 0);
            assert_int_equal(symlink(moved, path), 0);
        }
        const char *ls[] = {"--store", store, "ls", NULL};
        const char *gc[] = {"--store", store, "gc", "--older-than", "0s", NULL};
        for (int k = 0; k < 2; k++) {
            const int status = run_bounded(k == 0 ? ls : gc, err, sizeof err);
            if (status != 2 || strstr(err, "symbolic link") == NULL)
                fail_msg("%s with %s a symlink: exit %d, '%s'", k == 0 ? "ls" : "gc", files[f],
                         status, err);
        }
        char *text = cli_slurp(target, NULL);
        assert_non_null(text);
        assert_string_equal(text, "precious\n");
        free(text);
    }
}

/* A new store is private unless asked otherwise; a bundle follows the
 * umask. */
static void test_cli_damage__modes(void **state)
{
    (void)state;
    const char *store = cli_tmp_path(tmp_root, "modes.store");
    const char *shared = cli_tmp_path(tmp_root, "shared.store");
    const char *bundle = cli_tmp_path(tmp_root, "modes.deja");
    const char *reqs = cli_tmp_path(tmp_root, "one.jsonl");
    char path[600];
    struct stat st;
    cli_run r;
    mode_t old = umask(022);

    assert_int_equal(cli_write_file(reqs, "{\"inputs\": {\"prompt\": \"hi\"}}\n"), 0);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "run", "--model", "textgen-v1",
                              "--requests", reqs, NULL),
                     0);
    assert_int_equal(r.status, 0);
    cli_run_free(&r);
    assert_int_equal(stat(store, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    snprintf(path, sizeof path, "%s/data.mdb", store);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    snprintf(path, sizeof path, "%s/lock.mdb", store);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* Every file of the store, the writers' lock included. */
    snprintf(path, sizeof path, "%s/writer.lock", store);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    setenv("DEJA_STORE_SHARED", "1", 1);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", shared, "run", "--model", "textgen-v1",
                              "--requests", reqs, NULL),
                     0);
    unsetenv("DEJA_STORE_SHARED");
    assert_int_equal(r.status, 0);
    cli_run_free(&r);
    assert_int_equal(stat(shared, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0755);
    snprintf(path, sizeof path, "%s/data.mdb", shared);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);
    snprintf(path, sizeof path, "%s/writer.lock", shared);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0644);

    umask(077);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "export", "-o", bundle, NULL), 0);
    assert_int_equal(r.status, 0);
    cli_run_free(&r);
    assert_int_equal(stat(bundle, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    umask(old);
}

/* A reader that cannot write lock.mdb still reads, with a warning. */
static void test_cli_damage__read_only_lock(void **state)
{
    (void)state;
    const char *store = cli_tmp_path(tmp_root, "shared.store"); /* made by modes */
    char path[600];
    cli_run r;
    pid_t pid;
    int status;

    snprintf(path, sizeof path, "%s/lock.mdb", store);
    assert_int_equal(chmod(path, 0444), 0);
    assert_int_equal(chmod(tmp_root, 0755), 0);
    fflush(NULL);
    pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* As root, permissions do not bind: become nobody. */
        if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
            _exit(3);
        if (cli_exec(&r, NULL, NULL, "--store", store, "ls", NULL) != 0)
            _exit(4);
        if (r.status != 0 || strstr(r.err, "without locks") == NULL || cli_count_lines(r.out) != 1)
            _exit(5);
        _exit(0);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    chmod(tmp_root, 0700);
    chmod(path, 0644);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

/* When commits fail (here: the file size limit, as a full disk would),
 * every printed id that was not committed is marked on stdout, and every
 * id not marked is in the store. */
static void test_cli_damage__failed_commits_marked(void **state)
{
    (void)state;
    char store[300], reqs[300], out_path[300], cmd[2048];
    uint64_t x = 12345;
    FILE *fp;

    snprintf(store, sizeof store, "%s", cli_tmp_path(tmp_root, "full.store"));
    snprintf(reqs, sizeof reqs, "%s", cli_tmp_path(tmp_root, "big.jsonl"));
    snprintf(out_path, sizeof out_path, "%s", cli_tmp_path(tmp_root, "full.out"));
    fp = fopen(reqs, "w");
    assert_non_null(fp);
    for (int i = 0; i < 200; i++) {
        fputs("{\"inputs\": {\"prompt\": \"", fp);
        for (int k = 0; k < 8000; k++) { /* incompressible: the limit is reached */
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            fputc('a' + (int)(x % 26), fp);
        }
        fputs("\"}}\n", fp);
    }
    assert_int_equal(fclose(fp), 0);
    snprintf(cmd, sizeof cmd,
             "trap '' XFSZ; ulimit -f 1024; %s --store %s run --model textgen-v1 --requests %s "
             ">%s 2>/dev/null",
             DEJA_BIN, store, reqs, out_path);
    const int status = system(cmd);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 2);
    char *out = cli_slurp(out_path, NULL);
    assert_non_null(out);
    size_t printed = 0, lost = 0, kept = 0;
    for (char *line = out; *line != '\0';) {
        char *end = strchr(line, '\n');
        char id[DEJA_ID_STRLEN + 1];
        if (end == NULL)
            break;
        *end = '\0';
        snprintf(id, sizeof id, "%.26s", line);
        if (strstr(line, "  not committed") != NULL) {
            lost++;
        } else {
            printed++;
            /* An id printed and not marked must be in the store (unless it
             * is marked further down). */
            char needle[64];
            snprintf(needle, sizeof needle, "%s  not committed", id);
            if (strstr(end + 1, needle) == NULL) {
                cli_run r;
                assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "show", id, NULL), 0);
                if (r.status != 0)
                    fail_msg("trace %s printed, not marked, not in the store: %s", id, r.err);
                cli_run_free(&r);
                kept++;
            }
        }
        line = end + 1;
    }
    print_message("%zu printed, %zu marked not committed, %zu kept\n", printed, lost, kept);
    assert_int_equal(printed, 200);
    assert_true(lost > 0);
    assert_int_equal(kept + lost, printed);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli_damage__single_bytes),
        cmocka_unit_test(test_cli_damage__truncated_and_empty),
        cmocka_unit_test(test_cli_damage__symlinks_refused),
        cmocka_unit_test(test_cli_damage__modes),
        cmocka_unit_test(test_cli_damage__read_only_lock),
        cmocka_unit_test(test_cli_damage__failed_commits_marked),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
