/*
 * store/pagecheck.c -- checking the structure of a store's data.mdb before
 * LMDB is trusted with it.
 *
 * LMDB trusts its pages: a damaged page number, node offset or overflow
 * count makes it read out of bounds, loop, or write over the heap. This
 * walk reads the file itself (pread, no mapping, no LMDB) from the newest
 * meta page through every named database and the free list, and checks
 * every page it reaches: inside the file, numbered as it is placed, of the
 * kind its parent expects, header bounds and node offsets inside the page,
 * keys in strictly increasing order, overflow runs inside the file, leaves
 * at the depth the database records, counts equal to what the database
 * records, and no page reached twice. Only what the walk accepts is handed
 * to LMDB by verify and gc.
 *
 * The layout read here is LMDB 0.9's on-disk format (lmdb's mdb.c: MDB_page,
 * MDB_node, MDB_meta, MDB_db), stable since 2012 and the same for every
 * 0.9.x on 64-bit little-endian machines.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store_internal.h"

#define PAGEHDRSZ 16
#define NODESIZE 8
#define META_MAGIC 0xBEEFC0DEu
#define META_VERSION 1u
#define P_BRANCH 0x01
#define P_LEAF 0x02
#define P_OVERFLOW 0x04
#define P_META 0x08
#define F_BIGDATA 0x01
#define F_SUBDATA 0x02
#define F_DUPDATA 0x04
#define P_LEAF2 0x20 /* packed keys of one size (a DUPFIXED database's ids) */
#define P_SUBP 0x40  /* a sub-page: the duplicates of one key, inside its node */
#define DB_DUPSORT 0x04
#define DB_DUPFIXED 0x10
#define DB_SIZE 48 /* MDB_db */
#define P_INVALID UINT64_MAX
#define MAX_DEPTH 32 /* LMDB's cursor stack */
#define MIN_PAGE 512
#define MAX_PAGE 65536

/* An MDB_db record, decoded. */
typedef struct db_rec {
    uint32_t pad; /* the key size of a DUPFIXED database's packed pages */
    uint16_t flags, depth;
    uint64_t branch, leaf, overflow, entries, root;
} db_rec;

typedef struct walker {
    int fd;
    uint64_t psize, npages;
    uint8_t *seen; /* one bit per page */
    uint8_t **pages; /* one buffer per tree level */
    uint64_t *extents; /* scratch: the nodes of one page, offset << 32 | end */
    const char *path;
    char lines[8][512]; /* the first problems, delivered once the walk is known sound */
    int problems;
    /* counted while walking one database */
    uint64_t branch, leaf, overflow, entries;
    int intkey; /* the database's keys are native unsigned integers (the free list's txn ids) */
    int dupsort; /* the database's keys hold duplicates (store/ix.h) */
    unsigned ksize;  /* walking a DUPFIXED key's duplicates: their size, else 0 */
    unsigned depth0; /* the level (page buffer) the tree being walked starts at */
    unsigned level;  /* the first level (page buffer) free below the tree walked */
    const char *what; /* the database walked */
} walker;

static uint16_t le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
    return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32;
}

static void db_decode(const uint8_t *p, db_rec *d)
{
    d->pad = le32(p);
    d->flags = le16(p + 4);
    d->depth = le16(p + 6);
    d->branch = le64(p + 8);
    d->leaf = le64(p + 16);
    d->overflow = le64(p + 24);
    d->entries = le64(p + 32);
    d->root = le64(p + 40);
}

