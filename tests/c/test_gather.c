/* The receiver's gathering mode (options.gather): ranks in forked processes
 * publish out of step, one drops steps, one leaves cleanly mid-run, one dies
 * mid-run, some steps are empty; over unix and tcp. Every block must come
 * exactly once, in a STEPS event once every connected rank finished its
 * step, with the right bytes, and be released (LeakSanitizer checks that the
 * receiver's memory all goes). Then: a rank stopped by max_held_bytes in the
 * middle of its own step gets its blocks handed out early, and a receiver
 * closed while it still holds blocks frees them.
 *
 * Ranks that must be out of step are made so by pipes, not by time. */
#include "harness.h"

#include <inttypes.h>

#define NRANKS 5
#define NSTEPS 12
#define ELEMS 64   /* float64 elements of "a" per rank */
#define VAR_CAP 16 /* int32 capacity of "v" */
#define WAIT_MS 30000

static uint64_t step_of(int k) { return 2 * (uint64_t)k; } /* gaps between steps */

/* What rank `rank` puts at step index k: "a" (array 0) and "v" (array 1). */
static int puts_a(int rank, int k) { return !(rank == 0 && k == 5); } /* an empty step */
static int puts_v(int rank, int k) { return (rank + k) % 2 == 0; }
static uint64_t v_count(int rank, int k) { return (uint64_t)(rank + k) % 4; } /* 0: empty */

typedef struct role {
    int depth;
    caudal_policy policy;
    int last_k;   /* publishes steps 0..last_k */
    int crash;    /* then ends without goodbye (else closes cleanly) */
    int wait_fd;  /* >= 0: read a byte from it before ending step 0 */
    int tell_fd;  /* >= 0: publish step 0, try 1..5 (dropped), then write a byte */
    int hello_fd; /* >= 0: write a byte to it once connected */
    int after_fd; /* >= 0: read a byte from it before the first step */
} role;

typedef struct run {
    int tcp;
    char endpoint[128];
    role roles[NRANKS];
    int pipe_fd[2];  /* rank 2 tells rank 0 that it dropped */
    int hello_fd[2]; /* rank 0 tells rank 2 that it is connected */
} run;

typedef struct rank_arg {
    run *rn;
    int rank;
} rank_arg;

static void publish(caudal_client *c, int rank, int k)
{
    CHECK_RC(caudal_begin_step(c, step_of(k)), CAUDAL_OK);
    double a[ELEMS];
    int32_t v[VAR_CAP];
    if (puts_a(rank, k)) {
        fill_pattern(a, sizeof a, rank, 0, step_of(k));
        CHECK_RC(caudal_put(c, "a", CAUDAL_FLOAT64, a), CAUDAL_OK);
    }
    if (puts_v(rank, k)) {
        fill_pattern(v, v_count(rank, k) * sizeof *v, rank, 1, step_of(k));
        CHECK_RC(caudal_put_var(c, "v", CAUDAL_INT32, v, v_count(rank, k)), CAUDAL_OK);
    }
}

