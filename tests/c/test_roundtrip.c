/* Random arrays, decompositions and steps, published by several client
 * processes to one receiver over shm and over tcp: every byte must arrive,
 * the blocks must tile each global array exactly, and the counters agree. */
#include "harness.h"

#define MAX_ARRAYS 4
#define MAX_RANKS 6

typedef struct plan_array {
    caudal_dtype dtype;
    caudal_order order;
    int variable;
    int ndim;
    uint64_t shape[CAUDAL_MAX_DIMS];
    uint64_t grid[CAUDAL_MAX_DIMS]; /* ranks per dimension; product = nranks */
    uint64_t cuts[CAUDAL_MAX_DIMS][MAX_RANKS + 1];
    uint64_t capacity;
} plan_array;

typedef struct plan {
    uint64_t seed;
    int tcp;
    int nranks;
    int narrays;
    int nsteps;
    uint64_t steps[16];
    unsigned depth;
    size_t slot_bytes;
    plan_array a[MAX_ARRAYS];
    char endpoint[128];
} plan;

static uint64_t rnd(uint64_t *s, uint64_t n) { return splitmix64(s) % n; }

static void make_plan(plan *p, uint64_t seed, int tcp)
{
    memset(p, 0, sizeof *p);
    uint64_t s = seed;
    p->seed = seed;
    p->tcp = tcp;
    p->nranks = 1 + (int)rnd(&s, MAX_RANKS);
    p->narrays = 1 + (int)rnd(&s, MAX_ARRAYS);
    p->nsteps = 3 + (int)rnd(&s, 6);
    uint64_t step = rnd(&s, 3);
    for (int i = 0; i < p->nsteps; i++) {
        p->steps[i] = step;
        step += 1 + rnd(&s, 3); /* gaps are allowed */
    }
    p->depth = 1 + (unsigned)rnd(&s, 4);
    /* Sometimes a slot too small for a step, to exercise the inline path. */
    p->slot_bytes = rnd(&s, 4) == 0 ? 64 * (1 + rnd(&s, 8)) : 0;
    for (int k = 0; k < p->narrays; k++) {
        plan_array *a = &p->a[k];
        a->dtype = (caudal_dtype)(1 + rnd(&s, 12));
        a->order = (caudal_order)rnd(&s, 2);
        a->variable = k == p->narrays - 1 && rnd(&s, 2);
        if (a->variable) {
            a->ndim = 1;
            a->capacity = rnd(&s, 40);
            continue;
        }
        a->ndim = 1 + (int)rnd(&s, 4);
        for (int d = 0; d < a->ndim; d++) {
            a->shape[d] = rnd(&s, 9); /* zero-length dimensions too */
            a->grid[d] = 1;
        }
        /* Spread the rank count over the dimensions: a random factorisation. */
        int left = p->nranks;
        for (int f = 2; left > 1;)
            if (left % f == 0) {
                a->grid[rnd(&s, (uint64_t)a->ndim)] *= (uint64_t)f;
                left /= f;
            } else {
                f++;
            }
        for (int d = 0; d < a->ndim; d++) {
            /* Sorted random cut points: uneven, possibly empty blocks. */
            a->cuts[d][0] = 0;
            a->cuts[d][a->grid[d]] = a->shape[d];
            for (uint64_t g = 1; g < a->grid[d]; g++)
                a->cuts[d][g] = rnd(&s, a->shape[d] + 1);
            for (uint64_t i = 1; i < a->grid[d]; i++)
                for (uint64_t j = i; j > 0 && a->cuts[d][j - 1] > a->cuts[d][j]; j--) {
                    uint64_t t = a->cuts[d][j];
                    a->cuts[d][j] = a->cuts[d][j - 1];
                    a->cuts[d][j - 1] = t;
                }
        }
    }
}

static void block_of(const plan_array *a, int rank, uint64_t *start, uint64_t *count)
{
    uint64_t r = (uint64_t)rank;
    for (int d = a->ndim - 1; d >= 0; d--) {
        uint64_t g = r % a->grid[d];
        r /= a->grid[d];
        start[d] = a->cuts[d][g];
        count[d] = a->cuts[d][g + 1] - a->cuts[d][g];
    }
}

/* Whether rank puts array k at step index i, and a variable array's length. */
static int puts_array(const plan *p, int rank, int k, int i)
{
    uint64_t s = p->seed ^ ((uint64_t)rank << 20) ^ ((uint64_t)k << 10) ^ (uint64_t)i;
    return rnd(&s, 5) != 0;
}

