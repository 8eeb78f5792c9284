/*
 * tests/test_cli_diskfull.c -- a full disk, for real: a small tmpfs mounted
 * for the test (root only; skipped where mounting is not allowed). Creating
 * a store, recording into one and importing a bundle each fail with one
 * line naming "no space left on device" and exit status 2, and leave the
 * store as it was (it verifies, it holds what it held; a store that could
 * not be created leaves nothing behind).
 */
#include "cli_harness.h"

#include <errno.h>
#include <sys/mount.h>

#include "deja.h"

static char tmp_root[] = "/tmp/deja-test-diskfull-XXXXXX";
static char mnt[512];
static int mounted;

/* A tmpfs of 4 MiB at tmp_root/mnt, when this process may mount one. */
static int group_setup(void **state)
{
    (void)state;
    if (cli_group_begin(tmp_root) != 0)
        return -1;
    snprintf(mnt, sizeof mnt, "%s/mnt", tmp_root);
    if (mkdir(mnt, 0700) != 0)
        return -1;
    mounted = geteuid() == 0 && mount("deja-test", mnt, "tmpfs", 0, "size=4m,mode=0700") == 0;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (mounted)
        umount(mnt);
    cli_rm_rf(tmp_root);
    return 0;
}

/* Fill what is left of the tmpfs with mnt/filler-N, written until the
 * disk refuses. */
static void fill_disk(const char *name)
{
    char path[600], block[65536];
    size_t n = sizeof block;
    int fd;

    snprintf(path, sizeof path, "%s/%s", mnt, name);
    memset(block, 0x5a, sizeof block);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    while (n > 0) {
        const ssize_t w = write(fd, block, n);
        if (w < 0) {
            assert_int_equal(errno, ENOSPC);
            n /= 2; /* fill the last pages too */
        }
    }
    close(fd);
}

static void free_disk(const char *name)
{
    char path[600];

    snprintf(path, sizeof path, "%s/%s", mnt, name);
    assert_int_equal(unlink(path), 0);
}

/* Requests whose prompts are `len` incompressible letters. */
static const char *requests(const char *name, int count, int len)
{
    const char *path = cli_tmp_path(tmp_root, name);
    uint64_t x = 88172645463325252ull;
    FILE *fp = fopen(path, "w");

    assert_non_null(fp);
    for (int i = 0; i < count; i++) {
        fputs("{\"inputs\": {\"prompt\": \"", fp);
        for (int k = 0; k < len; k++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            fputc('a' + (int)(x % 26), fp);
        }
        fputs("\"}}\n", fp);
    }
    assert_int_equal(fclose(fp), 0);
    return path;
}

/* The number of traces `deja ls` lists in `store`. */
static size_t count_traces(const char *store)
{
    cli_run r;
    size_t n;

    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "ls", NULL), 0);
    assert_int_equal(r.status, 0);
    n = cli_count_lines(r.out);
    cli_run_free(&r);
    return n;
}

static void assert_verifies(const char *store)
{
    cli_run r;

    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "verify", NULL), 0);
    if (r.status != 0)
        fail_msg("verify: %s%s", r.out, r.err);
    cli_run_free(&r);
}

static void test_cli_diskfull__create_record_import(void **state)
{
    (void)state;
    char store[600], fresh[600], source[600];
    const char *few = requests("few.jsonl", 3, 200);
    const char *many = requests("many.jsonl", 60, 30000);
    const char *bundle = cli_tmp_path(tmp_root, "big.deja");
    cli_run r;

    if (!mounted)
        skip();
    snprintf(store, sizeof store, "%s/s.store", mnt);
    snprintf(fresh, sizeof fresh, "%s/fresh.store", mnt);
    snprintf(source, sizeof source, "%s", cli_tmp_path(tmp_root, "source.store"));

    /* A bundle too big for what will be left, made off the tmpfs. */
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", source, "run", "--model", "textgen-v1",
                              "--requests", many, NULL),
                     0);
    assert_int_equal(r.status, 0);
    cli_run_free(&r);
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", source, "export", "-o", bundle, NULL), 0);
    assert_int_equal(r.status, 0);
    cli_run_free(&r);

    /* A store with three traces, then nothing left on the disk. */
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "run", "--model", "textgen-v1",
                              "--requests", few, NULL),
                     0);
    assert_int_equal(r.status, 0);
    cli_run_free(&r);
    fill_disk("filler");

    /* Creating a store: refused, and nothing left behind. */
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", fresh, "run", "--model", "textgen-v1",
                              "--requests", few, NULL),
                     0);
    assert_int_equal(r.status, 2);
    cli_assert_one_error(&r, "no space left on device");
    cli_run_free(&r);
    assert_false(cli_exists(fresh));

    /* Recording: every trace refused is marked, the store is as it was. */
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "run", "--model", "textgen-v1",
                              "--requests", many, NULL),
                     0);
    assert_int_equal(r.status, 2);
    cli_assert_one_error(&r, "no space left on device");
    assert_non_null(strstr(r.out, "  not committed\n"));
    cli_run_free(&r);
    assert_verifies(store);
    assert_int_equal(count_traces(store), 3);

    /* Importing: all or nothing. */
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "import", bundle, NULL), 0);
    assert_int_equal(r.status, 2);
    cli_assert_one_error(&r, "no space left on device");
    cli_run_free(&r);
    assert_verifies(store);
    assert_int_equal(count_traces(store), 3);

    /* With room again, the same store takes the bundle. */
    free_disk("filler");
    assert_int_equal(cli_exec(&r, NULL, NULL, "--store", store, "import", bundle, NULL), 0);
    assert_int_equal(r.status, 0);
    cli_run_free(&r);
    assert_int_equal(count_traces(store), 63);
    assert_verifies(store);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cli_diskfull__create_record_import),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
