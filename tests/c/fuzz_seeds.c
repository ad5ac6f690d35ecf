/* fuzz_seeds - write the seed corpora of the fuzzers, so that they start from
 * valid conversations rather than from nothing (generated at test time, not
 * kept in the repository):
 *
 *   fuzz_seeds PROTOCOL_DIR RECEIVER_DIR DICT
 *
 * PROTOCOL_DIR gets frame streams for fuzz_protocol, RECEIVER_DIR inputs for
 * fuzz_receiver (fuzz_receiver.h): whole sessions of a rank in shared memory
 * and inline, drops, steering, goodbye, a rank lost mid-step, and the ways a
 * connection fails its handshake. DICT is a dictionary for both. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_receiver.h"
#include "protocol.h"

typedef struct stream {
    uint8_t b[16384];
    size_t n;
} stream;

static void grow(stream *s, size_t n, const char *what)
{
    if (n == 0) {
        fprintf(stderr, "fuzz_seeds: %s does not fit\n", what);
        exit(1);
    }
    s->n += n;
}

#define ADD(s, encode, ...)                                                     \
    grow(s, encode((s)->b + (s)->n, sizeof(s)->b - (s)->n, __VA_ARGS__), #encode)

static void add_bytes(stream *s, const void *p, size_t n)
{
    if (n > sizeof s->b - s->n) {
        fprintf(stderr, "fuzz_seeds: payload does not fit\n");
        exit(1);
    }
    memcpy(s->b + s->n, p, n);
    s->n += n;
}

/* An inline BLOCK: meta, then the payload. */
static void add_inline(stream *s, uint32_t id, uint64_t step, uint64_t count, size_t isz)
{
    uint8_t payload[1024];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (uint8_t)(i * 7u + step);
    ADD(s, cdl_encode_block, id, CDL_NO_SLOT, step, 0, count * isz, count);
    add_bytes(s, payload, (size_t)(count * isz));
}

/* Array 0: "u", float64, 8x8 of which this rank has 4x8 (256 bytes); array
 * 1: "p", variable-length float32 particles. */
static void add_declares(stream *s)
{
    const uint64_t shape[2] = {8, 8}, start[2] = {4, 0}, count[2] = {4, 8};
    const uint64_t zero = 0, capacity = 100;
    ADD(s, cdl_encode_declare, 0, "u", CAUDAL_FLOAT64, 2, CAUDAL_ORDER_C, 0, shape, start,
        count);
    ADD(s, cdl_encode_declare, 1, "p", CAUDAL_FLOAT32, 1, CAUDAL_ORDER_C, 1, &zero, &zero,
        &capacity);
}

static void add_steering(stream *s)
{
    double d = 0.25;
    int64_t i = -3;
    ADD(s, cdl_encode_steer, "source", CAUDAL_VALUE_DOUBLE, &d);
    ADD(s, cdl_encode_steer, "iterations", CAUDAL_VALUE_INT64, &i);
    ADD(s, cdl_encode_steer, "mode", CAUDAL_VALUE_STRING, "fast");
}

static void add_bye(stream *s)
{
    const uint64_t counters[CDL_NCOUNTERS] = {3, 2, 4, 1024, 256, 1000, 10};
    ADD(s, cdl_encode_bye, counters);
}

/* A libFuzzer dictionary: whole small frames and headers of every type, which
 * mutations insert anywhere, so that a stream of frames mutates into another
 * stream of frames rather than into garbage after the first byte changed. */