/* Report one problem ("page N: ..."); returns -1 so callers can stop. */
static int bad(walker *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad(walker *w, const char *fmt, ...)
{
    char line[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (w->problems < 8)
        snprintf(w->lines[w->problems], sizeof w->lines[0], "%s", line);
    w->problems++;
    return -1;
}

/* Read page `pgno` into `buf`; -1 (reported) when it cannot be. */
static int read_page(walker *w, uint64_t pgno, uint8_t *buf, const char *what)
{
    ssize_t got;

    if (pgno >= w->npages)
        return bad(w, "store damaged at page %llu (%s): beyond the last page %llu",
                   (unsigned long long)pgno, what, (unsigned long long)w->npages - 1);
    got = pread(w->fd, buf, w->psize, (off_t)(pgno * w->psize));
    if (got != (ssize_t)w->psize)
        return bad(w, "store damaged at page %llu (%s): cannot be read: %s",
                   (unsigned long long)pgno, what, got < 0 ? strerror(errno) : "short file");
    if (le64(buf) != pgno)
        return bad(w, "store damaged at page %llu (%s): the page says it is page %llu",
                   (unsigned long long)pgno, what, (unsigned long long)le64(buf));
    return 0;
}

/* Mark `n` pages from `pgno` seen; -1 (reported) when one already was. */
static int mark(walker *w, uint64_t pgno, uint64_t n, const char *what)
{
    if (pgno >= w->npages || n > w->npages - pgno)
        return bad(w, "store damaged at page %llu (%s): a run of %llu pages ends past the file",
                   (unsigned long long)pgno, what, (unsigned long long)n);
    for (uint64_t i = pgno; i < pgno + n; i++) {
        if (w->seen[i / 8] & (1u << (i % 8)))
            return bad(w, "store damaged at page %llu (%s): reached twice",
                       (unsigned long long)i, what);
        w->seen[i / 8] |= (uint8_t)(1u << (i % 8));
    }
    return 0;
}

/* Check the overflow run at `pgno` holding `size` bytes. */
static int check_overflow(walker *w, uint64_t pgno, uint64_t size, uint8_t *buf, const char *what)
{
    uint64_t need = (PAGEHDRSZ + size + w->psize - 1) / w->psize;
    uint32_t pages;

    if (read_page(w, pgno, buf, what) != 0)
        return -1;
    pages = le32(buf + 12);
    if ((le16(buf + 10) & P_OVERFLOW) == 0 || pages < need)
        return bad(w, "store damaged at page %llu (%s): not an overflow run of %llu pages",
                   (unsigned long long)pgno, what, (unsigned long long)need);
    w->overflow += pages;
    return mark(w, pgno, pages, what);
}

/* A node of page `p` (offset `off`), bounded: its key, data size and
 * flags. Returns -1 (reported) when it does not fit in the page. */
typedef struct node {
    const uint8_t *key;
    size_t ksize;
    uint64_t dsize; /* leaf: data size; branch: child page */
    uint16_t flags;
    const uint8_t *data;
} node;

static int node_at(walker *w, const uint8_t *p, uint64_t pgno, size_t i, int leaf, node *n,
                   const char *what)
{
    const uint16_t off = le16(p + PAGEHDRSZ + 2 * i);
    const uint16_t upper = le16(p + 14);
    const uint8_t *q;

    if (off < upper || (uint64_t)off + NODESIZE > w->psize)
        return bad(w, "store damaged at page %llu (%s): node %zu at offset %u is outside the page",
                   (unsigned long long)pgno, what, i, off);
    q = p + off;
    n->dsize = (uint64_t)le16(q) | (uint64_t)le16(q + 2) << 16;
    n->flags = le16(q + 4);
    n->ksize = le16(q + 6);
    n->key = q + NODESIZE;
    n->data = n->key + n->ksize;
    if (!leaf) {
        n->dsize |= (uint64_t)n->flags << 32;
        if ((uint64_t)off + NODESIZE + n->ksize > w->psize)
            return bad(w, "store damaged at page %llu (%s): node %zu's key runs off the page",
                       (unsigned long long)pgno, what, i);
        return 0;
    }
    {
        uint64_t dlen = n->flags & F_BIGDATA ? 8 : n->flags & F_SUBDATA ? DB_SIZE : n->dsize;
        const uint16_t dup = w->dupsort ? F_DUPDATA : 0;
        if ((n->flags & ~(F_BIGDATA | F_SUBDATA | dup)) != 0 ||
            (n->flags & (F_BIGDATA | F_SUBDATA)) == (F_BIGDATA | F_SUBDATA) ||
            ((n->flags & F_DUPDATA) && (n->flags & F_BIGDATA)) ||
            ((n->flags & F_SUBDATA) && n->dsize != DB_SIZE))
            return bad(w, "store damaged at page %llu (%s): node %zu has flags 0x%x",
                       (unsigned long long)pgno, what, i, n->flags);
        if ((uint64_t)off + NODESIZE + n->ksize + dlen > w->psize)
            return bad(w, "store damaged at page %llu (%s): node %zu runs off the page",
                       (unsigned long long)pgno, what, i);
    }
    return 0;
}

/* MDB_INTEGERKEY, in a database record's flags. */
#define DB_INTEGERKEY 0x08

/* The order of two keys: memcmp, shorter first on a tie (LMDB's default);
 * for an MDB_INTEGERKEY database (the free list, keyed by transaction id),
 * native unsigned integers of 4 or 8 bytes. */
static int key_cmp(const walker *w, const uint8_t *a, size_t na, const uint8_t *b, size_t nb)
{
    if (w->intkey && na == nb && (na == 4 || na == 8)) {
        uint64_t x = 0, y = 0;

        for (size_t i = na; i-- > 0;) {
            x = x << 8 | a[i];
            y = y << 8 | b[i];
        }
        return (x > y) - (x < y);
    }
    const int c = memcmp(a, b, na < nb ? na : nb);
    return c != 0 ? c : (na > nb) - (na < nb);
}

typedef int (*leaf_fn)(walker *w, const node *n, uint64_t pgno, void *payload);

static int extent_cmp(const void *a, const void *b)
{
    const uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

    return (x > y) - (x < y);
}

/* The `nkeys` nodes of page `p` do not overlap: a damaged data size that
 * keeps a node inside the page but over its neighbour would have LMDB
 * move bytes across both when it deletes or updates it. */
static int check_extents(walker *w, const uint8_t *p, uint64_t pgno, size_t nkeys, int leaf,
                         const char *what)
{
    for (size_t i = 0; i < nkeys; i++) {
        const uint16_t off = le16(p + PAGEHDRSZ + 2 * i);
        node n;
        uint64_t len;

        if (node_at(w, p, pgno, i, leaf, &n, what) != 0)
            return -1;
        len = NODESIZE + n.ksize;
        if (leaf)
            len += n.flags & F_BIGDATA ? 8 : n.flags & F_SUBDATA ? DB_SIZE : n.dsize;
        w->extents[i] = (uint64_t)off << 32 | (off + len);
    }
    qsort(w->extents, nkeys, sizeof *w->extents, extent_cmp);
    for (size_t i = 1; i < nkeys; i++)
        if ((w->extents[i - 1] & 0xffffffffu) > w->extents[i] >> 32)
            return bad(w, "store damaged at page %llu (%s): its nodes overlap",
                       (unsigned long long)pgno, what);
    return 0;
}

/* The `nkeys` keys of w->ksize bytes packed after the header of the
 * LEAF2 page `p` (`size` bytes, `upper` its header's bound): inside it,
 * and in strictly increasing order. */
static int packed_keys(walker *w, const uint8_t *p, uint64_t pgno, size_t nkeys, uint16_t upper,
                       uint64_t size, const char *what)
{
    const size_t k = w->ksize;

    if (PAGEHDRSZ + (uint64_t)nkeys * k > size ||
        (uint64_t)(upper > size ? 0 : size - upper) + (uint64_t)nkeys * 2 != (uint64_t)nkeys * k)
        return bad(w, "store damaged at page %llu (%s): %zu keys of %zu bytes do not fit",
                   (unsigned long long)pgno, what, nkeys, k);
    for (size_t i = 1; i < nkeys; i++)
        if (memcmp(p + PAGEHDRSZ + (i - 1) * k, p + PAGEHDRSZ + i * k, k) >= 0)
            return bad(w, "store damaged at page %llu (%s): keys out of order at key %zu",
                       (unsigned long long)pgno, what, i);
    return 0;
}

/* Walk the subtree at `pgno`, `level` levels below the root of a tree of
 * `depth` levels; `leaf_cb` sees each leaf node. */
static int walk(walker *w, uint64_t pgno, unsigned level, unsigned depth, const char *what,
                leaf_fn leaf_cb, void *payload)
{
    uint8_t *p = w->pages[level];
    uint16_t flags, lower, upper;
    size_t nkeys;
    const uint8_t *prev = NULL;
    size_t prev_len = 0;
    int rc = 0;

    if (level >= depth || level >= MAX_DEPTH)
        return bad(w, "store damaged at page %llu (%s): deeper than the %u levels recorded",
                   (unsigned long long)pgno, what, depth - w->depth0);
    if (read_page(w, pgno, p, what) != 0 || mark(w, pgno, 1, what) != 0)
        return -1;
    flags = le16(p + 10);
    lower = le16(p + 12);
    upper = le16(p + 14);
    const int leaf = level + 1 == depth;
    if ((flags & (P_BRANCH | P_LEAF | P_OVERFLOW | P_META | P_LEAF2 | P_SUBP)) !=
        (leaf ? P_LEAF | (w->ksize ? P_LEAF2 : 0) : P_BRANCH))
        return bad(w, "store damaged at page %llu (%s): flags 0x%x, expected a %s page",
                   (unsigned long long)pgno, what, flags, leaf ? "leaf" : "branch");
    if (lower < PAGEHDRSZ || lower > upper || upper > w->psize || (lower - PAGEHDRSZ) % 2 != 0)
        return bad(w, "store damaged at page %llu (%s): bounds %u..%u", (unsigned long long)pgno,
                   what, lower, upper);
    nkeys = (size_t)(lower - PAGEHDRSZ) / 2;
    if (nkeys == 0)
        return bad(w, "store damaged at page %llu (%s): %zu keys", (unsigned long long)pgno,
                   what, nkeys);
    if (leaf && w->ksize) {
        w->leaf++;
        w->entries += nkeys;
        return packed_keys(w, p, pgno, nkeys, upper, w->psize, what);
    }
    if (check_extents(w, p, pgno, nkeys, leaf, what) != 0)
        return -1;
    if (leaf)
        w->leaf++;
    else
        w->branch++;
    for (size_t i = 0; i < nkeys && rc == 0; i++) {
        node n;
        if (node_at(w, p, pgno, i, leaf, &n, what) != 0)
            return -1;
        /* A branch's first key is implicit (LMDB keeps it empty). */
        if ((leaf || i > 0) && prev != NULL && key_cmp(w, prev, prev_len, n.key, n.ksize) >= 0)
            return bad(w, "store damaged at page %llu (%s): keys out of order at node %zu",
                       (unsigned long long)pgno, what, i);
        if (leaf || i > 0) {
            prev = n.key;
            prev_len = n.ksize;
        }
        if (leaf) {
            w->entries++;
            rc = leaf_cb != NULL ? leaf_cb(w, &n, pgno, payload) : 0;
        } else {
            rc = walk(w, n.dsize, level + 1, depth, what, leaf_cb, payload);
            /* The child overwrote deeper buffers only: `p` is intact. */
        }
    }
    return rc;
}

/* Walk one database whose record is `d`; `leaf_cb` sees each leaf node. */
static int walk_db(walker *w, const db_rec *d, const char *what, leaf_fn leaf_cb, void *payload)
{
    int rc;

    w->branch = w->leaf = w->overflow = w->entries = 0;
    w->intkey = (d->flags & DB_INTEGERKEY) != 0;
    w->dupsort = (d->flags & DB_DUPSORT) != 0;
    w->ksize = 0;
    w->depth0 = 0;
    if (d->root == P_INVALID) {
        if (d->depth != 0 || d->entries != 0 || d->branch || d->leaf || d->overflow)
            return bad(w, "store damaged: database %s is empty but records %llu entries", what,
                       (unsigned long long)d->entries);
        return 0;
    }
    if (d->depth == 0 || d->depth > MAX_DEPTH)
        return bad(w, "store damaged: database %s records a depth of %u", what, d->depth);
    w->level = d->depth;
    w->what = what;
    rc = walk(w, d->root, 0, d->depth, what, leaf_cb, payload);
    if (rc != 0)
        return rc;
    if (w->branch != d->branch || w->leaf != d->leaf || w->overflow != d->overflow ||
        w->entries != d->entries)
        return bad(w,
                   "store damaged: database %s records %llu entries in %llu/%llu/%llu pages, "
                   "holds %llu in %llu/%llu/%llu",
                   what, (unsigned long long)d->entries, (unsigned long long)d->branch,
                   (unsigned long long)d->leaf, (unsigned long long)d->overflow,
                   (unsigned long long)w->entries, (unsigned long long)w->branch,
                   (unsigned long long)w->leaf, (unsigned long long)w->overflow);
    return 0;
}

/* The duplicates of a key in a sub-page (node `n` on page `pgno`): a
 * page header then, DUPFIXED, the packed ids; they add to the entries. */
static int check_subpage(walker *w, const node *n, uint64_t pgno, const char *what)
{
    const uint8_t *p = n->data;
    uint16_t flags, lower, upper;
    size_t nkeys;

    if (n->dsize < PAGEHDRSZ)
        return bad(w, "store damaged at page %llu (%s): a sub-page of %llu bytes",
                   (unsigned long long)pgno, what, (unsigned long long)n->dsize);
    flags = le16(p + 10);
    lower = le16(p + 12);
    upper = le16(p + 14);
    /* LMDB leaves P_DIRTY (0x10) on the sub-pages it copies into nodes. */
    if ((flags & ~(P_LEAF2 | 0x10)) != (P_LEAF | P_SUBP) || lower < PAGEHDRSZ || lower > upper ||
        upper > n->dsize || (lower - PAGEHDRSZ) % 2 != 0 || lower == PAGEHDRSZ)
        return bad(w, "store damaged at page %llu (%s): a sub-page with flags 0x%x, bounds %u..%u",
                   (unsigned long long)pgno, what, flags, lower, upper);
    nkeys = (size_t)(lower - PAGEHDRSZ) / 2;
    w->entries += nkeys - 1; /* the node itself was counted */
    if (!(flags & P_LEAF2))
        return 0; /* nodes of a DUPSORT database without DUPFIXED: deja writes none */
    w->ksize = le16(p + 8);
    if (w->ksize == 0) {
        w->ksize = 0;
        return bad(w, "store damaged at page %llu (%s): a sub-page of keys of 0 bytes",
                   (unsigned long long)pgno, what);
    }
    const int rc = packed_keys(w, p, pgno, nkeys, upper, n->dsize, what);
    w->ksize = 0;
    return rc;
}

/* The duplicates of a key in a tree of their own (node `n` on page `pgno`
 * of a tree whose pages use levels below `level`): walked like a database,
 * its counts checked against its record; they add to the entries. */
static int check_subdb(walker *w, const node *n, uint64_t pgno, unsigned level, const char *what)
{
    const uint64_t branch = w->branch, leaf = w->leaf, overflow = w->overflow,
                   entries = w->entries;
    const unsigned depth0 = w->depth0;
    db_rec d;
    int rc;

    db_decode(n->data, &d);
    if (d.root == P_INVALID || d.depth == 0 || d.entries == 0 || level + d.depth > MAX_DEPTH ||
        (d.flags & DB_DUPFIXED && (d.pad == 0 || d.pad > w->psize / 4)))
        return bad(w, "store damaged at page %llu (%s): duplicates with root %llu, depth %u",
                   (unsigned long long)pgno, what, (unsigned long long)d.root, d.depth);
    w->branch = w->leaf = w->overflow = w->entries = 0;
    w->ksize = d.flags & DB_DUPFIXED ? d.pad : 0;
    w->depth0 = level;
    w->dupsort = 0;
    rc = walk(w, d.root, level, level + d.depth, what, NULL, NULL);
    if (rc == 0 && (w->branch != d.branch || w->leaf != d.leaf || w->overflow != d.overflow ||
                    w->entries != d.entries))
        rc = bad(w, "store damaged at page %llu (%s): duplicates record %llu entries, hold %llu",
                 (unsigned long long)pgno, what, (unsigned long long)d.entries,
                 (unsigned long long)w->entries);
    w->branch = branch;
    w->leaf = leaf;
    w->overflow = overflow;
    w->entries = entries + (rc == 0 ? d.entries - 1 : 0);
    w->ksize = 0;
    w->depth0 = depth0;
    w->dupsort = 1;
    return rc;
}

/* Leaf callback of a named database: overflow runs, duplicates. */
static int data_leaf(walker *w, const node *n, uint64_t pgno, void *payload)
{
    if (n->flags & F_BIGDATA)
        return check_overflow(w, le64(n->data), n->dsize, payload, "a value");
    if ((n->flags & (F_DUPDATA | F_SUBDATA)) == (F_DUPDATA | F_SUBDATA))
        return check_subdb(w, n, pgno, w->level, w->what);
    if (n->flags & F_DUPDATA)
        return check_subpage(w, n, pgno, w->what);
    if (n->flags & F_SUBDATA)
        return bad(w, "store damaged at page %llu (%s): a database inside a database",
                   (unsigned long long)pgno, w->what);
    return 0;
}

/* Leaf callback of the free list: each listed page exists. */
static int free_leaf(walker *w, const node *n, uint64_t pgno, void *payload)
{
    uint8_t *buf = payload;
    const uint8_t *ids = n->data;
    uint64_t count;

    if (n->ksize != 8)
        return bad(w, "store damaged at page %llu (free list): key of %zu bytes",
                   (unsigned long long)pgno, n->ksize);
    if (n->flags & F_BIGDATA) {
        uint64_t opg = le64(n->data);
        uint64_t pages;
        if (check_overflow(w, opg, n->dsize, buf, "free list") != 0)
            return -1;
        pages = le32(buf + 12);
        if (n->dsize > pages * w->psize - PAGEHDRSZ)
            return -1; /* reported by check_overflow */
        /* Read the whole run: bounded by the file, checked above. */
        uint8_t *run = malloc(pages * w->psize);
        if (run == NULL)
            return bad(w, "store check: out of memory for a free list of %llu pages",
                       (unsigned long long)pages);
        if (pread(w->fd, run, pages * w->psize, (off_t)(opg * w->psize)) !=
            (ssize_t)(pages * w->psize)) {
            free(run);
            return bad(w, "store damaged at page %llu (free list): cannot be read",
                       (unsigned long long)opg);
        }
        count = n->dsize >= 8 ? le64(run + PAGEHDRSZ) : 0;
        int rc = 0;
        if (n->dsize < 8 || count > (n->dsize - 8) / 8)
            rc = bad(w, "store damaged at page %llu (free list): %llu pages listed in %llu bytes",
                     (unsigned long long)opg, (unsigned long long)count,
                     (unsigned long long)n->dsize);
        for (uint64_t i = 0; rc == 0 && i < count; i++)
            if (le64(run + PAGEHDRSZ + 8 + 8 * i) >= w->npages)
                rc = bad(w, "store damaged at page %llu (free list): lists page %llu",
                         (unsigned long long)opg,
                         (unsigned long long)le64(run + PAGEHDRSZ + 8 + 8 * i));
        free(run);
        return rc;
    }
    count = n->dsize >= 8 ? le64(ids) : 0;
    if (n->dsize < 8 || count > (n->dsize - 8) / 8)
        return bad(w, "store damaged at page %llu (free list): %llu pages listed in %llu bytes",
                   (unsigned long long)pgno, (unsigned long long)count,
                   (unsigned long long)n->dsize);
    for (uint64_t i = 0; i < count; i++) {
        const uint64_t f = le64(ids + 8 + 8 * i);
        if (f >= w->npages)
            return bad(w, "store damaged at page %llu (free list): lists page %llu",
                       (unsigned long long)pgno, (unsigned long long)f);
        if (w->seen[f / 8] & (1u << (f % 8)))
            return bad(w, "store damaged at page %llu (free list): lists page %llu, in use",
                       (unsigned long long)pgno, (unsigned long long)f);
    }
    return 0;
}

/* Leaf callback of the main database: each named database, walked. */
typedef struct main_state {
    db_rec subs[32];
    char names[32][32];
    size_t nsubs;
} main_state;

static int main_leaf(walker *w, const node *n, uint64_t pgno, void *payload)
{
    main_state *m = payload;

    if (!(n->flags & F_SUBDATA))
        return bad(w, "store damaged at page %llu (main database): a plain value, not a database",
                   (unsigned long long)pgno);
    if (m->nsubs == sizeof m->subs / sizeof m->subs[0])
        return bad(w, "store damaged at page %llu (main database): more than %zu databases",
                   (unsigned long long)pgno, sizeof m->subs / sizeof m->subs[0]);
    db_decode(n->data, &m->subs[m->nsubs]);
    snprintf(m->names[m->nsubs], sizeof m->names[0], "%.*s",
             (int)(n->ksize < 24 ? n->ksize : 24), (const char *)n->key);
    for (char *c = m->names[m->nsubs]; *c; c++)
        if (*c < 0x20 || *c > 0x7e)
            *c = '?';
    m->nsubs++;
    return 0;
}

/* Read the two meta pages and pick the newest valid one, as LMDB does. */
static int read_meta(walker *w, uint64_t file_size, db_rec *free_db, db_rec *main_db,
                     uint64_t *txnid)
{
    uint8_t m[2][PAGEHDRSZ + 160];
    int ok[2] = {0, 0};
    int best = -1;

    for (int i = 0; i < 2; i++) {
        /* Page 0 is at 0; page 1 at the page size, read from page 0. */
        uint64_t off = i == 0 ? 0 : w->psize;
        if (i == 1 && w->psize == 0)
            break;
        if (pread(w->fd, m[i], sizeof m[i], (off_t)off) != (ssize_t)sizeof m[i])
            continue;
        ok[i] = le32(m[i] + 16) == META_MAGIC && le32(m[i] + 20) == META_VERSION &&
                (le16(m[i] + 10) & P_META) != 0;
        if (i == 0 && ok[0]) {
            w->psize = le32(m[0] + 40); /* mm_dbs[FREE_DBI].md_pad */
            if (w->psize < MIN_PAGE || w->psize > MAX_PAGE || (w->psize & (w->psize - 1)) != 0)
                return bad(w, "store damaged at page 0 (meta): page size %llu",
                           (unsigned long long)w->psize);
        }
    }
    if (!ok[0])
        return bad(w, "store damaged at page 0 (meta): not an LMDB meta page");
    for (int i = 0; i < 2; i++)
        if (ok[i] && (best < 0 || le64(m[i] + 144) > le64(m[best] + 144)))
            best = i;
    db_decode(m[best] + 40, free_db);
    db_decode(m[best] + 88, main_db);
    *txnid = le64(m[best] + 144);
    w->npages = le64(m[best] + 136) + 1;
    if (w->npages < 2 || w->npages > file_size / w->psize)
        return bad(w,
                   "store damaged at page %d (meta): it claims %llu pages of %llu bytes, the file "
                   "holds %llu bytes (truncated?)",
                   best, (unsigned long long)w->npages, (unsigned long long)w->psize,
                   (unsigned long long)file_size);
    return 0;
}

/* One walk of the file open as `fd` (of `file_size` bytes); problems are
 * collected in `w`. Returns 0, or a negative code (message set) when memory
 * runs out. */
static int check_once(walker *w, uint64_t file_size, uint64_t *txnid, int light)
{
    db_rec free_db, main_db;
    main_state *ms = NULL;
    int rc = 0;

    if (file_size < 2 * MIN_PAGE) {
        bad(w, "store damaged: data.mdb holds %llu bytes, less than two meta pages",
            (unsigned long long)file_size);
        goto cleanup;
    }
    if (read_meta(w, file_size, &free_db, &main_db, txnid) != 0)
        goto cleanup;
    w->seen = calloc((size_t)(w->npages / 8 + 1), 1);
    w->pages = calloc(MAX_DEPTH + 1, sizeof *w->pages);
    w->extents = malloc((size_t)(w->psize / 2 + 1) * sizeof *w->extents);
    ms = calloc(1, sizeof *ms);
    if (w->seen == NULL || w->pages == NULL || w->extents == NULL || ms == NULL) {
        rc = deja__error_set(DEJA_ENOMEM, "checking '%s': out of memory", w->path);
        goto cleanup;
    }
    for (size_t i = 0; i <= MAX_DEPTH; i++)
        if ((w->pages[i] = malloc(w->psize)) == NULL) {
            rc = deja__error_set(DEJA_ENOMEM, "checking '%s': out of memory", w->path);
            goto cleanup;
        }
    mark(w, 0, 2, "meta");
    if (walk_db(w, &main_db, "main", main_leaf, ms) != 0)
        goto cleanup;
    for (size_t i = 0; light && i < ms->nsubs; i++) {
        const db_rec *d = &ms->subs[i];
        if ((d->root != P_INVALID && (d->root < 2 || d->root >= w->npages)) ||
            d->depth > MAX_DEPTH || (d->root != P_INVALID) != (d->depth != 0)) {
            bad(w, "store damaged: database %s has root page %llu and depth %u", ms->names[i],
                (unsigned long long)d->root, d->depth);
            goto cleanup;
        }
    }
    /* Opening reads meta (the format, dictionaries, counters) at once: its
     * few pages are walked in full even by the light check. */
    for (size_t i = 0; light && i < ms->nsubs; i++)
        if (strcmp(ms->names[i], "meta") == 0 &&
            walk_db(w, &ms->subs[i], ms->names[i], data_leaf, w->pages[MAX_DEPTH]) != 0)
            goto cleanup;
    if (light)
        goto cleanup;
    for (size_t i = 0; i < ms->nsubs; i++)
        if (walk_db(w, &ms->subs[i], ms->names[i], data_leaf, w->pages[MAX_DEPTH]) != 0)
            goto cleanup;
    walk_db(w, &free_db, "free list", free_leaf, w->pages[MAX_DEPTH]);

cleanup:
    if (w->pages != NULL)
        for (size_t i = 0; i <= MAX_DEPTH; i++)
            free(w->pages[i]);
    free(w->pages);
    free(w->extents);
    free(w->seen);
    free(ms);
    w->pages = NULL;
    w->seen = NULL;
    return rc;
}

/* The transaction id of the newest meta page of `fd`, 0 when unreadable. */
static uint64_t newest_txnid(int fd, uint64_t psize)
{
    uint8_t m[PAGEHDRSZ + 160];
    uint64_t best = 0;

    for (int i = 0; i < 2; i++)
        if (pread(fd, m, sizeof m, (off_t)(i * psize)) == (ssize_t)sizeof m &&
            le32(m + 16) == META_MAGIC && le64(m + 144) > best)
            best = le64(m + 144);
    return best;
}

/* Open `path` for the checks: a regular file, never through a symlink. */
static int open_data(const char *path, struct stat *st)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

    if (fd < 0)
        return deja__error_set(errno == ENOENT ? DEJA_ENOTFOUND : DEJA_EIO, "'%s': %s", path,
                               errno == ELOOP ? "is a symbolic link" : strerror(errno));
    if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
        close(fd);
        return deja__error_set(DEJA_EIO, "'%s' is not a regular file", path);
    }
    return fd;
}

