/* libFuzzer harness for the receiver's handling of a connection (clang only;
 * scripts/fuzz.sh builds and runs it, with a seed corpus from fuzz_seeds).
 *
 * One receiver listens on a unix socket in a private directory for the whole
 * process. Each input is one client connection (format in fuzz_receiver.h):
 * maybe a HELLO with the right token (and a real ring), then the fuzzed
 * stream in pieces, then the end of the client's writing; the receiver runs
 * until the connection's last event. Besides memory errors (ASan), leaks and
 * undefined behaviour, it aborts when an event breaks what the protocol and
 * caudal_receiver.h promise: only an authenticated rank produces events about
 * a rank, always its own; nothing follows a connection's last event; blocks
 * hold bytes that were sent, as large as declared; a step ends with the
 * blocks it had; and once the connection is over no rank is connected and no
 * descriptor of it is left open. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "caudal_receiver.h"
#include "fuzz_receiver.h"
#include "protocol.h"

/* Receiver calls without an event one input may take before it counts as a
 * hang (each waits a millisecond, so about two seconds: -timeout must exceed
 * it). */
#define MAX_ROUNDS 2000

#define RING_BYTES (FUZZ_RING_DEPTH * FUZZ_RING_SLOT)

/* Opening a listener per input would cost more than the input itself. */
static caudal_receiver *receiver;
static char dir[256], endpoint[300], sock_path[300];
static uint64_t prev_connection;
static uint8_t ring_pattern[RING_BYTES];

typedef struct conn_state {
    int fd;
    int said_hello;
    int rank; /* said in HELLO */
    const uint8_t *stream;
    size_t stream_len;
    size_t sent; /* of the stream */
    uint64_t connection;
    int events;
    int connected, crank, csize; /* CONNECT seen, with its rank and size */
    int ended;                   /* the last event (BYE, DISCONNECT, REFUSED) seen */
    int refused;
    int any_step;
    uint64_t step; /* of the blocks since the last step end */
    uint64_t last_step;
    uint32_t step_blocks;
} conn_state;

static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "fuzz_receiver: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    abort();
}

static const char *type_name(int type)
{
    static const char *const names[] = {"?",     "CONNECT",  "DECLARE", "BLOCK", "STEP_END",
                                        "DROP",  "STEER",    "BYE",     "DISCONNECT"};
    if (type == CAUDAL_EVENT_REFUSED)
        return "REFUSED";
    return type >= 1 && type <= CAUDAL_EVENT_DISCONNECT ? names[type] : "a newer event";
}

static void cleanup(void)
{
    caudal_receiver_close(&receiver);
    unlink(sock_path); /* in case close could not */
    rmdir(dir);
}

static void setup(void)
{
    /* Unix socket paths are short: a long $TMPDIR falls back to /tmp. */
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp || strlen(tmp) > 64)
        tmp = "/tmp";
    snprintf(dir, sizeof dir, "%s/caudal-fuzz-XXXXXX", tmp);
    if (!mkdtemp(dir))
        fail("mkdtemp %s: %s", dir, strerror(errno));
    snprintf(sock_path, sizeof sock_path, "%s/r.sock", dir);
    snprintf(endpoint, sizeof endpoint, "unix:%s", sock_path);
    caudal_receiver_options o;
    caudal_receiver_options_init(&o);
    o.endpoint = endpoint;
    o.token = FUZZ_TOKEN;
    o.max_held_bytes = 1u << 20; /* small, so that the limit is reached */
    char err[512];
    if (caudal_receiver_open(&receiver, &o, err, sizeof err) != CAUDAL_OK)
        fail("cannot open the receiver: %s", err);
    atexit(cleanup);
    /* Values set before a rank comes go out after its WELCOME. */
    if (caudal_receiver_steer_double(receiver, -1, "dt", 0.5) != CAUDAL_OK ||
        caudal_receiver_steer_string(receiver, 3, "mode", "fast") != CAUDAL_OK)
        fail("steering: %s", caudal_receiver_last_error(receiver));
    for (size_t i = 0; i < sizeof ring_pattern; i++)
        ring_pattern[i] = (uint8_t)(i * 131u + i / 251u + 7u);
}

