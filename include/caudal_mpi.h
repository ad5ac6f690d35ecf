/*
 * caudal_mpi.h - open a Caudal client from an MPI communicator, and read
 * steering values that every rank applies at the same step.
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

/* Steering that every rank of `comm` applies at the same step. The analytics'
 * values reach the ranks one by one, each over its own connection, so with
 * caudal_steer_get_* one rank may see a new value a step before another.
 * These read the value on `root` and broadcast it with root's status:
 * collective over comm, so every rank calls them at the same point of its
 * step, and every rank gets root's status and value. CAUDAL_OK: *value is
 * root's; CAUDAL_NO_VALUE: nothing set yet (CAUDAL_ERR_TYPE: a value of
 * another type), *value unchanged. A NULL key or value on a rank makes that
 * rank return CAUDAL_ERR_INVALID (on root: every rank) after taking part in
 * the broadcast, so no rank is left waiting; CAUDAL_ERR_INVALID too if MPI
 * fails. */
static inline int caudal_steer_get_double_mpi(caudal_client *client, MPI_Comm comm, int root,
                                              const char *key, double *value)
{
    int me;
    if (MPI_Comm_rank(comm, &me) != MPI_SUCCESS)
        return CAUDAL_ERR_INVALID;
    double buf[2] = {0.0, (double)CAUDAL_ERR_INVALID}; /* value, root's status (exact) */
    if (me == root && key && value)
        buf[1] = (double)caudal_steer_get_double(client, key, &buf[0]);
    if (MPI_Bcast(buf, 2, MPI_DOUBLE, root, comm) != MPI_SUCCESS || !key || !value)
        return CAUDAL_ERR_INVALID;
    if ((int)buf[1] == CAUDAL_OK)
        *value = buf[0];
    return (int)buf[1];
}

static inline int caudal_steer_get_int64_mpi(caudal_client *client, MPI_Comm comm, int root,
                                             const char *key, int64_t *value)
{
    int me;
    if (MPI_Comm_rank(comm, &me) != MPI_SUCCESS)
        return CAUDAL_ERR_INVALID;
    int64_t buf[2] = {0, CAUDAL_ERR_INVALID}; /* value, root's status */
    if (me == root && key && value)
        buf[1] = caudal_steer_get_int64(client, key, &buf[0]);
    if (MPI_Bcast(buf, 2, MPI_INT64_T, root, comm) != MPI_SUCCESS || !key || !value)
        return CAUDAL_ERR_INVALID;
    if (buf[1] == CAUDAL_OK)
        *value = buf[0];
    return (int)buf[1];
}

#endif /* CAUDAL_MPI_H */
