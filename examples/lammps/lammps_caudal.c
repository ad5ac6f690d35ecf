/*
 * lammps_caudal - runs an unchanged LAMMPS through its C library interface
 * (library.h) and publishes every rank's atoms through libcaudal.
 *
 * usage: lammps_caudal INPUT STEPS [--every N] [--log FILE] [-- LAMMPS ARGS]
 *
 * INPUT sets the system up (units, atoms, potential, fixes, computes, fix
 * ave/time files) and holds no `run`: this driver runs STEPS time steps as
 * `run N pre no post no`, N = --every (default 100), the documented way to
 * step LAMMPS from a program, and after step 0 and each N steps publishes
 * this rank's atoms, with x and v at the end of the step (what thermo and
 * fix ave/time see). LAMMPS gets `-var caudal_every N`, so that the input's
 * own outputs (fix ave/time) can follow the same steps, and the arguments
 * after `--` (for instance `-var out DIR`):
 *
 *   id     int64, n         the atoms' ids
 *   type   int32, n         their types
 *   x      float64, 3n      positions (x0 y0 z0 x1 ...), as LAMMPS holds them
 *                           (wrapped into the box at each reneighbouring)
 *   v      float64, 3n      velocities
 *   image  int32, 3n        image flags: x + image * (boxhi - boxlo) is the
 *                           unwrapped position
 *   box    float64, 9       boxlo, boxhi, then 1 or 0 per dimension: periodic
 *                           or not (rank 0's block; the others' are empty)
 *   mass   float64, T + 1   per-type masses, index 0 unused (rank 0's block)
 *   units  float64, 3       boltz, mvv2e and the time step dt, in the input's
 *                           units (rank 0's block)
 *
 * The first five are variable-length arrays: atoms move between ranks. The
 * run's own outputs (thermo, fix ave/time files) are LAMMPS's, written as
 * its input asks. Without CAUDAL_ENDPOINT in the environment nothing is
 * published: the same program is LAMMPS alone, its own baseline.
 */
#include <errno.h>
#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LAMMPS_LIB_MPI /* lammps_open with a communicator */
#include <lammps/library.h>

#include "caudal.h"
#include "caudal_mpi.h"

typedef struct driver {
    void *lmp;
    caudal_client *caudal; /* NULL: publishing off */
    int rank;
    int ntypes;
    int tag_bytes, image_bytes; /* sizeof(tagint), sizeof(imageint) in this LAMMPS */
    size_t cap;                 /* atoms the buffers below hold */
    int64_t *id;
    int32_t *image;
    double *box;
    double units[3];
} driver;

/* CAUDAL_ERR_* from libcaudal, or -1 with a message on stderr. */
static int fail(const driver *d, const char *what, long long step)
{
    fprintf(stderr, "lammps_caudal: rank %d, step %lld: %s\n", d->rank, step, what);
    return -1;
}

static int caudal_fail(const driver *d, const char *call, long long step)
{
    fprintf(stderr, "lammps_caudal: rank %d, step %lld: %s: %s\n", d->rank, step, call,
            caudal_last_error(d->caudal));
    return -1;
}

static int grow(driver *d, size_t n)
{
    if (n <= d->cap)
        return 0;
    size_t cap = n + n / 4 + 64;
    int64_t *id = realloc(d->id, cap * sizeof *id);
    if (!id)
        return -1;
    d->id = id;
    int32_t *image = realloc(d->image, 3 * cap * sizeof *image);
    if (!image)
        return -1;
    d->image = image;
    d->cap = cap;
    return 0;
}

/* LAMMPS packs an atom's three image counts into one imageint (lmptype.h:
 * IMGBITS bits each, offset by IMGMAX); 4-byte imageints use 10 bits, 8-byte
 * ones 21. */
