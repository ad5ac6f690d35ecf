/* protocol.c - encode and parse frames; every read is bounds-checked. */
#include "protocol.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* ---- little-endian writer ---------------------------------------------- */

typedef struct wr {
    uint8_t *p;
    size_t cap, len;
    int overflow;
} wr;

static void w_bytes(wr *w, const void *src, size_t n)
{
    if (w->overflow || n > w->cap - w->len) {
        w->overflow = 1;
        return;
    }
    if (n)
        memcpy(w->p + w->len, src, n);
    w->len += n;
}

static void w_uint(wr *w, uint64_t v, unsigned nbytes)
{
    uint8_t b[8];
    for (unsigned i = 0; i < nbytes; i++)
        b[i] = (uint8_t)(v >> (8 * i));
    w_bytes(w, b, nbytes);
}

static void w_u8(wr *w, uint64_t v) { w_uint(w, v, 1); }
static void w_u16(wr *w, uint64_t v) { w_uint(w, v, 2); }
static void w_u32(wr *w, uint64_t v) { w_uint(w, v, 4); }
static void w_u64(wr *w, uint64_t v) { w_uint(w, v, 8); }

/* Header with body length patched in by w_end. */
static wr w_begin(uint8_t *out, size_t cap, uint8_t type)
{
    wr w = {out, cap, 0, 0};
    w_u16(&w, CDL_MAGIC);
    w_u8(&w, CDL_VERSION);
    w_u8(&w, type);
    w_u32(&w, 0);
    w_u64(&w, 0);
    return w;
}

static size_t w_end(wr *w, uint64_t extra_body)
{
    if (w->overflow)
        return 0;
    uint64_t body = w->len - CDL_HEADER_LEN + extra_body;
    for (unsigned i = 0; i < 8; i++)
        w->p[8 + i] = (uint8_t)(body >> (8 * i));
    return w->len;
}

/* ---- little-endian reader ---------------------------------------------- */

typedef struct rd {
    const uint8_t *p;
    uint64_t len, pos;
    int short_read;
} rd;

static uint64_t r_uint(rd *r, unsigned nbytes)
{
    if (r->short_read || nbytes > r->len - r->pos) {
        r->short_read = 1;
        return 0;
    }
    uint64_t v = 0;
    for (unsigned i = 0; i < nbytes; i++)
        v |= (uint64_t)r->p[r->pos + i] << (8 * i);
    r->pos += nbytes;
    return v;
}

static const uint8_t *r_bytes(rd *r, uint64_t n)
{
    if (r->short_read || n > r->len - r->pos) {
        r->short_read = 1;
        return NULL;
    }
    const uint8_t *q = r->p + r->pos;
    r->pos += n;
    return q;
}

/* ---- header -------------------------------------------------------------- */

int cdl_parse_header(const uint8_t *buf, cdl_header *out)
{
    rd r = {buf, CDL_HEADER_LEN, 0, 0};
    uint64_t magic = r_uint(&r, 2);
    uint64_t version = r_uint(&r, 1);
    uint64_t type = r_uint(&r, 1);
    uint64_t reserved = r_uint(&r, 4);
    uint64_t body = r_uint(&r, 8);
    if (magic != CDL_MAGIC)
        return CAUDAL_ERR_PROTOCOL;
    if (version != CDL_VERSION)
        return CAUDAL_ERR_VERSION;
    if (type < CDL_HELLO || type > CDL_ERROR || reserved != 0)
        return CAUDAL_ERR_PROTOCOL;
    if (type != CDL_BLOCK && body > CDL_MAX_CONTROL_BODY)
        return CAUDAL_ERR_PROTOCOL;
    if (type == CDL_BLOCK && body < CDL_BLOCK_META_LEN)
        return CAUDAL_ERR_PROTOCOL;
    out->type = (uint8_t)type;
    out->body_len = body;
    return CAUDAL_OK;
}

/* ---- bodies ------------------------------------------------------------ */

