/* buffer_dtype.h - the caudal dtype of a Python buffer's elements, shared by
 * the _caudal and _kernels extensions. */
#ifndef CAUDAL_BUFFER_DTYPE_H
#define CAUDAL_BUFFER_DTYPE_H

#include <Python.h>
#include <stdint.h>
#include <string.h>

#include "caudal.h"

static inline int host_is_little(void)
{
    const uint16_t one = 1;
    return *(const uint8_t *)&one == 1;
}

static inline int int_dtype(int is_signed, Py_ssize_t itemsize)
{
    switch (itemsize) {
    case 1: return is_signed ? CAUDAL_INT8 : CAUDAL_UINT8;
    case 2: return is_signed ? CAUDAL_INT16 : CAUDAL_UINT16;
    case 4: return is_signed ? CAUDAL_INT32 : CAUDAL_UINT32;
    case 8: return is_signed ? CAUDAL_INT64 : CAUDAL_UINT64;
    default: return 0;
    }
}

/* The caudal dtype of a buffer's elements (format and itemsize), 0 if none.
 * Non-native byte order maps to none: the library copies bytes as they are. */
static inline int format_dtype(const char *fmt, Py_ssize_t itemsize)
{
    if (!fmt)
        fmt = "B";
    if (*fmt == '@' || *fmt == '=')
        fmt++;
    else if (*fmt == '<' || *fmt == '>' || *fmt == '!') {
        int little = *fmt == '<';
        if (little != host_is_little())
            return 0;
        fmt++;
    }
    if (strlen(fmt) == 1 && strchr("bhilqn", *fmt))
        return int_dtype(1, itemsize);
    if (strlen(fmt) == 1 && strchr("BHILQN", *fmt))
        return int_dtype(0, itemsize);
    if (strcmp(fmt, "f") == 0 && itemsize == 4)
        return CAUDAL_FLOAT32;
    if (strcmp(fmt, "d") == 0 && itemsize == 8)
        return CAUDAL_FLOAT64;
    if (strcmp(fmt, "Zf") == 0 && itemsize == 8)
        return CAUDAL_COMPLEX64;
    if (strcmp(fmt, "Zd") == 0 && itemsize == 16)
        return CAUDAL_COMPLEX128;
    return 0;
}

#endif
