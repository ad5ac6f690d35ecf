/*
 * caudal_receiver.h - the receiving end of the Caudal protocol.
 *
 * An ingest process (the Ray ingest actor, through the Python extension, or
 * any C program) listens on an endpoint, accepts the ranks' connections and
 * reads their frames as a stream of events. A block event points straight at
 * the data (in the rank's shared-memory slot, or in a buffer the receiver
 * read it into); the data stays valid and unchanged until the block is
 * released, and only then can the rank reuse the slot.
 *
 * Threads: caudal_receiver_next and the steering calls belong to one thread.
 * caudal_block_release may be called from any thread, also after
 * caudal_receiver_close (the memory of held blocks lives until released).
 *
 * Trust: only a peer that presents the job token in its HELLO is a rank.
 * Until then a connection can cost at most one small buffer (a HELLO of at
 * most 1040 body bytes, judged by its header: any other frame, or a larger
 * one, is refused at once), hello_timeout_ms, and one of 64 places for
 * connections waiting to say hello (past that the oldest of them is closed).
 * Such a connection never gives CONNECT, DISCONNECT or any event about a
 * rank; if it fails (wrong token, junk, a frame other than HELLO, the
 * deadline, closed half-way) it is closed and given as one REFUSED event. A
 * connection that closes without sending a byte (a probe whether the
 * endpoint is alive) gives none. One receiver serves each rank once: a
 * second connection claiming a rank that is connected is REFUSED too, and
 * the first goes on. A unix socket is made mode 0600 whatever the umask;
 * opening never removes anything at its path but a stale socket (one that
 * refuses connections).
 */
#ifndef CAUDAL_RECEIVER_H
#define CAUDAL_RECEIVER_H

#include "caudal.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct caudal_receiver caudal_receiver;
typedef struct caudal_block caudal_block; /* a held block; release it once */

typedef struct caudal_receiver_options {
    const char *endpoint; /* "unix:/path" (created; removed at close) or
                             "tcp:host:port" (port 0: any free port) */
    const char *token;    /* NULL: $CAUDAL_TOKEN, else the empty token */
    size_t max_queued_bytes; /* per connection, frames waiting for a slow client;
                                0: 16 MiB. Past it the client is disconnected. */
    size_t max_held_bytes;   /* per connection, bytes of inline blocks (tcp, or
                                too large for a slot) read but not released yet;
                                0: 256 MiB. An inline block that would take the
                                connection past it is not read (nor its buffer
                                allocated) until blocks are released, so the
                                rank's ring fills and its policy applies. A block
                                larger than the limit is read when the connection
                                holds nothing else, or it could never come. */
    unsigned hello_timeout_ms; /* a connection must say HELLO within this;
                                  0: 5000 */
    /* Taken from the reserved space (64 bits, so that it is, and the struct
     * keeps its size and layout): */
    uint64_t gather; /* nonzero: gather the ranks' steps into STEPS events
                        (see below); 0: one event per frame */
    uint64_t spin_us; /* while events come within this of each other,
                         caudal_receiver_next polls its sockets this long
                         (at most 4 times the recent wait) before it sleeps:
                         an awake receiver costs a client's end_step no
                         wake-up (bench_put: 1 MiB from 1.69 to 1.22 times
                         a memcpy). 0: 200; CAUDAL_RECEIVER_NO_SPIN: never;
                         at most 10000 */
    uint64_t reserved[6];
} caudal_receiver_options;

#define CAUDAL_RECEIVER_NO_SPIN UINT64_MAX /* caudal_receiver_options.spin_us */

CAUDAL_API int caudal_receiver_options_init(caudal_receiver_options *opts);

/* Listen. On failure *receiver is NULL and errbuf (if given) says why. */
CAUDAL_API int caudal_receiver_open(caudal_receiver **receiver,
                                    const caudal_receiver_options *opts, char *errbuf,
                                    size_t errlen);

/* The endpoint clients should use ("tcp:127.0.0.1:40123" once a port was
 * chosen). Owned by the receiver. */
CAUDAL_API const char *caudal_receiver_endpoint(const caudal_receiver *receiver);