static int parse_declare(rd *r, cdl_msg *m)
{
    m->u.declare.id = (uint32_t)r_uint(r, 4);
    m->u.declare.dtype = (uint8_t)r_uint(r, 1);
    m->u.declare.ndim = (uint8_t)r_uint(r, 1);
    m->u.declare.order = (uint8_t)r_uint(r, 1);
    m->u.declare.variable = (uint8_t)r_uint(r, 1);
    m->u.declare.name_len = (uint16_t)r_uint(r, 2);
    r_uint(r, 2);
    unsigned nd = m->u.declare.ndim;
    if (r->short_read || nd < 1 || nd > CAUDAL_MAX_DIMS)
        return CAUDAL_ERR_PROTOCOL;
    if (caudal_dtype_size(m->u.declare.dtype) == 0 || m->u.declare.order > 1 ||
        m->u.declare.variable > 1 || (m->u.declare.variable && nd != 1))
        return CAUDAL_ERR_PROTOCOL;
    for (unsigned d = 0; d < nd; d++)
        m->u.declare.shape[d] = r_uint(r, 8);
    for (unsigned d = 0; d < nd; d++)
        m->u.declare.start[d] = r_uint(r, 8);
    for (unsigned d = 0; d < nd; d++)
        m->u.declare.count[d] = r_uint(r, 8);
    if (m->u.declare.name_len == 0 || m->u.declare.name_len > CAUDAL_MAX_NAME)
        return CAUDAL_ERR_PROTOCOL;
    m->u.declare.name = r_bytes(r, m->u.declare.name_len);
    if (r->short_read || memchr(m->u.declare.name, 0, m->u.declare.name_len))
        return CAUDAL_ERR_PROTOCOL;
    return CAUDAL_OK;
}

static int parse_steer(rd *r, cdl_msg *m)
{
    m->u.steer.value_type = (uint8_t)r_uint(r, 1);
    r_uint(r, 1);
    m->u.steer.key_len = (uint16_t)r_uint(r, 2);
    m->u.steer.value_len = (uint32_t)r_uint(r, 4);
    if (r->short_read || m->u.steer.key_len == 0 || m->u.steer.key_len > CAUDAL_MAX_NAME)
        return CAUDAL_ERR_PROTOCOL;
    m->u.steer.key = r_bytes(r, m->u.steer.key_len);
    if (r->short_read || memchr(m->u.steer.key, 0, m->u.steer.key_len))
        return CAUDAL_ERR_PROTOCOL;
    switch (m->u.steer.value_type) {
    case CAUDAL_VALUE_DOUBLE: {
        if (m->u.steer.value_len != 8)
            return CAUDAL_ERR_PROTOCOL;
        uint64_t bits = r_uint(r, 8);
        memcpy(&m->u.steer.d, &bits, 8);
        break;
    }
    case CAUDAL_VALUE_INT64:
        if (m->u.steer.value_len != 8)
            return CAUDAL_ERR_PROTOCOL;
        m->u.steer.i = (int64_t)r_uint(r, 8);
        break;
    case CAUDAL_VALUE_STRING:
        if (m->u.steer.value_len > CDL_MAX_STRING_VALUE)
            return CAUDAL_ERR_PROTOCOL;
        m->u.steer.str = r_bytes(r, m->u.steer.value_len);
        if (!r->short_read && memchr(m->u.steer.str, 0, m->u.steer.value_len))
            return CAUDAL_ERR_PROTOCOL;
        break;
    default:
        return CAUDAL_ERR_PROTOCOL;
    }
    return CAUDAL_OK;
}

