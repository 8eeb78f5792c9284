/*
 * cli/cmd_import.c -- `deja import FILE`: verify a bundle, then add all it
 * holds to the store in one transaction.
 */
#include "cli_bundle.h"

#include <string.h>

static const char help[] =
    "usage: deja import FILE.deja [--json]\n"
    "\n"
    "Verify the bundle (checksum, sizes, every record, every digest and reference),\n"
    "then add its traces, blobs and environments to the store in one transaction:\n"
    "all or nothing. Trace ids are kept, so the id in a bug report stays valid;\n"
    "traces, blobs and environments already in the store are not stored twice, so\n"
    "importing the same bundle again changes nothing. A bundle is untrusted input:\n"
    "nothing in it is ever loaded or run, and nothing is written outside the store.\n"
    "Creates the store if needed (only once the bundle has been verified).\n"
    "\n"
    "  --json   print the counts as one JSON object\n"
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

/* `deja import`. */
int cmd_import(const cli_global *g, int argc, char **argv)
{
    deja_bundle_import_stats st;
    deja_store *store = NULL;
    const char *file;
    int json = 0;
    int ret = CLI_EXIT_TROUBLE;
    int rc;

    if (cli_options_json_only(argc, argv, help, &json, &ret) != 0)
        goto cleanup;
    if (argc - optind != 1) {
        ret = cli_usage_error(help, argc == optind ? "import: which bundle? give FILE.deja"
                                                   : "import: one bundle at a time");
        goto cleanup;
    }
    file = argv[optind];
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
    rc = deja_bundle_import(store, file, &st);
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
