/* Steering both ways, over unix and tcp. The receiver sets values before any
 * client connects (for every rank and for one rank) and while they are
 * connected; each client reads them without blocking, with the per-rank value
 * winning over the broadcast one, the right status for unknown keys, wrong
 * getters and short buffers. Clients report values, which reach the receiver
 * as STEER events naming rank, key and value.
 *
 * Ordering makes it deterministic: frames on one connection arrive in order,
 * so each phase ends with a marker value, and a client that sees the marker
 * has every value set before it. */
#include "harness.h"

#define NRANKS 2
#define MAX_TRIES 200000 /* of a 100 us nap: the bound of every wait, 20 s */

static const char *endpoint;

/* Call get until it gives CAUDAL_OK (each call reads what the socket has). */
#define WAIT_OK(call)                                                           \
    do {                                                                        \
        int tries_ = 0, rcw_;                                                   \
        while ((rcw_ = (call)) != CAUDAL_OK) {                                  \
            CHECK(rcw_ == CAUDAL_NO_VALUE);                                     \
            CHECK(++tries_ < MAX_TRIES);                                        \
            usleep(100);                                                        \
        }                                                                       \
    } while (0)

static void expect_double(caudal_client *c, const char *key, double want)
{
    double v = -999;
    CHECK_RC(caudal_steer_get_double(c, key, &v), CAUDAL_OK);
    if (v != want) {
        fprintf(stderr, "'%s' is %g, wanted %g\n", key, v, want);
        exit(1);
    }
}

static void expect_int64(caudal_client *c, const char *key, int64_t want)
{
    int64_t v = -999;
    CHECK_RC(caudal_steer_get_int64(c, key, &v), CAUDAL_OK);
    CHECK(v == want);
}

static void expect_string(caudal_client *c, const char *key, const char *want)
{
    char buf[128];
    CHECK_RC(caudal_steer_get_string(c, key, buf, sizeof buf), CAUDAL_OK);
    if (strcmp(buf, want) != 0) {
        fprintf(stderr, "'%s' is '%s', wanted '%s'\n", key, buf, want);
        exit(1);
    }
}

