/* test_kernels_stats.c - moments, histograms and the quantile sketch
 * (kernels/) against naive references: long double sums, linear scans of
 * the bin edges, and sorted copies of the data. Deterministic (fixed seeds);
 * meant to run under ASan and UBSan, where the fuzzing of serialized sketches
 * matters most. */
#include "harness.h" /* first: it sets _GNU_SOURCE */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "caudal_kernels.h"
#include "dtype.h"

/* ------------------------------------------------------------------ random */

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t next(rng *r) /* splitmix64 */
{
    uint64_t z = (r->s += UINT64_C(0x9E3779B97F4A7C15));
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}

static double unif(rng *r) /* [0, 1) */
{
    return (double)(next(r) >> 11) * 0x1p-53;
}

static int64_t below(rng *r, int64_t n) /* [0, n) */
{
    return n > 0 ? (int64_t)(next(r) % (uint64_t)n) : 0;
}

static double normal(rng *r)
{
    return sqrt(-2.0 * log(1.0 - unif(r))) * cos(6.283185307179586 * unif(r));
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    CHECK(p);
    return p;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static const int REAL_DTYPES[] = {
#define DTYPE_CODE(code, ctype, sfx) code,
    CDK_REAL_TYPES(DTYPE_CODE)
#undef DTYPE_CODE
};
enum { NREAL = sizeof REAL_DTYPES / sizeof REAL_DTYPES[0] };

/* n values of dtype in buf, and as the kernels read them (double) in ref.
 * Integers are random bits over the type's whole range; floats are normal
 * with random scale and offset, and with NaN and inf at the given rates. */
static void fill(rng *r, int dtype, void *buf, double *ref, int64_t n, double nan_rate,
                 double inf_rate)
{
    double scale = pow(10.0, (double)below(r, 7) - 3), offset = normal(r) * scale * 3;
    for (int64_t i = 0; i < n; i++) {
        double v = offset + scale * normal(r), u = unif(r);
        if (u < nan_rate)
            v = NAN;
        else if (u < nan_rate + inf_rate)
            v = u < nan_rate + inf_rate / 2 ? INFINITY : -INFINITY;
        uint64_t bits = next(r);
        switch (dtype) {
#define FILL_CASE(code, ctype, sfx)                               \
    case code: {                                                  \
        ctype x;                                                  \
        if (code == CAUDAL_FLOAT32 || code == CAUDAL_FLOAT64)     \
            x = (ctype)v;                                         \
        else                                                      \
            memcpy(&x, &bits, sizeof x);                          \
        ((ctype *)buf)[i] = x;                                    \
        ref[i] = (double)x;                                       \
        break;                                                    \
    }
            CDK_REAL_TYPES(FILL_CASE)
#undef FILL_CASE
        }
    }
}

/* ----------------------------------------------------------------- moments */

/* Long double moments of the non-NaN values, and the sums of
 * |x - mean|^k that scale the tolerances. Deviations are taken from a
 * double pivot p near the mean, x - p being exact, so that the reference
 * stays exact where a long double mean of 1e9 + noise would not be. */
typedef struct ref_moments {
    int64_t n, nan;
    long double mean, m[5], abs[5];
    double min, max;
} ref_moments;

static ref_moments reference_moments(const double *x, int64_t n)
{
    ref_moments r = {.min = INFINITY, .max = -INFINITY};
    long double sum = 0, asum = 0, dsum = 0;
    for (int64_t i = 0; i < n; i++) {
        if (isnan(x[i])) {
            r.nan++;
            continue;
        }
        r.n++;
        sum += x[i];
        asum += fabsl(x[i]);
        r.min = x[i] < r.min ? x[i] : r.min;
        r.max = x[i] > r.max ? x[i] : r.max;
    }
    if (r.n == 0)
        return r;
    double p = (double)(sum / r.n);
    for (int64_t i = 0; i < n; i++)
        dsum += isnan(x[i]) ? 0 : (long double)x[i] - p;
    long double md = dsum / r.n;
    r.mean = p + md;
    r.abs[1] = asum; /* scales the mean */
    for (int64_t i = 0; i < n; i++) {
        if (isnan(x[i]))
            continue;
        long double d = ((long double)x[i] - p) - md, pk = d * d;
        for (int k = 2; k <= 4; k++, pk *= d) {
            r.m[k] += pk;
            r.abs[k] += fabsl(pk);
        }
    }
    return r;
}

static int close_to(double got, long double want, long double scale, double tol)
{
    return fabsl((long double)got - want) <= tol * scale + 1e-300L;
}

/* A finite state against the reference, relative to the reference's scale. */
static void check_moments(const cdk_moments *m, const ref_moments *r, double tol)
{
    CHECK(m->n == r->n && m->nan == r->nan);
    CHECK(m->min == r->min && m->max == r->max);
    if (r->n == 0)
        return;
    CHECK(close_to(m->mean, r->mean, r->abs[1] / r->n, tol));
    CHECK(close_to(m->m2, r->m[2], r->abs[2], tol));
    CHECK(close_to(m->m3, r->m[3], r->abs[3], tol));
    CHECK(close_to(m->m4, r->m[4], r->abs[4], tol));
}

static cdk_moments moments_of(const void *data, int dtype, int64_t n)
{
    cdk_moments m;
    CHECK_CDK(cdk_moments_init(&m), CDK_OK);
    CHECK_CDK(cdk_moments_add(&m, data, dtype, n), CDK_OK);
    return m;
}

static void test_moments_dtypes(void)
{
    rng r = {1};
    const int64_t sizes[] = {0, 1, 2, 7, 1023, 1024, 1025, 4097, 30011};
    for (int t = 0; t < NREAL; t++)
        for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
            int64_t n = sizes[s] + below(&r, 3);
            int dtype = REAL_DTYPES[t];
            void *buf = xmalloc((size_t)n * 8);
            double *ref = xmalloc((size_t)n * 8);
            int fp = dtype == CAUDAL_FLOAT32 || dtype == CAUDAL_FLOAT64;
            fill(&r, dtype, buf, ref, n, fp && s % 2 ? 0.1 : 0.0, 0.0);
            cdk_moments m = moments_of(buf, dtype, n);
            ref_moments want = reference_moments(ref, n);
            check_moments(&m, &want, 1e-12);
            free(buf);
            free(ref);
        }
}

