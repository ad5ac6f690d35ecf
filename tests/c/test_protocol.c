/* The wire format on its own: every frame type encodes and parses back to the
 * same fields; every truncation, trailing byte and out-of-range field is
 * rejected; and a deterministic mutation loop over valid frames never makes
 * the parser read out of bounds (ASan) or accept a field beyond its limits. */
#include "harness.h"
#include "protocol.h"
#include "protocol_check.h"

#define MAX_FRAME 4096

typedef struct frame {
    const char *what;
    uint8_t buf[MAX_FRAME];
    size_t len; /* header + body, an inline payload included */
} frame;

static const char *const frame_names[] = {
    "hello", "hello, empty token", "welcome", "declare", "declare variable", "ring",
    "block in a slot", "inline block", "empty inline block", "step end",
    "step end, no slot", "drop", "drop, gaps", "steer double", "steer int64",
    "steer string", "steer empty string", "release", "bye", "bye ack", "error",
    "error, empty"};
#define NFRAMES ((int)(sizeof frame_names / sizeof frame_names[0]))

static frame frames[NFRAMES];
static const int nframes = NFRAMES;

static const uint64_t shape3[3] = {100, 200, 300}, start3[3] = {10, 0, 299},
                      count3[3] = {90, 200, 1};
static const uint64_t counters7[CDL_NCOUNTERS] = {1, 2, 3, 4, 5, UINT64_MAX, 7};
static const uint8_t payload[24] = "twenty-four bytes inline";

/* Encode frame i into out (capacity cap): what the encoder returns. An inline
 * BLOCK's payload is not part of it (build_frames appends it). */
static size_t encode_frame(int i, uint8_t *out, size_t cap)
{
    double d = -1.25e300;
    int64_t v = INT64_MIN + 5;
    uint64_t capacity = 1000, zero = 0;
    switch (i) {
    case 0: return cdl_encode_hello(out, cap, 3, 8, 4242, CDL_TRANSPORT_SHM, "token-abc");
    case 1: return cdl_encode_hello(out, cap, 0, 1, 1, CDL_TRANSPORT_TCP, "");
    case 2: return cdl_encode_welcome(out, cap, 0x0102030405060708ull, "token-abc");
    case 3:
        return cdl_encode_declare(out, cap, 7, "temperature", CAUDAL_FLOAT64, 3,
                                  CAUDAL_ORDER_F, 0, shape3, start3, count3);
    case 4:
        return cdl_encode_declare(out, cap, 0, "particles", CAUDAL_COMPLEX128, 1,
                                  CAUDAL_ORDER_C, 1, &zero, &zero, &capacity);
    case 5: return cdl_encode_ring(out, cap, 4, 1u << 20);
    case 6: return cdl_encode_block(out, cap, 2, 1, 99, 128, 800, 100);
    case 7: return cdl_encode_block(out, cap, 3, CDL_NO_SLOT, 100, 0, sizeof payload, 3);
    case 8: return cdl_encode_block(out, cap, 0, CDL_NO_SLOT, 5, 0, 0, 0);
    case 9: return cdl_encode_step_end(out, cap, 101, 3, 2);
    case 10: return cdl_encode_step_end(out, cap, 0, 0, CDL_NO_SLOT);
    case 11: return cdl_encode_drop(out, cap, 2, 9, 8);
    case 12: return cdl_encode_drop(out, cap, 10, 100, 3);
    case 13: return cdl_encode_steer(out, cap, "source", CAUDAL_VALUE_DOUBLE, &d);
    case 14: return cdl_encode_steer(out, cap, "n", CAUDAL_VALUE_INT64, &v);
    case 15: return cdl_encode_steer(out, cap, "mode", CAUDAL_VALUE_STRING, "fast and loose");
    case 16: return cdl_encode_steer(out, cap, "k", CAUDAL_VALUE_STRING, "");
    case 17: return cdl_encode_release(out, cap, 65535);
    case 18: return cdl_encode_bye(out, cap, counters7);
    case 19: return cdl_encode_bye_ack(out, cap);
    case 20: return cdl_encode_error(out, cap, CAUDAL_ERR_AUTH, "wrong job token");
    case 21: return cdl_encode_error(out, cap, CAUDAL_ERR_IO, "");
    }
    CHECK(!"no such frame");
    return 0;
}

static void build_frames(void)
{
    for (int i = 0; i < nframes; i++) {
        frame *f = &frames[i];
        f->what = frame_names[i];
        f->len = encode_frame(i, f->buf, MAX_FRAME);
        CHECK(f->len >= CDL_HEADER_LEN);
        if (!strcmp(f->what, "inline block")) {
            CHECK(f->len == CDL_HEADER_LEN + CDL_BLOCK_META_LEN);
            memcpy(f->buf + f->len, payload, sizeof payload);
            f->len += sizeof payload;
        }
    }
}

/* Parse a body from an exactly sized heap copy, so that ASan sees any read
 * past its end. For BLOCK only the meta is copied, as the receiver buffers it. */
static int parse_exact(uint8_t type, const uint8_t *body, uint64_t len, cdl_msg *m)
{
    uint64_t have = type == CDL_BLOCK && len > CDL_BLOCK_META_LEN ? CDL_BLOCK_META_LEN : len;
    uint8_t *copy = malloc(have ? have : 1);
    CHECK(copy);
    memcpy(copy, body, have);
    int rc = cdl_parse_body(type, copy, len, m);
    if (rc == CAUDAL_OK)
        CHECK(parsed_within_limits(m, type, copy, len));
    free(copy); /* m's pointers now dangle: callers use its numbers only */
    return rc;
}

