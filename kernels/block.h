/* block.h - the element count of a block, for the kernels that take a shape. */
#ifndef CAUDAL_KERNELS_BLOCK_H
#define CAUDAL_KERNELS_BLOCK_H

#include <stdint.h>

#include "caudal_kernels.h"

/* The element count of a block of `ndim` extents, or CDK_ERR_SHAPE for a bad
 * ndim, a negative extent, or a count that overflows int64. */
static inline int cdk_block_elements(int ndim, const int64_t *count, int64_t *n)
{
    if (ndim < 1 || ndim > CDK_MAX_DIMS || !count)
        return CDK_ERR_SHAPE;
    int64_t total = 1;
    for (int d = 0; d < ndim; d++) {
        if (count[d] < 0)
            return CDK_ERR_SHAPE;
        if (count[d] > 0 && total > INT64_MAX / count[d])
            return CDK_ERR_SHAPE;
        total *= count[d];
    }
    *n = total;
    return CDK_OK;
}

#endif
