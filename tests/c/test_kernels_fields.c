/* test_kernels_fields.c - the field kernels (stencils, coarsening, labels,
 * per-point statistics) against naive references written here.
 *
 * Most checks cut a random global array into a random grid of blocks (many
 * of extent 1, so faces and borders meet in every combination), run the
 * block kernels with faces taken from the neighbours, and compare the
 * stitched or merged result with the kernel on the whole array and with a
 * naive formula over the whole array. */
#include "harness.h" /* first: it sets _GNU_SOURCE */

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "caudal_kernels.h"
#include "dtype.h"

#define MAXD 4
#define NTYPES 10

static const int real_types[NTYPES] = {
#define TYPE_CODE(code, T, sfx) code,
    CDK_REAL_TYPES(TYPE_CODE)
#undef TYPE_CODE
};

/* ------------------------------------------------------------- support */

static uint64_t rng_state = 12345;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static int64_t rnd_int(int64_t lo, int64_t hi) /* inclusive */
{
    return lo + (int64_t)(rnd() % (uint64_t)(hi - lo + 1));
}

static double rnd_unit(void)
{
    return (double)(rnd() >> 11) / 9007199254740992.0;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    CHECK(p);
    return p;
}

static int is_float(int dtype)
{
    return dtype == CAUDAL_FLOAT32 || dtype == CAUDAL_FLOAT64;
}

static int is_signed(int dtype)
{
    return is_float(dtype) || dtype == CAUDAL_INT8 || dtype == CAUDAL_INT16 ||
           dtype == CAUDAL_INT32 || dtype == CAUDAL_INT64;
}

static double get(const void *p, int dtype, int64_t i)
{
    switch (dtype) {
#define GET_CASE(code, T, sfx) \
    case code:                 \
        return (double)((const T *)p)[i];
        CDK_REAL_TYPES(GET_CASE)
#undef GET_CASE
    }
    CHECK(0);
    return 0;
}

static void put(void *p, int dtype, int64_t i, double v)
{
    switch (dtype) {
#define PUT_CASE(code, T, sfx) \
    case code:                 \
        ((T *)p)[i] = (T)v;    \
        return;
        CDK_REAL_TYPES(PUT_CASE)
#undef PUT_CASE
    }
    CHECK(0);
}

/* A value every dtype holds exactly: small integers, or reals for floats
 * (float32 rounds them once, and every reader then sees the stored value). */
static double rnd_value(int dtype, double nan_rate)
{
    if (is_float(dtype)) {
        if (rnd_unit() < nan_rate)
            return NAN;
        return rnd_unit() * 100.0 - 50.0;
    }
    return (double)(is_signed(dtype) ? rnd_int(-50, 50) : rnd_int(0, 100));
}

static void *rnd_array(int dtype, int64_t n, double nan_rate)
{
    void *a = xmalloc((size_t)n * cdk_real_size(dtype));
    for (int64_t i = 0; i < n; i++)
        put(a, dtype, i, rnd_value(dtype, nan_rate));
    return a;
}

static int64_t elements(int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int d = 0; d < ndim; d++)
        n *= shape[d];
    return n;
}

static void unravel(int ndim, const int64_t *shape, int64_t i, int64_t *idx)
{
    for (int d = ndim - 1; d >= 0; d--) {
        idx[d] = i % shape[d];
        i /= shape[d];
    }
}

static int64_t ravel(int ndim, const int64_t *shape, const int64_t *idx)
{
    int64_t i = 0;
    for (int d = 0; d < ndim; d++)
        i = i * shape[d] + idx[d];
    return i;
}

/* A contiguous copy of the box [start, start + count) of a global array. */
static void *extract(const void *g, size_t sz, int ndim, const int64_t *gshape,
                     const int64_t *start, const int64_t *count)
{
    int64_t n = elements(ndim, count), idx[MAXD];
    char *out = xmalloc((size_t)n * sz);
    for (int64_t i = 0; i < n; i++) {
        unravel(ndim, count, i, idx);
        for (int d = 0; d < ndim; d++)
            idx[d] += start[d];
        memcpy(out + i * sz, (const char *)g + ravel(ndim, gshape, idx) * sz, sz);
    }
    return out;
}

/* Copy a block's elements back into their box of a global array. */
static void stitch(void *g, size_t sz, int ndim, const int64_t *gshape, const void *b,
                   const int64_t *start, const int64_t *count)
{
    int64_t n = elements(ndim, count), idx[MAXD];
    for (int64_t i = 0; i < n; i++) {
        unravel(ndim, count, i, idx);
        for (int d = 0; d < ndim; d++)
            idx[d] += start[d];
        memcpy((char *)g + ravel(ndim, gshape, idx) * sz, (const char *)b + i * sz, sz);
    }
}

static int same_double(double a, double b)
{
    return (isnan(a) && isnan(b)) || a == b;
}

static int close_double(double a, double b, double tol)
{
    return same_double(a, b) || fabs(a - b) <= tol * (1.0 + fabs(b));
}

/* ------------------------------------------------------- random grids */

/* Largest extent per ndim: long enough rows for the vectorized loop bodies
 * in 1-D and 2-D, small enough for naive references under ASan. */
static const int64_t max_extent[MAXD + 1] = {0, 48, 20, 8, 5};

typedef struct grid {
    int ndim;
    int64_t shape[MAXD];
    int nb[MAXD];              /* blocks along each dimension */
    int64_t cut[MAXD][48 + 1]; /* block boundaries, cut[d][0] = 0 */
    int nblocks;
} grid;