static int eq_bytes(const uint8_t *p, uint64_t n, const char *s)
{
    return n == strlen(s) && (n == 0 || memcmp(p, s, n) == 0);
}

/* Round trip: header and body, every field compared with what was encoded. */
static void check_roundtrip(const frame *f)
{
    cdl_header h;
    CHECK_RC(cdl_parse_header(f->buf, &h), CAUDAL_OK);
    CHECK(h.body_len == f->len - CDL_HEADER_LEN);
    const uint8_t *body = f->buf + CDL_HEADER_LEN;
    cdl_msg m;
    CHECK_RC(cdl_parse_body(h.type, body, h.body_len, &m), CAUDAL_OK);
    CHECK(m.type == h.type);
    CHECK(parsed_within_limits(&m, h.type, body, h.body_len));
    const char *w = f->what;
    if (!strcmp(w, "hello")) {
        CHECK(m.type == CDL_HELLO && m.u.hello.rank == 3 && m.u.hello.size == 8 &&
              m.u.hello.pid == 4242 && m.u.hello.transport == CDL_TRANSPORT_SHM);
        CHECK(eq_bytes(m.u.hello.token, m.u.hello.token_len, "token-abc"));
    } else if (!strcmp(w, "hello, empty token")) {
        CHECK(m.u.hello.rank == 0 && m.u.hello.size == 1 && m.u.hello.pid == 1 &&
              m.u.hello.transport == CDL_TRANSPORT_TCP && m.u.hello.token_len == 0);
    } else if (!strcmp(w, "welcome")) {
        CHECK(m.type == CDL_WELCOME && m.u.welcome.connection == 0x0102030405060708ull);
        CHECK(eq_bytes(m.u.welcome.token, m.u.welcome.token_len, "token-abc"));
    } else if (!strcmp(w, "declare")) {
        const struct cdl_declare *d = &m.u.declare;
        CHECK(m.type == CDL_DECLARE && d->id == 7 && d->dtype == CAUDAL_FLOAT64 &&
              d->ndim == 3 && d->order == CAUDAL_ORDER_F && d->variable == 0);
        CHECK(eq_bytes(d->name, d->name_len, "temperature"));
        for (int k = 0; k < 3; k++)
            CHECK(d->shape[k] == shape3[k] && d->start[k] == start3[k] &&
                  d->count[k] == count3[k]);
    } else if (!strcmp(w, "declare variable")) {
        const struct cdl_declare *d = &m.u.declare;
        CHECK(d->id == 0 && d->dtype == CAUDAL_COMPLEX128 && d->ndim == 1 &&
              d->order == CAUDAL_ORDER_C && d->variable == 1 && d->count[0] == 1000 &&
              d->shape[0] == 0 && d->start[0] == 0);
        CHECK(eq_bytes(d->name, d->name_len, "particles"));
    } else if (!strcmp(w, "ring")) {
        CHECK(m.type == CDL_RING && m.u.ring.depth == 4 && m.u.ring.slot_bytes == 1u << 20);
    } else if (!strcmp(w, "block in a slot")) {
        const struct cdl_block *b = &m.u.block;
        CHECK(m.type == CDL_BLOCK && b->id == 2 && b->slot == 1 && b->step == 99 &&
              b->offset == 128 && b->nbytes == 800 && b->count == 100);
    } else if (!strcmp(w, "inline block")) {
        const struct cdl_block *b = &m.u.block;
        CHECK(b->id == 3 && b->slot == CDL_NO_SLOT && b->step == 100 && b->offset == 0 &&
              b->nbytes == sizeof payload && b->count == 3);
        CHECK(memcmp(body + CDL_BLOCK_META_LEN, payload, sizeof payload) == 0);
    } else if (!strcmp(w, "empty inline block")) {
        CHECK(m.u.block.slot == CDL_NO_SLOT && m.u.block.nbytes == 0 && m.u.block.step == 5);
    } else if (!strcmp(w, "step end")) {
        CHECK(m.type == CDL_STEP_END && m.u.step_end.step == 101 &&
              m.u.step_end.nblocks == 3 && m.u.step_end.slot == 2);
    } else if (!strcmp(w, "step end, no slot")) {
        CHECK(m.u.step_end.step == 0 && m.u.step_end.nblocks == 0 &&
              m.u.step_end.slot == CDL_NO_SLOT);
    } else if (!strcmp(w, "drop")) {
        CHECK(m.type == CDL_DROP && m.u.drop.first_step == 2 && m.u.drop.last_step == 9 &&
              m.u.drop.count == 8);
    } else if (!strcmp(w, "drop, gaps")) {
        CHECK(m.u.drop.first_step == 10 && m.u.drop.last_step == 100 && m.u.drop.count == 3);
    } else if (!strcmp(w, "steer double")) {
        CHECK(m.type == CDL_STEER && m.u.steer.value_type == CAUDAL_VALUE_DOUBLE &&
              m.u.steer.value_len == 8 && m.u.steer.d == -1.25e300);
        CHECK(eq_bytes(m.u.steer.key, m.u.steer.key_len, "source"));
    } else if (!strcmp(w, "steer int64")) {
        CHECK(m.u.steer.value_type == CAUDAL_VALUE_INT64 && m.u.steer.i == INT64_MIN + 5);
        CHECK(eq_bytes(m.u.steer.key, m.u.steer.key_len, "n"));
    } else if (!strcmp(w, "steer string")) {
        CHECK(m.u.steer.value_type == CAUDAL_VALUE_STRING);
        CHECK(eq_bytes(m.u.steer.key, m.u.steer.key_len, "mode"));
        CHECK(eq_bytes(m.u.steer.str, m.u.steer.value_len, "fast and loose"));
    } else if (!strcmp(w, "steer empty string")) {
        CHECK(m.u.steer.value_type == CAUDAL_VALUE_STRING && m.u.steer.value_len == 0);
        CHECK(eq_bytes(m.u.steer.key, m.u.steer.key_len, "k"));
    } else if (!strcmp(w, "release")) {
        CHECK(m.type == CDL_RELEASE && m.u.release.slot == 65535);
    } else if (!strcmp(w, "bye")) {
        CHECK(m.type == CDL_BYE);
        for (unsigned k = 0; k < CDL_NCOUNTERS; k++)
            CHECK(m.u.bye.counters[k] == counters7[k]);
    } else if (!strcmp(w, "bye ack")) {
        CHECK(m.type == CDL_BYE_ACK && h.body_len == 0);
    } else if (!strcmp(w, "error")) {
        CHECK(m.type == CDL_ERROR && m.u.error.status == CAUDAL_ERR_AUTH);
        CHECK(eq_bytes(m.u.error.text, m.u.error.len, "wrong job token"));
    } else if (!strcmp(w, "error, empty")) {
        CHECK(m.u.error.status == CAUDAL_ERR_IO && m.u.error.len == 0);
    } else {
        CHECK(!"frame without a field check");
    }
}

