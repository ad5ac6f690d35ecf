/* A full ring under both policies.
 *
 * Over unix the receiver fills the ring by holding the blocks of the first
 * steps; over tcp (slots are private and free once sent) by not reading, so
 * that the socket fills. Client and receiver tell each other through pipes
 * when to go on, so every outcome is decided by the protocol, not by time:
 * the 200 ms block timeout only has to expire while nothing can free a slot. */
#include "harness.h"

#define SMALL_ELEMS 512                /* float64: 4 KiB blocks over unix */
#define BIG_BYTES (4u << 20)           /* uint8: 4 MiB blocks over tcp */
#define MAX_STEPS 1000                 /* bound of the loops that fill a socket */
#define MAX_TRIES 20000                /* of a 1 ms nap: bound of the waits, 20 s */

typedef struct scenario {
    const char *name;
    int tcp;
    caudal_policy policy;
    int timeout_ms;
    char endpoint[128];
    int to_parent[2], to_child[2];
} scenario;

/* ---- pipes --------------------------------------------------------------- */

static void put_bytes(int fd, const void *p, size_t n)
{
    CHECK(write(fd, p, n) == (ssize_t)n);
}

static void get_bytes(int fd, void *p, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t k = read(fd, (char *)p + got, n - got);
        CHECK(k > 0); /* 0: the other side died */
        got += (size_t)k;
    }
}

static void tell(int fd, char what) { put_bytes(fd, &what, 1); }

static void expect(int fd, char what)
{
    char c;
    get_bytes(fd, &c, 1);
    CHECK(c == what);
}

/* ---- client side ------------------------------------------------------------ */

/* In the child: keep only its own ends, so that a parent that fails ends it. */
static void child_pipes(const scenario *sc)
{
    close(sc->to_parent[0]);
    close(sc->to_child[1]);
}

static caudal_client *client_open(const scenario *sc)
{
    caudal_options o;
    caudal_options_init(&o);
    o.ring_depth = 2;
    o.policy = sc->policy;
    o.block_timeout_ms = sc->timeout_ms;
    child_pipes(sc);
    caudal_client *c = open_client(sc->endpoint, "tok-pol", 0, 1, &o);
    uint64_t n = sc->tcp ? BIG_BYTES : SMALL_ELEMS, zero = 0;
    CHECK_RC(caudal_declare(c, "f", sc->tcp ? CAUDAL_UINT8 : CAUDAL_FLOAT64, 1, &n, &zero, &n,
                            CAUDAL_ORDER_C),
             CAUDAL_OK);
    return c;
}

static void publish(const scenario *sc, caudal_client *c, uint64_t step)
{
    size_t nb = sc->tcp ? BIG_BYTES : SMALL_ELEMS * 8;
    void *buf = malloc(nb);
    CHECK(buf);
    fill_pattern(buf, nb, 0, 0, step);
    CHECK_RC(caudal_put(c, "f", sc->tcp ? CAUDAL_UINT8 : CAUDAL_FLOAT64, buf), CAUDAL_OK);
    free(buf);
}

static void step(const scenario *sc, caudal_client *c, uint64_t s)
{
    CHECK_RC(caudal_begin_step(c, s), CAUDAL_OK);
    publish(sc, c, s);
    CHECK_RC(caudal_end_step(c), CAUDAL_OK);
}

static caudal_counters counters(caudal_client *c)
{
    caudal_counters k;
    CHECK_RC(caudal_get_counters(c, &k), CAUDAL_OK);
    return k;
}

/* Over tcp: keep pushing the socket (each steering report flushes it) until
 * the receiver, once it has read everything, says "resume". After that every
 * slot is free, as their bytes went out before the receiver could answer. */
static void wait_for_resume(caudal_client *c)
{
    int64_t v;
    for (int k = 0;; k++) {
        CHECK(k < MAX_TRIES);
        CHECK_RC(caudal_steer_set_int64(c, "waiting", k), CAUDAL_OK);
        int rc = caudal_steer_get_int64(c, "resume", &v);
        if (rc == CAUDAL_OK)
            break;
        CHECK_RC(rc, CAUDAL_NO_VALUE);
        usleep(1000);
    }
}