static void write_dict(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(1);
    }
    static stream s;
    double d = 2.5;
    int64_t i = 1;
    const uint64_t zero = 0, capacity = 100, one = 1, big = (uint64_t)1 << 40;
    for (int k = 0; k < 20; k++) {
        s.n = 0;
        switch (k) {
        case 0:
            ADD(&s, cdl_encode_hello, 0, FUZZ_SIZE, 1, CDL_TRANSPORT_SHM, FUZZ_TOKEN);
            break;
        case 1: add_bytes(&s, FUZZ_TOKEN, strlen(FUZZ_TOKEN)); break;
        case 2:
            ADD(&s, cdl_encode_declare, 0, "v", CAUDAL_INT32, 1, CAUDAL_ORDER_C, 1, &zero,
                &zero, &capacity);
            break;
        case 3:
            ADD(&s, cdl_encode_declare, 1, "w", CAUDAL_UINT8, 1, CAUDAL_ORDER_F, 0, &big,
                &zero, &one);
            break;
        case 4: ADD(&s, cdl_encode_block, 0, CDL_NO_SLOT, 0, 0, 8, 2); break;
        case 5: ADD(&s, cdl_encode_block, 1, 0, 1, 0, 256, 32); break;
        case 6: ADD(&s, cdl_encode_block, 0, 1, 2, 64, 0, 0); break;
        case 7: ADD(&s, cdl_encode_step_end, 0, 1, CDL_NO_SLOT); break;
        case 8: ADD(&s, cdl_encode_step_end, 1, 2, 0); break;
        case 9: ADD(&s, cdl_encode_drop, 1, 3, 2); break;
        case 10: ADD(&s, cdl_encode_steer, "k", CAUDAL_VALUE_DOUBLE, &d); break;
        case 11: ADD(&s, cdl_encode_steer, "n", CAUDAL_VALUE_INT64, &i); break;
        case 12: ADD(&s, cdl_encode_steer, "s", CAUDAL_VALUE_STRING, "abc"); break;
        case 13: ADD(&s, cdl_encode_ring, FUZZ_RING_DEPTH, FUZZ_RING_SLOT); break;
        case 14: ADD(&s, cdl_encode_release, 0); break;
        case 15: ADD(&s, cdl_encode_error, CAUDAL_ERR_PROTOCOL, "x"); break;
        case 16: grow(&s, cdl_encode_bye_ack(s.b, sizeof s.b), "cdl_encode_bye_ack"); break;
        case 17: {
            const uint64_t counters[CDL_NCOUNTERS] = {0};
            ADD(&s, cdl_encode_bye, counters);
            s.n = CDL_HEADER_LEN; /* too long for an entry: the header */
            break;
        }
        case 18: ADD(&s, cdl_encode_welcome, 1, FUZZ_TOKEN); break;
        case 19: ADD(&s, cdl_encode_block, 0, CDL_NO_SLOT, 0, 0, big * 4, big); break;
        }
        fprintf(f, "f%d=\"", k);
        for (size_t b = 0; b < s.n; b++)
            fprintf(f, "\\x%02x", s.b[b]);
        fprintf(f, "\"\n");
    }
    if (fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

static void write_file(const char *dir, const char *name, uint8_t mode, uint8_t piece,
                       const stream *s)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(1);
    }
    int ok = 1;
    if (mode != 0xFF) { /* fuzz_receiver's two bytes of settings */
        uint8_t head[2] = {mode, piece};
        ok = fwrite(head, 1, 2, f) == 2;
    }
    ok = ok && fwrite(s->b, 1, s->n, f) == s->n;
    if (fclose(f) != 0 || !ok) {
        perror(path);
        exit(1);
    }
}