/* Extents from lo to hi per dimension; each interior boundary is a cut with
 * probability 1/2 (blocks of extent 1 are common) or, for some dimensions,
 * 1/10 (long rows inside blocks). */
static void rnd_grid(grid *g, int ndim, int64_t lo, int64_t hi)
{
    g->ndim = ndim;
    g->nblocks = 1;
    for (int d = 0; d < ndim; d++) {
        g->shape[d] = rnd_int(lo, hi);
        int nb = 0;
        uint64_t in10 = rnd() & 1 ? 5 : 1;
        g->cut[d][0] = 0;
        for (int64_t p = 1; p < g->shape[d]; p++)
            if (rnd() % 10 < in10)
                g->cut[d][++nb] = p;
        g->cut[d][++nb] = g->shape[d];
        g->nb[d] = nb;
        g->nblocks *= nb;
    }
}

static void grid_block(const grid *g, int b, int64_t *start, int64_t *count)
{
    for (int d = g->ndim - 1; d >= 0; d--) {
        int k = b % g->nb[d];
        b /= g->nb[d];
        start[d] = g->cut[d][k];
        count[d] = g->cut[d][k + 1] - g->cut[d][k];
    }
}

/* The neighbour's plane next to a block along d (NULL at the global border);
 * side -1 is lo, +1 is hi. */
static void *face(const grid *g, const void *gdata, size_t sz, const int64_t *start,
                  const int64_t *count, int d, int side)
{
    int64_t s[MAXD], c[MAXD];
    memcpy(s, start, sizeof s);
    memcpy(c, count, sizeof c);
    s[d] = side < 0 ? start[d] - 1 : start[d] + count[d];
    if (s[d] < 0 || s[d] >= g->shape[d])
        return NULL;
    c[d] = 1;
    return extract(gdata, sz, g->ndim, g->shape, s, c);
}

/* ------------------------------------------------------------ gradient */

static double naive_gradient(const void *g, int dtype, int ndim, const int64_t *shape,
                             int axis, double h, int64_t i)
{
    int64_t idx[MAXD], stride = elements(ndim - axis - 1, shape + axis + 1);
    unravel(ndim, shape, i, idx);
    int64_t k = idx[axis], n = shape[axis];
    if (k == 0)
        return (get(g, dtype, i + stride) - get(g, dtype, i)) / h;
    if (k == n - 1)
        return (get(g, dtype, i) - get(g, dtype, i - stride)) / h;
    return (get(g, dtype, i + stride) - get(g, dtype, i - stride)) / (2.0 * h);
}

static void test_gradient_case(int dtype, int ndim)
{
    grid g;
    rnd_grid(&g, ndim, 1, max_extent[ndim]);
    int axis = (int)rnd_int(0, ndim - 1);
    if (g.shape[axis] < 2)
        return; /* refused: checked in test_bad_stencil */
    size_t sz = cdk_real_size(dtype);
    int64_t n = elements(ndim, g.shape);
    double h = 0.25 + rnd_unit() * 2.0;
    void *data = rnd_array(dtype, n, 0.0);
    double *whole = xmalloc((size_t)n * sizeof(double));
    double *stitched = xmalloc((size_t)n * sizeof(double));
    CHECK_CDK(cdk_gradient(data, dtype, ndim, g.shape, axis, h, g.shape[axis], NULL, NULL,
                          whole),
             CDK_OK);
    for (int b = 0; b < g.nblocks; b++) {
        int64_t start[MAXD], count[MAXD];
        grid_block(&g, b, start, count);
        void *blk = extract(data, sz, ndim, g.shape, start, count);
        void *lo = face(&g, data, sz, start, count, axis, -1);
        void *hi = face(&g, data, sz, start, count, axis, +1);
        double *out = xmalloc((size_t)elements(ndim, count) * sizeof(double));
        CHECK_CDK(cdk_gradient(blk, dtype, ndim, count, axis, h, g.shape[axis], lo, hi, out),
                 CDK_OK);
        stitch(stitched, sizeof(double), ndim, g.shape, out, start, count);
        free(blk);
        free(lo);
        free(hi);
        free(out);
    }
    for (int64_t i = 0; i < n; i++) {
        CHECK(stitched[i] == whole[i]);
        CHECK(whole[i] == naive_gradient(data, dtype, ndim, g.shape, axis, h, i));
    }
    free(data);
    free(whole);
    free(stitched);
}

/* ----------------------------------------------------------- Laplacian */

static double naive_laplacian(const void *g, int dtype, int ndim, const int64_t *shape,
                              const double *h, int64_t i)
{
    int64_t idx[MAXD];
    unravel(ndim, shape, i, idx);
    double x = get(g, dtype, i), s = 0;
    for (int d = 0; d < ndim; d++) {
        int64_t stride = elements(ndim - d - 1, shape + d + 1);
        double m = idx[d] > 0 ? get(g, dtype, i - stride) : x;
        double p = idx[d] < shape[d] - 1 ? get(g, dtype, i + stride) : x;
        s += (p - 2.0 * x + m) / (h[d] * h[d]);
    }
    return s;
}

