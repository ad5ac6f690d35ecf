/* gather.h - the receiver's gathering mode: a node's steps as one event.
 *
 * The receiver tells the gatherer what its connections do (a rank joins, a
 * block arrives, a step ends or is dropped, a rank leaves) and asks it for a
 * STEPS event; the gatherer keeps the blocks that wait for their step to be
 * complete and each connected rank's highest finished step, and knows
 * nothing of sockets. Connections are named by their id. Every call that may
 * grow memory does it there and then, so making an event never fails.
 */
#ifndef CAUDAL_GATHER_H
#define CAUDAL_GATHER_H

#include <stddef.h>
#include <stdint.h>

#include "caudal_receiver.h"

typedef struct cdl_member {
    uint64_t conn;
    int rank;
    int has_high;
    uint64_t high;
} cdl_member;

typedef struct cdl_held {
    caudal_step_block b;
    uint64_t conn;
    uint64_t seq; /* arrival: the order of a rank's blocks within a step */
} cdl_held;

typedef struct cdl_gather {
    cdl_member *members; /* the connected ranks, in joining order */
    size_t nmembers, members_cap;
    cdl_held *held; /* blocks not handed out yet, in arrival order */
    size_t nheld, held_cap;
    uint64_t seq;
    cdl_held *sorted;       /* scratch, as many entries as held */
    caudal_step_block *out; /* the last event's blocks, as many entries as held */
    size_t sorted_cap, out_cap;
    caudal_rank_progress *progress; /* the last event's, an entry per member */
    size_t progress_cap;
    caudal_rank_drop *drops;     /* since the last event */
    caudal_rank_drop *drops_out; /* the last event's */
    size_t ndrops, drops_cap, drops_out_cap;
    int floor_kind; /* of the last event: FLOOR_* in gather.c */
    uint64_t floor;
} cdl_gather;

void cdl_gather_init(cdl_gather *g);
void cdl_gather_free(cdl_gather *g); /* the blocks still held are the caller's */

/* A rank said hello on connection `conn`: it holds every step back until it
 * finishes one. CAUDAL_ERR_NOMEM if it cannot be recorded. */
int cdl_gather_join(cdl_gather *g, uint64_t conn, int rank);

/* The rank of `conn` left (BYE or DISCONNECT): it holds nothing back. */
void cdl_gather_leave(cdl_gather *g, uint64_t conn);

/* Keep a block (b->block is then the gatherer's until an event hands it
 * out). CAUDAL_ERR_NOMEM: not kept, the block is still the caller's. */
int cdl_gather_block(cdl_gather *g, uint64_t conn, const caudal_step_block *b);

/* The rank of `conn` finished `step` (published it). */
void cdl_gather_finished(cdl_gather *g, uint64_t conn, uint64_t step);

/* The rank of `conn` dropped steps first..last (count of them). */
int cdl_gather_dropped(cdl_gather *g, uint64_t conn, uint64_t first, uint64_t last,
                       uint64_t count);

/* Whether `conn` has blocks held and all of them are of `step`. */
int cdl_gather_holds_only(const cdl_gather *g, uint64_t conn, uint64_t step);

/* Fill *ev with a STEPS event if there is anything to say: the floor moved,
 * blocks became complete, `early` (a connection id, 0: none) has blocks held,
 * or, with `forced` (a rank left), drops are waiting. Returns 1 if it did.
 * The arrays it points to live until the next call of this function. */
int cdl_gather_event(cdl_gather *g, caudal_event *ev, int forced, uint64_t early);

/* One held block, removed (NULL: none left): for the receiver's close. */
caudal_block *cdl_gather_pop(cdl_gather *g);

#endif
