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

static void test_msd_case(int64_t n)
{
    /* the reference: n + 2 atoms of sparse, large ids (sorted), two of them
     * absent from the step */
    int64_t nref = n + 2;
    double *x = malloc((size_t)(3 * n + 1) * sizeof *x);
    int32_t *image = malloc((size_t)(3 * n + 1) * sizeof *image);
    int64_t *id = malloc((size_t)(n + 1) * sizeof *id);
    int64_t *ref_id = malloc((size_t)nref * sizeof *ref_id);
    double *ref = malloc((size_t)(3 * nref) * sizeof *ref);
    CHECK(x && image && id && ref_id && ref);
    for (int64_t k = 0; k < nref; k++) {
        ref_id[k] = 1000000007LL * (k + 1) + k * k; /* increasing, sparse */
        for (int c = 0; c < 3; c++)
            ref[3 * k + c] = 4 * rnd();
    }
    double prd[3] = {10, 12.5, 7};
    double want[4] = {1, 2, 3, 6}, sums[4] = {1, 2, 3, 6}; /* it adds to them */
    for (int64_t i = 0; i < n; i++) {
        int64_t k = (i * 7 + 3) % n + 1; /* reference atoms 1..n, out of order */
        id[i] = ref_id[k];
        double d[3];
        for (int c = 0; c < 3; c++) {
            x[3 * i + c] = 5 * rnd();
            image[3 * i + c] = (int32_t)(3 * rnd());
            d[c] = x[3 * i + c] + image[3 * i + c] * prd[c] - ref[3 * k + c];
            want[c] += d[c] * d[c];
        }
        want[3] += d[0] * d[0] + d[1] * d[1] + d[2] * d[2];
    }
    int64_t bad = -1;
    CHECK_CDK(cdk_md_msd(x, image, id, n, prd, ref_id, ref, nref, sums, &bad), CDK_OK);
    for (int c = 0; c < 4; c++)
        CHECK(sums[c] == want[c]); /* LAMMPS's expression in its order: the same bits */
    CHECK(bad == -1);
    free(x);
    free(image);
    free(id);
    free(ref_id);
    free(ref);
}

static void test_bad_msd(void)
{
    double x[6] = {1, 2, 3, 4, 5, 6}, ref[6] = {0, 0, 0, 1, 1, 1};
    double prd[3] = {1, 1, 1}, sums[4] = {0, 0, 0, 0};
    int32_t image[6] = {0};
    int64_t ref_id[2] = {5, 9}, id[2] = {5, 7}, bad = -1;
    /* id 7 is between the reference's: refused, named, nothing added */
    CHECK_CDK(cdk_md_msd(x, image, id, 2, prd, ref_id, ref, 2, sums, &bad), CDK_ERR_ARG);
    CHECK(bad == 1 && sums[3] == 0);
    id[1] = 10; /* past them */
    CHECK_CDK(cdk_md_msd(x, image, id, 2, prd, ref_id, ref, 2, sums, &bad), CDK_ERR_ARG);
    CHECK(bad == 1 && sums[3] == 0);
    id[0] = 4; /* before them */
    CHECK_CDK(cdk_md_msd(x, image, id, 2, prd, ref_id, ref, 2, sums, &bad), CDK_ERR_ARG);
    CHECK(bad == 0 && sums[3] == 0);
    id[0] = 9;
    id[1] = 5;
    CHECK_CDK(cdk_md_msd(x, image, id, 2, NULL, ref_id, ref, 2, sums, &bad), CDK_ERR_ARG);
    CHECK_CDK(cdk_md_msd(x, image, id, 2, prd, ref_id, ref, 2, sums, &bad), CDK_OK);
    /* atom 0 (id 9) from (1, 1, 1), atom 1 (id 5) from the origin */
    CHECK(sums[0] == 0 + 16 && sums[3] == (0 + 1 + 4) + (16 + 25 + 36));
}

/* Two "ranks" A and B of random atoms (no periodic box), each counting its
 * own atoms against the other's as halo: together every pair once, as all
 * pairs counted here. */