static int run_rank(void *arg)
{
    run *rn = ((rank_arg *)arg)->rn;
    int rank = ((rank_arg *)arg)->rank;
    const role *ro = &rn->roles[rank];
    if (ro->wait_fd < 0)
        close(rn->pipe_fd[0]);
    if (ro->tell_fd < 0)
        close(rn->pipe_fd[1]);
    if (ro->after_fd < 0)
        close(rn->hello_fd[0]);
    if (ro->hello_fd < 0)
        close(rn->hello_fd[1]);
    caudal_options o;
    caudal_options_init(&o);
    o.ring_depth = (unsigned)ro->depth;
    o.policy = ro->policy;
    caudal_client *c = open_client(rn->endpoint, "tok-gather", rank, NRANKS, &o);
    uint64_t shape = NRANKS * ELEMS, start = (uint64_t)rank * ELEMS, count = ELEMS;
    CHECK_RC(caudal_declare(c, "a", CAUDAL_FLOAT64, 1, &shape, &start, &count,
                            CAUDAL_ORDER_C),
             CAUDAL_OK);
    CHECK_RC(caudal_declare_var(c, "v", CAUDAL_INT32, VAR_CAP), CAUDAL_OK);
    /* Rank 0 holds step 0 back only once the receiver knows it. */
    if (ro->hello_fd >= 0)
        CHECK(write(ro->hello_fd, "h", 1) == 1);
    if (ro->after_fd >= 0) {
        char b;
        CHECK(read(ro->after_fd, &b, 1) == 1);
    }
    for (int k = 0; k <= ro->last_k; k++) {
        publish(c, rank, k);
        caudal_state st;
        CHECK_RC(caudal_get_state(c, &st), CAUDAL_OK);
        if (ro->tell_fd >= 0 && k >= 1 && k <= 5)
            CHECK(st.dropping); /* the receiver holds its only slot */
        if (k == 0 && ro->wait_fd >= 0) {
            char b;
            CHECK(read(ro->wait_fd, &b, 1) == 1);
        }
        CHECK_RC(caudal_end_step(c), CAUDAL_OK);
        if (k == 5 && ro->tell_fd >= 0)
            CHECK(write(ro->tell_fd, "x", 1) == 1);
    }
    if (ro->crash) {
        /* Mid-step, without goodbye: the receiver sees the socket close. */
        CHECK_RC(caudal_begin_step(c, step_of(ro->last_k + 1)), CAUDAL_OK);
        _exit(0);
    }
    CHECK_RC(caudal_close(&c), CAUDAL_OK);
    return 0;
}

/* ---- the receiving side -------------------------------------------------- */

typedef struct seen {
    int got[NRANKS][NSTEPS][2]; /* blocks received per (rank, step index, array) */
    int dropped[NRANKS][NSTEPS];
    uint64_t drop_count[NRANKS];
    int64_t high[NRANKS]; /* from the last STEPS event that listed the rank */
    int left[NRANKS], connected[NRANKS];
    caudal_counters counters[NRANKS];
    int steps_events, early;
} seen;

static int k_of(uint64_t step)
{
    CHECK(step % 2 == 0 && step / 2 < NSTEPS);
    return (int)(step / 2);
}

static void check_block(const caudal_step_block *b)
{
    int a = strcmp(b->array->name, "a") == 0 ? 0 : 1;
    int k = k_of(b->step);
    CHECK(b->rank >= 0 && b->rank < NRANKS);
    CHECK(a == 0 ? puts_a(b->rank, k) : puts_v(b->rank, k));
    uint64_t n = a == 0 ? ELEMS : v_count(b->rank, k);
    CHECK(b->count == n && b->nbytes == n * (a == 0 ? 8 : 4));
    CHECK((uintptr_t)b->data % 64 == 0);
    CHECK(matches_pattern(b->data, b->nbytes, b->rank, a, b->step));
}

/* One STEPS event: well formed, its complete blocks of steps every listed
 * rank finished, each block new; then released. */
static void take_steps(seen *s, const caudal_event *ev)
{
    s->steps_events++;
    CHECK(ev->rank == -1 && ev->ncomplete <= ev->nblocks);
    int64_t floor = INT64_MAX;
    for (uint32_t i = 0; i < ev->nprogress; i++) {
        const caudal_rank_progress *p = &ev->progress[i];
        CHECK(p->rank >= 0 && p->rank < NRANKS && !s->left[p->rank]);
        CHECK(i == 0 || ev->progress[i - 1].rank < p->rank);
        CHECK(p->high >= s->high[p->rank]); /* a rank's progress never goes back */
        s->high[p->rank] = p->high;
        if (p->high < floor)
            floor = p->high;
    }
    for (uint32_t i = 0; i < ev->ndrops; i++) {
        const caudal_rank_drop *d = &ev->drops[i];
        CHECK(d->rank >= 0 && d->rank < NRANKS && !s->left[d->rank]);
        CHECK(d->first_step <= d->last_step && d->count == (d->last_step - d->first_step) / 2 + 1);
        for (uint64_t st = d->first_step; st <= d->last_step; st += 2) {
            CHECK(!s->dropped[d->rank][k_of(st)]);
            s->dropped[d->rank][k_of(st)] = 1;
        }
        s->drop_count[d->rank] += d->count;
    }
    for (uint32_t i = 0; i < ev->nblocks; i++) {
        const caudal_step_block *b = &ev->blocks[i];
        check_block(b);
        int a = strcmp(b->array->name, "a") == 0 ? 0 : 1;
        CHECK(s->got[b->rank][k_of(b->step)][a]++ == 0);
        if (i < ev->ncomplete) {
            /* Complete: every rank still connected finished that step. */
            CHECK((int64_t)b->step <= floor);
            if (i > 0)
                CHECK(ev->blocks[i - 1].step < b->step ||
                      (ev->blocks[i - 1].step == b->step && ev->blocks[i - 1].rank <= b->rank));
        } else {
            s->early++;
            CHECK((int64_t)b->step > floor);
        }
        CHECK_RC(caudal_block_release(b->block), CAUDAL_OK);
    }
}