/* Unix, BLOCK with a timeout: time out, be released, retry. */
static int client_block_timeout(void *arg)
{
    scenario *sc = arg;
    caudal_client *c = client_open(sc);
    step(sc, c, 0);
    step(sc, c, 1);
    CHECK_RC(caudal_begin_step(c, 2), CAUDAL_ERR_TIMEOUT);
    CHECK_MSG(c, "rank 0");
    CHECK_MSG(c, "step 2");
    CHECK_MSG(c, "200 ms");
    /* The step was not begun. */
    CHECK_RC(caudal_put(c, "f", CAUDAL_FLOAT64, "12345678"), CAUDAL_ERR_STATE);
    CHECK_RC(caudal_end_step(c), CAUDAL_ERR_STATE);
    CHECK(counters(c).ns_waiting > 0);
    tell(sc->to_parent[1], 'T');
    expect(sc->to_child[0], 'R'); /* the receiver released and sent RELEASE */
    step(sc, c, 2);
    for (uint64_t s = 3; s < 6; s++)
        step(sc, c, s);
    caudal_counters k = counters(c);
    CHECK(k.ns_waiting > 0 && k.steps_sent == 6 && k.steps_dropped == 0);
    CHECK_RC(caudal_close(&c), CAUDAL_OK);
    return 0;
}

/* Unix, BLOCK without a timeout: wait in begin_step until released. */
static int client_block_forever(void *arg)
{
    scenario *sc = arg;
    caudal_client *c = client_open(sc);
    step(sc, c, 0);
    step(sc, c, 1);
    tell(sc->to_parent[1], 'B'); /* about to block */
    step(sc, c, 2);
    for (uint64_t s = 3; s < 6; s++)
        step(sc, c, s);
    caudal_counters k = counters(c);
    CHECK(k.steps_sent == 6 && k.steps_dropped == 0);
    CHECK_RC(caudal_close(&c), CAUDAL_OK);
    return 0;
}

/* Unix, DROP: steps 2..9 find the ring full. */
static int client_drop(void *arg)
{
    scenario *sc = arg;
    caudal_client *c = client_open(sc);
    step(sc, c, 0);
    step(sc, c, 1);
    double d[SMALL_ELEMS] = {0};
    for (uint64_t s = 2; s < 10; s++) {
        CHECK_RC(caudal_begin_step(c, s), CAUDAL_OK);
        CHECK(counters(c).steps_dropped == s - 1);
        /* Puts into a dropped step are still checked. */
        CHECK_RC(caudal_put(c, "nope", CAUDAL_FLOAT64, d), CAUDAL_ERR_UNKNOWN_ARRAY);
        CHECK_MSG(c, "nope");
        CHECK_RC(caudal_put(c, "f", CAUDAL_INT32, d), CAUDAL_ERR_DTYPE);
        CHECK_RC(caudal_put(c, "f", CAUDAL_FLOAT64, NULL), CAUDAL_ERR_INVALID);
        CHECK_RC(caudal_put(c, "f", CAUDAL_FLOAT64, d), CAUDAL_OK);
        CHECK_RC(caudal_put(c, "f", CAUDAL_FLOAT64, d), CAUDAL_ERR_DUPLICATE);
        CHECK_RC(caudal_begin_step(c, s + 1), CAUDAL_ERR_STATE);
        CHECK_RC(caudal_end_step(c), CAUDAL_OK);
    }
    CHECK_RC(caudal_begin_step(c, 9), CAUDAL_ERR_STEP_ORDER); /* dropped steps count */
    caudal_counters k = counters(c);
    CHECK(k.steps_dropped == 8 && k.steps_sent == 2 && k.blocks_sent == 2);
    CHECK(k.bytes_sent == 2 * SMALL_ELEMS * 8);
    tell(sc->to_parent[1], 'D');
    expect(sc->to_child[0], 'R');
    step(sc, c, 10);
    k = counters(c);
    CHECK(k.steps_dropped == 8 && k.steps_sent == 3 && k.blocks_sent == 3);
    CHECK_RC(caudal_close(&c), CAUDAL_OK);
    return 0;
}

/* What a tcp client tells the receiver once the socket is full. */
typedef struct tcp_report {
    uint64_t nsteps;    /* steps 0..nsteps-1 were begun */
    uint64_t last_sent; /* the last of them that was not dropped */
    uint64_t timed_out; /* BLOCK: the step whose begin timed out */
    uint8_t dropped[MAX_STEPS];
} tcp_report;

