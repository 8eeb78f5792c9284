/*
 * store/budget.c -- the disk budget: what the store may use, what it uses,
 * and eviction when a writer finds it over.
 *
 * The budget lives in meta ("budget.max_bytes", "budget.protect_percent",
 * "budget.protect_tag"), so that every process writing the store honours
 * the same one. What it bounds is the pages the databases use; pages freed
 * by eviction go to LMDB's free list and are reused by the next writes, so
 * the file stops growing once the store has reached its budget (the slack
 * above it is documented in the README: free-list pages, and pages that a
 * long-lived reader keeps from reuse).
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "store/store_internal.h"

#define KEY_MAX "budget.max_bytes"
#define KEY_PERCENT "budget.protect_percent"
#define KEY_TAG "budget.protect_tag"
#define DEFAULT_PERCENT 25
#define DEFAULT_TAG "deja.keep"

/* The bytes of the pages the store's databases use, as seen by `txn`. The
 * list of databases is the one open_dbs() opens, and the main database that
 * names them. */
int deja__txn_used_bytes(deja_store *store, MDB_txn *txn, uint64_t *out)
{
    MDB_dbi dbis[12];
    size_t n = 0;
    MDB_dbi main_dbi;
    uint64_t pages = 0, psize = 0;
    int rc;

    *out = 0;
    rc = mdb_dbi_open(txn, NULL, 0, &main_dbi);
    if (rc != 0)
        return deja__mdb_error(rc, "opening the main database");
    dbis[n++] = main_dbi;
    dbis[n++] = store->meta;
    dbis[n++] = store->traces;
    dbis[n++] = store->blobs;
    dbis[n++] = store->envs;
    for (int i = 0; i < DEJA__IX_KINDS; i++)
        dbis[n++] = deja__ix_dbi(store, (deja__ix_kind)i);
    if (store->has_chunks)
        dbis[n++] = store->chunks;
    if (store->has_pins)
        dbis[n++] = store->pins;
    if (store->has_repeats)
        dbis[n++] = store->repeats;
    for (size_t i = 0; i < n; i++) {
        MDB_stat st;

        rc = mdb_stat(txn, dbis[i], &st);
        if (rc != 0)
            return deja__mdb_error(rc, "measuring the store");
        pages += st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages;
        psize = st.ms_psize;
    }
    /* Two meta pages head the file; the indexes' ids have pages that
     * mdb_stat does not count. */
    pages += deja__ix_extra_pages(store, txn, psize);
    *out = (pages + 2) * psize;
    return 0;
}

/* The string under meta `key` into `out` (`cap` bytes), or `def` when
 * absent or too long. */
static void meta_string(deja_store *store, MDB_txn *txn, const char *key, const char *def,
                        char *out, size_t cap)
{
    MDB_val k = {strlen(key), (void *)key}, v;

    if (mdb_get(txn, store->meta, &k, &v) == 0 && v.mv_size < cap) {
        memcpy(out, v.mv_data, v.mv_size);
        out[v.mv_size] = '\0';
        return;
    }
    snprintf(out, cap, "%s", def);
}

/* The number of pinned traces as seen by `txn`. */
static uint64_t pinned_count(deja_store *store, MDB_txn *txn)
{
    MDB_stat st;

    if (!store->has_pins || mdb_stat(txn, store->pins, &st) != 0)
        return 0;
    return st.ms_entries;
}

/* Read the budget and its figures; see deja.h. */
int deja_store_budget_get(deja_store *store, deja_budget *out)
{
    MDB_txn *txn = NULL;
    struct stat fs;
    char path[4096];
    int found = 0;
    uint64_t percent;
    MDB_val k = {strlen(KEY_PERCENT), (void *)KEY_PERCENT}, v;
    int rc;

    if (store == NULL || out == NULL)
        return deja__error_set(DEJA_EINVAL, "budget: no store or no output");
    memset(out, 0, sizeof *out);
    out->version = DEJA_BUDGET_VERSION;
    rc = deja__rtxn_begin(store, &txn);
    if (rc != 0)
        return rc;
    out->max_bytes = deja__meta_u64(store, txn, KEY_MAX);
    found = mdb_get(txn, store->meta, &k, &v) == 0;
    percent = found ? deja__meta_u64(store, txn, KEY_PERCENT) : DEFAULT_PERCENT;
    out->protect_percent = percent > 100 ? 100 : (unsigned)percent;
    meta_string(store, txn, KEY_TAG, DEFAULT_TAG, out->protect_tag, sizeof out->protect_tag);
    out->evicted = deja__meta_u64(store, txn, "count/evicted");
    out->evicted_bytes = deja__meta_u64(store, txn, "count/evicted_bytes");
    out->evictions = deja__meta_u64(store, txn, "count/evictions");
    out->pinned = pinned_count(store, txn);
    rc = deja__txn_used_bytes(store, txn, &out->used_bytes);
    deja__rtxn_end(store, txn);
    snprintf(path, sizeof path, "%s/data.mdb", store->path);
    if (rc == 0 && stat(path, &fs) == 0)
        out->file_bytes = (uint64_t)fs.st_size;
    return rc;
}

