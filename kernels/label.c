/* label.c - connected components of a thresholded block, and their sizes and
 * coordinate sums.
 *
 * Labelling works on runs (maximal stretches of foreground along the last
 * axis) rather than elements: pass one finds each row's runs and unites every
 * run with the runs it overlaps in the previous row along each other axis
 * (face connectivity), using union-find over run indices; pass two writes
 * the labels. Runs are found in C order and a union always keeps the smaller
 * root, so a component's root is its first run and numbering roots in order
 * gives labels in order of first appearance. Nothing is written to `labels`
 * until every allocation has succeeded and the count is known to fit. */
#include <stdlib.h>
#include <string.h>

#include "caudal_kernels.h"
#include "block.h"
#include "dtype.h"

typedef void (*mask_fn)(const void *x, int64_t n, double t, int op, unsigned char *mask);

/* A comparison false for NaN in every op, so NaN is never foreground. */
#define MASK_FN(code, T, sfx)                                                        \
    static void mask_##sfx(const void *src, int64_t n, double t, int op,             \
                           unsigned char *restrict mask)                             \
    {                                                                                \
        const T *restrict x = src;                                                   \
        switch (op) {                                                                \
        case CDK_GT:                                                                 \
            for (int64_t k = 0; k < n; k++)                                          \
                mask[k] = (double)x[k] > t;                                          \
            break;                                                                   \
        case CDK_GE:                                                                 \
            for (int64_t k = 0; k < n; k++)                                          \
                mask[k] = (double)x[k] >= t;                                         \
            break;                                                                   \
        case CDK_LT:                                                                 \
            for (int64_t k = 0; k < n; k++)                                          \
                mask[k] = (double)x[k] < t;                                          \
            break;                                                                   \
        default:                                                                     \
            for (int64_t k = 0; k < n; k++)                                          \
                mask[k] = (double)x[k] <= t;                                         \
            break;                                                                   \
        }                                                                            \
    }
CDK_REAL_TYPES(MASK_FN)
#undef MASK_FN

static mask_fn mask_of(int dtype)
{
    switch (dtype) {
#define MASK_CASE(code, T, sfx) \
    case code:                  \
        return mask_##sfx;
        CDK_REAL_TYPES(MASK_CASE)
#undef MASK_CASE
    default:
        return NULL;
    }
}

/* A run [begin, end) of its row; `parent` is its union-find link, and after
 * numbering its final label. */
typedef struct run {
    int64_t begin, end, parent;
} run;

typedef struct runs {
    run *v;
    int64_t n, cap;
} runs;

static int runs_push(runs *rs, int64_t begin, int64_t end)
{
    if (rs->n == rs->cap) {
        int64_t cap = rs->cap ? 2 * rs->cap : 1024;
        if ((uint64_t)cap > SIZE_MAX / sizeof(run))
            return CDK_ERR_NOMEM;
        run *v = realloc(rs->v, (size_t)cap * sizeof(run));
        if (!v)
            return CDK_ERR_NOMEM;
        rs->v = v;
        rs->cap = cap;
    }
    rs->v[rs->n] = (run){begin, end, rs->n};
    rs->n++;
    return CDK_OK;
}

static int64_t find_root(run *v, int64_t i)
{
    while (v[i].parent != i) {
        v[i].parent = v[v[i].parent].parent; /* path halving */
        i = v[i].parent;
    }
    return i;
}

static void unite(run *v, int64_t a, int64_t b)
{
    a = find_root(v, a);
    b = find_root(v, b);
    if (a < b)
        v[b].parent = a;
    else if (b < a)
        v[a].parent = b;
}

/* Unite overlapping runs of two rows: both lists are sorted and disjoint, so
 * one sweep that advances whichever run ends first sees every overlap. */
static void unite_rows(run *v, int64_t a, int64_t a_end, int64_t b, int64_t b_end)
{
    while (a < a_end && b < b_end) {
        if (v[a].end <= v[b].begin) {
            a++;
        } else if (v[b].end <= v[a].begin) {
            b++;
        } else {
            unite(v, a, b);
            if (v[a].end < v[b].end)
                a++;
            else
                b++;
        }
    }
}

static int find_runs(const unsigned char *mask, int64_t len, runs *rs)
{
    for (int64_t k = 0; k < len;) {
        while (k < len && !mask[k])
            k++;
        int64_t begin = k;
        while (k < len && mask[k])
            k++;
        if (k > begin && runs_push(rs, begin, k) != CDK_OK)
            return CDK_ERR_NOMEM;
    }
    return CDK_OK;
}

/* Pass one: runs of every row (row_first[r] .. row_first[r + 1] - 1) united
 * with those of the previous row along each axis but the last. */
