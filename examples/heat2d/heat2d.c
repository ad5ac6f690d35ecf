/*
 * heat2d - explicit 2-D heat equation on an MPI process grid, publishing its
 * temperature field through libcaudal.
 *
 * usage: heat2d NX NY STEPS [--every K] [--mean FILE] [--dump-every D --dump PREFIX]
 *
 * The global NX x NY grid (zero temperature on the border) is split in blocks
 * over a 2-D grid of ranks; each step exchanges one-cell halos with the four
 * neighbours, applies u += alpha * laplacian(u) + q * source(x, y), and every
 * K steps publishes the block (a float64 array "temperature", C order). Each
 * step the global mean comes from MPI_Allreduce and rank 0 writes "step mean"
 * lines to FILE: the simulation's own answer, against which analytics are
 * checked. Every D steps the global field is also written with MPI-IO to
 * PREFIX-STEP.bin (raw float64, C order): the simulation's own dump, against
 * which a global array rebuilt by the analytics is compared bit for bit. The
 * analytics may steer the source strength with the double "q".
 *
 * Without CAUDAL_ENDPOINT in the environment nothing is published: the same
 * program is its own baseline with analytics off.
 */
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "caudal.h"
#include "caudal_mpi.h"

typedef struct grid {
    int nx, ny;         /* global */
    int x0, y0, lx, ly; /* this rank's block */
    int up, down, left, right;
    MPI_Comm cart;
    MPI_Datatype column;
} grid;

static void split(int n, int parts, int i, int *start, int *count)
{
    int base = n / parts, extra = n % parts;
    *count = base + (i < extra);
    *start = i * base + (i < extra ? i : extra);
}

static int setup(grid *g, int nx, int ny)
{
    int size, dims[2] = {0, 0}, periods[2] = {0, 0}, coords[2];
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    MPI_Dims_create(size, 2, dims);
    if (dims[0] > nx || dims[1] > ny)
        return -1;
    MPI_Cart_create(MPI_COMM_WORLD, 2, dims, periods, 0, &g->cart);
    int rank;
    MPI_Comm_rank(g->cart, &rank);
    MPI_Cart_coords(g->cart, rank, 2, coords);
    g->nx = nx;
    g->ny = ny;
    split(nx, dims[0], coords[0], &g->x0, &g->lx);
    split(ny, dims[1], coords[1], &g->y0, &g->ly);
    MPI_Cart_shift(g->cart, 0, 1, &g->up, &g->down);
    MPI_Cart_shift(g->cart, 1, 1, &g->left, &g->right);
    /* One column of the block: ly+2 is the row pitch with halos. */
    MPI_Type_vector(g->lx, 1, g->ly + 2, MPI_DOUBLE, &g->column);
    MPI_Type_commit(&g->column);
    return 0;
}

#define AT(u, i, j) (u)[(size_t)(i) * (size_t)(g->ly + 2) + (size_t)(j)]

static void exchange_halos(const grid *g, double *u)
{
    int ly = g->ly, lx = g->lx;
    MPI_Sendrecv(&AT(u, 1, 1), ly, MPI_DOUBLE, g->up, 0, &AT(u, lx + 1, 1), ly, MPI_DOUBLE,
                 g->down, 0, g->cart, MPI_STATUS_IGNORE);
    MPI_Sendrecv(&AT(u, lx, 1), ly, MPI_DOUBLE, g->down, 1, &AT(u, 0, 1), ly, MPI_DOUBLE,
                 g->up, 1, g->cart, MPI_STATUS_IGNORE);
    MPI_Sendrecv(&AT(u, 1, 1), 1, g->column, g->left, 2, &AT(u, 1, ly + 1), 1, g->column,
                 g->right, 2, g->cart, MPI_STATUS_IGNORE);
    MPI_Sendrecv(&AT(u, 1, ly), 1, g->column, g->right, 3, &AT(u, 1, 0), 1, g->column,
                 g->left, 3, g->cart, MPI_STATUS_IGNORE);
}

