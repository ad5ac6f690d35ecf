/*
 * caudal.h - publish a running simulation's arrays to online analytics.
 *
 * This is the only header a simulation includes. It is C11, has no MPI, Python
 * or Ray dependency, keeps no global state and starts no thread.
 *
 * Simple use, one MPI rank publishing its block of a 2-D field each step:
 *
 *     caudal_options opts;
 *     caudal_options_init(&opts);
 *     opts.rank = rank; opts.size = nranks;   // endpoint/token from environment
 *     caudal_client *c;
 *     char err[256];
 *     if (caudal_open(&c, &opts, err, sizeof err) != CAUDAL_OK) { puts(err); ... }
 *     uint64_t shape[2] = {NX, NY}, start[2] = {x0, y0}, count[2] = {nx, ny};
 *     caudal_declare(c, "temperature", CAUDAL_FLOAT64, 2, shape, start, count,
 *                    CAUDAL_ORDER_C);
 *     for (step = 0; step < nsteps; step++) {
 *         compute(t);
 *         caudal_begin_step(c, step);
 *         caudal_put(c, "temperature", CAUDAL_FLOAT64, t);   // copies, returns
 *         caudal_end_step(c);                                 // sends, returns
 *         double q;
 *         if (caudal_steer_get_double(c, "source", &q) == CAUDAL_OK) source = q;
 *     }
 *     caudal_close(&c);
 *
 * Status codes: every call returns one. CAUDAL_OK is 0, errors are negative,
 * and CAUDAL_NO_VALUE (a steering value not set yet) is the only positive one.
 * After an error, caudal_last_error(client) gives a message that names the
 * rank, the step and the array concerned.
 *
 * Transport: the endpoint says how blocks travel.
 *   "unix:/path/to/socket"  same node: blocks are copied into a ring of shared
 *                           memory slots (a memfd passed over the socket, so
 *                           nothing is left in /dev/shm if a process dies);
 *                           only small messages cross the socket.
 *   "tcp:host:port"         another node: the same frames, blocks inline.
 * Both check the job token in both directions.
 */
#ifndef CAUDAL_H
#define CAUDAL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CAUDAL_VERSION_MAJOR 0
#define CAUDAL_VERSION_MINOR 1
#define CAUDAL_VERSION_PATCH 0

/* Limits that the protocol enforces. */
#define CAUDAL_MAX_DIMS 8
#define CAUDAL_MAX_NAME 255 /* bytes of an array name or steering key */

/* ------------------------------------------------------------------ status */

typedef enum caudal_status {
    CAUDAL_OK = 0,
    CAUDAL_NO_VALUE = 1,           /* steering: nothing set under this key yet */
    CAUDAL_ERR_INVALID = -1,       /* NULL or out-of-range argument */
    CAUDAL_ERR_CLOSED = -2,        /* client handle is NULL or already closed */
    CAUDAL_ERR_NOMEM = -3,         /* out of memory */
    CAUDAL_ERR_UNKNOWN_ARRAY = -4, /* no array declared under this name */
    CAUDAL_ERR_DTYPE = -5,         /* dtype differs from the declaration */
    CAUDAL_ERR_SHAPE = -6,         /* block outside the global shape, bad dims */
    CAUDAL_ERR_STEP_ORDER = -7,    /* step not greater than the previous one */
    CAUDAL_ERR_STATE = -8,         /* call not allowed now (put outside a step) */
    CAUDAL_ERR_DUPLICATE = -9,     /* name declared twice, or put twice a step */
    CAUDAL_ERR_TIMEOUT = -10,      /* waited longer than the configured limit */
    CAUDAL_ERR_CONNECT = -11,      /* could not reach the endpoint */
    CAUDAL_ERR_IO = -12,           /* the peer is gone or the socket failed */
    CAUDAL_ERR_PROTOCOL = -13,     /* malformed or unexpected frame */
    CAUDAL_ERR_AUTH = -14,         /* job token rejected */
    CAUDAL_ERR_VERSION = -15,      /* peer speaks another protocol version */
    CAUDAL_ERR_TYPE = -16,         /* steering value has another type */
    CAUDAL_ERR_TRUNCATED = -17,    /* output buffer too small */
    CAUDAL_ERR_SYSTEM = -18        /* an operating system call failed */
} caudal_status;