/* Tcp, DROP or BLOCK with a timeout: publish until the full socket shows. */
static int client_tcp(void *arg)
{
    scenario *sc = arg;
    caudal_client *c = client_open(sc);
    tcp_report rep;
    memset(&rep, 0, sizeof rep);
    uint64_t s = 0, ndropped = 0;
    for (;; s++) {
        CHECK(s < MAX_STEPS);
        int rc = caudal_begin_step(c, s);
        if (sc->policy == CAUDAL_POLICY_BLOCK && rc == CAUDAL_ERR_TIMEOUT) {
            CHECK_MSG(c, "rank 0");
            char want[64];
            snprintf(want, sizeof want, "step %llu", (unsigned long long)s);
            CHECK_MSG(c, want);
            rep.timed_out = s;
            break;
        }
        CHECK_RC(rc, CAUDAL_OK);
        uint64_t nd = counters(c).steps_dropped;
        rep.dropped[s] = nd > ndropped;
        ndropped = nd;
        if (!rep.dropped[s])
            rep.last_sent = s;
        publish(sc, c, s);
        CHECK_RC(caudal_end_step(c), CAUDAL_OK);
        if (ndropped == 8)
            break;
    }
    rep.nsteps = sc->policy == CAUDAL_POLICY_BLOCK ? s : s + 1;
    CHECK(rep.nsteps >= 2 && !rep.dropped[0] && !rep.dropped[1]); /* two free slots */
    put_bytes(sc->to_parent[1], &rep, sizeof rep);
    wait_for_resume(c);
    /* Now every slot is free: the next step goes through. */
    step(sc, c, rep.nsteps);
    caudal_counters k = counters(c);
    CHECK(k.steps_dropped == ndropped);
    CHECK(k.steps_sent == rep.nsteps + 1 - ndropped);
    CHECK(k.bytes_inline == k.bytes_sent && k.bytes_sent == k.steps_sent * BIG_BYTES);
    if (sc->policy == CAUDAL_POLICY_BLOCK)
        CHECK(k.ns_waiting > 0 && ndropped == 0);
    CHECK_RC(caudal_close(&c), CAUDAL_OK);
    return 0;
}

/* ---- receiver side ------------------------------------------------------- */

typedef struct rx {
    caudal_receiver *r;
    const scenario *sc;
    caudal_block *held[2];
    int nheld, hold; /* hold: keep the blocks of steps 0 and 1 */
    uint8_t ended[MAX_STEPS + 2];
    uint64_t nended, ndrop_events, ndropped, next_drop;
    uint8_t drop_cover[MAX_STEPS + 2];
    int bye;
    caudal_counters bye_counters;
    uint64_t resume_after; /* tcp: say resume once this step ended */
    int resumed;
} rx;

static void check_block(const rx *x, const caudal_event *ev)
{
    size_t nb = x->sc->tcp ? BIG_BYTES : SMALL_ELEMS * 8;
    CHECK(ev->nbytes == nb);
    CHECK(ev->in_shared_memory == !x->sc->tcp);
    CHECK(matches_pattern(ev->data, ev->nbytes, 0, 0, ev->step));
}

/* Take one event and account for it. */
static caudal_event next(rx *x)
{
    caudal_event ev;
    CHECK_RC(caudal_receiver_next(x->r, &ev, 20000), CAUDAL_OK);
    if (ev.type == CAUDAL_EVENT_DISCONNECT) {
        fprintf(stderr, "%s: disconnect: %s\n", x->sc->name, ev.message);
        exit(1);
    }
    switch (ev.type) {
    case CAUDAL_EVENT_BLOCK:
        check_block(x, &ev);
        CHECK(ev.step <= MAX_STEPS && !x->ended[ev.step] && !x->drop_cover[ev.step]);
        if (x->hold && ev.step < 2) {
            x->held[x->nheld++] = ev.block;
        } else {
            CHECK_RC(caudal_block_release(ev.block), CAUDAL_OK);
        }
        break;
    case CAUDAL_EVENT_STEP_END:
        CHECK(ev.step <= MAX_STEPS && ev.nblocks == 1 && !x->ended[ev.step]);
        x->ended[ev.step] = 1;
        x->nended++;
        if (x->sc->tcp && !x->resumed && ev.step == x->resume_after) {
            CHECK_RC(caudal_receiver_steer_int64(x->r, 0, "resume", 1), CAUDAL_OK);
            x->resumed = 1;
        }
        break;
    case CAUDAL_EVENT_DROP:
        /* Consecutive, non-overlapping runs in step order. */
        CHECK(ev.first_step >= x->next_drop && ev.first_step <= ev.step);
        CHECK(ev.step <= MAX_STEPS && ev.ndropped == ev.step - ev.first_step + 1);
        for (uint64_t s = ev.first_step; s <= ev.step; s++) {
            CHECK(!x->ended[s]);
            x->drop_cover[s] = 1;
        }
        x->next_drop = ev.step + 1;
        x->ndrop_events++;
        x->ndropped += ev.ndropped;
        break;
    case CAUDAL_EVENT_BYE:
        x->bye = 1;
        x->bye_counters = ev.counters;
        break;
    default:
        break;
    }
    return ev;
}

static void release_held(rx *x)
{
    while (x->nheld > 0)
        CHECK_RC(caudal_block_release(x->held[--x->nheld]), CAUDAL_OK);
}

/* Release, and have the receiver send RELEASE now: the rank sends nothing
 * until told that this is done, so no event can come. */
