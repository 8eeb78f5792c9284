/*
 * tests/fuzz/fuzz_request.c -- libFuzzer target for `deja run`'s request
 * lines: the input is one line of JSON (or anything) handed to the parser
 * exactly as `deja run` hands it a line of its requests file. Parsing must
 * never crash, leak, or allocate beyond what the line can describe.
 *
 * The parser is static in cli/cmd_run.c: the file is included here whole,
 * so the target runs the very code the command runs.
 */
#include "cli/cmd_run.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    run_state s;
    request r;

    if (size > ((size_t)1 << 20))
        return 0;
    memset(&s, 0, sizeof s);
    s.source = "fuzz.jsonl";
    (void)parse_request(&s, 1, (const char *)data, size, &r);
    request_free(&r);
    return 0;
}
