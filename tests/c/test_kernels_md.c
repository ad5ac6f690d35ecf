/* test_kernels_md.c - the molecular dynamics kernels (kernels/md.c) against
 * sums written here, and their refusals. */
#include <math.h>

#include "caudal_kernels.h"
#include "harness.h"

static uint64_t rng_state = 88172645463325252ULL;

static double rnd(void) /* xorshift64, in [-1, 1) */
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0 * 2 - 1;
}

static void test_kinetic_case(int64_t n, int64_t ntypes)
{
    double *v = malloc((size_t)(3 * n + 1) * sizeof *v);
    int32_t *type = malloc((size_t)(n + 1) * sizeof *type);
    double *mass = malloc((size_t)(ntypes + 1) * sizeof *mass);
    double *mv2 = calloc((size_t)(ntypes + 1), sizeof *mv2);
    double *want = calloc((size_t)(ntypes + 1), sizeof *want);
    int64_t *count = calloc((size_t)(ntypes + 1), sizeof *count);
    int64_t *want_count = calloc((size_t)(ntypes + 1), sizeof *want_count);
    CHECK(v && type && mass && mv2 && want && count && want_count);
    /* the kernel adds to what mv2 and count hold */
    for (int64_t t = 0; t <= ntypes; t++) {
        mass[t] = 1 + 3 * fabs(rnd());
        mv2[t] = want[t] = t ? 10 * fabs(rnd()) : 0;
        count[t] = want_count[t] = t ? 7 : 0;
    }
    for (int64_t i = 0; i < n; i++) {
        type[i] = (int32_t)(1 + (int64_t)((rnd() + 1) / 2 * (double)ntypes) % ntypes);
        for (int d = 0; d < 3; d++)
            v[3 * i + d] = 5 * rnd();
        double s = v[3 * i] * v[3 * i] + v[3 * i + 1] * v[3 * i + 1] + v[3 * i + 2] * v[3 * i + 2];
        want[type[i]] += s * mass[type[i]];
        want_count[type[i]]++;
    }
    int64_t bad = -1;
    CHECK_CDK(cdk_md_kinetic(v, type, n, mass, ntypes + 1, mv2, count, &bad), CDK_OK);
    for (int64_t t = 0; t <= ntypes; t++) {
        /* the same expression in the same order: the same bits */
        CHECK(count[t] == want_count[t] && mv2[t] == want[t]);
    }
    CHECK(bad == -1 && count[0] == 0 && mv2[0] == 0);
    free(v);
    free(type);
    free(mass);
    free(mv2);
    free(want);
    free(count);
    free(want_count);
}

static void test_bad_kinetic(void)
{
    double v[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, mass[3] = {0, 1, 2}, mv2[3] = {0, 0, 0};
    int32_t type[3] = {1, 3, 0};
    int64_t count[3] = {0, 0, 0}, bad = -1;
    /* atom 1 has type 3 of 2: refused, named, nothing added */
    CHECK_CDK(cdk_md_kinetic(v, type, 3, mass, 3, mv2, count, &bad), CDK_ERR_ARG);
    CHECK(bad == 1 && mv2[1] == 0 && count[1] == 0);
    type[1] = 2;
    bad = -1;
    CHECK_CDK(cdk_md_kinetic(v, type, 3, mass, 3, mv2, count, &bad), CDK_ERR_ARG);
    CHECK(bad == 2 && count[1] == 0 && count[2] == 0); /* type 0 is no type */
    CHECK_CDK(cdk_md_kinetic(v, type, -1, mass, 3, mv2, count, &bad), CDK_ERR_ARG);
    CHECK_CDK(cdk_md_kinetic(v, type, 2, mass, 1, mv2, count, &bad), CDK_ERR_ARG);
    CHECK_CDK(cdk_md_kinetic(NULL, type, 2, mass, 3, mv2, count, &bad), CDK_ERR_ARG);
    CHECK_CDK(cdk_md_kinetic(NULL, NULL, 0, mass, 3, mv2, count, &bad), CDK_OK);
    CHECK(count[1] == 0 && count[2] == 0);
}

int main(void)
{
    for (int rep = 0; rep < 50; rep++)
        test_kinetic_case(rep * 37 % 500, 1 + rep % 4);
    test_bad_kinetic();
    printf("test_kernels_md: ok\n");
    return 0;
}
