/* dtype.h - one place that lists the element types a kernel reads.
 *
 * CDK_REAL_TYPES(X) calls X(code, ctype, suffix) for each real caudal_dtype,
 * so a kernel writes its loop once as a macro over ctype and dispatches with
 * a switch built from the same list (see moments.c). */
#ifndef CAUDAL_KERNELS_DTYPE_H
#define CAUDAL_KERNELS_DTYPE_H

#include <stdint.h>

#include "caudal.h"

#define CDK_REAL_TYPES(X)              \
    X(CAUDAL_INT8, int8_t, i8)         \
    X(CAUDAL_INT16, int16_t, i16)      \
    X(CAUDAL_INT32, int32_t, i32)      \
    X(CAUDAL_INT64, int64_t, i64)      \
    X(CAUDAL_UINT8, uint8_t, u8)       \
    X(CAUDAL_UINT16, uint16_t, u16)    \
    X(CAUDAL_UINT32, uint32_t, u32)    \
    X(CAUDAL_UINT64, uint64_t, u64)    \
    X(CAUDAL_FLOAT32, float, f32)      \
    X(CAUDAL_FLOAT64, double, f64)

/* Bytes per element of a real dtype, 0 for complex or unknown ones. */
static inline size_t cdk_real_size(int dtype)
{
    switch (dtype) {
#define CDK_SIZE_CASE(code, ctype, sfx) \
    case code:                          \
        return sizeof(ctype);
        CDK_REAL_TYPES(CDK_SIZE_CASE)
#undef CDK_SIZE_CASE
    default:
        return 0;
    }
}

/* The run of `len` values at index `off` as doubles, or NULL for a dtype
 * that is not real. */
static inline const double *cdk_load_run(const void *data, int dtype, int64_t off, int len, double *buf)
{
    if (dtype == CAUDAL_FLOAT64)
        return (const double *)data + off;
    switch (dtype) {
#define LOAD_CASE(code, ctype, sfx)                 \
    case code: {                                    \
        const ctype *p = (const ctype *)data + off; \
        for (int i = 0; i < len; i++)               \
            buf[i] = (double)p[i];                  \
        return buf;                                 \
    }
        CDK_REAL_TYPES(LOAD_CASE)
#undef LOAD_CASE
    default:
        return NULL;
    }
}

#endif