static void test_laplacian_case(int dtype, int ndim)
{
    grid g;
    rnd_grid(&g, ndim, 1, max_extent[ndim]);
    size_t sz = cdk_real_size(dtype);
    int64_t n = elements(ndim, g.shape);
    double h[MAXD];
    for (int d = 0; d < ndim; d++)
        h[d] = rnd() & 1 ? 1.0 : 0.25 + rnd_unit() * 2.0;
    void *data = rnd_array(dtype, n, 0.0);
    double *whole = xmalloc((size_t)n * sizeof(double));
    double *stitched = xmalloc((size_t)n * sizeof(double));
    const void *none[MAXD] = {NULL};
    CHECK_CDK(cdk_laplacian(data, dtype, ndim, g.shape, h, none, none, whole), CDK_OK);
    for (int b = 0; b < g.nblocks; b++) {
        int64_t start[MAXD], count[MAXD];
        grid_block(&g, b, start, count);
        void *blk = extract(data, sz, ndim, g.shape, start, count);
        void *lo[MAXD], *hi[MAXD];
        for (int d = 0; d < ndim; d++) {
            lo[d] = face(&g, data, sz, start, count, d, -1);
            hi[d] = face(&g, data, sz, start, count, d, +1);
        }
        double *out = xmalloc((size_t)elements(ndim, count) * sizeof(double));
        CHECK_CDK(cdk_laplacian(blk, dtype, ndim, count, h, (const void *const *)lo,
                               (const void *const *)hi, out),
                 CDK_OK);
        stitch(stitched, sizeof(double), ndim, g.shape, out, start, count);
        for (int d = 0; d < ndim; d++) {
            free(lo[d]);
            free(hi[d]);
        }
        free(blk);
        free(out);
    }
    for (int64_t i = 0; i < n; i++) {
        CHECK(stitched[i] == whole[i]);
        CHECK(close_double(whole[i], naive_laplacian(data, dtype, ndim, g.shape, h, i),
                           1e-12));
    }
    free(data);
    free(whole);
    free(stitched);
}

static void test_bad_stencil(void)
{
    double x[6] = {1, 2, 4, 8, 16, 32}, out[6], sentinel = -7.5, face[3] = {0};
    int64_t c2[2] = {2, 3}, c1[1] = {1}, c0[2] = {0, 3}, neg[2] = {2, -1};
    for (int i = 0; i < 6; i++)
        out[i] = sentinel;
    CHECK_CDK(cdk_gradient(x, CAUDAL_FLOAT64, 0, c2, 0, 1, 2, NULL, NULL, out),
             CDK_ERR_SHAPE);
    CHECK_CDK(cdk_gradient(x, CAUDAL_FLOAT64, CDK_MAX_DIMS + 1, c2, 0, 1, 2, NULL, NULL, out),
             CDK_ERR_SHAPE);
    CHECK_CDK(cdk_gradient(x, CAUDAL_FLOAT64, 2, neg, 0, 1, 2, NULL, NULL, out),
             CDK_ERR_SHAPE);
    CHECK_CDK(cdk_gradient(x, CAUDAL_COMPLEX128, 2, c2, 0, 1, 2, NULL, NULL, out),
             CDK_ERR_DTYPE);
    CHECK_CDK(cdk_gradient(x, 0, 2, c2, 0, 1, 2, NULL, NULL, out), CDK_ERR_DTYPE);
    CHECK_CDK(cdk_gradient(x, CAUDAL_FLOAT64, 2, c2, 2, 1, 2, NULL, NULL, out), CDK_ERR_ARG);
    CHECK_CDK(cdk_gradient(x, CAUDAL_FLOAT64, 2, c2, -1, 1, 2, NULL, NULL, out), CDK_ERR_ARG);
    CHECK_CDK(cdk_gradient(x, CAUDAL_FLOAT64, 2, c2, 0, 0, 2, NULL, NULL, out), CDK_ERR_ARG);
    CHECK_CDK(cdk_gradient(x, CAUDAL_FLOAT64, 2, c2, 0, -1, 2, NULL, NULL, out), CDK_ERR_ARG);
    CHECK_CDK(cdk_gradient(x, CAUDAL_FLOAT64, 2, c2, 0, NAN, 2, NULL, NULL, out), CDK_ERR_ARG);
    CHECK_CDK(cdk_gradient(x, CAUDAL_FLOAT64, 2, c2, 0, INFINITY, 2, NULL, NULL, out),
             CDK_ERR_ARG);
    /* numpy refuses an axis of one element; and faces must fit global_n */
    CHECK_CDK(cdk_gradient(x, CAUDAL_FLOAT64, 1, c1, 0, 1, 1, NULL, NULL, out), CDK_ERR_SHAPE);
    CHECK_CDK(cdk_gradient(x, CAUDAL_FLOAT64, 2, c2, 0, 1, 3, NULL, NULL, out), CDK_ERR_SHAPE);
    CHECK_CDK(cdk_gradient(x, CAUDAL_FLOAT64, 2, c2, 0, 1, 2, face, NULL, out), CDK_ERR_SHAPE);
    CHECK_CDK(cdk_gradient(x, CAUDAL_FLOAT64, 2, c2, 0, 1, 3, face, face, out), CDK_ERR_SHAPE);
    CHECK_CDK(cdk_gradient(NULL, CAUDAL_FLOAT64, 2, c2, 0, 1, 2, NULL, NULL, out), CDK_ERR_ARG);
    CHECK_CDK(cdk_gradient(x, CAUDAL_FLOAT64, 2, c2, 0, 1, 2, NULL, NULL, NULL), CDK_ERR_ARG);
    for (int i = 0; i < 6; i++)
        CHECK(out[i] == sentinel);
    /* an empty block writes nothing, whatever its faces */
    CHECK_CDK(cdk_gradient(x, CAUDAL_FLOAT64, 2, c0, 1, 1, 3, NULL, NULL, out), CDK_OK);
    CHECK_CDK(cdk_gradient(NULL, CAUDAL_INT8, 2, c0, 0, 1, 5, face, face, NULL), CDK_OK);
    CHECK(out[0] == sentinel);

    /* extent 1 inside the array: both neighbours from faces; and at a border */
    double lo1 = 3, hi1 = 10, one = 4, g;
    CHECK_CDK(cdk_gradient(&one, CAUDAL_FLOAT64, 1, c1, 0, 0.5, 5, &lo1, &hi1, &g), CDK_OK);
    CHECK(g == (10.0 - 3.0) / 1.0);
    CHECK_CDK(cdk_gradient(&one, CAUDAL_FLOAT64, 1, c1, 0, 0.5, 5, NULL, &hi1, &g), CDK_OK);
    CHECK(g == (10.0 - 4.0) / 0.5);
    CHECK_CDK(cdk_gradient(&one, CAUDAL_FLOAT64, 1, c1, 0, 0.5, 5, &lo1, NULL, &g), CDK_OK);
    CHECK(g == (4.0 - 3.0) / 0.5);

    double h2[2] = {1, 1}, hbad[2] = {1, 0};
    CHECK_CDK(cdk_laplacian(x, CAUDAL_FLOAT64, 2, c2, hbad, NULL, NULL, out), CDK_ERR_ARG);
    hbad[1] = NAN;
    CHECK_CDK(cdk_laplacian(x, CAUDAL_FLOAT64, 2, c2, hbad, NULL, NULL, out), CDK_ERR_ARG);
    CHECK_CDK(cdk_laplacian(x, CAUDAL_FLOAT64, 2, c2, NULL, NULL, NULL, out), CDK_ERR_ARG);
    CHECK_CDK(cdk_laplacian(x, CAUDAL_COMPLEX64, 2, c2, h2, NULL, NULL, out), CDK_ERR_DTYPE);
    CHECK_CDK(cdk_laplacian(x, CAUDAL_FLOAT64, 0, c2, h2, NULL, NULL, out), CDK_ERR_SHAPE);
    CHECK_CDK(cdk_laplacian(x, CAUDAL_FLOAT64, 2, neg, h2, NULL, NULL, out), CDK_ERR_SHAPE);
    CHECK_CDK(cdk_laplacian(NULL, CAUDAL_FLOAT64, 2, c2, h2, NULL, NULL, out), CDK_ERR_ARG);
    CHECK_CDK(cdk_laplacian(x, CAUDAL_FLOAT64, 2, c0, h2, NULL, NULL, out), CDK_OK);
    for (int i = 0; i < 6; i++)
        CHECK(out[i] == sentinel);
    /* NULL face arrays mean every side is a global border */
    CHECK_CDK(cdk_laplacian(x, CAUDAL_FLOAT64, 2, c2, h2, NULL, NULL, out), CDK_OK);
    CHECK(out[0] == (2 - 1) + (8 - 1));
}

