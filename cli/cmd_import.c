/*
 * cli/cmd_import.c -- `deja import FILE`: verify a bundle, then add all it
 * holds to the store in one transaction.
 */
#include "cli_bundle.h"
#include "cli_escape.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char help[] =
    "usage: deja import FILE.deja [--extract-plugins DIR] [--json]\n"
    "\n"
    "Verify the bundle (checksum, sizes, every record, every digest and reference),\n"
    "then add its traces, blobs and environments to the store in one transaction:\n"
    "all or nothing. Trace ids are kept, so the id in a bug report stays valid;\n"
    "traces, blobs and environments already in the store are not stored twice, so\n"
    "importing the same bundle again changes nothing. A bundle is untrusted input:\n"
    "nothing in it is ever loaded or run, and nothing is written outside the store\n"
    "but what --extract-plugins asks for. Creates the store if needed (only once the\n"
    "bundle has been verified).\n"
    "\n"
    "  --extract-plugins DIR  also write the plugin file the bundle carries (export\n"
    "                         --include-plugin) into DIR, created if needed; it is\n"
    "                         not run, not made executable, never written over an\n"
    "                         existing file, and a name with '/' or '..' is refused\n"
    "  --json                 print the counts as one JSON object\n"
    "\n"
    "Exit status: 0 imported, 2 trouble (a damaged or hostile bundle: the message says\n"
    "what is wrong and where; the store is left untouched).\n";

/* Print a library failure whose message already names the bundle. */
static int import_error(int code, const char *file)
{
    const char *msg = deja_error_last();

    if (msg != NULL && strstr(msg, "bundle '") == msg)
        return cli_error("%s", msg);
    return cli_lib_error(code, "import '%s'", file);
}

/* Write the plugin file the verified bundle `file` carries into `dir`.
 * Returns 0, or CLI_EXIT_TROUBLE after a message. */
static int extract_plugins(const char *file, const char *dir)
{
    deja_bundle_info *info = NULL;
    const deja_bundle_plugin *p;
    char path[4096];
    FILE *fp = NULL;
    deja_digest d;
    int fd = -1, ret = CLI_EXIT_TROUBLE, rc;

    rc = deja_bundle_verify(file, &info);
    if (rc != 0) {
        import_error(rc, file);
        goto cleanup;
    }
    p = info->plugin;
    if (p == NULL || p->data == NULL) {
        cli_error("import: bundle '%s' carries no plugin file (export --include-plugin puts "
                  "one in)",
                  file);
        goto cleanup;
    }
    if (p->file == NULL || p->file[0] == '\0' || strchr(p->file, '/') != NULL ||
        strstr(p->file, "..") != NULL || strcspn(p->file, "\x01\x02\x03\x04\x05\x06\x07\x08"
                                                        "\t\n\v\f\r\x0e\x0f\x10\x11\x12"
                                                        "\x13\x14\x15\x16\x17\x18\x19\x1a"
                                                        "\x1b\x1c\x1d\x1e\x1f\x7f") !=
                                                    strlen(p->file)) {
        cli_error("import: bundle '%s': refusing the plugin file name '%s' (a plain file name "
                  "is expected)",
                  file, p->file ? p->file : "");
        goto cleanup;
    }
    d = deja_digest_of(p->data, p->size);
    if (p->size != p->file_size || memcmp(&d, &p->file_digest, sizeof d) != 0) {
        cli_error("import: bundle '%s': the plugin file does not match its recorded digest",
                  file);
        goto cleanup;
    }
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        cli_error("import: cannot create '%s': %s", dir, strerror(errno));
        goto cleanup;
    }
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, p->file) >= sizeof path) {
        cli_error("import: the path '%s/%s' is too long", dir, p->file);
        goto cleanup;
    }
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) {
        cli_error("import: cannot write '%s': %s", path, strerror(errno));
        goto cleanup;
    }
    fp = fdopen(fd, "wb");
    if (fp == NULL || fwrite(p->data, 1, p->size, fp) != p->size || fflush(fp) != 0 ||
        fsync(fileno(fp)) != 0) {
        cli_error("import: cannot write '%s': %s", path, strerror(errno));
        unlink(path);
        goto cleanup;
    }
    fprintf(stderr, "deja: import: wrote the plugin %s (%s %s, not run)\n", path,
            p->model_name ? cli_term(p->model_name) : "?",
            p->model_version ? cli_term(p->model_version) : "?");
    ret = 0;

cleanup:
    if (fp != NULL)
        fclose(fp);
    else if (fd >= 0)
        close(fd);
    deja_bundle_info_free(info);
    return ret;
}

/* `deja import`. */
int cmd_import(const cli_global *g, int argc, char **argv)
{
    deja_bundle_import_stats st;
    deja_store *store = NULL;
    const char *file;
    int json = 0;
    int ret = CLI_EXIT_TROUBLE;
    int rc;

    static const struct option longopts[] = {
        CLI_LONGOPT_HELP,
        CLI_LONGOPT_JSON,
        {"extract-plugins", required_argument, NULL, CLI_OPT_FIRST_FREE},
        CLI_LONGOPT_END,
    };
    const char *extract = NULL;
    int first = 1, c;

    while ((c = cli_getopt_common(argc, argv, longopts, help, &first, &json, &ret)) != -1) {
        if (c == CLI_OPT_FIRST_FREE)
            extract = optarg;
        else
            goto cleanup; /* '?': after --help or a message */
    }
    if (argc - optind != 1) {
        ret = cli_usage_error(help, argc == optind ? "import: which bundle? give FILE.deja"
                                                   : "import: one bundle at a time");
        goto cleanup;
    }
    file = argv[optind];
    if (extract != NULL && extract_plugins(file, extract) != 0)
        goto cleanup;
    /* A store that does not exist yet is created only for a sound bundle. */
    rc = deja_store_open(&store, g->store, DEJA_STORE_READONLY);
    deja_store_close(store);
    store = NULL;
    if (rc == DEJA_ENOTFOUND) {
        rc = deja_bundle_verify(file, NULL);
        if (rc != 0) {
            import_error(rc, file);
            goto cleanup;
        }
    }
    rc = deja_store_open(&store, g->store, DEJA_STORE_WRITE);
    if (rc != 0) {
        cli_lib_error(rc, "store '%s'", g->store);
        goto cleanup;
    }
    {
        cli_progress bar;
        cli_progress_begin(&bar, "traces imported");
        rc = deja_bundle_import(store, file, &st);
        cli_progress_end(&bar);
    }
    if (rc != 0) {
        import_error(rc, file);
        goto cleanup;
    }
    if (json) {
        json_t *j = json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I}", "bundle", file, "traces",
                              (json_int_t)st.traces, "traces_added", (json_int_t)st.traces_added,
                              "blobs", (json_int_t)st.blobs, "blobs_added",
                              (json_int_t)st.blobs_added, "environments", (json_int_t)st.envs,
                              "environments_added", (json_int_t)st.envs_added);
        if (cli_json_print(j) < 0) {
            cli_error("out of memory printing the counts");
            goto cleanup;
        }
    } else {
        printf("imported %s (%llu already present), %s (%llu new), %s (%llu new)\n",
               cli_count(st.traces_added, "trace"),
               (unsigned long long)(st.traces - st.traces_added), cli_count(st.blobs, "blob"),
               (unsigned long long)st.blobs_added, cli_count(st.envs, "environment"),
               (unsigned long long)st.envs_added);
    }
    ret = CLI_EXIT_OK;

cleanup:
    deja_store_close(store);
    return ret;
}
