/* A rank that dies leaves behind every step it finished: the receiver reads
 * what the rank sent before it died even when writing to it fails first (a
 * slot given back, a steering value sent). Before, a failed send ended the
 * connection at once and the steps still in the socket were lost, so the
 * runtime skipped steps the rank had published (test_completeness's lost
 * rank, once in CI). Over unix (a slot given back, or steering) and tcp
 * (steering), with and without gathering.
 *
 * The rank is made to die with its last steps unread by a pipe, not by
 * time: it publishes step 0, waits until the receiver has taken it, then
 * publishes the rest and kills itself; the receiver writes to it only once
 * it is dead. */
#include "harness.h"

#include <inttypes.h>

#define ELEMS 32
#define LAST 3 /* the rank publishes steps 0..LAST, then dies */
#define WAIT_MS 30000

typedef enum poke { POKE_RELEASE, POKE_STEER } poke;

typedef struct child {
    const char *endpoint;
    int go_fd;
} child;

static void publish(caudal_client *c, uint64_t step)
{
    double a[ELEMS];
    fill_pattern(a, sizeof a, 0, 0, step);
    CHECK_RC(caudal_begin_step(c, step), CAUDAL_OK);
    CHECK_RC(caudal_put(c, "a", CAUDAL_FLOAT64, a), CAUDAL_OK);
    CHECK_RC(caudal_end_step(c), CAUDAL_OK);
}

static int run_rank(void *arg)
{
    const child *ch = arg;
    caudal_options o;
    caudal_options_init(&o);
    o.ring_depth = 8; /* every step fits: the rank never waits for a slot */
    caudal_client *c = open_client(ch->endpoint, "tok-lost", 0, 1, &o);
    uint64_t shape = ELEMS, start = 0, count = ELEMS;
    CHECK_RC(caudal_declare(c, "a", CAUDAL_FLOAT64, 1, &shape, &start, &count,
                            CAUDAL_ORDER_C),
             CAUDAL_OK);
    publish(c, 0);
    char b;
    CHECK(read(ch->go_fd, &b, 1) == 1);
    for (uint64_t s = 1; s <= LAST; s++)
        publish(c, s);
    raise(SIGKILL); /* no goodbye, no close: a crash between steps */
    return 1;
}

typedef struct seen {
    int blocks[LAST + 1];
    int ended[LAST + 1];
    caudal_block *held; /* step 0's block, given back as the poke */
    int disconnected;
    char why[400];
} seen;

static void take_block(seen *s, uint64_t step, const void *data, uint64_t nbytes,
                       caudal_block *b)
{
    CHECK(step <= LAST);
    CHECK(nbytes == ELEMS * sizeof(double));
    CHECK(matches_pattern(data, nbytes, 0, 0, step));
    s->blocks[step]++;
    if (step == 0 && !s->held)
        s->held = b;
    else
        CHECK_RC(caudal_block_release(b), CAUDAL_OK);
}

/* One event into `s`; 0 once none comes within WAIT_MS. */
static int take(caudal_receiver *r, seen *s)
{
    caudal_event ev;
    int rc = caudal_receiver_next(r, &ev, WAIT_MS);
    if (rc == CAUDAL_ERR_TIMEOUT)
        return 0;
    CHECK_RC(rc, CAUDAL_OK);
    switch (ev.type) {
    case CAUDAL_EVENT_BLOCK:
        take_block(s, ev.step, ev.data, ev.nbytes, ev.block);
        break;
    case CAUDAL_EVENT_STEP_END:
        CHECK(ev.step <= LAST && ev.nblocks == 1);
        s->ended[ev.step]++;
        break;
    case CAUDAL_EVENT_STEPS:
        CHECK(ev.ncomplete == ev.nblocks); /* nothing handed out early here */
        for (uint32_t i = 0; i < ev.nblocks; i++) {
            const caudal_step_block *b = &ev.blocks[i];
            take_block(s, b->step, b->data, b->nbytes, b->block);
            s->ended[b->step]++;
        }
        break;
    case CAUDAL_EVENT_DISCONNECT:
        CHECK(ev.rank == 0);
        s->disconnected++;
        snprintf(s->why, sizeof s->why, "%s", ev.message);
        break;
    case CAUDAL_EVENT_CONNECT:
    case CAUDAL_EVENT_DECLARE:
        break;
    default:
        fprintf(stderr, "unexpected event %d\n", (int)ev.type);
        exit(1);
    }
    return 1;
}

static void one(int tcp, int gather, poke how)
{
    char endpoint[128];
    if (tcp)
        snprintf(endpoint, sizeof endpoint, "tcp:127.0.0.1:0");
    else
        unix_endpoint(endpoint, sizeof endpoint, "lost");
    caudal_receiver_options ro;
    caudal_receiver_options_init(&ro);
    ro.endpoint = endpoint;
    ro.token = "tok-lost";
    ro.gather = (uint64_t)gather;
    caudal_receiver *r = open_receiver_with(&ro);
    int go[2];
    CHECK(pipe(go) == 0);
    child ch = {caudal_receiver_endpoint(r), go[0]};
    pid_t pid = spawn(run_rank, &ch);
    close(go[0]);

    seen s;
    memset(&s, 0, sizeof s);
    while (!s.ended[0])
        CHECK(take(r, &s));
    CHECK(s.held != NULL);
    CHECK(write(go[1], "g", 1) == 1);
    close(go[1]);
    CHECK(wait_exit(pid) == 128 + SIGKILL);
    /* Steps 1..LAST wait in the socket of a rank that is gone: write to it. */
    if (how == POKE_RELEASE) {
        CHECK_RC(caudal_block_release(s.held), CAUDAL_OK); /* its slot goes back */
        s.held = NULL;
    } else {
        for (int i = 0; i < 3; i++) { /* tcp: the first send only brings the reset */
            CHECK_RC(caudal_receiver_steer_double(r, -1, "dt", 0.5 * i), CAUDAL_OK);
            usleep(20000);
        }
    }
    while (!s.disconnected)
        CHECK(take(r, &s));
    for (int k = 0; k <= LAST; k++) {
        if (s.blocks[k] != 1 || s.ended[k] != 1) {
            fprintf(stderr, "%s, gather %d, %s: step %d: %d blocks, ended %d times "
                    "(disconnect: %s)\n", tcp ? "tcp" : "unix", gather,
                    how == POKE_RELEASE ? "slot given back" : "steering", k, s.blocks[k],
                    s.ended[k], s.why);
            exit(1);
        }
    }
    /* What ended it is what the rank did (closed, or reset), not our send. */
    CHECK(strstr(s.why, "rank 0") != NULL);
    CHECK(strstr(s.why, "sending") == NULL);
    if (s.held)
        CHECK_RC(caudal_block_release(s.held), CAUDAL_OK);
    caudal_event ev;
    CHECK_RC(caudal_receiver_next(r, &ev, 100), CAUDAL_ERR_TIMEOUT); /* nothing more */
    CHECK_RC(caudal_receiver_close(&r), CAUDAL_OK);
}

int main(void)
{
    for (int gather = 0; gather <= 1; gather++) {
        one(0, gather, POKE_RELEASE);
        one(0, gather, POKE_STEER);
        one(1, gather, POKE_STEER);
    }
    printf("lost rank: every step it finished was read, over unix and tcp\n");
    return 0;
}