static void unpack_images(const void *packed, int bytes, size_t n, int32_t *out)
{
    int bits = bytes == 8 ? 21 : 10;
    int64_t mask = ((int64_t)1 << bits) - 1, max = (int64_t)1 << (bits - 1);
    for (size_t i = 0; i < n; i++) {
        int64_t v = bytes == 8 ? ((const int64_t *)packed)[i] : ((const int32_t *)packed)[i];
        out[3 * i + 0] = (int32_t)((v & mask) - max);
        out[3 * i + 1] = (int32_t)((v >> bits & mask) - max);
        out[3 * i + 2] = (int32_t)((v >> 2 * bits) - max);
    }
}

static int declare(driver *d, int natoms_guess)
{
    caudal_client *c = d->caudal;
    uint64_t cap = (uint64_t)natoms_guess;
    uint64_t nine = 9, types = (uint64_t)d->ntypes + 1, zero = 0;
    uint64_t three = 3, three_count = d->rank == 0 ? 3 : 0;
    uint64_t box_count = d->rank == 0 ? 9 : 0, mass_count = d->rank == 0 ? types : 0;
    if (caudal_declare_var(c, "id", CAUDAL_INT64, cap) != CAUDAL_OK ||
        caudal_declare_var(c, "type", CAUDAL_INT32, cap) != CAUDAL_OK ||
        caudal_declare_var(c, "x", CAUDAL_FLOAT64, 3 * cap) != CAUDAL_OK ||
        caudal_declare_var(c, "v", CAUDAL_FLOAT64, 3 * cap) != CAUDAL_OK ||
        caudal_declare_var(c, "image", CAUDAL_INT32, 3 * cap) != CAUDAL_OK ||
        caudal_declare(c, "box", CAUDAL_FLOAT64, 1, &nine, &zero, &box_count, CAUDAL_ORDER_C) !=
            CAUDAL_OK ||
        caudal_declare(c, "mass", CAUDAL_FLOAT64, 1, &types, &zero, &mass_count,
                       CAUDAL_ORDER_C) != CAUDAL_OK ||
        caudal_declare(c, "units", CAUDAL_FLOAT64, 1, &three, &zero, &three_count,
                       CAUDAL_ORDER_C) != CAUDAL_OK)
        return caudal_fail(d, "caudal_declare", -1);
    return 0;
}

static int publish(driver *d, long long step)
{
    void *lmp = d->lmp;
    int n = lammps_extract_setting(lmp, "nlocal");
    const void *tag = lammps_extract_atom(lmp, "id");
    const int *type = lammps_extract_atom(lmp, "type");
    double **x = lammps_extract_atom(lmp, "x");
    double **v = lammps_extract_atom(lmp, "v");
    const void *image = lammps_extract_atom(lmp, "image");
    const double *mass = lammps_extract_atom(lmp, "mass");
    if (n < 0 || (n > 0 && (!tag || !type || !x || !v || !image)) || !mass)
        return fail(d, "LAMMPS gave no atom data (atom_style without ids, images or "
                       "per-type masses?)", step);
    if (grow(d, (size_t)n) != 0)
        return fail(d, "out of memory", step);
    for (int i = 0; i < n; i++)
        d->id[i] = d->tag_bytes == 8 ? ((const int64_t *)tag)[i] : ((const int32_t *)tag)[i];
    unpack_images(image, d->image_bytes, (size_t)n, d->image);
    double xy, yz, xz;
    int periodic[3], changed;
    lammps_extract_box(lmp, d->box, d->box + 3, &xy, &yz, &xz, periodic, &changed);
    for (int k = 0; k < 3; k++)
        d->box[6 + k] = periodic[k] ? 1.0 : 0.0;

    caudal_client *c = d->caudal;
    /* LAMMPS allocates per-atom vectors as one block: x[0] holds all 3n. */
    uint64_t un = (uint64_t)n;
    if (caudal_begin_step(c, (uint64_t)step) != CAUDAL_OK)
        return caudal_fail(d, "caudal_begin_step", step);
    if (caudal_put_var(c, "id", CAUDAL_INT64, d->id, un) != CAUDAL_OK ||
        caudal_put_var(c, "type", CAUDAL_INT32, type, un) != CAUDAL_OK ||
        caudal_put_var(c, "x", CAUDAL_FLOAT64, n ? x[0] : NULL, 3 * un) != CAUDAL_OK ||
        caudal_put_var(c, "v", CAUDAL_FLOAT64, n ? v[0] : NULL, 3 * un) != CAUDAL_OK ||
        caudal_put_var(c, "image", CAUDAL_INT32, d->image, 3 * un) != CAUDAL_OK ||
        caudal_put(c, "box", CAUDAL_FLOAT64, d->box) != CAUDAL_OK ||
        caudal_put(c, "mass", CAUDAL_FLOAT64, mass) != CAUDAL_OK ||
        caudal_put(c, "units", CAUDAL_FLOAT64, d->units) != CAUDAL_OK)
        return caudal_fail(d, "caudal_put", step);
    if (caudal_end_step(c) != CAUDAL_OK)
        return caudal_fail(d, "caudal_end_step", step);
    return 0;
}

