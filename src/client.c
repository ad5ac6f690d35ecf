/* client.c - the simulation side: declare arrays, publish steps, read steering. */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <unistd.h>

#if defined(__x86_64__) && defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "caudal.h"
#include "hostaddr.h"
#include "outq.h"
#include "protocol.h"
#include "reader.h"
#include "sock.h"
#include "steer.h"

#define DEFAULT_DEPTH 4u
#define DEFAULT_CONNECT_MS 30000
#define ALIGN 64u
#define FRAME_MAX 128u /* every small frame the client writes in a step */
#define WARM_SLOT_BYTES (64u << 10)
/* Beyond the ring's own bytes (tcp sends slots from the queue), this much
 * may wait for the socket before steering reports wait too. */
#define MAX_QUEUED_REPORTS (1u << 20)

typedef struct cdl_array {
    char *name;
    caudal_dtype dtype;
    caudal_order order;
    int variable;
    int ndim;
    uint64_t shape[CAUDAL_MAX_DIMS], start[CAUDAL_MAX_DIMS], count[CAUDAL_MAX_DIMS];
    uint64_t nbytes;  /* fixed: the block; variable: the declared capacity */
    uint64_t put_gen; /* step generation of the last put, to catch a second one */
} cdl_array;

struct caudal_client {
    int rank, size;
    caudal_policy policy;
    unsigned depth;
    size_t slot_bytes_opt;
    int block_timeout_ms, connect_timeout_ms;
    char token[CDL_MAX_TOKEN + 1];
    int tcp;
    int sock;
    int broken; /* status that ended the connection, 0 while it is healthy */
    char broken_msg[640];
    cdl_outq out;
    cdl_reader in;

    cdl_array *arrays;
    size_t narrays, arrays_cap;

    /* The ring: depth slots of slot_bytes, in a memfd (shm) or private (tcp). */
    uint8_t *ring;
    size_t ring_bytes, slot_bytes;
    int stream; /* large copies into the ring bypass the cache (copy_to_slot) */
    int memfd;
    uint8_t *busy;

    int in_step, any_step, dropped, slot_in_shm, overflow;
    uint64_t step, step_gen;
    unsigned slot;
    size_t used;
    uint32_t nblocks;

    uint64_t drop_first, drop_last, drop_count; /* not yet reported */
    int bye_acked;
    cdl_store steer;
    caudal_counters counters;
    char err[640];
};

/* ---- errors -------------------------------------------------------------- */

static int vfail(caudal_client *c, int status, const char *array, const char *fmt,
                 va_list ap)
{
    char where[128], what[384];
    if (c->in_step)
        snprintf(where, sizeof where, "rank %d, step %" PRIu64, c->rank, c->step);
    else if (c->any_step)
        snprintf(where, sizeof where, "rank %d, after step %" PRIu64, c->rank, c->step);
    else
        snprintf(where, sizeof where, "rank %d, before the first step", c->rank);
    vsnprintf(what, sizeof what, fmt, ap);
    if (array)
        snprintf(c->err, sizeof c->err, "%s, array '%.64s': %s", where, array, what);
    else
        snprintf(c->err, sizeof c->err, "%s: %s", where, what);
    return status;
}

static int fail(caudal_client *c, int status, const char *array, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(c, status, array, fmt, ap);
    va_end(ap);
    return status;
}

/* The connection is unusable from now on; every later call says why. */
static int broke(caudal_client *c, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(c, status, NULL, fmt, ap);
    va_end(ap);
    if (!c->broken) {
        c->broken = status;
        snprintf(c->broken_msg, sizeof c->broken_msg, "%s", c->err);
    }
    return status;
}

static int still_broken(caudal_client *c)
{
    snprintf(c->err, sizeof c->err, "%s", c->broken_msg);
    return c->broken;
}

static int io_error(caudal_client *c, int err_no)
{
    if (err_no == 0)
        return broke(c, CAUDAL_ERR_IO, "the receiver closed the connection");
    return broke(c, CAUDAL_ERR_IO, "connection to the receiver lost: %s", strerror(err_no));
}

/* ---- incoming frames ----------------------------------------------------- */

static int handle_frame(caudal_client *c, const cdl_header *h, const uint8_t *body)
{
    cdl_msg m;
    int rc = cdl_parse_body(h->type, body, h->body_len, &m);
    if (rc != CAUDAL_OK)
        return broke(c, rc, "malformed frame of type %u from the receiver", h->type);
    switch (m.type) {
    case CDL_RELEASE:
        if (!c->busy || m.u.release.slot >= c->depth || !c->busy[m.u.release.slot])
            return broke(c, CAUDAL_ERR_PROTOCOL, "receiver released slot %" PRIu32
                       " which is not in use", m.u.release.slot);
        c->busy[m.u.release.slot] = 0;
        return CAUDAL_OK;
    case CDL_STEER:
        rc = cdl_store_set(&c->steer, 0, m.u.steer.key, m.u.steer.key_len,
                           m.u.steer.value_type, m.u.steer.d, m.u.steer.i, m.u.steer.str,
                           m.u.steer.value_len);
        /* A receiver keeps each rank within the cap, so only a broken one
         * gets here. */
        if (rc == CAUDAL_ERR_INVALID)
            return broke(c, CAUDAL_ERR_PROTOCOL, "the receiver sent more than %d steering "
                         "keys (new key '%.*s')", CDL_STORE_MAX_KEYS, (int)m.u.steer.key_len,
                         (const char *)m.u.steer.key);
        return rc;
    case CDL_BYE_ACK:
        c->bye_acked = 1;
        return CAUDAL_OK;
    case CDL_ERROR: {
        int st = m.u.error.status < 0 && m.u.error.status >= CAUDAL_ERR_SYSTEM
                     ? m.u.error.status : CAUDAL_ERR_PROTOCOL;
        return broke(c, st, "the receiver refused: %.*s", (int)m.u.error.len, m.u.error.text);
    }
    case CDL_WELCOME:
        if (!cdl_token_equal(c->token, strlen(c->token), m.u.welcome.token,
                             m.u.welcome.token_len))
            return broke(c, CAUDAL_ERR_AUTH,
                       "the receiver answered with another job token (not this job's)");
        return 1; /* tells open that the handshake is done */
    default:
        return broke(c, CAUDAL_ERR_PROTOCOL, "unexpected frame of type %u from the receiver",
                   h->type);
    }
}

/* Read and handle whatever the receiver sent, without waiting. Returns a
 * negative status, CAUDAL_OK, or 1 once a WELCOME was handled. */
static int pump(caudal_client *c)
{
    if (c->broken)
        return still_broken(c);
    int err_no = 0, welcomed = 0;
    int rc = cdl_reader_fill(&c->in, c->sock, &err_no);
    for (;;) {
        cdl_header h;
        const uint8_t *body;
        uint64_t need;
        int got = cdl_reader_peek(&c->in, &h, &body, &need);
        if (got < 0)
            return broke(c, got, "bad frame header from the receiver");
        if (got == 0)
            break;
        int hr = handle_frame(c, &h, body);
        cdl_reader_consume(&c->in, CDL_HEADER_LEN + (size_t)h.body_len);
        if (hr < 0)
            return hr;
        if (hr == 1)
            welcomed = 1;
    }
    /* Frames buffered before the end of the stream were handled first, so an
     * ERROR the receiver sent before closing is what the user sees. */
    if (rc != CAUDAL_OK)
        return io_error(c, err_no);
    return welcomed;
}