static int run_client(void *arg)
{
    int rank = (int)(intptr_t)arg;
    caudal_client *c = open_client(endpoint, "tok-steer", rank, NRANKS, NULL);
    double d;
    int64_t i;
    char buf[64];

    /* Phase 1: values set before this rank connected. The per-rank marker
     * comes after every broadcast value and after this rank's own values. */
    WAIT_OK(caudal_steer_get_int64(c, "hello-done", &i));
    CHECK(i == 100 + rank);
    expect_double(c, "alpha", rank == 1 ? 2.5 : 1.5); /* rank 1's own value wins */
    expect_int64(c, "n", rank == 1 ? -7 : 42);
    expect_string(c, "mode", rank == 1 ? "slow, rank one" : "fast");
    expect_string(c, "empty", "");
    CHECK_RC(caudal_steer_get_double(c, "never-set", &d), CAUDAL_NO_VALUE);
    CHECK_RC(caudal_steer_get_int64(c, "never-set", &i), CAUDAL_NO_VALUE);
    CHECK_RC(caudal_steer_get_string(c, "never-set", buf, sizeof buf), CAUDAL_NO_VALUE);
    CHECK_RC(caudal_steer_get_double(c, "live", &d), CAUDAL_NO_VALUE); /* not yet */

    /* One typed read gives each value with its type, as the getters do. */
    caudal_value v;
    CHECK_RC(caudal_steer_get(c, "alpha", &v), CAUDAL_OK);
    CHECK(v.type == CAUDAL_VALUE_DOUBLE && v.as_double == (rank == 1 ? 2.5 : 1.5));
    CHECK_RC(caudal_steer_get(c, "n", &v), CAUDAL_OK);
    CHECK(v.type == CAUDAL_VALUE_INT64 && v.as_int64 == (rank == 1 ? -7 : 42));
    CHECK_RC(caudal_steer_get(c, "mode", &v), CAUDAL_OK);
    CHECK(v.type == CAUDAL_VALUE_STRING &&
          strcmp(v.as_string, rank == 1 ? "slow, rank one" : "fast") == 0 &&
          v.string_length == strlen(v.as_string));
    CHECK_RC(caudal_steer_get(c, "empty", &v), CAUDAL_OK);
    CHECK(v.type == CAUDAL_VALUE_STRING && v.string_length == 0 && v.as_string[0] == 0);
    memset(&v, 0x5a, sizeof v);
    CHECK_RC(caudal_steer_get(c, "never-set", &v), CAUDAL_NO_VALUE);
    CHECK(v.type == 0 && v.as_string == NULL); /* zeroed, not left as it was */
    CHECK_RC(caudal_steer_get(c, "alpha", NULL), CAUDAL_ERR_INVALID);
    CHECK_RC(caudal_steer_get(c, NULL, &v), CAUDAL_ERR_INVALID);

    /* The wrong getter: a type error that names the key and its type. */
    CHECK_RC(caudal_steer_get_int64(c, "alpha", &i), CAUDAL_ERR_TYPE);
    CHECK_MSG(c, "alpha");
    CHECK_MSG(c, "double");
    CHECK_RC(caudal_steer_get_string(c, "alpha", buf, sizeof buf), CAUDAL_ERR_TYPE);
    CHECK_RC(caudal_steer_get_double(c, "n", &d), CAUDAL_ERR_TYPE);
    CHECK_MSG(c, "int64");
    CHECK_RC(caudal_steer_get_double(c, "mode", &d), CAUDAL_ERR_TYPE);
    CHECK_MSG(c, "string");
    CHECK_RC(caudal_steer_get_int64(c, "mode", &i), CAUDAL_ERR_TYPE);

    /* A short buffer gets a terminated prefix. */
    memset(buf, 'Z', sizeof buf);
    CHECK_RC(caudal_steer_get_string(c, "mode", buf, 4), CAUDAL_ERR_TRUNCATED);
    CHECK(strcmp(buf, rank == 1 ? "slo" : "fas") == 0);
    CHECK(buf[4] == 'Z'); /* nothing written past the buffer */
    CHECK_MSG(c, "mode");
    memset(buf, 'Z', sizeof buf);
    CHECK_RC(caudal_steer_get_string(c, "mode", buf, 1), CAUDAL_ERR_TRUNCATED);
    CHECK(buf[0] == 0 && buf[1] == 'Z');
    /* Exactly the length plus its terminator fits. */
    const char *mode = rank == 1 ? "slow, rank one" : "fast";
    CHECK_RC(caudal_steer_get_string(c, "mode", buf, strlen(mode) + 1), CAUDAL_OK);

    /* Report values; the last one tells the receiver this phase is done. */
    CHECK_RC(caudal_steer_set_double(c, "residual", 0.5 + rank), CAUDAL_OK);
    CHECK_RC(caudal_steer_set_string(c, "status", rank ? "rank one ok" : "rank zero ok"),
             CAUDAL_OK);
    CHECK_RC(caudal_steer_set_double(c, "residual", 0.25 + rank), CAUDAL_OK); /* latest */
    CHECK_RC(caudal_steer_set_string(c, "empty-report", ""), CAUDAL_OK);
    CHECK_RC(caudal_steer_set_int64(c, "phase", 1), CAUDAL_OK);

    /* Phase 2: values set while connected, then a marker for all ranks. */
    WAIT_OK(caudal_steer_get_int64(c, "live-done", &i));
    CHECK(i == 2);
    expect_double(c, "live", 3.25);
    expect_string(c, "mode", "changed for all"); /* the broadcast replaces rank 1's too */
    expect_double(c, "alpha", rank == 1 ? 9.0 : 1.5);
    if (rank == 0)
        expect_int64(c, "only-rank-0", INT64_MAX);
    else
        CHECK_RC(caudal_steer_get_int64(c, "only-rank-0", &i), CAUDAL_NO_VALUE);
    expect_int64(c, "n", rank == 1 ? -7 : 42); /* untouched */

    /* Steering and steps mix: publish a step, then read again. */
    uint64_t shape = NRANKS, start = (uint64_t)rank, count = 1;
    CHECK_RC(caudal_declare(c, "x", CAUDAL_INT64, 1, &shape, &start, &count, CAUDAL_ORDER_C),
             CAUDAL_OK);
    CHECK_RC(caudal_begin_step(c, 0), CAUDAL_OK);
    int64_t x = rank;
    CHECK_RC(caudal_put(c, "x", CAUDAL_INT64, &x), CAUDAL_OK);
    CHECK_RC(caudal_end_step(c), CAUDAL_OK);
    expect_double(c, "live", 3.25);
    CHECK_RC(caudal_steer_set_int64(c, "phase", 2), CAUDAL_OK);

    CHECK_RC(caudal_close(&c), CAUDAL_OK);
    return 0;
}

