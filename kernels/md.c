/* md.c - molecular dynamics kernels over one rank's atoms, in the layout
 * LAMMPS holds them (examples/lammps publishes them as they are). */
#include <math.h>

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

int cdk_md_msd(const double *x, const int32_t *image, const int64_t *id, int64_t n,
               const double prd[3], const double *ref, int64_t nref, double sums[4],
               int64_t *bad)
{
    if (n < 0 || nref < 0 || !prd || !sums || !bad ||
        (n > 0 && (!x || !image || !id || !ref)))
        return CDK_ERR_ARG;
    for (int64_t i = 0; i < n; i++) {
        if (id[i] < 0 || id[i] >= nref || isnan(ref[3 * id[i]])) {
            *bad = i;
            return CDK_ERR_ARG;
        }
    }
    double s0 = sums[0], s1 = sums[1], s2 = sums[2], s3 = sums[3];
    for (int64_t i = 0; i < n; i++) {
        const double *xi = x + 3 * i, *r = ref + 3 * id[i];
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