int cdl_parse_body(uint8_t type, const uint8_t *body, uint64_t len, cdl_msg *m)
{
    rd r = {body, len, 0, 0};
    int rc = CAUDAL_OK;
    memset(m, 0, sizeof *m);
    m->type = type;
    switch (type) {
    case CDL_HELLO:
        m->u.hello.rank = (uint32_t)r_uint(&r, 4);
        m->u.hello.size = (uint32_t)r_uint(&r, 4);
        m->u.hello.pid = (uint32_t)r_uint(&r, 4);
        m->u.hello.transport = (uint16_t)r_uint(&r, 2);
        m->u.hello.token_len = (uint16_t)r_uint(&r, 2);
        if (m->u.hello.token_len > CDL_MAX_TOKEN)
            return CAUDAL_ERR_PROTOCOL;
        m->u.hello.token = r_bytes(&r, m->u.hello.token_len);
        if (!r.short_read && (m->u.hello.size == 0 || m->u.hello.rank >= m->u.hello.size ||
                              m->u.hello.size > INT32_MAX ||
                              (m->u.hello.transport != CDL_TRANSPORT_SHM &&
                               m->u.hello.transport != CDL_TRANSPORT_TCP)))
            return CAUDAL_ERR_PROTOCOL;
        break;
    case CDL_WELCOME:
        m->u.welcome.connection = r_uint(&r, 8);
        m->u.welcome.token_len = (uint16_t)r_uint(&r, 2);
        if (m->u.welcome.token_len > CDL_MAX_TOKEN)
            return CAUDAL_ERR_PROTOCOL;
        m->u.welcome.token = r_bytes(&r, m->u.welcome.token_len);
        break;
    case CDL_DECLARE:
        rc = parse_declare(&r, m);
        break;
    case CDL_RING:
        m->u.ring.depth = (uint32_t)r_uint(&r, 4);
        r_uint(&r, 4);
        m->u.ring.slot_bytes = r_uint(&r, 8);
        if (!r.short_read && (m->u.ring.depth == 0 || m->u.ring.depth > 65536 ||
                              m->u.ring.slot_bytes == 0 || m->u.ring.slot_bytes % 64 ||
                              m->u.ring.slot_bytes > (UINT64_MAX >> 17)))
            return CAUDAL_ERR_PROTOCOL;
        break;
    case CDL_BLOCK:
        r.len = len < CDL_BLOCK_META_LEN ? len : CDL_BLOCK_META_LEN;
        m->u.block.id = (uint32_t)r_uint(&r, 4);
        m->u.block.slot = (uint32_t)r_uint(&r, 4);
        m->u.block.step = r_uint(&r, 8);
        m->u.block.offset = r_uint(&r, 8);
        m->u.block.nbytes = r_uint(&r, 8);
        m->u.block.count = r_uint(&r, 8);
        if (r.short_read)
            return CAUDAL_ERR_PROTOCOL;
        /* Inline: the payload is the rest of the body. In a slot: nothing. */
        if (m->u.block.slot == CDL_NO_SLOT ? len - CDL_BLOCK_META_LEN != m->u.block.nbytes
                                           : len != CDL_BLOCK_META_LEN)
            return CAUDAL_ERR_PROTOCOL;
        return CAUDAL_OK;
    case CDL_STEP_END:
        m->u.step_end.step = r_uint(&r, 8);
        m->u.step_end.nblocks = (uint32_t)r_uint(&r, 4);
        m->u.step_end.slot = (uint32_t)r_uint(&r, 4);
        break;
    case CDL_DROP:
        m->u.drop.first_step = r_uint(&r, 8);
        m->u.drop.last_step = r_uint(&r, 8);
        m->u.drop.count = r_uint(&r, 8);
        if (!r.short_read && (m->u.drop.first_step > m->u.drop.last_step ||
                              m->u.drop.count == 0 ||
                              m->u.drop.count - 1 > m->u.drop.last_step - m->u.drop.first_step))
            return CAUDAL_ERR_PROTOCOL;
        break;
    case CDL_STEER:
        rc = parse_steer(&r, m);
        break;
    case CDL_RELEASE:
        m->u.release.slot = (uint32_t)r_uint(&r, 4);
        r_uint(&r, 4);
        break;
    case CDL_BYE:
        for (unsigned i = 0; i < CDL_NCOUNTERS; i++)
            m->u.bye.counters[i] = r_uint(&r, 8);
        break;
    case CDL_BYE_ACK:
        break;
    case CDL_ERROR:
        m->u.error.status = (int32_t)(uint32_t)r_uint(&r, 4);
        m->u.error.len = (uint32_t)r_uint(&r, 4);
        if (m->u.error.len > CDL_MAX_MESSAGE)
            return CAUDAL_ERR_PROTOCOL;
        m->u.error.text = r_bytes(&r, m->u.error.len);
        break;
    default:
        return CAUDAL_ERR_PROTOCOL;
    }
    if (rc != CAUDAL_OK)
        return rc;
    /* Every frame is exactly as long as its fields: trailing bytes are an error. */
    if (r.short_read || r.pos != len)
        return CAUDAL_ERR_PROTOCOL;
    return CAUDAL_OK;
}

/* ---- declarations ---------------------------------------------------------- */

int cdl_check_block(unsigned ndim, const uint64_t *shape, const uint64_t *start,
                    const uint64_t *count, size_t itemsize, uint64_t *nbytes, char *why,
                    size_t whylen)
{
    uint64_t bytes = itemsize, nonempty = itemsize;
    for (unsigned d = 0; d < ndim; d++) {
        if (shape[d] >= CDL_MAX_EXTENT) {
            snprintf(why, whylen, "global shape %" PRIu64 " in dimension %u is beyond 2^62",
                     shape[d], d);
            return CAUDAL_ERR_SHAPE;
        }
        if (start[d] > shape[d] || count[d] > shape[d] - start[d]) {
            snprintf(why, whylen,
                     "block start %" PRIu64 " + count %" PRIu64
                     " is outside the global shape %" PRIu64 " in dimension %u",
                     start[d], count[d], shape[d], d);
            return CAUDAL_ERR_SHAPE;
        }
        if (count[d] && nonempty > (CDL_MAX_EXTENT - 1) / count[d]) {
            snprintf(why, whylen, "block of 2^62 bytes or more");
            return CAUDAL_ERR_SHAPE;
        }
        if (count[d])
            nonempty *= count[d];
        bytes *= count[d];
    }
    *nbytes = bytes;
    return CAUDAL_OK;
}

