/* status.c - messages of the kernel status codes. */
#include "caudal_kernels.h"

const char *cdk_strerror(int status)
{
    switch (status) {
    case CDK_OK:
        return "success";
    case CDK_ERR_DTYPE:
        return "the kernel does not take this dtype (complex or unknown)";
    case CDK_ERR_ARG:
        return "an argument is out of its range";
    case CDK_ERR_SHAPE:
        return "dimensions or face shapes do not fit";
    case CDK_ERR_NOMEM:
        return "out of memory";
    case CDK_ERR_FORMAT:
        return "not a serialized kernel state";
    default:
        return "unknown status";
    }
}