/* Every shorter body and one trailing byte more are rejected. */
static void check_lengths(const frame *f)
{
    cdl_header h;
    CHECK_RC(cdl_parse_header(f->buf, &h), CAUDAL_OK);
    const uint8_t *body = f->buf + CDL_HEADER_LEN;
    cdl_msg m;
    for (uint64_t k = 0; k < h.body_len; k++) {
        int rc = parse_exact(h.type, body, k, &m);
        if (rc != CAUDAL_ERR_PROTOCOL) {
            fprintf(stderr, "%s truncated to %llu of %llu body bytes: %d\n", f->what,
                    (unsigned long long)k, (unsigned long long)h.body_len, rc);
            exit(1);
        }
    }
    uint8_t longer[MAX_FRAME + 8];
    memcpy(longer, body, h.body_len);
    longer[h.body_len] = 0;
    CHECK_RC(parse_exact(h.type, longer, h.body_len + 1, &m), CAUDAL_ERR_PROTOCOL);
}

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void header(uint8_t *h, unsigned magic, unsigned version, unsigned type,
                   uint32_t reserved, uint64_t body)
{
    put_le(h, magic, 2);
    h[2] = (uint8_t)version;
    h[3] = (uint8_t)type;
    put_le(h + 4, reserved, 4);
    put_le(h + 8, body, 8);
}

static void check_headers(void)
{
    uint8_t h[CDL_HEADER_LEN];
    cdl_header out;
    header(h, CDL_MAGIC, CDL_VERSION, CDL_STEP_END, 0, 16);
    CHECK_RC(cdl_parse_header(h, &out), CAUDAL_OK);
    CHECK(out.type == CDL_STEP_END && out.body_len == 16);

    header(h, 0xCAD2, CDL_VERSION, CDL_STEP_END, 0, 16);
    CHECK_RC(cdl_parse_header(h, &out), CAUDAL_ERR_PROTOCOL);
    header(h, 0xD1CA, CDL_VERSION, CDL_STEP_END, 0, 16); /* byte-swapped magic */
    CHECK_RC(cdl_parse_header(h, &out), CAUDAL_ERR_PROTOCOL);
    header(h, 0, 0, 0, 0, 0);
    CHECK_RC(cdl_parse_header(h, &out), CAUDAL_ERR_PROTOCOL);
    /* A bad magic is a protocol error even if the version differs too. */
    header(h, 0x1234, 7, CDL_HELLO, 0, 16);
    CHECK_RC(cdl_parse_header(h, &out), CAUDAL_ERR_PROTOCOL);

    unsigned versions[] = {0, CDL_VERSION + 1, 255};
    for (size_t i = 0; i < sizeof versions / sizeof versions[0]; i++) {
        header(h, CDL_MAGIC, versions[i], CDL_HELLO, 0, 16);
        CHECK_RC(cdl_parse_header(h, &out), CAUDAL_ERR_VERSION);
        /* Version is decided before type and length: a newer peer is told so. */
        header(h, CDL_MAGIC, versions[i], 200, 0xFFFFFFFFu, UINT64_MAX);
        CHECK_RC(cdl_parse_header(h, &out), CAUDAL_ERR_VERSION);
    }

    unsigned types[] = {0, CDL_ERROR + 1, 128, 255};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        header(h, CDL_MAGIC, CDL_VERSION, types[i], 0, 0);
        CHECK_RC(cdl_parse_header(h, &out), CAUDAL_ERR_PROTOCOL);
    }

    uint32_t reserved[] = {1, 0x100, 0x10000, 0x1000000, 0xFFFFFFFFu};
    for (size_t i = 0; i < sizeof reserved / sizeof reserved[0]; i++) {
        header(h, CDL_MAGIC, CDL_VERSION, CDL_RELEASE, reserved[i], 8);
        CHECK_RC(cdl_parse_header(h, &out), CAUDAL_ERR_PROTOCOL);
    }

    for (unsigned t = CDL_HELLO; t <= CDL_ERROR; t++) {
        header(h, CDL_MAGIC, CDL_VERSION, t, 0, CDL_MAX_CONTROL_BODY);
        CHECK_RC(cdl_parse_header(h, &out), CAUDAL_OK);
        CHECK(out.type == t && out.body_len == CDL_MAX_CONTROL_BODY);
        header(h, CDL_MAGIC, CDL_VERSION, t, 0, CDL_MAX_CONTROL_BODY + 1ull);
        CHECK_RC(cdl_parse_header(h, &out), t == CDL_BLOCK ? CAUDAL_OK : CAUDAL_ERR_PROTOCOL);
        header(h, CDL_MAGIC, CDL_VERSION, t, 0, UINT64_MAX);
        CHECK_RC(cdl_parse_header(h, &out), t == CDL_BLOCK ? CAUDAL_OK : CAUDAL_ERR_PROTOCOL);
    }
    /* An inline BLOCK may be large, but never shorter than its meta. */
    header(h, CDL_MAGIC, CDL_VERSION, CDL_BLOCK, 0, 1ull << 40);
    CHECK_RC(cdl_parse_header(h, &out), CAUDAL_OK);
    CHECK(out.body_len == 1ull << 40);
    header(h, CDL_MAGIC, CDL_VERSION, CDL_BLOCK, 0, CDL_BLOCK_META_LEN - 1);
    CHECK_RC(cdl_parse_header(h, &out), CAUDAL_ERR_PROTOCOL);
    header(h, CDL_MAGIC, CDL_VERSION, CDL_BLOCK, 0, 0);
    CHECK_RC(cdl_parse_header(h, &out), CAUDAL_ERR_PROTOCOL);
}