int cdl_check_var(unsigned ndim, uint64_t shape, uint64_t start, uint64_t capacity,
                  size_t itemsize, char *why, size_t whylen)
{
    if (ndim != 1) {
        snprintf(why, whylen, "a variable-length array is 1-D, not %u-D", ndim);
        return CAUDAL_ERR_SHAPE;
    }
    /* The length comes with each block: a shape or start here means the
     * sender confused this array with a fixed one. */
    if (shape || start) {
        snprintf(why, whylen, "a variable-length array has no global shape or start "
                 "(got shape %" PRIu64 ", start %" PRIu64 ")", shape, start);
        return CAUDAL_ERR_SHAPE;
    }
    if (itemsize == 0 || capacity >= CDL_MAX_EXTENT / itemsize) {
        snprintf(why, whylen, "capacity %" PRIu64 " is 2^62 bytes or more", capacity);
        return CAUDAL_ERR_SHAPE;
    }
    return CAUDAL_OK;
}

/* ---- encoders ------------------------------------------------------------ */

static size_t token_len(const char *token)
{
    size_t n = token ? strlen(token) : 0;
    return n;
}

size_t cdl_encode_hello(uint8_t *out, size_t cap, uint32_t rank, uint32_t size,
                        uint32_t pid, uint16_t transport, const char *token)
{
    size_t tl = token_len(token);
    if (tl > CDL_MAX_TOKEN)
        return 0;
    wr w = w_begin(out, cap, CDL_HELLO);
    w_u32(&w, rank);
    w_u32(&w, size);
    w_u32(&w, pid);
    w_u16(&w, transport);
    w_u16(&w, tl);
    w_bytes(&w, token, tl);
    return w_end(&w, 0);
}

size_t cdl_encode_welcome(uint8_t *out, size_t cap, uint64_t connection,
                          const char *token)
{
    size_t tl = token_len(token);
    if (tl > CDL_MAX_TOKEN)
        return 0;
    wr w = w_begin(out, cap, CDL_WELCOME);
    w_u64(&w, connection);
    w_u16(&w, tl);
    w_bytes(&w, token, tl);
    return w_end(&w, 0);
}

size_t cdl_declare_frame_len(size_t name_len, unsigned ndim)
{
    return CDL_HEADER_LEN + 12 + 24 * (size_t)ndim + name_len;
}

size_t cdl_encode_declare(uint8_t *out, size_t cap, uint32_t id, const char *name,
                          uint8_t dtype, uint8_t ndim, uint8_t order, uint8_t variable,
                          const uint64_t *shape, const uint64_t *start,
                          const uint64_t *count)
{
    size_t nl = strlen(name);
    if (nl == 0 || nl > CAUDAL_MAX_NAME || ndim < 1 || ndim > CAUDAL_MAX_DIMS)
        return 0;
    wr w = w_begin(out, cap, CDL_DECLARE);
    w_u32(&w, id);
    w_u8(&w, dtype);
    w_u8(&w, ndim);
    w_u8(&w, order);
    w_u8(&w, variable);
    w_u16(&w, nl);
    w_u16(&w, 0);
    for (unsigned d = 0; d < ndim; d++)
        w_u64(&w, shape[d]);
    for (unsigned d = 0; d < ndim; d++)
        w_u64(&w, start[d]);
    for (unsigned d = 0; d < ndim; d++)
        w_u64(&w, count[d]);
    w_bytes(&w, name, nl);
    return w_end(&w, 0);
}

size_t cdl_encode_ring(uint8_t *out, size_t cap, uint32_t depth, uint64_t slot_bytes)
{
    wr w = w_begin(out, cap, CDL_RING);
    w_u32(&w, depth);
    w_u32(&w, 0);
    w_u64(&w, slot_bytes);
    return w_end(&w, 0);
}