static void test_moments_special(void)
{
    double nan3[] = {NAN, NAN, NAN};
    cdk_moments m = moments_of(nan3, CAUDAL_FLOAT64, 3);
    CHECK(m.n == 0 && m.nan == 3 && m.mean == 0 && m.m2 == 0 && m.min == INFINITY &&
          m.max == -INFINITY);

    double one[] = {NAN, 2.5};
    m = moments_of(one, CAUDAL_FLOAT64, 2);
    CHECK(m.n == 1 && m.nan == 1 && m.mean == 2.5 && m.m2 == 0 && m.m3 == 0 && m.m4 == 0 &&
          m.min == 2.5 && m.max == 2.5);

    /* Infinities are included, as NumPy includes them: mean inf, m2 NaN;
     * both signs make the mean NaN. Across runs and merges too. */
    enum { N = 5000 };
    double *x = xmalloc(N * sizeof *x);
    for (int i = 0; i < N; i++)
        x[i] = i % 3;
    x[4000] = INFINITY;
    m = moments_of(x, CAUDAL_FLOAT64, N);
    CHECK(m.n == N && m.mean == INFINITY && isnan(m.m2) && m.max == INFINITY && m.min == 0);
    x[10] = -INFINITY;
    m = moments_of(x, CAUDAL_FLOAT64, N);
    CHECK(isnan(m.mean) && isnan(m.m2) && m.min == -INFINITY && m.max == INFINITY);
    x[10] = 0;
    cdk_moments a = moments_of(x, CAUDAL_FLOAT64, 2000);
    cdk_moments b = moments_of(x + 2000, CAUDAL_FLOAT64, N - 2000);
    CHECK_CDK(cdk_moments_merge(&a, &b), CDK_OK);
    CHECK(a.n == N && a.mean == INFINITY && isnan(a.m2));
    CHECK_CDK(cdk_moments_merge(&b, &a), CDK_OK);
    CHECK(b.mean == INFINITY);
    /* Means whose difference overflows: NumPy's mean is 0 here. */
    double big[] = {-1e308, 1e308};
    a = moments_of(big, CAUDAL_FLOAT64, 1);
    b = moments_of(big + 1, CAUDAL_FLOAT64, 1);
    CHECK_CDK(cdk_moments_merge(&a, &b), CDK_OK);
    CHECK(a.mean == 0 && a.m2 == INFINITY);
    free(x);

    /* Constant data: exact zeros, whatever the runs. */
    double *c = xmalloc(3000 * sizeof *c);
    for (int i = 0; i < 3000; i++)
        c[i] = 0.1;
    m = moments_of(c, CAUDAL_FLOAT64, 3000);
    CHECK(m.mean == 0.1 && m.m2 == 0 && m.m3 == 0 && m.m4 == 0);
    free(c);
}

/* 1e9 + noise: sums of powers cancel completely (x^2 ~ 1e18 against a
 * variance of 1e-6), deviations from a mean that is merely rounded carry an
 * error of 1e-4 sigma, yet the central sums must stay right. */
static void test_moments_cancellation(void)
{
    rng r = {2};
    const double sigma[] = {1.0, 1e-3};
    for (int s = 0; s < 2; s++) {
        int64_t n = 200000;
        double *x = xmalloc((size_t)n * sizeof *x);
        for (int64_t i = 0; i < n; i++)
            x[i] = 1e9 + sigma[s] * normal(&r);
        ref_moments want = reference_moments(x, n);
        cdk_moments m = moments_of(x, CAUDAL_FLOAT64, n);
        CHECK(fabsl(m.m2 / want.m[2] - 1) < 1e-10);
        check_moments(&m, &want, 1e-10);
        /* Merged from pieces, each block's mean now rounded to double. */
        cdk_moments acc;
        cdk_moments_init(&acc);
        for (int64_t off = 0; off < n; off += 20000) {
            cdk_moments part = moments_of(x + off, CAUDAL_FLOAT64, 20000);
            CHECK_CDK(cdk_moments_merge(&acc, &part), CDK_OK);
        }
        CHECK(fabsl(acc.m2 / want.m[2] - 1) < 1e-7);
        CHECK(close_to(acc.mean, want.mean, 1e9, 1e-15));
        free(x);
    }
}

/* Pieces merged in random trees equal the whole. */
static void test_moments_merge(void)
{
    rng r = {3};
    for (int trial = 0; trial < 40; trial++) {
        int64_t n = below(&r, 20000);
        double *x = xmalloc((size_t)n * sizeof *x + 8);
        fill(&r, CAUDAL_FLOAT64, x, x, n, trial % 3 ? 0.05 : 0.0, 0.0);
        ref_moments want = reference_moments(x, n);
        enum { MAXP = 16 };
        cdk_moments part[MAXP];
        int parts = 1 + (int)below(&r, MAXP);
        int64_t cut[MAXP + 1];
        cut[0] = 0;
        cut[parts] = n;
        for (int p = 1; p < parts; p++)
            cut[p] = below(&r, n + 1);
        qsort(cut + 1, (size_t)(parts - 1), sizeof cut[0], cmp_i64);
        for (int p = 0; p < parts; p++)
            part[p] = moments_of(x + cut[p], CAUDAL_FLOAT64, cut[p + 1] - cut[p]);
        while (parts > 1) { /* merge a random pair (in either order) */
            int i = (int)below(&r, parts), j = (int)below(&r, parts - 1);
            j += j >= i;
            CHECK_CDK(cdk_moments_merge(&part[i], &part[j]), CDK_OK);
            part[j] = part[--parts];
        }
        check_moments(&part[0], &want, 1e-11);
        /* Self-merge: every value twice. */
        cdk_moments twice = part[0];
        CHECK_CDK(cdk_moments_merge(&twice, &twice), CDK_OK);
        CHECK(twice.n == 2 * want.n && twice.nan == 2 * want.nan);
        if (want.n)
            CHECK(close_to(twice.m2, 2 * want.m[2], 2 * want.abs[2], 1e-11));
        free(x);
    }
}

static void test_moments_args(void)
{
    cdk_moments m, before;
    double x[2] = {1, 2};
    CHECK_CDK(cdk_moments_init(NULL), CDK_ERR_ARG);
    cdk_moments_init(&m);
    before = m;
    CHECK_CDK(cdk_moments_add(&m, x, CAUDAL_COMPLEX128, 1), CDK_ERR_DTYPE);
    CHECK_CDK(cdk_moments_add(&m, x, 0, 1), CDK_ERR_DTYPE);
    CHECK_CDK(cdk_moments_add(&m, x, 99, 1), CDK_ERR_DTYPE);
    CHECK_CDK(cdk_moments_add(&m, x, CAUDAL_FLOAT64, -1), CDK_ERR_ARG);
    CHECK_CDK(cdk_moments_add(&m, NULL, CAUDAL_FLOAT64, 1), CDK_ERR_ARG);
    CHECK_CDK(cdk_moments_add(NULL, x, CAUDAL_FLOAT64, 1), CDK_ERR_ARG);
    CHECK_CDK(cdk_moments_add(&m, NULL, CAUDAL_FLOAT64, 0), CDK_OK);
    CHECK(memcmp(&m, &before, sizeof m) == 0);
    cdk_moments bad = m;
    bad.n = -1;
    CHECK_CDK(cdk_moments_merge(&m, &bad), CDK_ERR_ARG);
    CHECK_CDK(cdk_moments_merge(&bad, &m), CDK_ERR_ARG);
    CHECK_CDK(cdk_moments_merge(NULL, &m), CDK_ERR_ARG);
    CHECK(memcmp(&m, &before, sizeof m) == 0);
}