/* Events until every rank left; returns how many ranks left without goodbye. */
static int receive(caudal_receiver *r, seen *s, int nranks)
{
    int gone = 0, lost = 0;
    for (int i = 0; i < NRANKS; i++)
        s->high[i] = -1;
    while (gone < nranks) {
        caudal_event ev;
        CHECK_RC(caudal_receiver_next(r, &ev, WAIT_MS), CAUDAL_OK);
        switch (ev.type) {
        case CAUDAL_EVENT_CONNECT:
            CHECK(!s->connected[ev.rank]++);
            break;
        case CAUDAL_EVENT_DECLARE:
            CHECK(s->connected[ev.rank]);
            break;
        case CAUDAL_EVENT_STEPS:
            take_steps(s, &ev);
            break;
        case CAUDAL_EVENT_BYE:
        case CAUDAL_EVENT_DISCONNECT:
            CHECK(s->connected[ev.rank] && !s->left[ev.rank]);
            s->left[ev.rank] = 1;
            if (ev.type == CAUDAL_EVENT_BYE) {
                s->counters[ev.rank] = ev.counters;
                /* Its drops came before its goodbye. */
                CHECK(s->drop_count[ev.rank] == ev.counters.steps_dropped);
            } else {
                CHECK(ev.rank == 4); /* the one that died */
                lost++;
            }
            gone++;
            break;
        default:
            fprintf(stderr, "unexpected event %d from rank %d\n", ev.type, ev.rank);
            CHECK(0);
        }
    }
    return lost;
}

/* A gathering receiver, over tcp or a unix socket named by `tag`, with
 * max_held_bytes `max_held` (0: the default); its endpoint (the port
 * chosen) into ep. */
static caudal_receiver *open_gathering(int tcp, const char *tag, uint64_t max_held, char *ep,
                                       size_t n)
{
    char want[128];
    if (tcp)
        snprintf(want, sizeof want, "tcp:127.0.0.1:0");
    else
        unix_endpoint(want, sizeof want, tag);
    caudal_receiver_options ro;
    caudal_receiver_options_init(&ro);
    ro.endpoint = want;
    ro.token = "tok-gather";
    ro.gather = 1;
    ro.max_held_bytes = max_held;
    caudal_receiver *r = open_receiver_with(&ro);
    snprintf(ep, n, "%s", caudal_receiver_endpoint(r));
    return r;
}