static uint64_t var_count(const plan *p, int rank, int i)
{
    uint64_t s = p->seed ^ 0xABCDu ^ ((uint64_t)rank << 20) ^ (uint64_t)i;
    return rnd(&s, 60);
}

static uint64_t volume(const uint64_t *count, int ndim)
{
    uint64_t v = 1;
    for (int d = 0; d < ndim; d++)
        v *= count[d];
    return v;
}

typedef struct rank_arg {
    const plan *p;
    int rank;
} rank_arg;

static int run_rank(void *arg)
{
    const plan *p = ((rank_arg *)arg)->p;
    int rank = ((rank_arg *)arg)->rank;
    caudal_options o;
    caudal_options_init(&o);
    o.ring_depth = p->depth;
    o.slot_bytes = p->slot_bytes;
    caudal_client *c = open_client(p->endpoint, "tok-rt", rank, p->nranks, &o);
    char name[32];
    for (int k = 0; k < p->narrays; k++) {
        const plan_array *a = &p->a[k];
        snprintf(name, sizeof name, "array%d", k);
        if (a->variable) {
            CHECK_RC(caudal_declare_var(c, name, a->dtype, a->capacity), CAUDAL_OK);
            continue;
        }
        uint64_t start[CAUDAL_MAX_DIMS], count[CAUDAL_MAX_DIMS];
        block_of(a, rank, start, count);
        CHECK_RC(caudal_declare(c, name, a->dtype, a->ndim, a->shape, start, count, a->order),
                 CAUDAL_OK);
    }
    uint64_t blocks = 0, bytes = 0;
    for (int i = 0; i < p->nsteps; i++) {
        CHECK_RC(caudal_begin_step(c, p->steps[i]), CAUDAL_OK);
        for (int k = 0; k < p->narrays; k++) {
            if (!puts_array(p, rank, k, i))
                continue;
            const plan_array *a = &p->a[k];
            snprintf(name, sizeof name, "array%d", k);
            uint64_t n;
            if (a->variable) {
                n = var_count(p, rank, i);
            } else {
                uint64_t start[CAUDAL_MAX_DIMS], count[CAUDAL_MAX_DIMS];
                block_of(a, rank, start, count);
                n = volume(count, a->ndim);
            }
            size_t nb = n * caudal_dtype_size(a->dtype);
            uint8_t *buf = malloc(nb + 1);
            fill_pattern(buf, nb, rank, k, p->steps[i]);
            if (a->variable)
                CHECK_RC(caudal_put_var(c, name, a->dtype, buf, n), CAUDAL_OK);
            else
                CHECK_RC(caudal_put(c, name, a->dtype, buf), CAUDAL_OK);
            memset(buf, 0xEE, nb); /* put copied: changing the source is harmless */
            free(buf);
            blocks++;
            bytes += nb;
        }
        CHECK_RC(caudal_end_step(c), CAUDAL_OK);
    }
    caudal_counters k;
    CHECK_RC(caudal_get_counters(c, &k), CAUDAL_OK);
    CHECK(k.steps_sent == (uint64_t)p->nsteps && k.steps_dropped == 0);
    CHECK(k.blocks_sent == blocks && k.bytes_sent == bytes);
    CHECK(k.ns_in_calls > 0);
    CHECK_RC(caudal_close(&c), CAUDAL_OK);
    CHECK(c == NULL);
    return 0;
}

