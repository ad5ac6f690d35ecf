/* stencil.c - gradient and Laplacian of one block, halos from its neighbours.
 *
 * Both stencils are written as whole-row operations on typed pointers
 * (diff: out = (next - prev) / div; d2: out (+)= c (next - 2 x + prev)), so
 * the only per-dtype code is three loops the compiler vectorizes, and the
 * drivers only choose which rows (block, face, or the row itself at a global
 * border) play prev and next. Every output element is computed by the same
 * expression whether its neighbours come from the block or from a face, so
 * a decomposed array gives bit-identical results to the whole array. */
#include <math.h>

#include "caudal_kernels.h"
#include "block.h"
#include "dtype.h"

typedef struct stencil_fns {
    void (*diff)(const void *next, const void *prev, double div, double *out, int64_t n);
    void (*d2_set)(const void *prev, const void *x, const void *next, double c,
                   double *out, int64_t n);
    void (*d2_add)(const void *prev, const void *x, const void *next, double c,
                   double *out, int64_t n);
} stencil_fns;

/* Division rather than a reciprocal: numpy.gradient divides, and matching it
 * bit for bit on float64 is worth the few cycles in a memory-bound loop. */
#define STENCIL_FNS(code, T, sfx)                                                     \
    static void diff_##sfx(const void *next, const void *prev, double div,            \
                           double *restrict out, int64_t n)                           \
    {                                                                                 \
        const T *restrict a = next, *restrict b = prev;                               \
        for (int64_t k = 0; k < n; k++)                                               \
            out[k] = ((double)a[k] - (double)b[k]) / div;                             \
    }                                                                                 \
    static void d2_set_##sfx(const void *prev, const void *x, const void *next,       \
                             double c, double *restrict out, int64_t n)               \
    {                                                                                 \
        const T *restrict m = prev, *restrict f = x, *restrict p = next;              \
        for (int64_t k = 0; k < n; k++)                                               \
            out[k] = c * ((double)p[k] - 2.0 * (double)f[k] + (double)m[k]);          \
    }                                                                                 \
    static void d2_add_##sfx(const void *prev, const void *x, const void *next,       \
                             double c, double *restrict out, int64_t n)               \
    {                                                                                 \
        const T *restrict m = prev, *restrict f = x, *restrict p = next;              \
        for (int64_t k = 0; k < n; k++)                                               \
            out[k] += c * ((double)p[k] - 2.0 * (double)f[k] + (double)m[k]);         \
    }
CDK_REAL_TYPES(STENCIL_FNS)
#undef STENCIL_FNS