static void mixed(int tcp)
{
    run rn;
    memset(&rn, 0, sizeof rn);
    rn.tcp = tcp;
    CHECK(pipe(rn.pipe_fd) == 0 && pipe(rn.hello_fd) == 0);
    caudal_receiver *r = open_gathering(tcp, "gather", 0, rn.endpoint, sizeof rn.endpoint);
    for (int i = 0; i < NRANKS; i++)
        rn.roles[i] = (role){.depth = 4, .policy = CAUDAL_POLICY_BLOCK, .last_k = NSTEPS - 1,
                             .wait_fd = -1, .tell_fd = -1, .hello_fd = -1, .after_fd = -1};
    rn.roles[3].last_k = 4; /* leaves cleanly after step index 4 */
    rn.roles[4].last_k = 6; /* dies after step index 6 */
    rn.roles[4].crash = 1;
    if (!tcp) {
        /* Rank 2's only slot stays held (rank 0 has not finished step 0),
         * so it drops steps 1..5; only then does rank 0 go on. Over tcp a
         * slot is free once sent: no drops to force that way. */
        rn.roles[0].wait_fd = rn.pipe_fd[0];
        rn.roles[0].hello_fd = rn.hello_fd[1];
        rn.roles[2] = (role){.depth = 1, .policy = CAUDAL_POLICY_DROP, .last_k = NSTEPS - 1,
                             .wait_fd = -1, .tell_fd = rn.pipe_fd[1], .hello_fd = -1,
                             .after_fd = rn.hello_fd[0]};
    }
    pid_t pids[NRANKS];
    rank_arg args[NRANKS];
    for (int i = 0; i < NRANKS; i++) {
        args[i] = (rank_arg){&rn, i};
        pids[i] = spawn(run_rank, &args[i]);
    }
    close(rn.pipe_fd[0]);
    close(rn.pipe_fd[1]);
    close(rn.hello_fd[0]);
    close(rn.hello_fd[1]);
    seen *s = calloc(1, sizeof *s);
    CHECK(s);
    CHECK(receive(r, s, NRANKS) == 1);
    for (int i = 0; i < NRANKS; i++)
        CHECK(wait_exit(pids[i]) == 0);
    /* Every step a rank published came, once per block it put; every step it
     * dropped was said, and nothing else is missing. */
    for (int rank = 0; rank < NRANKS; rank++)
        for (int k = 0; k < NSTEPS; k++) {
            int sent = k <= rn.roles[rank].last_k && !s->dropped[rank][k];
            CHECK(s->got[rank][k][0] == (sent && puts_a(rank, k)));
            CHECK(s->got[rank][k][1] == (sent && puts_v(rank, k)));
        }
    if (!tcp) {
        for (int k = 1; k <= 5; k++)
            CHECK(s->dropped[2][k]);
        CHECK(s->counters[2].steps_dropped >= 5);
    }
    for (int rank = 0; rank < NRANKS; rank++)
        if (rank != 4)
            CHECK(s->counters[rank].steps_sent + s->counters[rank].steps_dropped ==
                  (uint64_t)rn.roles[rank].last_k + 1);
    CHECK(s->early == 0);
    /* One event per step the node finished, give or take the leaving ranks'
     * and the connecting ones': far fewer than one per block. */
    CHECK(s->steps_events <= 2 * NSTEPS + 2 * NRANKS);
    free(s);
    CHECK_RC(caudal_receiver_close(&r), CAUDAL_OK);
}

/* ---- held blocks: early, and at close ------------------------------------ */

#define BIG (32u << 10)

static char early_ep[128];

/* Rank 0: three inline blocks of 32 KiB per step, against a receiver that
 * holds at most 64 KiB of them per connection; rank 1: one small block. */
static int early_rank(void *arg)
{
    int rank = *(int *)arg;
    caudal_client *c = open_client(early_ep, "tok-gather", rank, 2, NULL);
    const char *names[3] = {"x", "y", "z"};
    int n = rank == 0 ? 3 : 1;
    uint64_t len = rank == 0 ? BIG : 8, zero = 0;
    for (int a = 0; a < n; a++)
        CHECK_RC(caudal_declare(c, names[a], CAUDAL_UINT8, 1, &len, &zero, &len,
                                CAUDAL_ORDER_C),
                 CAUDAL_OK);
    uint8_t *buf = malloc(len);
    CHECK(buf);
    for (uint64_t step = 0; step < 4; step++) {
        CHECK_RC(caudal_begin_step(c, step), CAUDAL_OK);
        for (int a = 0; a < n; a++) {
            fill_pattern(buf, len, rank, a, step);
            CHECK_RC(caudal_put(c, names[a], CAUDAL_UINT8, buf), CAUDAL_OK);
        }
        CHECK_RC(caudal_end_step(c), CAUDAL_OK);
    }
    free(buf);
    CHECK_RC(caudal_close(&c), CAUDAL_OK);
    return 0;
}

