/*
 * caudal_mpi.h - open a Caudal client from an MPI communicator.
 *
 * Header-only on purpose: libcaudal itself does not link MPI, so one build of
 * the library serves every MPI implementation. Include after <mpi.h>.
 */
#ifndef CAUDAL_MPI_H
#define CAUDAL_MPI_H

#include <mpi.h>

#include "caudal.h"

/* caudal_open with rank and size taken from `comm`. opts may be NULL for the
 * defaults (endpoint and token from the environment). */
static inline int caudal_open_mpi(caudal_client **client, MPI_Comm comm,
                                  const caudal_options *opts, char *errbuf,
                                  size_t errlen)
{
    caudal_options o;
    if (opts)
        o = *opts;
    else
        caudal_options_init(&o);
    if (MPI_Comm_rank(comm, &o.rank) != MPI_SUCCESS ||
        MPI_Comm_size(comm, &o.size) != MPI_SUCCESS) {
        if (client)
            *client = NULL;
        return CAUDAL_ERR_INVALID;
    }
    return caudal_open(client, &o, errbuf, errlen);
}

#endif /* CAUDAL_MPI_H */