static void check_block(conn_state *st, const caudal_event *ev)
{
    const caudal_array_info *a = ev->array;
    if (!a || !ev->block || !ev->data)
        fail("block event without array, block or data");
    if ((uintptr_t)ev->data % 64)
        fail("block data of '%s' not 64-byte aligned", a->name);
    size_t isz = caudal_dtype_size(a->dtype);
    if (!isz || ev->nbytes != ev->count * isz)
        fail("block of '%s': %llu bytes for %llu elements of %zu bytes", a->name,
             (unsigned long long)ev->nbytes, (unsigned long long)ev->count, isz);
    if (!a->variable) {
        uint64_t volume = 1;
        for (int d = 0; d < a->ndim; d++)
            volume *= a->count[d];
        if (ev->count != volume)
            fail("block of '%s': %llu elements, declared %llu", a->name,
                 (unsigned long long)ev->count, (unsigned long long)volume);
    }
    /* The bytes are the client's: in its ring, or in its stream. */
    if (ev->nbytes) {
        const uint8_t *src = ev->in_shared_memory ? ring_pattern : st->stream;
        size_t srclen = ev->in_shared_memory ? sizeof ring_pattern : st->stream_len;
        if (ev->nbytes > srclen || !memmem(src, srclen, ev->data, (size_t)ev->nbytes))
            fail("block of '%s' (%llu bytes, %s) holds bytes that are not the client's",
                 a->name,
                 (unsigned long long)ev->nbytes, ev->in_shared_memory ? "shm" : "inline");
    }
    if (st->step_blocks && ev->step != st->step)
        fail("blocks of steps %llu and %llu in one step", (unsigned long long)st->step,
             (unsigned long long)ev->step);
    if (!st->step_blocks && st->any_step && ev->step <= st->last_step)
        fail("block of step %llu after step %llu", (unsigned long long)ev->step,
             (unsigned long long)st->last_step);
    st->step = ev->step;
    st->step_blocks++;
    if (caudal_block_release(ev->block) != CAUDAL_OK)
        fail("caudal_block_release failed");
}