typedef struct seen {
    int phase;
    double residual;
    int residual_reports;
    char status[64];
    int empty_report;
} seen;

static void trial(int tcp)
{
    char ep[128];
    caudal_receiver *r;
    if (tcp) {
        r = open_receiver("tcp:127.0.0.1:0", "tok-steer");
    } else {
        unix_endpoint(ep, sizeof ep, "steer");
        r = open_receiver(ep, "tok-steer");
    }
    endpoint = caudal_receiver_endpoint(r);

    /* Before any client: for every rank, then rank 1's own, then markers. */
    CHECK_RC(caudal_receiver_steer_double(r, -1, "alpha", 1.5), CAUDAL_OK);
    CHECK_RC(caudal_receiver_steer_int64(r, -1, "n", 42), CAUDAL_OK);
    CHECK_RC(caudal_receiver_steer_string(r, -1, "mode", "fast"), CAUDAL_OK);
    CHECK_RC(caudal_receiver_steer_string(r, -1, "empty", ""), CAUDAL_OK);
    CHECK_RC(caudal_receiver_steer_double(r, 1, "alpha", 2.5), CAUDAL_OK);
    CHECK_RC(caudal_receiver_steer_int64(r, 1, "n", -7), CAUDAL_OK);
    CHECK_RC(caudal_receiver_steer_string(r, 1, "mode", "slow, rank one"), CAUDAL_OK);
    for (int k = 0; k < NRANKS; k++)
        CHECK_RC(caudal_receiver_steer_int64(r, k, "hello-done", 100 + k), CAUDAL_OK);
    /* Bad arguments. */
    CHECK_RC(caudal_receiver_steer_double(r, -2, "alpha", 1), CAUDAL_ERR_INVALID);
    CHECK_RC(caudal_receiver_steer_double(r, 0, NULL, 1), CAUDAL_ERR_INVALID);
    CHECK_RC(caudal_receiver_steer_int64(r, 0, "", 1), CAUDAL_ERR_INVALID);
    CHECK_RC(caudal_receiver_steer_string(r, 0, "k", NULL), CAUDAL_ERR_INVALID);
    CHECK(strlen(caudal_receiver_last_error(r)) > 0);
    CHECK_RC(caudal_receiver_steer_double(NULL, 0, "k", 1), CAUDAL_ERR_CLOSED);

    pid_t pids[NRANKS];
    for (int k = 0; k < NRANKS; k++)
        pids[k] = spawn(run_client, (void *)(intptr_t)k);

    seen s[NRANKS];
    memset(s, 0, sizeof s);
    int byes = 0, live_sent = 0, blocks = 0;
    while (byes < NRANKS) {
        caudal_event ev;
        CHECK_RC(caudal_receiver_next(r, &ev, 20000), CAUDAL_OK);
        if (ev.type == CAUDAL_EVENT_DISCONNECT)
            fprintf(stderr, "disconnect: %s\n", ev.message);
        CHECK(ev.type != CAUDAL_EVENT_DISCONNECT);
        CHECK(ev.rank >= 0 && ev.rank < NRANKS);
        seen *me = &s[ev.rank];
        switch (ev.type) {
        case CAUDAL_EVENT_STEER:
            CHECK(ev.key != NULL);
            if (!strcmp(ev.key, "residual")) {
                CHECK(ev.value_type == CAUDAL_VALUE_DOUBLE);
                CHECK(ev.value_double == (me->residual_reports ? 0.25 : 0.5) + ev.rank);
                me->residual = ev.value_double;
                me->residual_reports++;
            } else if (!strcmp(ev.key, "status")) {
                CHECK(ev.value_type == CAUDAL_VALUE_STRING && ev.value_string);
                snprintf(me->status, sizeof me->status, "%s", ev.value_string);
            } else if (!strcmp(ev.key, "empty-report")) {
                CHECK(ev.value_type == CAUDAL_VALUE_STRING && ev.value_string);
                CHECK(ev.value_string[0] == 0);
                me->empty_report = 1;
            } else if (!strcmp(ev.key, "phase")) {
                CHECK(ev.value_type == CAUDAL_VALUE_INT64);
                CHECK(ev.value_int64 == me->phase + 1);
                me->phase = (int)ev.value_int64;
                if (me->phase == 1) {
                    /* Everything reported before the marker is here. */
                    CHECK(me->residual_reports == 2 && me->residual == 0.25 + ev.rank);
                    CHECK(!strcmp(me->status, ev.rank ? "rank one ok" : "rank zero ok"));
                    CHECK(me->empty_report);
                }
            } else {
                CHECK(!"unexpected steering key");
            }
            /* Once every rank finished phase 1, set values while connected. */
            if (!live_sent && s[0].phase >= 1 && s[1].phase >= 1) {
                CHECK(caudal_receiver_connections(r) == NRANKS);
                CHECK_RC(caudal_receiver_steer_double(r, -1, "live", 3.25), CAUDAL_OK);
                CHECK_RC(caudal_receiver_steer_string(r, -1, "mode", "changed for all"),
                         CAUDAL_OK);
                CHECK_RC(caudal_receiver_steer_double(r, 1, "alpha", 9.0), CAUDAL_OK);
                CHECK_RC(caudal_receiver_steer_int64(r, 0, "only-rank-0", INT64_MAX),
                         CAUDAL_OK);
                CHECK_RC(caudal_receiver_steer_int64(r, -1, "live-done", 2), CAUDAL_OK);
                live_sent = 1;
            }
            break;
        case CAUDAL_EVENT_BLOCK:
            CHECK(ev.nbytes == 8 && *(const int64_t *)ev.data == ev.rank);
            CHECK_RC(caudal_block_release(ev.block), CAUDAL_OK);
            blocks++;
            break;
        case CAUDAL_EVENT_BYE:
            CHECK(me->phase == 2);
            byes++;
            break;
        default:
            break;
        }
    }
    CHECK(live_sent && blocks == NRANKS);
    for (int k = 0; k < NRANKS; k++)
        CHECK(wait_exit(pids[k]) == 0);
    CHECK_RC(caudal_receiver_close(&r), CAUDAL_OK);
    CHECK(r == NULL);
}

