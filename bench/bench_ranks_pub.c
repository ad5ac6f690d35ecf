/* bench_ranks_pub - the light publisher of bench/bench_ranks.py.
 *
 *     bench_ranks_pub STEPS SLEEP_MS ELEMS ENDS_FILE
 *
 * Each MPI rank publishes ELEMS float64 per step, all equal to rank + step
 * (so the global mean of step s is (size - 1) / 2 + s), then sleeps SLEEP_MS:
 * a light simulation that leaves the cores to Caudal. Sleeping matters:
 * oversubscribed MPICH ranks that wait in MPI busy-poll, and would measure
 * MPI rather than Caudal, so the only collective is the one at the end. Each
 * rank notes the wall time (CLOCK_REALTIME, comparable with Python's
 * time.time()) when its end_step returned; rank 0 writes, per step, the
 * latest over the ranks to ENDS_FILE as "step seconds" lines. */
#define _POSIX_C_SOURCE 200809L
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "caudal_mpi.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int check(int rc, caudal_client *c, const char *what)
{
    if (rc != CAUDAL_OK) {
        fprintf(stderr, "bench_ranks_pub: %s: %s\n", what, c ? caudal_last_error(c) : "");
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    return rc;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    if (argc != 5) {
        fprintf(stderr, "usage: bench_ranks_pub STEPS SLEEP_MS ELEMS ENDS_FILE\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    int steps = atoi(argv[1]);
    long sleep_ms = atol(argv[2]);
    uint64_t elems = (uint64_t)atoll(argv[3]);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    double *x = malloc(elems * sizeof *x), *ends = calloc((size_t)steps, sizeof *ends),
           *latest = calloc((size_t)steps, sizeof *latest);
    if (!x || !ends || !latest)
        MPI_Abort(MPI_COMM_WORLD, 3);
    caudal_client *c = NULL;
    char err[512];
    if (caudal_open_mpi(&c, MPI_COMM_WORLD, NULL, err, sizeof err) != CAUDAL_OK) {
        fprintf(stderr, "bench_ranks_pub: rank %d: %s\n", rank, err);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    uint64_t shape = elems * (uint64_t)size, start = elems * (uint64_t)rank;
    check(caudal_declare(c, "x", CAUDAL_FLOAT64, 1, &shape, &start, &elems, CAUDAL_ORDER_C), c,
          "declare");
    struct timespec pause = {sleep_ms / 1000, (sleep_ms % 1000) * 1000000L};
    for (int s = 0; s < steps; s++) {
        for (uint64_t i = 0; i < elems; i++)
            x[i] = rank + s;
        check(caudal_begin_step(c, (uint64_t)s), c, "begin_step");
        check(caudal_put(c, "x", CAUDAL_FLOAT64, x), c, "put");
        check(caudal_end_step(c), c, "end_step");
        ends[s] = now_s();
        nanosleep(&pause, NULL);
    }
    check(caudal_close(&c), NULL, "close");
    MPI_Reduce(ends, latest, steps, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    if (rank == 0) {
        FILE *f = fopen(argv[4], "w");
        if (!f)
            MPI_Abort(MPI_COMM_WORLD, 4);
        for (int s = 0; s < steps; s++)
            fprintf(f, "%d %.6f\n", s, latest[s]);
        fclose(f);
    }
    free(x);
    free(ends);
    free(latest);
    MPI_Finalize();
    return 0;
}
