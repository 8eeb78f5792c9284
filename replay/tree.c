/*
 * replay/tree.c -- the trees of pipeline runs: a trace and the traces that
 * name it as their parent, nested.
 *
 * The store has no index of children by parent, so deja_tree_get scans the
 * store's traces once (without payloads) and keeps the ones that have a
 * parent; the trees are then built from that list, sorted by parent. A step
 * starts after its parent, so the scan goes back no further than the
 * oldest root, less an hour for clocks set back: cheap for recent runs. Stores
 * and bundles may be hostile: depth and size are bounded, and a cycle of
 * parents is cut where it closes.
 *
 * Room replay/: selection. It calls the store through the public reading
 * API and core/ for errors.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "deja.h"

/* How much older than its parent a step may be (clocks set back). */
#define STEP_SLACK_MS ((int64_t)3600 * 1000)

/* A trace that has a parent, or one of the requested roots. */
typedef struct entry {
    deja_id id;
    deja_id parent;
    int has_parent;
    int is_root;  /* one of the requested roots */
    int visited;
    int64_t start_ns;
    int64_t duration_ns;
    deja_status status;
    int has_model_config;
    char *name, *version, *plugin, *config;
} entry;

typedef struct scan {
    entry *v;
    size_t n, cap;
    const deja_id *roots; /* sorted copy */
    size_t nroots;
    int rc;
} scan;

/* The tree under construction: nodes own their strings. */
typedef struct tree_impl {
    deja_tree pub;
    deja_tree_node *nodes;
    size_t cap;
    char **notes;
    size_t nnotes;
} tree_impl;

static int id_cmp(const deja_id *a, const deja_id *b)
{
    return memcmp(a->bytes, b->bytes, sizeof a->bytes);
}

static int id_cmp_v(const void *a, const void *b)
{
    return id_cmp(a, b);
}

/* Order of the scan's list: by parent, then start time, then id. */
static int by_parent(const void *pa, const void *pb)
{
    const entry *a = pa, *b = pb;
    int c = id_cmp(&a->parent, &b->parent);
    if (c != 0)
        return c;
    if (a->start_ns != b->start_ns)
        return a->start_ns < b->start_ns ? -1 : 1;
    return id_cmp(&a->id, &b->id);
}

static int entry_ptr_cmp(const void *a, const void *b)
{
    const entry *const *x = a, *const *y = b;
    return id_cmp(&(*x)->id, &(*y)->id);
}

static char *dup_or_empty(const char *s)
{
    return strdup(s != NULL ? s : "");
}

static void entry_clear(entry *e)
{
    free(e->name);
    free(e->version);
    free(e->plugin);
    free(e->config);
}

/* List callback: keep the traces that have a parent and the roots. */
static int on_trace(const deja_trace *t, void *payload)
{
    scan *s = payload;
    entry *e;
    int is_root = bsearch(&t->id, s->roots, s->nroots, sizeof *s->roots, id_cmp_v) != NULL;
    if (!t->has_parent && !is_root)
        return 0;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 64;
        entry *nv = realloc(s->v, cap * sizeof *nv);
        if (nv == NULL) {
            s->rc = deja__error_set(DEJA_ENOMEM, "out of memory listing pipeline steps");
            return 1;
        }
        s->v = nv;
        s->cap = cap;
    }
    e = &s->v[s->n];
    memset(e, 0, sizeof *e);
    e->id = t->id;
    e->has_parent = t->has_parent;
    if (t->has_parent)
        e->parent = t->parent;
    e->is_root = is_root;
    e->start_ns = t->start_ns;
    e->duration_ns = t->duration_ns;
    e->status = t->status;
    e->has_model_config = t->has_model_config;
    e->name = dup_or_empty(t->model_name);
    e->version = dup_or_empty(t->model_version);
    e->plugin = dup_or_empty(t->has_model_config ? t->model_plugin : NULL);
    e->config = dup_or_empty(t->has_model_config ? t->model_config : NULL);
    if (!e->name || !e->version || !e->plugin || !e->config) {
        entry_clear(e);
        s->rc = deja__error_set(DEJA_ENOMEM, "out of memory listing pipeline steps");
        return 1;
    }
    s->n++;
    return 0;
}

/* A record that fails to decode is not a step of anything we can show. */
static int on_bad(const deja_id *id, int code, const char *message, void *payload)
{
    (void)id, (void)code, (void)message, (void)payload;
    return 0;
}

/* Note that trace `id` closes a cycle of parents (and is left out there). */
static int note_cycle(tree_impl *t, const deja_id *id)
{
    char text[DEJA_ID_STRLEN + 1], *line, **nv;
    size_t len;
    if (t->nnotes >= 100)
        return 0; /* enough to say what is wrong */
    deja_id_format(id, text);
    len = sizeof text + 64;
    line = malloc(len);
    nv = realloc(t->notes, (t->nnotes + 1) * sizeof *nv);
    if (line == NULL || nv == NULL) {
        free(line);
        if (nv != NULL)
            t->notes = nv;
        return deja__error_set(DEJA_ENOMEM, "out of memory");
    }
    t->notes = nv;
    snprintf(line, len, "trace %s: its parents form a cycle; cut there", text);
    t->notes[t->nnotes++] = line;
    return 0;
}