/* A DECLARE body written field by field, to express what the encoder refuses. */
static size_t declare_body(uint8_t *b, uint8_t dtype, uint8_t ndim, uint8_t order,
                           uint8_t variable, uint16_t name_len, const void *name, size_t nname)
{
    size_t n = 0;
    put_le(b + n, 0, 4), n += 4;
    b[n++] = dtype;
    b[n++] = ndim;
    b[n++] = order;
    b[n++] = variable;
    put_le(b + n, name_len, 2), n += 2;
    put_le(b + n, 0, 2), n += 2;
    for (unsigned d = 0; d < ndim; d++)
        put_le(b + n, 10, 8), n += 8; /* shape */
    for (unsigned d = 0; d < ndim; d++)
        put_le(b + n, 0, 8), n += 8; /* start */
    for (unsigned d = 0; d < ndim; d++)
        put_le(b + n, 10, 8), n += 8; /* count */
    memcpy(b + n, name, nname);
    return n + nname;
}

static void check_declare_fields(void)
{
    static uint8_t b[12 + 24 * 255 + 256];
    cdl_msg m;
    char name256[257];
    memset(name256, 'n', 256);
    name256[256] = 0;
    /* The builder itself makes a valid frame. */
    size_t n = declare_body(b, CAUDAL_INT32, 2, 0, 0, 4, "temp", 4);
    CHECK_RC(parse_exact(CDL_DECLARE, b, n, &m), CAUDAL_OK);
    n = declare_body(b, CAUDAL_INT32, 8, 1, 0, 255, name256, 255);
    CHECK_RC(parse_exact(CDL_DECLARE, b, n, &m), CAUDAL_OK);
    CHECK(m.u.declare.ndim == 8 && m.u.declare.name_len == 255);

    n = declare_body(b, CAUDAL_INT32, 0, 0, 0, 4, "temp", 4);
    CHECK_RC(parse_exact(CDL_DECLARE, b, n, &m), CAUDAL_ERR_PROTOCOL);
    n = declare_body(b, CAUDAL_INT32, 9, 0, 0, 4, "temp", 4);
    CHECK_RC(parse_exact(CDL_DECLARE, b, n, &m), CAUDAL_ERR_PROTOCOL);
    n = declare_body(b, CAUDAL_INT32, 255, 0, 0, 4, "temp", 4);
    CHECK_RC(parse_exact(CDL_DECLARE, b, n, &m), CAUDAL_ERR_PROTOCOL);
    uint8_t dtypes[] = {0, CAUDAL_COMPLEX128 + 1, 255};
    for (size_t i = 0; i < sizeof dtypes; i++) {
        n = declare_body(b, dtypes[i], 1, 0, 0, 4, "temp", 4);
        CHECK_RC(parse_exact(CDL_DECLARE, b, n, &m), CAUDAL_ERR_PROTOCOL);
    }
    n = declare_body(b, CAUDAL_INT32, 1, 2, 0, 4, "temp", 4); /* order */
    CHECK_RC(parse_exact(CDL_DECLARE, b, n, &m), CAUDAL_ERR_PROTOCOL);
    n = declare_body(b, CAUDAL_INT32, 1, 0, 2, 4, "temp", 4); /* variable flag */
    CHECK_RC(parse_exact(CDL_DECLARE, b, n, &m), CAUDAL_ERR_PROTOCOL);
    n = declare_body(b, CAUDAL_INT32, 2, 0, 1, 4, "temp", 4); /* variable is 1-D */
    CHECK_RC(parse_exact(CDL_DECLARE, b, n, &m), CAUDAL_ERR_PROTOCOL);
    n = declare_body(b, CAUDAL_INT32, 1, 0, 0, 0, "", 0); /* empty name */
    CHECK_RC(parse_exact(CDL_DECLARE, b, n, &m), CAUDAL_ERR_PROTOCOL);
    n = declare_body(b, CAUDAL_INT32, 1, 0, 0, 256, name256, 256); /* name too long */
    CHECK_RC(parse_exact(CDL_DECLARE, b, n, &m), CAUDAL_ERR_PROTOCOL);
    n = declare_body(b, CAUDAL_INT32, 1, 0, 0, 5, "te\0mp", 5); /* NUL in the name */
    CHECK_RC(parse_exact(CDL_DECLARE, b, n, &m), CAUDAL_ERR_PROTOCOL);
    n = declare_body(b, CAUDAL_INT32, 1, 0, 0, 5, "temp\0", 5);
    CHECK_RC(parse_exact(CDL_DECLARE, b, n, &m), CAUDAL_ERR_PROTOCOL);
    n = declare_body(b, CAUDAL_INT32, 1, 0, 0, 9, "temp", 4); /* name_len past the end */
    CHECK_RC(parse_exact(CDL_DECLARE, b, n, &m), CAUDAL_ERR_PROTOCOL);
    n = declare_body(b, CAUDAL_INT32, 1, 0, 0, 3, "temp", 4); /* trailing byte */
    CHECK_RC(parse_exact(CDL_DECLARE, b, n, &m), CAUDAL_ERR_PROTOCOL);

    /* The encoder refuses what the parser would. */
    uint64_t s[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    CHECK(cdl_encode_declare(b, sizeof b, 0, "a", CAUDAL_INT8, 0, 0, 0, s, s, s) == 0);
    CHECK(cdl_encode_declare(b, sizeof b, 0, "a", CAUDAL_INT8, 9, 0, 0, s, s, s) == 0);
    CHECK(cdl_encode_declare(b, sizeof b, 0, "", CAUDAL_INT8, 1, 0, 0, s, s, s) == 0);
    CHECK(cdl_encode_declare(b, sizeof b, 0, name256, CAUDAL_INT8, 1, 0, 0, s, s, s) == 0);
    CHECK(cdl_declare_frame_len(11, 3) ==
          cdl_encode_declare(b, sizeof b, 0, "temperature", CAUDAL_INT8, 3, 0, 0, s, s, s));
}

/* A STEER body written field by field. */
static size_t steer_body(uint8_t *b, uint8_t type, uint16_t key_len, const void *key,
                         size_t nkey, uint32_t value_len, const void *value, size_t nvalue)
{
    size_t n = 0;
    b[n++] = type;
    b[n++] = 0;
    put_le(b + n, key_len, 2), n += 2;
    put_le(b + n, value_len, 4), n += 4;
    memcpy(b + n, key, nkey), n += nkey;
    memcpy(b + n, value, nvalue), n += nvalue;
    return n;
}

static void check_steer_fields(void)
{
    static uint8_t b[CDL_MAX_STRING_VALUE + 1024];
    static char big[CDL_MAX_STRING_VALUE + 2];
    cdl_msg m;
    uint8_t eight[8] = {0, 0, 0, 0, 0, 0, 0xF0, 0x3F}; /* 1.0 */
    size_t n = steer_body(b, CAUDAL_VALUE_DOUBLE, 3, "key", 3, 8, eight, 8);
    CHECK_RC(parse_exact(CDL_STEER, b, n, &m), CAUDAL_OK);
    CHECK(m.u.steer.d == 1.0);

    uint8_t types[] = {0, CAUDAL_VALUE_STRING + 1, 255};
    for (size_t i = 0; i < sizeof types; i++) {
        n = steer_body(b, types[i], 3, "key", 3, 8, eight, 8);
        CHECK_RC(parse_exact(CDL_STEER, b, n, &m), CAUDAL_ERR_PROTOCOL);
    }
    n = steer_body(b, CAUDAL_VALUE_DOUBLE, 3, "key", 3, 4, eight, 4);
    CHECK_RC(parse_exact(CDL_STEER, b, n, &m), CAUDAL_ERR_PROTOCOL);
    n = steer_body(b, CAUDAL_VALUE_DOUBLE, 3, "key", 3, 4, eight, 8);
    CHECK_RC(parse_exact(CDL_STEER, b, n, &m), CAUDAL_ERR_PROTOCOL);
    n = steer_body(b, CAUDAL_VALUE_INT64, 3, "key", 3, 16, eight, 8);
    CHECK_RC(parse_exact(CDL_STEER, b, n, &m), CAUDAL_ERR_PROTOCOL);
    n = steer_body(b, CAUDAL_VALUE_INT64, 3, "key", 3, 0, eight, 0);
    CHECK_RC(parse_exact(CDL_STEER, b, n, &m), CAUDAL_ERR_PROTOCOL);
    n = steer_body(b, CAUDAL_VALUE_STRING, 3, "key", 3, 9, "abc", 3); /* value past end */
    CHECK_RC(parse_exact(CDL_STEER, b, n, &m), CAUDAL_ERR_PROTOCOL);
    n = steer_body(b, CAUDAL_VALUE_STRING, 3, "key", 3, 3, "a\0c", 3); /* NUL in value */
    CHECK_RC(parse_exact(CDL_STEER, b, n, &m), CAUDAL_ERR_PROTOCOL);
    n = steer_body(b, CAUDAL_VALUE_STRING, 0, "", 0, 3, "abc", 3); /* empty key */
    CHECK_RC(parse_exact(CDL_STEER, b, n, &m), CAUDAL_ERR_PROTOCOL);
    n = steer_body(b, CAUDAL_VALUE_STRING, 3, "k\0y", 3, 3, "abc", 3); /* NUL in key */
    CHECK_RC(parse_exact(CDL_STEER, b, n, &m), CAUDAL_ERR_PROTOCOL);
    memset(big, 'k', 256);
    n = steer_body(b, CAUDAL_VALUE_INT64, 256, big, 256, 8, eight, 8); /* key too long */
    CHECK_RC(parse_exact(CDL_STEER, b, n, &m), CAUDAL_ERR_PROTOCOL);
    n = steer_body(b, CAUDAL_VALUE_INT64, 255, big, 255, 8, eight, 8);
    CHECK_RC(parse_exact(CDL_STEER, b, n, &m), CAUDAL_OK);
    memset(big, 'v', sizeof big - 1);
    n = steer_body(b, CAUDAL_VALUE_STRING, 1, "k", 1, CDL_MAX_STRING_VALUE, big,
                   CDL_MAX_STRING_VALUE);
    CHECK_RC(parse_exact(CDL_STEER, b, n, &m), CAUDAL_OK);
    n = steer_body(b, CAUDAL_VALUE_STRING, 1, "k", 1, CDL_MAX_STRING_VALUE + 1, big,
                   CDL_MAX_STRING_VALUE + 1); /* string too long */
    CHECK_RC(parse_exact(CDL_STEER, b, n, &m), CAUDAL_ERR_PROTOCOL);

    /* The encoder refuses the same. */
    double d = 1;
    CHECK(cdl_encode_steer(b, sizeof b, "", CAUDAL_VALUE_DOUBLE, &d) == 0);
    CHECK(cdl_encode_steer(b, sizeof b, "k", 0, &d) == 0);
    CHECK(cdl_encode_steer(b, sizeof b, "k", 4, &d) == 0);
    big[CDL_MAX_STRING_VALUE + 1] = 0;
    CHECK(cdl_encode_steer(b, sizeof b, "k", CAUDAL_VALUE_STRING, big) == 0);
    big[CDL_MAX_STRING_VALUE] = 0;
    size_t len = cdl_encode_steer(b, sizeof b, "k", CAUDAL_VALUE_STRING, big);
    CHECK(len == cdl_steer_frame_len(1, CAUDAL_VALUE_STRING, CDL_MAX_STRING_VALUE));
}

static void check_other_fields(void)
{
    uint8_t b[2048];
    cdl_msg m;
    /* HELLO: rank < size, size in 1..INT32_MAX, a known transport, token <= 1024. */
    struct { uint32_t rank, size; uint16_t transport; int ok; } hellos[] = {
        {0, 1, CDL_TRANSPORT_SHM, 1},     {5, 6, CDL_TRANSPORT_TCP, 1},
        {0, 0, CDL_TRANSPORT_SHM, 0},     {6, 6, CDL_TRANSPORT_SHM, 0},
        {7, 6, CDL_TRANSPORT_SHM, 0},     {0, 0x80000000u, CDL_TRANSPORT_SHM, 0},
        {0, 0x7FFFFFFFu, CDL_TRANSPORT_SHM, 1}, {0, 1, 0, 0}, {0, 1, 3, 0}};
    for (size_t i = 0; i < sizeof hellos / sizeof hellos[0]; i++) {
        size_t n = 0;
        put_le(b + n, hellos[i].rank, 4), n += 4;
        put_le(b + n, hellos[i].size, 4), n += 4;
        put_le(b + n, 1, 4), n += 4;
        put_le(b + n, hellos[i].transport, 2), n += 2;
        put_le(b + n, 2, 2), n += 2;
        memcpy(b + n, "tk", 2), n += 2;
        CHECK_RC(parse_exact(CDL_HELLO, b, n, &m),
                 hellos[i].ok ? CAUDAL_OK : CAUDAL_ERR_PROTOCOL);
    }
    {
        size_t n = 0;
        put_le(b + n, 0, 4), n += 4;
        put_le(b + n, 1, 4), n += 4;
        put_le(b + n, 1, 4), n += 4;
        put_le(b + n, CDL_TRANSPORT_SHM, 2), n += 2;
        put_le(b + n, CDL_MAX_TOKEN + 1, 2), n += 2;
        memset(b + n, 't', CDL_MAX_TOKEN + 1), n += CDL_MAX_TOKEN + 1;
        CHECK_RC(parse_exact(CDL_HELLO, b, n, &m), CAUDAL_ERR_PROTOCOL);
        put_le(b + 14, CDL_MAX_TOKEN, 2);
        CHECK_RC(parse_exact(CDL_HELLO, b, n - 1, &m), CAUDAL_OK);
        /* Same for WELCOME. */
        n = 0;
        put_le(b + n, 9, 8), n += 8;
        put_le(b + n, CDL_MAX_TOKEN + 1, 2), n += 2;
        memset(b + n, 't', CDL_MAX_TOKEN + 1), n += CDL_MAX_TOKEN + 1;
        CHECK_RC(parse_exact(CDL_WELCOME, b, n, &m), CAUDAL_ERR_PROTOCOL);
        char tok[CDL_MAX_TOKEN + 2];
        memset(tok, 't', sizeof tok - 1);
        tok[sizeof tok - 1] = 0;
        CHECK(cdl_encode_hello(b, sizeof b, 0, 1, 1, CDL_TRANSPORT_SHM, tok) == 0);
        CHECK(cdl_encode_welcome(b, sizeof b, 1, tok) == 0);
    }
    /* RING: depth 1..65536, slot_bytes a nonzero multiple of 64. */
    struct { uint32_t depth; uint64_t slot; int ok; } rings[] = {
        {1, 64, 1}, {65536, 64, 1}, {0, 64, 0}, {65537, 64, 0},
        {4, 0, 0},  {4, 100, 0},    {4, 1ull << 63, 0}};
    for (size_t i = 0; i < sizeof rings / sizeof rings[0]; i++) {
        size_t n = cdl_encode_ring(b, sizeof b, rings[i].depth, rings[i].slot);
        CHECK(n == CDL_HEADER_LEN + 16);
        CHECK_RC(parse_exact(CDL_RING, b + CDL_HEADER_LEN, 16, &m),
                 rings[i].ok ? CAUDAL_OK : CAUDAL_ERR_PROTOCOL);
    }
    /* DROP: first <= last, 1 <= count <= last - first + 1. */
    struct { uint64_t first, last, count; int ok; } drops[] = {
        {0, 0, 1, 1},  {0, UINT64_MAX, UINT64_MAX, 1}, {5, 4, 1, 0},
        {4, 4, 0, 0},  {4, 5, 3, 0},                   {0, UINT64_MAX, 0, 0}};
    for (size_t i = 0; i < sizeof drops / sizeof drops[0]; i++) {
        cdl_encode_drop(b, sizeof b, drops[i].first, drops[i].last, drops[i].count);
        CHECK_RC(parse_exact(CDL_DROP, b + CDL_HEADER_LEN, 24, &m),
                 drops[i].ok ? CAUDAL_OK : CAUDAL_ERR_PROTOCOL);
    }
    /* ERROR: at most 4096 bytes of text; the encoder cuts longer ones. */
    static char text[CDL_MAX_MESSAGE + 100];
    memset(text, 'x', sizeof text - 1);
    size_t n = cdl_encode_error(b, 0, CAUDAL_ERR_IO, "x");
    CHECK(n == 0);
    static uint8_t eb[CDL_HEADER_LEN + 8 + CDL_MAX_MESSAGE + 100];
    n = cdl_encode_error(eb, sizeof eb, CAUDAL_ERR_IO, text);
    CHECK(n == CDL_HEADER_LEN + 8 + CDL_MAX_MESSAGE);
    CHECK_RC(parse_exact(CDL_ERROR, eb + CDL_HEADER_LEN, n - CDL_HEADER_LEN, &m), CAUDAL_OK);
    put_le(eb + CDL_HEADER_LEN + 4, CDL_MAX_MESSAGE + 1, 4);
    CHECK_RC(parse_exact(CDL_ERROR, eb + CDL_HEADER_LEN, 8 + CDL_MAX_MESSAGE + 1, &m),
             CAUDAL_ERR_PROTOCOL);
    /* BLOCK: a slot block has no payload; an inline one exactly nbytes of it. */
    cdl_encode_block(b, sizeof b, 0, CDL_NO_SLOT, 1, 0, 100, 100);
    CHECK_RC(cdl_parse_body(CDL_BLOCK, b + CDL_HEADER_LEN, CDL_BLOCK_META_LEN + 100, &m),
             CAUDAL_OK);
    CHECK_RC(cdl_parse_body(CDL_BLOCK, b + CDL_HEADER_LEN, CDL_BLOCK_META_LEN + 99, &m),
             CAUDAL_ERR_PROTOCOL);
    CHECK_RC(cdl_parse_body(CDL_BLOCK, b + CDL_HEADER_LEN, CDL_BLOCK_META_LEN + 101, &m),
             CAUDAL_ERR_PROTOCOL);
    cdl_encode_block(b, sizeof b, 0, 0, 1, 0, 100, 100);
    CHECK_RC(cdl_parse_body(CDL_BLOCK, b + CDL_HEADER_LEN, CDL_BLOCK_META_LEN + 100, &m),
             CAUDAL_ERR_PROTOCOL);
    /* A huge inline length parses (the payload is streamed), a wrapped one not. */
    cdl_encode_block(b, sizeof b, 0, CDL_NO_SLOT, 1, 0, UINT64_MAX - CDL_BLOCK_META_LEN, 1);
    CHECK_RC(cdl_parse_body(CDL_BLOCK, b + CDL_HEADER_LEN, UINT64_MAX, &m), CAUDAL_OK);
    cdl_encode_block(b, sizeof b, 0, CDL_NO_SLOT, 1, 0, UINT64_MAX, 1);
    CHECK_RC(cdl_parse_body(CDL_BLOCK, b + CDL_HEADER_LEN, UINT64_MAX, &m),
             CAUDAL_ERR_PROTOCOL);
    /* Unknown types have no body format. */
    CHECK_RC(cdl_parse_body(0, b, 0, &m), CAUDAL_ERR_PROTOCOL);
    CHECK_RC(cdl_parse_body(CDL_ERROR + 1, b, 0, &m), CAUDAL_ERR_PROTOCOL);
    CHECK_RC(cdl_parse_body(255, b, 16, &m), CAUDAL_ERR_PROTOCOL);
}

/* Encoders write nothing past the capacity: into an exactly sized buffer the
 * frame fits (ASan watches the end), one byte less gives 0. */
static void check_capacity(void)
{
    for (int i = 0; i < nframes; i++) {
        size_t enc = encode_frame(i, frames[i].buf, MAX_FRAME);
        uint8_t *exact = malloc(enc);
        CHECK(exact);
        CHECK(encode_frame(i, exact, enc) == enc);
        CHECK(memcmp(exact, frames[i].buf, enc) == 0);
        CHECK(encode_frame(i, exact, enc - 1) == 0);
        CHECK(encode_frame(i, exact, 0) == 0);
        free(exact);
    }
}

/* ---- mutation fuzzing ------------------------------------------------------ */

static const uint64_t interesting[] = {0,          1,          2,          7,
                                       8,          9,          40,         63,
                                       64,         255,        256,        1024,
                                       1025,       4096,       4097,       65535,
                                       65536,      65537,      0x7FFFFFFF, 0x80000000u,
                                       0xFFFFFFFFu, 1u << 20,  (1u << 20) + 1,
                                       UINT64_MAX, UINT64_MAX - 39, CDL_MAGIC};

static void parse_any(const uint8_t *buf, size_t len, uint64_t *ok_frames)
{
    cdl_msg m;
    /* As the receiver does: header, then the body once buffered. */
    if (len >= CDL_HEADER_LEN) {
        cdl_header h;
        int rc = cdl_parse_header(buf, &h);
        CHECK(rc == CAUDAL_OK || rc == CAUDAL_ERR_PROTOCOL || rc == CAUDAL_ERR_VERSION);
        if (rc == CAUDAL_OK) {
            CHECK(header_within_limits(&h));
            uint64_t have = len - CDL_HEADER_LEN;
            uint64_t need = h.type == CDL_BLOCK ? CDL_BLOCK_META_LEN : h.body_len;
            if (have >= need) {
                rc = parse_exact(h.type, buf + CDL_HEADER_LEN, h.body_len, &m);
                CHECK(rc == CAUDAL_OK || rc == CAUDAL_ERR_PROTOCOL);
                *ok_frames += rc == CAUDAL_OK;
            }
        }
    }
    /* And the body parser alone, on whatever type and bytes. */
    if (len >= 1) {
        int rc = parse_exact(buf[0] % 16, buf + 1, len - 1, &m);
        CHECK(rc == CAUDAL_OK || rc == CAUDAL_ERR_PROTOCOL);
    }
}

static void fuzz(int iterations)
{
    uint64_t s = 0xF022u;
    static uint8_t buf[MAX_FRAME + 64];
    uint64_t ok_frames = 0;
    for (int it = 0; it < iterations; it++) {
        const frame *f = &frames[splitmix64(&s) % (uint64_t)nframes];
        size_t len = f->len;
        memcpy(buf, f->buf, len);
        int nmut = 1 + (int)(splitmix64(&s) % 4);
        for (int k = 0; k < nmut; k++) {
            uint64_t r = splitmix64(&s);
            size_t pos = len ? (size_t)((r >> 8) % len) : 0;
            switch (r % 7) {
            case 0: /* flip a bit */
                if (len)
                    buf[pos] ^= (uint8_t)(1u << ((r >> 40) % 8));
                break;
            case 1: /* random byte */
                if (len)
                    buf[pos] = (uint8_t)(r >> 48);
                break;
            case 2: /* truncate */
                len = len ? (size_t)((r >> 8) % len) : 0;
                break;
            case 3: /* append random bytes */
                for (int e = (int)((r >> 40) % 16); e > 0 && len < sizeof buf; e--)
                    buf[len++] = (uint8_t)splitmix64(&s);
                break;
            case 4: { /* an interesting value in a 1, 2, 4 or 8 byte field */
                static const int widths[] = {1, 2, 4, 8};
                int w = widths[(r >> 40) % 4];
                size_t ni = sizeof interesting / sizeof interesting[0];
                uint64_t v = interesting[(r >> 44) % ni];
                if (pos + (size_t)w <= len)
                    put_le(buf + pos, v, w);
                break;
            }
            case 5: /* the header's length field */
                if (len >= CDL_HEADER_LEN) {
                    uint64_t v = (r >> 40) % 3 == 0 ? len - CDL_HEADER_LEN + ((r >> 50) % 3) - 1
                                                    : (r >> 50) % 200;
                    put_le(buf + 8, v, 8);
                }
                break;
            case 6: /* the frame type */
                if (len >= 4)
                    buf[3] = (uint8_t)((r >> 40) % 14);
                break;
            }
        }
        parse_any(buf, len, &ok_frames);
    }
    /* Mutations that keep a frame valid are common enough to be exercised. */
    CHECK(ok_frames > (uint64_t)iterations / 100);
    printf("protocol: %d mutations, %llu parsed as valid frames\n", iterations,
           (unsigned long long)ok_frames);
}

/* The job token: equal only byte for byte and length for length. */
static void check_token_equal(void)
{
    const char *tok = "0123456789abcdef";
    CHECK(cdl_token_equal(tok, 16, (const uint8_t *)tok, 16));
    CHECK(cdl_token_equal("", 0, (const uint8_t *)"", 0));
    CHECK(!cdl_token_equal(tok, 16, (const uint8_t *)tok, 15)); /* a prefix */
    CHECK(!cdl_token_equal(tok, 15, (const uint8_t *)tok, 16)); /* longer */
    CHECK(!cdl_token_equal(tok, 16, (const uint8_t *)"0123456789abcdeF", 16));
    CHECK(!cdl_token_equal(tok, 16, (const uint8_t *)"", 0));
    char zeros[4] = {0};
    CHECK(!cdl_token_equal("", 0, (const uint8_t *)zeros, 4)); /* padding is not a token */
    static char big[CDL_MAX_TOKEN];
    memset(big, 'x', sizeof big);
    CHECK(cdl_token_equal(big, CDL_MAX_TOKEN, (const uint8_t *)big, CDL_MAX_TOKEN));
    CHECK(!cdl_token_equal(big, CDL_MAX_TOKEN + 1, (const uint8_t *)big, CDL_MAX_TOKEN));
}

int main(int argc, char **argv)
{
    int iterations = argc > 1 ? atoi(argv[1]) : 200000;
    build_frames();
    for (int i = 0; i < nframes; i++) {
        check_roundtrip(&frames[i]);
        check_lengths(&frames[i]);
    }
    check_headers();
    check_declare_fields();
    check_steer_fields();
    check_other_fields();
    check_capacity();
    check_token_equal();
    fuzz(iterations);
    printf("protocol: %d frame types round trip; bad frames rejected\n", nframes);
    return 0;
}
