/* receiver.c - the receiving end: accept ranks, turn frames into events. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "caudal_receiver.h"
#include "gather.h"
#include "outq.h"
#include "protocol.h"
#include "reader.h"
#include "sock.h"
#include "steer.h"

#define DEFAULT_MAX_QUEUED (16u << 20)
#define DEFAULT_MAX_HELD (256u << 20)
#define READ_BUF (256u << 10)
/* What a peer that has not authenticated may cost: a buffer for one HELLO, a
 * few seconds, and one of a bounded number of places. */
#define HELLO_BUF (CDL_HEADER_LEN + CDL_MAX_HELLO_BODY)
#define DEFAULT_HELLO_TIMEOUT_MS 5000
#define DEFAULT_SPIN_US 200u
#define MAX_SPIN_US 10000u
#define MAX_WAITING_HELLO 64
/* accept() out of descriptors leaves the connection queued and the socket
 * readable: look again after this pause instead of spinning. */
#define ACCEPT_PAUSE_NS (100ull * 1000000u)
#define NOTICE_EVERY_NS (1000ull * 1000000u)

typedef struct conn conn;

struct caudal_block {
    caudal_receiver *r;
    conn *cn;
    uint32_t slot; /* CDL_NO_SLOT: data is `heap` */
    uint32_t ring_slots; /* its ring's depth, read at receipt: the connection may be gone */
    void *heap;
    uint64_t heap_bytes;
    caudal_block *next;
};

struct conn {
    caudal_receiver *r;
    int fd;
    uint32_t armed; /* the epoll events it is registered for; 0: not in the set */
    int is_unix;
    uint64_t id;
    int rank, size;
    int hello, bye;
    uint64_t hello_deadline; /* ns; before HELLO only */
    int dead;     /* socket ended or cut: DISCONNECT (or nothing after BYE) due */
    uint64_t end_seq; /* when it went dead, in the receiver's order of finding out */
    int rejected; /* cut for a protocol error: frames still buffered are ignored */
    int mute;     /* a send to it failed: nothing more is sent, but what it sent
                     before (a rank that died with steps in the socket) is
                     still read to the end, which ends the connection */
    int reported; /* the last event of this connection was given */
    int status;
    char why[400];
    int refs; /* the receiver's list + each held block */
    cdl_reader in;
    cdl_outq out;
    caudal_array_info **arrays;
    size_t narrays, arrays_cap;
    /* the rank's ring, mapped read-only */
    uint8_t *ring;
    size_t ring_bytes;
    uint32_t depth;
    uint64_t slot_bytes;
    uint32_t *holds;
    uint8_t *ended;
    uint64_t held_inline; /* bytes of inline blocks handed out, not released */
    int held_wait;        /* the next inline block waits for releases */
    /* the step being received */
    int in_step, any_step;
    uint64_t step;
    uint32_t step_blocks, step_slot;
    /* an inline payload being read */
    int in_payload;
    cdl_msg block_msg;
    uint8_t *payload;
    uint64_t payload_got;
    /* gather mode */
    int left;            /* its BYE or DISCONNECT was decided: holds nothing back */
    int stashed;         /* `stash` (that BYE or DISCONNECT) is due after a STEPS */
    caudal_event stash;
};

struct caudal_receiver {
    int lfd, wake_fd;
    /* epoll, not poll: a wake costs what is ready, not every connection
     * (with 128 ranks, poll's scan of every socket was most of the
     * receiver's time). A connection is in the set while it wants
     * something (conn.armed). */
    int epfd;
    uint32_t lfd_armed;
    struct epoll_event *ready;
    size_t ready_cap;
    char endpoint[400];
    char unix_path[CDL_MAX_PATH];
    char token[CDL_MAX_TOKEN + 1]; /* zero-padded: compared in full */
    size_t token_len;
    dev_t sock_dev; /* the socket file we made, removed at close if still ours */
    ino_t sock_ino;
    size_t max_queued;
    uint64_t max_held;
    uint64_t hello_timeout_ns;
    uint64_t accept_paused_until; /* ns; 0: accepting */
    int accept_errno;             /* a failure of accept not told yet */
    uint64_t accept_told_at;      /* ns; such failures are told at most once a second */
    char notice[300];
    conn **conns;
    size_t nconns, conns_cap, rr;
    uint64_t ends; /* connections found ended so far (conn.end_seq) */
    uint64_t next_id;
    cdl_store steer;  /* set by the analytics: rank or -1 for all */
    char steer_key[CAUDAL_MAX_NAME + 1]; /* a STEER event's key and string, */
    char *steer_str;                     /* terminated, until the next call */
    int gather;        /* options.gather */
    uint64_t spin_max_ns; /* options.spin_us */
    uint64_t wait_ns;     /* recent wait for an event, averaged (spin_for) */
    cdl_gather g;
    pthread_mutex_t mu; /* guards released, holds and closed */
    caudal_block *released;
    size_t holds;
    int closed;
    char err[512];
};

/* Zero-length blocks still get a valid, aligned pointer. */
static _Alignas(64) const uint8_t empty_block[64];

static int rfail(caudal_receiver *r, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->err, sizeof r->err, fmt, ap);
    va_end(ap);
    return status;
}

/* ---- connection life cycle ------------------------------------------------ */

static void conn_free(conn *cn)
{
    if (cn->fd >= 0)
        close(cn->fd);
    if (cn->ring)
        munmap(cn->ring, cn->ring_bytes);
    for (size_t i = 0; i < cn->narrays; i++) {
        free((char *)cn->arrays[i]->name);
        free(cn->arrays[i]);
    }
    free(cn->arrays);
    free(cn->holds);
    free(cn->ended);
    free(cn->payload);
    cdl_reader_free(&cn->in);
    cdl_outq_free(&cn->out);
    free(cn);
}

static void conn_unref(conn *cn)
{
    if (--cn->refs == 0)
        conn_free(cn);
}

/* Stop reading: the connection's last event (DISCONNECT, unless it said BYE)
 * is given once the frames already read are handed out. */
static void conn_end(conn *cn, int status, const char *fmt, ...)
{
    if (cn->dead)
        return;
    cn->dead = 1;
    cn->end_seq = ++cn->r->ends;
    cn->status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cn->why, sizeof cn->why, fmt, ap);
    va_end(ap);
    shutdown(cn->fd, SHUT_RDWR);
}