/* The fused rate of change: the moments of (now - before) / dt made in an
 * array first, to the last bit, for every real dtype (a NaN included, runs
 * cut at 1024), and its argument checks. */
static void test_moments_change(void)
{
    rng r = {7};
    for (int t = 0; t < NREAL; t++) {
        int dtype = REAL_DTYPES[t];
        int64_t n = 3000 + below(&r, 3);
        void *now = xmalloc((size_t)n * 8), *before = xmalloc((size_t)n * 8);
        double *x = xmalloc((size_t)n * 8), *y = xmalloc((size_t)n * 8), *d = xmalloc((size_t)n * 8);
        int fp = dtype == CAUDAL_FLOAT32 || dtype == CAUDAL_FLOAT64;
        fill(&r, dtype, now, x, n, fp ? 0.01 : 0.0, 0.0);
        fill(&r, dtype, before, y, n, 0.0, 0.0);
        for (int64_t i = 0; i < n; i++)
            d[i] = (x[i] - y[i]) / 2.5;
        cdk_moments got, want = moments_of(d, CAUDAL_FLOAT64, n);
        CHECK_CDK(cdk_moments_init(&got), CDK_OK);
        CHECK_CDK(cdk_moments_add_change(&got, now, before, dtype, n, 2.5), CDK_OK);
        CHECK(got.n == want.n && got.nan == want.nan && got.min == want.min &&
              got.max == want.max);
        CHECK(memcmp(&got.mean, &want.mean, sizeof got.mean) == 0 && got.m2 == want.m2 &&
              got.m3 == want.m3 && got.m4 == want.m4);
        free(now);
        free(before);
        free(x);
        free(y);
        free(d);
    }
    cdk_moments m, was;
    double a[2] = {1, 2};
    cdk_moments_init(&m);
    was = m;
    CHECK_CDK(cdk_moments_add_change(&m, a, a, CAUDAL_FLOAT64, 2, 0.0), CDK_ERR_ARG);
    CHECK_CDK(cdk_moments_add_change(&m, a, a, CAUDAL_FLOAT64, 2, NAN), CDK_ERR_ARG);
    CHECK_CDK(cdk_moments_add_change(&m, a, NULL, CAUDAL_FLOAT64, 2, 1.0), CDK_ERR_ARG);
    CHECK_CDK(cdk_moments_add_change(&m, a, a, CAUDAL_COMPLEX128, 1, 1.0), CDK_ERR_DTYPE);
    CHECK_CDK(cdk_moments_add_change(NULL, a, a, CAUDAL_FLOAT64, 2, 1.0), CDK_ERR_ARG);
    CHECK(memcmp(&m, &was, sizeof m) == 0);
}

/* -------------------------------------------------------------- histograms */

/* numpy.linspace(lo, hi, nbins + 1): i * step + lo, the last edge hi. */
static double *linspace_edges(double lo, double hi, int64_t nbins)
{
    double *e = xmalloc((size_t)(nbins + 1) * sizeof *e), step = (hi - lo) / (double)nbins;
    for (int64_t i = 0; i < nbins; i++)
        e[i] = (double)i * step + lo;
    e[nbins] = hi;
    return e;
}

/* The counts slot of v by a linear scan: bins [e_i, e_i+1), the last one
 * closed; then below, above, NaN. */
static int64_t scan_bin(const double *e, int64_t nedges, double v)
{
    int64_t nbins = nedges - 1;
    if (isnan(v))
        return nbins + 2;
    if (v < e[0])
        return nbins;
    if (v > e[nbins])
        return nbins + 1;
    for (int64_t i = 0; i < nbins - 1; i++)
        if (v < e[i + 1])
            return i;
    return nbins - 1;
}

/* Values that probe the bins: inside, outside, on every edge and one ulp
 * either side of it, the range's ends, NaN and infinities. */
static void probe_values(rng *r, const double *e, int64_t nedges, double *x, int64_t n)
{
    const double lo = e[0], hi = e[nedges - 1], span = hi - lo;
    const double special[] = {NAN, INFINITY, -INFINITY, lo, hi};
    for (int64_t i = 0; i < n; i++) {
        double edge = e[below(r, nedges)];
        switch (below(r, 8)) {
        case 0:
            x[i] = edge;
            break;
        case 1:
            x[i] = nextafter(edge, INFINITY);
            break;
        case 2:
            x[i] = nextafter(edge, -INFINITY);
            break;
        case 3:
            x[i] = below(r, 2) ? lo - span * unif(r) : hi + span * unif(r);
            break;
        case 4:
            x[i] = special[below(r, 5)];
            break;
        default:
            x[i] = lo + span * unif(r);
        }
    }
}

/* got - before against the linear scan of x. */
static void check_counts(const int64_t *got, const int64_t *before, const double *e,
                         int64_t nedges, const double *x, int64_t n)
{
    int64_t *want = calloc((size_t)nedges + 2, sizeof *want);
    CHECK(want);
    for (int64_t i = 0; i < n; i++)
        want[scan_bin(e, nedges, x[i])]++;
    for (int64_t i = 0; i < nedges + 2; i++)
        CHECK(got[i] - before[i] == want[i]);
    free(want);
}

/* Counts filled with random values (the kernels add to them). */
static int64_t *random_counts(rng *r, int64_t n, int64_t **before)
{
    int64_t *c = xmalloc((size_t)n * sizeof *c);
    *before = xmalloc((size_t)n * sizeof *c);
    for (int64_t i = 0; i < n; i++)
        c[i] = (*before)[i] = below(r, 100);
    return c;
}