size_t cdl_encode_block(uint8_t *out, size_t cap, uint32_t id, uint32_t slot,
                        uint64_t step, uint64_t offset, uint64_t nbytes, uint64_t count)
{
    wr w = w_begin(out, cap, CDL_BLOCK);
    w_u32(&w, id);
    w_u32(&w, slot);
    w_u64(&w, step);
    w_u64(&w, offset);
    w_u64(&w, nbytes);
    w_u64(&w, count);
    return w_end(&w, slot == CDL_NO_SLOT ? nbytes : 0);
}

size_t cdl_encode_step_end(uint8_t *out, size_t cap, uint64_t step, uint32_t nblocks,
                           uint32_t slot)
{
    wr w = w_begin(out, cap, CDL_STEP_END);
    w_u64(&w, step);
    w_u32(&w, nblocks);
    w_u32(&w, slot);
    return w_end(&w, 0);
}

size_t cdl_encode_drop(uint8_t *out, size_t cap, uint64_t first, uint64_t last,
                       uint64_t count)
{
    wr w = w_begin(out, cap, CDL_DROP);
    w_u64(&w, first);
    w_u64(&w, last);
    w_u64(&w, count);
    return w_end(&w, 0);
}

size_t cdl_steer_frame_len(size_t key_len, uint8_t value_type, size_t str_len)
{
    return CDL_HEADER_LEN + 8 + key_len + (value_type == CAUDAL_VALUE_STRING ? str_len : 8);
}

size_t cdl_encode_steer(uint8_t *out, size_t cap, const char *key, uint8_t value_type,
                        const void *value)
{
    size_t kl = strlen(key);
    if (kl == 0 || kl > CAUDAL_MAX_NAME)
        return 0;
    size_t vl = value_type == CAUDAL_VALUE_STRING ? strlen(value) : 8;
    if (vl > CDL_MAX_STRING_VALUE)
        return 0;
    wr w = w_begin(out, cap, CDL_STEER);
    w_u8(&w, value_type);
    w_u8(&w, 0);
    w_u16(&w, kl);
    w_u32(&w, vl);
    w_bytes(&w, key, kl);
    if (value_type == CAUDAL_VALUE_DOUBLE) {
        uint64_t bits;
        memcpy(&bits, value, 8);
        w_u64(&w, bits);
    } else if (value_type == CAUDAL_VALUE_INT64) {
        int64_t v;
        memcpy(&v, value, 8);
        w_u64(&w, (uint64_t)v);
    } else if (value_type == CAUDAL_VALUE_STRING) {
        w_bytes(&w, value, vl);
    } else {
        return 0;
    }
    return w_end(&w, 0);
}

size_t cdl_encode_release(uint8_t *out, size_t cap, uint32_t slot)
{
    wr w = w_begin(out, cap, CDL_RELEASE);
    w_u32(&w, slot);
    w_u32(&w, 0);
    return w_end(&w, 0);
}

size_t cdl_encode_bye(uint8_t *out, size_t cap, const uint64_t *counters)
{
    wr w = w_begin(out, cap, CDL_BYE);
    for (unsigned i = 0; i < CDL_NCOUNTERS; i++)
        w_u64(&w, counters[i]);
    return w_end(&w, 0);
}

size_t cdl_encode_bye_ack(uint8_t *out, size_t cap)
{
    wr w = w_begin(out, cap, CDL_BYE_ACK);
    return w_end(&w, 0);
}

size_t cdl_encode_error(uint8_t *out, size_t cap, int32_t status, const char *text)
{
    size_t tl = strlen(text);
    if (tl > CDL_MAX_MESSAGE)
        tl = CDL_MAX_MESSAGE;
    wr w = w_begin(out, cap, CDL_ERROR);
    w_u32(&w, (uint32_t)status);
    w_u32(&w, tl);
    w_bytes(&w, text, tl);
    return w_end(&w, 0);
}

int cdl_token_equal(const char *want, size_t want_len, const uint8_t *got, size_t got_len)
{
    uint8_t a[CDL_MAX_TOKEN] = {0}, b[CDL_MAX_TOKEN] = {0};
    if (want_len > CDL_MAX_TOKEN || got_len > CDL_MAX_TOKEN)
        return 0;
    memcpy(a, want, want_len);
    memcpy(b, got, got_len);
    volatile unsigned diff = (unsigned)(want_len ^ got_len);
    for (size_t k = 0; k < CDL_MAX_TOKEN; k++)
        diff |= (unsigned)(a[k] ^ b[k]);
    return diff == 0;
}