/* Reports queue up while the receiver does not read; the queue is bounded:
 * past it, drop gives up at once and block after its timeout, with a message. */
static int fd_flooded[2];

static int flood_client(void *arg)
{
    caudal_options o;
    caudal_options_init(&o);
    o.policy = (caudal_policy)(intptr_t)arg;
    o.block_timeout_ms = 100;
    caudal_client *c = open_client(endpoint, "tok-steer", 0, 1, &o);
    static char big[60000];
    memset(big, 'x', sizeof big - 1);
    int rc = CAUDAL_OK, sent = 0;
    for (int k = 0; k < 1000 && rc == CAUDAL_OK; k++)
        if ((rc = caudal_steer_set_string(c, "log", big)) == CAUDAL_OK)
            sent++;
    CHECK_RC(rc, CAUDAL_ERR_TIMEOUT);
    CHECK_MSG(c, "not reading");
    CHECK((size_t)sent * sizeof big >= (1u << 20)); /* the bound, not less */
    CHECK(write(fd_flooded[1], "f", 1) == 1);
    CHECK_RC(caudal_close(&c), CAUDAL_OK); /* all queued reports go out */
    return 0;
}

static void flood(int tcp, caudal_policy policy)
{
    char ep[128];
    if (!tcp)
        unix_endpoint(ep, sizeof ep, "flood");
    caudal_receiver *r = open_receiver(tcp ? "tcp:127.0.0.1:0" : ep, "tok-steer");
    endpoint = caudal_receiver_endpoint(r);
    CHECK(pipe(fd_flooded) == 0);
    pid_t pid = spawn(flood_client, (void *)(intptr_t)policy);
    caudal_event ev;
    do
        CHECK_RC(caudal_receiver_next(r, &ev, 20000), CAUDAL_OK);
    while (ev.type != CAUDAL_EVENT_CONNECT);
    char ch;
    CHECK(read(fd_flooded[0], &ch, 1) == 1); /* not reading until the client gave up */
    int reports = 0;
    do {
        CHECK_RC(caudal_receiver_next(r, &ev, 20000), CAUDAL_OK);
        CHECK(ev.type != CAUDAL_EVENT_DISCONNECT);
        reports += ev.type == CAUDAL_EVENT_STEER;
    } while (ev.type != CAUDAL_EVENT_BYE);
    CHECK(reports >= 17);
    CHECK(wait_exit(pid) == 0);
    close(fd_flooded[0]);
    close(fd_flooded[1]);
    CHECK_RC(caudal_receiver_close(&r), CAUDAL_OK);
}

int main(void)
{
    trial(0);
    trial(1);
    flood(0, CAUDAL_POLICY_DROP);
    flood(1, CAUDAL_POLICY_BLOCK);
    printf("steering: both ways over unix and tcp; reports bounded under both policies\n");
    return 0;
}
