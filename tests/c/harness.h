/* harness.h - tiny test support: checks, child processes, data patterns. */
#ifndef CAUDAL_TEST_HARNESS_H
#define CAUDAL_TEST_HARNESS_H

#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "caudal.h"
#include "caudal_receiver.h"

#define CHECK(cond)                                                             \
    do {                                                                        \
        if (!(cond)) {                                                          \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond); \
            exit(1);                                                            \
        }                                                                       \
    } while (0)

#define CHECK_RC(expr, want)                                                    \
    do {                                                                        \
        int rc_ = (expr);                                                       \
        if (rc_ != (want)) {                                                    \
            fprintf(stderr, "%s:%d: %s returned %d (%s), wanted %d (%s)\n",     \
                    __FILE__, __LINE__, #expr, rc_, caudal_strerror(rc_), (want), \
                    caudal_strerror(want));                                     \
            exit(1);                                                            \
        }                                                                       \
    } while (0)

/* For the kernels' status codes (kernels/caudal_kernels.h). */
#define CHECK_CDK(expr, want)                                                   \
    do {                                                                        \
        int rc_ = (expr);                                                       \
        if (rc_ != (want)) {                                                    \
            fprintf(stderr, "%s:%d: %s returned %d (%s), wanted %d\n", __FILE__, \
                    __LINE__, #expr, rc_, cdk_strerror(rc_), (want));           \
            exit(1);                                                            \
        }                                                                       \
    } while (0)

/* The client's message must contain `part`. */
#define CHECK_MSG(c, part)                                                      \
    do {                                                                        \
        const char *m_ = caudal_last_error(c);                                  \
        if (!strstr(m_, (part))) {                                              \
            fprintf(stderr, "%s:%d: message \"%s\" lacks \"%s\"\n", __FILE__,   \
                    __LINE__, m_, (part));                                      \
            exit(1);                                                            \
        }                                                                       \
    } while (0)

static inline uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Bytes that depend on (rank, array, step) only: the receiver recomputes them. */
static inline void fill_pattern(void *buf, size_t n, int rank, int array, uint64_t step)
{
    uint64_t s = ((uint64_t)rank << 48) ^ ((uint64_t)array << 32) ^ step;
    uint8_t *p = buf;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v = splitmix64(&s);
        memcpy(p + i, &v, 8);
    }
    uint64_t v = splitmix64(&s);
    memcpy(p + i, &v, n - i);
}

static inline int matches_pattern(const void *buf, size_t n, int rank, int array,
                                  uint64_t step)
{
    uint8_t *want = malloc(n ? n : 1);
    fill_pattern(want, n, rank, array, step);
    int ok = memcmp(want, buf, n) == 0;
    free(want);
    return ok;
}

/* Fork; the child runs fn(arg) and exits with its return value, through
 * exit() so that LeakSanitizer checks the child's memory too. */
static inline pid_t spawn(int (*fn)(void *), void *arg)
{
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0)
        exit(fn(arg));
    return pid;
}

static inline int wait_exit(pid_t pid)
{
    int st;
    CHECK(waitpid(pid, &st, 0) == pid);
    if (WIFSIGNALED(st)) {
        fprintf(stderr, "child %d killed by signal %d\n", (int)pid, WTERMSIG(st));
        return 128 + WTERMSIG(st);
    }
    return WEXITSTATUS(st);
}

/* A unique unix endpoint under /tmp (short, for the 107-byte limit). */
static inline void unix_endpoint(char *buf, size_t n, const char *tag)
{
    snprintf(buf, n, "unix:/tmp/caudal-test-%s-%d.sock", tag, (int)getpid());
}

static inline caudal_receiver *open_receiver_with(const caudal_receiver_options *ro)
{
    caudal_receiver *r;
    char err[256];
    int rc = caudal_receiver_open(&r, ro, err, sizeof err);
    if (rc != CAUDAL_OK) {
        fprintf(stderr, "receiver open %s: %s\n", ro->endpoint, err);
        exit(1);
    }
    return r;
}

static inline caudal_receiver *open_receiver(const char *endpoint, const char *token)
{
    caudal_receiver_options ro;
    caudal_receiver_options_init(&ro);
    ro.endpoint = endpoint;
    ro.token = token;
    return open_receiver_with(&ro);
}

static inline caudal_client *open_client(const char *endpoint, const char *token, int rank,
                                         int size, const caudal_options *base)
{
    caudal_options o;
    if (base)
        o = *base;
    else
        caudal_options_init(&o);
    o.rank = rank;
    o.size = size;
    o.endpoint = endpoint;
    o.token = token;
    caudal_client *c;
    char err[512];
    int rc = caudal_open(&c, &o, err, sizeof err);
    if (rc != CAUDAL_OK) {
        fprintf(stderr, "client open rank %d on %s: %s\n", rank, endpoint, err);
        exit(1);
    }
    return c;
}

#endif
