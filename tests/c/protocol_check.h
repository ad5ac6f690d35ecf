/* protocol_check.h - what a successfully parsed frame must satisfy, shared by
 * test_protocol (mutation loop) and fuzz_protocol (libFuzzer harness). */
#ifndef CAUDAL_TEST_PROTOCOL_CHECK_H
#define CAUDAL_TEST_PROTOCOL_CHECK_H

#include <stdint.h>
#include <string.h>

#include "protocol.h"

/* A pointer field must lie inside the parsed body. */
static inline int inside(const uint8_t *body, uint64_t len, const uint8_t *p, uint64_t n)
{
    if (n == 0)
        return 1;
    return p && p >= body && (uint64_t)(p - body) <= len && n <= len - (uint64_t)(p - body);
}

/* 1 if every field of a frame that parsed OK is within the protocol's limits. */
static inline int parsed_within_limits(const cdl_msg *m, uint8_t type, const uint8_t *body,
                                       uint64_t len)
{
    if (m->type != type)
        return 0;
    switch (type) {
    case CDL_HELLO:
        return m->u.hello.size >= 1 && m->u.hello.size <= INT32_MAX &&
               m->u.hello.rank < m->u.hello.size &&
               (m->u.hello.transport == CDL_TRANSPORT_SHM ||
                m->u.hello.transport == CDL_TRANSPORT_TCP) &&
               m->u.hello.token_len <= CDL_MAX_TOKEN &&
               inside(body, len, m->u.hello.token, m->u.hello.token_len) &&
               len == 16u + m->u.hello.token_len;
    case CDL_WELCOME:
        return m->u.welcome.token_len <= CDL_MAX_TOKEN &&
               inside(body, len, m->u.welcome.token, m->u.welcome.token_len) &&
               len == 10u + m->u.welcome.token_len;
    case CDL_DECLARE: {
        const struct cdl_declare *d = &m->u.declare;
        if (d->ndim < 1 || d->ndim > CAUDAL_MAX_DIMS || caudal_dtype_size(d->dtype) == 0 ||
            d->order > 1 || d->variable > 1 || (d->variable && d->ndim != 1) ||
            d->name_len < 1 || d->name_len > CAUDAL_MAX_NAME ||
            !inside(body, len, d->name, d->name_len) || memchr(d->name, 0, d->name_len))
            return 0;
        return len == 12u + 24u * d->ndim + d->name_len;
    }
    case CDL_RING:
        return m->u.ring.depth >= 1 && m->u.ring.depth <= 65536 && m->u.ring.slot_bytes &&
               m->u.ring.slot_bytes % 64 == 0 && len == 16;
    case CDL_BLOCK:
        /* The meta is fixed; an inline payload is the rest of the body. */
        if (len < CDL_BLOCK_META_LEN)
            return 0;
        return m->u.block.slot == CDL_NO_SLOT ? len - CDL_BLOCK_META_LEN == m->u.block.nbytes
                                              : len == CDL_BLOCK_META_LEN;
    case CDL_STEP_END:
        return len == 16;
    case CDL_DROP:
        return m->u.drop.first_step <= m->u.drop.last_step && m->u.drop.count >= 1 &&
               m->u.drop.count - 1 <= m->u.drop.last_step - m->u.drop.first_step && len == 24;
    case CDL_STEER: {
        const struct cdl_steer *s = &m->u.steer;
        if (s->key_len < 1 || s->key_len > CAUDAL_MAX_NAME ||
            !inside(body, len, s->key, s->key_len) || memchr(s->key, 0, s->key_len))
            return 0;
        if (s->value_type == CAUDAL_VALUE_DOUBLE || s->value_type == CAUDAL_VALUE_INT64)
            return s->value_len == 8 && len == 16u + s->key_len;
        if (s->value_type != CAUDAL_VALUE_STRING || s->value_len > CDL_MAX_STRING_VALUE ||
            !inside(body, len, s->str, s->value_len) ||
            (s->value_len && memchr(s->str, 0, s->value_len)))
            return 0;
        return len == 8u + s->key_len + s->value_len;
    }
    case CDL_RELEASE:
        return len == 8;
    case CDL_BYE:
        return len == 8u * CDL_NCOUNTERS;
    case CDL_BYE_ACK:
        return len == 0;
    case CDL_ERROR:
        return m->u.error.len <= CDL_MAX_MESSAGE &&
               inside(body, len, m->u.error.text, m->u.error.len) && len == 8u + m->u.error.len;
    default:
        return 0;
    }
}

/* A parsed header is within limits. */
static inline int header_within_limits(const cdl_header *h)
{
    if (h->type < CDL_HELLO || h->type > CDL_ERROR)
        return 0;
    if (h->type == CDL_BLOCK)
        return h->body_len >= CDL_BLOCK_META_LEN;
    return h->body_len <= CDL_MAX_CONTROL_BODY;
}

#endif
