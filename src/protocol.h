/*
 * protocol.h - the wire format, written and parsed in one place for both ends.
 * docs/protocol.md is the specification; this file must match it.
 */
#ifndef CAUDAL_PROTOCOL_H
#define CAUDAL_PROTOCOL_H

#include <stddef.h>
#include <stdint.h>

#include "caudal.h"
#include "caudal_receiver.h"

#define CDL_MAGIC 0xCAD1u
#define CDL_VERSION 1u
#define CDL_HEADER_LEN 16u
#define CDL_BLOCK_META_LEN 40u
#define CDL_MAX_CONTROL_BODY (1u << 20) /* every frame but an inline BLOCK */
#define CDL_MAX_TOKEN 1024u
/* rank, size, pid, transport, token length, token: all a peer may send
 * before it has authenticated */
#define CDL_MAX_HELLO_BODY (16u + CDL_MAX_TOKEN)
#define CDL_MAX_MESSAGE 4096u
#define CDL_MAX_STRING_VALUE 65536u
#define CDL_NO_SLOT 0xFFFFFFFFu
#define CDL_NCOUNTERS 7u
/* Extents and block sizes stay below this, so that strides and sizes fit a
 * signed 64-bit integer wherever a block is described (NumPy included). */
#define CDL_MAX_EXTENT (1ull << 62)

enum cdl_type {
    CDL_HELLO = 1,
    CDL_WELCOME = 2,
    CDL_DECLARE = 3,
    CDL_RING = 4,
    CDL_BLOCK = 5,
    CDL_STEP_END = 6,
    CDL_DROP = 7,
    CDL_STEER = 8,
    CDL_RELEASE = 9,
    CDL_BYE = 10,
    CDL_BYE_ACK = 11,
    CDL_ERROR = 12
};

enum cdl_transport { CDL_TRANSPORT_SHM = 1, CDL_TRANSPORT_TCP = 2 };

typedef struct cdl_header {
    uint8_t type;
    uint64_t body_len;
} cdl_header;

/* One parsed frame. Pointers (token, name, key, text) point into the body
 * that was parsed and are not terminated; their lengths are given. */
typedef struct cdl_msg {
    uint8_t type;
    union {
        struct cdl_hello { uint32_t rank, size, pid; uint16_t transport; uint16_t token_len;
                 const uint8_t *token; } hello;
        struct cdl_welcome { uint64_t connection; uint16_t token_len; const uint8_t *token; } welcome;
        struct cdl_declare { uint32_t id; uint8_t dtype, ndim, order, variable; uint16_t name_len;
                 const uint8_t *name; uint64_t shape[CAUDAL_MAX_DIMS],
                 start[CAUDAL_MAX_DIMS], count[CAUDAL_MAX_DIMS]; } declare;
        struct cdl_ring { uint32_t depth; uint64_t slot_bytes; } ring;
        struct cdl_block { uint32_t id, slot; uint64_t step, offset, nbytes, count; } block;
        struct cdl_step_end { uint64_t step; uint32_t nblocks, slot; } step_end;
        struct cdl_drop { uint64_t first_step, last_step, count; } drop;
        struct cdl_steer { uint8_t value_type; uint16_t key_len; uint32_t value_len;
                 const uint8_t *key; double d; int64_t i; const uint8_t *str; } steer;
        struct cdl_release { uint32_t slot; } release;
        struct cdl_bye { uint64_t counters[CDL_NCOUNTERS]; } bye;
        struct cdl_error { int32_t status; uint32_t len; const uint8_t *text; } error;
    } u;
} cdl_msg;

/* Parse the 16-byte header. CAUDAL_ERR_VERSION for another version,
 * CAUDAL_ERR_PROTOCOL for a bad magic, type or length. An inline BLOCK may
 * exceed CDL_MAX_CONTROL_BODY; every other frame may not. */
int cdl_parse_header(const uint8_t *buf, cdl_header *out);