/* CAUDAL_EVENT_LIST(X) calls X(NAME, value, "name") for each event type;
 * bindings name events from it. What each event fills:
 *   CONNECT     a rank said hello: rank, size
 *   DECLARE     rank declared `array`
 *   BLOCK       a block: array, step, data, nbytes, count, block
 *   STEP_END    rank finished `step` with `nblocks` blocks
 *   DROP        rank dropped steps first_step..step, `ndropped`
 *   STEER       rank reported a steering value
 *   BYE         rank closed cleanly: counters
 *   DISCONNECT  rank's connection ended without BYE, or was cut for a
 *               protocol error: status, message
 *   REFUSED     a connection that never authenticated was closed, or accept
 *               failed: status, message (why); rank is the rank it claimed,
 *               or -1. Nothing else follows from it: log it.
 *   STEPS       (gather mode only) the node's ranks finished more steps:
 *               blocks, nblocks, ncomplete, progress, nprogress, drops,
 *               ndrops; rank is -1.
 *
 * Gather mode (options.gather = 1): the receiver gives no BLOCK, STEP_END or
 * DROP events. It keeps each rank's blocks and the highest step the rank
 * finished (published it, or dropped it per a DROP frame), and gives one
 * STEPS event when the floor, the lowest such step over the connected
 * ranks, rises: so a node's step reaches the caller as one event, not one
 * per rank and frame (a rank that connects late lowers the floor, which
 * says nothing new and gives no event). Connected ranks are those that said hello and have not
 * left; a rank connected but with no step finished holds every step back.
 * When a rank leaves (its BYE or DISCONNECT), it holds nothing back any
 * more: a STEPS event with what that releases (if anything) comes first,
 * then the BYE or DISCONNECT, so that a goodbye never overtakes the steps
 * before it. With no rank connected every block held is complete.
 *   blocks[0, ncomplete)       every held block of the steps now complete,
 *                              ordered by step, then rank, then arrival;
 *   blocks[ncomplete, nblocks) blocks of a step not complete yet, handed
 *                              out early because holding them would stop
 *                              their rank in the middle of a step (its
 *                              inline blocks of that step passed
 *                              max_held_bytes); that step comes complete in
 *                              a later event without them;
 *   progress[0, nprogress)     each connected rank's highest finished step
 *                              (-1: none yet), by rank;
 *   drops[0, ndrops)           the DROP frames received since the last STEPS
 *                              event, adjacent ranges of a rank merged.
 * Each block is the caller's to release exactly once, as a BLOCK event's.
 * Memory stays bounded as without gathering: held blocks are in the ranks'
 * slots (so a rank ahead of the others fills its ring and its policy
 * applies) or count against its max_held_bytes. CONNECT, DECLARE, STEER,
 * BYE, DISCONNECT and REFUSED come as their own events, as without it. */
#define CAUDAL_EVENT_LIST(X)             \
    X(CONNECT, 1, "connect")             \
    X(DECLARE, 2, "declare")             \
    X(BLOCK, 3, "block")                 \
    X(STEP_END, 4, "step_end")           \
    X(DROP, 5, "drop")                   \
    X(STEER, 6, "steer")                 \
    X(BYE, 7, "bye")                     \
    X(DISCONNECT, 8, "disconnect")       \
    X(REFUSED, 9, "refused")             \
    X(STEPS, 10, "steps")

typedef enum caudal_event_type {
#define CAUDAL_EVENT_ENUM_(name, value, text) CAUDAL_EVENT_##name = value,
    CAUDAL_EVENT_LIST(CAUDAL_EVENT_ENUM_)
#undef CAUDAL_EVENT_ENUM_
} caudal_event_type;

/* A block of a STEPS event: what a BLOCK event would say of it. */
typedef struct caudal_step_block {
    const caudal_array_info *array;
    uint64_t step;
    const void *data;     /* 64-byte aligned; valid until the block is released */
    uint64_t nbytes;
    uint64_t count;       /* elements in this block */
    caudal_block *block;  /* owned by the caller: release exactly once */
    int rank;
    int in_shared_memory; /* 1: data is in the rank's slot; 0: read inline */
} caudal_step_block;

/* A connected rank's progress in a STEPS event. */
typedef struct caudal_rank_progress {
    int rank;
    int64_t high; /* the highest step it finished (published or dropped); -1: none */
} caudal_rank_progress;