/* ----------------------------------------------------------- coarsening */

static void test_coarsen_case(int dtype, int ndim)
{
    grid g;
    rnd_grid(&g, ndim, 1, max_extent[ndim]);
    int op = (int)rnd_int(0, 2);
    size_t sz = cdk_real_size(dtype);
    int64_t n = elements(ndim, g.shape), factor[MAXD], cshape[MAXD], zero[MAXD] = {0};
    for (int d = 0; d < ndim; d++) {
        factor[d] = rnd_int(1, 4);
        cshape[d] = (g.shape[d] + factor[d] - 1) / factor[d];
    }
    int64_t cn = elements(ndim, cshape), first[MAXD], ncells[MAXD];
    CHECK_CDK(cdk_coarsen_cells(ndim, zero, g.shape, factor, first, ncells), CDK_OK);
    for (int d = 0; d < ndim; d++)
        CHECK(first[d] == 0 && ncells[d] == cshape[d]);
    void *data = rnd_array(dtype, n, 0.05);

    /* naive: every element into its cell */
    double *ref = xmalloc((size_t)cn * sizeof(double));
    int64_t *refn = xmalloc((size_t)cn * sizeof(int64_t));
    for (int64_t c = 0; c < cn; c++) {
        ref[c] = op == CDK_COARSEN_MEAN ? 0 : op == CDK_COARSEN_MAX ? -INFINITY : INFINITY;
        refn[c] = 0;
    }
    for (int64_t i = 0; i < n; i++) {
        int64_t idx[MAXD];
        unravel(ndim, g.shape, i, idx);
        for (int d = 0; d < ndim; d++)
            idx[d] /= factor[d];
        int64_t c = ravel(ndim, cshape, idx);
        double v = get(data, dtype, i);
        refn[c]++;
        if (op == CDK_COARSEN_MEAN)
            ref[c] += v;
        else if (isnan(v) || isnan(ref[c]))
            ref[c] = NAN;
        else
            ref[c] = op == CDK_COARSEN_MAX ? fmax(ref[c], v) : fmin(ref[c], v);
    }

    /* blocks: partials merged into the global cells */
    double *acc = xmalloc((size_t)cn * sizeof(double));
    int64_t *num = xmalloc((size_t)cn * sizeof(int64_t));
    for (int64_t c = 0; c < cn; c++) {
        acc[c] = op == CDK_COARSEN_MEAN ? 0 : op == CDK_COARSEN_MAX ? -INFINITY : INFINITY;
        num[c] = 0;
    }
    for (int b = 0; b < g.nblocks; b++) {
        int64_t start[MAXD], count[MAXD];
        grid_block(&g, b, start, count);
        CHECK_CDK(cdk_coarsen_cells(ndim, start, count, factor, first, ncells), CDK_OK);
        int64_t pn = elements(ndim, ncells);
        void *blk = extract(data, sz, ndim, g.shape, start, count);
        double *pacc = xmalloc((size_t)pn * sizeof(double));
        int64_t *pnum = xmalloc((size_t)pn * sizeof(int64_t));
        CHECK_CDK(cdk_coarsen(blk, dtype, ndim, start, count, factor, op, pacc, pnum), CDK_OK);
        for (int64_t p = 0; p < pn; p++) {
            int64_t idx[MAXD];
            unravel(ndim, ncells, p, idx);
            for (int d = 0; d < ndim; d++)
                idx[d] += first[d];
            int64_t c = ravel(ndim, cshape, idx);
            CHECK(pnum[p] > 0);
            num[c] += pnum[p];
            if (op == CDK_COARSEN_MEAN)
                acc[c] += pacc[p];
            else if (isnan(pacc[p]) || isnan(acc[c]))
                acc[c] = NAN;
            else
                acc[c] = op == CDK_COARSEN_MAX ? fmax(acc[c], pacc[p]) : fmin(acc[c], pacc[p]);
        }
        free(blk);
        free(pacc);
        free(pnum);
    }
    for (int64_t c = 0; c < cn; c++) {
        CHECK(num[c] == refn[c] && num[c] > 0);
        if (op == CDK_COARSEN_MEAN)
            CHECK(close_double(acc[c] / (double)num[c], ref[c] / (double)refn[c], 1e-12));
        else
            CHECK(same_double(acc[c], ref[c]));
    }
    free(data);
    free(ref);
    free(refn);
    free(acc);
    free(num);
}

