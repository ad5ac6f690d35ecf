/* status.c - what both ends share about the library: status and dtype
 * descriptions (made from the lists in caudal.h) and its version. */
#include "caudal.h"

const char *caudal_strerror(int status)
{
    switch (status) {
#define STATUS_CASE(name, value, text) \
    case CAUDAL_##name:                \
        return text;
        CAUDAL_STATUS_LIST(STATUS_CASE)
#undef STATUS_CASE
    default:
        return "unknown status";
    }
}

size_t caudal_dtype_size(int dtype)
{
    switch (dtype) {
#define SIZE_CASE(name, value, size, text) \
    case CAUDAL_##name:                    \
        return size;
        CAUDAL_DTYPE_LIST(SIZE_CASE)
#undef SIZE_CASE
    default:
        return 0;
    }
}

const char *caudal_dtype_name(int dtype)
{
    switch (dtype) {
#define NAME_CASE(name, value, size, text) \
    case CAUDAL_##name:                    \
        return text;
        CAUDAL_DTYPE_LIST(NAME_CASE)
#undef NAME_CASE
    default:
        return "invalid";
    }
}

int caudal_version(int *major, int *minor, int *patch)
{
    if (major)
        *major = CAUDAL_VERSION_MAJOR;
    if (minor)
        *minor = CAUDAL_VERSION_MINOR;
    if (patch)
        *patch = CAUDAL_VERSION_PATCH;
    return CAUDAL_OK;
}