static int flush(caudal_client *c)
{
    if (c->broken)
        return still_broken(c);
    int err_no = 0;
    if (cdl_outq_flush(&c->out, c->sock, &err_no) != CAUDAL_OK) {
        pump(c); /* an ERROR frame explains the failure better than EPIPE */
        return c->broken ? still_broken(c) : io_error(c, err_no);
    }
    return CAUDAL_OK;
}

/* Wait until `done(c)` holds, serving the socket both ways, up to deadline. */
static int wait_until(caudal_client *c, int (*done)(caudal_client *), uint64_t deadline_ns)
{
    uint64_t t0 = cdl_now_ns();
    int rc;
    for (;;) {
        if ((rc = flush(c)) < 0 || (rc = pump(c)) < 0)
            break;
        if (done(c)) {
            rc = CAUDAL_OK;
            break;
        }
        struct pollfd p = {c->sock, POLLIN | (c->out.count ? POLLOUT : 0), 0};
        int n = poll(&p, 1, cdl_poll_timeout(deadline_ns));
        if (n < 0 && errno != EINTR) {
            rc = broke(c, CAUDAL_ERR_SYSTEM, "poll failed: %s", strerror(errno));
            break;
        }
        if (n == 0) {
            rc = CAUDAL_ERR_TIMEOUT;
            break;
        }
    }
    c->counters.ns_waiting += cdl_now_ns() - t0;
    return rc;
}

static int queue_empty(caudal_client *c) { return c->out.count == 0; }

static int queue_short(caudal_client *c)
{
    return c->out.bytes <= c->ring_bytes + MAX_QUEUED_REPORTS;
}

static uint64_t deadline_after(int ms)
{
    return ms > 0 ? cdl_now_ns() + (uint64_t)ms * 1000000u : UINT64_MAX;
}

static int queue(caudal_client *c, const uint8_t *frame, size_t len, uint32_t tag)
{
    if (len == 0)
        return fail(c, CAUDAL_ERR_INVALID, NULL, "frame too large to encode");
    if (cdl_outq_copy(&c->out, frame, len, tag) != CAUDAL_OK)
        return fail(c, CAUDAL_ERR_NOMEM, NULL, "out of memory queueing a frame");
    return CAUDAL_OK;
}

/* ---- open ------------------------------------------------------------ */

int caudal_options_init(caudal_options *opts)
{
    if (!opts)
        return CAUDAL_ERR_INVALID;
    memset(opts, 0, sizeof *opts);
    return CAUDAL_OK;
}

static void slot_sent(void *ctx, uint32_t tag)
{
    caudal_client *c = ctx;
    c->busy[tag - 1] = 0; /* tcp: the slot's bytes are in the kernel now */
}

/* The "@ADDR" that ends a node-local entry ("unix:PATH@10.0.0.1"), or NULL:
 * only when what follows the last '@' is a numeric address, so that a path
 * holding an '@' of its own still reads as it always did. Cuts it off `one`. */
static const char *cut_address(char *one)
{
    char *at = strrchr(one, '@');
    if (!at || !cdl_is_address(at + 1))
        return NULL;
    *at = 0;
    return at + 1;
}

/* This rank's endpoint out of `text`: one endpoint, or a comma-separated list
 * of N. In a plain list (in transit, the launcher's N ingest endpoints for the
 * job's ranks) rank r takes entry r * N / size: contiguous blocks of ranks, so
 * that neighbouring ranks share an endpoint. In a node-local list every entry
 * ends in "@ADDR" (in situ on several nodes, one ingest per node) and the rank
 * takes the one entry whose ADDR is an address of its own host. Every entry is
 * checked, not only this rank's, so that a malformed list fails on every rank
 * with the same entry named. `source` says where the text came from. */
static int pick_endpoint(caudal_client *c, const char *text, const char *source,
                         cdl_endpoint *ep)
{
    char msg[400];
    if (!text || (!strchr(text, ',') && !strchr(text, '@'))) { /* as it always was */
        if (cdl_endpoint_parse(text, ep, msg, sizeof msg) != CAUDAL_OK)
            return fail(c, CAUDAL_ERR_INVALID, NULL, "%s", msg);
        return CAUDAL_OK;
    }
    size_t n = 1;
    for (const char *p = text; *p; p++)
        n += *p == ',';
    size_t pick = (size_t)((uint64_t)c->rank * n / (uint64_t)c->size);
    size_t tagged = 0, mine = 0, untagged_at = 0;
    const char *start = text;
    for (size_t i = 0; i < n; i++) {
        const char *end = strchr(start, ',');
        size_t len = end ? (size_t)(end - start) : strlen(start);
        char one[CDL_MAX_PATH + 256 + 16 + 8 + 48];
        if (len == 0)
            return fail(c, CAUDAL_ERR_INVALID, NULL,
                        "%s: entry %zu of %zu is empty (a list of endpoints is "
                        "'tcp:HOST:PORT,tcp:HOST:PORT,...')", source, i + 1, n);
        if (len >= sizeof one)
            return fail(c, CAUDAL_ERR_INVALID, NULL,
                        "%s: entry %zu of %zu is %zu bytes long (at most %zu)", source, i + 1,
                        n, len, sizeof one - 1);
        memcpy(one, start, len);
        one[len] = 0;
        const char *addr = cut_address(one);
        cdl_endpoint parsed;
        if (cdl_endpoint_parse(one, &parsed, msg, sizeof msg) != CAUDAL_OK)
            return fail(c, CAUDAL_ERR_INVALID, NULL, "%s: entry %zu of %zu is malformed: %s",
                        source, i + 1, n, msg);
        if (addr) {
            int is_mine;
            tagged++;
            if (cdl_address_is_mine(addr, &is_mine) != CAUDAL_OK)
                return fail(c, CAUDAL_ERR_SYSTEM, NULL,
                            "%s: cannot list this host's addresses to find its entry: %s",
                            source, strerror(errno));
            if (is_mine && mine)
                return fail(c, CAUDAL_ERR_INVALID, NULL,
                            "%s: entries %zu and %zu are both for this host (%s); a node-local "
                            "list has one entry per host", source, mine, i + 1, addr);
            if (is_mine) {
                mine = i + 1;
                *ep = parsed;
            }
        } else if (!untagged_at) {
            untagged_at = i + 1;
            if (i == pick)
                *ep = parsed;
        } else if (i == pick) {
            *ep = parsed;
        }
        start = end ? end + 1 : start + len;
    }
    if (tagged && tagged != n)
        return fail(c, CAUDAL_ERR_INVALID, NULL,
                    "%s: entry %zu of %zu has no '@ADDR' while others have one (a node-local "
                    "list is 'unix:PATH@ADDR,...', every entry for one host)",
                    source, untagged_at, n);
    if (tagged && !mine) {
        char addrs[256];
        cdl_my_addresses(addrs, sizeof addrs);
        return fail(c, CAUDAL_ERR_INVALID, NULL,
                    "%s: none of the %zu entries is for this rank's host (its addresses: %s): "
                    "was it started on a node without an ingest?", source, n, addrs);
    }
    return CAUDAL_OK;
}

