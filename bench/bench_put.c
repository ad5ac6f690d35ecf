/* bench_put - the cost of publishing a block against a plain memcpy of it.
 *
 * For each block size a client publishes steps of one block (begin_step, put,
 * end_step) over the shm transport to a receiver in another process that
 * releases every block at once. In the same run and process, memcpy copies
 * the same bytes between two warm buffers. Printed: microseconds per step and
 * the ratio to memcpy, for the time inside the calls without waiting for a
 * free slot (the simulation's own cost) and with it (bounded by how fast the
 * receiver hands slots back). A second baseline, memcpy followed by one small
 * message to a sleeping process over a unix socket pair, is the floor of any
 * design that copies once and wakes its reader once per step.
 *
 * usage: bench_put [--quick]
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "caudal.h"
#include "caudal_receiver.h"

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what, const char *msg)
{
    fprintf(stderr, "bench_put: %s: %s\n", what, msg);
    exit(1);
}

/* The receiving process: release everything, stop after `nclients` byes. */
static int serve(const char *endpoint, int nclients, int ready_fd)
{
    caudal_receiver_options ro;
    caudal_receiver_options_init(&ro);
    ro.endpoint = endpoint;
    ro.token = "bench";
    caudal_receiver *r;
    char err[256];
    if (caudal_receiver_open(&r, &ro, err, sizeof err) != CAUDAL_OK)
        die("receiver", err);
    if (write(ready_fd, "r", 1) != 1)
        return 1;
    close(ready_fd);
    int byes = 0;
    while (byes < nclients) {
        caudal_event ev;
        int rc = caudal_receiver_next(r, &ev, -1);
        if (rc != CAUDAL_OK)
            die("receiver next", caudal_receiver_last_error(r));
        if (ev.type == CAUDAL_EVENT_BLOCK)
            caudal_block_release(ev.block);
        else if (ev.type == CAUDAL_EVENT_BYE)
            byes++;
        else if (ev.type == CAUDAL_EVENT_DISCONNECT)
            die("receiver", ev.message);
    }
    caudal_receiver_close(&r);
    return 0;
}

typedef struct result {
    double memcpy_us, floor_us, put_us, total_us, wait_share;
} result;

/* `wake` is a socket whose peer process reads and sleeps again. */
static result measure(const char *endpoint, int wake, size_t bytes, int iters, unsigned depth)
{
    uint8_t *src = aligned_alloc(64, bytes), *dst = aligned_alloc(64, bytes);
    if (!src || !dst)
        die("alloc", "out of memory");
    memset(src, 1, bytes);
    memset(dst, 2, bytes);

    caudal_options o;
    caudal_options_init(&o);
    o.rank = 0;
    o.size = 1;
    o.endpoint = endpoint;
    o.token = "bench";
    o.ring_depth = depth;
    caudal_client *c;
    char err[512];
    if (caudal_open(&c, &o, err, sizeof err) != CAUDAL_OK)
        die("open", err);
    uint64_t shape = bytes, start = 0;
    if (caudal_declare(c, "block", CAUDAL_UINT8, 1, &shape, &start, &shape, CAUDAL_ORDER_C))
        die("declare", caudal_last_error(c));

    uint64_t step = 0;
    /* Warm up: the ring's pages, the receiver's mapping, the caches. */
    for (int i = 0; i < 3 + (int)depth; i++) {
        memcpy(dst, src, bytes);
        if (caudal_begin_step(c, step++) || caudal_put(c, "block", CAUDAL_UINT8, src) ||
            caudal_end_step(c))
            die("warm-up step", caudal_last_error(c));
    }
    /* Interleave the two so that both see the same machine state. */
    uint64_t t_memcpy = 0, t_floor = 0, t_total = 0;
    caudal_counters k0, k1;
    caudal_get_counters(c, &k0);
    char note[64] = {0};
    for (int i = 0; i < iters; i++) {
        uint64_t t0 = now_ns();
        memcpy(dst, src, bytes);
        __asm__ volatile("" ::"r"(dst) : "memory");
        uint64_t t01 = now_ns();
        memcpy(dst, src, bytes);
        __asm__ volatile("" ::"r"(dst) : "memory");
        if (send(wake, note, sizeof note, 0) != (ssize_t)sizeof note)
            die("wake", "send failed");
        uint64_t t1 = now_ns();
        t_floor += t1 - t01;
        if (caudal_begin_step(c, step++) || caudal_put(c, "block", CAUDAL_UINT8, src) ||
            caudal_end_step(c))
            die("step", caudal_last_error(c));
        uint64_t t2 = now_ns();
        t_memcpy += t01 - t0;
        t_total += t2 - t1;
    }
    caudal_get_counters(c, &k1);
    if (caudal_close(&c) != CAUDAL_OK)
        die("close", "failed");
    free(src);
    free(dst);
    uint64_t inside = k1.ns_in_calls - k0.ns_in_calls;
    uint64_t waiting = k1.ns_waiting - k0.ns_waiting;
    result r = {
        .memcpy_us = t_memcpy / 1e3 / iters,
        .floor_us = t_floor / 1e3 / iters,
        .put_us = (inside - waiting) / 1e3 / iters,
        .total_us = t_total / 1e3 / iters,
        .wait_share = inside ? (double)waiting / (double)inside : 0,
    };
    return r;
}