/* A Gaussian hot spot in the middle of the domain. */
static double source(const grid *g, int gi, int gj)
{
    double dx = (gi - g->nx / 2.0) / (g->nx / 8.0 + 1), dy = (gj - g->ny / 2.0) / (g->ny / 8.0 + 1);
    double r2 = dx * dx + dy * dy;
    return r2 < 9 ? 1.0 / (1.0 + r2) : 0.0;
}

/* One explicit step from u to v; the new interior also goes to `block`
 * (contiguous, for publishing). Returns the sum of the new block. */
static double update(const grid *g, const double *u, double *v, double *block,
                     const double *q0, double q)
{
    const double alpha = 0.2;
    double local = 0;
    for (int i = 1; i <= g->lx; i++)
        for (int j = 1; j <= g->ly; j++) {
            int gi = g->x0 + i - 1, gj = g->y0 + j - 1;
            size_t b = (size_t)(i - 1) * (size_t)g->ly + (size_t)(j - 1);
            double lap = AT(u, i - 1, j) + AT(u, i + 1, j) + AT(u, i, j - 1) +
                         AT(u, i, j + 1) - 4 * AT(u, i, j);
            /* The global border stays at zero temperature. */
            int border = gi == 0 || gj == 0 || gi == g->nx - 1 || gj == g->ny - 1;
            double x = border ? 0.0 : AT(u, i, j) + alpha * lap + q * q0[b];
            AT(v, i, j) = x;
            block[b] = x;
            local += x;
        }
    return local;
}

