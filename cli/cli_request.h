/*
 * cli/cli_request.h -- one line of `deja run`'s requests file, parsed and
 * checked: named input tensors, params, tags and a seed. The parser bounds
 * every allocation by what the line can describe (it comes from strangers)
 * and reports a problem as "deja: FILE:LINE: what: detail".
 */
#ifndef DEJA_CLI_REQUEST_H
#define DEJA_CLI_REQUEST_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "deja.h"

/* One input tensor of a request, owning its name and bytes. */
typedef struct cli_request_tensor {
    char *name;
    deja_dtype dtype;
    size_t ndim;
    uint64_t shape[DEJA_MAX_DIMS];
    uint8_t *data;
    size_t size;
} cli_request_tensor;

/* A parsed request line. */
typedef struct cli_request {
    json_t *root;
    cli_request_tensor *inputs;
    size_t ninputs;
    json_t *params; /* borrowed from root, may be NULL */
    json_t *tags;   /* borrowed from root, may be NULL */
    int has_seed;
    uint64_t seed;
} cli_request;

/* Where the lines come from, for messages. */
typedef struct cli_request_parser {
    const char *source; /* file name for messages */
    size_t line_len;    /* bytes of the line being parsed */
} cli_request_parser;

/* Parse and check one request line into `r` (zeroed first); -1 after
 * reporting the problem on stderr. Release `r` with cli_request_free
 * either way. */
int cli_request_parse(cli_request_parser *s, size_t line, const char *text, size_t len,
                      cli_request *r);

/* Release a request's contents; `r` is zeroed. */
void cli_request_free(cli_request *r);

#endif
