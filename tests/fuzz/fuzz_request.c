/*
 * tests/fuzz/fuzz_request.c -- libFuzzer target for `deja run`'s request
 * lines: the input is one line of JSON (or anything) handed to the parser
 * exactly as `deja run` hands it a line of its requests file. Parsing must
 * never crash, leak, or allocate beyond what the line can describe.
 */
#include <stdint.h>
#include <stddef.h>

#include "cli_request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cli_request_parser s = {"fuzz.jsonl", 0};
    cli_request r;

    if (size > ((size_t)1 << 20))
        return 0;
    (void)cli_request_parse(&s, 1, (const char *)data, size, &r);
    cli_request_free(&r);
    return 0;
}