static void test_bad_coarsen(void)
{
    double x[4] = {1, 2, 3, 4}, acc[4] = {-1, -1, -1, -1};
    int64_t num[4] = {-1, -1, -1, -1}, first[2] = {-1, -1}, ncells[2] = {-1, -1};
    int64_t start[2] = {0, 3}, count[2] = {2, 2}, f[2] = {2, 2}, f0[2] = {2, 0};
    int64_t negs[2] = {-1, 0}, c0[2] = {2, 0};
    CHECK_CDK(cdk_coarsen_cells(2, start, count, f0, first, ncells), CDK_ERR_ARG);
    CHECK_CDK(cdk_coarsen_cells(0, start, count, f, first, ncells), CDK_ERR_SHAPE);
    CHECK_CDK(cdk_coarsen_cells(CDK_MAX_DIMS + 1, start, count, f, first, ncells),
             CDK_ERR_SHAPE);
    CHECK_CDK(cdk_coarsen_cells(2, negs, count, f, first, ncells), CDK_ERR_SHAPE);
    CHECK(first[0] == -1 && ncells[0] == -1);
    CHECK_CDK(cdk_coarsen_cells(2, start, count, f, first, ncells), CDK_OK);
    CHECK(first[0] == 0 && first[1] == 1 && ncells[0] == 1 && ncells[1] == 2);
    CHECK_CDK(cdk_coarsen_cells(2, start, c0, f, first, ncells), CDK_OK);
    CHECK(ncells[1] == 0);

    CHECK_CDK(cdk_coarsen(x, CAUDAL_FLOAT64, 2, start, count, f0, CDK_COARSEN_MEAN, acc, num),
             CDK_ERR_ARG);
    CHECK_CDK(cdk_coarsen(x, CAUDAL_FLOAT64, 2, start, count, f, 3, acc, num), CDK_ERR_ARG);
    CHECK_CDK(cdk_coarsen(x, CAUDAL_FLOAT64, 2, start, count, f, -1, acc, num), CDK_ERR_ARG);
    CHECK_CDK(cdk_coarsen(x, CAUDAL_COMPLEX128, 2, start, count, f, 0, acc, num),
             CDK_ERR_DTYPE);
    CHECK_CDK(cdk_coarsen(NULL, CAUDAL_FLOAT64, 2, start, count, f, 0, acc, num), CDK_ERR_ARG);
    CHECK_CDK(cdk_coarsen(x, CAUDAL_FLOAT64, 2, start, c0, f, 0, acc, num), CDK_OK);
    for (int i = 0; i < 4; i++)
        CHECK(acc[i] == -1 && num[i] == -1);
    /* start 3 with factor 2: the row splits 1 + 1 over cells 1 and 2 */
    CHECK_CDK(cdk_coarsen(x, CAUDAL_FLOAT64, 2, start, count, f, CDK_COARSEN_MAX, acc, num),
             CDK_OK);
    CHECK(acc[0] == 3 && acc[1] == 4 && num[0] == 2 && num[1] == 2);
}

/* ---------------------------------------------------------------- labels */

static int fg(double v, double t, int op)
{
    switch (op) {
    case CDK_GT: return v > t;
    case CDK_GE: return v >= t;
    case CDK_LT: return v < t;
    default: return v <= t;
    }
}

/* Scan in C order and flood each new component: labels in order of first
 * appearance, as the kernel promises. */
