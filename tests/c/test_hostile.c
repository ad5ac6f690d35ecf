/* A hostile or careless local peer against the receiver, with real sockets:
 * connections that never authenticate (junk, a wrong token, a frame before
 * HELLO, a hello that never ends, silence, a flood of idle ones) are refused
 * without a word about any rank and cost little; a second connection for a
 * rank already connected is refused; accept out of descriptors neither spins
 * nor delays next(); what sits at a unix path is never deleted unless it is a
 * stale socket, and the socket is private whatever the umask; an inline
 * block waits for releases before its buffer exists; the steering store is
 * capped per rank; variable-length declarations are checked. Timings are
 * only generous bounds on behaviour. */
#include "harness.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>

#include "protocol.h"
#include "raw_peer.h"
#include "steer.h"

#if defined(__SANITIZE_ADDRESS__)
#define HOSTILE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HOSTILE_ASAN 1
#endif
#endif
#ifdef HOSTILE_ASAN
/* From ASan's runtime (sanitizer/allocator_interface.h, not always installed). */
size_t __sanitizer_get_current_allocated_bytes(void);
#endif

#define TOKEN "tok-hostile-0123456789"

/* Bytes of heap in use: exact under ASan, malloc's count otherwise. */
static size_t heap_in_use(void)
{
#ifdef HOSTILE_ASAN
    return __sanitizer_get_current_allocated_bytes();
#else
    return mallinfo2().uordblks;
#endif
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static caudal_receiver *open_with(const char *endpoint, unsigned hello_ms, size_t max_held)
{
    caudal_receiver_options ro;
    caudal_receiver_options_init(&ro);
    ro.endpoint = endpoint;
    ro.token = TOKEN;
    ro.hello_timeout_ms = hello_ms;
    ro.max_held_bytes = max_held;
    return open_receiver_with(&ro);
}

/* ---- raw peers ------------------------------------------------------------- */

static size_t hello_frame(uint8_t *p, uint32_t rank, const char *token)
{
    return cdl_encode_hello(p, 2048, rank, 2, 1, CDL_TRANSPORT_TCP, token);
}

/* ---- a well-behaved rank in a child, one step per command ------------------ */

typedef struct good_arg {
    char endpoint[128];
    int rank;
    int go[2];
} good_arg;

static int good_rank(void *arg)
{
    good_arg *g = arg;
    close(g->go[1]); /* a parent that fails ends this rank too */
    caudal_client *c = open_client(g->endpoint, TOKEN, g->rank, 2, NULL);
    uint64_t shape = 2, start = (uint64_t)g->rank, count = 1;
    CHECK_RC(caudal_declare(c, "x", CAUDAL_INT64, 1, &shape, &start, &count, CAUDAL_ORDER_C),
             CAUDAL_OK);
    for (uint64_t s = 0;; s++) {
        int64_t v = (int64_t)s * 10 + g->rank;
        CHECK_RC(caudal_begin_step(c, s), CAUDAL_OK);
        CHECK_RC(caudal_put(c, "x", CAUDAL_INT64, &v), CAUDAL_OK);
        CHECK_RC(caudal_end_step(c), CAUDAL_OK);
        char cmd;
        CHECK(read(g->go[0], &cmd, 1) == 1);
        if (cmd == 'q')
            break;
    }
    CHECK_RC(caudal_close(&c), CAUDAL_OK);
    return 0;
}

static pid_t good_start(good_arg *g, const char *endpoint, int rank)
{
    snprintf(g->endpoint, sizeof g->endpoint, "%s", endpoint);
    g->rank = rank;
    CHECK(pipe(g->go) == 0);
    pid_t pid = spawn(good_rank, g);
    close(g->go[0]);
    return pid;
}

/* The good rank's events are checked here. */
typedef struct good_state {
    uint64_t id;
    uint64_t steps;
    int connected, bye;
} good_state;

/* One event: 0 if it was the good rank's (checked), 1 if another's (in *ev),
 * or the status of next (a timeout). */
static int pump(caudal_receiver *r, good_state *gs, caudal_event *ev, int timeout_ms)
{
    int rc = caudal_receiver_next(r, ev, timeout_ms);
    if (rc != CAUDAL_OK)
        return rc;
    if (ev->type == CAUDAL_EVENT_BLOCK)
        CHECK_RC(caudal_block_release(ev->block), CAUDAL_OK);
    if (ev->type == CAUDAL_EVENT_CONNECT && !gs->connected) {
        gs->connected = 1;
        gs->id = ev->connection;
        return 0;
    }
    if (!gs->connected || ev->connection != gs->id)
        return 1;
    switch (ev->type) {
    case CAUDAL_EVENT_BLOCK:
        CHECK(ev->step == gs->steps && ev->nbytes == 8);
        CHECK(*(const int64_t *)ev->data == (int64_t)ev->step * 10);
        break;
    case CAUDAL_EVENT_STEP_END:
        CHECK(ev->step == gs->steps);
        gs->steps++;
        break;
    case CAUDAL_EVENT_BYE:
        gs->bye = 1;
        break;
    case CAUDAL_EVENT_DECLARE:
        break;
    default:
        fprintf(stderr, "the good rank got event %d: %s\n", (int)ev->type,
                ev->message ? ev->message : "");
        exit(1);
    }
    return 0;
}

/* The next event not of the good rank (within 20 s). */
static void next_other(caudal_receiver *r, good_state *gs, caudal_event *ev)
{
    int k;
    while ((k = pump(r, gs, ev, 20000)) == 0)
        ;
    CHECK(k == 1);
}

/* Only the good rank's events until it has published `steps` steps. */
static void good_until(caudal_receiver *r, good_state *gs, uint64_t steps)
{
    caudal_event ev;
    while (gs->steps < steps) {
        int k = pump(r, gs, &ev, 20000);
        if (k != 0) {
            fprintf(stderr, "unexpected: %d, event %d: %s\n", k, (int)ev.type,
                    k == 1 && ev.message ? ev.message : "");
            exit(1);
        }
    }
}

/* The next event not of the good rank must be one REFUSED with this status
 * and message part, and nothing about a rank. */
static void expect_refused(caudal_receiver *r, good_state *gs, int status, const char *part,
                           int rank)
{
    caudal_event ev;
    next_other(r, gs, &ev);
    if (ev.type != CAUDAL_EVENT_REFUSED || ev.status != status || !ev.message ||
        !strstr(ev.message, part) || ev.rank != rank) {
        fprintf(stderr, "wanted REFUSED %d '%s' rank %d, got event %d status %d '%s' rank %d\n",
                status, part, rank, (int)ev.type, ev.status, ev.message ? ev.message : "",
                ev.rank);
        exit(1);
    }
}

/* The good rank publishes one more step, which arrives, and is the only
 * rank connected. */
static void good_step(caudal_receiver *r, good_state *gs, good_arg *g)
{
    CHECK(write(g->go[1], "g", 1) == 1);
    good_until(r, gs, gs->steps + 1);
    CHECK(caudal_receiver_connections(r) == 1);
}

/* The good rank says goodbye; nothing else may happen meanwhile. */
static void good_bye(caudal_receiver *r, good_state *gs, good_arg *g, pid_t pid)
{
    CHECK(write(g->go[1], "q", 1) == 1);
    caudal_event ev;
    while (!gs->bye)
        CHECK(pump(r, gs, &ev, 20000) == 0);
    CHECK(wait_exit(pid) == 0);
    close(g->go[1]);
}

/* ---- 1. connections that never authenticate ---------------------------------- */

static void check_unauthenticated(int tcp)
{
    char ep[128];
    if (tcp)
        snprintf(ep, sizeof ep, "tcp:127.0.0.1:0");
    else
        unix_endpoint(ep, sizeof ep, "unauth");
    caudal_receiver *r = open_with(ep, 400, 0);
    good_arg g;
    pid_t pid = good_start(&g, caudal_receiver_endpoint(r), 0);
    good_state gs = {0, 0, 0, 0};
    good_until(r, &gs, 1);
    const char *at = caudal_receiver_endpoint(r);
    uint8_t frame[4096];
    int fd;

    /* Sixteen bytes of junk. */
    fd = raw_connect(at);
    memset(frame, 0x5A, 16);
    raw_send(fd, frame, 16);
    expect_refused(r, &gs, CAUDAL_ERR_PROTOCOL, "bad frame header before hello", -1);
    CHECK(raw_error_status(fd) == CAUDAL_ERR_PROTOCOL);
    close(fd);
    good_step(r, &gs, &g);

    /* Wrong tokens: same length, a prefix, longer, empty. The claimed rank is
     * named, and it is the good rank's own: still nothing happens to it. */
    const char *wrong[] = {"tok-hostile-0123456788", "tok-hostile", TOKEN "9", ""};
    for (int k = 0; k < 4; k++) {
        fd = raw_connect(at);
        raw_send(fd, frame, hello_frame(frame, 0, wrong[k]));
        expect_refused(r, &gs, CAUDAL_ERR_AUTH, "wrong job token", 0);
        CHECK(raw_error_status(fd) == CAUDAL_ERR_AUTH);
        close(fd);
    }
    good_step(r, &gs, &g);

    /* A frame other than HELLO first. */
    fd = raw_connect(at);
    uint64_t one = 1, zero = 0;
    raw_send(fd, frame, cdl_encode_declare(frame, sizeof frame, 0, "x", CAUDAL_INT64, 1, 0, 0,
                                           &one, &zero, &one));
    expect_refused(r, &gs, CAUDAL_ERR_PROTOCOL, "frame of type 3 before hello", -1);
    close(fd);

    /* A HELLO header announcing a megabyte: refused by the header alone,
     * without waiting for (or buffering) the body, which never comes. */
    fd = raw_connect(at);
    size_t n = hello_frame(frame, 1, TOKEN);
    uint64_t big = 1u << 20;
    for (int i = 0; i < 8; i++)
        frame[8 + i] = (uint8_t)(big >> (8 * i));
    raw_send(fd, frame, CDL_HEADER_LEN);
    expect_refused(r, &gs, CAUDAL_ERR_PROTOCOL, "a hello of 1048576 bytes", -1);
    CHECK(raw_error_status(fd) == CAUDAL_ERR_PROTOCOL);
    close(fd);
    (void)n;

    /* Half a hello, then the end of the stream. */
    fd = raw_connect(at);
    n = hello_frame(frame, 1, TOKEN);
    raw_send(fd, frame, n / 2);
    shutdown(fd, SHUT_WR);
    expect_refused(r, &gs, CAUDAL_ERR_IO, "closed before hello", -1);
    close(fd);
    good_step(r, &gs, &g);

    /* A probe: connects and closes without a byte. No event at all: the
     * next one is the silent connection's, after its deadline. */
    fd = raw_connect(at);
    close(fd);
    fd = raw_connect(at);
    uint64_t t0 = now_ms();
    expect_refused(r, &gs, CAUDAL_ERR_TIMEOUT, "no hello within 400 ms", -1);
    uint64_t waited = now_ms() - t0;
    CHECK(waited >= 350 && waited < 20000); /* the deadline, as behaviour */
    CHECK(raw_error_status(fd) == CAUDAL_ERR_TIMEOUT);
    close(fd);
    good_step(r, &gs, &g);

    /* The good rank was never disturbed; it says goodbye. */
    good_bye(r, &gs, &g, pid);
    CHECK_RC(caudal_receiver_close(&r), CAUDAL_OK);
    printf("hostile: junk, wrong tokens, early frames, a huge hello, half a hello and silence "
           "refused over %s, the rank served\n", tcp ? "tcp" : "unix");
}

/* ---- 2. the same rank twice ------------------------------------------------- */

static int duplicate_rank(void *arg)
{
    caudal_options o;
    caudal_options_init(&o);
    o.rank = 0;
    o.size = 2;
    o.endpoint = arg;
    o.token = TOKEN;
    caudal_client *c;
    char err[512];
    int rc = caudal_open(&c, &o, err, sizeof err);
    if (rc != CAUDAL_ERR_DUPLICATE || !strstr(err, "rank 0 is already connected")) {
        fprintf(stderr, "second rank 0: %d '%s'\n", rc, err);
        return 1;
    }
    return 0;
}

static int reconnect_rank(void *arg)
{
    caudal_client *c = open_client(arg, TOKEN, 0, 2, NULL);
    CHECK_RC(caudal_close(&c), CAUDAL_OK);
    return 0;
}

/* Call next until the child exits; the events come back through `seen`. */
static void pump_until_exit(caudal_receiver *r, good_state *gs, pid_t pid, int *refused,
                            int *connects)
{
    for (;;) {
        int st;
        pid_t w = waitpid(pid, &st, WNOHANG);
        CHECK(w >= 0);
        if (w == pid) {
            CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
            return;
        }
        caudal_event ev;
        int k = pump(r, gs, &ev, 50);
        if (k == CAUDAL_ERR_TIMEOUT || k == 0)
            continue;
        CHECK(k == 1);
        if (ev.type == CAUDAL_EVENT_REFUSED) {
            CHECK(ev.rank == 0 && ev.status == CAUDAL_ERR_DUPLICATE);
            CHECK(strstr(ev.message, "rank 0 is already connected"));
            ++*refused;
        } else if (ev.type == CAUDAL_EVENT_CONNECT) {
            ++*connects;
        } else if (ev.type == CAUDAL_EVENT_BLOCK) {
            CHECK_RC(caudal_block_release(ev.block), CAUDAL_OK);
        } else if (ev.type != CAUDAL_EVENT_BYE) {
            fprintf(stderr, "unexpected event %d\n", (int)ev.type);
            exit(1);
        }
    }
}

static void check_duplicate_rank(void)
{
    char ep[128];
    unix_endpoint(ep, sizeof ep, "dup");
    caudal_receiver *r = open_with(ep, 0, 0);
    good_arg g;
    pid_t pid = good_start(&g, ep, 0);
    good_state gs = {0, 0, 0, 0};
    good_until(r, &gs, 1);
    int refused = 0, connects = 0;
    pump_until_exit(r, &gs, spawn(duplicate_rank, ep), &refused, &connects);
    CHECK(refused == 1 && connects == 0);
    good_step(r, &gs, &g); /* the first connection goes on */
    good_bye(r, &gs, &g, pid);
    /* Once it said goodbye the rank may connect again. */
    pump_until_exit(r, &gs, spawn(reconnect_rank, ep), &refused, &connects);
    CHECK(refused == 1 && connects == 1);
    CHECK_RC(caudal_receiver_close(&r), CAUDAL_OK);
    printf("hostile: a second connection for rank 0 refused, the first served\n");
}

/* ---- 3. a flood of idle connections ------------------------------------------- */

static void check_idle_flood(void)
{
    enum { NIDLE = 100, CAP = 64 };
    char ep[128];
    unix_endpoint(ep, sizeof ep, "flood");
    caudal_receiver *r = open_with(ep, 3000, 0);
    caudal_event ev;
    CHECK_RC(caudal_receiver_next(r, &ev, 0), CAUDAL_ERR_TIMEOUT);
    size_t heap0 = heap_in_use();
    int fds[NIDLE];
    uint8_t frame[2048];
    size_t n = hello_frame(frame, 1, TOKEN);
    for (int k = 0; k < NIDLE; k++) {
        fds[k] = raw_connect(ep);
        raw_send(fds[k], frame, n / 2); /* a hello that never ends */
    }
    /* Past the cap the oldest waiting connections make room. */
    int evicted = 0, timed_out = 0;
    while (evicted < NIDLE - CAP) {
        CHECK_RC(caudal_receiver_next(r, &ev, 20000), CAUDAL_OK);
        CHECK(ev.type == CAUDAL_EVENT_REFUSED && ev.rank == -1);
        CHECK(strstr(ev.message, "to make room"));
        evicted++;
    }
    /* Let the receiver read what the survivors sent, then count the heap:
     * one small buffer each, not the 256 KiB of a rank's connection. */
    while (caudal_receiver_next(r, &ev, 100) == CAUDAL_OK)
        CHECK(!"no event before the deadline");
    size_t grown = heap_in_use() - heap0;
    if (grown > (size_t)CAP * 4096) {
        fprintf(stderr, "%d idle connections hold %zu bytes of heap\n", NIDLE, grown);
        exit(1);
    }
    /* The first ones saw the receiver hang up on them. */
    for (int k = 0; k < NIDLE - CAP; k++)
        CHECK(raw_error_status(fds[k]) == CAUDAL_ERR_IO);
    /* A rank still gets in, while the others wait for their deadline. */
    good_arg g;
    pid_t pid = good_start(&g, ep, 0);
    good_state gs = {0, 0, 0, 0};
    while (gs.steps < 1) {
        if (pump(r, &gs, &ev, 20000) == 0)
            continue;
        CHECK(ev.type == CAUDAL_EVENT_REFUSED);
        if (strstr(ev.message, "to make room"))
            evicted++;
        else if (strstr(ev.message, "no hello within 3000 ms"))
            timed_out++;
        else
            CHECK(!"an unexpected refusal");
    }
    CHECK(write(g.go[1], "q", 1) == 1);
    while (!gs.bye || evicted + timed_out < NIDLE) {
        int k = pump(r, &gs, &ev, 20000);
        CHECK(k >= 0);
        if (k == 0)
            continue;
        CHECK(ev.type == CAUDAL_EVENT_REFUSED);
        if (strstr(ev.message, "to make room"))
            evicted++;
        else if (strstr(ev.message, "no hello within 3000 ms"))
            timed_out++;
        else
            CHECK(!"an unexpected refusal");
    }
    CHECK(evicted + timed_out == NIDLE && evicted >= NIDLE - CAP);
    CHECK(wait_exit(pid) == 0);
    close(g.go[1]);
    for (int k = 0; k < NIDLE; k++)
        close(fds[k]);
    CHECK_RC(caudal_receiver_close(&r), CAUDAL_OK);
    printf("hostile: %d idle connections cost %zu heap bytes (at most %d waiting), %d evicted, "
           "%d timed out, the rank served\n", NIDLE, grown, CAP, evicted, timed_out);
}

/* A node's ranks all connecting at once, more of them than may wait to say
 * hello: their hellos are in, so none is turned away to make room. */
static void check_rank_crowd(void)
{
    enum { NRANKS = 160 };
    char ep[128];
    unix_endpoint(ep, sizeof ep, "crowd");
    caudal_receiver *r = open_with(ep, 0, 0);
    int fds[NRANKS];
    uint8_t frame[2048];
    for (int k = 0; k < NRANKS; k++) {
        fds[k] = raw_connect(ep);
        size_t n = cdl_encode_hello(frame, sizeof frame, (uint32_t)k, NRANKS, 1,
                                    CDL_TRANSPORT_SHM, TOKEN);
        raw_send(fds[k], frame, n);
    }
    int connects = 0;
    uint8_t seen[NRANKS] = {0};
    while (connects < NRANKS) {
        caudal_event ev;
        CHECK_RC(caudal_receiver_next(r, &ev, 20000), CAUDAL_OK);
        if (ev.type == CAUDAL_EVENT_REFUSED)
            fprintf(stderr, "refused: %s\n", ev.message);
        CHECK(ev.type == CAUDAL_EVENT_CONNECT);
        CHECK(ev.rank >= 0 && ev.rank < NRANKS && !seen[ev.rank]++);
        connects++;
    }
    CHECK(caudal_receiver_connections(r) == NRANKS);
    for (int k = 0; k < NRANKS; k++)
        close(fds[k]);
    CHECK_RC(caudal_receiver_close(&r), CAUDAL_OK);
    printf("hostile: %d ranks saying hello at once all served\n", NRANKS);
}

/* ---- 4. accept out of descriptors ------------------------------------------- */

typedef struct emfile_arg {
    char endpoint[128];
    int ready[2], go[2];
} emfile_arg;

static int emfile_receiver(void *arg)
{
    emfile_arg *a = arg;
    close(a->ready[0]);
    close(a->go[1]);
    caudal_receiver *r = open_with(a->endpoint, 0, 0);
    /* Use up every descriptor under a low limit. */
    struct rlimit old, low;
    CHECK(getrlimit(RLIMIT_NOFILE, &old) == 0);
    int probe = dup(0);
    CHECK(probe >= 0);
    close(probe);
    low.rlim_cur = (rlim_t)probe + 16;
    low.rlim_max = old.rlim_max;
    CHECK(setrlimit(RLIMIT_NOFILE, &low) == 0);
    static int held[64];
    int nheld = 0, fd;
    while ((fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0) {
        CHECK(nheld < 64);
        held[nheld++] = fd;
    }
    CHECK(errno == EMFILE);
    CHECK(write(a->ready[1], "r", 1) == 1);
    char cmd;
    CHECK(read(a->go[0], &cmd, 1) == 1); /* three connections are queued */

    struct rusage u0, u1;
    CHECK(getrusage(RUSAGE_SELF, &u0) == 0);
    uint64_t t0 = now_ms();
    int notices = 0, timeouts = 0;
    while (now_ms() - t0 < 1500) {
        uint64_t c0 = now_ms();
        caudal_event ev;
        int rc = caudal_receiver_next(r, &ev, 200);
        CHECK(now_ms() - c0 < 5000); /* next() still returns on time */
        if (rc == CAUDAL_OK) {
            CHECK(ev.type == CAUDAL_EVENT_REFUSED && ev.rank == -1);
            CHECK(strstr(ev.message, strerror(EMFILE)));
            notices++;
        } else {
            CHECK_RC(rc, CAUDAL_ERR_TIMEOUT);
            timeouts++;
        }
    }
    CHECK(getrusage(RUSAGE_SELF, &u1) == 0);
    double cpu = (double)(u1.ru_utime.tv_sec - u0.ru_utime.tv_sec) +
                 (double)(u1.ru_stime.tv_sec - u0.ru_stime.tv_sec) +
                 (double)(u1.ru_utime.tv_usec - u0.ru_utime.tv_usec) / 1e6 +
                 (double)(u1.ru_stime.tv_usec - u0.ru_stime.tv_usec) / 1e6;
    double wall = (double)(now_ms() - t0) / 1e3;
    /* Descriptors back (also for the sanitizers' checks at exit). */
    for (int k = 0; k < nheld; k++)
        close(held[k]);
    CHECK(setrlimit(RLIMIT_NOFILE, &old) == 0);
    /* Spinning would burn about `wall` seconds of CPU; waiting, almost none. */
    if (cpu > 0.3 * wall || notices < 1 || notices > 3 || timeouts < 3) {
        fprintf(stderr, "out of descriptors: %.3f s CPU in %.3f s, %d notices, %d timeouts\n",
                cpu, wall, notices, timeouts);
        return 1;
    }
    printf("hostile: accept out of descriptors: %.3f s CPU in %.3f s of next(), %d notice(s)\n",
           cpu, wall, notices);

    /* The queued connections are taken and refused (junk), and a rank
     * connects. */
    CHECK(write(a->ready[1], "f", 1) == 1);
    int junk = 0, bye = 0, connect = 0;
    while (!bye || junk < 3) {
        caudal_event ev;
        CHECK_RC(caudal_receiver_next(r, &ev, 20000), CAUDAL_OK);
        if (ev.type == CAUDAL_EVENT_BLOCK)
            CHECK_RC(caudal_block_release(ev.block), CAUDAL_OK);
        if (ev.type == CAUDAL_EVENT_REFUSED)
            junk += strstr(ev.message, "bad frame header") != NULL;
        connect += ev.type == CAUDAL_EVENT_CONNECT;
        bye += ev.type == CAUDAL_EVENT_BYE;
        CHECK(ev.type != CAUDAL_EVENT_DISCONNECT);
    }
    CHECK(junk == 3 && connect == 1);
    CHECK_RC(caudal_receiver_close(&r), CAUDAL_OK);
    return 0;
}

static int one_step_rank(void *arg)
{
    caudal_client *c = open_client(arg, TOKEN, 0, 1, NULL);
    uint64_t shape = 1, start = 0, count = 1;
    int64_t v = 7;
    CHECK_RC(caudal_declare(c, "x", CAUDAL_INT64, 1, &shape, &start, &count, CAUDAL_ORDER_C),
             CAUDAL_OK);
    CHECK_RC(caudal_begin_step(c, 0), CAUDAL_OK);
    CHECK_RC(caudal_put(c, "x", CAUDAL_INT64, &v), CAUDAL_OK);
    CHECK_RC(caudal_end_step(c), CAUDAL_OK);
    CHECK_RC(caudal_close(&c), CAUDAL_OK);
    return 0;
}

static void check_emfile(void)
{
    emfile_arg a;
    unix_endpoint(a.endpoint, sizeof a.endpoint, "emfile");
    CHECK(pipe(a.ready) == 0 && pipe(a.go) == 0);
    pid_t pid = spawn(emfile_receiver, &a);
    close(a.ready[1]);
    close(a.go[0]);
    char cmd;
    CHECK(read(a.ready[0], &cmd, 1) == 1 && cmd == 'r');
    int fds[3];
    for (int k = 0; k < 3; k++) {
        fds[k] = raw_connect(a.endpoint); /* queued: the receiver cannot accept */
        raw_send(fds[k], "junk-junk-junk-junk", 19);
    }
    CHECK(write(a.go[1], "g", 1) == 1);
    CHECK(read(a.ready[0], &cmd, 1) == 1 && cmd == 'f');
    pid_t rank = spawn(one_step_rank, a.endpoint);
    CHECK(wait_exit(rank) == 0);
    CHECK(wait_exit(pid) == 0);
    for (int k = 0; k < 3; k++)
        close(fds[k]);
    close(a.ready[0]);
    close(a.go[1]);
}

/* ---- 5. the unix path -------------------------------------------------------- */

static void open_fails_at(const char *ep, const char *part)
{
    caudal_receiver_options ro;
    caudal_receiver_options_init(&ro);
    ro.endpoint = ep;
    ro.token = TOKEN;
    caudal_receiver *r;
    char err[512];
    CHECK_RC(caudal_receiver_open(&r, &ro, err, sizeof err), CAUDAL_ERR_SYSTEM);
    if (!strstr(err, ep + 5) || !strstr(err, part)) {
        fprintf(stderr, "open on %s: '%s' lacks the path or '%s'\n", ep, err, part);
        exit(1);
    }
}

static void check_unix_path(void)
{
    char ep[128];
    unix_endpoint(ep, sizeof ep, "path");
    const char *path = ep + 5;
    struct stat st;

    /* A user's file is never deleted. */
    FILE *f = fopen(path, "w");
    CHECK(f && fputs("precious", f) >= 0 && fclose(f) == 0);
    open_fails_at(ep, "not a socket");
    char buf[16] = {0};
    f = fopen(path, "r");
    CHECK(f && fread(buf, 1, sizeof buf - 1, f) == 8 && fclose(f) == 0);
    CHECK(strcmp(buf, "precious") == 0);
    CHECK(unlink(path) == 0);

    /* Nor a directory, nor a link (even to a stale socket). */
    CHECK(mkdir(path, 0700) == 0);
    open_fails_at(ep, "not a socket");
    CHECK(rmdir(path) == 0);
    char target[100];
    CHECK(strlen(path) + 8 < sizeof target);
    snprintf(target, sizeof target, "%.90s.target", path);
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", target);
    CHECK(s >= 0 && bind(s, (struct sockaddr *)&sa, sizeof sa) == 0);
    close(s); /* a stale socket at `target` */
    CHECK(symlink(target, path) == 0);
    open_fails_at(ep, "not a socket");
    CHECK(lstat(path, &st) == 0 && S_ISLNK(st.st_mode));
    CHECK(lstat(target, &st) == 0 && S_ISSOCK(st.st_mode));
    CHECK(unlink(path) == 0 && unlink(target) == 0);

    /* A stale socket (nobody listens) is reused, and the new socket is
     * private whatever the umask. */
    s = socket(AF_UNIX, SOCK_STREAM, 0);
    snprintf(sa.sun_path, sizeof sa.sun_path, "%.100s", path);
    CHECK(s >= 0 && bind(s, (struct sockaddr *)&sa, sizeof sa) == 0);
    close(s);
    mode_t old = umask(0);
    caudal_receiver *r = open_with(ep, 0, 0);
    umask(old);
    CHECK(stat(path, &st) == 0 && S_ISSOCK(st.st_mode));
    if ((st.st_mode & 0777) != 0600) {
        fprintf(stderr, "socket mode %o under umask 000\n", (unsigned)(st.st_mode & 0777));
        exit(1);
    }
    /* A live one is not taken over, and stays. */
    open_fails_at(ep, "another receiver is listening");
    CHECK(stat(path, &st) == 0 && S_ISSOCK(st.st_mode));
    CHECK_RC(caudal_receiver_close(&r), CAUDAL_OK);
    CHECK(lstat(path, &st) != 0);

    /* Close removes its own socket only, not what replaced it. */
    r = open_with(ep, 0, 0);
    CHECK(unlink(path) == 0);
    f = fopen(path, "w");
    CHECK(f && fclose(f) == 0);
    CHECK_RC(caudal_receiver_close(&r), CAUDAL_OK);
    CHECK(lstat(path, &st) == 0 && S_ISREG(st.st_mode));
    CHECK(unlink(path) == 0);
    printf("hostile: a file, a directory and a link at the path left alone, a stale socket "
           "reused, the socket 0600 under umask 000\n");
}

/* ---- 6. the held limit before allocation -------------------------------------- */

#define PART (768u << 10)

static int two_big_blocks(void *arg)
{
    caudal_client *c = open_client(arg, TOKEN, 0, 1, NULL);
    uint8_t *data = malloc(2u << 20);
    CHECK(data);
    CHECK_RC(caudal_declare_var(c, "a", CAUDAL_UINT8, PART), CAUDAL_OK);
    CHECK_RC(caudal_declare_var(c, "b", CAUDAL_UINT8, PART), CAUDAL_OK);
    CHECK_RC(caudal_begin_step(c, 0), CAUDAL_OK);
    fill_pattern(data, PART, 0, 0, 0);
    CHECK_RC(caudal_put_var(c, "a", CAUDAL_UINT8, data, PART), CAUDAL_OK);
    fill_pattern(data, PART, 0, 1, 0);
    CHECK_RC(caudal_put_var(c, "b", CAUDAL_UINT8, data, PART), CAUDAL_OK);
    CHECK_RC(caudal_end_step(c), CAUDAL_OK);
    CHECK_RC(caudal_begin_step(c, 1), CAUDAL_OK);
    fill_pattern(data, 2u << 20, 0, 0, 1);
    CHECK_RC(caudal_put_var(c, "a", CAUDAL_UINT8, data, 2u << 20), CAUDAL_OK);
    CHECK_RC(caudal_end_step(c), CAUDAL_OK);
    free(data);
    CHECK_RC(caudal_close(&c), CAUDAL_OK);
    return 0;
}

static void next_type(caudal_receiver *r, caudal_event *ev, caudal_event_type type)
{
    CHECK_RC(caudal_receiver_next(r, ev, 20000), CAUDAL_OK);
    if (ev->type != type) {
        fprintf(stderr, "event %d, wanted %d: %s\n", (int)ev->type, (int)type,
                ev->message ? ev->message : "");
        exit(1);
    }
}

static void check_held_before_alloc(void)
{
    caudal_receiver *r = open_with("tcp:127.0.0.1:0", 0, 1u << 20);
    char ep[128];
    snprintf(ep, sizeof ep, "%s", caudal_receiver_endpoint(r));
    pid_t pid = spawn(two_big_blocks, ep);
    caudal_event ev, a;
    next_type(r, &ev, CAUDAL_EVENT_CONNECT);
    next_type(r, &ev, CAUDAL_EVENT_DECLARE);
    next_type(r, &ev, CAUDAL_EVENT_DECLARE);
    next_type(r, &a, CAUDAL_EVENT_BLOCK);
    CHECK(a.nbytes == PART && !a.in_shared_memory && matches_pattern(a.data, PART, 0, 0, 0));
    /* 768 KiB held of 1 MiB: the next 768 KiB waits, unallocated. */
    size_t heap0 = heap_in_use();
    CHECK_RC(caudal_receiver_next(r, &ev, 500), CAUDAL_ERR_TIMEOUT);
    size_t grown = heap_in_use() - heap0;
    if (grown > (256u << 10)) {
        fprintf(stderr, "a waiting block grew the heap by %zu bytes\n", grown);
        exit(1);
    }
    CHECK_RC(caudal_block_release(a.block), CAUDAL_OK);
    next_type(r, &ev, CAUDAL_EVENT_BLOCK);
    CHECK(ev.nbytes == PART && matches_pattern(ev.data, PART, 0, 1, 0));
    CHECK_RC(caudal_block_release(ev.block), CAUDAL_OK);
    next_type(r, &ev, CAUDAL_EVENT_STEP_END);
    /* 2 MiB, over the limit alone: it comes, as nothing else is held. */
    next_type(r, &ev, CAUDAL_EVENT_BLOCK);
    CHECK(ev.step == 1 && ev.nbytes == (2u << 20) && matches_pattern(ev.data, 2u << 20, 0, 0, 1));
    CHECK_RC(caudal_block_release(ev.block), CAUDAL_OK);
    next_type(r, &ev, CAUDAL_EVENT_STEP_END);
    next_type(r, &ev, CAUDAL_EVENT_BYE);
    CHECK(wait_exit(pid) == 0);
    CHECK_RC(caudal_receiver_close(&r), CAUDAL_OK);
    printf("hostile: an inline block past max_held waited unallocated (heap +%zu), one larger "
           "than the limit came alone\n", grown);
}

/* ---- 7. the steering store ---------------------------------------------------- */

static void check_store(void)
{
    cdl_store st;
    memset(&st, 0, sizeof st);
    char key[32];
    for (int rank = -1; rank < 3; rank++)
        for (int k = 0; k < CDL_STORE_MAX_KEYS; k++) {
            snprintf(key, sizeof key, "key-%d", k);
            CHECK_RC(cdl_store_set(&st, rank, key, strlen(key), CAUDAL_VALUE_INT64, 0,
                                   rank * 100000 + k, NULL, 0), CAUDAL_OK);
        }
    CHECK(st.n == 4u * CDL_STORE_MAX_KEYS && st.max_rank_keys == CDL_STORE_MAX_KEYS);
    for (int rank = -1; rank < 3; rank++) {
        CHECK(cdl_store_count(&st, rank) == CDL_STORE_MAX_KEYS);
        for (int k = 0; k < CDL_STORE_MAX_KEYS; k++) {
            snprintf(key, sizeof key, "key-%d", k);
            const cdl_value *v = cdl_store_get(&st, rank, key);
            CHECK(v && v->rank == rank && v->i == rank * 100000 + k);
        }
    }
    CHECK(cdl_store_get(&st, 3, "key-0") == NULL && cdl_store_count(&st, 3) == 0);
    /* Full: a new key fails and changes nothing; an old one is replaced. */
    CHECK_RC(cdl_store_set(&st, 0, "new", 3, CAUDAL_VALUE_DOUBLE, 1, 0, NULL, 0),
             CAUDAL_ERR_INVALID);
    CHECK(cdl_store_get(&st, 0, "new") == NULL && st.n == 4u * CDL_STORE_MAX_KEYS);
    CHECK_RC(cdl_store_set(&st, 0, "key-5", 5, CAUDAL_VALUE_STRING, 0, 0, "five", 4), CAUDAL_OK);
    const cdl_value *v = cdl_store_get(&st, 0, "key-5");
    CHECK(v->type == CAUDAL_VALUE_STRING && strcmp(v->s, "five") == 0);
    CHECK_RC(cdl_store_set(&st, 3, "new", 3, CAUDAL_VALUE_DOUBLE, 1, 0, NULL, 0), CAUDAL_OK);
    cdl_store_free(&st);
}

static int read_all_keys(void *arg)
{
    caudal_client *c = open_client(arg, TOKEN, 0, 2, NULL);
    char key[32];
    int64_t v = -1;
    /* Frames arrive in order: once the last key is there, all are. */
    snprintf(key, sizeof key, "k%d", CDL_STORE_MAX_KEYS - 1);
    for (int tries = 0; caudal_steer_get_int64(c, key, &v) == CAUDAL_NO_VALUE; tries++) {
        CHECK(tries < 200000);
        usleep(100);
    }
    for (int k = 0; k < CDL_STORE_MAX_KEYS; k++) {
        snprintf(key, sizeof key, "k%d", k);
        CHECK_RC(caudal_steer_get_int64(c, key, &v), CAUDAL_OK);
        CHECK(v == (k == 7 ? -7 : k));
    }
    CHECK_RC(caudal_close(&c), CAUDAL_OK);
    return 0;
}

static void check_steering_cap(void)
{
    check_store();
    char ep[128];
    unix_endpoint(ep, sizeof ep, "steer");
    caudal_receiver *r = open_with(ep, 0, 0);
    char key[32];
    for (int k = 0; k < CDL_STORE_MAX_KEYS; k++) {
        snprintf(key, sizeof key, "k%d", k);
        CHECK_RC(caudal_receiver_steer_int64(r, -1, key, k), CAUDAL_OK);
    }
    CHECK_RC(caudal_receiver_steer_int64(r, -1, "one-too-many", 1), CAUDAL_ERR_INVALID);
    const char *m = caudal_receiver_last_error(r);
    CHECK(strstr(m, "full") && strstr(m, "'one-too-many'") && strstr(m, "every rank"));
    CHECK_RC(caudal_receiver_steer_int64(r, 1, "mine", 1), CAUDAL_ERR_INVALID);
    m = caudal_receiver_last_error(r);
    CHECK(strstr(m, "full") && strstr(m, "'mine'") && strstr(m, "rank 1"));
    CHECK_RC(caudal_receiver_steer_int64(r, -1, "k7", -7), CAUDAL_OK); /* updates go on */
    /* A rank that connects gets every one of them. */
    pid_t pid = spawn(read_all_keys, ep);
    int done = 0;
    while (!done) {
        caudal_event ev;
        CHECK_RC(caudal_receiver_next(r, &ev, 20000), CAUDAL_OK);
        CHECK(ev.type == CAUDAL_EVENT_CONNECT || ev.type == CAUDAL_EVENT_BYE);
        done = ev.type == CAUDAL_EVENT_BYE;
    }
    CHECK(wait_exit(pid) == 0);
    CHECK_RC(caudal_receiver_close(&r), CAUDAL_OK);

    /* Per rank: its own keys and the broadcast ones share the 1024. */
    r = open_with(ep, 0, 0);
    for (int k = 0; k < 600; k++) {
        snprintf(key, sizeof key, "own%d", k);
        CHECK_RC(caudal_receiver_steer_double(r, 0, key, k), CAUDAL_OK);
        CHECK_RC(caudal_receiver_steer_double(r, 1, key, k), CAUDAL_OK);
    }
    for (int k = 0; k < CDL_STORE_MAX_KEYS - 600; k++) {
        snprintf(key, sizeof key, "all%d", k);
        CHECK_RC(caudal_receiver_steer_double(r, -1, key, k), CAUDAL_OK);
    }
    CHECK_RC(caudal_receiver_steer_double(r, -1, "all-more", 1), CAUDAL_ERR_INVALID);
    CHECK_RC(caudal_receiver_steer_double(r, 0, "own-more", 1), CAUDAL_ERR_INVALID);
    CHECK(strstr(caudal_receiver_last_error(r), "rank 0"));
    CHECK_RC(caudal_receiver_steer_double(r, 2, "other", 1), CAUDAL_OK);
    CHECK_RC(caudal_receiver_steer_double(r, 0, "own3", 33), CAUDAL_OK);
    CHECK_RC(caudal_receiver_close(&r), CAUDAL_OK);
    printf("hostile: steering store indexed and capped at %d keys per rank\n",
           CDL_STORE_MAX_KEYS);
}

/* ---- 8. variable-length declarations ---------------------------------------- */

static void check_var_declarations(void)
{
    static const struct {
        uint64_t shape, start, capacity;
        const char *part;
    } bad[] = {
        {5, 0, 10, "rank 1, array 'p': a variable-length array has no global shape"},
        {0, 3, 10, "rank 1, array 'p': a variable-length array has no global shape or start"},
        {0, 0, 1ull << 61, "rank 1, array 'p': capacity 2305843009213693952 is 2^62 bytes"},
    };
    caudal_receiver *r = open_with("tcp:127.0.0.1:0", 0, 0);
    const char *ep = caudal_receiver_endpoint(r);
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        uint8_t frame[2048];
        int fd = raw_connect(ep);
        size_t n = hello_frame(frame, 1, TOKEN);
        n += cdl_encode_declare(frame + n, sizeof frame - n, 0, "p", CAUDAL_FLOAT64, 1, 0, 1,
                                &bad[k].shape, &bad[k].start, &bad[k].capacity);
        raw_send(fd, frame, n);
        caudal_event ev;
        next_type(r, &ev, CAUDAL_EVENT_CONNECT);
        next_type(r, &ev, CAUDAL_EVENT_DISCONNECT);
        if (ev.status != CAUDAL_ERR_SHAPE || !strstr(ev.message, bad[k].part)) {
            fprintf(stderr, "var declaration %zu: %d '%s'\n", k, ev.status, ev.message);
            exit(1);
        }
        CHECK(raw_error_status(fd) == CAUDAL_ERR_SHAPE);
        close(fd);
    }
    CHECK_RC(caudal_receiver_close(&r), CAUDAL_OK);
    printf("hostile: bad variable-length declarations cut off, naming rank and array\n");
}

/* A rank's account closes with its BYE: frames after it are ignored, never
 * events of that rank, and the connection ends without a DISCONNECT. */
static void check_frames_after_bye(void)
{
    caudal_receiver *r = open_with("tcp:127.0.0.1:0", 0, 0);
    int fd = raw_connect(caudal_receiver_endpoint(r));
    uint8_t buf[4096];
    size_t n = hello_frame(buf, 1, TOKEN);
    uint64_t counters[7] = {0};
    n += cdl_encode_bye(buf + n, sizeof buf - n, counters);
    double v = 1.5;
    n += cdl_encode_steer(buf + n, sizeof buf - n, "late", CAUDAL_VALUE_DOUBLE, &v);
    raw_send(fd, buf, n);
    shutdown(fd, SHUT_WR);
    caudal_event ev;
    CHECK_RC(caudal_receiver_next(r, &ev, 10000), CAUDAL_OK);
    CHECK(ev.type == CAUDAL_EVENT_CONNECT && ev.rank == 1);
    CHECK_RC(caudal_receiver_next(r, &ev, 10000), CAUDAL_OK);
    CHECK(ev.type == CAUDAL_EVENT_BYE && ev.rank == 1);
    /* Nothing more: no STEER, no DISCONNECT, until the timeout. */
    CHECK_RC(caudal_receiver_next(r, &ev, 300), CAUDAL_ERR_TIMEOUT);
    CHECK(caudal_receiver_connections(r) == 0);
    close(fd);
    caudal_receiver_close(&r);
}

int main(void)
{
    check_unauthenticated(0);
    check_unauthenticated(1);
    check_duplicate_rank();
    check_idle_flood();
    check_rank_crowd();
    check_emfile();
    check_unix_path();
    check_held_before_alloc();
    check_steering_cap();
    check_var_declarations();
    check_frames_after_bye();
    printf("hostile: all passed\n");
    return 0;
}