/* The global field of this step, each rank writing its block in place. */
static void dump(const grid *g, const double *block, const char *prefix, int step)
{
    char path[4096];
    snprintf(path, sizeof path, "%s-%d.bin", prefix, step);
    int sizes[2] = {g->nx, g->ny}, sub[2] = {g->lx, g->ly}, starts[2] = {g->x0, g->y0};
    MPI_Datatype view;
    MPI_Type_create_subarray(2, sizes, sub, starts, MPI_ORDER_C, MPI_DOUBLE, &view);
    MPI_Type_commit(&view);
    MPI_File f;
    if (MPI_File_open(g->cart, path, MPI_MODE_CREATE | MPI_MODE_WRONLY, MPI_INFO_NULL, &f) !=
        MPI_SUCCESS) {
        fprintf(stderr, "heat2d: cannot write %s\n", path);
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    MPI_File_set_view(f, 0, MPI_DOUBLE, view, "native", MPI_INFO_NULL);
    MPI_File_write_all(f, block, g->lx * g->ly, MPI_DOUBLE, MPI_STATUS_IGNORE);
    MPI_File_close(&f);
    MPI_Type_free(&view);
}

static int fail(caudal_client *c, const char *what, int rc)
{
    fprintf(stderr, "heat2d: %s: %s (%s)\n", what, caudal_last_error(c), caudal_strerror(rc));
    MPI_Abort(MPI_COMM_WORLD, 2);
    return 2;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    if (argc < 4) {
        if (rank == 0)
            fprintf(stderr, "usage: heat2d NX NY STEPS [--every K] [--mean FILE]\n");
        MPI_Finalize();
        return 1;
    }
    int nx = atoi(argv[1]), ny = atoi(argv[2]), steps = atoi(argv[3]), every = 1;
    int dump_every = 0;
    const char *mean_path = NULL, *dump_prefix = NULL;
    for (int a = 4; a + 1 < argc; a += 2) {
        if (strcmp(argv[a], "--every") == 0)
            every = atoi(argv[a + 1]);
        else if (strcmp(argv[a], "--mean") == 0)
            mean_path = argv[a + 1];
        else if (strcmp(argv[a], "--dump-every") == 0)
            dump_every = atoi(argv[a + 1]);
        else if (strcmp(argv[a], "--dump") == 0)
            dump_prefix = argv[a + 1];
    }
    grid g;
    if (nx < 1 || ny < 1 || steps < 0 || every < 1 || setup(&g, nx, ny) != 0) {
        if (rank == 0)
            fprintf(stderr, "heat2d: bad sizes %d x %d for this many ranks\n", nx, ny);
        MPI_Finalize();
        return 1;
    }
    size_t cells = (size_t)(g.lx + 2) * (size_t)(g.ly + 2);
    double *u = calloc(cells, sizeof *u), *v = calloc(cells, sizeof *v);
    double *block = malloc((size_t)g.lx * (size_t)g.ly * sizeof *block + 1);
    double *q0 = malloc((size_t)g.lx * (size_t)g.ly * sizeof *q0 + 1);
    for (int i = 0; i < g.lx; i++)
        for (int j = 0; j < g.ly; j++)
            q0[(size_t)i * g.ly + j] = source(&g, g.x0 + i, g.y0 + j);

    caudal_client *c = NULL;
    if (getenv("CAUDAL_ENDPOINT")) {
        char err[512];
        int rc = caudal_open_mpi(&c, g.cart, NULL, err, sizeof err);
        if (rc != CAUDAL_OK) {
            fprintf(stderr, "heat2d: rank %d: %s\n", rank, err);
            MPI_Abort(MPI_COMM_WORLD, 2);
        }
        uint64_t shape[2] = {(uint64_t)nx, (uint64_t)ny};
        uint64_t start[2] = {(uint64_t)g.x0, (uint64_t)g.y0};
        uint64_t count[2] = {(uint64_t)g.lx, (uint64_t)g.ly};
        rc = caudal_declare(c, "temperature", CAUDAL_FLOAT64, 2, shape, start, count,
                            CAUDAL_ORDER_C);
        if (rc != CAUDAL_OK)
            return fail(c, "declare", rc);
    }
    FILE *mean_out = NULL;
    if (rank == 0 && mean_path && !(mean_out = fopen(mean_path, "w"))) {
        perror(mean_path);
        MPI_Abort(MPI_COMM_WORLD, 2);
    }

    double q = 0.05;
    int told_type = 0; /* warned once of a steering value of another type */
    for (int step = 0; step < steps; step++) {
        exchange_halos(&g, u);
        double local = update(&g, u, v, block, q0, q);
        double *t = u;
        u = v;
        v = t;
        double total;
        MPI_Allreduce(&local, &total, 1, MPI_DOUBLE, MPI_SUM, g.cart);
        if (mean_out)
            fprintf(mean_out, "%d %.17g\n", step, total / ((double)nx * ny));
        if (dump_prefix && dump_every > 0 && step % dump_every == 0)
            dump(&g, block, dump_prefix, step);
        if (c && step % every == 0) {
            int rc;
            if ((rc = caudal_begin_step(c, (uint64_t)step)) != CAUDAL_OK)
                return fail(c, "begin_step", rc);
            if ((rc = caudal_put(c, "temperature", CAUDAL_FLOAT64, block)) != CAUDAL_OK)
                return fail(c, "put", rc);
            if ((rc = caudal_end_step(c)) != CAUDAL_OK)
                return fail(c, "end_step", rc);
            /* Every rank applies the value rank 0 has, at the same step. */
            rc = caudal_steer_get_double_mpi(c, g.cart, 0, "q", &q);
            if (rc == CAUDAL_ERR_TYPE && rank == 0 && !told_type)
                fprintf(stderr, "heat2d: the steering value q is not a number: ignored\n");
            told_type |= rc == CAUDAL_ERR_TYPE;
            if (rc != CAUDAL_OK && rc != CAUDAL_NO_VALUE && rc != CAUDAL_ERR_TYPE)
                return fail(c, "steer_get_double_mpi", rc);
        }
    }
    if (c) {
        caudal_counters k;
        caudal_get_counters(c, &k);
        int rc = caudal_close(&c);
        if (rc != CAUDAL_OK)
            fprintf(stderr, "heat2d: rank %d: close: %s\n", rank, caudal_strerror(rc));
        if (rank == 0)
            printf("heat2d: rank 0 published %llu steps (%llu dropped), %.3f ms inside caudal\n",
                   (unsigned long long)k.steps_sent, (unsigned long long)k.steps_dropped,
                   k.ns_in_calls / 1e6);
    }
    if (mean_out)
        fclose(mean_out);
    free(u);
    free(v);
    free(block);
    free(q0);
    MPI_Type_free(&g.column);
    MPI_Comm_free(&g.cart);
    MPI_Finalize();
    return 0;
}