static int resolve_options(caudal_client *c, const caudal_options *o, const char **ep)
{
    c->rank = o->rank;
    c->size = o->size;
    if (o->size <= 0 || o->rank < 0 || o->rank >= o->size)
        return fail(c, CAUDAL_ERR_INVALID, NULL, "rank %d of size %d is not a valid rank",
                    o->rank, o->size);
    *ep = o->endpoint ? o->endpoint : getenv("CAUDAL_ENDPOINT");
    const char *token = o->token ? o->token : getenv("CAUDAL_TOKEN");
    if (!token)
        token = "";
    if (strlen(token) > CDL_MAX_TOKEN)
        return fail(c, CAUDAL_ERR_INVALID, NULL, "job token longer than %u bytes",
                    CDL_MAX_TOKEN);
    strcpy(c->token, token);

    c->depth = o->ring_depth;
    const char *env = getenv("CAUDAL_RING_DEPTH");
    if (!c->depth && env && *env) {
        char *end;
        unsigned long v = strtoul(env, &end, 10);
        /* Digits only: strtoul alone would take " 3", "+3" and wrap "-1". */
        if (*end || env[0] < '0' || env[0] > '9' || v == 0 || v > 4096)
            return fail(c, CAUDAL_ERR_INVALID, NULL,
                        "CAUDAL_RING_DEPTH='%s' is not a number from 1 to 4096", env);
        c->depth = (unsigned)v;
    }
    if (!c->depth)
        c->depth = DEFAULT_DEPTH;
    if (c->depth > 4096)
        return fail(c, CAUDAL_ERR_INVALID, NULL, "ring depth %u exceeds 4096", c->depth);

    c->policy = o->policy;
    env = getenv("CAUDAL_POLICY");
    if (c->policy == CAUDAL_POLICY_DEFAULT && env && *env) {
        if (strcmp(env, "block") == 0)
            c->policy = CAUDAL_POLICY_BLOCK;
        else if (strcmp(env, "drop") == 0)
            c->policy = CAUDAL_POLICY_DROP;
        else
            return fail(c, CAUDAL_ERR_INVALID, NULL,
                        "CAUDAL_POLICY='%s' is neither 'block' nor 'drop'", env);
    }
    if (c->policy == CAUDAL_POLICY_DEFAULT)
        c->policy = CAUDAL_POLICY_BLOCK;
    if (c->policy != CAUDAL_POLICY_BLOCK && c->policy != CAUDAL_POLICY_DROP)
        return fail(c, CAUDAL_ERR_INVALID, NULL, "unknown ring policy %d", (int)o->policy);
    if (o->block_timeout_ms < 0 || o->connect_timeout_ms < 0)
        return fail(c, CAUDAL_ERR_INVALID, NULL, "timeouts must not be negative");
    c->slot_bytes_opt = o->slot_bytes;
    c->block_timeout_ms = o->block_timeout_ms;
    c->connect_timeout_ms = o->connect_timeout_ms ? o->connect_timeout_ms : DEFAULT_CONNECT_MS;
    return CAUDAL_OK;
}

static void destroy(caudal_client *c)
{
    if (c->sock >= 0)
        close(c->sock);
    if (c->ring)
        munmap(c->ring, c->ring_bytes);
    if (c->memfd >= 0)
        close(c->memfd);
    for (size_t i = 0; i < c->narrays; i++)
        free(c->arrays[i].name);
    free(c->arrays);
    free(c->busy);
    cdl_outq_free(&c->out);
    cdl_reader_free(&c->in);
    cdl_store_free(&c->steer);
    free(c);
}

static int handshake(caudal_client *c)
{
    uint8_t frame[CDL_HEADER_LEN + 16 + CDL_MAX_TOKEN];
    size_t n = cdl_encode_hello(frame, sizeof frame, (uint32_t)c->rank, (uint32_t)c->size,
                                (uint32_t)getpid(),
                                c->tcp ? CDL_TRANSPORT_TCP : CDL_TRANSPORT_SHM, c->token);
    int rc = queue(c, frame, n, 0);
    if (rc < 0)
        return rc;
    uint64_t deadline = deadline_after(c->connect_timeout_ms);
    for (;;) {
        if ((rc = flush(c)) < 0)
            return rc;
        if ((rc = pump(c)) < 0)
            return rc;
        if (rc == 1)
            return CAUDAL_OK;
        struct pollfd p = {c->sock, POLLIN | (c->out.count ? POLLOUT : 0), 0};
        int k = poll(&p, 1, cdl_poll_timeout(deadline));
        if (k == 0)
            return fail(c, CAUDAL_ERR_TIMEOUT, NULL,
                        "no answer to hello within %d ms", c->connect_timeout_ms);
    }
}

int caudal_open(caudal_client **client, const caudal_options *opts, char *errbuf,
                size_t errlen)
{
    if (errbuf && errlen)
        errbuf[0] = 0;
    if (client)
        *client = NULL;
    if (!client || !opts) {
        if (errbuf && errlen)
            snprintf(errbuf, errlen, "caudal_open: client and opts must not be NULL");
        return CAUDAL_ERR_INVALID;
    }
    caudal_client *c = calloc(1, sizeof *c);
    if (!c) {
        if (errbuf && errlen)
            snprintf(errbuf, errlen, "caudal_open: out of memory");
        return CAUDAL_ERR_NOMEM;
    }
    c->sock = c->memfd = -1;
    cdl_outq_init(&c->out, slot_sent, c);
    const char *ep_text = NULL;
    int rc = resolve_options(c, opts, &ep_text);
    if (rc == CAUDAL_OK && cdl_reader_init(&c->in, 64 * 1024) != CAUDAL_OK)
        rc = fail(c, CAUDAL_ERR_NOMEM, NULL, "out of memory");
    cdl_endpoint ep;
    char msg[400];
    if (rc == CAUDAL_OK)
        rc = pick_endpoint(c, ep_text, opts->endpoint ? "the endpoint option" : "CAUDAL_ENDPOINT",
                           &ep);
    if (rc == CAUDAL_OK) {
        rc = cdl_connect(&ep, c->connect_timeout_ms, &c->sock, msg, sizeof msg);
        if (rc != CAUDAL_OK)
            fail(c, rc, NULL, "%s", msg);
        c->tcp = ep.is_tcp;
    }
    if (rc == CAUDAL_OK)
        rc = handshake(c);
    if (rc != CAUDAL_OK) {
        if (errbuf && errlen)
            snprintf(errbuf, errlen, "%s", c->err);
        destroy(c);
        return rc;
    }
    *client = c;
    return CAUDAL_OK;
}

/* ---- declarations ---------------------------------------------------- */

static cdl_array *find_array(caudal_client *c, const char *name)
{
    for (size_t i = 0; i < c->narrays; i++)
        if (strcmp(c->arrays[i].name, name) == 0)
            return &c->arrays[i];
    return NULL;
}