/* LAMMPS built with exceptions (Debian's is) keeps an error for the caller
 * instead of exiting: what its command or file failed with. */
static int lammps_failed(const driver *d, const char *what, long long step)
{
    if (!lammps_has_error(d->lmp))
        return 0;
    char msg[512], line[640];
    lammps_get_last_error_message(d->lmp, msg, sizeof msg);
    snprintf(line, sizeof line, "LAMMPS failed in %s: %s", what, msg);
    return fail(d, line, step);
}

static long long timestep(void *lmp)
{
    /* ntimestep is a bigint: int64 in every build but SMALLSMALL */
    const void *p = lammps_extract_global(lmp, "ntimestep");
    return lammps_extract_setting(lmp, "bigint") == 8 ? (long long)*(const int64_t *)p
                                                       : (long long)*(const int32_t *)p;
}

static int run(driver *d, long long steps, long long every)
{
    char cmd[96];
    double t0 = MPI_Wtime(), in_publish = 0;
    /* run 0: LAMMPS's setup (forces, thermo and fix ave/time at step 0) */
    lammps_command(d->lmp, "run 0 post no");
    if (lammps_failed(d, "run 0", 0))
        return -1;
    for (long long done = 0;; done += every) {
        long long step = timestep(d->lmp);
        double p0 = MPI_Wtime();
        if (d->caudal && publish(d, step) != 0)
            return -1;
        in_publish += MPI_Wtime() - p0;
        if (done >= steps) {
            /* the run's own time, apart from Caudal's start and end around
             * it: what bench_lammps.py compares */
            double t = MPI_Wtime() - t0;
            if (d->rank == 0)
                printf("lammps_caudal: %lld steps in %.3f s (%.1f steps/s), %.3f s publishing\n",
                       steps, t, t > 0 ? (double)steps / t : 0.0, in_publish);
            return 0;
        }
        long long n = steps - done < every ? steps - done : every;
        snprintf(cmd, sizeof cmd, "run %lld pre no post no", n);
        lammps_command(d->lmp, cmd);
        if (lammps_failed(d, cmd, step))
            return -1;
    }
}