/* A static English description of a status code; never NULL. */
const char *caudal_strerror(int status);

/* ------------------------------------------------------------------ dtypes */

typedef enum caudal_dtype {
    CAUDAL_INT8 = 1,
    CAUDAL_INT16,
    CAUDAL_INT32,
    CAUDAL_INT64,
    CAUDAL_UINT8,
    CAUDAL_UINT16,
    CAUDAL_UINT32,
    CAUDAL_UINT64,
    CAUDAL_FLOAT32,
    CAUDAL_FLOAT64,
    CAUDAL_COMPLEX64,  /* two float32: real, imaginary (C99 float complex) */
    CAUDAL_COMPLEX128  /* two float64 (C99 double complex) */
} caudal_dtype;

/* Bytes per element, or 0 for a value that is not a caudal_dtype. */
size_t caudal_dtype_size(int dtype);

/* NumPy-style name ("float64"), or "invalid". */
const char *caudal_dtype_name(int dtype);

/* Memory layout of a block: C (last index fastest) or Fortran (first fastest).
 * Shape, start and count are always listed in the program's own index order:
 * a Fortran program declares (nx, ny) for a real(8) :: t(nx, ny). */
typedef enum caudal_order { CAUDAL_ORDER_C = 0, CAUDAL_ORDER_F = 1 } caudal_order;

/* ------------------------------------------------------------------ client */

typedef struct caudal_client caudal_client;

/* What to do in caudal_begin_step when every ring slot is still held by the
 * analytics. */
typedef enum caudal_policy {
    CAUDAL_POLICY_DEFAULT = 0, /* $CAUDAL_POLICY ("block" or "drop"), else block */
    CAUDAL_POLICY_BLOCK = 1,   /* wait for a slot (backpressure on the simulation) */
    CAUDAL_POLICY_DROP = 2     /* skip this step for the analytics and count it */
} caudal_policy;

typedef struct caudal_options {
    int rank;                  /* this process, 0 <= rank < size */
    int size;                  /* number of publishing processes */
    const char *endpoint;      /* NULL: $CAUDAL_ENDPOINT */
    const char *token;         /* NULL: $CAUDAL_TOKEN, else the empty token */
    unsigned ring_depth;       /* slots in the ring; 0: $CAUDAL_RING_DEPTH, else 4 */
    size_t slot_bytes;         /* bytes per slot; 0: the sum of the declared blocks
                                  at the first caudal_begin_step, each rounded up to
                                  64 bytes, plus the capacity of variable arrays */
    caudal_policy policy;      /* when the ring is full */
    int block_timeout_ms;      /* POLICY_BLOCK: give up after this; 0: wait forever */
    int connect_timeout_ms;    /* open and close handshakes; 0: 30000 */
} caudal_options;

/* Fill *opts with defaults: every field zero or NULL (so taken from the
 * environment where the field says so). Returns CAUDAL_ERR_INVALID for NULL. */
int caudal_options_init(caudal_options *opts);

/* Connect to the endpoint, say hello (rank, size, token, protocol version) and
 * wait for the receiver's answer. On success *client owns a socket and memory
 * until caudal_close. On failure *client is NULL and, if errbuf is not NULL, a
 * message of at most errlen bytes (terminated) says why. */
int caudal_open(caudal_client **client, const caudal_options *opts, char *errbuf,
                size_t errlen);

/* Declare an array of fixed shape. ndim is 1..CAUDAL_MAX_DIMS; shape is the
 * global shape, start and count this process's block in it (start + count <=
 * shape in every dimension; a count of 0 is an empty block). The arrays are
 * copied. A name can be declared once. Declarations may come at any time; one
 * made after the first step that does not fit the ring is sent inline (see
 * caudal_put). */
int caudal_declare(caudal_client *client, const char *name, caudal_dtype dtype,
                   int ndim, const uint64_t *shape, const uint64_t *start,
                   const uint64_t *count, caudal_order order);

/* Declare a 1-D array whose local length changes every step (particles). The
 * length is given to caudal_put_var. capacity is the usual largest length:
 * it sizes the ring so that puts up to it take the shared-memory path; 0 is
 * allowed. */