static int check_name(caudal_client *c, const char *name, const char *what)
{
    if (!name)
        return fail(c, CAUDAL_ERR_INVALID, NULL, "%s: name is NULL", what);
    size_t n = strlen(name);
    if (n == 0 || n > CAUDAL_MAX_NAME)
        return fail(c, CAUDAL_ERR_INVALID, NULL, "%s: a name must be 1 to %d bytes", what,
                    CAUDAL_MAX_NAME);
    return CAUDAL_OK;
}

static int add_array(caudal_client *c, const cdl_array *a)
{
    if (find_array(c, a->name))
        return fail(c, CAUDAL_ERR_DUPLICATE, a->name, "declared twice");
    if (c->narrays == c->arrays_cap) {
        size_t ncap = c->arrays_cap ? 2 * c->arrays_cap : 8;
        cdl_array *na = realloc(c->arrays, ncap * sizeof *na);
        if (!na)
            return fail(c, CAUDAL_ERR_NOMEM, a->name, "out of memory");
        c->arrays = na;
        c->arrays_cap = ncap;
    }
    uint8_t frame[CDL_HEADER_LEN + 12 + 24 * CAUDAL_MAX_DIMS + CAUDAL_MAX_NAME];
    size_t n = cdl_encode_declare(frame, sizeof frame, (uint32_t)c->narrays, a->name,
                                  (uint8_t)a->dtype, (uint8_t)a->ndim, (uint8_t)a->order,
                                  (uint8_t)a->variable, a->shape, a->start, a->count);
    cdl_array *slot = &c->arrays[c->narrays];
    *slot = *a;
    if (!(slot->name = strdup(a->name)))
        return fail(c, CAUDAL_ERR_NOMEM, a->name, "out of memory");
    int rc = queue(c, frame, n, 0);
    if (rc < 0) {
        free(slot->name);
        return rc;
    }
    c->narrays++;
    return CAUDAL_OK;
}

/* The checks both kinds of declaration start with; *isz: bytes per element. */
static int declare_start(caudal_client *c, const char *name, caudal_dtype dtype,
                         const char *fn, size_t *isz)
{
    int rc = check_name(c, name, fn);
    if (rc < 0)
        return rc;
    if (c->broken)
        return still_broken(c);
    if ((*isz = caudal_dtype_size(dtype)) == 0)
        return fail(c, CAUDAL_ERR_INVALID, name, "dtype %d is not a caudal_dtype", (int)dtype);
    return CAUDAL_OK;
}

static int declare_impl(caudal_client *c, const char *name, caudal_dtype dtype, int ndim,
                        const uint64_t *shape, const uint64_t *start, const uint64_t *count,
                        caudal_order order)
{
    size_t isz;
    int rc = declare_start(c, name, dtype, "caudal_declare", &isz);
    if (rc < 0)
        return rc;
    if (ndim < 1 || ndim > CAUDAL_MAX_DIMS)
        return fail(c, CAUDAL_ERR_SHAPE, name, "ndim %d is not 1 to %d", ndim,
                    CAUDAL_MAX_DIMS);
    if (!shape || !start || !count)
        return fail(c, CAUDAL_ERR_INVALID, name, "shape, start and count must not be NULL");
    if (order != CAUDAL_ORDER_C && order != CAUDAL_ORDER_F)
        return fail(c, CAUDAL_ERR_INVALID, name, "order %d is neither C nor Fortran",
                    (int)order);
    cdl_array a = {.name = (char *)name, .dtype = dtype, .order = order, .ndim = ndim};
    char why[200];
    uint64_t bytes;
    if (cdl_check_block((unsigned)ndim, shape, start, count, isz, &bytes, why, sizeof why))
        return fail(c, CAUDAL_ERR_SHAPE, name, "%s", why);
    memcpy(a.shape, shape, (size_t)ndim * sizeof *shape);
    memcpy(a.start, start, (size_t)ndim * sizeof *start);
    memcpy(a.count, count, (size_t)ndim * sizeof *count);
    a.nbytes = bytes;
    return add_array(c, &a);
}

static int declare_var_impl(caudal_client *c, const char *name, caudal_dtype dtype,
                            uint64_t capacity)
{
    size_t isz;
    int rc = declare_start(c, name, dtype, "caudal_declare_var", &isz);
    if (rc < 0)
        return rc;
    /* The receiver checks the same rules (cdl_check_var). */
    char why[200];
    if (cdl_check_var(1, 0, 0, capacity, isz, why, sizeof why))
        return fail(c, CAUDAL_ERR_SHAPE, name, "%s", why);
    cdl_array a = {.name = (char *)name, .dtype = dtype, .variable = 1, .ndim = 1,
                   .count = {capacity}, .nbytes = capacity * isz};
    return add_array(c, &a);
}

/* ---- the ring -------------------------------------------------------- */

static uint64_t align_up(uint64_t v) { return (v + ALIGN - 1) / ALIGN * ALIGN; }

/* Large blocks go into their slot with non-temporal stores when the ring
 * is at least as large as the last-level cache: it cannot stay cached, the
 * slot is read later by another process, and a copy through the cache only
 * evicts the simulation's working set and reads the slot's old lines first.
 * bench_put here (L3 32 MiB), publish over memcpy, runs before and after:
 * 16 MiB 1.15 and 1.08, 64 MiB 0.93 and 0.81, 256 MiB 1.01 and 0.66; with
 * a ring that fits the cache (1 and 4 MiB blocks) streaming was slower
 * (54 against 36 us at 1 MiB), hence the condition. */
#define STREAM_COPY_MIN ((size_t)1 << 20)

/* Bytes of the largest cache of the CPU this runs on, as Linux's sysfs
 * gives it (what lscpu shows; glibc's sysconf may report a whole socket's
 * L3 in a virtual machine: 320 MiB against 32 MiB here), else sysconf's,
 * else 32 MiB. */
static size_t last_level_cache(void)
{
    size_t best = 0;
    for (int i = 0; i < 8; i++) {
        char path[96];
        snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", i);
        FILE *f = fopen(path, "r");
        if (!f)
            break;
        unsigned long long v = 0;
        char unit = 0;
        int got = fscanf(f, "%llu%c", &v, &unit);
        fclose(f);
        if (got >= 1) {
            unsigned long long scale = unit == 'K' ? 1024 : unit == 'M' ? 1024 * 1024 : 1;
            if (v * scale > best)
                best = (size_t)(v * scale);
        }
    }
    long n = -1;
#ifdef _SC_LEVEL3_CACHE_SIZE
    if (!best)
        n = sysconf(_SC_LEVEL3_CACHE_SIZE);
#endif
    return best ? best : n > 0 ? (size_t)n : (size_t)32 << 20;
}