static void early(void)
{
    caudal_receiver *r = open_gathering(1, NULL, 2 * BIG, early_ep, sizeof early_ep);
    int ranks[2] = {0, 1};
    pid_t pids[2] = {spawn(early_rank, &ranks[0]), spawn(early_rank, &ranks[1])};
    int got[2][4][3] = {{{0}}}, byes = 0, early_blocks = 0;
    while (byes < 2) {
        caudal_event ev;
        CHECK_RC(caudal_receiver_next(r, &ev, WAIT_MS), CAUDAL_OK);
        CHECK(ev.type != CAUDAL_EVENT_DISCONNECT && ev.type != CAUDAL_EVENT_REFUSED);
        byes += ev.type == CAUDAL_EVENT_BYE;
        if (ev.type != CAUDAL_EVENT_STEPS)
            continue;
        for (uint32_t i = 0; i < ev.nblocks; i++) {
            const caudal_step_block *b = &ev.blocks[i];
            int a = b->array->name[0] == 'x' ? 0 : b->array->name[0] == 'y' ? 1 : 2;
            CHECK(b->step < 4 && !b->in_shared_memory);
            CHECK(matches_pattern(b->data, b->nbytes, b->rank, a, b->step));
            CHECK(got[b->rank][b->step][a]++ == 0);
            if (i >= ev.ncomplete) {
                CHECK(b->rank == 0); /* only the rank that would wait for itself */
                early_blocks++;
            }
            CHECK_RC(caudal_block_release(b->block), CAUDAL_OK);
        }
    }
    for (int rank = 0; rank < 2; rank++)
        for (int step = 0; step < 4; step++)
            for (int a = 0; a < 3; a++)
                CHECK(got[rank][step][a] == (rank == 0 || a == 0));
    /* Each step of rank 0 passes the limit before its end: some of its
     * blocks went early every step. */
    CHECK(early_blocks >= 4);
    for (int i = 0; i < 2; i++)
        CHECK(wait_exit(pids[i]) == 0);
    CHECK_RC(caudal_receiver_close(&r), CAUDAL_OK);
}

static char close_ep[128];
static int close_go[2];

/* Rank 0 publishes a step and leaves; rank 1 connects, holds every step back
 * and waits until the receiver is gone. */
static int close_rank(void *arg)
{
    int rank = *(int *)arg;
    close(close_go[1]);
    caudal_client *c = open_client(close_ep, "tok-gather", rank, 2, NULL);
    uint64_t len = 100, zero = 0;
    CHECK_RC(caudal_declare(c, "f", CAUDAL_UINT8, 1, &len, &zero, &len, CAUDAL_ORDER_C),
             CAUDAL_OK);
    if (rank == 1) {
        char b;
        CHECK(read(close_go[0], &b, 1) == 0); /* the parent closed its end */
        caudal_close(&c);                   /* the receiver is gone: any status */
        return 0;
    }
    uint8_t buf[100];
    fill_pattern(buf, sizeof buf, 0, 0, 0);
    CHECK_RC(caudal_begin_step(c, 0), CAUDAL_OK);
    CHECK_RC(caudal_put(c, "f", CAUDAL_UINT8, buf), CAUDAL_OK);
    CHECK_RC(caudal_end_step(c), CAUDAL_OK);
    CHECK_RC(caudal_close(&c), CAUDAL_OK);
    return 0;
}

