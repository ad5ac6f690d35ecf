/* md.c - molecular dynamics kernels over one rank's atoms, in the layout
 * LAMMPS holds them (examples/lammps publishes them as they are). */
#include <math.h>
#include <stdlib.h>

#include "caudal_kernels.h"

int cdk_md_kinetic(const double *v, const int32_t *type, int64_t n, const double *mass,
                   int64_t nmass, double *mv2, int64_t *count, int64_t *bad)
{
    if (n < 0 || nmass < 2 || !mass || !mv2 || !count || !bad || (n > 0 && (!v || !type)))
        return CDK_ERR_ARG;
    /* Types first, so that a bad atom leaves the sums untouched. */
    for (int64_t i = 0; i < n; i++) {
        if (type[i] < 1 || type[i] >= nmass) {
            *bad = i;
            return CDK_ERR_ARG;
        }
    }
    for (int64_t i = 0; i < n; i++) {
        const double *vi = v + 3 * i;
        int32_t t = type[i];
        mv2[t] += (vi[0] * vi[0] + vi[1] * vi[1] + vi[2] * vi[2]) * mass[t];
        count[t]++;
    }
    return CDK_OK;
}

/* Index of `id` in the nref sorted ids, or -1. */
static int64_t find_id(const int64_t *ids, int64_t nref, int64_t id)
{
    int64_t lo = 0, hi = nref;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (ids[mid] < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < nref && ids[lo] == id ? lo : -1;
}

int cdk_md_msd(const double *x, const int32_t *image, const int64_t *id, int64_t n,
               const double prd[3], const int64_t *ref_id, const double *ref, int64_t nref,
               double sums[4], int64_t *bad)
{
    if (n < 0 || nref < 0 || !prd || !sums || !bad ||
        (n > 0 && (!x || !image || !id || !ref || !ref_id)))
        return CDK_ERR_ARG;
    for (int64_t i = 0; i < n; i++) {
        if (find_id(ref_id, nref, id[i]) < 0) {
            *bad = i;
            return CDK_ERR_ARG;
        }
    }
    double s0 = sums[0], s1 = sums[1], s2 = sums[2], s3 = sums[3];
    for (int64_t i = 0; i < n; i++) {
        const double *xi = x + 3 * i, *r = ref + 3 * find_id(ref_id, nref, id[i]);
        const int32_t *im = image + 3 * i;
        double dx = xi[0] + im[0] * prd[0] - r[0];
        double dy = xi[1] + im[1] * prd[1] - r[1];
        double dz = xi[2] + im[2] * prd[2] - r[2];
        s0 += dx * dx;
        s1 += dy * dy;
        s2 += dz * dz;
        s3 += dx * dx + dy * dy + dz * dz;
    }
    sums[0] = s0;
    sums[1] = s1;
    sums[2] = s2;
    sums[3] = s3;
    return CDK_OK;
}

/* The cells of side >= cutoff over the atoms' bounding box: atom k is in
 * cell cell_of[k]; head[c] its first atom, next[k] the one after k. */
typedef struct cells {
    int64_t dim[3];
    double lo[3], inv[3];
    int64_t *head, *next;
} cells;

static int64_t cell_axis(const cells *c, int d, double v)
{
    int64_t k = (int64_t)((v - c->lo[d]) * c->inv[d]);
    return k < 0 ? 0 : k >= c->dim[d] ? c->dim[d] - 1 : k;
}

static int64_t cell_of(const cells *c, const double *p)
{
    return (cell_axis(c, 0, p[0]) * c->dim[1] + cell_axis(c, 1, p[1])) * c->dim[2] +
           cell_axis(c, 2, p[2]);
}

/* Atoms 0..n-1 are x's, n..n+m-1 hx's. At most MAX_CELLS cells: a sparse
 * halo far apart costs coarser cells, not memory. */
#define MAX_CELLS ((int64_t)1 << 22)

static int cells_build(cells *c, const double *x, int64_t n, const double *hx, int64_t m,
                       double cutoff)
{
    double lo[3] = {INFINITY, INFINITY, INFINITY}, hi[3] = {-INFINITY, -INFINITY, -INFINITY};
    for (int64_t k = 0; k < n + m; k++) {
        const double *p = k < n ? x + 3 * k : hx + 3 * (k - n);
        for (int d = 0; d < 3; d++) {
            lo[d] = p[d] < lo[d] ? p[d] : lo[d];
            hi[d] = p[d] > hi[d] ? p[d] : hi[d];
        }
    }
    double side = cutoff * (1 + 1e-9); /* a pair at the cutoff stays in adjacent cells */
    for (;;) {
        double total = 1; /* in double: a tiny cutoff must not overflow the count */
        for (int d = 0; d < 3; d++) {
            double extent = n + m ? hi[d] - lo[d] : 0, per = extent / side;
            total *= per >= 1 ? floor(per) : 1;
        }
        if (total <= (double)MAX_CELLS)
            break;
        side *= 2;
    }
    for (int d = 0; d < 3; d++) {
        double extent = n + m ? hi[d] - lo[d] : 0;
        c->dim[d] = extent / side >= 1 ? (int64_t)(extent / side) : 1;
        c->lo[d] = n + m ? lo[d] : 0;
        /* cells of at least `side`: an atom's neighbours lie in the 27 around it */
        c->inv[d] = extent > 0 ? (double)c->dim[d] / extent : 0;
    }
    int64_t ncells = c->dim[0] * c->dim[1] * c->dim[2];
    c->head = malloc((size_t)ncells * sizeof *c->head);
    c->next = malloc((size_t)(n + m + 1) * sizeof *c->next);
    if (!c->head || !c->next) {
        free(c->head);
        free(c->next);
        return CDK_ERR_NOMEM;
    }
    for (int64_t k = 0; k < ncells; k++)
        c->head[k] = -1;
    for (int64_t k = n + m - 1; k >= 0; k--) { /* lists in index order */
        int64_t cell = cell_of(c, k < n ? x + 3 * k : hx + 3 * (k - n));
        c->next[k] = c->head[cell];
        c->head[cell] = k;
    }
    return CDK_OK;
}

int cdk_md_pairs(const double *x, const int32_t *type, const int64_t *id, int64_t n,
                 const double *hx, const int32_t *htype, const int64_t *hid, int64_t m,
                 double cutoff, double delrinv, int64_t nbins, int64_t ntypes, int64_t *counts,
                 int64_t *bad)
{
    /* the cells find the pairs within the cutoff: the bins must not reach past it */
    if (n < 0 || m < 0 || !(cutoff > 0) || !isfinite(cutoff) || nbins < 1 ||
        !(delrinv * cutoff >= (double)nbins * (1 - 1e-12)) || !isfinite(delrinv) ||
        ntypes < 1 || !counts || !bad || (n > 0 && (!x || !type || !id)) ||
        (m > 0 && (!hx || !htype || !hid)))
        return CDK_ERR_ARG;
    for (int64_t k = 0; k < n + m; k++) {
        int32_t t = k < n ? type[k] : htype[k - n];
        const double *p = k < n ? x + 3 * k : hx + 3 * (k - n);
        if (t < 1 || t > ntypes || !isfinite(p[0]) || !isfinite(p[1]) || !isfinite(p[2])) {
            *bad = k;
            return CDK_ERR_ARG;
        }
    }
    cells c;
    int rc = cells_build(&c, x, n, hx, m, cutoff);
    if (rc != CDK_OK)
        return rc;
    int64_t nt = ntypes + 1;
    for (int64_t i = 0; i < n; i++) {
        const double *xi = x + 3 * i;
        int64_t ci[3] = {cell_axis(&c, 0, xi[0]), cell_axis(&c, 1, xi[1]),
                         cell_axis(&c, 2, xi[2])};
        for (int64_t a = ci[0] > 0 ? ci[0] - 1 : 0; a <= ci[0] + 1 && a < c.dim[0]; a++)
            for (int64_t b = ci[1] > 0 ? ci[1] - 1 : 0; b <= ci[1] + 1 && b < c.dim[1]; b++)
                for (int64_t e = ci[2] > 0 ? ci[2] - 1 : 0; e <= ci[2] + 1 && e < c.dim[2];
                     e++) {
                    for (int64_t j = c.head[(a * c.dim[1] + b) * c.dim[2] + e]; j >= 0;
                         j = c.next[j]) {
                        if (j < n ? j <= i : id[i] >= hid[j - n])
                            continue; /* counted from its other atom, or by its other rank */
                        const double *xj = j < n ? x + 3 * j : hx + 3 * (j - n);
                        double dx = xi[0] - xj[0], dy = xi[1] - xj[1], dz = xi[2] - xj[2];
                        double r = sqrt(dx * dx + dy * dy + dz * dz);
                        double at = r * delrinv;
                        if (!(at < (double)nbins))
                            continue;
                        int64_t bin = (int64_t)at;
                        int64_t ti = type[i], tj = j < n ? type[j] : htype[j - n];
                        int64_t lo = ti < tj ? ti : tj, hi = ti < tj ? tj : ti;
                        counts[(lo * nt + hi) * nbins + bin]++;
                    }
                }
    }
    free(c.head);
    free(c.next);
    return CDK_OK;
}