static void copy_to_slot(const caudal_client *c, uint8_t *dst, const uint8_t *src, size_t n)
{
#if defined(__x86_64__) && defined(__SSE2__)
    if (c->stream && n >= STREAM_COPY_MIN && ((uintptr_t)dst & 15) == 0) {
        size_t body = n / 64 * 64;
        for (size_t i = 0; i < body; i += 64) {
            __m128i a = _mm_loadu_si128((const __m128i *)(const void *)(src + i));
            __m128i b = _mm_loadu_si128((const __m128i *)(const void *)(src + i + 16));
            __m128i d = _mm_loadu_si128((const __m128i *)(const void *)(src + i + 32));
            __m128i e = _mm_loadu_si128((const __m128i *)(const void *)(src + i + 48));
            _mm_stream_si128((__m128i *)(void *)(dst + i), a);
            _mm_stream_si128((__m128i *)(void *)(dst + i + 16), b);
            _mm_stream_si128((__m128i *)(void *)(dst + i + 32), d);
            _mm_stream_si128((__m128i *)(void *)(dst + i + 48), e);
        }
        _mm_sfence(); /* visible before the frame that hands the slot over */
        memcpy(dst + body, src + body, n - body);
        return;
    }
#endif
    (void)c;
    memcpy(dst, src, n);
}

