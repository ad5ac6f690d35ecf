/* moments.c - count, mean, central sums M2..M4, min and max of a block.
 *
 * A block is taken in runs of RUN values read as double: one pass gives the
 * run's mean, a second its sums of powers of deviations from that mean (the
 * run is in L1 by then), and Pébay's pairwise update merges the run into the
 * state. The loops are written for gcc's vectorizer without -ffast-math:
 * sums go to LANES separate accumulators (it will not reassociate one sum),
 * and a select is stored, never fed straight into a sum (which it will not
 * if-convert). A run without NaN, the usual case, skips the NaN masks. */
#include <math.h>
#include <string.h>

#include "caudal_kernels.h"
#include "dtype.h"

enum { RUN = 1024, LANES = 8, WIDE = 32 };

/* Pébay's update (SAND2008-6212) of a's count and central sums by nb values
 * whose mean lies d above a's and whose central sums are m2b..m4b; returns
 * how far a's mean moves, d nb / n. The caller moves it: see running. */
static double combine(cdk_moments *a, int64_t nb_, double d, double m2b, double m3b,
                      double m4b)
{
    double na = (double)a->n, nb = (double)nb_, n = na + nb;
    double dn = d / n, dn2 = dn * dn, m2a = a->m2, m3a = a->m3;
    a->m4 += m4b + d * dn2 * dn * na * nb * (na * na - na * nb + nb * nb) +
             6.0 * dn2 * (na * na * m2b + nb * nb * m2a) + 4.0 * dn * (na * m3b - nb * m3a);
    a->m3 += m3b + d * dn2 * na * nb * (na - nb) + 3.0 * dn * (na * m2b - nb * m2a);
    a->m2 += m2b + d * dn * na * nb;
    a->n += nb_;
    return dn * nb;
}

/* The mean of both parts where d is not finite: an infinite mean (or a
 * difference that overflows) must still give NumPy's mean, inf for one
 * infinity and NaN for both signs, where a + d nb / n would give NaN. */
static double weighted_mean(double ma, int64_t na, double mb, int64_t nb)
{
    double n = (double)na + (double)nb;
    return ma * ((double)na / n) + mb * ((double)nb / n);
}

/* Sum of len values in LANES partial sums, which gcc keeps in vector
 * registers (it does not reassociate a single sum itself). */
static double run_total(const double *x, int len)
{
    double s[LANES] = {0};
    int i = 0;
    for (; i + LANES <= len; i += LANES)
        for (int j = 0; j < LANES; j++)
            s[j] += x[i + j];
    for (; i < len; i++)
        s[0] += x[i];
    double total = 0.0;
    for (int j = 0; j < LANES; j++)
        total += s[j];
    return total;
}

/* Sums of d^1..d^4 for d = x - c. */
static void run_powers(const double *x, int len, double c, double p[4])
{
    double s1[LANES] = {0}, s2[LANES] = {0}, s3[LANES] = {0}, s4[LANES] = {0};
    int i = 0;
#define POWERS_STEP(j, i)     \
    do {                      \
        double d = x[i] - c;  \
        double d2 = d * d;    \
        s1[j] += d;           \
        s2[j] += d2;          \
        s3[j] += d2 * d;      \
        s4[j] += d2 * d2;     \
    } while (0)
    for (; i + LANES <= len; i += LANES)
        for (int j = 0; j < LANES; j++)
            POWERS_STEP(j, i + j);
    for (; i < len; i++)
        POWERS_STEP(0, i);
#undef POWERS_STEP
    p[0] = p[1] = p[2] = p[3] = 0.0;
    for (int j = 0; j < LANES; j++) {
        p[0] += s1[j];
        p[1] += s2[j];
        p[2] += s3[j];
        p[3] += s4[j];
    }
}

/* min and max of the non-NaN values (a NaN fails both comparisons). The
 * accumulators are WIDE-element arrays updated elementwise: gcc vectorizes
 * that, but not a NaN-skipping min reduction (without -ffinite-math-only). */
static void run_range(const double *x, int len, double *min, double *max)
{
    double lo[WIDE], hi[WIDE];
    for (int j = 0; j < WIDE; j++) {
        lo[j] = *min;
        hi[j] = *max;
    }
    int i = 0;
    for (; i + WIDE <= len; i += WIDE)
        for (int j = 0; j < WIDE; j++) {
            lo[j] = x[i + j] < lo[j] ? x[i + j] : lo[j];
            hi[j] = x[i + j] > hi[j] ? x[i + j] : hi[j];
        }
    for (; i < len; i++) {
        lo[0] = x[i] < lo[0] ? x[i] : lo[0];
        hi[0] = x[i] > hi[0] ? x[i] : hi[0];
    }
    for (int j = 0; j < WIDE; j++) {
        *min = lo[j] < *min ? lo[j] : *min;
        *max = hi[j] > *max ? hi[j] : *max;
    }
}

/* For a run with NaN: 1/0 for the values that are not NaN (their count is
 * its sum), and the values with NaN as 0 (their sum). Elementwise selects,
 * which gcc vectorizes. */
static void split_nan(const double *x, int len, double *t, double *ok)
{
    for (int i = 0; i < len; i++) {
        t[i] = x[i] == x[i] ? x[i] : 0.0;
        ok[i] = x[i] == x[i] ? 1.0 : 0.0;
    }
}

/* x - c where x is not NaN, else 0 (which adds nothing to the sums). */
static void deviations(const double *x, const double *ok, int len, double c, double *d)
{
    for (int i = 0; i < len; i++)
        d[i] = (x[i] - c) * ok[i];
}