/* Steps a rank dropped, in a STEPS event. */
typedef struct caudal_rank_drop {
    int rank;
    uint64_t first_step, last_step; /* inclusive */
    uint64_t count;                 /* steps dropped in that range */
} caudal_rank_drop;

typedef struct caudal_event {
    caudal_event_type type;
    int rank;
    int size;
    uint64_t connection; /* distinct per accepted connection */
    uint64_t step;       /* BLOCK, STEP_END; DROP: the last dropped step */
    const caudal_array_info *array; /* DECLARE, BLOCK */
    /* BLOCK */
    const void *data;     /* 64-byte aligned; valid until the block is released */
    uint64_t nbytes;
    uint64_t count;       /* elements in this block */
    int in_shared_memory; /* 1: data is in the rank's slot; 0: read inline */
    caudal_block *block;  /* owned by the caller: release exactly once */
    /* STEP_END */
    uint32_t nblocks;
    /* DROP */
    uint64_t first_step;
    uint64_t ndropped;
    /* STEER */
    const char *key;
    caudal_value_type value_type;
    double value_double;
    int64_t value_int64;
    const char *value_string;
    /* BYE */
    caudal_counters counters;
    /* DISCONNECT, REFUSED */
    int status;
    const char *message;
    /* STEPS (nblocks: entries of `blocks`); the arrays live until the next
     * call, the blocks until each is released */
    const caudal_step_block *blocks;
    const caudal_rank_progress *progress;
    const caudal_rank_drop *drops;
    uint32_t ncomplete, nprogress, ndrops;
    uint64_t reserved[3];
} caudal_event;

/* Wait up to timeout_ms (0: do not wait, -1: forever) for the next event.
 * CAUDAL_OK with *event filled, CAUDAL_ERR_TIMEOUT if none came. The event's
 * pointers, but for `data` and `block` (and those of a STEPS event's blocks),
 * are valid until the next call. A
 * misbehaving client is disconnected with a DISCONNECT event, never fails the
 * receiver. */
CAUDAL_API int caudal_receiver_next(caudal_receiver *receiver, caudal_event *event,
                                    int timeout_ms);

/* Give the block back: the rank may reuse its slot once all blocks of that
 * step are released. Any thread. NULL: CAUDAL_ERR_INVALID. */
CAUDAL_API int caudal_block_release(caudal_block *block);

/* The number of slots of the ring the block lies in (its rank's ring
 * depth); 0 for a block read inline, into memory of its own. A caller that
 * holds a block until its rank's next step arrives keeps one of those
 * slots: with fewer than 3, a rank under the block policy would wait for it
 * at every step, and with 1 for ever. A held inline block counts against
 * max_held_bytes, past which the rank's next blocks are not read. Any
 * thread. NULL: CAUDAL_ERR_INVALID. */
CAUDAL_API int caudal_block_ring_slots(const caudal_block *block, uint32_t *slots);

/* Set a steering value for one rank, or for every rank (rank -1), the ones
 * that connect later included. A rank holds at most 1024 keys, counting
 * those set for every rank (a key set both ways counts twice): setting a new
 * key past that fails with CAUDAL_ERR_INVALID and a message that says the
 * store is full and names the key; keys already set can always be set
 * again. */
CAUDAL_API int caudal_receiver_steer_double(caudal_receiver *receiver, int rank,
                                            const char *key, double value);
CAUDAL_API int caudal_receiver_steer_int64(caudal_receiver *receiver, int rank,
                                           const char *key, int64_t value);
CAUDAL_API int caudal_receiver_steer_string(caudal_receiver *receiver, int rank,
                                            const char *key, const char *value);

/* Number of ranks connected now. */
CAUDAL_API int caudal_receiver_connections(const caudal_receiver *receiver);

CAUDAL_API const char *caudal_receiver_last_error(const caudal_receiver *receiver);

/* Stop listening, close every connection, free what no held block needs and
 * set *receiver to NULL. */
CAUDAL_API int caudal_receiver_close(caudal_receiver **receiver);

#ifdef __cplusplus
}
#endif

#endif /* CAUDAL_RECEIVER_H */