/* Walk the data file `path` into `w` (`light`: meta pages and the main
 * database only). A writer committing during the walk can make a sound
 * file look damaged: a walk that found problems is repeated while the
 * newest transaction or the file's size changed meanwhile. Returns 0, or a
 * negative code when
 * the file cannot be read at all. */
static int check_settled(const char *path, int light, walker *w)
{
    struct stat st;
    uint64_t txnid = 0;
    int fd, rc = 0;

    for (int attempt = 0; attempt < 4; attempt++) {
        memset(w, 0, sizeof *w);
        w->path = path;
        fd = open_data(path, &st);
        if (fd < 0)
            return fd;
        w->fd = fd;
        rc = check_once(w, (uint64_t)st.st_size, &txnid, light);
        /* Moved: a newer transaction, or a file that grew since its size
         * was taken (the meta read may be newer than that size). */
        struct stat now;
        const int moved = w->problems > 0 && w->psize != 0 &&
                          (newest_txnid(fd, w->psize) != txnid || fstat(fd, &now) != 0 ||
                           now.st_size != st.st_size);
        close(fd);
        if (rc != 0)
            return rc;
        if (!moved)
            break;
    }
    return 0;
}

/* Check the structure of the LMDB data file `path` (see the header). Each
 * problem ("store damaged at page N: ...", the first eight) goes to `cb`.
 * Returns the number of problems, or a negative code when the file cannot
 * be read at all. */