/* Receiver side: check everything against the plan. */
static void receive_all(const plan *p, caudal_receiver *r)
{
    int byes = 0, connects = 0;
    int declared[MAX_RANKS] = {0}, ends[MAX_RANKS] = {0};
    uint64_t blocks_of_rank[MAX_RANKS] = {0};
    /* Coverage of each global array per step: every element exactly once. */
    uint8_t *cover[MAX_ARRAYS][16] = {{0}};
    caudal_block *held[4096];
    int nheld = 0;
    uint64_t hs = p->seed;
    while (byes < p->nranks) {
        caudal_event ev;
        int rc = caudal_receiver_next(r, &ev, 20000);
        CHECK_RC(rc, CAUDAL_OK);
        CHECK(ev.type != CAUDAL_EVENT_DISCONNECT);
        CHECK(ev.rank >= 0 && ev.rank < p->nranks && ev.size == p->nranks);
        switch (ev.type) {
        case CAUDAL_EVENT_CONNECT:
            connects++;
            break;
        case CAUDAL_EVENT_DECLARE: {
            int k = atoi(ev.array->name + 5);
            const plan_array *a = &p->a[k];
            CHECK(k == declared[ev.rank]++);
            CHECK(ev.array->dtype == a->dtype && ev.array->variable == a->variable);
            CHECK(ev.array->ndim == a->ndim);
            if (!a->variable) {
                uint64_t start[CAUDAL_MAX_DIMS], count[CAUDAL_MAX_DIMS];
                block_of(a, ev.rank, start, count);
                CHECK(ev.array->order == a->order);
                for (int d = 0; d < a->ndim; d++)
                    CHECK(ev.array->shape[d] == a->shape[d] && ev.array->start[d] == start[d] &&
                          ev.array->count[d] == count[d]);
            }
            break;
        }
        case CAUDAL_EVENT_BLOCK: {
            int k = atoi(ev.array->name + 5);
            const plan_array *a = &p->a[k];
            int i = 0;
            while (i < p->nsteps && p->steps[i] != ev.step)
                i++;
            CHECK(i < p->nsteps && puts_array(p, ev.rank, k, i));
            CHECK(((uintptr_t)ev.data % 64) == 0);
            uint64_t n = a->variable ? var_count(p, ev.rank, i)
                                     : volume(ev.array->count, a->ndim);
            CHECK(ev.count == n && ev.nbytes == n * caudal_dtype_size(a->dtype));
            CHECK(matches_pattern(ev.data, ev.nbytes, ev.rank, k, ev.step));
            if (!a->variable) {
                uint64_t vol = volume(a->shape, a->ndim);
                if (!cover[k][i])
                    cover[k][i] = calloc(vol + 1, 1);
                /* Mark the block's elements in the global index space. */
                uint64_t idx[CAUDAL_MAX_DIMS] = {0};
                for (uint64_t e = 0; e < n; e++) {
                    uint64_t flat = 0;
                    for (int d = 0; d < a->ndim; d++)
                        flat = flat * a->shape[d] + ev.array->start[d] + idx[d];
                    CHECK(cover[k][i][flat] == 0);
                    cover[k][i][flat] = 1;
                    for (int d = a->ndim - 1; d >= 0; d--) {
                        if (++idx[d] < ev.array->count[d])
                            break;
                        idx[d] = 0;
                    }
                }
            }
            blocks_of_rank[ev.rank]++;
            /* Hold some blocks a while, release others at once, in any order. */
            if (rnd(&hs, 3) == 0 && nheld < 4096) {
                held[nheld++] = ev.block;
            } else {
                CHECK_RC(caudal_block_release(ev.block), CAUDAL_OK);
            }
            while (nheld > 0 && rnd(&hs, 2) == 0) {
                int j = (int)rnd(&hs, (uint64_t)nheld);
                CHECK_RC(caudal_block_release(held[j]), CAUDAL_OK);
                held[j] = held[--nheld];
            }
            break;
        }
        case CAUDAL_EVENT_STEP_END: {
            int i = ends[ev.rank]++;
            CHECK(p->steps[i] == ev.step);
            uint32_t want = 0;
            for (int k = 0; k < p->narrays; k++)
                want += (uint32_t)puts_array(p, ev.rank, k, i);
            CHECK(ev.nblocks == want);
            /* Release everything held so that a ring of depth 1 keeps moving. */
            while (nheld > 0)
                CHECK_RC(caudal_block_release(held[--nheld]), CAUDAL_OK);
            break;
        }
        case CAUDAL_EVENT_BYE:
            CHECK(ev.counters.steps_sent == (uint64_t)p->nsteps);
            CHECK(ev.counters.blocks_sent == blocks_of_rank[ev.rank]);
            CHECK(ends[ev.rank] == p->nsteps);
            byes++;
            break;
        default:
            CHECK(!"unexpected event");
        }
    }
    CHECK(connects == p->nranks);
    /* Where every rank put a fixed array at a step, the blocks tile it. */
    for (int k = 0; k < p->narrays; k++)
        for (int i = 0; i < p->nsteps; i++) {
            int all = 1;
            for (int rk = 0; rk < p->nranks; rk++)
                all &= puts_array(p, rk, k, i);
            if (all && !p->a[k].variable && cover[k][i]) {
                uint64_t vol = volume(p->a[k].shape, p->a[k].ndim);
                for (uint64_t e = 0; e < vol; e++)
                    CHECK(cover[k][i][e] == 1);
            }
            free(cover[k][i]);
        }
}