static void test_histogram_uniform(void)
{
    rng r = {4};
    const double fixed[][3] = {{0.1, 0.7, 3},          {0, 1, 10},
                               {-1, 1, 7},             {1e6, 1e6 + 1e-3, 97},
                               {-5e-300, 5e-300, 13},  {-3, 1e-9, 1},
                               {1, 1 + 0x1p-49, 64}, /* edges 1/8 ulp apart: refused */
                               {1, 1 + 0x1p-44, 16}}; /* 2 ulps wide */
    const int nfixed = sizeof fixed / sizeof fixed[0];
    for (int trial = 0; trial < 70; trial++) {
        double lo, hi;
        int64_t nbins;
        if (trial < nfixed) {
            lo = fixed[trial][0];
            hi = fixed[trial][1];
            nbins = (int64_t)fixed[trial][2];
        } else {
            lo = normal(&r) * pow(10.0, (double)below(&r, 9) - 4);
            hi = lo + unif(&r) * pow(10.0, (double)below(&r, 9) - 4) + 1e-300;
            nbins = 1 + below(&r, 300);
        }
        double *e = linspace_edges(lo, hi, nbins);
        int increasing = 1;
        for (int64_t i = 0; i < nbins; i++)
            increasing &= e[i] < e[i + 1];
        int64_t n = below(&r, 5000), *before, *counts = random_counts(&r, nbins + 3, &before);
        double *x = xmalloc((size_t)n * sizeof *x + 8);
        probe_values(&r, e, nbins + 1, x, n);
        int rc = cdk_histogram_uniform(x, CAUDAL_FLOAT64, n, lo, hi, nbins, counts);
        if (!increasing) {
            CHECK_CDK(rc, CDK_ERR_ARG);
            CHECK(memcmp(counts, before, (size_t)(nbins + 3) * 8) == 0);
        } else {
            CHECK_CDK(rc, CDK_OK);
            check_counts(counts, before, e, nbins + 1, x, n);
            /* The same bins given as edges. */
            memcpy(before, counts, (size_t)(nbins + 3) * 8);
            CHECK_CDK(cdk_histogram_edges(x, CAUDAL_FLOAT64, n, e, nbins + 1, counts), CDK_OK);
            check_counts(counts, before, e, nbins + 1, x, n);
        }
        CHECK(trial != 6 || !increasing);
        free(e);
        free(x);
        free(counts);
        free(before);
    }
}

/* Other dtypes are compared as doubles; runs of the block are crossed. */
static void test_histogram_dtypes(void)
{
    rng r = {5};
    for (int t = 0; t < NREAL; t++) {
        int dtype = REAL_DTYPES[t];
        int64_t n = 3000 + below(&r, 100), nbins = 1 + below(&r, 50);
        void *buf = xmalloc((size_t)n * 8);
        double *ref = xmalloc((size_t)n * 8), *sorted = xmalloc((size_t)n * 8);
        fill(&r, dtype, buf, ref, n, 0.05, 0.05);
        memcpy(sorted, ref, (size_t)n * 8);
        qsort(sorted, (size_t)n, 8, cmp_double);
        /* A range over the middle of the data, so that every slot fills. */
        double lo = sorted[n / 5], hi = sorted[n / 2];
        if (!(lo < hi))
            hi = lo + 1;
        double *e = linspace_edges(lo, hi, nbins);
        int64_t *counts = calloc((size_t)nbins + 3, 8), *zero = calloc((size_t)nbins + 3, 8);
        CHECK(counts && zero);
        CHECK_CDK(cdk_histogram_uniform(buf, dtype, n, lo, hi, nbins, counts), CDK_OK);
        check_counts(counts, zero, e, nbins + 1, ref, n);
        memset(counts, 0, (size_t)(nbins + 3) * 8);
        CHECK_CDK(cdk_histogram_edges(buf, dtype, n, e, nbins + 1, counts), CDK_OK);
        check_counts(counts, zero, e, nbins + 1, ref, n);
        free(buf);
        free(ref);
        free(sorted);
        free(e);
        free(counts);
        free(zero);
    }
}

static void test_histogram_edges(void)
{
    rng r = {6};
    for (int trial = 0; trial < 40; trial++) {
        int64_t nedges = 2 + below(&r, 200), n = below(&r, 4000);
        double *e = xmalloc((size_t)nedges * sizeof *e);
        e[0] = normal(&r) * 100;
        for (int64_t i = 1; i < nedges; i++) /* uneven widths, some of one ulp */
            e[i] = below(&r, 10) ? e[i - 1] + unif(&r) * 10 + 1e-9
                                 : nextafter(e[i - 1], INFINITY);
        int64_t *before, *counts = random_counts(&r, nedges + 2, &before);
        double *x = xmalloc((size_t)n * sizeof *x + 8);
        probe_values(&r, e, nedges, x, n);
        CHECK_CDK(cdk_histogram_edges(x, CAUDAL_FLOAT64, n, e, nedges, counts), CDK_OK);
        check_counts(counts, before, e, nedges, x, n);
        free(e);
        free(x);
        free(counts);
        free(before);
    }
}

static void test_histogram_args(void)
{
    double x[4] = {0.5, 1, NAN, 3}, e[4] = {0, 1, 2, 3};
    int64_t c[8] = {0}, zero[8] = {0};
    const double two_ulps = nextafter(nextafter(1.0, 2.0), 2.0);
    CHECK_CDK(cdk_histogram_uniform(x, CAUDAL_FLOAT64, 4, 1, 1, 2, c), CDK_ERR_ARG);
    CHECK_CDK(cdk_histogram_uniform(x, CAUDAL_FLOAT64, 4, 2, 1, 2, c), CDK_ERR_ARG);
    CHECK_CDK(cdk_histogram_uniform(x, CAUDAL_FLOAT64, 4, NAN, 1, 2, c), CDK_ERR_ARG);
    CHECK_CDK(cdk_histogram_uniform(x, CAUDAL_FLOAT64, 4, 0, INFINITY, 2, c), CDK_ERR_ARG);
    CHECK_CDK(cdk_histogram_uniform(x, CAUDAL_FLOAT64, 4, -INFINITY, 0, 2, c), CDK_ERR_ARG);
    CHECK_CDK(cdk_histogram_uniform(x, CAUDAL_FLOAT64, 4, -1e308, 1e308, 2, c), CDK_ERR_ARG);
    CHECK_CDK(cdk_histogram_uniform(x, CAUDAL_FLOAT64, 4, 0, 1, 0, c), CDK_ERR_ARG);
    CHECK_CDK(cdk_histogram_uniform(x, CAUDAL_FLOAT64, 4, 0, 1, -1, c), CDK_ERR_ARG);
    CHECK_CDK(cdk_histogram_uniform(x, CAUDAL_FLOAT64, 4, 0, 1, INT64_MAX, c), CDK_ERR_ARG);
    CHECK_CDK(cdk_histogram_uniform(x, CAUDAL_FLOAT64, 4, 1, two_ulps, 4, c), CDK_ERR_ARG);
    CHECK_CDK(cdk_histogram_uniform(x, CAUDAL_FLOAT64, -1, 0, 1, 2, c), CDK_ERR_ARG);
    CHECK_CDK(cdk_histogram_uniform(NULL, CAUDAL_FLOAT64, 4, 0, 1, 2, c), CDK_ERR_ARG);
    CHECK_CDK(cdk_histogram_uniform(x, CAUDAL_FLOAT64, 4, 0, 1, 2, NULL), CDK_ERR_ARG);
    CHECK_CDK(cdk_histogram_uniform(x, CAUDAL_COMPLEX64, 4, 0, 1, 2, c), CDK_ERR_DTYPE);
    CHECK_CDK(cdk_histogram_uniform(x, 0, 4, 0, 1, 2, c), CDK_ERR_DTYPE);
    CHECK_CDK(cdk_histogram_edges(x, CAUDAL_FLOAT64, 4, e, 1, c), CDK_ERR_ARG);
    CHECK_CDK(cdk_histogram_edges(x, CAUDAL_FLOAT64, 4, NULL, 4, c), CDK_ERR_ARG);
    CHECK_CDK(cdk_histogram_edges(x, CAUDAL_FLOAT64, 4, e, 4, NULL), CDK_ERR_ARG);
    CHECK_CDK(cdk_histogram_edges(x, CAUDAL_FLOAT64, -1, e, 4, c), CDK_ERR_ARG);
    CHECK_CDK(cdk_histogram_edges(x, CAUDAL_COMPLEX128, 4, e, 4, c), CDK_ERR_DTYPE);
    const double same[3] = {0, 1, 1}, down[3] = {0, 2, 1}, nan_e[3] = {0, NAN, 2},
                 inf_e[3] = {0, 1, INFINITY};
    CHECK_CDK(cdk_histogram_edges(x, CAUDAL_FLOAT64, 4, same, 3, c), CDK_ERR_ARG);
    CHECK_CDK(cdk_histogram_edges(x, CAUDAL_FLOAT64, 4, down, 3, c), CDK_ERR_ARG);
    CHECK_CDK(cdk_histogram_edges(x, CAUDAL_FLOAT64, 4, nan_e, 3, c), CDK_ERR_ARG);
    CHECK_CDK(cdk_histogram_edges(x, CAUDAL_FLOAT64, 4, inf_e, 3, c), CDK_ERR_ARG);
    CHECK(memcmp(c, zero, sizeof c) == 0);
    /* An empty block; one bin closed at both ends. */
    CHECK_CDK(cdk_histogram_uniform(NULL, CAUDAL_FLOAT64, 0, 0, 1, 2, c), CDK_OK);
    CHECK(memcmp(c, zero, sizeof c) == 0);
    CHECK_CDK(cdk_histogram_uniform(x, CAUDAL_FLOAT64, 4, 0.5, 1, 1, c), CDK_OK);
    CHECK(c[0] == 2 && c[1] == 0 && c[2] == 1 && c[3] == 1);
}