int caudal_declare_var(caudal_client *client, const char *name, caudal_dtype dtype,
                       uint64_t capacity);

/* Start step `step`; steps must strictly increase (gaps are allowed, so a
 * simulation may publish every tenth step). Takes a ring slot: if all are
 * held, applies the policy. Under POLICY_DROP the step is skipped for the
 * analytics: puts are still checked but copy nothing, and the drop is counted
 * and reported to the receiver. Under POLICY_BLOCK it waits, up to
 * block_timeout_ms, then returns CAUDAL_ERR_TIMEOUT (the step is not begun). */
int caudal_begin_step(caudal_client *client, uint64_t step);

/* Copy this process's block of a fixed array into the step's slot and return.
 * `data` holds count[0]*...*count[ndim-1] elements of `dtype` in the declared
 * order; the simulation may overwrite it as soon as the call returns. If the
 * block does not fit the slot it is copied to a private buffer and sent inline
 * by caudal_end_step, which then waits for the socket (counted in
 * bytes_inline). */
int caudal_put(caudal_client *client, const char *name, caudal_dtype dtype,
               const void *data);

/* As caudal_put, for an array declared with caudal_declare_var: `count`
 * elements this step (0 allowed; data may then be NULL). */
int caudal_put_var(caudal_client *client, const char *name, caudal_dtype dtype,
                   const void *data, uint64_t count);

/* Finish the step: hand the frames to the socket without waiting for the
 * analytics (what the socket cannot take now goes out in later calls). */
int caudal_end_step(caudal_client *client);

/* The types a steering value can have. */
typedef enum caudal_value_type {
    CAUDAL_VALUE_DOUBLE = 1,
    CAUDAL_VALUE_INT64 = 2,
    CAUDAL_VALUE_STRING = 3
} caudal_value_type;

/* Read the latest steering value that the analytics set under `key`, without
 * blocking: CAUDAL_OK, CAUDAL_NO_VALUE if nothing was set yet, CAUDAL_ERR_TYPE
 * if the value has another type. A string is copied terminated; if it does not
 * fit, as much as fits is copied and CAUDAL_ERR_TRUNCATED is returned. */
int caudal_steer_get_double(caudal_client *client, const char *key, double *value);
int caudal_steer_get_int64(caudal_client *client, const char *key, int64_t *value);
int caudal_steer_get_string(caudal_client *client, const char *key, char *buf,
                            size_t buflen);

/* Report a value to the analytics under `key` (the current source term, say);
 * the analytics read the latest one of each rank. Never blocks. */
int caudal_steer_set_double(caudal_client *client, const char *key, double value);
int caudal_steer_set_int64(caudal_client *client, const char *key, int64_t value);
int caudal_steer_set_string(caudal_client *client, const char *key, const char *value);

typedef struct caudal_counters {
    uint64_t steps_sent;     /* steps whose blocks went to the analytics */
    uint64_t steps_dropped;  /* steps skipped under POLICY_DROP */
    uint64_t blocks_sent;
    uint64_t bytes_sent;     /* payload bytes of the blocks sent */
    uint64_t bytes_inline;   /* of those, bytes that went through the socket */
    uint64_t ns_in_calls;    /* wall time spent inside caudal_* calls */
    uint64_t ns_waiting;     /* of that, time waiting for a slot or the socket */
} caudal_counters;

/* Copy the client's counters into *out. */
int caudal_get_counters(const caudal_client *client, caudal_counters *out);

/* The message of the client's last error (names rank, step and array), or ""
 * if none. Valid until the next call on the client. NULL client: a message
 * saying so. */
const char *caudal_last_error(const caudal_client *client);

/* Send what is queued, say goodbye with the counters, wait for the receiver to
 * acknowledge (up to connect_timeout_ms), free everything and set *client to
 * NULL. Returns the first error met while doing so (resources are freed in
 * every case). Closing a NULL (already closed) client returns
 * CAUDAL_ERR_CLOSED; so does every other call on it. */
int caudal_close(caudal_client **client);

#ifdef __cplusplus
}
#endif

#endif /* CAUDAL_H */