/* Append the node for entry `e` (its strings move to the node). */
static int node_add(tree_impl *t, entry *e, size_t parent, unsigned depth)
{
    deja_tree_node *n;
    if (t->pub.nnodes >= DEJA_TREE_MAX_NODES) {
        char root[DEJA_ID_STRLEN + 1];
        deja_id_format(&t->nodes[0].id, root);
        return deja__error_set(DEJA_ENOMEM, "trace %s: more than %d traces in its pipeline tree",
                               root, DEJA_TREE_MAX_NODES);
    }
    if (t->pub.nnodes == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        deja_tree_node *nv = realloc(t->nodes, cap * sizeof *nv);
        if (nv == NULL)
            return deja__error_set(DEJA_ENOMEM, "out of memory");
        t->nodes = nv;
        t->cap = cap;
    }
    n = &t->nodes[t->pub.nnodes++];
    memset(n, 0, sizeof *n);
    n->id = e->id;
    n->parent = parent;
    n->depth = depth;
    n->model_name = e->name;
    n->model_version = e->version;
    n->model_plugin = e->plugin;
    n->model_config = e->config;
    e->name = e->version = e->plugin = e->config = NULL;
    n->status = e->status;
    n->start_ns = e->start_ns;
    n->duration_ns = e->duration_ns;
    n->has_parent = e->has_parent;
    n->recorded_parent = e->parent;
    n->has_model_config = e->has_model_config;
    if (parent != DEJA_TREE_NONE)
        t->nodes[parent].nsteps++;
    return 0;
}