static const stencil_fns *fns_of(int dtype)
{
    switch (dtype) {
#define FNS_CASE(code, T, sfx)                                                 \
    case code: {                                                               \
        static const stencil_fns f = {diff_##sfx, d2_set_##sfx, d2_add_##sfx}; \
        return &f;                                                             \
    }
        CDK_REAL_TYPES(FNS_CASE)
#undef FNS_CASE
    default:
        return NULL;
    }
}

static int64_t product(const int64_t *count, int from, int to)
{
    int64_t p = 1;
    for (int d = from; d < to; d++)
        p *= count[d];
    return p;
}

/* ---------------------------------------------------------------- gradient */

/* One (n, inner) slab: rows 1..n-2 are one flat difference at distance
 * 2 inner; the two end rows take a face or, at a global border, the row
 * itself (one-sided, half the distance). */
static void gradient_slab(const stencil_fns *f, const char *x, size_t sz, int64_t n,
                          int64_t inner, double h, const char *lo, const char *hi,
                          double *out)
{
    size_t row = (size_t)inner * sz;
    if (n >= 3)
        f->diff(x + 2 * row, x, 2.0 * h, out + inner, (n - 2) * inner);
    const char *prev = lo ? lo : x;
    const char *next = n > 1 ? x + row : (hi ? hi : x);
    f->diff(next, prev, prev != x && next != x ? 2.0 * h : h, out, inner);
    if (n > 1) {
        const char *last = x + (size_t)(n - 1) * row;
        f->diff(hi ? hi : last, last - row, hi ? 2.0 * h : h, out + (n - 1) * inner,
                inner);
    }
}

int cdk_gradient(const void *data, int dtype, int ndim, const int64_t *count, int axis,
                 double h, int64_t global_n, const void *lo_face, const void *hi_face,
                 double *out)
{
    int64_t total;
    int rc = cdk_block_elements(ndim, count, &total);
    if (rc != CDK_OK)
        return rc;
    const stencil_fns *f = fns_of(dtype);
    if (!f)
        return CDK_ERR_DTYPE;
    if (axis < 0 || axis >= ndim || !(h > 0) || !isfinite(h))
        return CDK_ERR_ARG;
    /* A NULL face is the global border: both NULL means the block spans the
     * axis; each face present is one more plane the axis must hold. */
    int64_t n = count[axis];
    int64_t spanned = n + (lo_face != NULL) + (hi_face != NULL);
    if (global_n < 2 || spanned > global_n || (!lo_face && !hi_face && n != global_n))
        return CDK_ERR_SHAPE;
    if (total == 0)
        return CDK_OK;
    if (!data || !out)
        return CDK_ERR_ARG;

    size_t sz = cdk_real_size(dtype);
    int64_t outer = product(count, 0, axis), inner = product(count, axis + 1, ndim);
    for (int64_t o = 0; o < outer; o++) {
        size_t face = (size_t)(o * inner) * sz;
        gradient_slab(f, (const char *)data + (size_t)(o * n * inner) * sz, sz, n, inner, h,
                      lo_face ? (const char *)lo_face + face : NULL,
                      hi_face ? (const char *)hi_face + face : NULL, out + o * n * inner);
    }
    return CDK_OK;
}

/* --------------------------------------------------------------- Laplacian */

/* The last axis of one row: its ends take one element of the faces of that
 * axis (or repeat themselves at a global border); the first term of the sum,
 * so it sets out. */
static void laplacian_last(const stencil_fns *f, const char *x, size_t sz, int64_t n,
                           const char *lo, const char *hi, double c, double *out)
{
    if (n == 1) {
        f->d2_set(lo ? lo : x, x, hi ? hi : x, c, out, 1);
        return;
    }
    const char *last = x + (size_t)(n - 1) * sz;
    f->d2_set(lo ? lo : x, x, x + sz, c, out, 1);
    f->d2_set(x, x + sz, x + 2 * sz, c, out + 1, n - 2);
    f->d2_set(last - sz, last, hi ? hi : last, c, out + n - 1, 1);
}

/* Row r of a face of axis d: the row's index with i_d removed. Rows number
 * the dimensions 0..ndim-2; rstride[d] is the rows one step of i_d moves. */
static int64_t face_row(int64_t r, int64_t n_d, int64_t rstride_d)
{
    return r / (n_d * rstride_d) * rstride_d + r % rstride_d;
}

int cdk_laplacian(const void *data, int dtype, int ndim, const int64_t *count,
                  const double *h, const void *const *lo, const void *const *hi,
                  double *out)
{
    int64_t total;
    int rc = cdk_block_elements(ndim, count, &total);
    if (rc != CDK_OK)
        return rc;
    const stencil_fns *f = fns_of(dtype);
    if (!f)
        return CDK_ERR_DTYPE;
    if (!h)
        return CDK_ERR_ARG;
    double c[CDK_MAX_DIMS];
    const char *lof[CDK_MAX_DIMS], *hif[CDK_MAX_DIMS];
    for (int d = 0; d < ndim; d++) {
        if (!(h[d] > 0) || !isfinite(h[d]))
            return CDK_ERR_ARG;
        /* A reciprocal is exact for h = 1 (scipy's case) and saves a
         * division per axis and element. */
        c[d] = 1.0 / (h[d] * h[d]);
        lof[d] = lo ? lo[d] : NULL;
        hif[d] = hi ? hi[d] : NULL;
    }
    if (total == 0)
        return CDK_OK;
    if (!data || !out)
        return CDK_ERR_ARG;

    size_t sz = cdk_real_size(dtype);
    int last = ndim - 1;
    int64_t len = count[last], rows = total / len;
    size_t rowb = (size_t)len * sz;
    int64_t rstride[CDK_MAX_DIMS], idx[CDK_MAX_DIMS] = {0};
    for (int d = 0; d < last; d++)
        rstride[d] = product(count, d + 1, last);

    for (int64_t r = 0; r < rows; r++) {
        const char *x = (const char *)data + (size_t)r * rowb;
        double *o = out + r * len;
        laplacian_last(f, x, sz, len, lof[last] ? lof[last] + (size_t)r * sz : NULL,
                       hif[last] ? hif[last] + (size_t)r * sz : NULL, c[last], o);
        for (int d = 0; d < last; d++) {
            size_t step = (size_t)rstride[d] * rowb;
            const char *m = x, *p = x;
            if (idx[d] > 0)
                m = x - step;
            else if (lof[d])
                m = lof[d] + (size_t)face_row(r, count[d], rstride[d]) * rowb;
            if (idx[d] < count[d] - 1)
                p = x + step;
            else if (hif[d])
                p = hif[d] + (size_t)face_row(r, count[d], rstride[d]) * rowb;
            f->d2_add(m, x, p, c[d], o, len);
        }
        for (int d = last - 1; d >= 0 && ++idx[d] == count[d]; d--)
            idx[d] = 0;
    }
    return CDK_OK;
}