static void handle(conn_state *st, const caudal_event *ev)
{
    int t = (int)ev->type;
    if (st->events++ == 0) {
        st->connection = ev->connection;
        if (ev->connection == prev_connection)
            fail("%s of the previous connection after its end", type_name(t));
    } else if (ev->connection != st->connection) {
        fail("events of connections %llu and %llu from one client",
             (unsigned long long)st->connection, (unsigned long long)ev->connection);
    }
    if (st->ended)
        fail("%s after the connection's last event", type_name(t));
    if (st->said_hello && st->events == 1 && t != CAUDAL_EVENT_CONNECT)
        fail("%s before CONNECT from a rank that said hello", type_name(t));
    if (t == CAUDAL_EVENT_REFUSED) {
        if (st->connected)
            fail("REFUSED after CONNECT (rank %d)", st->crank);
        if (ev->rank < -1 || !ev->message || !*ev->message)
            fail("REFUSED with rank %d and no reason", ev->rank);
        st->ended = st->refused = 1;
        return;
    }
    if (t < CAUDAL_EVENT_CONNECT || t > CAUDAL_EVENT_DISCONNECT) {
        if (ev->block) /* a newer event type that holds a block */
            caudal_block_release(ev->block);
        return;
    }
    if (t == CAUDAL_EVENT_CONNECT) {
        if (st->connected)
            fail("a second CONNECT on one connection");
        if (ev->size < 1 || ev->rank < 0 || ev->rank >= ev->size)
            fail("CONNECT of rank %d of %d", ev->rank, ev->size);
        if (st->said_hello && (ev->rank != st->rank || ev->size != (int)FUZZ_SIZE))
            fail("CONNECT of rank %d of %d, hello said %d of %u", ev->rank, ev->size,
                 st->rank, FUZZ_SIZE);
        st->connected = 1;
        st->crank = ev->rank;
        st->csize = ev->size;
        return;
    }
    /* Every other event is about the rank that connected. */
    if (!st->connected)
        fail("%s (rank %d) from a connection that never completed hello", type_name(t),
             ev->rank);
    if (ev->rank != st->crank || ev->size != st->csize)
        fail("%s names rank %d of %d on the connection of rank %d of %d", type_name(t),
             ev->rank, ev->size, st->crank, st->csize);
    switch (t) {
    case CAUDAL_EVENT_DECLARE:
        if (!ev->array || !ev->array->name || !*ev->array->name || ev->array->ndim < 1 ||
            ev->array->ndim > CAUDAL_MAX_DIMS)
            fail("DECLARE without a valid array");
        break;
    case CAUDAL_EVENT_BLOCK:
        check_block(st, ev);
        break;
    case CAUDAL_EVENT_STEP_END:
        if (ev->nblocks != st->step_blocks || (st->step_blocks && ev->step != st->step) ||
            (st->any_step && ev->step <= st->last_step))
            fail("STEP_END of step %llu with %u blocks after %u blocks of step %llu",
                 (unsigned long long)ev->step, ev->nblocks, st->step_blocks,
                 (unsigned long long)st->step);
        st->any_step = 1;
        st->last_step = ev->step;
        st->step_blocks = 0;
        break;
    case CAUDAL_EVENT_DROP:
        if (st->step_blocks || ev->first_step > ev->step || ev->ndropped < 1 ||
            ev->ndropped - 1 > ev->step - ev->first_step ||
            (st->any_step && ev->first_step <= st->last_step))
            fail("DROP of steps %llu..%llu (%llu) after step %llu",
                 (unsigned long long)ev->first_step, (unsigned long long)ev->step,
                 (unsigned long long)ev->ndropped, (unsigned long long)st->last_step);
        st->any_step = 1;
        st->last_step = ev->step;
        break;
    case CAUDAL_EVENT_STEER:
        if (!ev->key || !*ev->key ||
            (ev->value_type == CAUDAL_VALUE_STRING && !ev->value_string) ||
            (ev->value_type != CAUDAL_VALUE_DOUBLE && ev->value_type != CAUDAL_VALUE_INT64 &&
             ev->value_type != CAUDAL_VALUE_STRING))
            fail("STEER without key or value");
        break;
    case CAUDAL_EVENT_BYE:
        st->ended = 1;
        break;
    case CAUDAL_EVENT_DISCONNECT:
        if (!ev->message)
            fail("DISCONNECT without a message");
        st->ended = 1;
        break;
    }
}

/* One call of the receiver; 1 if it gave an event. */
static int pump(conn_state *st, int timeout_ms)
{
    caudal_event ev;
    int rc = caudal_receiver_next(receiver, &ev, timeout_ms);
    if (rc == CAUDAL_ERR_TIMEOUT)
        return 0;
    if (rc != CAUDAL_OK)
        fail("caudal_receiver_next: %s: %s", caudal_strerror(rc),
             caudal_receiver_last_error(receiver));
    handle(st, &ev);
    return 1;
}

/* Write n bytes (the first with a descriptor, if pass_fd >= 0), running the
 * receiver while the socket is full. -1 once the receiver cut us off. */
static int send_all(conn_state *st, const uint8_t *buf, size_t n, int pass_fd)
{
    size_t off = 0;
    int rounds = 0;
    while (off < n) {
        ssize_t k;
        if (pass_fd >= 0 && off == 0) {
            struct iovec iov = {(void *)buf, n};
            union {
                char b[CMSG_SPACE(sizeof(int))];
                struct cmsghdr align;
            } ctl;
            memset(&ctl, 0, sizeof ctl);
            struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b,
                                .msg_controllen = sizeof ctl.b};
            struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
            cm->cmsg_level = SOL_SOCKET;
            cm->cmsg_type = SCM_RIGHTS;
            cm->cmsg_len = CMSG_LEN(sizeof(int));
            memcpy(CMSG_DATA(cm), &pass_fd, sizeof(int));
            k = sendmsg(st->fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
        } else {
            k = send(st->fd, buf + off, n - off, MSG_DONTWAIT | MSG_NOSIGNAL);
        }
        if (k > 0) {
            off += (size_t)k;
            continue;
        }
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            if (!pump(st, 1) && ++rounds > MAX_ROUNDS)
                fail("the receiver neither read nor closed the connection (%zu bytes "
                     "written)", st->sent + off);
            continue;
        }
        return -1; /* EPIPE, ECONNRESET */
    }
    return 0;
}

