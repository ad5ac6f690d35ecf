/* histogram.c - counts of a block's values in bins, by NumPy's rules.
 *
 * counts[0..nbins-1] are the bins, then values below, above, and NaN. The
 * block is read in runs converted to double (float64 is read in place). */
#include <math.h>

#include "caudal_kernels.h"
#include "dtype.h"

enum { RUN = 1024 };

/* Values outside the bins: below, above, NaN. */
typedef struct outside {
    int64_t below, above, nan;
} outside;

static void outside_add(outside *o, double v, double lo, double hi)
{
    if (v < lo)
        o->below++;
    else if (v > hi)
        o->above++;
    else
        o->nan++;
}

static int check_block(const void *data, int dtype, int64_t n, const int64_t *counts)
{
    if (!cdk_real_size(dtype))
        return CDK_ERR_DTYPE;
    if (n < 0 || (n > 0 && !data) || !counts)
        return CDK_ERR_ARG;
    return CDK_OK;
}

/* ------------------------------------------------------------ equal bins */

/* numpy.histogram's equal bins: edges from numpy.linspace (i * step + lo,
 * the last one hi exactly), and the direct index from the same expression
 * as NumPy's, ((x - lo) / (hi - lo)) * nbins, so that where a corrected
 * index could still differ from the edges (bins a few ulps wide) it differs
 * as NumPy's does. */
typedef struct uniform {
    double lo, hi, span, step, fbins;
    int64_t nbins;
} uniform;

static double uniform_edge(const uniform *u, int64_t i)
{
    return i == u->nbins ? u->hi : (double)i * u->step + u->lo;
}

/* NumPy refuses bins whose edges do not increase ("Too many bins for data
 * range"); so do we, which also rules out an overflowing hi - lo. */
static int uniform_init(uniform *u, double lo, double hi, int64_t nbins)
{
    if (!isfinite(lo) || !isfinite(hi) || !(lo < hi) || nbins < 1 || nbins > INT64_MAX - 3)
        return CDK_ERR_ARG;
    *u = (uniform){.lo = lo, .hi = hi, .span = hi - lo, .nbins = nbins};
    u->fbins = (double)nbins;
    u->step = u->span / u->fbins;
    if (!isfinite(u->span) || !(u->step > 0.0))
        return CDK_ERR_ARG;
    double prev = lo;
    for (int64_t i = 1; i <= nbins; i++) {
        double e = uniform_edge(u, i);
        if (!(e > prev))
            return CDK_ERR_ARG;
        prev = e;
    }
    return CDK_OK;
}

static int64_t uniform_bin(const uniform *u, double v)
{
    int64_t i = (int64_t)((v - u->lo) / u->span * u->fbins);
    if (i == u->nbins)
        i--;
    if (v < uniform_edge(u, i))
        i--;
    else if (i != u->nbins - 1 && v >= uniform_edge(u, i + 1))
        i++;
    return i;
}

static void uniform_count(const uniform *u, const double *x, int len, int64_t *counts,
                          outside *o)
{
    for (int i = 0; i < len; i++) {
        double v = x[i];
        if (v >= u->lo && v <= u->hi)
            counts[uniform_bin(u, v)]++;
        else
            outside_add(o, v, u->lo, u->hi);
    }
}

int cdk_histogram_uniform(const void *data, int dtype, int64_t n, double lo, double hi,
                          int64_t nbins, int64_t *counts)
{
    uniform u;
    int rc = check_block(data, dtype, n, counts);
    if (rc == CDK_OK)
        rc = uniform_init(&u, lo, hi, nbins);
    if (rc != CDK_OK)
        return rc;
    outside o = {0, 0, 0};
    double buf[RUN];
    for (int64_t off = 0; off < n; off += RUN) {
        int len = n - off < RUN ? (int)(n - off) : RUN;
        uniform_count(&u, cdk_load_run(data, dtype, off, len, buf), len, counts, &o);
    }
    counts[nbins] += o.below;
    counts[nbins + 1] += o.above;
    counts[nbins + 2] += o.nan;
    return CDK_OK;
}

/* ------------------------------------------------------------- given edges */

/* The bin of e[0] <= v <= e[nedges-1]: the last i < nedges - 1 with
 * e[i] <= v, so the last edge falls in the last bin. Branch-free (a select
 * rather than a jump per step) since the direction is unpredictable. */
static int64_t edges_bin(const double *e, int64_t nedges, double v)
{
    const double *base = e;
    for (int64_t len = nedges - 1; len > 1;) {
        int64_t half = len / 2;
        base = base[half] <= v ? base + half : base;
        len -= half;
    }
    return base - e;
}

int cdk_histogram_edges(const void *data, int dtype, int64_t n, const double *edges,
                        int64_t nedges, int64_t *counts)
{
    int rc = check_block(data, dtype, n, counts);
    if (rc != CDK_OK)
        return rc;
    if (!edges || nedges < 2 || nedges > INT64_MAX - 2)
        return CDK_ERR_ARG;
    for (int64_t i = 0; i < nedges; i++)
        if (!isfinite(edges[i]) || (i > 0 && !(edges[i] > edges[i - 1])))
            return CDK_ERR_ARG;
    int64_t nbins = nedges - 1;
    double lo = edges[0], hi = edges[nbins];
    outside o = {0, 0, 0};
    double buf[RUN];
    for (int64_t off = 0; off < n; off += RUN) {
        int len = n - off < RUN ? (int)(n - off) : RUN;
        const double *x = cdk_load_run(data, dtype, off, len, buf);
        for (int i = 0; i < len; i++) {
            if (x[i] >= lo && x[i] <= hi)
                counts[edges_bin(edges, nedges, x[i])]++;
            else
                outside_add(&o, x[i], lo, hi);
        }
    }
    counts[nbins] += o.below;
    counts[nbins + 1] += o.above;
    counts[nbins + 2] += o.nan;
    return CDK_OK;
}