static void release_held_now(rx *x)
{
    release_held(x);
    caudal_event ev;
    CHECK_RC(caudal_receiver_next(x->r, &ev, 0), CAUDAL_ERR_TIMEOUT);
}

static void run(scenario *sc, int (*client)(void *))
{
    rx x;
    memset(&x, 0, sizeof x);
    x.sc = sc;
    if (sc->tcp) {
        x.r = open_receiver("tcp:127.0.0.1:0", "tok-pol");
    } else {
        unix_endpoint(sc->endpoint, sizeof sc->endpoint, "pol");
        x.r = open_receiver(sc->endpoint, "tok-pol");
    }
    snprintf(sc->endpoint, sizeof sc->endpoint, "%s", caudal_receiver_endpoint(x.r));
    CHECK(pipe(sc->to_parent) == 0 && pipe(sc->to_child) == 0);
    pid_t pid = spawn(client, sc);
    close(sc->to_parent[1]);
    close(sc->to_child[0]);
    int up = sc->to_parent[0], down = sc->to_child[1];

    if (!sc->tcp) {
        /* Hold steps 0 and 1: the ring of depth 2 is full. */
        x.hold = 1;
        while (!x.ended[1])
            next(&x);
        CHECK(x.nheld == 2);
        if (client == client_block_timeout) {
            expect(up, 'T');
            release_held_now(&x);
            tell(down, 'R');
        } else if (client == client_block_forever) {
            expect(up, 'B');
            release_held(&x);
        } else {
            expect(up, 'D');
            release_held_now(&x);
            tell(down, 'R');
        }
        while (!x.bye)
            next(&x);
        uint64_t last = client == client_drop ? 10 : 5;
        for (uint64_t s = 0; s <= last; s++)
            CHECK(x.ended[s] + x.drop_cover[s] == 1);
        if (client == client_drop) {
            CHECK(x.ndropped == 8 && x.nended == 3);
            for (uint64_t s = 2; s < 10; s++)
                CHECK(x.drop_cover[s]);
            CHECK(x.bye_counters.steps_dropped == 8 && x.bye_counters.steps_sent == 3);
        } else {
            CHECK(x.ndrop_events == 0 && x.nended == 6);
            CHECK(x.bye_counters.steps_dropped == 0 && x.bye_counters.steps_sent == 6);
        }
    } else {
        /* Read nothing once the rank is connected: its socket fills. */
        while (caudal_receiver_connections(x.r) < 1)
            next(&x);
        tcp_report rep;
        get_bytes(up, &rep, sizeof rep);
        CHECK(rep.nsteps >= 2 && rep.nsteps < MAX_STEPS);
        x.resume_after = rep.last_sent;
        while (!x.bye)
            next(&x);
        CHECK(x.resumed);
        uint64_t ndropped = 0;
        for (uint64_t s = 0; s < rep.nsteps; s++) {
            ndropped += rep.dropped[s];
            /* Every step either arrived or was reported dropped, as the rank saw. */
            CHECK(x.ended[s] == !rep.dropped[s] && x.drop_cover[s] == rep.dropped[s]);
        }
        CHECK(x.ended[rep.nsteps] && !x.ended[rep.nsteps + 1]);
        CHECK(x.ndropped == ndropped);
        CHECK(x.bye_counters.steps_dropped == ndropped);
        CHECK(x.bye_counters.steps_sent == x.nended);
        if (sc->policy == CAUDAL_POLICY_DROP)
            CHECK(ndropped == 8);
        else
            CHECK(ndropped == 0 && rep.timed_out == rep.nsteps);
        printf("%s: %llu steps before the socket stayed full, %llu dropped\n", sc->name,
               (unsigned long long)rep.nsteps, (unsigned long long)ndropped);
    }
    CHECK(wait_exit(pid) == 0);
    close(up);
    close(down);
    CHECK_RC(caudal_receiver_close(&x.r), CAUDAL_OK);
}

int main(void)
{
    scenario sc[] = {
        {"unix block, 200 ms timeout", 0, CAUDAL_POLICY_BLOCK, 200, "", {0}, {0}},
        {"unix block, no timeout", 0, CAUDAL_POLICY_BLOCK, 0, "", {0}, {0}},
        {"unix drop", 0, CAUDAL_POLICY_DROP, 0, "", {0}, {0}},
        {"tcp drop", 1, CAUDAL_POLICY_DROP, 0, "", {0}, {0}},
        {"tcp block, 200 ms timeout", 1, CAUDAL_POLICY_BLOCK, 200, "", {0}, {0}},
    };
    run(&sc[0], client_block_timeout);
    run(&sc[1], client_block_forever);
    run(&sc[2], client_drop);
    run(&sc[3], client_tcp);
    run(&sc[4], client_tcp);
    printf("policy: block and drop over unix and tcp\n");
    return 0;
}
