/* libFuzzer harness for the frame parser (clang only; scripts/fuzz.sh builds
 * and runs it, with a seed corpus from fuzz_seeds).
 *
 * The input is parsed as the receiver and client parse a stream: a header,
 * then the body once buffered (only the meta of an inline BLOCK), each from an
 * exactly sized copy so that any read past the end is caught. Frames that
 * parse must have every field within its limits. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "protocol.h"
#include "protocol_check.h"

static void parse_body_exact(uint8_t type, const uint8_t *body, uint64_t len)
{
    uint64_t have = type == CDL_BLOCK && len > CDL_BLOCK_META_LEN ? CDL_BLOCK_META_LEN : len;
    uint8_t *copy = malloc(have ? have : 1);
    if (!copy)
        return;
    memcpy(copy, body, have);
    cdl_msg m;
    int rc = cdl_parse_body(type, copy, len, &m);
    if (rc == CAUDAL_OK && !parsed_within_limits(&m, type, copy, len))
        abort();
    if (rc != CAUDAL_OK && rc != CAUDAL_ERR_PROTOCOL)
        abort();
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A stream of frames, as a peer would send them. */
    size_t pos = 0;
    while (size - pos >= CDL_HEADER_LEN) {
        cdl_header h;
        int rc = cdl_parse_header(data + pos, &h);
        if (rc != CAUDAL_OK) {
            if (rc != CAUDAL_ERR_PROTOCOL && rc != CAUDAL_ERR_VERSION)
                abort();
            break;
        }
        if (!header_within_limits(&h))
            abort();
        uint64_t have = size - pos - CDL_HEADER_LEN;
        uint64_t need = h.type == CDL_BLOCK ? CDL_BLOCK_META_LEN : h.body_len;
        if (have < need)
            break;
        parse_body_exact(h.type, data + pos + CDL_HEADER_LEN, h.body_len);
        if (h.body_len > have)
            break; /* an inline payload longer than the input */
        pos += CDL_HEADER_LEN + (size_t)h.body_len;
    }
    /* The body parser alone: the first byte picks the type. */
    if (size >= 1)
        parse_body_exact(data[0] % 16, data + 1, size - 1);
    return 0;
}
