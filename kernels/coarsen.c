/* coarsen.c - a block's partial reduction over the coarse cells it touches.
 *
 * The block is walked row by row (last axis); a row cuts into segments, one
 * per coarse cell along the last axis, and each segment is reduced by a
 * typed loop into its cell. The outer dimensions only pick the coarse row. */
#include <math.h>

#include "caudal_kernels.h"
#include "dtype.h"

typedef double (*segment_fn)(const void *x, int64_t n, double acc);

/* max and min keep a NaN once seen (a NaN in acc fails every comparison, and
 * a NaN in x is taken explicitly), as numpy.max does. */
#define COARSEN_FNS(code, T, sfx)                                              \
    static double sum_##sfx(const void *src, int64_t n, double acc)            \
    {                                                                          \
        const T *x = src;                                                      \
        double s = 0.0;                                                        \
        for (int64_t k = 0; k < n; k++)                                        \
            s += (double)x[k];                                                 \
        return acc + s;                                                        \
    }                                                                          \
    static double max_##sfx(const void *src, int64_t n, double acc)            \
    {                                                                          \
        const T *x = src;                                                      \
        for (int64_t k = 0; k < n; k++) {                                      \
            double v = (double)x[k];                                           \
            acc = (v > acc || isnan(v)) ? v : acc;                             \
        }                                                                      \
        return acc;                                                            \
    }                                                                          \
    static double min_##sfx(const void *src, int64_t n, double acc)            \
    {                                                                          \
        const T *x = src;                                                      \
        for (int64_t k = 0; k < n; k++) {                                      \
            double v = (double)x[k];                                           \
            acc = (v < acc || isnan(v)) ? v : acc;                             \
        }                                                                      \
        return acc;                                                            \
    }
CDK_REAL_TYPES(COARSEN_FNS)
#undef COARSEN_FNS

static segment_fn segment_of(int dtype, int op)
{
    switch (dtype) {
#define SEGMENT_CASE(code, T, sfx)                                            \
    case code:                                                                \
        return op == CDK_COARSEN_MEAN ? sum_##sfx                             \
                                      : op == CDK_COARSEN_MAX ? max_##sfx : min_##sfx;
        CDK_REAL_TYPES(SEGMENT_CASE)
#undef SEGMENT_CASE
    default:
        return NULL;
    }
}

int cdk_coarsen_cells(int ndim, const int64_t *start, const int64_t *count,
                      const int64_t *factor, int64_t *first, int64_t *ncells)
{
    if (ndim < 1 || ndim > CDK_MAX_DIMS || !start || !count)
        return CDK_ERR_SHAPE;
    if (!factor || !first || !ncells)
        return CDK_ERR_ARG;
    for (int d = 0; d < ndim; d++) {
        if (start[d] < 0 || count[d] < 0 || count[d] > INT64_MAX - start[d])
            return CDK_ERR_SHAPE;
        if (factor[d] < 1)
            return CDK_ERR_ARG;
    }
    for (int d = 0; d < ndim; d++) {
        first[d] = start[d] / factor[d];
        ncells[d] = count[d] ? (start[d] + count[d] - 1) / factor[d] - first[d] + 1 : 0;
    }
    return CDK_OK;
}

/* One row: segments of `f` elements, the first cut short by the row's phase
 * inside its cell (start % f). */
static void coarsen_row(segment_fn seg, const char *x, size_t sz, int64_t len,
                        int64_t phase, int64_t f, double *acc, int64_t *num)
{
    int64_t k = 0, width = f - phase;
    for (int64_t c = 0; k < len; c++, width = f) {
        int64_t m = width < len - k ? width : len - k;
        acc[c] = seg(x + (size_t)k * sz, m, acc[c]);
        num[c] += m;
        k += m;
    }
}

int cdk_coarsen(const void *data, int dtype, int ndim, const int64_t *start,
                const int64_t *count, const int64_t *factor, int op, double *acc,
                int64_t *num)
{
    int64_t first[CDK_MAX_DIMS], ncells[CDK_MAX_DIMS];
    int rc = cdk_coarsen_cells(ndim, start, count, factor, first, ncells);
    if (rc != CDK_OK)
        return rc;
    if (op != CDK_COARSEN_MEAN && op != CDK_COARSEN_MAX && op != CDK_COARSEN_MIN)
        return CDK_ERR_ARG;
    segment_fn seg = segment_of(dtype, op);
    if (!seg)
        return CDK_ERR_DTYPE;
    int64_t total = 1, cells = 1;
    for (int d = 0; d < ndim; d++) {
        total = count[d] ? total * count[d] : 0;
        cells *= ncells[d];
    }
    if (total == 0)
        return CDK_OK;
    if (!data || !acc || !num)
        return CDK_ERR_ARG;

    double init = op == CDK_COARSEN_MEAN ? 0.0 : op == CDK_COARSEN_MAX ? -INFINITY : INFINITY;
    for (int64_t c = 0; c < cells; c++) {
        acc[c] = init;
        num[c] = 0;
    }
    size_t sz = cdk_real_size(dtype);
    int last = ndim - 1;
    int64_t len = count[last], rows = total / len;
    int64_t cstride[CDK_MAX_DIMS], idx[CDK_MAX_DIMS] = {0};
    cstride[last] = 1;
    for (int d = last - 1; d >= 0; d--)
        cstride[d] = cstride[d + 1] * ncells[d + 1];

    for (int64_t r = 0; r < rows; r++) {
        int64_t crow = 0;
        for (int d = 0; d < last; d++)
            crow += ((start[d] + idx[d]) / factor[d] - first[d]) * cstride[d];
        coarsen_row(seg, (const char *)data + (size_t)(r * len) * sz, sz, len,
                    start[last] % factor[last], factor[last], acc + crow, num + crow);
        for (int d = last - 1; d >= 0 && ++idx[d] == count[d]; d--)
            idx[d] = 0;
    }
    return CDK_OK;
}