/* The first entry of the sorted list whose parent is `id`, or s->n. */
static size_t first_child(const scan *s, size_t nsorted, const deja_id *id)
{
    size_t lo = 0, hi = nsorted;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (id_cmp(&s->v[mid].parent, id) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* One frame of the depth-first walk: the node, and the next child to visit. */
typedef struct frame {
    size_t node;
    size_t next; /* index in the sorted list */
} frame;

/* Add the tree below the root entry `r`, depth first, iteratively. */
static int build(tree_impl *t, scan *s, size_t nsorted, entry *r)
{
    frame stack[DEJA_TREE_MAX_DEPTH + 1];
    size_t top = 0;
    int rc = node_add(t, r, DEJA_TREE_NONE, 0);
    if (rc != 0)
        return rc;
    r->visited = 1;
    t->pub.nroots++;
    stack[0].node = t->pub.nnodes - 1;
    stack[0].next = first_child(s, nsorted, &r->id);
    for (;;) {
        frame *f = &stack[top];
        const deja_id *pid = &t->nodes[f->node].id;
        entry *c;
        if (f->next >= nsorted || id_cmp(&s->v[f->next].parent, pid) != 0) {
            if (top == 0)
                break;
            top--;
            continue;
        }
        c = &s->v[f->next++];
        if (c->visited) {
            /* On the path from the root: a cycle. Elsewhere: the root of a
             * tree given earlier, drawn there. */
            size_t k;
            int on_path = 0;
            for (k = 0; k <= top && !on_path; k++)
                on_path = id_cmp(&t->nodes[stack[k].node].id, &c->id) == 0;
            if (on_path && (rc = note_cycle(t, &c->id)) != 0)
                return rc;
            continue;
        }
        if (top + 1 > DEJA_TREE_MAX_DEPTH) {
            char id[DEJA_ID_STRLEN + 1];
            deja_id_format(&r->id, id);
            return deja__error_set(DEJA_ENOMEM,
                                   "trace %s: its pipeline tree is deeper than %d steps", id,
                                   DEJA_TREE_MAX_DEPTH);
        }
        c->visited = 1;
        rc = node_add(t, c, f->node, (unsigned)(top + 1));
        if (rc != 0)
            return rc;
        top++;
        stack[top].node = t->pub.nnodes - 1;
        stack[top].next = first_child(s, nsorted, &c->id);
    }
    return 0;
}

void deja_tree_free(deja_tree *tree)
{
    tree_impl *t = (tree_impl *)tree;
    size_t i;
    if (t == NULL)
        return;
    for (i = 0; i < t->pub.nnodes; i++) {
        free((void *)t->nodes[i].model_name);
        free((void *)t->nodes[i].model_version);
        free((void *)t->nodes[i].model_plugin);
        free((void *)t->nodes[i].model_config);
    }
    for (i = 0; i < t->nnotes; i++)
        free(t->notes[i]);
    free(t->notes);
    free(t->nodes);
    free(t);
}

int deja_tree_get(deja_store *store, const deja_id *roots, size_t nroots, deja_tree **out)
{
    deja_filter all = DEJA_FILTER_INIT;
    scan s = {0};
    deja_id *sorted = NULL;
    tree_impl *t = NULL;
    entry **byid = NULL;
    size_t i, nsorted, nbyid;
    int rc;
    if (out != NULL)
        *out = NULL;
    if (store == NULL || out == NULL || (nroots && roots == NULL) ||
        nroots > DEJA_TREE_MAX_NODES) {
        rc = deja__error_set(DEJA_EINVAL, "deja_tree_get: bad arguments");
        goto cleanup;
    }
    sorted = malloc((nroots ? nroots : 1) * sizeof *sorted);
    t = calloc(1, sizeof *t);
    if (sorted == NULL || t == NULL) {
        rc = deja__error_set(DEJA_ENOMEM, "out of memory");
        goto cleanup;
    }
    if (nroots)
        memcpy(sorted, roots, nroots * sizeof *sorted);
    qsort(sorted, nroots, sizeof *sorted, id_cmp_v);
    s.roots = sorted;
    s.nroots = nroots;
    /* A step starts after its parent: look no further back than the oldest
     * root, less an hour for clocks set back. Ids carry their time. */
    for (i = 0; i < nroots; i++) {
        int64_t ms = deja_id_time_ms(&roots[i]) - STEP_SLACK_MS;
        if (i == 0 || ms * 1000000 < all.since_ns)
            all.since_ns = ms > 0 ? ms * 1000000 : 0;
    }
    if (all.since_ns < 0)
        all.since_ns = 0;
    rc = deja_store_list(store, &all, on_trace, on_bad, &s);
    if (rc == 0)
        rc = s.rc;
    if (rc != 0)
        goto cleanup;
    /* The entries with a parent first, sorted by parent; the roots that have
     * none after them. */
    for (i = 0, nsorted = 0; i < s.n; i++) {
        if (s.v[i].has_parent) {
            entry tmp = s.v[nsorted];
            s.v[nsorted++] = s.v[i];
            s.v[i] = tmp;
        }
    }
    qsort(s.v, nsorted, sizeof *s.v, by_parent);
    /* The requested roots' entries, by id. */
    byid = malloc((s.n ? s.n : 1) * sizeof *byid);
    if (byid == NULL) {
        rc = deja__error_set(DEJA_ENOMEM, "out of memory");
        goto cleanup;
    }
    for (i = 0, nbyid = 0; i < s.n; i++) {
        if (s.v[i].is_root)
            byid[nbyid++] = &s.v[i];
    }
    qsort(byid, nbyid, sizeof *byid, entry_ptr_cmp);
    for (i = 0; i < nroots; i++) {
        const entry key = {.id = roots[i]}, *kp = &key;
        entry **found = bsearch(&kp, byid, nbyid, sizeof *byid, entry_ptr_cmp);
        entry *r = found ? *found : NULL;
        if (r == NULL) {
            char id[DEJA_ID_STRLEN + 1];
            deja_id_format(&roots[i], id);
            rc = deja__error_set(DEJA_ENOTFOUND, "trace %s: not in the store", id);
            goto cleanup;
        }
        if (r->visited)
            continue; /* given twice, or inside an earlier root's tree */
        rc = build(t, &s, nsorted, r);
        if (rc != 0)
            goto cleanup;
    }
    t->pub.nodes = t->nodes;
    t->pub.notes = (const char *const *)t->notes;
    t->pub.nnotes = t->nnotes;
    *out = &t->pub;
    t = NULL;

cleanup:
    for (i = 0; i < s.n; i++)
        entry_clear(&s.v[i]);
    free(s.v);
    free(byid);
    free(sorted);
    deja_tree_free(t ? &t->pub : NULL);
    return rc;
}

int deja_tree_root(deja_store *store, const deja_id *id, deja_id *root)
{
    deja_id seen[DEJA_TREE_MAX_DEPTH + 1];
    deja_trace *t = NULL;
    deja_id cur;
    size_t n = 0, k;
    int rc;
    if (store == NULL || id == NULL || root == NULL)
        return deja__error_set(DEJA_EINVAL, "deja_tree_root: bad arguments");
    cur = *id;
    for (;;) {
        char text[DEJA_ID_STRLEN + 1];
        rc = deja_trace_get(store, &cur, &t);
        if (rc == DEJA_ENOTFOUND && n > 0) {
            rc = 0; /* the parent is elsewhere: the top-most one here is the root */
            break;
        }
        if (rc != 0)
            goto cleanup;
        for (k = 0; k < n; k++) {
            if (id_cmp(&seen[k], &cur) == 0) {
                deja_id_format(id, text);
                rc = deja__error_set(DEJA_ECORRUPT, "trace %s: its parents form a cycle", text);
                goto cleanup;
            }
        }
        if (n > DEJA_TREE_MAX_DEPTH) {
            deja_id_format(id, text);
            rc = deja__error_set(DEJA_ECORRUPT, "trace %s: more than %d levels of parents", text,
                                 DEJA_TREE_MAX_DEPTH);
            goto cleanup;
        }
        seen[n++] = cur;
        if (!t->has_parent)
            break;
        cur = t->parent;
        deja_trace_free(t);
        t = NULL;
    }
    *root = seen[n - 1];

cleanup:
    deja_trace_free(t);
    return rc;
}