int deja__store_check_pages(const char *path, deja_problem_cb cb, void *payload)
{
    walker w;
    int rc = check_settled(path, 0, &w);

    if (rc != 0)
        return rc;
    for (int i = 0; i < w.problems && i < 8; i++)
        if (cb != NULL)
            cb(w.lines[i], payload);
    return w.problems;
}

/* Check what LMDB reads when it opens the data file `path`: the meta
 * pages against the file's size (a truncated file would make it fault),
 * and the main database that names the others (a page or two), settled
 * against concurrent writers as deja__store_check_pages is. Returns 0 when
 * sound, 1 with the first problem in `msg`, or a negative code. */
int deja__store_check_meta(const char *path, char *msg, size_t cap)
{
    walker w;
    int rc = check_settled(path, 1, &w);

    if (rc != 0)
        return rc;
    if (w.problems == 0)
        return 0;
    snprintf(msg, cap, "%s", w.lines[0]);
    return 1;
}

/* First problem of a check, kept for the message. */
static void keep_first(const char *line, void *payload)
{
    char *first = payload;

    if (first[0] == '\0')
        snprintf(first, 256, "%s", line);
}

/* Check the pages of `store` before `what` trusts LMDB with them: 0, or
 * DEJA_ECORRUPT "store 'P' is damaged (...): run deja verify". */
int deja__store_check_or_fail(deja_store *store, const char *what)
{
    (void)what;
    char path[PATH_MAX], first[256] = "";
    int rc;

    if ((size_t)snprintf(path, sizeof path, "%s/data.mdb", store->path) >= sizeof path)
        return deja__error_set(DEJA_EINVAL, "store path '%s' is too long", store->path);
    rc = deja__store_check_pages(path, keep_first, first);
    if (rc < 0)
        return rc;
    if (rc > 0)
        return deja__error_set(DEJA_ECORRUPT, "%s: run deja verify", first);
    return 0;
}