/* Parse a body of `len` bytes of frame type `type`. For BLOCK only the meta
 * part (CDL_BLOCK_META_LEN bytes) is parsed; an inline payload follows it on
 * the wire. Checks every length and field range; CAUDAL_ERR_PROTOCOL else. */
int cdl_parse_body(uint8_t type, const uint8_t *body, uint64_t len, cdl_msg *out);

/* Encoders write header and body into `out` (capacity `cap`) and return the
 * frame length, or 0 if it does not fit. For an inline BLOCK only header and
 * meta are written; the payload of `nbytes` follows as a separate piece. */
size_t cdl_encode_hello(uint8_t *out, size_t cap, uint32_t rank, uint32_t size,
                        uint32_t pid, uint16_t transport, const char *token);
size_t cdl_encode_welcome(uint8_t *out, size_t cap, uint64_t connection,
                          const char *token);
size_t cdl_encode_declare(uint8_t *out, size_t cap, uint32_t id, const char *name,
                          uint8_t dtype, uint8_t ndim, uint8_t order, uint8_t variable,
                          const uint64_t *shape, const uint64_t *start,
                          const uint64_t *count);
size_t cdl_encode_ring(uint8_t *out, size_t cap, uint32_t depth, uint64_t slot_bytes);
size_t cdl_encode_block(uint8_t *out, size_t cap, uint32_t id, uint32_t slot,
                        uint64_t step, uint64_t offset, uint64_t nbytes, uint64_t count);
size_t cdl_encode_step_end(uint8_t *out, size_t cap, uint64_t step, uint32_t nblocks,
                           uint32_t slot);
size_t cdl_encode_drop(uint8_t *out, size_t cap, uint64_t first, uint64_t last,
                       uint64_t count);
/* value: a double*, int64_t* or NUL-terminated string, by value_type. */
size_t cdl_encode_steer(uint8_t *out, size_t cap, const char *key, uint8_t value_type,
                        const void *value);
size_t cdl_encode_release(uint8_t *out, size_t cap, uint32_t slot);
size_t cdl_encode_bye(uint8_t *out, size_t cap, const uint64_t *counters);
size_t cdl_encode_bye_ack(uint8_t *out, size_t cap);
size_t cdl_encode_error(uint8_t *out, size_t cap, int32_t status, const char *text);

/* The rules of a fixed array's declaration, shared by both ends: in every
 * dimension shape < CDL_MAX_EXTENT and start + count <= shape, and the block's
 * bytes (over its non-empty dimensions) below CDL_MAX_EXTENT. CAUDAL_OK with
 * *nbytes, or CAUDAL_ERR_SHAPE with the reason written to why. */
int cdl_check_block(unsigned ndim, const uint64_t *shape, const uint64_t *start,
                    const uint64_t *count, size_t itemsize, uint64_t *nbytes, char *why,
                    size_t whylen);

/* The rules of a variable-length array's declaration, shared by both ends:
 * 1-D, shape and start 0 (unused), capacity elements of itemsize below
 * CDL_MAX_EXTENT bytes. CAUDAL_OK, or CAUDAL_ERR_SHAPE with the reason. */
/* 1 if `got` is the job token `want`, in time independent of both: every
 * byte up to CDL_MAX_TOKEN is compared whatever the lengths, so neither the
 * token nor its length leaks. Both lengths must be at most CDL_MAX_TOKEN. */
int cdl_token_equal(const char *want, size_t want_len, const uint8_t *got, size_t got_len);

int cdl_check_var(unsigned ndim, uint64_t shape, uint64_t start, uint64_t capacity,
                  size_t itemsize, char *why, size_t whylen);

/* Upper bound of an encoded frame with these variable parts (for buffers). */
size_t cdl_declare_frame_len(size_t name_len, unsigned ndim);
size_t cdl_steer_frame_len(size_t key_len, uint8_t value_type, size_t str_len);

#endif /* CAUDAL_PROTOCOL_H */