/* The state of one cdk_moments_add: m, with the mean carried as m.mean + lo
 * (a double-double). A run merges by the difference of its mean and the
 * state's, and a mean rounded to double would put up to half an ulp of the
 * mean into every difference: with data such as 1e9 + noise of 1e-3 that
 * is a relative error of 1e-4 in each difference. */
typedef struct running {
    cdk_moments m;
    double lo;
} running;

/* Merge a run of cnt values, mean c + e, central sums p[0..2], into *r. */
static void take_run(running *r, double cnt, double c, double e, const double p[3])
{
    cdk_moments *m = &r->m;
    if (m->n == 0) {
        m->n = (int64_t)cnt;
        m->mean = c;
        r->lo = e;
        m->m2 = p[0];
        m->m3 = p[1];
        m->m4 = p[2];
        return;
    }
    double d = (c - m->mean) + (e - r->lo), ma = m->mean + r->lo;
    int64_t na = m->n;
    double step = combine(m, (int64_t)cnt, d, p[0], p[1], p[2]);
    if (!isfinite(d)) {
        m->mean = weighted_mean(ma, na, c + e, (int64_t)cnt);
        r->lo = 0.0;
        return;
    }
    /* (mean, lo) += step, exactly: two-sum, then renormalise. */
    double s = m->mean + step, z = s - m->mean;
    double lo = r->lo + ((m->mean - (s - z)) + (step - z));
    m->mean = s + lo;
    r->lo = lo - (m->mean - s);
}

/* Merge one run into *r. Its mean c is rounded, so its deviations do not
 * sum to zero: with e = s1 / cnt the sums move to the exact mean c + e. */
static void add_run(running *r, const double *x, int len)
{
    double sum = run_total(x, len), cnt = len, c, p[4];
    if (sum == sum) {
        c = sum / cnt;
        run_powers(x, len, c, p);
    } else { /* a NaN, or infinities of both signs */
        /* zeroed: gcc -O3 cannot see split_nan fill them once this is
         * inlined into cdk_moments_add_change (a run with NaN is rare) */
        double t[RUN] = {0}, ok[RUN] = {0};
        split_nan(x, len, t, ok);
        cnt = run_total(ok, len);
        r->m.nan += len - (int64_t)cnt;
        if (cnt == 0.0)
            return;
        c = run_total(t, len) / cnt;
        deviations(t, ok, len, c, t);
        run_powers(t, len, 0.0, p);
    }
    run_range(x, len, &r->m.min, &r->m.max);
    double s1 = p[0], m2 = p[1], m3 = p[2], m4 = p[3], e = s1 / cnt;
    if (!isfinite(e)) /* infinite values: the sums are inf or NaN anyway */
        e = 0.0;
    double central[3] = {m2 - e * s1, m3 - 3.0 * e * m2 + 2.0 * e * e * s1,
                         m4 - 4.0 * e * m3 + 6.0 * e * e * m2 - 3.0 * e * e * e * s1};
    take_run(r, cnt, c, e, central);
}

int cdk_moments_init(cdk_moments *m)
{
    if (!m)
        return CDK_ERR_ARG;
    memset(m, 0, sizeof *m);
    m->min = INFINITY;
    m->max = -INFINITY;
    return CDK_OK;
}

int cdk_moments_add(cdk_moments *m, const void *data, int dtype, int64_t n)
{
    if (!cdk_real_size(dtype))
        return CDK_ERR_DTYPE;
    if (!m || n < 0 || (n > 0 && !data) || m->n < 0 || m->nan < 0)
        return CDK_ERR_ARG;
    running r = {*m, 0.0};
    double buf[RUN];
    for (int64_t off = 0; off < n; off += RUN) {
        int len = n - off < RUN ? (int)(n - off) : RUN;
        add_run(&r, cdk_load_run(data, dtype, off, len, buf), len);
    }
    r.m.mean += r.lo;
    *m = r.m;
    return CDK_OK;
}

int cdk_moments_add_change(cdk_moments *m, const void *now, const void *before, int dtype,
                           int64_t n, double dt)
{
    if (!cdk_real_size(dtype))
        return CDK_ERR_DTYPE;
    if (!m || n < 0 || (n > 0 && (!now || !before)) || m->n < 0 || m->nan < 0 || dt == 0.0 ||
        dt != dt)
        return CDK_ERR_ARG;
    running r = {*m, 0.0};
    double a[RUN], b[RUN], d[RUN];
    for (int64_t off = 0; off < n; off += RUN) {
        int len = n - off < RUN ? (int)(n - off) : RUN;
        const double *x = cdk_load_run(now, dtype, off, len, a);
        const double *y = cdk_load_run(before, dtype, off, len, b);
        for (int i = 0; i < len; i++)
            d[i] = (x[i] - y[i]) / dt;
        add_run(&r, d, len);
    }
    r.m.mean += r.lo;
    *m = r.m;
    return CDK_OK;
}

int cdk_moments_merge(cdk_moments *a, const cdk_moments *b)
{
    if (!a || !b || a->n < 0 || b->n < 0 || a->nan < 0 || b->nan < 0)
        return CDK_ERR_ARG;
    cdk_moments acc = *a;
    if (acc.n == 0) {
        acc.n = b->n;
        acc.mean = b->mean;
        acc.m2 = b->m2;
        acc.m3 = b->m3;
        acc.m4 = b->m4;
    } else if (b->n > 0) {
        double d = b->mean - acc.mean, ma = acc.mean;
        double step = combine(&acc, b->n, d, b->m2, b->m3, b->m4);
        acc.mean = isfinite(d) ? ma + step : weighted_mean(ma, a->n, b->mean, b->n);
    }
    acc.nan += b->nan;
    acc.min = b->min < acc.min ? b->min : acc.min;
    acc.max = b->max > acc.max ? b->max : acc.max;
    *a = acc;
    return CDK_OK;
}