/* ------------------------------------------------------------------ sketch */

/* floor(n / k) for each level that can compact (k 2^h <= n). */
static int64_t sketch_bound(int64_t n, int64_t k)
{
    int64_t levels = 0;
    while ((n >> levels) >= k)
        levels++;
    return levels * (n / k);
}

static int contains(const double *v, int64_t n, double x)
{
    return n > 0 && bsearch(&x, v, (size_t)n, sizeof x, cmp_double) != NULL;
}

/* The header's guarantee at q, exactly, against the sorted values v. */
static void check_quantile(const cdk_sketch *s, const double *v, int64_t n, double q)
{
    int64_t sn, e;
    double x;
    CHECK_CDK(cdk_sketch_info(s, &sn, NULL, &e), CDK_OK);
    CHECK(sn == n);
    if (n == 0) {
        CHECK_CDK(cdk_sketch_quantile(s, q, &x), CDK_ERR_ARG);
        return;
    }
    CHECK_CDK(cdk_sketch_quantile(s, q, &x), CDK_OK);
    double rk = q * (double)(n - 1);
    int64_t fl = (int64_t)floor(rk), cl = (int64_t)ceil(rk);
    int64_t lo = fl - e < 0 ? 0 : fl - e, hi = cl + e > n - 1 ? n - 1 : cl + e;
    CHECK(v[lo] <= x && x <= v[hi]);
    CHECK(contains(v, n, x));
    if (e == 0)
        CHECK(x == v[fl] || x == v[cl]);
}

static void check_sketch(const cdk_sketch *s, const double *v, int64_t n, int64_t nan, rng *r)
{
    int64_t sn, snan, e, k;
    CHECK_CDK(cdk_sketch_info(s, &sn, &snan, &e), CDK_OK);
    CHECK_CDK(cdk_sketch_k(s, &k), CDK_OK);
    CHECK(sn == n && snan == nan);
    CHECK(e >= 0 && e <= sketch_bound(n, k));
    if (n >= k) /* the header's form of the bound */
        CHECK((double)e <= (double)n * (log2((double)n / (double)k) + 1) / (double)k + 1e-9);
    const double fixed[] = {0, 1, 0.5, 0.25, 0.75, 0.01, 0.99, 1e-9, 1 - 1e-9};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        check_quantile(s, v, n, fixed[i]);
    for (int i = 0; i < 12; i++)
        check_quantile(s, v, n, unif(r));
    for (int64_t i = 0; n > 1 && n < 12 && i < n; i++)
        check_quantile(s, v, n, (double)i / (double)(n - 1));
}

/* Data of several shapes: normal, few distinct values, sorted either way,
 * with NaN, with infinities, all equal. */
enum { NKINDS = 7 };
static void sketch_data(rng *r, int kind, double *x, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        double v = normal(r);
        if (kind == 1)
            v = (double)below(r, 7);
        else if (kind == 2)
            v = (double)i * 0.5;
        else if (kind == 3)
            v = (double)(n - i);
        else if (kind == 4 && below(r, 10) == 0)
            v = NAN;
        else if (kind == 5 && below(r, 20) == 0)
            v = below(r, 2) ? INFINITY : -INFINITY;
        else if (kind == 6)
            v = 42;
        x[i] = v;
    }
}

/* The non-NaN values of x, sorted; their count in *m, the NaN in *nan. */
static double *sorted_values(const double *x, int64_t n, int64_t *m, int64_t *nan)
{
    double *v = xmalloc((size_t)n * sizeof *v + 8);
    *m = 0;
    for (int64_t i = 0; i < n; i++)
        if (!isnan(x[i]))
            v[(*m)++] = x[i];
    qsort(v, (size_t)*m, sizeof *v, cmp_double);
    *nan = n - *m;
    return v;
}

static void add_chunks(rng *r, cdk_sketch *s, const double *x, int64_t n)
{
    for (int64_t off = 0; off < n;) {
        int64_t len = below(r, 4) ? 1 + below(r, 3000) : 1 + below(r, 5);
        len = len > n - off ? n - off : len;
        CHECK_CDK(cdk_sketch_add(s, x + off, CAUDAL_FLOAT64, len), CDK_OK);
        off += len;
    }
}