/* Read what the receiver sent us; 1 once it closed its end. */
static int drain(conn_state *st)
{
    uint8_t buf[4096];
    for (;;) {
        ssize_t k = recv(st->fd, buf, sizeof buf, MSG_DONTWAIT);
        if (k > 0)
            continue;
        if (k == 0)
            return 1;
        if (errno == EINTR)
            continue;
        return errno != EAGAIN && errno != EWOULDBLOCK;
    }
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        fail("opendir /proc/self/fd: %s", strerror(errno));
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static int make_ring(void)
{
    int fd = memfd_create("fuzz-ring", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0 ||
        pwrite(fd, ring_pattern, sizeof ring_pattern, 0) != (ssize_t)sizeof ring_pattern ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0)
        fail("memfd for the ring: %s", strerror(errno));
    return fd;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!receiver)
        setup();
    uint8_t mode = size > 0 ? data[0] : 0;
    conn_state st = {.fd = -1};
    st.stream = size > 2 ? data + 2 : data;
    st.stream_len = size > 2 ? size - 2 : 0;
    st.said_hello = mode & FUZZ_MODE_HELLO;
    st.rank = (int)(FUZZ_RANK(mode) % FUZZ_SIZE);
    int fds_before = count_fds();

    st.fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    strncpy(sa.sun_path, sock_path, sizeof sa.sun_path - 1);
    if (st.fd < 0 || connect(st.fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        fail("connect %s: %s", sock_path, strerror(errno));

    int cut = 0;
    if (st.said_hello) {
        uint8_t frame[CDL_HEADER_LEN + 16 + sizeof FUZZ_TOKEN];
        size_t n = cdl_encode_hello(frame, sizeof frame, (uint32_t)st.rank, FUZZ_SIZE,
                                    (uint32_t)getpid(), CDL_TRANSPORT_SHM, FUZZ_TOKEN);
        cut = send_all(&st, frame, n, -1) < 0;
        if (!cut && (mode & FUZZ_MODE_RING)) {
            int mfd = make_ring();
            n = cdl_encode_ring(frame, sizeof frame, FUZZ_RING_DEPTH, FUZZ_RING_SLOT);
            cut = send_all(&st, frame, n, mfd) < 0;
            close(mfd);
        }
    }
    /* In pieces, the receiver running in between: frames cut anywhere. */
    size_t piece = size > 1 && data[1] ? data[1] : st.stream_len;
    if (piece <= st.stream_len / 64)
        piece = st.stream_len / 64 + 1;
    while (!cut && st.sent < st.stream_len) {
        size_t n = st.stream_len - st.sent < piece ? st.stream_len - st.sent : piece;
        if (send_all(&st, st.stream + st.sent, n, -1) < 0)
            break;
        st.sent += n;
        while (pump(&st, 0))
            ;
    }
    shutdown(st.fd, SHUT_WR);

    /* Until the receiver closed its end and has no event left for us. */
    int closed = 0;
    for (int rounds = 0;;) {
        if (!closed)
            closed = drain(&st);
        int got = pump(&st, closed ? 0 : 1);
        if (closed && !got)
            break;
        if (!got && ++rounds > MAX_ROUNDS)
            fail("the connection did not end (%d events, %s)", st.events,
                 st.ended ? "its last event given" : "no last event");
    }
    if (st.connected && !st.ended)
        fail("rank %d's connection ended without BYE or DISCONNECT", st.crank);
    if (!st.connected && st.sent > 0 && !st.refused)
        fail("a connection that sent %zu bytes and no valid hello was not refused", st.sent);
    int live = caudal_receiver_connections(receiver);
    if (live != 0)
        fail("%d ranks connected after the only connection ended", live);
    close(st.fd);
    int fds_after = count_fds();
    if (fds_after != fds_before)
        fail("%d descriptors open after the connection, %d before", fds_after, fds_before);
    if (st.events)
        prev_connection = st.connection;
    return 0;
}
