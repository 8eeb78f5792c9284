/*
 * tests/fuzz/fuzz_bundle.c -- libFuzzer target for bundle parsing.
 *
 * The first byte of an input picks what the rest is:
 *   even: a whole bundle file, header and all (exercises the header checks,
 *         bounds, checksum and decompression);
 *   odd:  a decompressed body of records, wrapped here into a file with a
 *         correct header and checksum so that the record parser, the
 *         protobuf decoders and the reference checks see it.
 * Parsing must never crash, leak or run away, whatever the input.
 */
#include <stddef.h>
#include <stdint.h>

#include "proto/codec.h"
#include "bundle/bundle_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    deja__buf file = {0};

    if (size == 0)
        return 0;
    if ((data[0] & 1) == 0) {
        deja__bundle_check_memory(data + 1, size - 1, "fuzz.deja");
    } else if (deja__bundle_wrap(data + 1, size - 1, &file) == 0) {
        deja__bundle_check_memory(file.data, file.size, "fuzz.deja");
    }
    deja__buf_free(&file);
    return 0;
}