static unsigned char *saved(const cdk_sketch *s, size_t *size)
{
    CHECK_CDK(cdk_sketch_size(s, size), CDK_OK);
    unsigned char *buf = xmalloc(*size);
    CHECK_CDK(cdk_sketch_save(s, buf, *size - 1), CDK_ERR_ARG);
    CHECK_CDK(cdk_sketch_save(s, buf, *size), CDK_OK);
    return buf;
}

/* Saved and loaded: the same state, the same bytes again, the same answers. */
static cdk_sketch *save_load(const cdk_sketch *s)
{
    size_t size, size2;
    unsigned char *buf = saved(s, &size);
    cdk_sketch *t;
    CHECK_CDK(cdk_sketch_load(buf, size, &t), CDK_OK);
    unsigned char *buf2 = saved(t, &size2);
    CHECK(size2 == size && memcmp(buf, buf2, size) == 0);
    int64_t a[4], b[4];
    cdk_sketch_info(s, &a[0], &a[1], &a[2]);
    cdk_sketch_info(t, &b[0], &b[1], &b[2]);
    cdk_sketch_k(s, &a[3]);
    cdk_sketch_k(t, &b[3]);
    CHECK(memcmp(a, b, sizeof a) == 0);
    for (double q = 0; a[0] > 0 && q <= 1; q += 0.125) {
        double x, y;
        CHECK_CDK(cdk_sketch_quantile(s, q, &x), CDK_OK);
        CHECK_CDK(cdk_sketch_quantile(t, q, &y), CDK_OK);
        CHECK(x == y);
    }
    free(buf);
    free(buf2);
    return t;
}