static int64_t naive_label(const void *x, int dtype, int ndim, const int64_t *shape,
                           double t, int op, int32_t *lab)
{
    int64_t n = elements(ndim, shape), nl = 0, *stack = xmalloc((size_t)n * sizeof(int64_t));
    for (int64_t i = 0; i < n; i++)
        lab[i] = 0;
    for (int64_t i = 0; i < n; i++) {
        if (lab[i] || !fg(get(x, dtype, i), t, op))
            continue;
        int64_t top = 0;
        lab[i] = (int32_t)++nl;
        stack[top++] = i;
        while (top) {
            int64_t j = stack[--top], idx[MAXD];
            unravel(ndim, shape, j, idx);
            for (int d = 0; d < ndim; d++) {
                int64_t stride = elements(ndim - d - 1, shape + d + 1);
                for (int s = -1; s <= 1; s += 2) {
                    if (idx[d] + s < 0 || idx[d] + s >= shape[d])
                        continue;
                    int64_t k = j + s * stride;
                    if (!lab[k] && fg(get(x, dtype, k), t, op)) {
                        lab[k] = (int32_t)nl;
                        stack[top++] = k;
                    }
                }
            }
        }
    }
    free(stack);
    return nl;
}

static int64_t uf_find(int64_t *p, int64_t i)
{
    while (p[i] != i)
        i = p[i] = p[p[i]];
    return i;
}

static void test_label_case(int dtype, int ndim)
{
    grid g;
    rnd_grid(&g, ndim, 1, max_extent[ndim]);
    int op = (int)rnd_int(0, 3);
    size_t sz = cdk_real_size(dtype);
    int64_t n = elements(ndim, g.shape);
    void *data = rnd_array(dtype, n, 0.1);
    double t = is_signed(dtype) ? rnd_int(-30, 30) : rnd_int(20, 80);
    if (is_float(dtype) && (rnd() & 1))
        t += 0.5;

    int32_t *ref = xmalloc((size_t)n * sizeof(int32_t));
    int32_t *whole = xmalloc((size_t)n * sizeof(int32_t));
    int64_t nref = naive_label(data, dtype, ndim, g.shape, t, op, ref), nwhole = -1;
    CHECK_CDK(cdk_label(data, dtype, ndim, g.shape, t, op, whole, &nwhole), CDK_OK);
    CHECK(nwhole == nref);
    CHECK(memcmp(whole, ref, (size_t)n * sizeof(int32_t)) == 0);

    /* Blocks: ids offset per block, united across block faces, then compared
     * with the naive components one to one (with sizes and coordinate sums
     * merged from label_stats). */
    int64_t *id = xmalloc((size_t)n * sizeof(int64_t)), nid = 1;
    int64_t *size = xmalloc((size_t)(n + 1) * sizeof(int64_t));
    double *sum = xmalloc((size_t)(n + 1) * ndim * sizeof(double));
    for (int64_t i = 0; i <= n; i++) {
        size[i] = 0;
        for (int d = 0; d < ndim; d++)
            sum[i * ndim + d] = 0;
    }
    for (int b = 0; b < g.nblocks; b++) {
        int64_t start[MAXD], count[MAXD], bn, nl = -1;
        grid_block(&g, b, start, count);
        bn = elements(ndim, count);
        void *blk = extract(data, sz, ndim, g.shape, start, count);
        int32_t *lab = xmalloc((size_t)bn * sizeof(int32_t));
        int32_t *lref = xmalloc((size_t)bn * sizeof(int32_t));
        CHECK_CDK(cdk_label(blk, dtype, ndim, count, t, op, lab, &nl), CDK_OK);
        CHECK(nl == naive_label(blk, dtype, ndim, count, t, op, lref));
        CHECK(memcmp(lab, lref, (size_t)bn * sizeof(int32_t)) == 0);
        int64_t *bsize = xmalloc((size_t)nl * sizeof(int64_t));
        double *bsum = xmalloc((size_t)nl * ndim * sizeof(double));
        CHECK_CDK(cdk_label_stats(lab, ndim, start, count, nl, bsize, bsum), CDK_OK);
        int64_t *bid = xmalloc((size_t)bn * sizeof(int64_t));
        for (int64_t i = 0; i < bn; i++)
            bid[i] = lab[i] ? nid + lab[i] - 1 : 0;
        stitch(id, sizeof(int64_t), ndim, g.shape, bid, start, count);
        for (int64_t l = 0; l < nl; l++) {
            size[nid + l] = bsize[l];
            for (int d = 0; d < ndim; d++)
                sum[(nid + l) * ndim + d] = bsum[l * ndim + d];
        }
        nid += nl;
        free(blk);
        free(lab);
        free(lref);
        free(bsize);
        free(bsum);
        free(bid);
    }
    int64_t *parent = xmalloc((size_t)nid * sizeof(int64_t));
    for (int64_t i = 0; i < nid; i++)
        parent[i] = i;
    for (int64_t i = 0; i < n; i++) {
        int64_t idx[MAXD];
        unravel(ndim, g.shape, i, idx);
        for (int d = 0; d < ndim; d++) {
            int64_t k = i + elements(ndim - d - 1, g.shape + d + 1);
            if (idx[d] + 1 < g.shape[d] && id[i] && id[k]) {
                int64_t a = uf_find(parent, id[i]), c = uf_find(parent, id[k]);
                parent[a > c ? a : c] = a > c ? c : a;
            }
        }
    }
    /* merge sizes and sums into the roots */
    for (int64_t j = 1; j < nid; j++) {
        int64_t r = uf_find(parent, j);
        if (r == j)
            continue;
        size[r] += size[j];
        for (int d = 0; d < ndim; d++)
            sum[r * ndim + d] += sum[j * ndim + d];
    }
    /* one to one: root of every element <-> its naive label */
    int64_t *root_of = xmalloc((size_t)(nref + 1) * sizeof(int64_t)), roots = 0;
    for (int64_t l = 0; l <= nref; l++)
        root_of[l] = -1;
    for (int64_t j = 1; j < nid; j++)
        roots += uf_find(parent, j) == j;
    CHECK(roots == nref);
    for (int64_t i = 0; i < n; i++) {
        CHECK(!id[i] == !ref[i]);
        if (!id[i])
            continue;
        int64_t r = uf_find(parent, id[i]);
        if (root_of[ref[i]] < 0)
            root_of[ref[i]] = r;
        CHECK(root_of[ref[i]] == r);
    }
    double *rsum = xmalloc((size_t)(nref + 1) * ndim * sizeof(double));
    int64_t *rsize = xmalloc((size_t)(nref + 1) * sizeof(int64_t));
    memset(rsize, 0, (size_t)(nref + 1) * sizeof(int64_t));
    for (int64_t i = 0; i < (nref + 1) * ndim; i++)
        rsum[i] = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t idx[MAXD];
        unravel(ndim, g.shape, i, idx);
        rsize[ref[i]]++;
        for (int d = 0; d < ndim; d++)
            rsum[ref[i] * ndim + d] += (double)idx[d];
    }
    for (int64_t l = 1; l <= nref; l++) {
        int64_t r = root_of[l];
        CHECK(size[r] == rsize[l]);
        for (int d = 0; d < ndim; d++)
            CHECK(sum[r * ndim + d] == rsum[l * ndim + d]);
    }
    free(data);
    free(ref);
    free(whole);
    free(id);
    free(size);
    free(sum);
    free(parent);
    free(root_of);
    free(rsum);
    free(rsize);
}