static void test_pairs_case(int64_t na, int64_t nb, int64_t ntypes)
{
    int64_t n = na + nb, nbins = 7;
    double cutoff = 1.5, delrinv = 1.0 / (cutoff / (double)nbins);
    double *x = malloc((size_t)(3 * n + 3) * sizeof *x);
    int32_t *type = malloc((size_t)(n + 1) * sizeof *type);
    int64_t *id = malloc((size_t)(n + 1) * sizeof *id);
    size_t ncounts = (size_t)((ntypes + 1) * (ntypes + 1) * nbins);
    int64_t *got = calloc(ncounts, sizeof *got), *want = calloc(ncounts, sizeof *want);
    CHECK(x && type && id && got && want);
    for (int64_t i = 0; i < n; i++) {
        for (int d = 0; d < 3; d++)
            x[3 * i + d] = 3 * rnd() + (d == 0 && i >= na ? 2 : 0); /* B overlaps A */
        type[i] = (int32_t)(1 + i % ntypes);
        id[i] = (i * 37) % n + 1; /* unique, out of order */
    }
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = i + 1; j < n; j++) {
            double dx = x[3 * i] - x[3 * j], dy = x[3 * i + 1] - x[3 * j + 1],
                   dz = x[3 * i + 2] - x[3 * j + 2];
            int64_t bin = (int64_t)(sqrt(dx * dx + dy * dy + dz * dz) * delrinv);
            if (bin >= nbins)
                continue;
            int64_t lo = type[i] < type[j] ? type[i] : type[j];
            int64_t hi = type[i] < type[j] ? type[j] : type[i];
            want[(lo * (ntypes + 1) + hi) * nbins + bin]++;
        }
    int64_t bad = -1;
    CHECK_CDK(cdk_md_pairs(x, type, id, na, x + 3 * na, type + na, id + na, nb, cutoff,
                           delrinv, nbins, ntypes, got, &bad), CDK_OK);
    CHECK_CDK(cdk_md_pairs(x + 3 * na, type + na, id + na, nb, x, type, id, na, cutoff,
                           delrinv, nbins, ntypes, got, &bad), CDK_OK);
    for (size_t k = 0; k < ncounts; k++)
        CHECK(got[k] == want[k]);
    CHECK(bad == -1);
    free(x);
    free(type);
    free(id);
    free(got);
    free(want);
}

static void test_bad_pairs(void)
{
    double x[6] = {0, 0, 0, 1, 0, 0};
    int32_t type[2] = {1, 2};
    int64_t id[2] = {1, 2}, counts[3 * 3 * 2] = {0}, bad = -1;
    CHECK_CDK(cdk_md_pairs(x, type, id, 2, NULL, NULL, NULL, 0, 2.0, 1.0, 2, 1, counts, &bad),
              CDK_ERR_ARG);
    CHECK(bad == 1 && counts[(1 * 3 + 2) * 2 + 1] == 0);
    CHECK_CDK(cdk_md_pairs(x, type, id, 2, NULL, NULL, NULL, 0, 0.0, 1.0, 2, 2, counts, &bad),
              CDK_ERR_ARG);
    CHECK_CDK(cdk_md_pairs(x, type, id, 2, NULL, NULL, NULL, 0, NAN, 1.0, 2, 2, counts, &bad),
              CDK_ERR_ARG);
    CHECK_CDK(cdk_md_pairs(x, type, id, 2, NULL, NULL, NULL, 0, 2.0, 1.0, 2, 2, counts, &bad),
              CDK_OK);
    CHECK(counts[(1 * 3 + 2) * 2 + 1] == 1); /* r = 1: bin 1 */
    /* bins reaching past the cutoff (delrinv < nbins / cutoff): refused */
    CHECK_CDK(cdk_md_pairs(x, type, id, 2, NULL, NULL, NULL, 0, 2.0, 0.5, 2, 2, counts, &bad),
              CDK_ERR_ARG);
    /* a position that is not finite: refused, named, nothing counted */
    double halo[3] = {NAN, 0, 0};
    int32_t htype[1] = {1};
    int64_t hid[1] = {3};
    bad = -1;
    CHECK_CDK(cdk_md_pairs(x, type, id, 2, halo, htype, hid, 1, 2.0, 1.0, 2, 2, counts, &bad),
              CDK_ERR_ARG);
    CHECK(bad == 2 && counts[(1 * 3 + 2) * 2 + 1] == 1);
    /* a cutoff so small that its cells would overflow a count: coarser cells */
    double far[6] = {0, 0, 0, 1e6, 1e6, 1e6};
    int64_t tiny[2 * 2 * 1] = {0};
    int32_t one[2] = {1, 1};
    CHECK_CDK(cdk_md_pairs(far, one, id, 2, NULL, NULL, NULL, 0, 1e-9, 1e9, 1, 1, tiny, &bad),
              CDK_OK);
    CHECK(tiny[3] == 0);
}

int main(void)
{
    for (int rep = 0; rep < 50; rep++)
        test_kinetic_case(rep * 37 % 500, 1 + rep % 4);
    test_bad_kinetic();
    for (int rep = 0; rep < 50; rep++)
        test_msd_case(rep * 29 % 400);
    test_bad_msd();
    for (int rep = 0; rep < 30; rep++)
        test_pairs_case(rep * 13 % 200, rep * 7 % 150, 1 + rep % 3);
    test_bad_pairs();
    printf("test_kernels_md: ok\n");
    return 0;
}