static void test_sketch_single(void)
{
    rng r = {7};
    const int64_t cases[][2] = {{0, 8},       {1, 8},        {2, 10},     {7, 8},
                                {8, 8},       {9, 8},        {100, 8},    {1000, 16},
                                {5000, 200},  {12345, 64},   {100000, 8}, {100000, 1024},
                                {1000000, 200}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
        for (int kind = 0; kind < NKINDS; kind++) {
            int64_t n = cases[c][0], k = cases[c][1], m, nan;
            if (n >= 1000000 && kind != 0)
                continue; /* one large case is enough under the sanitizers */
            double *x = xmalloc((size_t)n * sizeof *x + 8);
            sketch_data(&r, kind, x, n);
            double *v = sorted_values(x, n, &m, &nan);
            cdk_sketch *s, *t;
            CHECK_CDK(cdk_sketch_new(k, &s), CDK_OK);
            add_chunks(&r, s, x, n);
            check_sketch(s, v, m, nan, &r);
            t = save_load(s);
            check_sketch(t, v, m, nan, &r);
            cdk_sketch_free(t);
            cdk_sketch_free(s);
            free(x);
            free(v);
        }
}

static void test_sketch_dtypes(void)
{
    rng r = {8};
    for (int t = 0; t < NREAL; t++) {
        int64_t n = 5000, m, nan;
        void *buf = xmalloc((size_t)n * 8);
        double *ref = xmalloc((size_t)n * 8);
        fill(&r, REAL_DTYPES[t], buf, ref, n, 0.05, 0.01);
        double *v = sorted_values(ref, n, &m, &nan);
        cdk_sketch *s;
        CHECK_CDK(cdk_sketch_new(32, &s), CDK_OK);
        CHECK_CDK(cdk_sketch_add(s, buf, REAL_DTYPES[t], n), CDK_OK);
        check_sketch(s, v, m, nan, &r);
        cdk_sketch_free(s);
        free(buf);
        free(ref);
        free(v);
    }
}

/* Values of both signs with zeros that are all -0, many of them equal, with
 * low bits that are all zero or not: the level sort must be a permutation
 * of the bits (no -0 may come back as +0) as well as an order, and the
 * guarantee must hold, through the sort's radix and run-merging paths. */
static void test_sketch_signed_zero(void)
{
    rng r = {10};
    const int64_t ks[] = {8, 64, 256, 2048};
    for (int c = 0; c < 8; c++) {
        int64_t k = ks[c % 4], n = 20000 + below(&r, 20000), m, nan;
        double *x = xmalloc((size_t)n * sizeof *x);
        for (int64_t i = 0; i < n; i++) {
            int64_t u = below(&r, 10);
            x[i] = u < 3 ? -0.0 : u < 6 ? (double)(below(&r, 2001) - 1000) : normal(&r);
            if (c >= 4 && i > n / 2) /* then presorted runs */
                x[i] = (double)(i - 3 * n / 4);
            if (x[i] == 0)
                x[i] = -0.0;
        }
        double *v = sorted_values(x, n, &m, &nan);
        cdk_sketch *s;
        CHECK_CDK(cdk_sketch_new(k, &s), CDK_OK);
        add_chunks(&r, s, x, n);
        CHECK_CDK(cdk_sketch_merge(s, s), CDK_OK);
        size_t size;
        unsigned char *buf = saved(s, &size);
        size_t nlev = (size_t)buf[48] | (size_t)buf[49] << 8; /* u32 LE, below 64 */
        int zeros = 0;
        for (size_t at = 56 + 8 * nlev; at + 8 <= size; at += 8) {
            uint64_t bits = 0;
            for (int b = 0; b < 8; b++)
                bits |= (uint64_t)buf[at + b] << (8 * b);
            CHECK(bits != 0); /* a +0, never added */
            zeros += bits == UINT64_C(1) << 63;
        }
        CHECK(zeros > 0);
        free(buf);
        double *x2 = xmalloc((size_t)n * 2 * sizeof *x2);
        memcpy(x2, x, (size_t)n * sizeof *x);
        memcpy(x2 + n, x, (size_t)n * sizeof *x);
        free(v);
        v = sorted_values(x2, 2 * n, &m, &nan);
        check_sketch(s, v, m, nan, &r);
        cdk_sketch_free(s);
        free(x);
        free(x2);
        free(v);
    }
}

/* Sketches of random pieces, some of them through bytes, merged in random
 * trees, then into themselves, then loaded and given more values: the
 * guarantee holds against all the values each time. */
static void test_sketch_merge(void)
{
    rng r = {9};
    const int64_t ks[] = {8, 10, 16, 64, 200, 1024};
    enum { MAXP = 24 };
    for (int trial = 0; trial < 30; trial++) {
        int64_t k = ks[below(&r, 6)], n = below(&r, 4) ? below(&r, 20000) : below(&r, 200000);
        int kind = (int)below(&r, NKINDS), parts = 1 + (int)below(&r, MAXP);
        double *x = xmalloc((size_t)n * 3 * sizeof *x + 8);
        sketch_data(&r, kind, x, n);
        cdk_sketch *pool[MAXP];
        int64_t cut[MAXP + 1], m, nan;
        cut[0] = 0;
        cut[parts] = n;
        for (int p = 1; p < parts; p++)
            cut[p] = below(&r, n + 1);
        qsort(cut + 1, (size_t)(parts - 1), sizeof cut[0], cmp_i64);
        for (int p = 0; p < parts; p++) {
            CHECK_CDK(cdk_sketch_new(k, &pool[p]), CDK_OK);
            add_chunks(&r, pool[p], x + cut[p], cut[p + 1] - cut[p]);
            if (below(&r, 4) == 0) {
                cdk_sketch *t = save_load(pool[p]);
                cdk_sketch_free(pool[p]);
                pool[p] = t;
            }
        }
        while (parts > 1) {
            int i = (int)below(&r, parts), j = (int)below(&r, parts - 1);
            j += j >= i;
            CHECK_CDK(cdk_sketch_merge(pool[i], pool[j]), CDK_OK);
            cdk_sketch_free(pool[j]);
            pool[j] = pool[--parts];
        }
        double *v = sorted_values(x, n, &m, &nan);
        check_sketch(pool[0], v, m, nan, &r);
        free(v);

        CHECK_CDK(cdk_sketch_merge(pool[0], pool[0]), CDK_OK); /* x twice */
        memcpy(x + n, x, (size_t)n * sizeof *x);
        v = sorted_values(x, 2 * n, &m, &nan);
        check_sketch(pool[0], v, m, nan, &r);
        free(v);

        cdk_sketch *t = save_load(pool[0]); /* and new values */
        sketch_data(&r, kind, x + 2 * n, n);
        add_chunks(&r, t, x + 2 * n, n);
        v = sorted_values(x, 3 * n, &m, &nan);
        check_sketch(t, v, m, nan, &r);
        free(v);
        cdk_sketch_free(t);
        cdk_sketch_free(pool[0]);
        free(x);
    }
}

static void test_sketch_args(void)
{
    cdk_sketch *s = NULL, *other;
    double x[3] = {1, 2, 3}, q;
    int64_t n, nan, e;
    CHECK_CDK(cdk_sketch_new(7, &s), CDK_ERR_ARG);
    CHECK_CDK(cdk_sketch_new(6, &s), CDK_ERR_ARG);
    CHECK_CDK(cdk_sketch_new(-8, &s), CDK_ERR_ARG);
    CHECK_CDK(cdk_sketch_new((1 << 20) + 2, &s), CDK_ERR_ARG);
    CHECK_CDK(cdk_sketch_new(8, NULL), CDK_ERR_ARG);
    CHECK(s == NULL);
    CHECK_CDK(cdk_sketch_new(1 << 20, &s), CDK_OK);
    cdk_sketch_free(s);
    cdk_sketch_free(NULL);
    CHECK_CDK(cdk_sketch_new(8, &s), CDK_OK);
    CHECK_CDK(cdk_sketch_add(s, x, CAUDAL_COMPLEX128, 1), CDK_ERR_DTYPE);
    CHECK_CDK(cdk_sketch_add(s, x, CAUDAL_FLOAT64, -1), CDK_ERR_ARG);
    CHECK_CDK(cdk_sketch_add(s, NULL, CAUDAL_FLOAT64, 1), CDK_ERR_ARG);
    CHECK_CDK(cdk_sketch_add(NULL, x, CAUDAL_FLOAT64, 1), CDK_ERR_ARG);
    CHECK_CDK(cdk_sketch_quantile(s, 0.5, &q), CDK_ERR_ARG); /* empty */
    CHECK_CDK(cdk_sketch_add(s, x, CAUDAL_FLOAT64, 3), CDK_OK);
    CHECK_CDK(cdk_sketch_quantile(s, -0.1, &q), CDK_ERR_ARG);
    CHECK_CDK(cdk_sketch_quantile(s, 1.1, &q), CDK_ERR_ARG);
    CHECK_CDK(cdk_sketch_quantile(s, NAN, &q), CDK_ERR_ARG);
    CHECK_CDK(cdk_sketch_quantile(s, 0.5, NULL), CDK_ERR_ARG);
    CHECK_CDK(cdk_sketch_quantile(s, 0.5, &q), CDK_OK);
    CHECK(q == 2);
    CHECK_CDK(cdk_sketch_new(10, &other), CDK_OK);
    CHECK_CDK(cdk_sketch_add(other, x, CAUDAL_FLOAT64, 3), CDK_OK);
    CHECK_CDK(cdk_sketch_merge(s, other), CDK_ERR_ARG); /* k differs */
    CHECK_CDK(cdk_sketch_merge(s, NULL), CDK_ERR_ARG);
    CHECK_CDK(cdk_sketch_info(s, &n, &nan, &e), CDK_OK);
    CHECK(n == 3 && nan == 0 && e == 0);
    CHECK_CDK(cdk_sketch_info(NULL, &n, &nan, &e), CDK_ERR_ARG);
    size_t size;
    CHECK_CDK(cdk_sketch_size(NULL, &size), CDK_ERR_ARG);
    CHECK_CDK(cdk_sketch_save(s, NULL, 1000), CDK_ERR_ARG);
    CHECK_CDK(cdk_sketch_load(NULL, 10, &other), CDK_ERR_ARG);
    CHECK_CDK(cdk_sketch_load(x, 0, &other), CDK_ERR_FORMAT);
    double nans[4] = {NAN, NAN, NAN, NAN};
    CHECK_CDK(cdk_sketch_add(other, nans, CAUDAL_FLOAT64, 4), CDK_OK);
    CHECK_CDK(cdk_sketch_info(other, &n, &nan, &e), CDK_OK);
    CHECK(n == 3 && nan == 4);
    cdk_sketch_free(other);
    cdk_sketch_free(s);
}

/* Exercise a sketch that loaded: every call must work on it. */
static void use_sketch(cdk_sketch *s, rng *r)
{
    int64_t n, nan, e;
    double x, more[50];
    CHECK_CDK(cdk_sketch_info(s, &n, &nan, &e), CDK_OK);
    CHECK(n >= 0 && nan >= 0 && e >= 0);
    for (double q = 0; q <= 1; q += 0.25)
        CHECK_CDK(cdk_sketch_quantile(s, q, &x), n > 0 ? CDK_OK : CDK_ERR_ARG);
    sketch_data(r, 0, more, 50);
    if (n + nan > INT64_MAX / 2 - 50 || e > INT64_MAX / 2) { /* counts would overflow */
        CHECK_CDK(cdk_sketch_merge(s, s), CDK_ERR_ARG);
        return;
    }
    CHECK_CDK(cdk_sketch_add(s, more, CAUDAL_FLOAT64, 50), CDK_OK);
    CHECK_CDK(cdk_sketch_merge(s, s), CDK_OK);
    CHECK_CDK(cdk_sketch_quantile(s, unif(r), &x), CDK_OK);
    cdk_sketch_free(save_load(s));
}

static void put64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* One corrupted copy of buf: a size of exactly its bytes, so that ASan sees
 * any read past it. Returns the load's status. */
static int load_mutant(const unsigned char *buf, size_t size, rng *r)
{
    size_t len = size;
    unsigned char *m = xmalloc(size + 3 * 16); /* up to 3 edits append 16 */
    memcpy(m, buf, size);
    for (int i = 0, edits = 1 + (int)below(r, 3); i < edits; i++) {
        size_t at = (size_t)below(r, (int64_t)len);
        switch (below(r, 6)) {
        case 0:
            m[at] ^= (unsigned char)(1u << below(r, 8));
            break;
        case 1:
            m[at] = (unsigned char)next(r);
            break;
        case 2: /* a header or length field: small, extreme, or off by one */
            at = 8 * (size_t)below(r, (int64_t)(len < 128 ? len : 128) / 8);
            if (at + 8 <= len) {
                const uint64_t vals[] = {0, 1, 7, 8, 9, UINT64_MAX, INT64_MAX, 1u << 20,
                                         get64(m + at) + 1, get64(m + at) - 1,
                                         get64(m + at) << 1, next(r)};
                put64(m + at, vals[below(r, sizeof vals / sizeof vals[0])]);
            }
            break;
        case 3:
            len = (size_t)below(r, (int64_t)len + 1);
            break;
        case 4: {
            size_t extra = 1 + (size_t)below(r, 16);
            for (size_t j = 0; j < extra; j++)
                m[len + j] = (unsigned char)next(r);
            len += extra;
            break;
        }
        default: /* a value: NaN, inf, or another double */
            if (len >= 16) {
                at = len - 8 * (1 + (size_t)below(r, (int64_t)len / 16));
                const double vals[] = {NAN, INFINITY, -INFINITY, 0.0, -0.0, 1e300};
                uint64_t bits;
                memcpy(&bits, &vals[below(r, 6)], 8);
                put64(m + at, bits);
            }
        }
        if (len == 0)
            break;
    }
    unsigned char *exact = xmalloc(len);
    memcpy(exact, m, len);
    free(m);
    cdk_sketch *s = NULL;
    int rc = cdk_sketch_load(exact, len, &s);
    free(exact);
    CHECK(rc == CDK_OK || rc == CDK_ERR_FORMAT);
    if (rc == CDK_OK) {
        use_sketch(s, r);
        cdk_sketch_free(s);
    }
    return rc;
}

/* Layout (sketch.c): "CDKS", u32 version, u64 k, n, nan, rank_error,
 * parity, u32 nlev, u32 0, u64 lengths, doubles. */
enum { AT_VERSION = 4, AT_K = 8, AT_N = 16, AT_NAN = 24, AT_ERR = 32, AT_PARITY = 40,
       AT_NLEV = 48, AT_ZERO = 52, AT_LEN = 56 };

static void expect_format(const unsigned char *buf, size_t size, size_t at, uint64_t v,
                          int bytes)
{
    unsigned char *m = xmalloc(size);
    memcpy(m, buf, size);
    for (int i = 0; i < bytes; i++)
        m[at + (size_t)i] = (unsigned char)(v >> (8 * i));
    cdk_sketch *s = NULL;
    CHECK_CDK(cdk_sketch_load(m, size, &s), CDK_ERR_FORMAT);
    CHECK(s == NULL);
    free(m);
}

static void test_sketch_fuzz(void)
{
    rng r = {10};
    const int64_t seeds[][2] = {{0, 8}, {5, 8}, {50, 8}, {3000, 16}, {777, 10}};
    for (size_t c = 0; c < sizeof seeds / sizeof seeds[0]; c++) {
        int64_t n = seeds[c][0], k = seeds[c][1];
        double *x = xmalloc((size_t)n * sizeof *x + 8);
        sketch_data(&r, c % 2 ? 4 : 0, x, n);
        cdk_sketch *s;
        CHECK_CDK(cdk_sketch_new(k, &s), CDK_OK);
        CHECK_CDK(cdk_sketch_add(s, x, CAUDAL_FLOAT64, n), CDK_OK);
        size_t size;
        unsigned char *buf = saved(s, &size);
        int ok = 0;
        for (int i = 0; i < 4000; i++)
            ok += load_mutant(buf, size, &r) == CDK_OK;
        CHECK(ok > 0); /* some mutants (values, nan) are still sketches */
        if (n == 3000) { /* several levels: each invariant on its own */
            uint64_t nlev = get64(buf + AT_NLEV) & 0xffffffffu;
            CHECK(nlev >= 3);
            expect_format(buf, size, 0, 'X', 1);
            expect_format(buf, size, AT_VERSION, 2, 4);
            expect_format(buf, size, AT_K, 17, 8);
            expect_format(buf, size, AT_K, 6, 8);
            expect_format(buf, size, AT_K, (1 << 20) + 2, 8);
            expect_format(buf, size, AT_K, 8, 8); /* levels now hold k or more */
            expect_format(buf, size, AT_N, get64(buf + AT_N) + 1, 8);
            expect_format(buf, size, AT_NAN, UINT64_MAX, 8);
            expect_format(buf, size, AT_ERR, 0, 8);
            expect_format(buf, size, AT_ERR, get64(buf + AT_N), 8);
            expect_format(buf, size, AT_PARITY, UINT64_C(1) << 40, 8);
            expect_format(buf, size, AT_NLEV, 64, 4);
            expect_format(buf, size, AT_NLEV, nlev - 1, 4);
            expect_format(buf, size, AT_ZERO, 1, 4);
            expect_format(buf, size, AT_LEN, 16, 8);
            expect_format(buf, size, size - 8, UINT64_C(0x7ff8000000000000), 8); /* NaN */
            cdk_sketch *t;
            CHECK_CDK(cdk_sketch_load(buf, size - 1, &t), CDK_ERR_FORMAT);
            unsigned char *longer = xmalloc(size + 8);
            memcpy(longer, buf, size);
            memset(longer + size, 0, 8);
            CHECK_CDK(cdk_sketch_load(longer, size + 8, &t), CDK_ERR_FORMAT);
            free(longer);
        }
        free(buf);
        free(x);
        cdk_sketch_free(s);
    }
}

int main(void)
{
    test_moments_dtypes();
    test_moments_special();
    test_moments_cancellation();
    test_moments_merge();
    test_moments_args();
    test_moments_change();
    test_histogram_uniform();
    test_histogram_dtypes();
    test_histogram_edges();
    test_histogram_args();
    test_sketch_args();
    test_sketch_single();
    test_sketch_dtypes();
    test_sketch_signed_zero();
    test_sketch_merge();
    test_sketch_fuzz();
    printf("test_kernels_stats: ok\n");
    return 0;
}