static void test_bad_label(void)
{
    double x[9] = {1, 0, 1, 1, 1, 1, NAN, 0, 0};
    int32_t lab[9] = {9, 9, 9, 9, 9, 9, 9, 9, 9};
    int64_t c3[2] = {3, 3}, c0[2] = {0, 3}, neg[2] = {-2, 3}, nl = -5, start[2] = {10, 20};
    CHECK_CDK(cdk_label(x, CAUDAL_FLOAT64, 2, c3, 0.5, -1, lab, &nl), CDK_ERR_ARG);
    CHECK_CDK(cdk_label(x, CAUDAL_FLOAT64, 2, c3, 0.5, 4, lab, &nl), CDK_ERR_ARG);
    CHECK_CDK(cdk_label(x, CAUDAL_FLOAT64, 2, c3, 0.5, CDK_GT, lab, NULL), CDK_ERR_ARG);
    CHECK_CDK(cdk_label(NULL, CAUDAL_FLOAT64, 2, c3, 0.5, CDK_GT, lab, &nl), CDK_ERR_ARG);
    CHECK_CDK(cdk_label(x, CAUDAL_FLOAT64, 2, c3, 0.5, CDK_GT, NULL, &nl), CDK_ERR_ARG);
    CHECK_CDK(cdk_label(x, CAUDAL_COMPLEX64, 2, c3, 0.5, CDK_GT, lab, &nl), CDK_ERR_DTYPE);
    CHECK_CDK(cdk_label(x, CAUDAL_FLOAT64, 0, c3, 0.5, CDK_GT, lab, &nl), CDK_ERR_SHAPE);
    CHECK_CDK(cdk_label(x, CAUDAL_FLOAT64, 2, neg, 0.5, CDK_GT, lab, &nl), CDK_ERR_SHAPE);
    CHECK(nl == -5 && lab[0] == 9);
    CHECK_CDK(cdk_label(x, CAUDAL_FLOAT64, 2, c0, 0.5, CDK_GT, NULL, &nl), CDK_OK);
    CHECK(nl == 0);
    /* a U: two runs of row 0 meet through row 1 */
    CHECK_CDK(cdk_label(x, CAUDAL_FLOAT64, 2, c3, 0.5, CDK_GT, lab, &nl), CDK_OK);
    CHECK(nl == 1 && lab[0] == 1 && lab[1] == 0 && lab[2] == 1 && lab[5] == 1 && lab[6] == 0);
    /* NaN is background under every op */
    CHECK_CDK(cdk_label(x, CAUDAL_FLOAT64, 2, c3, 0.5, CDK_LE, lab, &nl), CDK_OK);
    CHECK(nl == 2 && lab[1] == 1 && lab[6] == 0 && lab[7] == 2 && lab[8] == 2);

    int64_t size[2] = {-1, -1};
    double sum[4] = {-1, -1, -1, -1};
    int32_t badl[9] = {0, 1, 2, 3, 0, 0, 0, 0, 0}, negl[9] = {0, -1, 0, 0, 0, 0, 0, 0, 0};
    CHECK_CDK(cdk_label_stats(badl, 2, start, c3, 2, size, sum), CDK_ERR_ARG);
    CHECK_CDK(cdk_label_stats(negl, 2, start, c3, 2, size, sum), CDK_ERR_ARG);
    CHECK_CDK(cdk_label_stats(lab, 2, start, c3, -1, size, sum), CDK_ERR_ARG);
    CHECK_CDK(cdk_label_stats(lab, 2, NULL, c3, 2, size, sum), CDK_ERR_ARG);
    CHECK_CDK(cdk_label_stats(lab, 0, start, c3, 2, size, sum), CDK_ERR_SHAPE);
    CHECK(size[0] == -1 && sum[0] == -1);
    CHECK_CDK(cdk_label_stats(lab, 2, start, c3, 2, size, sum), CDK_OK);
    CHECK(size[0] == 1 && sum[0] == 10 && sum[1] == 21);
    CHECK(size[1] == 2 && sum[2] == 24 && sum[3] == 43);
    CHECK_CDK(cdk_label_stats(NULL, 2, start, c0, 0, NULL, NULL), CDK_OK);
}