/* A whole non-negative number, all of text: 0, else -1. */
static int parse_count(const char *text, long long *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (errno || end == text || *end || v < 0)
        return -1;
    *out = v;
    return 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: lammps_caudal INPUT STEPS [--every N] [--log FILE] [-- LAMMPS ARGS]\n");
    return 2;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    driver d = {0};
    MPI_Comm_rank(MPI_COMM_WORLD, &d.rank);
    const char *input = NULL, *log = "none";
    long long steps = -1, every = 100;
    int lmp_from = argc; /* LAMMPS's own arguments, after "--" */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--")) {
            lmp_from = i + 1;
            break;
        }
        if (!strcmp(argv[i], "--every") || !strcmp(argv[i], "--log")) {
            if (i + 1 >= argc) {
                every = -1; /* an option without its value */
                break;
            }
            if (!strcmp(argv[i++], "--log"))
                log = argv[i];
            else if (parse_count(argv[i], &every) != 0)
                every = -1;
        } else if (!input) {
            input = argv[i];
        } else if (steps == -1) {
            if (parse_count(argv[i], &steps) != 0)
                steps = -2;
        } else {
            steps = -2; /* one argument too many */
        }
    }
    if (!input || steps < 0 || every <= 0) {
        if (d.rank == 0)
            fprintf(stderr, "lammps_caudal: %s\n", !input ? "no input file"
                            : steps < 0 ? "STEPS must be one whole number of steps, 0 or more"
                                        : "--every must be a whole number of steps, 1 or more");
        MPI_Finalize();
        return usage();
    }
    int rc = 1;
    char every_text[32];
    snprintf(every_text, sizeof every_text, "%lld", every);
    char **lmp_argv = calloc((size_t)(argc - lmp_from) + 8, sizeof *lmp_argv);
    if (!lmp_argv) {
        fail(&d, "out of memory", -1);
        goto out;
    }
    int lmp_argc = 0;
    lmp_argv[lmp_argc++] = "lammps_caudal";
    lmp_argv[lmp_argc++] = "-log";
    lmp_argv[lmp_argc++] = (char *)log;
    lmp_argv[lmp_argc++] = "-var";
    lmp_argv[lmp_argc++] = "caudal_every";
    lmp_argv[lmp_argc++] = every_text;
    for (int i = lmp_from; i < argc; i++)
        lmp_argv[lmp_argc++] = argv[i];
    d.lmp = lammps_open(lmp_argc, lmp_argv, MPI_COMM_WORLD, NULL);
    free(lmp_argv);
    if (!d.lmp) {
        fail(&d, "lammps_open failed", -1);
        goto out;
    }
    lammps_file(d.lmp, input);
    if (lammps_failed(&d, input, -1))
        goto out;
    if (!lammps_extract_setting(d.lmp, "box_exist")) {
        fail(&d, "the input made no simulation box", -1);
        goto out;
    }
    if (lammps_extract_setting(d.lmp, "triclinic")) {
        /* image * (boxhi - boxlo) unwraps, and the minimum image holds, only
         * in an orthogonal box: refuse rather than publish wrong geometry */
        fail(&d, "the box is triclinic (tilted): the atoms' positions are published for "
                 "orthogonal boxes only", -1);
        goto out;
    }
    d.ntypes = lammps_extract_setting(d.lmp, "ntypes");
    d.tag_bytes = lammps_extract_setting(d.lmp, "tagint");
    d.image_bytes = lammps_extract_setting(d.lmp, "imageint");
    d.units[0] = *(const double *)lammps_extract_global(d.lmp, "boltz");
    d.units[1] = *(const double *)lammps_extract_global(d.lmp, "mvv2e");
    d.units[2] = *(const double *)lammps_extract_global(d.lmp, "dt");
    d.box = calloc(9, sizeof *d.box);
    if (!d.box) {
        fail(&d, "out of memory", -1);
        goto out;
    }
    if (getenv("CAUDAL_ENDPOINT")) {
        char err[512];
        if (caudal_open_mpi(&d.caudal, MPI_COMM_WORLD, NULL, err, sizeof err) != CAUDAL_OK) {
            fail(&d, err, -1);
            goto out;
        }
        int size;
        MPI_Comm_size(MPI_COMM_WORLD, &size);
        /* a rank's usual atom count, with room for its share's fluctuation */
        double natoms = lammps_get_natoms(d.lmp);
        if (declare(&d, (int)(natoms / size * 1.25) + 64) != 0)
            goto out;
    }
    rc = run(&d, steps, every) == 0 ? 0 : 1;
out:
    if (d.caudal) {
        char err[512] = "";
        if (caudal_close_report(&d.caudal, err, sizeof err) != CAUDAL_OK && rc == 0) {
            fail(&d, err, -1);
            rc = 1;
        }
    }
    /* A failure may be this rank's alone: LAMMPS's destructor could then
     * wait in a collective for ranks that will not come, so abort first. */
    if (rc != 0)
        MPI_Abort(MPI_COMM_WORLD, rc);
    if (d.lmp)
        lammps_close(d.lmp);
    free(d.id);
    free(d.image);
    free(d.box);
    MPI_Finalize();
    return rc;
}