static int ring_create(caudal_client *c)
{
    uint64_t slot = c->slot_bytes_opt;
    if (!slot)
        for (size_t i = 0; i < c->narrays; i++)
            slot += align_up(c->arrays[i].nbytes);
    slot = align_up(slot ? slot : ALIGN);
    if (slot > SIZE_MAX / c->depth)
        return fail(c, CAUDAL_ERR_NOMEM, NULL, "a ring of %u slots of %" PRIu64
                    " bytes does not fit in memory", c->depth, slot);
    size_t total = (size_t)slot * c->depth;
    int flags = MAP_SHARED | MAP_POPULATE;
    if (!c->tcp) {
        c->memfd = memfd_create("caudal-ring", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (c->memfd < 0 || ftruncate(c->memfd, (off_t)total) < 0 ||
            fcntl(c->memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
            return fail(c, CAUDAL_ERR_SYSTEM, NULL, "cannot create a shared ring of %zu bytes: %s",
                        total, strerror(errno));
    } else {
        flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE;
    }
    void *p = mmap(NULL, total, PROT_READ | PROT_WRITE, flags, c->memfd, 0);
    if (p == MAP_FAILED)
        return fail(c, CAUDAL_ERR_SYSTEM, NULL, "cannot map a ring of %zu bytes: %s", total,
                    strerror(errno));
    c->ring = p;
    c->ring_bytes = total;
    c->slot_bytes = (size_t)slot;
    c->stream = total >= last_level_cache();
    if (!(c->busy = calloc(c->depth, 1)))
        return fail(c, CAUDAL_ERR_NOMEM, NULL, "out of memory");
    if (!c->tcp) {
        uint8_t frame[CDL_HEADER_LEN + 16];
        size_t n = cdl_encode_ring(frame, sizeof frame, c->depth, slot);
        if (cdl_outq_copy_fd(&c->out, frame, n, c->memfd) != CAUDAL_OK)
            return fail(c, CAUDAL_ERR_NOMEM, NULL, "out of memory");
    }
    return CAUDAL_OK;
}

/* The lowest free slot: when the analytics keep up, the same one or two slots
 * are reused and stay in cache, instead of cycling through the whole ring. */
static int take_free_slot(caudal_client *c)
{
    for (unsigned s = 0; s < c->depth; s++) {
        if (!c->busy[s]) {
            c->busy[s] = 1;
            c->slot = s;
            return 1;
        }
    }
    return 0;
}

static int slot_free(caudal_client *c)
{
    for (unsigned k = 0; k < c->depth; k++)
        if (!c->busy[k])
            return 1;
    return 0;
}

static int report_drops(caudal_client *c)
{
    if (!c->drop_count)
        return CAUDAL_OK;
    uint8_t frame[FRAME_MAX];
    size_t n = cdl_encode_drop(frame, sizeof frame, c->drop_first, c->drop_last,
                               c->drop_count);
    int rc = queue(c, frame, n, 0);
    if (rc == CAUDAL_OK)
        c->drop_count = 0;
    return rc;
}

/* ---- steps ------------------------------------------------------------- */

/* Under the drop policy a simulation may go on without its analytics: once
 * the connection is lost (the call that found it said so), each later step
 * is dropped and counted instead of failing. */
static int dropping_for_good(const caudal_client *c)
{
    return c->broken == CAUDAL_ERR_IO && c->policy == CAUDAL_POLICY_DROP;
}

static int begin_impl(caudal_client *c, uint64_t step)
{
    if (c->broken && !dropping_for_good(c))
        return still_broken(c);
    if (c->in_step)
        return fail(c, CAUDAL_ERR_STATE, NULL,
                    "caudal_begin_step(%" PRIu64 ") inside a step: call caudal_end_step first",
                    step);
    if (c->any_step && step <= c->step)
        return fail(c, CAUDAL_ERR_STEP_ORDER, NULL,
                    "step %" PRIu64 " does not come after step %" PRIu64, step, c->step);
    if (c->broken) {
        c->counters.steps_dropped++;
        c->in_step = c->any_step = c->dropped = 1;
        c->step = step;
        c->step_gen++;
        return CAUDAL_OK;
    }
    int rc;
    if (!c->ring && (rc = ring_create(c)) < 0)
        return rc;
    if ((rc = flush(c)) < 0)
        return rc;
    /* With large slots, read the releases first so that a warm slot is
     * reused: a syscall is cheap next to copying into a cold one. */
    if (c->slot_bytes >= WARM_SLOT_BYTES && c->busy[0] && (rc = pump(c)) < 0)
        return rc;
    /* Over tcp a write to a dead receiver still succeeds locally: read first,
     * so that its end is known before another step is handed to the kernel. */
    if (c->tcp && (rc = pump(c)) < 0)
        return rc;
    if (!take_free_slot(c)) {
        if ((rc = pump(c)) < 0)
            return rc;
        if (!take_free_slot(c)) {
            if (c->policy == CAUDAL_POLICY_DROP) {
                if (!c->drop_count)
                    c->drop_first = step;
                c->drop_last = step;
                c->drop_count++;
                c->counters.steps_dropped++;
                c->in_step = c->any_step = c->dropped = 1;
                c->step = step;
                c->step_gen++;
                return CAUDAL_OK;
            }
            rc = wait_until(c, slot_free, deadline_after(c->block_timeout_ms));
            if (rc == CAUDAL_ERR_TIMEOUT)
                return fail(c, rc, NULL,
                            "no ring slot freed within %d ms for step %" PRIu64
                            " (the analytics hold all %u slots)",
                            c->block_timeout_ms, step, c->depth);
            if (rc < 0)
                return rc;
            take_free_slot(c);
        }
    }
    if ((rc = report_drops(c)) < 0) {
        c->busy[c->slot] = 0;
        return rc;
    }
    c->in_step = c->any_step = 1;
    c->dropped = c->slot_in_shm = c->overflow = 0;
    c->step = step;
    c->step_gen++;
    c->used = 0;
    c->nblocks = 0;
    return CAUDAL_OK;
}

/* The checks of a put that come before its data: a step begun, the array
 * declared, of this kind and dtype, not put yet in this step. */
static int put_allowed(caudal_client *c, const char *name, caudal_dtype dtype, int variable,
                       cdl_array **out)
{
    const char *fn = variable ? "caudal_put_var" : "caudal_put";
    int rc = check_name(c, name, fn);
    if (rc < 0)
        return rc;
    if (c->broken && !dropping_for_good(c))
        return still_broken(c);
    if (!c->in_step)
        return fail(c, CAUDAL_ERR_STATE, name, "%s outside caudal_begin_step/caudal_end_step",
                    fn);
    cdl_array *a = find_array(c, name);
    if (!a)
        return fail(c, CAUDAL_ERR_UNKNOWN_ARRAY, name, "%s of an array never declared", fn);
    if (a->variable != variable)
        return fail(c, CAUDAL_ERR_INVALID, name,
                    variable ? "declared with a fixed shape: use caudal_put"
                             : "declared variable-length: use caudal_put_var");
    if (dtype != a->dtype)
        return fail(c, CAUDAL_ERR_DTYPE, name, "declared %s, put as %s",
                    caudal_dtype_name(a->dtype), caudal_dtype_name(dtype));
    if (a->put_gen == c->step_gen)
        return fail(c, CAUDAL_ERR_DUPLICATE, name, "put twice in the same step");
    *out = a;
    return CAUDAL_OK;
}

/* A variable-length block of `count` elements stays below 2^62 bytes. */
static int var_count_ok(caudal_client *c, const char *name, uint64_t count, size_t isz)
{
    if (count >= CDL_MAX_EXTENT / isz)
        return fail(c, CAUDAL_ERR_SHAPE, name, "count %" PRIu64 " is beyond 2^62 bytes", count);
    return CAUDAL_OK;
}

/* A shape as NumPy writes it: "(4, 8)", "(24,)". */
static void dims_text(char *buf, size_t len, int ndim, const uint64_t *dims)
{
    int off = snprintf(buf, len, "(");
    for (int k = 0; k < ndim && off < (int)len - 24; k++)
        off += snprintf(buf + off, len - off, "%s%" PRIu64, k ? ", " : "", dims[k]);
    snprintf(buf + off, len - off, "%s)", ndim == 1 ? "," : "");
}

/* A fixed block comes as an array of the declared block's shape, or as a
 * flat run of its elements (how C and Fortran codes often hold it); the
 * element count alone would let an (8, 4) array into a (4, 8) block, each
 * element in the wrong place. */
static int layout_ok(caudal_client *c, const cdl_array *a, int ndim, const uint64_t *dims)
{
    if (ndim < 1 || ndim > CAUDAL_MAX_DIMS || !dims)
        return fail(c, CAUDAL_ERR_INVALID, a->name, "caudal_put_check: ndim %d is not 1 to %d "
                    "or dims is NULL", ndim, CAUDAL_MAX_DIMS);
    size_t isz = caudal_dtype_size(a->dtype);
    if (a->variable) {
        if (ndim != 1)
            return fail(c, CAUDAL_ERR_SHAPE, a->name,
                        "put_var takes a 1-D run of elements, this one has %d dimensions", ndim);
        return var_count_ok(c, a->name, dims[0], isz);
    }
    uint64_t elements = a->nbytes / isz;
    int same = ndim == a->ndim;
    for (int k = 0; same && k < ndim; k++)
        same = dims[k] == a->count[k];
    if (same || (ndim == 1 && dims[0] == elements))
        return CAUDAL_OK;
    char want[160], have[160];
    dims_text(want, sizeof want, a->ndim, a->count);
    dims_text(have, sizeof have, ndim, dims);
    if (ndim == 1)
        return fail(c, CAUDAL_ERR_SHAPE, a->name,
                    "put a flat run of %" PRIu64 " elements, the declared block (count %s of "
                    "%s) has %" PRIu64, dims[0], want, caudal_dtype_name(a->dtype), elements);
    return fail(c, CAUDAL_ERR_SHAPE, a->name,
                "put with shape %s, the declared block has shape %s (%s, %s order); put an "
                "array of that shape or a flat 1-D run of its %" PRIu64 " elements",
                have, want, caudal_dtype_name(a->dtype),
                a->order == CAUDAL_ORDER_F ? "Fortran" : "C", elements);
}

static int put_impl(caudal_client *c, const char *name, caudal_dtype dtype, const void *data,
                    uint64_t count, int variable)
{
    cdl_array *a = NULL;
    int rc = put_allowed(c, name, dtype, variable, &a);
    if (rc < 0)
        return rc;
    size_t isz = caudal_dtype_size(dtype);
    uint64_t nbytes = a->nbytes;
    if (variable) {
        if ((rc = var_count_ok(c, name, count, isz)) < 0)
            return rc;
        nbytes = count * isz;
    } else {
        count = nbytes / isz;
    }
    if (nbytes && !data)
        return fail(c, CAUDAL_ERR_INVALID, name, "data is NULL for a block of %" PRIu64
                    " bytes", nbytes);
    a->put_gen = c->step_gen;
    if (c->dropped)
        return CAUDAL_OK;

    uint32_t id = (uint32_t)(a - c->arrays);
    uint8_t frame[FRAME_MAX];
    size_t n;
    uint64_t off = align_up(c->used);
    if (off <= c->slot_bytes && nbytes <= c->slot_bytes - off) {
        uint8_t *dst = c->ring + (size_t)c->slot * c->slot_bytes + off;
        if (nbytes)
            copy_to_slot(c, dst, data, nbytes);
        c->used = off + nbytes;
        if (!c->tcp) {
            n = cdl_encode_block(frame, sizeof frame, id, c->slot, c->step, off, nbytes, count);
            rc = queue(c, frame, n, 0);
            c->slot_in_shm = 1;
        } else {
            n = cdl_encode_block(frame, sizeof frame, id, CDL_NO_SLOT, c->step, 0, nbytes,
                                 count);
            rc = queue(c, frame, n, 0);
            if (rc == CAUDAL_OK && nbytes &&
                cdl_outq_borrow(&c->out, dst, nbytes, 0) != CAUDAL_OK)
                rc = fail(c, CAUDAL_ERR_NOMEM, name, "out of memory");
            c->counters.bytes_inline += nbytes;
        }
    } else {
        /* Larger than what is left of the slot: send it inline from a copy. */
        uint8_t *copy = malloc(nbytes);
        if (!copy)
            return fail(c, CAUDAL_ERR_NOMEM, name, "out of memory copying %" PRIu64
                        " bytes that do not fit the slot", nbytes);
        memcpy(copy, data, nbytes);
        n = cdl_encode_block(frame, sizeof frame, id, CDL_NO_SLOT, c->step, 0, nbytes, count);
        rc = queue(c, frame, n, 0);
        if (rc == CAUDAL_OK) {
            if (cdl_outq_own(&c->out, copy, nbytes, 0) != CAUDAL_OK) {
                free(copy);
                rc = fail(c, CAUDAL_ERR_NOMEM, name, "out of memory");
            }
        } else {
            free(copy);
        }
        c->overflow = 1;
        c->counters.bytes_inline += nbytes;
    }
    if (rc < 0)
        return broke(c, rc, "%s", "a block could not be queued; the stream is incomplete");
    c->nblocks++;
    c->counters.blocks_sent++;
    c->counters.bytes_sent += nbytes;
    return CAUDAL_OK;
}



static int end_impl(caudal_client *c)
{
    if (c->broken) {
        if (!dropping_for_good(c))
            return still_broken(c);
        int was_dropped = c->in_step && c->dropped;
        c->in_step = 0; /* the next step begins afresh, as a dropped one */
        return was_dropped ? CAUDAL_OK : still_broken(c);
    }
    if (!c->in_step)
        return fail(c, CAUDAL_ERR_STATE, NULL, "caudal_end_step without caudal_begin_step");
    c->in_step = 0;
    if (c->dropped)
        return CAUDAL_OK;
    uint8_t frame[FRAME_MAX];
    uint32_t slot_field = c->slot_in_shm ? c->slot : CDL_NO_SLOT;
    uint32_t tag = 0;
    if (c->tcp)
        tag = c->slot + 1; /* free once the slot's bytes are sent */
    else if (!c->slot_in_shm)
        c->busy[c->slot] = 0; /* nothing of this step is in shared memory */
    size_t n = cdl_encode_step_end(frame, sizeof frame, c->step, c->nblocks, slot_field);
    int rc = queue(c, frame, n, tag);
    if (rc < 0)
        return broke(c, rc, "the end of the step could not be queued");
    c->counters.steps_sent++;
    if ((rc = flush(c)) < 0)
        return rc;
    if (c->overflow) {
        /* Inline copies are private memory: bound them to one step. */
        rc = wait_until(c, queue_empty, deadline_after(c->block_timeout_ms));
        if (rc == CAUDAL_ERR_TIMEOUT)
            return fail(c, rc, NULL, "the receiver did not take the inline blocks within %d ms",
                        c->block_timeout_ms);
    }
    return rc;
}

/* ---- steering ------------------------------------------------------ */

static int steer_get(caudal_client *c, const char *key, uint8_t type, const cdl_value **out)
{
    int rc = check_name(c, key, "steering");
    if (rc < 0)
        return rc;
    if (!c->broken)
        pump(c); /* a lost connection keeps the last values; steps report it */
    const cdl_value *v = cdl_store_get(&c->steer, 0, key);
    if (!v)
        return CAUDAL_NO_VALUE;
    if (v->type != type)
        return fail(c, CAUDAL_ERR_TYPE, NULL, "steering value '%s' is a %s", key,
                    v->type == CAUDAL_VALUE_DOUBLE  ? "double"
                    : v->type == CAUDAL_VALUE_INT64 ? "int64"
                                                    : "string");
    *out = v;
    return CAUDAL_OK;
}

static int steer_set(caudal_client *c, const char *key, uint8_t type, const void *value)
{
    int rc = check_name(c, key, "steering");
    if (rc < 0)
        return rc;
    if (c->broken)
        return still_broken(c);
    size_t sl = type == CAUDAL_VALUE_STRING ? strlen(value) : 0;
    if (sl > CDL_MAX_STRING_VALUE)
        return fail(c, CAUDAL_ERR_INVALID, NULL, "steering string '%s' longer than %u bytes",
                    key, CDL_MAX_STRING_VALUE);
    if (!queue_short(c) && (rc = flush(c)) < 0)
        return rc;
    if (!queue_short(c)) {
        /* The receiver is not reading: wait as the policy says, never queue
         * without bound. */
        rc = c->policy == CAUDAL_POLICY_DROP
                 ? CAUDAL_ERR_TIMEOUT
                 : wait_until(c, queue_short, deadline_after(c->block_timeout_ms));
        if (rc == CAUDAL_ERR_TIMEOUT)
            return fail(c, rc, NULL, "steering value '%s' not sent: the receiver is not "
                        "reading (%zu bytes queued)", key, c->out.bytes);
        if (rc < 0)
            return rc;
    }
    size_t cap = cdl_steer_frame_len(strlen(key), type, sl);
    uint8_t *frame = malloc(cap);
    if (!frame)
        return fail(c, CAUDAL_ERR_NOMEM, NULL, "out of memory");
    size_t n = cdl_encode_steer(frame, cap, key, type, value);
    rc = queue(c, frame, n, 0);
    free(frame);
    return rc < 0 ? rc : flush(c);
}

/* ---- public entry points: argument checks and time accounting ---------- */

#define TIMED(c, call)                                                  \
    do {                                                                \
        if (!(c))                                                       \
            return CAUDAL_ERR_CLOSED;                                   \
        uint64_t t0_ = cdl_now_ns();                                    \
        int rc_ = (call);                                               \
        (c)->counters.ns_in_calls += cdl_now_ns() - t0_;                \
        return rc_;                                                     \
    } while (0)

int caudal_declare(caudal_client *c, const char *name, caudal_dtype dtype, int ndim,
                   const uint64_t *shape, const uint64_t *start, const uint64_t *count,
                   caudal_order order)
{
    TIMED(c, declare_impl(c, name, dtype, ndim, shape, start, count, order));
}

int caudal_declare_var(caudal_client *c, const char *name, caudal_dtype dtype,
                       uint64_t capacity)
{
    TIMED(c, declare_var_impl(c, name, dtype, capacity));
}

int caudal_begin_step(caudal_client *c, uint64_t step) { TIMED(c, begin_impl(c, step)); }

int caudal_put(caudal_client *c, const char *name, caudal_dtype dtype, const void *data)
{
    TIMED(c, put_impl(c, name, dtype, data, 0, 0));
}

int caudal_put_var(caudal_client *c, const char *name, caudal_dtype dtype, const void *data,
                   uint64_t count)
{
    TIMED(c, put_impl(c, name, dtype, data, count, 1));
}

int caudal_end_step(caudal_client *c) { TIMED(c, end_impl(c)); }

static int put_check_impl(caudal_client *c, const char *name, caudal_dtype dtype, int variable,
                          int ndim, const uint64_t *dims)
{
    cdl_array *a = NULL;
    int rc = put_allowed(c, name, dtype, variable != 0, &a);
    if (rc < 0 || (ndim == 0 && !dims))
        return rc;
    return layout_ok(c, a, ndim, dims);
}

int caudal_put_check(caudal_client *c, const char *name, caudal_dtype dtype, int variable,
                     int ndim, const uint64_t *dims)
{
    TIMED(c, put_check_impl(c, name, dtype, variable, ndim, dims));
}

int caudal_query_array(caudal_client *c, const char *name, caudal_array_info *info)
{
    if (!c)
        return CAUDAL_ERR_CLOSED;
    int rc = check_name(c, name, "caudal_query_array");
    if (rc < 0)
        return rc;
    if (!info)
        return fail(c, CAUDAL_ERR_INVALID, name, "caudal_query_array: info is NULL");
    const cdl_array *a = find_array(c, name);
    if (!a)
        return fail(c, CAUDAL_ERR_UNKNOWN_ARRAY, name, "no array declared under this name");
    memset(info, 0, sizeof *info);
    info->name = a->name;
    info->dtype = a->dtype;
    info->order = a->order;
    info->variable = a->variable;
    info->ndim = a->ndim;
    memcpy(info->shape, a->shape, sizeof info->shape);
    memcpy(info->start, a->start, sizeof info->start);
    memcpy(info->count, a->count, sizeof info->count);
    return CAUDAL_OK;
}

int caudal_get_state(const caudal_client *c, caudal_state *state)
{
    if (!c)
        return CAUDAL_ERR_CLOSED;
    if (!state)
        return CAUDAL_ERR_INVALID;
    memset(state, 0, sizeof *state);
    state->rank = c->rank;
    state->size = c->size;
    state->in_step = c->in_step;
    state->any_step = c->any_step;
    state->step = c->step;
    state->dropping = c->in_step && c->dropped;
    state->policy = c->policy;
    state->ring_depth = c->depth;
    state->slot_bytes = c->slot_bytes;
    return CAUDAL_OK;
}

int caudal_set_error(caudal_client *c, int status, const char *array, const char *message)
{
    if (!c)
        return CAUDAL_ERR_CLOSED;
    return fail(c, status, array, "%s", message ? message : "(no message)");
}

static int get_double(caudal_client *c, const char *key, double *value)
{
    const cdl_value *v = NULL;
    if (!value)
        return fail(c, CAUDAL_ERR_INVALID, NULL, "steering: value pointer is NULL");
    int rc = steer_get(c, key, CAUDAL_VALUE_DOUBLE, &v);
    if (rc == CAUDAL_OK)
        *value = v->d;
    return rc;
}

static int get_int64(caudal_client *c, const char *key, int64_t *value)
{
    const cdl_value *v = NULL;
    if (!value)
        return fail(c, CAUDAL_ERR_INVALID, NULL, "steering: value pointer is NULL");
    int rc = steer_get(c, key, CAUDAL_VALUE_INT64, &v);
    if (rc == CAUDAL_OK)
        *value = v->i;
    return rc;
}

static int get_string(caudal_client *c, const char *key, char *buf, size_t buflen)
{
    const cdl_value *v = NULL;
    if (!buf || buflen == 0)
        return fail(c, CAUDAL_ERR_INVALID, NULL, "steering: buffer is NULL or empty");
    int rc = steer_get(c, key, CAUDAL_VALUE_STRING, &v);
    if (rc != CAUDAL_OK)
        return rc;
    size_t n = strlen(v->s);
    if (n >= buflen) {
        memcpy(buf, v->s, buflen - 1);
        buf[buflen - 1] = 0;
        return fail(c, CAUDAL_ERR_TRUNCATED, NULL,
                    "steering string '%s' has %zu bytes, the buffer %zu", key, n, buflen);
    }
    memcpy(buf, v->s, n + 1);
    return CAUDAL_OK;
}

static int get_any(caudal_client *c, const char *key, caudal_value *value)
{
    if (!value)
        return fail(c, CAUDAL_ERR_INVALID, NULL, "steering: value pointer is NULL");
    memset(value, 0, sizeof *value);
    int rc = check_name(c, key, "steering");
    if (rc < 0)
        return rc;
    if (!c->broken)
        pump(c); /* as steer_get */
    const cdl_value *v = cdl_store_get(&c->steer, 0, key);
    if (!v)
        return CAUDAL_NO_VALUE;
    value->type = (caudal_value_type)v->type;
    value->as_double = v->type == CAUDAL_VALUE_DOUBLE ? v->d : 0;
    value->as_int64 = v->type == CAUDAL_VALUE_INT64 ? v->i : 0;
    if (v->type == CAUDAL_VALUE_STRING) {
        value->as_string = v->s;
        value->string_length = strlen(v->s);
    }
    return CAUDAL_OK;
}

int caudal_steer_get(caudal_client *c, const char *key, caudal_value *value)
{
    TIMED(c, get_any(c, key, value));
}

int caudal_steer_get_double(caudal_client *c, const char *key, double *value)
{
    TIMED(c, get_double(c, key, value));
}

int caudal_steer_get_int64(caudal_client *c, const char *key, int64_t *value)
{
    TIMED(c, get_int64(c, key, value));
}

int caudal_steer_get_string(caudal_client *c, const char *key, char *buf, size_t buflen)
{
    TIMED(c, get_string(c, key, buf, buflen));
}

int caudal_steer_set_double(caudal_client *c, const char *key, double value)
{
    TIMED(c, steer_set(c, key, CAUDAL_VALUE_DOUBLE, &value));
}

int caudal_steer_set_int64(caudal_client *c, const char *key, int64_t value)
{
    TIMED(c, steer_set(c, key, CAUDAL_VALUE_INT64, &value));
}

static int set_string(caudal_client *c, const char *key, const char *value)
{
    if (!value)
        return fail(c, CAUDAL_ERR_INVALID, NULL, "steering '%s': value is NULL",
                    key ? key : "(null)");
    return steer_set(c, key, CAUDAL_VALUE_STRING, value);
}

int caudal_steer_set_string(caudal_client *c, const char *key, const char *value)
{
    TIMED(c, set_string(c, key, value));
}

int caudal_get_counters(const caudal_client *c, caudal_counters *out)
{
    if (!c)
        return CAUDAL_ERR_CLOSED;
    if (!out)
        return CAUDAL_ERR_INVALID;
    *out = c->counters;
    return CAUDAL_OK;
}

const char *caudal_last_error(const caudal_client *c)
{
    if (!c)
        return "client is NULL or closed";
    return c->err;
}

/* ---- close ----------------------------------------------------------- */

static int bye_acked(caudal_client *c) { return c->bye_acked; }

static int say_goodbye(caudal_client *c)
{
    int rc = CAUDAL_OK;
    if (c->in_step)
        rc = end_impl(c); /* closing inside a step publishes it, as end_step would */
    if (c->broken)
        return still_broken(c);
    int r2 = report_drops(c);
    if (rc == CAUDAL_OK)
        rc = r2;
    uint64_t k[CDL_NCOUNTERS] = {c->counters.steps_sent,   c->counters.steps_dropped,
                                 c->counters.blocks_sent,  c->counters.bytes_sent,
                                 c->counters.bytes_inline, c->counters.ns_in_calls,
                                 c->counters.ns_waiting};
    uint8_t frame[FRAME_MAX];
    size_t n = cdl_encode_bye(frame, sizeof frame, k);
    if ((r2 = queue(c, frame, n, 0)) < 0)
        return r2;
    r2 = wait_until(c, bye_acked, deadline_after(c->connect_timeout_ms));
    if (r2 == CAUDAL_ERR_TIMEOUT)
        r2 = fail(c, r2, NULL, "the receiver did not acknowledge goodbye within %d ms",
                  c->connect_timeout_ms);
    return rc < 0 ? rc : r2;
}

int caudal_close_report(caudal_client **client, char *errbuf, size_t errlen)
{
    if (errbuf && errlen)
        snprintf(errbuf, errlen, "%s", client && *client ? "" : "client is NULL or closed");
    if (!client || !*client)
        return CAUDAL_ERR_CLOSED;
    caudal_client *c = *client;
    int rc = say_goodbye(c);
    if (rc < 0 && errbuf && errlen)
        snprintf(errbuf, errlen, "%s", c->err);
    destroy(c);
    *client = NULL;
    return rc;
}

int caudal_close(caudal_client **client) { return caudal_close_report(client, NULL, 0); }
