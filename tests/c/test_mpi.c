/* Real MPI ranks publishing to a receiver. This driver listens on a unix
 * socket, runs `MPIEXEC... test_mpi_rank ENDPOINT` (its arguments, then the
 * endpoint), and checks what the 4 ranks publish: every byte of every block,
 * that the blocks of the 2 x 2 decomposition tile the global field each step,
 * and that a steering value sent while they run is applied by every rank at
 * the same step (caudal_steer_get_double_mpi). The receiver is not an MPI
 * process, so MPI never has to start around it. */
#include "harness.h"
#include "test_mpi.h"

static uint64_t step_index(uint64_t step)
{
    CHECK(step % 10 == 0 && step / 10 < TMPI_STEPS);
    return step / 10;
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    char ep[128];
    unix_endpoint(ep, sizeof ep, "mpi");
    caudal_receiver *r = open_receiver(ep, TMPI_TOKEN);
    /* Odd ranks take endpoint and token from the environment. */
    setenv("CAUDAL_ENDPOINT", ep, 1);
    setenv("CAUDAL_TOKEN", TMPI_TOKEN, 1);
    /* Open MPI refuses root and more ranks than cores unless told; MPICH
     * ignores these. */
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
    setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", 0);

    char **cmd = calloc((size_t)argc + 1, sizeof *cmd);
    for (int i = 1; i < argc; i++)
        cmd[i - 1] = argv[i];
    cmd[argc - 1] = ep;
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        execvp(cmd[0], cmd);
        perror(cmd[0]);
        _exit(127);
    }

    int connected[TMPI_RANKS] = {0}, ends[TMPI_RANKS] = {0}, byes = 0;
    uint64_t blocks[TMPI_RANKS] = {0};
    uint8_t cover[TMPI_STEPS][TMPI_NX * TMPI_NY] = {{0}};
    int64_t applied[TMPI_RANKS] = {-1, -1, -1, -1};
    int idle = 0, mpiexec_done = 0, status = 0;
    while (byes < TMPI_RANKS) {
        caudal_event ev;
        int rc = caudal_receiver_next(r, &ev, 1000);
        if (rc == CAUDAL_ERR_TIMEOUT) {
            /* If mpiexec ended, nothing more will come: fail now, not at the
             * ctest timeout. */
            if (!mpiexec_done && waitpid(pid, &status, WNOHANG) == pid) {
                mpiexec_done = 1;
                fprintf(stderr, "mpiexec exited (status %d) before every rank said goodbye\n",
                        status);
                return 1;
            }
            CHECK(++idle < 120);
            continue;
        }
        CHECK_RC(rc, CAUDAL_OK);
        if (ev.type == CAUDAL_EVENT_DISCONNECT) {
            fprintf(stderr, "rank %d disconnected: %s\n", ev.rank, ev.message);
            return 1;
        }
        CHECK(ev.rank >= 0 && ev.rank < TMPI_RANKS && ev.size == TMPI_RANKS);
        uint64_t start[2], count[2];
        tmpi_block(ev.rank, start, count);
        switch (ev.type) {
        case CAUDAL_EVENT_CONNECT:
            CHECK(!connected[ev.rank]);
            connected[ev.rank] = 1;
            break;
        case CAUDAL_EVENT_DECLARE:
            if (!strcmp(ev.array->name, "field")) {
                CHECK(ev.array->dtype == CAUDAL_FLOAT64 && ev.array->ndim == 2);
                CHECK(!ev.array->variable && ev.array->order == CAUDAL_ORDER_C);
                CHECK(ev.array->shape[0] == TMPI_NX && ev.array->shape[1] == TMPI_NY);
                CHECK(ev.array->start[0] == start[0] && ev.array->start[1] == start[1]);
                CHECK(ev.array->count[0] == count[0] && ev.array->count[1] == count[1]);
            } else {
                CHECK(!strcmp(ev.array->name, "particles") && ev.array->variable);
                CHECK(ev.array->dtype == CAUDAL_FLOAT32 && ev.array->ndim == 1);
            }
            break;
        case CAUDAL_EVENT_BLOCK: {
            uint64_t i = step_index(ev.step);
            if (!strcmp(ev.array->name, "field")) {
                CHECK(ev.count == count[0] * count[1] && ev.nbytes == ev.count * 8);
                CHECK(matches_pattern(ev.data, ev.nbytes, ev.rank, 0, ev.step));
                for (uint64_t x = 0; x < count[0]; x++)
                    for (uint64_t y = 0; y < count[1]; y++) {
                        uint8_t *cell = &cover[i][(start[0] + x) * TMPI_NY + start[1] + y];
                        CHECK(*cell == 0);
                        *cell = 1;
                    }
            } else {
                uint64_t np = tmpi_particles(ev.rank, ev.step);
                CHECK(ev.count == np && ev.nbytes == np * 4);
                CHECK(matches_pattern(ev.data, ev.nbytes, ev.rank, 1, ev.step));
            }
            blocks[ev.rank]++;
            CHECK_RC(caudal_block_release(ev.block), CAUDAL_OK);
            break;
        }
        case CAUDAL_EVENT_STEP_END:
            CHECK(step_index(ev.step) == (uint64_t)ends[ev.rank]);
            CHECK(ev.nblocks == 2);
            ends[ev.rank]++;
            if (ev.rank == 1 && ends[1] == 3) /* while the ranks read it collectively */
                CHECK_RC(caudal_receiver_steer_double(r, -1, "q", 42.0), CAUDAL_OK);
            break;
        case CAUDAL_EVENT_STEER:
            CHECK(!strcmp(ev.key, "applied") && ev.value_type == CAUDAL_VALUE_INT64);
            applied[ev.rank] = ev.value_int64;
            break;
        case CAUDAL_EVENT_BYE:
            CHECK(ends[ev.rank] == TMPI_STEPS && blocks[ev.rank] == 2 * TMPI_STEPS);
            CHECK(ev.counters.steps_sent == TMPI_STEPS && ev.counters.steps_dropped == 0);
            CHECK(ev.counters.blocks_sent == 2 * TMPI_STEPS);
            byes++;
            break;
        default:
            CHECK(!"unexpected event");
        }
    }
    /* Every rank applied the steering value at the same step. */
    for (int i = 0; i < TMPI_RANKS; i++)
        CHECK(applied[i] >= 2 && applied[i] == applied[0]);
    /* The four blocks tile the field at every step. */
    for (int i = 0; i < TMPI_STEPS; i++)
        for (int e = 0; e < TMPI_NX * TMPI_NY; e++)
            CHECK(cover[i][e] == 1);
    if (!mpiexec_done)
        CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK_RC(caudal_receiver_close(&r), CAUDAL_OK);
    free(cmd);
    printf("mpi: %d ranks, %d steps, blocks tile the %d x %d field\n", TMPI_RANKS, TMPI_STEPS,
           TMPI_NX, TMPI_NY);
    return 0;
}
