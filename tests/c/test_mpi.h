/* test_mpi.h - the decomposition shared by test_mpi (receiver) and
 * test_mpi_rank (the MPI ranks). */
#ifndef CAUDAL_TEST_MPI_H
#define CAUDAL_TEST_MPI_H

#include <stdint.h>

#define TMPI_RANKS 4
#define TMPI_NX 10
#define TMPI_NY 7
#define TMPI_STEPS 5
#define TMPI_TOKEN "tok-mpi"

/* A 2 x 2 grid of ranks, cut unevenly: rows 0-3 | 4-9, columns 0-2 | 3-6. */
static inline void tmpi_block(int rank, uint64_t *start, uint64_t *count)
{
    static const uint64_t xcut[3] = {0, 4, TMPI_NX}, ycut[3] = {0, 3, TMPI_NY};
    int px = rank / 2, py = rank % 2;
    start[0] = xcut[px];
    count[0] = xcut[px + 1] - xcut[px];
    start[1] = ycut[py];
    count[1] = ycut[py + 1] - ycut[py];
}

/* Particles a rank holds at a step: varies, sometimes past the capacity 16,
 * sometimes none. */
static inline uint64_t tmpi_particles(int rank, uint64_t step)
{
    return ((uint64_t)rank * 7 + step * 3) % 40;
}

#endif