static void close_holding(int tcp)
{
    caudal_receiver *r = open_gathering(tcp, "gather-close", 0, close_ep, sizeof close_ep);
    CHECK(pipe(close_go) == 0);
    int ranks[2] = {0, 1};
    pid_t p1 = spawn(close_rank, &ranks[1]);
    /* Rank 1 first, so that it holds step 0 back when rank 0 finishes it. */
    caudal_event ev;
    do
        CHECK_RC(caudal_receiver_next(r, &ev, WAIT_MS), CAUDAL_OK);
    while (ev.type != CAUDAL_EVENT_CONNECT);
    pid_t p0 = spawn(close_rank, &ranks[0]);
    int bye = 0;
    while (!bye) {
        CHECK_RC(caudal_receiver_next(r, &ev, WAIT_MS), CAUDAL_OK);
        /* Rank 1 finished no step: rank 0's block stays held. */
        CHECK(ev.type != CAUDAL_EVENT_STEPS || ev.nblocks == 0);
        bye = ev.type == CAUDAL_EVENT_BYE && ev.rank == 0;
    }
    CHECK(wait_exit(p0) == 0);
    CHECK_RC(caudal_receiver_close(&r), CAUDAL_OK); /* frees the held block */
    close(close_go[0]);
    close(close_go[1]);
    CHECK(wait_exit(p1) == 0);
}

/* Ranks that end while the receiver is not looking (a launcher killing the
 * others after one died) are reported in the order they ended, so that the
 * first DISCONNECT names the rank that failed, whatever their order in the
 * receiver's list. */
#define ENDS_RANKS 4
#define ENDS_FIRST 2
static char ends_ep[128];
static int ends_go[2];

static int ends_rank(void *arg)
{
    int rank = *(int *)arg;
    close(ends_go[1]);
    caudal_client *c = open_client(ends_ep, "tok-gather", rank, ENDS_RANKS, NULL);
    char b;
    CHECK(read(ends_go[0], &b, 1) == 0); /* killed before this returns */
    caudal_close(&c);
    return 0;
}

static void ends_in_order(void)
{
    caudal_receiver *r = open_gathering(0, "gather-ends", 0, ends_ep, sizeof ends_ep);
    CHECK(pipe(ends_go) == 0);
    int ranks[ENDS_RANKS];
    pid_t pids[ENDS_RANKS];
    caudal_event ev;
    for (int k = 0; k < ENDS_RANKS; k++) { /* connected in rank order */
        ranks[k] = k;
        pids[k] = spawn(ends_rank, &ranks[k]);
        do
            CHECK_RC(caudal_receiver_next(r, &ev, WAIT_MS), CAUDAL_OK);
        while (ev.type != CAUDAL_EVENT_CONNECT);
        CHECK(ev.rank == k);
    }
    /* Idle, as between steps: what it had to read is read. */
    CHECK_RC(caudal_receiver_next(r, &ev, 50), CAUDAL_ERR_TIMEOUT);
    /* ENDS_FIRST dies, then the others, all before the receiver looks. */
    CHECK(kill(pids[ENDS_FIRST], SIGKILL) == 0);
    CHECK(wait_exit(pids[ENDS_FIRST]) == 128 + SIGKILL);
    for (int k = 0; k < ENDS_RANKS; k++)
        if (k != ENDS_FIRST) {
            CHECK(kill(pids[k], SIGKILL) == 0);
            CHECK(wait_exit(pids[k]) == 128 + SIGKILL);
        }
    int order[ENDS_RANKS], n = 0;
    while (n < ENDS_RANKS) {
        CHECK_RC(caudal_receiver_next(r, &ev, WAIT_MS), CAUDAL_OK);
        CHECK(ev.type == CAUDAL_EVENT_DISCONNECT || ev.type == CAUDAL_EVENT_STEPS);
        if (ev.type == CAUDAL_EVENT_DISCONNECT)
            order[n++] = ev.rank;
    }
    CHECK(order[0] == ENDS_FIRST);
    CHECK_RC(caudal_receiver_close(&r), CAUDAL_OK);
    close(ends_go[0]);
    close(ends_go[1]);
}

int main(void)
{
    mixed(0);
    mixed(1);
    early();
    close_holding(0);
    close_holding(1);
    ends_in_order();
    printf("gather: out-of-step, dropping, leaving and dying ranks over unix and tcp; "
           "early blocks; close while holding; ends reported in the order they came\n");
    return 0;
}
