/* One MPI rank of test_mpi: publishes its block of a 10 x 7 field, cut 2 x 2
 * unevenly, and a variable-length array, for 5 steps. Run by test_mpi as
 * `mpiexec -n 4 test_mpi_rank ENDPOINT`. Even ranks pass options with the
 * endpoint; odd ranks pass NULL options, so the endpoint and token come from
 * the environment that test_mpi sets. Each step the ranks read the steering
 * value "q" collectively (caudal_steer_get_double_mpi) and report the step
 * at which they first had it. */
#define _POSIX_C_SOURCE 200809L /* nanosleep */
#include <mpi.h>
#include <time.h>

#include "caudal_mpi.h"
#include "harness.h"
#include "test_mpi.h"

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    CHECK(size == TMPI_RANKS && argc == 2);

    caudal_client *c;
    char err[512];
    int rc;
    if (rank % 2 == 0) {
        caudal_options o;
        caudal_options_init(&o);
        o.rank = -5; /* replaced by the communicator's */
        o.endpoint = argv[1];
        o.token = TMPI_TOKEN;
        rc = caudal_open_mpi(&c, MPI_COMM_WORLD, &o, err, sizeof err);
    } else {
        rc = caudal_open_mpi(&c, MPI_COMM_WORLD, NULL, err, sizeof err);
    }
    if (rc != CAUDAL_OK) {
        fprintf(stderr, "rank %d: %s\n", rank, err);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }

    uint64_t start[2], count[2];
    tmpi_block(rank, start, count);
    const uint64_t shape[2] = {TMPI_NX, TMPI_NY};
    CHECK_RC(caudal_declare(c, "field", CAUDAL_FLOAT64, 2, shape, start, count, CAUDAL_ORDER_C),
             CAUDAL_OK);
    CHECK_RC(caudal_declare_var(c, "particles", CAUDAL_FLOAT32, 16), CAUDAL_OK);
    size_t nb = (size_t)(count[0] * count[1]) * sizeof(double);
    uint8_t *field = malloc(nb);
    float parts[64];
    int64_t applied = -1; /* the first step index at which q was read */
    for (uint64_t s = 0; s < TMPI_STEPS; s++) {
        uint64_t step = 10 * s; /* every tenth step */
        fill_pattern(field, nb, rank, 0, step);
        uint64_t np = tmpi_particles(rank, step);
        fill_pattern(parts, np * sizeof(float), rank, 1, step);
        CHECK_RC(caudal_begin_step(c, step), CAUDAL_OK);
        CHECK_RC(caudal_put(c, "field", CAUDAL_FLOAT64, field), CAUDAL_OK);
        CHECK_RC(caudal_put_var(c, "particles", CAUDAL_FLOAT32, parts, np), CAUDAL_OK);
        CHECK_RC(caudal_end_step(c), CAUDAL_OK);
        MPI_Barrier(MPI_COMM_WORLD); /* the ranks move in lockstep, as a solver does */
        /* test_mpi steers q once rank 1 ended step index 2: never before. */
        double q = -1.0;
        rc = caudal_steer_get_double_mpi(c, MPI_COMM_WORLD, 0, "q", &q);
        if (s < 2)
            CHECK(rc == CAUDAL_NO_VALUE && q == -1.0);
        else
            CHECK(rc == CAUDAL_NO_VALUE || (rc == CAUDAL_OK && q == 42.0));
        if (rc == CAUDAL_OK && applied < 0)
            applied = (int64_t)s;
    }
    /* Until every rank has it: the collective read ends the loop on every
     * rank at the same call. */
    for (int tries = 0; applied < 0; tries++) {
        CHECK(tries < 3000);
        nanosleep(&(struct timespec){.tv_nsec = 10000000}, NULL);
        double q = -1.0;
        if (caudal_steer_get_double_mpi(c, MPI_COMM_WORLD, 0, "q", &q) == CAUDAL_OK) {
            CHECK(q == 42.0);
            applied = TMPI_STEPS + tries;
        }
    }
    /* Root's status on every rank: another type; a NULL value on rank 3
     * fails there only, after the broadcast (no rank is left waiting). */
    int64_t n = 7;
    CHECK(caudal_steer_get_int64_mpi(c, MPI_COMM_WORLD, 0, "q", &n) == CAUDAL_ERR_TYPE && n == 7);
    double q = 0.0;
    rc = caudal_steer_get_double_mpi(c, MPI_COMM_WORLD, 0, "q", rank == 3 ? NULL : &q);
    CHECK(rank == 3 ? rc == CAUDAL_ERR_INVALID : rc == CAUDAL_OK && q == 42.0);
    CHECK_RC(caudal_steer_set_int64(c, "applied", applied), CAUDAL_OK);
    free(field);
    caudal_counters k;
    CHECK_RC(caudal_get_counters(c, &k), CAUDAL_OK);
    CHECK(k.steps_sent == TMPI_STEPS && k.blocks_sent == 2 * TMPI_STEPS && k.steps_dropped == 0);
    CHECK_RC(caudal_close(&c), CAUDAL_OK);
    MPI_Finalize();
    return 0;
}