/* A protocol violation: tell the client why (best effort) and cut it off. */
static void conn_reject(conn *cn, int status, const char *fmt, ...)
{
    char text[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    cn->rejected = 1;
    uint8_t frame[CDL_HEADER_LEN + 8 + sizeof text];
    size_t n = cdl_encode_error(frame, sizeof frame, status, text);
    if (cdl_outq_copy(&cn->out, frame, n, 0) == CAUDAL_OK)
        cdl_outq_flush(&cn->out, cn->fd, NULL);
    conn_end(cn, status, "%s", text);
}

/* Push out what cn's socket takes now. A send that fails (the rank closed
 * or died) mutes the connection rather than ending it: the frames the rank
 * sent before are still in the socket, and ending now would lose the steps
 * they finish. */
static int flush_out(conn *cn)
{
    if (cdl_outq_flush(&cn->out, cn->fd, NULL) == CAUDAL_OK)
        return CAUDAL_OK;
    cn->mute = 1;
    cdl_outq_free(&cn->out);
    cdl_outq_init(&cn->out, NULL, NULL);
    return CAUDAL_ERR_IO;
}

static void conn_send(conn *cn, const uint8_t *frame, size_t n)
{
    if (cn->dead || cn->mute)
        return;
    if (n == 0 || cdl_outq_copy(&cn->out, frame, n, 0) != CAUDAL_OK) {
        conn_end(cn, CAUDAL_ERR_NOMEM, "rank %d: out of memory queueing a frame for it",
                 cn->rank);
        return;
    }
    if (flush_out(cn) != CAUDAL_OK)
        return;
    if (cn->out.bytes > cn->r->max_queued)
        conn_end(cn, CAUDAL_ERR_IO, "rank %d does not read its socket (%zu bytes queued for "
                 "it)", cn->rank, cn->out.bytes);
}

static void send_release(conn *cn, uint32_t slot)
{
    uint8_t frame[CDL_HEADER_LEN + 8];
    conn_send(cn, frame, cdl_encode_release(frame, sizeof frame, slot));
}

static void send_steer(conn *cn, const cdl_value *v)
{
    size_t cap = cdl_steer_frame_len(strlen(v->key), v->type, v->s ? strlen(v->s) : 0);
    uint8_t *frame = malloc(cap);
    if (!frame) {
        conn_end(cn, CAUDAL_ERR_NOMEM, "out of memory sending steering value '%s'", v->key);
        return;
    }
    const void *value = v->type == CAUDAL_VALUE_DOUBLE  ? (const void *)&v->d
                        : v->type == CAUDAL_VALUE_INT64 ? (const void *)&v->i
                                                        : (const void *)v->s;
    conn_send(cn, frame, cdl_encode_steer(frame, cap, v->key, v->type, value));
    free(frame);
}

/* ---- held blocks ----------------------------------------------------------- */

/* Undo what a held block holds; the owner thread, or any after close. */
static void block_finish(caudal_block *b, int may_send)
{
    conn *cn = b->cn;
    if (b->slot == CDL_NO_SLOT) {
        free(b->heap);
        cn->held_inline -= b->heap_bytes;
        cn->held_wait = 0;
    } else if (--cn->holds[b->slot] == 0 && cn->ended[b->slot]) {
        cn->ended[b->slot] = 0;
        if (may_send)
            send_release(cn, b->slot);
    }
    conn_unref(cn);
    free(b);
}

static void process_released(caudal_receiver *r)
{
    pthread_mutex_lock(&r->mu);
    caudal_block *list = r->released;
    r->released = NULL;
    for (caudal_block *b = list; b; b = b->next)
        r->holds--;
    pthread_mutex_unlock(&r->mu);
    uint64_t drain;
    if (read(r->wake_fd, &drain, sizeof drain) < 0 && errno != EAGAIN) {
        /* nothing to do: the eventfd only wakes poll */
    }
    while (list) {
        caudal_block *next = list->next;
        block_finish(list, 1);
        list = next;
    }
}

static void receiver_free(caudal_receiver *r)
{
    cdl_gather_free(&r->g);
    cdl_store_free(&r->steer);
    free(r->steer_str);
    free(r->conns);
    free(r->ready);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

int caudal_block_ring_slots(const caudal_block *b, uint32_t *slots)
{
    if (!b || !slots)
        return CAUDAL_ERR_INVALID;
    *slots = b->ring_slots;
    return CAUDAL_OK;
}

int caudal_block_release(caudal_block *b)
{
    if (!b)
        return CAUDAL_ERR_INVALID;
    caudal_receiver *r = b->r;
    pthread_mutex_lock(&r->mu);
    if (!r->closed) {
        b->next = r->released;
        r->released = b;
        uint64_t one = 1;
        if (write(r->wake_fd, &one, sizeof one) < 0) {
            /* the counter is saturated: poll wakes anyway */
        }
        pthread_mutex_unlock(&r->mu);
        return CAUDAL_OK;
    }
    /* The receiver is closed: nobody else touches its connections now. */
    block_finish(b, 0);
    int last = --r->holds == 0;
    pthread_mutex_unlock(&r->mu);
    if (last)
        receiver_free(r);
    return CAUDAL_OK;
}

/* ---- frames to events ------------------------------------------------------ */

static int hello(caudal_receiver *r, conn *cn, const cdl_msg *m, caudal_event *ev)
{
    if (cn->hello) {
        conn_reject(cn, CAUDAL_ERR_PROTOCOL, "second hello from rank %d", cn->rank);
        return 0;
    }
    cn->rank = (int)m->u.hello.rank;
    cn->size = (int)m->u.hello.size;
    if (!cdl_token_equal(r->token, r->token_len, m->u.hello.token, m->u.hello.token_len)) {
        conn_reject(cn, CAUDAL_ERR_AUTH, "rank %d presented a wrong job token", cn->rank);
        return 0;
    }
    /* One receiver serves the ranks of its node: each rank once. */
    for (size_t k = 0; k < r->nconns; k++) {
        conn *o = r->conns[k];
        if (o != cn && o->hello && !o->dead && !o->bye && o->rank == cn->rank) {
            conn_reject(cn, CAUDAL_ERR_DUPLICATE, "rank %d is already connected "
                        "(connection %" PRIu64 "): a second connection claiming it is "
                        "refused", cn->rank, o->id);
            return 0;
        }
    }
    if (cdl_reader_reserve(&cn->in, READ_BUF) != CAUDAL_OK ||
        (r->gather && cdl_gather_join(&r->g, cn->id, cn->rank) != CAUDAL_OK)) {
        conn_end(cn, CAUDAL_ERR_NOMEM, "out of memory");
        return 0;
    }
    cn->hello = 1;
    ev->rank = cn->rank;
    ev->size = cn->size;
    uint8_t frame[CDL_HEADER_LEN + 16 + CDL_MAX_TOKEN];
    conn_send(cn, frame, cdl_encode_welcome(frame, sizeof frame, cn->id, r->token));
    /* Values set before the rank came: broadcast ones first, its own win. */
    for (size_t k = 0; k < r->steer.n; k++)
        if (r->steer.v[k].rank == -1)
            send_steer(cn, &r->steer.v[k]);
    for (size_t k = 0; k < r->steer.n; k++)
        if (r->steer.v[k].rank == cn->rank)
            send_steer(cn, &r->steer.v[k]);
    ev->type = CAUDAL_EVENT_CONNECT;
    return 1;
}

static int declare(conn *cn, const cdl_msg *m, caudal_event *ev)
{
    const struct cdl_declare *d = &m->u.declare;
    if (d->id != cn->narrays) {
        conn_reject(cn, CAUDAL_ERR_PROTOCOL, "rank %d declared array id %" PRIu32
                    " out of sequence (expected %zu)", cn->rank, d->id, cn->narrays);
        return 0;
    }
    for (size_t i = 0; i < cn->narrays; i++)
        if (strlen(cn->arrays[i]->name) == d->name_len &&
            memcmp(cn->arrays[i]->name, d->name, d->name_len) == 0) {
            conn_reject(cn, CAUDAL_ERR_DUPLICATE, "rank %d declared array '%.*s' twice",
                        cn->rank, (int)d->name_len, (const char *)d->name);
            return 0;
        }
    char why[200];
    uint64_t bytes;
    size_t isz = caudal_dtype_size(d->dtype);
    if (d->variable ? cdl_check_var(d->ndim, d->shape[0], d->start[0], d->count[0], isz, why,
                                    sizeof why)
                    : cdl_check_block(d->ndim, d->shape, d->start, d->count, isz, &bytes, why,
                                      sizeof why)) {
        conn_reject(cn, CAUDAL_ERR_SHAPE, "rank %d, array '%.*s': %s", cn->rank,
                    (int)d->name_len, (const char *)d->name, why);
        return 0;
    }
    if (cn->narrays == cn->arrays_cap) {
        size_t ncap = cn->arrays_cap ? 2 * cn->arrays_cap : 8;
        caudal_array_info **na = realloc(cn->arrays, ncap * sizeof *na);
        if (!na) {
            conn_end(cn, CAUDAL_ERR_NOMEM, "out of memory");
            return 0;
        }
        cn->arrays = na;
        cn->arrays_cap = ncap;
    }
    caudal_array_info *a = calloc(1, sizeof *a);
    char *name = a ? strndup((const char *)d->name, d->name_len) : NULL;
    if (!name) {
        free(a);
        conn_end(cn, CAUDAL_ERR_NOMEM, "out of memory");
        return 0;
    }
    a->name = name;
    a->dtype = (caudal_dtype)d->dtype;
    a->order = (caudal_order)d->order;
    a->variable = d->variable;
    a->ndim = d->ndim;
    memcpy(a->shape, d->shape, sizeof a->shape);
    memcpy(a->start, d->start, sizeof a->start);
    memcpy(a->count, d->count, sizeof a->count);
    cn->arrays[cn->narrays++] = a;
    ev->type = CAUDAL_EVENT_DECLARE;
    ev->array = a;
    return 1;
}

static void ring(conn *cn, const cdl_msg *m)
{
    int fd = cdl_reader_pop_fd(&cn->in);
    if (cn->ring || !cn->is_unix || fd < 0) {
        if (fd >= 0)
            close(fd);
        conn_reject(cn, CAUDAL_ERR_PROTOCOL, "rank %d: ring frame %s", cn->rank,
                    cn->ring ? "sent twice" : "without a shared-memory descriptor");
        return;
    }
    uint64_t total = (uint64_t)m->u.ring.depth * m->u.ring.slot_bytes;
    struct stat st;
    int seals = fcntl(fd, F_GET_SEALS);
    /* An unsealed memfd could shrink under us and turn reads into SIGBUS. */
    if (fstat(fd, &st) < 0 || (uint64_t)st.st_size != total || total > SIZE_MAX ||
        seals < 0 || !(seals & F_SEAL_SHRINK)) {
        close(fd);
        conn_reject(cn, CAUDAL_ERR_PROTOCOL,
                    "rank %d: the ring is not a sealed memfd of %" PRIu64 " bytes", cn->rank,
                    total);
        return;
    }
    void *p = mmap(NULL, (size_t)total, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    cn->holds = calloc(m->u.ring.depth, sizeof *cn->holds);
    cn->ended = calloc(m->u.ring.depth, 1);
    if (p == MAP_FAILED || !cn->holds || !cn->ended) {
        if (p != MAP_FAILED)
            munmap(p, (size_t)total);
        conn_end(cn, CAUDAL_ERR_SYSTEM, "rank %d: cannot map its ring: %s", cn->rank,
                 strerror(errno));
        return;
    }
    cn->ring = p;
    cn->ring_bytes = (size_t)total;
    cn->depth = m->u.ring.depth;
    cn->slot_bytes = m->u.ring.slot_bytes;
}

/* Checks common to every block of a step; returns the array or NULL. */
static caudal_array_info *check_block(conn *cn, const cdl_msg *m)
{
    const struct cdl_block *b = &m->u.block;
    if (b->id >= cn->narrays) {
        conn_reject(cn, CAUDAL_ERR_UNKNOWN_ARRAY, "rank %d, step %" PRIu64
                    ": block of undeclared array id %" PRIu32, cn->rank, b->step, b->id);
        return NULL;
    }
    caudal_array_info *a = cn->arrays[b->id];
    size_t isz = caudal_dtype_size(a->dtype);
    uint64_t expect = 1;
    for (int d = 0; d < a->ndim && !a->variable; d++)
        expect *= a->count[d];
    if (a->variable)
        expect = b->count;
    if (b->count != expect || b->count >= CDL_MAX_EXTENT / isz || b->nbytes != b->count * isz) {
        conn_reject(cn, CAUDAL_ERR_SHAPE, "rank %d, step %" PRIu64 ", array '%s': block of %"
                    PRIu64 " bytes and %" PRIu64 " elements does not match the declaration",
                    cn->rank, b->step, a->name, b->nbytes, b->count);
        return NULL;
    }
    if (cn->in_step ? b->step != cn->step : cn->any_step && b->step <= cn->step) {
        conn_reject(cn, CAUDAL_ERR_STEP_ORDER, "rank %d, array '%s': block of step %" PRIu64
                    " after step %" PRIu64, cn->rank, a->name, b->step, cn->step);
        return NULL;
    }
    if (b->slot != CDL_NO_SLOT &&
        (!cn->ring || b->slot >= cn->depth || b->offset > cn->slot_bytes ||
         b->nbytes > cn->slot_bytes - b->offset || b->offset % 64 || cn->ended[b->slot] ||
         (cn->in_step && cn->step_slot != CDL_NO_SLOT && cn->step_slot != b->slot))) {
        conn_reject(cn, CAUDAL_ERR_PROTOCOL, "rank %d, step %" PRIu64 ", array '%s': block "
                    "outside the ring (slot %" PRIu32 ", offset %" PRIu64 ")", cn->rank,
                    b->step, a->name, b->slot, b->offset);
        return NULL;
    }
    return a;
}

static int give_block(caudal_receiver *r, conn *cn, const cdl_msg *m,
                      caudal_array_info *a, const void *data, void *heap,
                      caudal_event *ev)
{
    caudal_block *blk = malloc(sizeof *blk);
    if (!blk) {
        free(heap);
        conn_end(cn, CAUDAL_ERR_NOMEM, "out of memory");
        return 0;
    }
    blk->r = r;
    blk->cn = cn;
    blk->slot = m->u.block.slot;
    blk->ring_slots = blk->slot != CDL_NO_SLOT ? cn->depth : 0;
    blk->heap = heap;
    blk->heap_bytes = heap ? m->u.block.nbytes : 0;
    cn->held_inline += blk->heap_bytes;
    blk->next = NULL;
    cn->refs++;
    if (blk->slot != CDL_NO_SLOT) {
        cn->holds[blk->slot]++;
        cn->step_slot = blk->slot;
    }
    pthread_mutex_lock(&r->mu);
    r->holds++;
    pthread_mutex_unlock(&r->mu);
    if (!cn->in_step) {
        cn->in_step = 1;
        cn->step = m->u.block.step;
    }
    cn->step_blocks++;
    ev->type = CAUDAL_EVENT_BLOCK;
    ev->array = a;
    ev->step = m->u.block.step;
    ev->data = data;
    ev->nbytes = m->u.block.nbytes;
    ev->count = m->u.block.count;
    ev->in_shared_memory = blk->slot != CDL_NO_SLOT;
    ev->block = blk;
    return 1;
}

static int step_end(conn *cn, const cdl_msg *m, caudal_event *ev)
{
    const struct cdl_step_end *s = &m->u.step_end;
    int order_ok = cn->in_step ? s->step == cn->step : !cn->any_step || s->step > cn->step;
    if (!order_ok || s->nblocks != cn->step_blocks || s->slot != cn->step_slot) {
        conn_reject(cn, CAUDAL_ERR_PROTOCOL, "rank %d: end of step %" PRIu64 " with %" PRIu32
                    " blocks does not match the %" PRIu32 " blocks received", cn->rank,
                    s->step, s->nblocks, cn->step_blocks);
        return 0;
    }
    if (s->slot != CDL_NO_SLOT) {
        if (cn->holds[s->slot] == 0)
            send_release(cn, s->slot);
        else
            cn->ended[s->slot] = 1;
    }
    cn->in_step = 0;
    cn->any_step = 1;
    cn->step = s->step;
    cn->step_blocks = 0;
    cn->step_slot = CDL_NO_SLOT;
    ev->type = CAUDAL_EVENT_STEP_END;
    ev->step = s->step;
    ev->nblocks = s->nblocks;
    return 1;
}

/* ---- gather mode (gather.h) ---------------------------------------------- */

/* A held block the caller never saw, given back. */
static void unhold(caudal_receiver *r, caudal_block *b)
{
    pthread_mutex_lock(&r->mu);
    r->holds--;
    pthread_mutex_unlock(&r->mu);
    block_finish(b, 1);
}

/* A BLOCK event, kept by the gatherer instead of handed out. */
static void gather_block(caudal_receiver *r, conn *cn, const caudal_event *ev)
{
    caudal_step_block b = {.array = ev->array, .step = ev->step, .data = ev->data,
                           .nbytes = ev->nbytes, .count = ev->count, .block = ev->block,
                           .rank = cn->rank, .in_shared_memory = ev->in_shared_memory};
    if (cdl_gather_block(&r->g, cn->id, &b) != CAUDAL_OK) {
        unhold(r, ev->block);
        conn_end(cn, CAUDAL_ERR_NOMEM, "rank %d, step %" PRIu64 ": out of memory keeping a "
                 "block", cn->rank, ev->step);
    }
}

/* The rank leaves with *ev, its BYE or DISCONNECT: what that completes comes
 * first as a STEPS event, and *ev with the connection's next call. */
static void gather_leave(caudal_receiver *r, conn *cn, caudal_event *ev)
{
    cdl_gather_leave(&r->g, cn->id);
    cn->left = 1;
    caudal_event last = *ev;
    if (cdl_gather_event(&r->g, ev, 1, 0)) {
        cn->stash = last;
        cn->stashed = 1;
    }
}

/* A connection stopped by max_held_bytes in the middle of a step, whose held
 * blocks are all of that step, would wait for itself: the floor cannot pass
 * a step the rank cannot finish. Those blocks go out early. */
static int gather_stalled(caudal_receiver *r, conn *cn, caudal_event *ev)
{
    return r->gather && cn->in_step && cdl_gather_holds_only(&r->g, cn->id, cn->step) &&
           cdl_gather_event(&r->g, ev, 0, cn->id);
}

/* Before HELLO only a HELLO of at most CDL_MAX_HELLO_BODY bytes may come.
 * Judge it by its header alone, so a stranger never makes us buffer more. */
static void check_first_header(conn *cn)
{
    if (cn->hello || cn->rejected || cn->in.end - cn->in.start < CDL_HEADER_LEN)
        return;
    cdl_header h;
    int rc = cdl_parse_header(cn->in.buf + cn->in.start, &h);
    if (rc != CAUDAL_OK)
        conn_reject(cn, rc, "bad frame header before hello (%s)", caudal_strerror(rc));
    else if (h.type != CDL_HELLO)
        conn_reject(cn, CAUDAL_ERR_PROTOCOL, "frame of type %u before hello", h.type);
    else if (h.body_len > CDL_MAX_HELLO_BODY)
        conn_reject(cn, CAUDAL_ERR_PROTOCOL, "a hello of %" PRIu64 " bytes (at most %u)",
                    h.body_len, CDL_MAX_HELLO_BODY);
}

/* Hand out the next event of one connection from what is buffered; no
 * system call but sends. Returns 1 with *ev filled, 0 if nothing is ready. */
static int conn_event(caudal_receiver *r, conn *cn, caudal_event *ev)
{
    for (;;) {
        if (cn->stashed) {
            *ev = cn->stash;
            cn->stashed = 0;
            return 1;
        }
        if (cn->reported)
            return 0;
        memset(ev, 0, sizeof *ev);
        ev->rank = cn->rank;
        ev->size = cn->size;
        ev->connection = cn->id;
        if (cn->in_payload) {
            cn->payload_got += cdl_reader_take(&cn->in, cn->payload + cn->payload_got,
                                               cn->block_msg.u.block.nbytes - cn->payload_got);
            if (cn->payload_got < cn->block_msg.u.block.nbytes) {
                if (!cn->dead)
                    return 0;
            } else {
                cn->in_payload = 0;
                uint8_t *p = cn->payload;
                cn->payload = NULL;
                if (!give_block(r, cn, &cn->block_msg, cn->arrays[cn->block_msg.u.block.id],
                                p, p, ev))
                    return 0;
                if (!r->gather)
                    return 1;
                gather_block(r, cn, ev);
                continue;
            }
        }
        if (cn->held_inline >= r->max_held && !cn->rejected)
            return gather_stalled(r, cn, ev); /* back-pressure: read on once blocks
                                                 come back */
        check_first_header(cn);
        cdl_header h;
        const uint8_t *body = NULL;
        uint64_t need = 0;
        int got = cn->rejected ? 0 : cdl_reader_peek(&cn->in, &h, &body, &need);
        if (got < 0) {
            conn_reject(cn, got, "rank %d sent a bad frame header (%s)", cn->rank,
                        caudal_strerror(got));
            got = 0;
        }
        if (got == 0) {
            if (!cn->dead)
                return 0;
            cn->reported = 1;
            /* A clean goodbye, or a probe that connected and never spoke (a
             * new receiver checking whether this one is alive): no event. */
            if (cn->bye || (!cn->hello && !cn->rejected && cn->in.total == 0))
                return 0;
            /* Never authenticated: nothing about a rank happened, but the
             * caller may log the attempt. */
            ev->type = cn->hello ? CAUDAL_EVENT_DISCONNECT : CAUDAL_EVENT_REFUSED;
            ev->status = cn->status;
            ev->message = cn->why;
            if (r->gather && cn->hello)
                gather_leave(r, cn, ev);
            return 1;
        }
        if (cn->bye) {
            /* The rank's account is closed with its BYE: nothing it sends
             * after that may reach the caller as an event of that rank. */
            cn->rejected = 1;
            conn_end(cn, CAUDAL_OK, "rank %d sent frames after goodbye (ignored)", cn->rank);
            continue;
        }
        cdl_msg m;
        int rc = cdl_parse_body(h.type, body, h.body_len, &m);
        if (rc != CAUDAL_OK) {
            conn_reject(cn, rc, "rank %d sent a malformed frame of type %u", cn->rank, h.type);
            continue;
        }
        if (!cn->hello && h.type != CDL_HELLO) {
            conn_reject(cn, CAUDAL_ERR_PROTOCOL, "frame of type %u before hello", h.type);
            continue;
        }
        /* Decide on the held limit before the payload's buffer exists. A
         * block larger than the limit alone still comes when nothing else
         * is held, or the rank could never send it. */
        if (h.type == CDL_BLOCK && m.u.block.slot == CDL_NO_SLOT && cn->held_inline &&
            m.u.block.nbytes > r->max_held - cn->held_inline) {
            cn->held_wait = 1;
            return gather_stalled(r, cn, ev);
        }
        cdl_reader_consume(&cn->in, CDL_HEADER_LEN + (size_t)need);
        int out = 0;
        switch (h.type) {
        case CDL_HELLO:
            out = hello(r, cn, &m, ev);
            break;
        case CDL_DECLARE:
            out = declare(cn, &m, ev);
            break;
        case CDL_RING:
            ring(cn, &m);
            break;
        case CDL_BLOCK: {
            caudal_array_info *a = check_block(cn, &m);
            if (!a)
                break;
            if (m.u.block.slot != CDL_NO_SLOT) {
                out = give_block(r, cn, &m, a,
                                 cn->ring + m.u.block.slot * cn->slot_bytes + m.u.block.offset,
                                 NULL, ev);
            } else if (m.u.block.nbytes == 0) {
                out = give_block(r, cn, &m, a, empty_block, NULL, ev);
            } else {
                cn->payload = aligned_alloc(64, (m.u.block.nbytes + 63) / 64 * 64);
                if (!cn->payload) {
                    conn_end(cn, CAUDAL_ERR_NOMEM, "out of memory for a block of %" PRIu64
                             " bytes", m.u.block.nbytes);
                    break;
                }
                cn->block_msg = m;
                cn->payload_got = 0;
                cn->in_payload = 1;
            }
            break;
        }
        case CDL_STEP_END:
            out = step_end(cn, &m, ev);
            if (out && r->gather) {
                cdl_gather_finished(&r->g, cn->id, ev->step);
                out = cdl_gather_event(&r->g, ev, 0, 0);
            }
            break;
        case CDL_DROP:
            if (cn->in_step || (cn->any_step && m.u.drop.first_step <= cn->step)) {
                conn_reject(cn, CAUDAL_ERR_STEP_ORDER, "rank %d: drop of steps %" PRIu64
                            "..%" PRIu64 " out of order", cn->rank, m.u.drop.first_step,
                            m.u.drop.last_step);
                break;
            }
            cn->any_step = 1;
            cn->step = m.u.drop.last_step;
            ev->type = CAUDAL_EVENT_DROP;
            ev->first_step = m.u.drop.first_step;
            ev->step = m.u.drop.last_step;
            ev->ndropped = m.u.drop.count;
            out = 1;
            if (r->gather) {
                if (cdl_gather_dropped(&r->g, cn->id, m.u.drop.first_step, m.u.drop.last_step,
                                       m.u.drop.count) != CAUDAL_OK) {
                    conn_end(cn, CAUDAL_ERR_NOMEM, "rank %d: out of memory noting a drop",
                             cn->rank);
                    out = 0;
                    break;
                }
                out = cdl_gather_event(&r->g, ev, 0, 0);
            }
            break;
        case CDL_STEER: {
            /* Key and string are handed out as terminated copies that live
             * until the next call: the receiver keeps no reported values, so
             * a rank cannot grow its memory by reporting many keys. */
            if (m.u.steer.value_type == CAUDAL_VALUE_STRING && !r->steer_str &&
                !(r->steer_str = malloc(CDL_MAX_STRING_VALUE + 1))) {
                conn_end(cn, CAUDAL_ERR_NOMEM, "out of memory");
                break;
            }
            ev->type = CAUDAL_EVENT_STEER;
            ev->value_type = (caudal_value_type)m.u.steer.value_type;
            ev->value_double = m.u.steer.d;
            ev->value_int64 = m.u.steer.i;
            memcpy(r->steer_key, m.u.steer.key, m.u.steer.key_len);
            r->steer_key[m.u.steer.key_len] = 0;
            ev->key = r->steer_key;
            if (m.u.steer.value_type == CAUDAL_VALUE_STRING) {
                if (m.u.steer.value_len)
                    memcpy(r->steer_str, m.u.steer.str, m.u.steer.value_len);
                r->steer_str[m.u.steer.value_len] = 0;
                ev->value_string = r->steer_str;
            }
            out = 1;
            break;
        }
        case CDL_BYE:
            cn->bye = 1;
            {
                uint8_t frame[CDL_HEADER_LEN];
                conn_send(cn, frame, cdl_encode_bye_ack(frame, sizeof frame));
            }
            ev->type = CAUDAL_EVENT_BYE;
            {
                const uint64_t *k = m.u.bye.counters;
                ev->counters = (caudal_counters){.steps_sent = k[0], .steps_dropped = k[1],
                                                 .blocks_sent = k[2], .bytes_sent = k[3],
                                                 .bytes_inline = k[4], .ns_in_calls = k[5],
                                                 .ns_waiting = k[6]};
            }
            out = 1;
            if (r->gather)
                gather_leave(r, cn, ev);
            break;
        default:
            conn_reject(cn, CAUDAL_ERR_PROTOCOL, "rank %d sent a frame of type %u that only "
                        "a receiver sends", cn->rank, h.type);
            break;
        }
        if (out && r->gather && ev->type == CAUDAL_EVENT_BLOCK) {
            gather_block(r, cn, ev);
            continue;
        }
        if (out)
            return 1;
    }
}

/* ---- socket work ---------------------------------------------------------- */

static void conn_read(conn *cn);

/* At the cap of connections waiting to say hello, the oldest that has not
 * sent a whole frame yet goes: a stranger then has to keep connecting faster
 * than a rank says hello (at once, on connecting) to keep a rank out, rather
 * than sit on idle ones. Those whose HELLO is in already are left to be
 * handled, so that a node's ranks connecting all at once (128 of them) are
 * not turned away: returns 0 when every waiting connection has one, and
 * accepting then waits until they are handled. */
static int evict_oldest_waiting(caudal_receiver *r)
{
    conn *oldest = NULL;
    for (size_t i = 0; i < r->nconns; i++) {
        conn *cn = r->conns[i];
        if (cn->hello || cn->dead)
            continue;
        conn_read(cn); /* what it sent since it was accepted */
        cdl_header h;
        const uint8_t *body;
        uint64_t need;
        if (!cn->dead && cdl_reader_peek(&cn->in, &h, &body, &need) == 0 &&
            (!oldest || cn->id < oldest->id))
            oldest = cn;
    }
    if (!oldest)
        return 0;
    conn_reject(oldest, CAUDAL_ERR_IO, "closed before hello to make room: %d newer "
                "connections were waiting to say hello", MAX_WAITING_HELLO);
    return 1;
}

static void accept_all(caudal_receiver *r)
{
    size_t waiting = 0;
    for (size_t i = 0; i < r->nconns; i++)
        waiting += !r->conns[i]->hello && !r->conns[i]->dead;
    for (;;) {
        int fd = accept4(r->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                /* EMFILE, ENFILE, ENOMEM...: the connection stays queued. */
                uint64_t now = cdl_now_ns();
                r->accept_paused_until = now + ACCEPT_PAUSE_NS;
                if (now - r->accept_told_at >= NOTICE_EVERY_NS || !r->accept_told_at)
                    r->accept_errno = errno;
            }
            return;
        }
        conn *cn = calloc(1, sizeof *cn);
        if (!cn || cdl_reader_init(&cn->in, HELLO_BUF) != CAUDAL_OK) {
            free(cn);
            close(fd);
            return;
        }
        if (r->nconns == r->conns_cap) {
            size_t ncap = r->conns_cap ? 2 * r->conns_cap : 16;
            conn **nc = realloc(r->conns, ncap * sizeof *nc);
            if (!nc) {
                cdl_reader_free(&cn->in);
                free(cn);
                close(fd);
                return;
            }
            r->conns = nc;
            r->conns_cap = ncap;
        }
        /* Every waiting one sent its hello: this one waits with them (one
         * past the cap), and the rest stay queued until those are handled. */
        int full = 0;
        if (waiting >= MAX_WAITING_HELLO)
            full = !evict_oldest_waiting(r);
        else
            waiting++;
        cn->r = r;
        cn->fd = fd;
        cn->is_unix = r->unix_path[0] != 0;
        cn->id = ++r->next_id;
        cn->rank = -1;
        cn->refs = 1;
        cn->step_slot = CDL_NO_SLOT;
        cn->hello_deadline = cdl_now_ns() + r->hello_timeout_ns;
        cdl_outq_init(&cn->out, NULL, NULL);
        r->conns[r->nconns++] = cn;
        if (full)
            return;
    }
}

/* Cut connections past their handshake deadline; the earliest deadline left
 * (UINT64_MAX: none), for poll. */
static uint64_t expire_hellos(caudal_receiver *r)
{
    uint64_t now = cdl_now_ns(), next = UINT64_MAX;
    for (size_t i = 0; i < r->nconns; i++) {
        conn *cn = r->conns[i];
        if (cn->hello || cn->dead)
            continue;
        if (now >= cn->hello_deadline)
            conn_reject(cn, CAUDAL_ERR_TIMEOUT, "no hello within %" PRIu64 " ms",
                        r->hello_timeout_ns / 1000000u);
        else if (cn->hello_deadline < next)
            next = cn->hello_deadline;
    }
    return next;
}

/* A refusal that concerns no accepted connection (accept itself failed):
 * one REFUSED event, at most once a second. */
static int notice_event(caudal_receiver *r, caudal_event *ev)
{
    if (!r->accept_errno)
        return 0;
    memset(ev, 0, sizeof *ev);
    ev->type = CAUDAL_EVENT_REFUSED;
    ev->rank = -1;
    ev->status = CAUDAL_ERR_SYSTEM;
    snprintf(r->notice, sizeof r->notice, "cannot accept connections: %s (trying again "
             "every %llu ms)", strerror(r->accept_errno), ACCEPT_PAUSE_NS / 1000000u);
    ev->message = r->notice;
    r->accept_errno = 0;
    r->accept_told_at = cdl_now_ns();
    return 1;
}

static void conn_read(conn *cn)
{
    int err_no = 0;
    if (cn->in_payload && cn->in.start == cn->in.end) {
        /* A large payload goes straight to its buffer, not through the reader. */
        uint64_t want = cn->block_msg.u.block.nbytes - cn->payload_got;
        while (want) {
            ssize_t n = recv(cn->fd, cn->payload + cn->payload_got, want, MSG_DONTWAIT);
            if (n > 0) {
                cn->payload_got += (uint64_t)n;
                want -= (uint64_t)n;
                continue;
            }
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                return;
            if (n < 0 && errno == EINTR)
                continue;
            err_no = n == 0 ? 0 : errno;
            break;
        }
        if (!want)
            return;
    } else if (cdl_reader_fill(&cn->in, cn->fd, &err_no) == CAUDAL_OK) {
        return;
    }
    if (cn->bye && err_no == 0)
        conn_end(cn, CAUDAL_OK, "closed after goodbye");
    else if (!cn->hello)
        conn_end(cn, CAUDAL_ERR_IO, "connection %s before hello after %" PRIu64 " bytes",
                 err_no ? strerror(err_no) : "closed", cn->in.total);
    else if (err_no == 0)
        conn_end(cn, CAUDAL_ERR_IO, "rank %d closed its connection without goodbye%s",
                 cn->rank, cn->in_step ? " in the middle of a step" : "");
    else
        conn_end(cn, CAUDAL_ERR_IO, "rank %d: connection lost: %s", cn->rank,
                 strerror(err_no));
}

/* Register `fd` for `want` (EPOLLIN, EPOLLOUT; 0: out of the set) if that
 * is not what *armed says already. Fails only for lack of memory (the
 * kernel's ENOMEM or ENOSPC), which the caller reports. */
static int arm(caudal_receiver *r, int fd, uint32_t *armed, uint32_t want, void *who)
{
    if (want == *armed || fd < 0)
        return 0;
    struct epoll_event e = {.events = want, .data.ptr = who};
    int op = !*armed ? EPOLL_CTL_ADD : want ? EPOLL_CTL_MOD : EPOLL_CTL_DEL;
    if (epoll_ctl(r->epfd, op, fd, &e) < 0)
        return -1;
    *armed = want;
    return 0;
}

/* Remove connections whose last event was given; held blocks keep them. */
static void reap(caudal_receiver *r)
{
    size_t k = 0;
    for (size_t i = 0; i < r->nconns; i++) {
        conn *cn = r->conns[i];
        if (cn->reported && !cn->stashed) {
            arm(r, cn->fd, &cn->armed, 0, cn);
            close(cn->fd);
            cn->fd = -1;
            conn_unref(cn);
        } else {
            r->conns[k++] = cn;
        }
    }
    r->nconns = k;
}

/* How long a call polls before it sleeps: while the recent wait for an
 * event is under spin_max, four times that wait (at most spin_max: the
 * average is lowered by the events found waiting, a step's second frame),
 * so that a client publishing steps back to back finds the receiver awake
 * and its end_step wakes no one (the wake-up costs the client more than
 * its sendmsg); a receiver whose events come seldom sleeps at once. */
static uint64_t spin_for(const caudal_receiver *r)
{
    if (r->wait_ns >= r->spin_max_ns)
        return 0;
    return 4 * r->wait_ns < r->spin_max_ns ? 4 * r->wait_ns : r->spin_max_ns;
}

int caudal_receiver_next(caudal_receiver *r, caudal_event *ev, int timeout_ms)
{
    if (!r)
        return CAUDAL_ERR_CLOSED;
    if (!ev)
        return rfail(r, CAUDAL_ERR_INVALID, "caudal_receiver_next: event is NULL");
    uint64_t entered = cdl_now_ns();
    uint64_t deadline = timeout_ms < 0 ? UINT64_MAX : entered + (uint64_t)timeout_ms * 1000000u;
    int rc, spun = 0;
    for (;;) {
        process_released(r);
        uint64_t wake = expire_hellos(r);
        if (notice_event(r, ev)) {
            rc = CAUDAL_OK;
            goto out;
        }
        /* Connections in turn, from the one that ended first when some did:
         * when a launcher ends every rank because one failed, the failed
         * one's DISCONNECT comes first, whatever their places in the list. */
        size_t from = r->rr;
        uint64_t first_end = UINT64_MAX;
        for (size_t i = 0; i < r->nconns; i++) {
            const conn *cn = r->conns[i];
            /* stashed: its DISCONNECT waits behind the STEPS it released */
            if (cn->dead && (!cn->reported || cn->stashed) && cn->end_seq < first_end) {
                first_end = cn->end_seq;
                from = i;
            }
        }
        for (size_t k = 0; k < r->nconns; k++) {
            size_t i = (from + k) % r->nconns;
            if (conn_event(r, r->conns[i], ev)) {
                r->rr = i + 1;
                rc = CAUDAL_OK;
                goto out;
            }
        }
        reap(r);
        int accepting = cdl_now_ns() >= r->accept_paused_until;
        if (!accepting && r->accept_paused_until < wake)
            wake = r->accept_paused_until;
        if (deadline < wake)
            wake = deadline;
        int bad = arm(r, r->lfd, &r->lfd_armed, accepting ? EPOLLIN : 0, &r->lfd);
        for (size_t i = 0; i < r->nconns && !bad; i++) {
            conn *cn = r->conns[i];
            /* Over the held limit, leave the bytes in the socket: TCP flow
             * control then holds the rank's slots, and its policy applies. */
            uint32_t in = cn->held_inline < r->max_held && !cn->held_wait ? EPOLLIN : 0;
            uint32_t want = cn->dead ? 0 : in | (cn->out.count ? EPOLLOUT : 0);
            bad = arm(r, cn->fd, &cn->armed, want, cn);
        }
        if (bad) {
            rc = rfail(r, CAUDAL_ERR_SYSTEM, "epoll_ctl failed: %s", strerror(errno));
            goto out;
        }
        size_t cap = r->nconns + 2;
        if (r->ready_cap < cap) {
            struct epoll_event *nr = realloc(r->ready, (cap + 16) * sizeof *nr);
            if (!nr) {
                rc = rfail(r, CAUDAL_ERR_NOMEM, "out of memory");
                goto out;
            }
            r->ready = nr;
            r->ready_cap = cap + 16;
        }
        int n = 0;
        uint64_t spin = spun ? 0 : spin_for(r);
        if (spin) { /* events come often: stay awake a little before sleeping */
            spun = 1;
            uint64_t until = cdl_now_ns() + spin;
            do
                n = epoll_wait(r->epfd, r->ready, (int)r->ready_cap, 0);
            while (n == 0 && cdl_now_ns() < (until < wake ? until : wake));
        }
        if (n == 0)
            n = epoll_wait(r->epfd, r->ready, (int)r->ready_cap, cdl_poll_timeout(wake));
        if (n < 0 && errno != EINTR) {
            rc = rfail(r, CAUDAL_ERR_SYSTEM, "epoll_wait failed: %s", strerror(errno));
            goto out;
        }
        if (n == 0 && (deadline == UINT64_MAX ? 0 : cdl_now_ns() >= deadline)) {
            rc = CAUDAL_ERR_TIMEOUT;
            goto out;
        }
        int accept_due = 0;
        for (int i = 0; i < n; i++) {
            void *who = r->ready[i].data.ptr;
            uint32_t re = r->ready[i].events;
            if (who == &r->lfd) {
                accept_due = 1;
                continue;
            }
            if (who == &r->wake_fd)
                continue; /* process_released drains it */
            conn *cn = who;
            if (re & EPOLLOUT)
                flush_out(cn);
            if (re & (EPOLLIN | EPOLLHUP | EPOLLERR))
                conn_read(cn);
        }
        if (accept_due)
            accept_all(r);
    }
out:
    if (rc == CAUDAL_OK) {
        uint64_t waited = cdl_now_ns() - entered;
        r->wait_ns = r->wait_ns / 4 * 3 + waited / 4;
    }
    return rc;
}

/* ---- steering ------------------------------------------------------------ */

static int steer(caudal_receiver *r, int rank, const char *key, uint8_t type, double d,
                 int64_t i, const char *s)
{
    if (!r)
        return CAUDAL_ERR_CLOSED;
    if (!key || !*key || strlen(key) > CAUDAL_MAX_NAME || rank < -1)
        return rfail(r, CAUDAL_ERR_INVALID, "steering: key must be 1 to %d bytes and rank "
                     ">= -1", CAUDAL_MAX_NAME);
    if (type == CAUDAL_VALUE_STRING && (!s || strlen(s) > CDL_MAX_STRING_VALUE))
        return rfail(r, CAUDAL_ERR_INVALID, "steering '%s': string NULL or longer than %u "
                     "bytes", key, CDL_MAX_STRING_VALUE);
    process_released(r);
    /* A rank holds the keys set for it and those set for every rank: keep
     * that within the client's store too (a key set both ways counts twice). */
    if (!cdl_store_get(&r->steer, rank, key)) {
        size_t held = cdl_store_count(&r->steer, -1) +
                      (rank == -1 ? r->steer.max_rank_keys : cdl_store_count(&r->steer, rank));
        if (held >= CDL_STORE_MAX_KEYS) {
            char who[32] = "every rank";
            if (rank >= 0)
                snprintf(who, sizeof who, "rank %d", rank);
            return rfail(r, CAUDAL_ERR_INVALID, "steering: cannot set '%s' for %s: the "
                         "store is full (%d keys per rank, those set for every rank "
                         "included); existing keys can still be set", key, who,
                         CDL_STORE_MAX_KEYS);
        }
    }
    int rc = cdl_store_set(&r->steer, rank, key, strlen(key), type, d, i, s,
                           s ? strlen(s) : 0);
    if (rc != CAUDAL_OK)
        return rfail(r, rc, "out of memory");
    const cdl_value *v = cdl_store_get(&r->steer, rank, key);
    for (size_t k = 0; k < r->nconns; k++) {
        conn *cn = r->conns[k];
        if (cn->hello && !cn->dead && (rank == -1 || cn->rank == rank))
            send_steer(cn, v);
    }
    return CAUDAL_OK;
}

int caudal_receiver_steer_double(caudal_receiver *r, int rank, const char *key, double value)
{
    return steer(r, rank, key, CAUDAL_VALUE_DOUBLE, value, 0, NULL);
}

int caudal_receiver_steer_int64(caudal_receiver *r, int rank, const char *key, int64_t value)
{
    return steer(r, rank, key, CAUDAL_VALUE_INT64, 0, value, NULL);
}

int caudal_receiver_steer_string(caudal_receiver *r, int rank, const char *key,
                                 const char *value)
{
    return steer(r, rank, key, CAUDAL_VALUE_STRING, 0, 0, value);
}

/* ---- open and close -------------------------------------------------------- */

int caudal_receiver_options_init(caudal_receiver_options *o)
{
    if (!o)
        return CAUDAL_ERR_INVALID;
    memset(o, 0, sizeof *o);
    return CAUDAL_OK;
}

int caudal_receiver_open(caudal_receiver **out, const caudal_receiver_options *o,
                         char *errbuf, size_t errlen)
{
    char scratch[8];
    if (!errbuf || !errlen) {
        errbuf = scratch;
        errlen = sizeof scratch;
    }
    errbuf[0] = 0;
    if (out)
        *out = NULL;
    if (!out || !o) {
        snprintf(errbuf, errlen, "caudal_receiver_open: receiver and opts must not be NULL");
        return CAUDAL_ERR_INVALID;
    }
    const char *token = o->token ? o->token : getenv("CAUDAL_TOKEN");
    if (!token)
        token = "";
    if (strlen(token) > CDL_MAX_TOKEN) {
        snprintf(errbuf, errlen, "job token longer than %u bytes", CDL_MAX_TOKEN);
        return CAUDAL_ERR_INVALID;
    }
    cdl_endpoint ep;
    int rc = cdl_endpoint_parse(o->endpoint, &ep, errbuf, errlen);
    if (rc != CAUDAL_OK)
        return rc;
    caudal_receiver *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(errbuf, errlen, "out of memory");
        return CAUDAL_ERR_NOMEM;
    }
    strcpy(r->token, token);
    r->token_len = strlen(token);
    r->max_queued = o->max_queued_bytes ? o->max_queued_bytes : DEFAULT_MAX_QUEUED;
    r->max_held = o->max_held_bytes ? o->max_held_bytes : DEFAULT_MAX_HELD;
    r->hello_timeout_ns = (uint64_t)(o->hello_timeout_ms ? o->hello_timeout_ms
                                                         : DEFAULT_HELLO_TIMEOUT_MS) * 1000000u;
    r->lfd = -1;
    r->gather = o->gather != 0;
    r->spin_max_ns = o->spin_us == CAUDAL_RECEIVER_NO_SPIN ? 0
                     : (o->spin_us ? (o->spin_us < MAX_SPIN_US ? o->spin_us : MAX_SPIN_US)
                                   : DEFAULT_SPIN_US) * 1000u;
    r->wait_ns = UINT64_MAX / 4; /* no evidence yet: sleep */
    cdl_gather_init(&r->g);
    pthread_mutex_init(&r->mu, NULL);
    r->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    r->epfd = epoll_create1(EPOLL_CLOEXEC);
    uint32_t wake_armed = 0;
    if (r->wake_fd < 0 || r->epfd < 0 ||
        arm(r, r->wake_fd, &wake_armed, EPOLLIN, &r->wake_fd) < 0) {
        snprintf(errbuf, errlen, "%s: %s", r->wake_fd < 0 ? "eventfd" : "epoll",
                 strerror(errno));
        if (r->wake_fd >= 0)
            close(r->wake_fd);
        if (r->epfd >= 0)
            close(r->epfd);
        receiver_free(r);
        return CAUDAL_ERR_SYSTEM;
    }
    rc = cdl_listen(&ep, &r->lfd, r->endpoint, sizeof r->endpoint, errbuf, errlen);
    if (rc != CAUDAL_OK) {
        close(r->wake_fd);
        close(r->epfd);
        receiver_free(r);
        return rc;
    }
    if (!ep.is_tcp) {
        struct stat st;
        strcpy(r->unix_path, ep.path);
        if (lstat(ep.path, &st) == 0) {
            r->sock_dev = st.st_dev;
            r->sock_ino = st.st_ino;
        }
    }
    *out = r;
    return CAUDAL_OK;
}

const char *caudal_receiver_endpoint(const caudal_receiver *r)
{
    return r ? r->endpoint : "";
}

int caudal_receiver_connections(const caudal_receiver *r)
{
    if (!r)
        return CAUDAL_ERR_CLOSED;
    int n = 0;
    for (size_t i = 0; i < r->nconns; i++)
        n += r->conns[i]->hello && !r->conns[i]->dead;
    return n;
}

const char *caudal_receiver_last_error(const caudal_receiver *r)
{
    return r ? r->err : "receiver is NULL or closed";
}

int caudal_receiver_close(caudal_receiver **rp)
{
    if (!rp || !*rp)
        return CAUDAL_ERR_CLOSED;
    caudal_receiver *r = *rp;
    *rp = NULL;
    process_released(r);
    pthread_mutex_lock(&r->mu);
    r->closed = 1;
    for (size_t i = 0; i < r->nconns; i++) {
        conn *cn = r->conns[i];
        close(cn->fd);
        cn->fd = -1;
        conn_unref(cn);
    }
    r->nconns = 0;
    /* Blocks the gatherer still held were never the caller's. */
    for (caudal_block *b; (b = cdl_gather_pop(&r->g));) {
        block_finish(b, 0);
        r->holds--;
    }
    close(r->lfd);
    close(r->wake_fd);
    close(r->epfd);
    /* Remove our socket, not what may have replaced it since. */
    struct stat st;
    if (r->unix_path[0] && lstat(r->unix_path, &st) == 0 && S_ISSOCK(st.st_mode) &&
        st.st_dev == r->sock_dev && st.st_ino == r->sock_ino)
        unlink(r->unix_path);
    int last = r->holds == 0;
    pthread_mutex_unlock(&r->mu);
    if (last)
        receiver_free(r);
    return CAUDAL_OK;
}