static int label_runs(const void *data, size_t sz, mask_fn mask_row, int ndim,
                      const int64_t *count, double t, int op, int64_t *row_first,
                      runs *rs)
{
    int last = ndim - 1;
    int64_t len = count[last], rows = 1;
    for (int d = 0; d < last; d++)
        rows *= count[d];
    int64_t rstride[CDK_MAX_DIMS], idx[CDK_MAX_DIMS] = {0};
    for (int d = last - 1; d >= 0; d--)
        rstride[d] = d == last - 1 ? 1 : rstride[d + 1] * count[d + 1];
    unsigned char *mask = malloc((size_t)len);
    if (!mask)
        return CDK_ERR_NOMEM;
    for (int64_t r = 0; r < rows; r++) {
        mask_row((const char *)data + (size_t)(r * len) * sz, len, t, op, mask);
        row_first[r] = rs->n;
        if (find_runs(mask, len, rs) != CDK_OK) {
            free(mask);
            return CDK_ERR_NOMEM;
        }
        for (int d = 0; d < last; d++)
            if (idx[d] > 0)
                unite_rows(rs->v, row_first[r], rs->n, row_first[r - rstride[d]],
                           row_first[r - rstride[d] + 1]);
        for (int d = last - 1; d >= 0 && ++idx[d] == count[d]; d--)
            idx[d] = 0;
    }
    row_first[rows] = rs->n;
    free(mask);
    return CDK_OK;
}

/* Roots, in run order, take 1, 2, ...; every other run points at a smaller
 * run whose label is already final. Returns the number of labels. */
static int64_t number_runs(run *v, int64_t n)
{
    int64_t labels = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t p = v[i].parent;
        v[i].parent = p == i ? ++labels : v[p].parent;
    }
    return labels;
}

int cdk_label(const void *data, int dtype, int ndim, const int64_t *count,
              double threshold, int op, int32_t *labels, int64_t *nlabels)
{
    int64_t total;
    int rc = cdk_block_elements(ndim, count, &total);
    if (rc != CDK_OK)
        return rc;
    mask_fn mask_row = mask_of(dtype);
    if (!mask_row)
        return CDK_ERR_DTYPE;
    if (op < CDK_GT || op > CDK_LE || !nlabels)
        return CDK_ERR_ARG;
    if (total == 0) {
        *nlabels = 0;
        return CDK_OK;
    }
    if (!data || !labels)
        return CDK_ERR_ARG;

    int64_t len = count[ndim - 1], rows = total / len;
    int64_t *row_first = malloc((size_t)(rows + 1) * sizeof *row_first);
    runs rs = {NULL, 0, 0};
    rc = row_first ? label_runs(data, cdk_real_size(dtype), mask_row, ndim, count,
                                threshold, op, row_first, &rs)
                   : CDK_ERR_NOMEM;
    int64_t found = rc == CDK_OK ? number_runs(rs.v, rs.n) : 0;
    if (rc == CDK_OK && found > INT32_MAX)
        rc = CDK_ERR_ARG;
    if (rc == CDK_OK) {
        memset(labels, 0, (size_t)total * sizeof *labels);
        for (int64_t r = 0; r < rows; r++)
            for (int64_t i = row_first[r]; i < row_first[r + 1]; i++)
                for (int64_t k = rs.v[i].begin; k < rs.v[i].end; k++)
                    labels[r * len + k] = (int32_t)rs.v[i].parent;
        *nlabels = found;
    }
    free(rs.v);
    free(row_first);
    return rc;
}

int cdk_label_stats(const int32_t *labels, int ndim, const int64_t *start,
                    const int64_t *count, int64_t nlabels, int64_t *size, double *sum)
{
    int64_t total;
    int rc = cdk_block_elements(ndim, count, &total);
    if (rc != CDK_OK)
        return rc;
    if (!start || nlabels < 0 || (nlabels > 0 && (!size || !sum)) ||
        (total > 0 && !labels))
        return CDK_ERR_ARG;
    /* Checked first so that a bad label leaves the outputs untouched. */
    int32_t lo = 0, hi = 0;
    for (int64_t i = 0; i < total; i++) {
        lo = labels[i] < lo ? labels[i] : lo;
        hi = labels[i] > hi ? labels[i] : hi;
    }
    if (lo < 0 || hi > nlabels)
        return CDK_ERR_ARG;

    for (int64_t l = 0; l < nlabels; l++) {
        size[l] = 0;
        for (int d = 0; d < ndim; d++)
            sum[l * ndim + d] = 0.0;
    }
    if (total == 0)
        return CDK_OK;
    int last = ndim - 1;
    int64_t len = count[last], rows = total / len, idx[CDK_MAX_DIMS] = {0};
    for (int64_t r = 0; r < rows; r++) {
        const int32_t *row = labels + r * len;
        for (int64_t k = 0; k < len; k++) {
            if (!row[k])
                continue;
            int64_t l = row[k] - 1;
            size[l]++;
            double *s = sum + l * ndim;
            for (int d = 0; d < last; d++)
                s[d] += (double)(start[d] + idx[d]);
            s[last] += (double)(start[last] + k);
        }
        for (int d = last - 1; d >= 0 && ++idx[d] == count[d]; d--)
            idx[d] = 0;
    }
    return CDK_OK;
}