/* Odd seeds receive without polling before sleeping (spin_us), even ones
 * with the default, and every third with a long poll: the same bytes
 * either way, whether the receiver sleeps on its sockets or stays awake. */
static void trial(uint64_t seed, int tcp)
{
    plan p;
    make_plan(&p, seed, tcp);
    caudal_receiver_options ro;
    caudal_receiver_options_init(&ro);
    ro.token = "tok-rt";
    ro.spin_us = seed % 2 ? CAUDAL_RECEIVER_NO_SPIN : seed % 3 ? 0 : 5000;
    char ep[128];
    if (tcp) {
        ro.endpoint = "tcp:127.0.0.1:0";
    } else {
        unix_endpoint(ep, sizeof ep, "rt");
        ro.endpoint = ep;
    }
    caudal_receiver *r = open_receiver_with(&ro);
    snprintf(p.endpoint, sizeof p.endpoint, "%s", caudal_receiver_endpoint(r));
    pid_t pids[MAX_RANKS];
    for (int rank = 0; rank < p.nranks; rank++) {
        rank_arg ra = {&p, rank};
        pids[rank] = spawn(run_rank, &ra);
    }
    receive_all(&p, r);
    for (int rank = 0; rank < p.nranks; rank++)
        CHECK(wait_exit(pids[rank]) == 0);
    CHECK_RC(caudal_receiver_close(&r), CAUDAL_OK);
}

/* ---- large blocks: a ring past the cache takes them with streaming stores */

/* 40 MiB and 13 bytes (not a multiple of the 64-byte stride), from an
 * unaligned source, into a ring of 2 slots: past the last-level cache of
 * most machines, so client.c's copy_to_slot streams; the bytes must be the
 * same whichever copy ran. */
#define LARGE ((size_t)(40u << 20) + 13)

static int large_rank(void *arg)
{
    caudal_options o;
    caudal_options_init(&o);
    o.ring_depth = 2;
    caudal_client *c = open_client(arg, "tok-rt", 0, 1, &o);
    uint8_t *buf = malloc(LARGE + 1);
    CHECK(buf);
    uint64_t shape = LARGE, start = 0;
    CHECK_RC(caudal_declare(c, "big", CAUDAL_UINT8, 1, &shape, &start, &shape,
                            CAUDAL_ORDER_C), CAUDAL_OK);
    for (uint64_t step = 0; step < 3; step++) {
        fill_pattern(buf + 1, LARGE, 0, 0, step);
        CHECK_RC(caudal_begin_step(c, step), CAUDAL_OK);
        CHECK_RC(caudal_put(c, "big", CAUDAL_UINT8, buf + 1), CAUDAL_OK);
        CHECK_RC(caudal_end_step(c), CAUDAL_OK);
    }
    free(buf);
    CHECK_RC(caudal_close(&c), CAUDAL_OK);
    return 0;
}

static void large_blocks(void)
{
    char ep[128];
    unix_endpoint(ep, sizeof ep, "rt-large");
    caudal_receiver *r = open_receiver(ep, "tok-rt");
    snprintf(ep, sizeof ep, "%s", caudal_receiver_endpoint(r));
    pid_t pid = spawn(large_rank, ep);
    uint64_t seen = 0;
    for (;;) {
        caudal_event ev;
        CHECK_RC(caudal_receiver_next(r, &ev, 20000), CAUDAL_OK);
        if (ev.type == CAUDAL_EVENT_BLOCK) {
            CHECK(ev.in_shared_memory && ev.nbytes == LARGE && ev.step == seen);
            CHECK(matches_pattern(ev.data, LARGE, 0, 0, ev.step));
            CHECK_RC(caudal_block_release(ev.block), CAUDAL_OK);
            seen++;
        } else if (ev.type == CAUDAL_EVENT_BYE || ev.type == CAUDAL_EVENT_DISCONNECT) {
            CHECK(ev.type == CAUDAL_EVENT_BYE);
            break;
        }
    }
    CHECK(seen == 3);
    CHECK(wait_exit(pid) == 0);
    CHECK_RC(caudal_receiver_close(&r), CAUDAL_OK);
}

int main(int argc, char **argv)
{
    int trials = argc > 1 ? atoi(argv[1]) : 40;
    for (int t = 0; t < trials; t++) {
        uint64_t seed = 0x5eed0000u + (uint64_t)t;
        trial(seed, 0);
        trial(seed, 1);
    }
    large_blocks();
    printf("roundtrip: %d trials over shm and tcp passed, and 3 steps of %zu bytes over shm\n",
           trials, LARGE);
    return 0;
}
