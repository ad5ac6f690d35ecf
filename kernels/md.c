/* md.c - molecular dynamics kernels over one rank's atoms, in the layout
 * LAMMPS holds them (examples/lammps publishes them as they are). */
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