/* ----------------------------------------------------- per-point statistics */

static void test_pointstats_case(int dtype)
{
    int64_t n = rnd_int(0, 40), steps = rnd_int(1, 12);
    double *vals = xmalloc((size_t)(n * steps) * sizeof(double));
    int64_t *num = xmalloc((size_t)n * sizeof(int64_t));
    double *mean = xmalloc((size_t)n * sizeof(double)), *m2 = xmalloc((size_t)n * sizeof(double));
    double *mn = xmalloc((size_t)n * sizeof(double)), *mx = xmalloc((size_t)n * sizeof(double));
    for (int64_t i = 0; i < n; i++) {
        num[i] = 0;
        mean[i] = m2[i] = 0;
        mn[i] = INFINITY;
        mx[i] = -INFINITY;
    }
    for (int64_t s = 0; s < steps; s++) {
        void *x = rnd_array(dtype, n, 0.3);
        for (int64_t i = 0; i < n; i++)
            vals[s * n + i] = get(x, dtype, i);
        CHECK_CDK(cdk_pointstats_add(x, dtype, n, num, mean, m2, mn, mx), CDK_OK);
        free(x);
    }
    for (int64_t i = 0; i < n; i++) {
        int64_t k = 0;
        double s = 0, lo = INFINITY, hi = -INFINITY, ss = 0;
        for (int64_t t = 0; t < steps; t++) {
            double v = vals[t * n + i];
            if (isnan(v))
                continue;
            k++;
            s += v;
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
        double mu = k ? s / (double)k : 0;
        for (int64_t t = 0; t < steps; t++)
            if (!isnan(vals[t * n + i]))
                ss += (vals[t * n + i] - mu) * (vals[t * n + i] - mu);
        CHECK(num[i] == k && mn[i] == lo && mx[i] == hi);
        CHECK(close_double(mean[i], mu, 1e-12));
        CHECK(fabs(m2[i] - ss) <= 1e-9 * (1 + ss));
    }
    free(vals);
    free(num);
    free(mean);
    free(m2);
    free(mn);
    free(mx);
}

static void test_bad_pointstats(void)
{
    double x[2] = {1, 2}, mean[2] = {0, 0}, m2[2] = {0, 0}, mn[2] = {INFINITY, INFINITY};
    double mx[2] = {-INFINITY, -INFINITY};
    int64_t num[2] = {0, 0};
    CHECK_CDK(cdk_pointstats_add(x, CAUDAL_COMPLEX128, 2, num, mean, m2, mn, mx),
             CDK_ERR_DTYPE);
    CHECK_CDK(cdk_pointstats_add(x, 42, 2, num, mean, m2, mn, mx), CDK_ERR_DTYPE);
    CHECK_CDK(cdk_pointstats_add(x, CAUDAL_FLOAT64, -1, num, mean, m2, mn, mx), CDK_ERR_ARG);
    CHECK_CDK(cdk_pointstats_add(NULL, CAUDAL_FLOAT64, 2, num, mean, m2, mn, mx), CDK_ERR_ARG);
    CHECK_CDK(cdk_pointstats_add(x, CAUDAL_FLOAT64, 2, num, mean, NULL, mn, mx), CDK_ERR_ARG);
    CHECK(num[0] == 0 && num[1] == 0);
    CHECK_CDK(cdk_pointstats_add(NULL, CAUDAL_FLOAT64, 0, NULL, NULL, NULL, NULL, NULL),
             CDK_OK);
    /* infinities are values: the variance becomes NaN as in numpy.var */
    double inf[2] = {INFINITY, -INFINITY};
    CHECK_CDK(cdk_pointstats_add(x, CAUDAL_FLOAT64, 2, num, mean, m2, mn, mx), CDK_OK);
    CHECK_CDK(cdk_pointstats_add(inf, CAUDAL_FLOAT64, 2, num, mean, m2, mn, mx), CDK_OK);
    CHECK(num[0] == 2 && mx[0] == INFINITY && mn[1] == -INFINITY && isnan(m2[0]));
}

int main(void)
{
    for (int rep = 0; rep < 20; rep++) {
        for (int t = 0; t < NTYPES; t++) {
            for (int ndim = 1; ndim <= MAXD; ndim++) {
                test_gradient_case(real_types[t], ndim);
                test_laplacian_case(real_types[t], ndim);
                test_coarsen_case(real_types[t], ndim);
                test_label_case(real_types[t], ndim);
            }
            test_pointstats_case(real_types[t]);
        }
    }
    test_bad_stencil();
    test_bad_coarsen();
    test_bad_label();
    test_bad_pointstats();
    printf("test_kernels_fields: ok\n");
    return 0;
}