int main(int argc, char **argv)
{
    int quick = argc > 1 && strcmp(argv[1], "--quick") == 0;
    static const size_t sizes[] = {4u << 10, 16u << 10, 64u << 10, 256u << 10, 1u << 20,
                                   4u << 20, 16u << 20, 64u << 20, 256u << 20};
    int nsizes = quick ? 7 : (int)(sizeof sizes / sizeof sizes[0]);
    char endpoint[96];
    snprintf(endpoint, sizeof endpoint, "unix:/tmp/caudal-bench-%d.sock", (int)getpid());

    int pipefd[2];
    if (pipe(pipefd))
        die("pipe", "failed");
    pid_t pid = fork();
    if (pid == 0) {
        close(pipefd[0]);
        _exit(serve(endpoint, nsizes, pipefd[1]));
    }
    close(pipefd[1]);
    char ch;
    if (read(pipefd[0], &ch, 1) != 1)
        die("receiver", "did not start");
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv))
        die("socketpair", "failed");
    pid_t sleeper = fork();
    if (sleeper == 0) {
        close(sv[0]);
        char buf[4096];
        while (read(sv[1], buf, sizeof buf) > 0) {
        }
        _exit(0);
    }
    close(sv[1]);

    printf("publish cost (begin_step + put + end_step, shm) against memcpy of the same "
           "bytes, same run\n\n");
    printf("| block | memcpy us | memcpy+wake us | publish us | publish/memcpy | "
           "publish/(memcpy+wake) | with slot waits us | ratio | waiting |\n");
    printf("|------:|----------:|---------------:|-----------:|---------------:|"
           "----------------------:|-------------------:|------:|--------:|\n");
    for (int s = 0; s < nsizes; s++) {
        size_t bytes = sizes[s];
        uint64_t budget = quick ? (256ull << 20) : (2ull << 30);
        int iters = (int)(budget / bytes);
        if (iters > 20000)
            iters = 20000;
        if (iters < 8)
            iters = 8;
        unsigned depth = bytes >= (64u << 20) ? 2 : 4;
        result r = measure(endpoint, sv[0], bytes, iters, depth);
        char label[32];
        if (bytes >= (1u << 20))
            snprintf(label, sizeof label, "%zu MiB", bytes >> 20);
        else
            snprintf(label, sizeof label, "%zu KiB", bytes >> 10);
        printf("| %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.0f%% |\n", label,
               r.memcpy_us, r.floor_us, r.put_us, r.put_us / r.memcpy_us,
               r.put_us / r.floor_us, r.total_us, r.total_us / r.memcpy_us,
               100 * r.wait_share);
        fflush(stdout);
    }
    close(sv[0]);
    waitpid(sleeper, NULL, 0);
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}
