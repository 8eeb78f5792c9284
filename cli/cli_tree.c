/*
 * cli/cli_tree.c -- drawing a tree of traces (a pipeline run and its
 * steps) for `deja show` and `deja ls --tree`, and its JSON.
 */
#include "cli_tree.h"
#include "cli_escape.h"

#include <stdlib.h>
#include <string.h>

size_t cli_tree_end(const deja_tree *t, size_t root)
{
    size_t i = root + 1;
    while (i < t->nnodes && t->nodes[i].depth > t->nodes[root].depth)
        i++;
    return i;
}

/* Whether node `i` is the last step of its parent (within [.., end)). */
static int is_last(const deja_tree *t, size_t i, size_t end)
{
    size_t j;
    for (j = i + 1; j < end; j++) {
        if (t->nodes[j].depth < t->nodes[i].depth)
            return 1;
        if (t->nodes[j].parent == t->nodes[i].parent)
            return 0;
    }
    return 1;
}

void cli_tree_print(FILE *fp, const cli_global *g, const deja_tree *t, size_t root, size_t mark,
                    const char *indent)
{
    size_t end = cli_tree_end(t, root), i;
    for (i = root; i < end; i++) {
        const deja_tree_node *n = &t->nodes[i];
        const char *status = cli_status_name(n->status);
        size_t chain[DEJA_TREE_MAX_DEPTH + 1], k = 0, a;
        char id[DEJA_ID_STRLEN + 1], dur[32];
        fputs(indent, fp);
        /* The ancestors below the root, top first: a bar where more steps
         * of theirs follow. */
        for (a = i; a != root && a != DEJA_TREE_NONE && k <= DEJA_TREE_MAX_DEPTH;
             a = t->nodes[a].parent)
            chain[k++] = a;
        while (k-- > 0) {
            if (k == 0)
                fputs(is_last(t, chain[k], end) ? "└─ " : "├─ ", fp);
            else
                fputs(is_last(t, chain[k], end) ? "   " : "│  ", fp);
        }
        deja_id_format(&n->id, id);
        cli_format_duration(n->duration_ns, dur, sizeof dur);
        fprintf(fp, "%s  ", id);
        if (i == root) {
            char when[64];
            cli_format_local(n->start_ns, when, sizeof when);
            fprintf(fp, "%s  ", when);
        }
        cli_put_term(fp, n->model_name);
        fputc('@', fp);
        cli_put_term(fp, n->model_version);
        fprintf(fp, "  %s%s%s  %s", cli_sgr(g, cli_verdict_sgr(status)), status,
                cli_sgr(g, CLI_SGR_RESET), dur);
        if (i == mark && end - root > 1)
            fputs("  <- this trace", fp);
        fputc('\n', fp);
    }
}

/* One node as a JSON object, with an empty "steps" array. */
static json_t *node_json(const deja_tree_node *n)
{
    char id[DEJA_ID_STRLEN + 1], when[64];
    json_t *o;
    deja_id_format(&n->id, id);
    cli_format_rfc3339(n->start_ns, when, sizeof when);
    o = json_pack("{s:o, s:{s:o, s:o}, s:s, s:o, s:I, s:I, s:[]}", "id", cli_json_text(id),
                  "model", "name", cli_json_text(n->model_name), "version",
                  cli_json_text(n->model_version), "status", cli_status_name(n->status), "start",
                  cli_json_text(when), "start_ns", (json_int_t)n->start_ns, "duration_ns",
                  (json_int_t)n->duration_ns, "steps");
    return o;
}

json_t *cli_tree_json(const deja_tree *t, size_t root)
{
    size_t end = cli_tree_end(t, root), i, n = end - root;
    json_t **objs = calloc(n, sizeof *objs), *out = NULL;
    int bad = objs == NULL;
    for (i = 0; !bad && i < n; i++) {
        objs[i] = node_json(&t->nodes[root + i]);
        bad = objs[i] == NULL;
        if (!bad && i > 0) {
            size_t p = t->nodes[root + i].parent - root;
            bad = json_array_append(json_object_get(objs[p], "steps"), objs[i]) != 0;
        }
    }
    if (!bad)
        out = json_incref(objs[0]);
    for (i = 0; objs != NULL && i < n; i++)
        json_decref(objs[i]);
    free(objs);
    return out;
}

void cli_tree_warn(const deja_tree *t)
{
    size_t i;
    for (i = 0; i < t->nnotes; i++)
        fprintf(stderr, "deja: warning: %s\n", cli_term(t->notes[i]));
}

int cli_tree_of(deja_store *store, const deja_id *id, deja_tree **out, size_t *mark)
{
    deja_tree *t = NULL;
    deja_id root;
    char text[DEJA_ID_STRLEN + 1];
    size_t i;
    int rc;
    *out = NULL;
    *mark = DEJA_TREE_NONE;
    rc = deja_tree_root(store, id, &root);
    if (rc == 0)
        rc = deja_tree_get(store, &root, 1, &t);
    if (rc != 0) {
        deja_id_format(id, text);
        return cli_lib_error(rc, "trace %s: its pipeline", text);
    }
    cli_tree_warn(t);
    if (t->nnodes <= 1) {
        deja_tree_free(t);
        return 0;
    }
    for (i = 0; i < t->nnodes; i++) {
        if (memcmp(&t->nodes[i].id, id, sizeof *id) == 0)
            *mark = i;
    }
    *out = t;
    return 0;
}

int cli_tree_attach_json(json_t *obj, const deja_tree *t)
{
    char root[DEJA_ID_STRLEN + 1];
    json_t *p;
    if (t == NULL)
        return 0;
    deja_id_format(&t->nodes[0].id, root);
    p = json_pack("{s:o, s:o}", "root", cli_json_text(root), "tree", cli_tree_json(t, 0));
    return p != NULL && json_object_set_new(obj, "pipeline", p) == 0 ? 0 : -1;
}

void cli_tree_md(FILE *fp, const deja_tree *t, size_t mark)
{
    char root[DEJA_ID_STRLEN + 1];
    deja_id_format(&t->nodes[0].id, root);
    fprintf(fp, "\n### Pipeline\n\n");
    fprintf(fp, "%s the run `%s` (%s):\n\n```\n",
            mark == 0 ? "This trace is" : "This trace is a step of", root,
            cli_count(t->nnodes, "trace"));
    /* NULL: no colour in a report. */
    cli_tree_print(fp, NULL, t, 0, mark, "");
    fprintf(fp, "```\n\nReplay the run step by step, each step on the model it recorded "
                "(add `--model STEP=SPEC` to try another):\n\n```sh\n"
                "deja replay %s --chained\n```\n",
            root);
}