/* The write of deja_store_budget_set. */
static int budget_fill(deja__wtxn *w, void *payload)
{
    const deja_budget *b = payload;
    int rc = deja__wtxn_meta_put_u64(w, KEY_MAX, b->max_bytes);

    if (rc == 0)
        rc = deja__wtxn_meta_put_u64(w, KEY_PERCENT, b->protect_percent);
    if (rc == 0)
        rc = deja__wtxn_put(w, w->store->meta, KEY_TAG, strlen(KEY_TAG), b->protect_tag,
                            strlen(b->protect_tag), 0, "setting the budget");
    return rc;
}

/* Set the budget and enforce it once; see deja.h. */
int deja_store_budget_set(deja_store *store, const deja_budget *b)
{
    deja_budget set;
    size_t n;
    int rc;

    if (store == NULL || b == NULL)
        return deja__error_set(DEJA_EINVAL, "budget: no store or no budget");
    if (b->version != DEJA_BUDGET_VERSION)
        return deja__error_set(DEJA_EVERSION, "budget: version %u, this deja knows %d", b->version,
                               DEJA_BUDGET_VERSION);
    if (!store->writable)
        return deja__error_set(
            DEJA_EINVAL, "store '%s' is open read-only: setting a budget needs write", store->path);
    if (b->protect_percent > 100)
        return deja__error_set(DEJA_EINVAL, "protected share of %u %% is over 100 %%",
                               b->protect_percent);
    n = strnlen(b->protect_tag, sizeof b->protect_tag);
    if (n == sizeof b->protect_tag || n > DEJA__PROTECT_TAG_MAX)
        return deja__error_set(DEJA_EINVAL, "protect tag is over %d bytes", DEJA__PROTECT_TAG_MAX);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)b->protect_tag[i] < 0x20 || b->protect_tag[i] == 0x7f ||
            b->protect_tag[i] == '=')
            return deja__error_set(DEJA_EINVAL,
                                   "protect tag '%.*s' holds a control character or '='", (int)n,
                                   b->protect_tag);
    set = *b;
    rc = deja__store_check_or_fail(store, "budget");
    if (rc == 0)
        rc = deja__store_write(store, budget_fill, &set);
    if (rc == 0)
        rc = deja__store_budget_enforce(store, NULL);
    return rc;
}

/* Evict when over budget; see store/store.h. */
int deja__store_budget_enforce(deja_store *store, const deja_digest *keep_env)
{
    MDB_txn *txn = NULL;
    uint64_t max, used = 0, stored = 0, mark = 0;
    int rc;

    if (!store->writable)
        return 0;
    rc = deja__rtxn_begin(store, &txn);
    if (rc != 0)
        return rc;
    max = deja__meta_u64(store, txn, KEY_MAX);
    if (max > 0) {
        rc = deja__txn_used_bytes(store, txn, &used);
        stored = deja__meta_u64(store, txn, "count/stored_bytes");
        mark = deja__meta_u64(store, txn, DEJA__BUDGET_MARK);
    }
    deja__rtxn_end(store, txn);
    if (rc != 0 || max == 0 || used <= max)
        return rc;
    /* An eviction leaves holes in pages rather than free pages; the writes
     * after it fill them. So, once over, evict again only when as much new
     * data came in as the last eviction made room for (the data grew past
     * the mark by the low-water margin), or when the pages in use run past
     * the budget by DEJA__BUDGET_HARD percent all the same. */
    if (mark > 0 && stored <= mark / DEJA__BUDGET_LOW_WATER * 100 &&
        used <= max / 100 * (100 + DEJA__BUDGET_HARD))
        return 0;
    return deja__store_evict(store, max / 100 * DEJA__BUDGET_LOW_WATER, keep_env);
}

/* Walk the counters of meta; see deja.h. */
int deja_store_counters(deja_store *store, deja_counter_cb cb, void *payload)
{
    static const char prefix[] = "count/";
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    MDB_val k = {sizeof prefix - 1, (void *)prefix}, v;
    char name[128];
    int rc, mrc;

    if (store == NULL || cb == NULL)
        return deja__error_set(DEJA_EINVAL, "counters: no store or no callback");
    rc = deja__rtxn_begin(store, &txn);
    if (rc != 0)
        return rc;
    mrc = mdb_cursor_open(txn, store->meta, &cur);
    if (mrc != 0) {
        rc = deja__mdb_error(mrc, "listing counters");
        goto cleanup;
    }
    for (mrc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); mrc == 0;
         mrc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        const size_t n = k.mv_size - (sizeof prefix - 1);
        if (k.mv_size < sizeof prefix - 1 || memcmp(k.mv_data, prefix, sizeof prefix - 1) != 0)
            break;
        if (v.mv_size != 8 || n == 0 || n >= sizeof name)
            continue;
        memcpy(name, (const char *)k.mv_data + sizeof prefix - 1, n);
        name[n] = '\0';
        if (cb(name, deja__le64_get(v.mv_data), payload) != 0)
            break;
    }
    if (mrc != 0 && mrc != MDB_NOTFOUND)
        rc = deja__mdb_error(mrc, "listing counters");
cleanup:
    mdb_cursor_close(cur);
    deja__rtxn_end(store, txn);
    return rc;
}