#define RAW 0xFF /* a protocol seed: no settings bytes */
#define MODE(bits, rank) ((uint8_t)((bits) | ((rank) << 4)))

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: fuzz_seeds PROTOCOL_DIR RECEIVER_DIR DICT\n");
        return 2;
    }
    write_dict(argv[3]);
    const char *pdir = argv[1], *rdir = argv[2];
    static stream s;

    /* A rank with a ring: a step in its slot, a drop, an inline step,
     * steering, goodbye (HELLO and RING come from the harness). */
    s.n = 0;
    add_declares(&s);
    ADD(&s, cdl_encode_block, 0, 0, 0, 0, 256, 32);
    ADD(&s, cdl_encode_block, 1, 0, 0, 256, 12, 3);
    ADD(&s, cdl_encode_step_end, 0, 2, 0);
    ADD(&s, cdl_encode_drop, 1, 2, 2);
    add_inline(&s, 0, 3, 32, 8);
    ADD(&s, cdl_encode_block, 1, CDL_NO_SLOT, 3, 0, 0, 0);
    ADD(&s, cdl_encode_step_end, 3, 2, CDL_NO_SLOT);
    add_steering(&s);
    add_bye(&s);
    write_file(rdir, "shm-session", MODE(FUZZ_MODE_HELLO | FUZZ_MODE_RING, 2), 0, &s);
    write_file(rdir, "shm-session-pieces", MODE(FUZZ_MODE_HELLO | FUZZ_MODE_RING, 2), 13, &s);
    write_file(pdir, "shm-session", RAW, 0, &s);

    /* Every step through the slots, then lost in the middle of a step. */
    s.n = 0;
    add_declares(&s);
    for (uint32_t step = 0; step < 2 * FUZZ_RING_DEPTH; step++) {
        uint32_t slot = step % FUZZ_RING_DEPTH;
        ADD(&s, cdl_encode_block, 0, slot, step, 0, 256, 32);
        ADD(&s, cdl_encode_block, 1, slot, step, 256, 4 * step, step);
        ADD(&s, cdl_encode_step_end, step, 2, slot);
    }
    ADD(&s, cdl_encode_block, 0, 0, 2 * FUZZ_RING_DEPTH, 0, 256, 32);
    write_file(rdir, "shm-lost-mid-step", MODE(FUZZ_MODE_HELLO | FUZZ_MODE_RING, 15), 7, &s);

    /* Over TCP every block is inline. */
    s.n = 0;
    add_declares(&s);
    for (uint64_t step = 0; step < 3; step++) {
        add_inline(&s, 0, step, 32, 8);
        add_inline(&s, 1, step, step * 5, 4);
        ADD(&s, cdl_encode_step_end, step, 2, CDL_NO_SLOT);
    }
    add_steering(&s);
    add_bye(&s);
    write_file(rdir, "inline-session", MODE(FUZZ_MODE_HELLO, 5), 0, &s);
    write_file(rdir, "inline-session-bytewise", MODE(FUZZ_MODE_HELLO, 5), 1, &s);
    write_file(pdir, "inline-session", RAW, 0, &s);

    /* A short one, easier to mutate into other short ones. */
    s.n = 0;
    {
        const uint64_t zero = 0, capacity = 10;
        ADD(&s, cdl_encode_declare, 0, "v", CAUDAL_INT32, 1, CAUDAL_ORDER_C, 1, &zero, &zero,
            &capacity);
    }
    add_inline(&s, 0, 7, 2, 4);
    ADD(&s, cdl_encode_step_end, 7, 1, CDL_NO_SLOT);
    add_bye(&s);
    write_file(rdir, "short-session", MODE(FUZZ_MODE_HELLO, 9), 0, &s);
    write_file(pdir, "short-session", RAW, 0, &s);

    /* The same without the harness's HELLO: the stream must say it. */
    stream *with_hello = malloc(sizeof *with_hello);
    if (!with_hello)
        return 1;
    with_hello->n = 0;
    ADD(with_hello, cdl_encode_hello, 3, FUZZ_SIZE, 77, CDL_TRANSPORT_TCP, FUZZ_TOKEN);
    add_bytes(with_hello, s.b, s.n);
    write_file(rdir, "hello-in-stream", MODE(0, 0), 0, with_hello);
    write_file(pdir, "hello-session", RAW, 0, with_hello);
    free(with_hello);

    /* Handshakes that fail: a wrong token, junk, a hello cut short, a frame
     * before hello, an empty probe. */
    s.n = 0;
    ADD(&s, cdl_encode_hello, 1, FUZZ_SIZE, 77, CDL_TRANSPORT_SHM, "not-the-token");
    add_declares(&s);
    write_file(rdir, "wrong-token", MODE(0, 0), 0, &s);
    s.n = 0;
    add_bytes(&s, "GET / HTTP/1.1\r\n", 16);
    write_file(rdir, "junk", MODE(0, 0), 0, &s);
    s.n = 0;
    ADD(&s, cdl_encode_hello, 1, FUZZ_SIZE, 77, CDL_TRANSPORT_SHM, FUZZ_TOKEN);
    s.n -= 5;
    write_file(rdir, "hello-cut", MODE(0, 0), 3, &s);
    s.n = 0;
    add_declares(&s);
    write_file(rdir, "declare-before-hello", MODE(0, 0), 0, &s);
    s.n = 0;
    write_file(rdir, "probe", MODE(0, 0), 0, &s);

    /* Violations after hello: a second hello, a ring without its memfd, a
     * block of an undeclared array, a step end that does not match. */
    s.n = 0;
    ADD(&s, cdl_encode_hello, 4, FUZZ_SIZE, 77, CDL_TRANSPORT_SHM, FUZZ_TOKEN);
    write_file(rdir, "second-hello", MODE(FUZZ_MODE_HELLO, 4), 0, &s);
    s.n = 0;
    ADD(&s, cdl_encode_ring, FUZZ_RING_DEPTH, FUZZ_RING_SLOT);
    write_file(rdir, "ring-without-memfd", MODE(FUZZ_MODE_HELLO, 4), 0, &s);
    s.n = 0;
    add_inline(&s, 0, 0, 4, 8);
    write_file(rdir, "undeclared", MODE(FUZZ_MODE_HELLO, 6), 0, &s);
    s.n = 0;
    add_declares(&s);
    add_inline(&s, 0, 0, 32, 8);
    ADD(&s, cdl_encode_step_end, 0, 3, CDL_NO_SLOT);
    write_file(rdir, "step-end-mismatch", MODE(FUZZ_MODE_HELLO, 6), 0, &s);

    /* Frames only a receiver sends, for the parser. */
    s.n = 0;
    ADD(&s, cdl_encode_welcome, 42, FUZZ_TOKEN);
    ADD(&s, cdl_encode_release, 3);
    grow(&s, cdl_encode_bye_ack(s.b + s.n, sizeof s.b - s.n), "cdl_encode_bye_ack");
    ADD(&s, cdl_encode_error, CAUDAL_ERR_AUTH, "wrong job token");
    ADD(&s, cdl_encode_ring, FUZZ_RING_DEPTH, FUZZ_RING_SLOT);
    write_file(pdir, "receiver-frames", RAW, 0, &s);
    return 0;
}
