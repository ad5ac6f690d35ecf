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
 *
 * Several endpoints: the endpoint may be a comma-separated list,
 * "tcp:h1:p1,tcp:h2:p2,...", the same on every rank (caudal run --transit N
 * sets CAUDAL_ENDPOINT so: N ingest endpoints for the job's ranks). Rank r of
 * `size` connects to entry r * N / size (0-based), so each endpoint takes a
 * contiguous block of ranks and neighbouring ranks share one: 4 ranks on 2
 * endpoints, ranks 0-1 to the first, 2-3 to the second. Every entry is
 * checked on every rank; an empty or malformed entry makes caudal_open fail
 * with CAUDAL_ERR_INVALID and a message naming the rank and the entry. A comma
 * always separates entries, so a unix socket path cannot contain one.
 *
 * Node-local lists: when every entry ends in "@ADDR", a numeric IPv4 or IPv6
 * address ("unix:/tmp/c/ingest-1.sock@10.0.0.1,unix:/tmp/c/ingest-2.sock@
 * 10.0.0.2"), a rank takes the one entry whose ADDR is an address of its own
 * host, whatever its rank (caudal run in situ on several nodes: one ingest per
 * node, each rank to its own node's). No entry for the host, two entries for
 * it, or entries with and without an address are CAUDAL_ERR_INVALID, named.
 * An '@' not followed by an address is part of the path.
 */
#ifndef CAUDAL_H
#define CAUDAL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Every public function is marked CAUDAL_API: the library exports those and
 * nothing else (it is built with hidden visibility). */
#if defined(CAUDAL_BUILDING_LIBRARY) && defined(__GNUC__)
#define CAUDAL_API __attribute__((visibility("default")))
#else
#define CAUDAL_API
#endif

/* ----------------------------------------------------------------- version */

/* The one place the version is written: CMake and pyproject.toml read it
 * from here. caudal_version gives the version of the library actually
 * loaded, which may be newer than the header a program was built with. */
#define CAUDAL_VERSION_MAJOR 0
#define CAUDAL_VERSION_MINOR 1
#define CAUDAL_VERSION_PATCH 0
#define CAUDAL_STR_(x) #x
#define CAUDAL_STR(x) CAUDAL_STR_(x)
#define CAUDAL_VERSION_STRING                                              \
    CAUDAL_STR(CAUDAL_VERSION_MAJOR) "." CAUDAL_STR(CAUDAL_VERSION_MINOR) "." \
        CAUDAL_STR(CAUDAL_VERSION_PATCH)

/* The loaded library's version; any pointer may be NULL. Returns CAUDAL_OK. */
CAUDAL_API int caudal_version(int *major, int *minor, int *patch);

/* Limits that the protocol enforces. */
#define CAUDAL_MAX_DIMS 8
#define CAUDAL_MAX_NAME 255 /* bytes of an array name or steering key */

/* Structs that the caller allocates (options, counters, events, the query
 * results below) end in reserved space: a later version takes its new
 * fields from there, so their size never changes and a program built
 * against this header keeps working with a newer library. The _init
 * functions and the library zero it; leave it alone. */

/* ------------------------------------------------------------------ status */

/* CAUDAL_STATUS_LIST(X) calls X(NAME, value, description) for each status
 * code: the enum, caudal_strerror and every binding are made from it.
 * CAUDAL_OK is 0, errors are negative, and CAUDAL_NO_VALUE (a steering
 * value not set yet) is the only positive one. */
#define CAUDAL_STATUS_LIST(X)                                                     \
    X(OK, 0, "success")                                                           \
    X(NO_VALUE, 1, "no steering value set under this key yet")                    \
    X(ERR_INVALID, -1, "invalid argument")                                        \
    X(ERR_CLOSED, -2, "handle is NULL or already closed")                         \
    X(ERR_NOMEM, -3, "out of memory")                                             \
    X(ERR_UNKNOWN_ARRAY, -4, "no array declared under this name")                 \
    X(ERR_DTYPE, -5, "dtype differs from the declaration")                        \
    X(ERR_SHAPE, -6, "block outside the global shape or bad dimensions")          \
    X(ERR_STEP_ORDER, -7, "step not greater than the previous step")              \
    X(ERR_STATE, -8, "call not allowed in this state")                            \
    X(ERR_DUPLICATE, -9, "declared or put twice")                                 \
    X(ERR_TIMEOUT, -10, "timed out")                                              \
    X(ERR_CONNECT, -11, "could not connect to the endpoint")                      \
    X(ERR_IO, -12, "connection lost")                                             \
    X(ERR_PROTOCOL, -13, "protocol error")                                        \
    X(ERR_AUTH, -14, "job token rejected")                                        \
    X(ERR_VERSION, -15, "protocol version mismatch")                              \
    X(ERR_TYPE, -16, "steering value has another type")                           \
    X(ERR_TRUNCATED, -17, "output buffer too small")                              \
    X(ERR_SYSTEM, -18, "system call failed")

typedef enum caudal_status {
#define CAUDAL_STATUS_ENUM_(name, value, text) CAUDAL_##name = value,
    CAUDAL_STATUS_LIST(CAUDAL_STATUS_ENUM_)
#undef CAUDAL_STATUS_ENUM_
} caudal_status;

/* A static English description of a status code; never NULL. */
CAUDAL_API const char *caudal_strerror(int status);

/* ------------------------------------------------------------------ dtypes */

/* CAUDAL_DTYPE_LIST(X) calls X(NAME, value, bytes per element, "numpy name")
 * for each element type. COMPLEX64 is two float32 (real, imaginary: C99
 * float complex), COMPLEX128 two float64. */
#define CAUDAL_DTYPE_LIST(X)                 \
    X(INT8, 1, 1, "int8")                    \
    X(INT16, 2, 2, "int16")                  \
    X(INT32, 3, 4, "int32")                  \
    X(INT64, 4, 8, "int64")                  \
    X(UINT8, 5, 1, "uint8")                  \
    X(UINT16, 6, 2, "uint16")                \
    X(UINT32, 7, 4, "uint32")                \
    X(UINT64, 8, 8, "uint64")                \
    X(FLOAT32, 9, 4, "float32")              \
    X(FLOAT64, 10, 8, "float64")             \
    X(COMPLEX64, 11, 8, "complex64")         \
    X(COMPLEX128, 12, 16, "complex128")

typedef enum caudal_dtype {
#define CAUDAL_DTYPE_ENUM_(name, value, size, text) CAUDAL_##name = value,
    CAUDAL_DTYPE_LIST(CAUDAL_DTYPE_ENUM_)
#undef CAUDAL_DTYPE_ENUM_
} caudal_dtype;

/* Bytes per element, or 0 for a value that is not a caudal_dtype. */
CAUDAL_API size_t caudal_dtype_size(int dtype);

/* NumPy-style name ("float64"), or "invalid". */
CAUDAL_API const char *caudal_dtype_name(int dtype);

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
    const char *endpoint;      /* NULL: $CAUDAL_ENDPOINT; one endpoint or a list
                                  ("Several endpoints" above) */
    const char *token;         /* NULL: $CAUDAL_TOKEN, else the empty token */
    unsigned ring_depth;       /* slots in the ring; 0: $CAUDAL_RING_DEPTH, else 4 */
    size_t slot_bytes;         /* bytes per slot; 0: the sum of the declared blocks
                                  at the first caudal_begin_step, each rounded up to
                                  64 bytes, plus the capacity of variable arrays */
    caudal_policy policy;      /* when the ring is full */
    int block_timeout_ms;      /* POLICY_BLOCK: give up after this; 0: wait forever */
    int connect_timeout_ms;    /* open and close handshakes; 0: 30000 */
    uint64_t reserved[8];      /* zero: see "reserved space" above */
} caudal_options;

/* Fill *opts with defaults: every field zero or NULL (so taken from the
 * environment where the field says so). Returns CAUDAL_ERR_INVALID for NULL. */
CAUDAL_API int caudal_options_init(caudal_options *opts);

/* Connect to the endpoint, say hello (rank, size, token, protocol version) and
 * wait for the receiver's answer. On success *client owns a socket and memory
 * until caudal_close. On failure *client is NULL and, if errbuf is not NULL, a
 * message of at most errlen bytes (terminated) says why. */
CAUDAL_API int caudal_open(caudal_client **client, const caudal_options *opts, char *errbuf,
                           size_t errlen);

/* Declare an array of fixed shape. ndim is 1..CAUDAL_MAX_DIMS; shape is the
 * global shape, start and count this process's block in it (start + count <=
 * shape in every dimension; a count of 0 is an empty block). The arrays are
 * copied. A name can be declared once. Declarations may come at any time; one
 * made after the first step that does not fit the ring is sent inline (see
 * caudal_put). */
CAUDAL_API int caudal_declare(caudal_client *client, const char *name, caudal_dtype dtype,
                              int ndim, const uint64_t *shape, const uint64_t *start,
                              const uint64_t *count, caudal_order order);

/* Declare a 1-D array whose local length changes every step (particles). The
 * length is given to caudal_put_var. capacity is the usual largest length:
 * it sizes the ring so that puts up to it take the shared-memory path; 0 is
 * allowed. */
CAUDAL_API int caudal_declare_var(caudal_client *client, const char *name, caudal_dtype dtype,
                                  uint64_t capacity);

/* Start step `step`; steps must strictly increase (gaps are allowed, so a
 * simulation may publish every tenth step). Takes a ring slot: if all are
 * held, applies the policy. Under POLICY_DROP the step is skipped for the
 * analytics: puts are still checked but copy nothing, and the drop is counted
 * and reported to the receiver. Under POLICY_BLOCK it waits, up to
 * block_timeout_ms, then returns CAUDAL_ERR_TIMEOUT (the step is not begun). */
CAUDAL_API int caudal_begin_step(caudal_client *client, uint64_t step);

/* Copy this process's block of a fixed array into the step's slot and return.
 * `data` holds count[0]*...*count[ndim-1] elements of `dtype` in the declared
 * order; the simulation may overwrite it as soon as the call returns. If the
 * block does not fit the slot it is copied to a private buffer and sent inline
 * by caudal_end_step, which then waits for the socket (counted in
 * bytes_inline). */
CAUDAL_API int caudal_put(caudal_client *client, const char *name, caudal_dtype dtype,
                          const void *data);

/* As caudal_put, for an array declared with caudal_declare_var: `count`
 * elements this step (0 allowed; data may then be NULL). */
CAUDAL_API int caudal_put_var(caudal_client *client, const char *name, caudal_dtype dtype,
                              const void *data, uint64_t count);

/* Finish the step: hand the frames to the socket without waiting for the
 * analytics (what the socket cannot take now goes out in later calls). */
CAUDAL_API int caudal_end_step(caudal_client *client);

/* The types a steering value can have. */
typedef enum caudal_value_type {
    CAUDAL_VALUE_DOUBLE = 1,
    CAUDAL_VALUE_INT64 = 2,
    CAUDAL_VALUE_STRING = 3
} caudal_value_type;

/* A steering value of any type, as caudal_steer_get gives it. */
typedef struct caudal_value {
    caudal_value_type type;
    double as_double;       /* CAUDAL_VALUE_DOUBLE */
    int64_t as_int64;       /* CAUDAL_VALUE_INT64 */
    const char *as_string;  /* CAUDAL_VALUE_STRING: terminated, owned by the
                               client, valid until the next call on it */
    size_t string_length;   /* bytes of as_string before the terminator */
    uint64_t reserved[4];
} caudal_value;

/* Read the latest steering value set under `key` whatever its type, without
 * blocking: CAUDAL_OK with *value filled, or CAUDAL_NO_VALUE if nothing was
 * set yet (*value is then zeroed). One call for a binding that does not know
 * the type in advance. */
CAUDAL_API int caudal_steer_get(caudal_client *client, const char *key, caudal_value *value);

/* Read the latest steering value that the analytics set under `key`, without
 * blocking: CAUDAL_OK, CAUDAL_NO_VALUE if nothing was set yet, CAUDAL_ERR_TYPE
 * if the value has another type. A string is copied terminated; if it does not
 * fit, as much as fits is copied and CAUDAL_ERR_TRUNCATED is returned. */
CAUDAL_API int caudal_steer_get_double(caudal_client *client, const char *key, double *value);
CAUDAL_API int caudal_steer_get_int64(caudal_client *client, const char *key, int64_t *value);
CAUDAL_API int caudal_steer_get_string(caudal_client *client, const char *key, char *buf,
                                       size_t buflen);

/* Report a value to the analytics under `key` (the current source term, say);
 * the analytics read the latest one of each rank. Never blocks. */
CAUDAL_API int caudal_steer_set_double(caudal_client *client, const char *key, double value);
CAUDAL_API int caudal_steer_set_int64(caudal_client *client, const char *key, int64_t value);
CAUDAL_API int caudal_steer_set_string(caudal_client *client, const char *key, const char *value);

/* What was declared under a name: the arguments of caudal_declare (ndim,
 * shape, start and count; the unused dimensions are zero), or for a
 * variable-length array ndim 1, variable 1 and the capacity in count[0]. */
typedef struct caudal_array_info {
    const char *name;       /* owned by the library */
    caudal_dtype dtype;
    caudal_order order;
    int variable;           /* declared with caudal_declare_var */
    int ndim;
    uint64_t shape[CAUDAL_MAX_DIMS];
    uint64_t start[CAUDAL_MAX_DIMS];
    uint64_t count[CAUDAL_MAX_DIMS];
    uint64_t reserved[4];
} caudal_array_info;

/* The declaration of `name` (its name pointer valid while the client is
 * open), or CAUDAL_ERR_UNKNOWN_ARRAY if none: a binding checks its buffers
 * against it without keeping a copy. */
CAUDAL_API int caudal_query_array(caudal_client *client, const char *name,
                                  caudal_array_info *info);

/* Where the client is. */
typedef struct caudal_state {
    int rank, size;
    int in_step;          /* between caudal_begin_step and caudal_end_step */
    int any_step;         /* a step was begun since caudal_open */
    uint64_t step;        /* the current step, or the last one if !in_step */
    int dropping;         /* this step is dropped (POLICY_DROP) */
    caudal_policy policy; /* the policy in force (never DEFAULT) */
    unsigned ring_depth;
    size_t slot_bytes;    /* 0 until the first step sizes the ring */
    uint64_t reserved[4];
} caudal_state;

CAUDAL_API int caudal_get_state(const caudal_client *client, caudal_state *state);

/* Check a put without making it: everything caudal_put (variable 0) or
 * caudal_put_var (variable 1) would check now before looking at data (inside
 * a step, declared, fixed or variable, dtype, not put yet this step), and the
 * layout of the caller's elements, given as an array of ndim dims: a fixed
 * array takes its block's shape (count) or a flat 1-D run of as many
 * elements; a variable one a 1-D run of any length. On failure the status and
 * caudal_last_error are those the put would give, or for the layout
 * CAUDAL_ERR_SHAPE with a message naming both shapes. Nothing is recorded: a
 * put may follow. For bindings, whose arrays carry their shape. */
CAUDAL_API int caudal_put_check(caudal_client *client, const char *name, caudal_dtype dtype,
                                int variable, int ndim, const uint64_t *dims);

/* Make `message` the client's last error, prefixed as the library's own are
 * (rank, step and, if not NULL, the array), and return `status`: a binding's
 * own checks then read as the library's. */
CAUDAL_API int caudal_set_error(caudal_client *client, int status, const char *array,
                                const char *message);

typedef struct caudal_counters {
    uint64_t steps_sent;     /* steps whose blocks went to the analytics */
    uint64_t steps_dropped;  /* steps skipped under POLICY_DROP */
    uint64_t blocks_sent;
    uint64_t bytes_sent;     /* payload bytes of the blocks sent */
    uint64_t bytes_inline;   /* of those, bytes that went through the socket */
    uint64_t ns_in_calls;    /* wall time spent inside caudal_* calls */
    uint64_t ns_waiting;     /* of that, time waiting for a slot or the socket */
    uint64_t reserved[8];
} caudal_counters;

/* Copy the client's counters into *out. */
CAUDAL_API int caudal_get_counters(const caudal_client *client, caudal_counters *out);

/* The message of the client's last error (names rank, step and array), or ""
 * if none. Valid until the next call on the client. NULL client: a message
 * saying so. */
CAUDAL_API const char *caudal_last_error(const caudal_client *client);

/* Send what is queued, say goodbye with the counters, wait for the receiver to
 * acknowledge (up to connect_timeout_ms), free everything and set *client to
 * NULL. Returns the first error met while doing so (resources are freed in
 * every case). Closing a NULL (already closed) client returns
 * CAUDAL_ERR_CLOSED; so does every other call on it. */
CAUDAL_API int caudal_close(caudal_client **client);

/* caudal_close that also gives its error's message, which the client cannot
 * keep once freed: if errbuf is not NULL, at most errlen bytes (terminated),
 * "" on success. */
CAUDAL_API int caudal_close_report(caudal_client **client, char *errbuf, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif /* CAUDAL_H */
