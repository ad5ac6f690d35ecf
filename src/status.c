/* status.c - status and dtype descriptions shared by both ends. */
#include "caudal.h"

const char *caudal_strerror(int status)
{
    switch (status) {
    case CAUDAL_OK: return "success";
    case CAUDAL_NO_VALUE: return "no steering value set under this key yet";
    case CAUDAL_ERR_INVALID: return "invalid argument";
    case CAUDAL_ERR_CLOSED: return "handle is NULL or already closed";
    case CAUDAL_ERR_NOMEM: return "out of memory";
    case CAUDAL_ERR_UNKNOWN_ARRAY: return "no array declared under this name";
    case CAUDAL_ERR_DTYPE: return "dtype differs from the declaration";
    case CAUDAL_ERR_SHAPE: return "block outside the global shape or bad dimensions";
    case CAUDAL_ERR_STEP_ORDER: return "step not greater than the previous step";
    case CAUDAL_ERR_STATE: return "call not allowed in this state";
    case CAUDAL_ERR_DUPLICATE: return "declared or put twice";
    case CAUDAL_ERR_TIMEOUT: return "timed out";
    case CAUDAL_ERR_CONNECT: return "could not connect to the endpoint";
    case CAUDAL_ERR_IO: return "connection lost";
    case CAUDAL_ERR_PROTOCOL: return "protocol error";
    case CAUDAL_ERR_AUTH: return "job token rejected";
    case CAUDAL_ERR_VERSION: return "protocol version mismatch";
    case CAUDAL_ERR_TYPE: return "steering value has another type";
    case CAUDAL_ERR_TRUNCATED: return "output buffer too small";
    case CAUDAL_ERR_SYSTEM: return "system call failed";
    default: return "unknown status";
    }
}

size_t caudal_dtype_size(int dtype)
{
    switch (dtype) {
    case CAUDAL_INT8: case CAUDAL_UINT8: return 1;
    case CAUDAL_INT16: case CAUDAL_UINT16: return 2;
    case CAUDAL_INT32: case CAUDAL_UINT32: case CAUDAL_FLOAT32: return 4;
    case CAUDAL_INT64: case CAUDAL_UINT64: case CAUDAL_FLOAT64:
    case CAUDAL_COMPLEX64: return 8;
    case CAUDAL_COMPLEX128: return 16;
    default: return 0;
    }
}

const char *caudal_dtype_name(int dtype)
{
    static const char *const names[] = {
        "invalid", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
        "uint64", "float32", "float64", "complex64", "complex128"};
    if (dtype < CAUDAL_INT8 || dtype > CAUDAL_COMPLEX128)
        return names[0];
    return names[dtype];
}
