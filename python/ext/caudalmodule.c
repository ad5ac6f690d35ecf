/*
 * caudalmodule.c - caudal._caudal, the Python binding of libcaudal.
 *
 * Written against the CPython C API and the buffer protocol only, so building
 * it needs no NumPy. Three objects wrap the C API:
 *
 *   Client    caudal_client: declare, begin_step, put, end_step, steering.
 *   Receiver  caudal_receiver: next() hands out Event objects.
 *   Block     a held caudal_block; exports the block's memory read-only
 *             through the buffer protocol (numpy.asarray(block) is a
 *             zero-copy view) and releases it exactly once: on release(),
 *             or when it is garbage collected.
 *
 * Every failure raises CaudalError with .status (the caudal_status code) and
 * the library's message, which names the rank, step and array concerned.
 *
 * Threads: the GIL is released around the calls that copy or wait. Each
 * Client and Receiver has a lock so that two Python threads never run C calls
 * on the same handle at once (the C handles are not thread-safe).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pythread.h>
#include <structmember.h>

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "caudal.h"
#include "caudal_receiver.h"
#include "buffer_dtype.h"

/* Puts of at least this many bytes release the GIL while copying. */
#define GIL_RELEASE_BYTES (64u * 1024u)
/* Receiver.next waits in slices of this many ms so Ctrl-C is seen. */
#define NEXT_SLICE_MS 100
/* Largest steering string the protocol carries, plus the terminator. */
#define STEER_STRING_MAX (65536u + 1u)

#if PY_VERSION_HEX < 0x030A0000
static inline PyObject *caudal_newref(PyObject *o)
{
    Py_INCREF(o);
    return o;
}
#define Py_NewRef(o) caudal_newref((PyObject *)(o))
#endif

/* Casts of methods, getters and slots to the generic pointer types. */
#define METH(f) ((PyCFunction)(void (*)(void))(f))
#define GETTER(f) ((getter)(void (*)(void))(f))
#define SLOT(t, f) ((t)(void (*)(void))(f))

static PyObject *CaudalError; /* caudal.CaudalError */
static PyTypeObject Client_Type, Receiver_Type, Block_Type, Event_Type;

/* ======================================================================= */
/* errors                                                                  */

/* Raise CaudalError(message) with .status and .message set. */
static PyObject *raise_status(int status, const char *message)
{
    if (!message || !*message)
        message = caudal_strerror(status);
    PyObject *msg = PyUnicode_DecodeUTF8(message, (Py_ssize_t)strlen(message), "replace");
    if (!msg)
        return NULL;
    PyObject *exc = PyObject_CallOneArg(CaudalError, msg);
    if (!exc) {
        Py_DECREF(msg);
        return NULL;
    }
    PyObject *st = PyLong_FromLong(status);
    PyObject *name = PyUnicode_FromString(caudal_strerror(status));
    if (!st || !name || PyObject_SetAttrString(exc, "status", st) < 0 ||
        PyObject_SetAttrString(exc, "message", msg) < 0 ||
        PyObject_SetAttrString(exc, "description", name) < 0) {
        Py_XDECREF(st);
        Py_XDECREF(name);
        Py_DECREF(msg);
        Py_DECREF(exc);
        return NULL;
    }
    Py_DECREF(st);
    Py_DECREF(name);
    Py_DECREF(msg);
    PyErr_SetObject(CaudalError, exc);
    Py_DECREF(exc);
    return NULL;
}

static PyObject *raise_fmt(int status, const char *fmt, ...)
{
    char buf[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return raise_status(status, buf);
}

/* ======================================================================= */
/* dtypes                                                                  */

static const char *const dtype_names[] = {
    NULL, "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
    "uint64", "float32", "float64", "complex64", "complex128"};
#define NDTYPES 12

/* The buffer-protocol format a block of `dtype` is exported with. */
static const char *dtype_format(int dtype)
{
    switch (dtype) {
    case CAUDAL_INT8: return "b";
    case CAUDAL_INT16: return "h";
    case CAUDAL_INT32: return "i";
    case CAUDAL_INT64: return "q";
    case CAUDAL_UINT8: return "B";
    case CAUDAL_UINT16: return "H";
    case CAUDAL_UINT32: return "I";
    case CAUDAL_UINT64: return "Q";
    case CAUDAL_FLOAT32: return "f";
    case CAUDAL_FLOAT64: return "d";
    case CAUDAL_COMPLEX64: return "Zf";
    case CAUDAL_COMPLEX128: return "Zd";
    default: return NULL;
    }
}

/* A NumPy type string such as "<f8", "|u1", "c16"; 0 if it is not one. */
static int typestr_dtype(const char *s)
{
    if (*s == '<' || *s == '>' || *s == '|' || *s == '=') {
        if ((*s == '<' && !host_is_little()) || (*s == '>' && host_is_little()))
            return 0;
        s++;
    }
    char kind = *s++;
    if (!*s || strspn(s, "0123456789") != strlen(s) || strlen(s) > 2)
        return 0;
    int size = atoi(s);
    switch (kind) {
    case 'i': return int_dtype(1, size);
    case 'u': return int_dtype(0, size);
    case 'f': return size == 4 ? CAUDAL_FLOAT32 : size == 8 ? CAUDAL_FLOAT64 : 0;
    case 'c': return size == 8 ? CAUDAL_COMPLEX64 : size == 16 ? CAUDAL_COMPLEX128 : 0;
    default: return 0;
    }
}

static int name_dtype(const char *s)
{
    for (int k = 1; k <= NDTYPES; k++)
        if (strcmp(s, dtype_names[k]) == 0)
            return k;
    return typestr_dtype(s);
}

/* dtype argument: a name ("float64"), a NumPy type string ("<f8"), an object
 * whose .name is one (numpy.dtype), a type whose __name__ is one
 * (numpy.float64), or a caudal_dtype code. Raises and returns 0 otherwise. */
static int dtype_from_object(PyObject *obj)
{
    int dt = 0;
    if (PyUnicode_Check(obj)) {
        const char *s = PyUnicode_AsUTF8(obj);
        if (!s)
            return 0;
        dt = name_dtype(s);
    } else if (PyLong_Check(obj) && !PyBool_Check(obj)) {
        long v = PyLong_AsLong(obj);
        if (v == -1 && PyErr_Occurred())
            PyErr_Clear();
        else if (v >= 1 && v <= NDTYPES)
            dt = (int)v;
    } else {
        static const char *const attrs[] = {"name", "__name__"};
        for (int k = 0; k < 2 && !dt; k++) {
            PyObject *a = PyObject_GetAttrString(obj, attrs[k]);
            if (!a) {
                PyErr_Clear();
                continue;
            }
            if (PyUnicode_Check(a)) {
                const char *s = PyUnicode_AsUTF8(a);
                if (s)
                    dt = name_dtype(s);
                else
                    PyErr_Clear();
            }
            Py_DECREF(a);
        }
        /* numpy.dtype('>f8').name is 'float64' too: check the byte order. */
        if (dt) {
            PyObject *bo = PyObject_GetAttrString(obj, "byteorder");
            if (!bo) {
                PyErr_Clear();
            } else {
                if (PyUnicode_Check(bo)) {
                    const char *s = PyUnicode_AsUTF8(bo);
                    if (s && ((*s == '>' && host_is_little()) ||
                              (*s == '<' && !host_is_little())))
                        dt = 0;
                }
                Py_DECREF(bo);
            }
        }
    }
    if (!dt) {
        PyObject *r = PyObject_Repr(obj);
        const char *rs = r ? PyUnicode_AsUTF8(r) : NULL;
        if (!rs)
            PyErr_Clear();
        raise_fmt(CAUDAL_ERR_DTYPE,
                  "%s is not a caudal dtype (one of int8, int16, int32, int64, uint8, "
                  "uint16, uint32, uint64, float32, float64, complex64, complex128, in "
                  "native byte order)",
                  rs ? rs : "the object");
        Py_XDECREF(r);
    }
    return dt;
}

/* ======================================================================= */
/* locks                                                                   */

/* Take a handle's lock; wait without the GIL if another thread holds it. */
static void lock_take(PyThread_type_lock lock)
{
    if (!PyThread_acquire_lock(lock, NOWAIT_LOCK)) {
        Py_BEGIN_ALLOW_THREADS
        PyThread_acquire_lock(lock, WAIT_LOCK);
        Py_END_ALLOW_THREADS
    }
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* A steering string from a str (UTF-8, no NUL). Sets an error, returns NULL. */
static const char *steer_string(PyObject *value)
{
    Py_ssize_t n;
    const char *s = PyUnicode_AsUTF8AndSize(value, &n);
    if (!s)
        return NULL;
    if ((Py_ssize_t)strlen(s) != n) {
        raise_status(CAUDAL_ERR_INVALID, "a steering string must not contain NUL characters");
        return NULL;
    }
    return s;
}

/* The kind of a steering value: 1 double, 2 int64, 3 string; 0 with an error. */
static int steer_kind(PyObject *value, double *d, int64_t *i, const char **s)
{
    if (PyUnicode_Check(value)) {
        *s = steer_string(value);
        return *s ? CAUDAL_VALUE_STRING : 0;
    }
    if (PyFloat_Check(value)) {
        *d = PyFloat_AsDouble(value);
        return CAUDAL_VALUE_DOUBLE;
    }
    if (PyLong_Check(value) || PyIndex_Check(value)) {
        PyObject *iv = PyNumber_Index(value);
        if (!iv)
            return 0;
        int overflow = 0;
        long long v = PyLong_AsLongLongAndOverflow(iv, &overflow);
        Py_DECREF(iv);
        if (v == -1 && PyErr_Occurred())
            return 0;
        if (overflow) {
            raise_status(CAUDAL_ERR_INVALID, "a steering integer must fit in 64 bits");
            return 0;
        }
        *i = (int64_t)v;
        return CAUDAL_VALUE_INT64;
    }
    if (Py_TYPE(value)->tp_as_number && Py_TYPE(value)->tp_as_number->nb_float) {
        *d = PyFloat_AsDouble(value);
        if (*d == -1.0 && PyErr_Occurred())
            return 0;
        return CAUDAL_VALUE_DOUBLE;
    }
    PyErr_Format(PyExc_TypeError, "a steering value is a float, an int or a str, not %.100s",
                 Py_TYPE(value)->tp_name);
    return 0;
}

static PyObject *steer_value_object(int type, double d, int64_t i, const char *s)
{
    switch (type) {
    case CAUDAL_VALUE_DOUBLE: return PyFloat_FromDouble(d);
    case CAUDAL_VALUE_INT64: return PyLong_FromLongLong((long long)i);
    case CAUDAL_VALUE_STRING:
        return PyUnicode_DecodeUTF8(s ? s : "", s ? (Py_ssize_t)strlen(s) : 0,
                                    "surrogateescape");
    default: Py_RETURN_NONE;
    }
}

static PyObject *counters_dict(const caudal_counters *k)
{
    return Py_BuildValue("{s:K,s:K,s:K,s:K,s:K,s:K,s:K}",
                         "steps_sent", (unsigned long long)k->steps_sent,
                         "steps_dropped", (unsigned long long)k->steps_dropped,
                         "blocks_sent", (unsigned long long)k->blocks_sent,
                         "bytes_sent", (unsigned long long)k->bytes_sent,
                         "bytes_inline", (unsigned long long)k->bytes_inline,
                         "ns_in_calls", (unsigned long long)k->ns_in_calls,
                         "ns_waiting", (unsigned long long)k->ns_waiting);
}

/* An int (or index) from 0 to 2**64-1; -1 with the error cleared if not. */
static int u64_arg(PyObject *obj, unsigned long long *out)
{
    PyObject *iv = PyNumber_Index(obj);
    if (!iv) {
        PyErr_Clear();
        return -1;
    }
    *out = PyLong_AsUnsignedLongLong(iv);
    Py_DECREF(iv);
    if (*out == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return -1;
    }
    return 0;
}

/* A sequence of non-negative ints into u64[]; returns its length or -1. */
static int u64_tuple(PyObject *seq, const char *what, const char *array, uint64_t *out)
{
    PyObject *fast = PySequence_Fast(seq, "shape, start and count are sequences of ints");
    if (!fast)
        return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    if (n < 1 || n > CAUDAL_MAX_DIMS) {
        Py_DECREF(fast);
        raise_fmt(CAUDAL_ERR_SHAPE, "array '%.64s': %s has %zd dimensions, not 1 to %d",
                  array, what, n, CAUDAL_MAX_DIMS);
        return -1;
    }
    for (Py_ssize_t k = 0; k < n; k++) {
        PyObject *iv = PyNumber_Index(PySequence_Fast_GET_ITEM(fast, k));
        if (!iv) {
            Py_DECREF(fast);
            return -1;
        }
        unsigned long long v = PyLong_AsUnsignedLongLong(iv);
        Py_DECREF(iv);
        if (v == (unsigned long long)-1 && PyErr_Occurred()) {
            Py_DECREF(fast);
            PyErr_Clear();
            raise_fmt(CAUDAL_ERR_SHAPE,
                      "array '%.64s': %s[%zd] is not an integer from 0 to 2**64-1", array,
                      what, k);
            return -1;
        }
        out[k] = v;
    }
    Py_DECREF(fast);
    return (int)n;
}

/* ======================================================================= */
/* Client                                                                  */

typedef struct {
    char *name;
    int dtype;
    int order;
    int variable;
    int ndim;
    uint64_t count[CAUDAL_MAX_DIMS];
    uint64_t nbytes;
} decl;

typedef struct {
    PyObject_HEAD
    caudal_client *c;
    PyThread_type_lock lock;
    int rank, size;
    /* mirror of the step state, for the messages this module writes */
    int in_step, any_step;
    uint64_t step;
    decl *decls;
    size_t ndecls, decls_cap;
} ClientObject;

static void client_where(ClientObject *self, char *buf, size_t len)
{
    if (self->in_step)
        snprintf(buf, len, "rank %d, step %llu", self->rank, (unsigned long long)self->step);
    else if (self->any_step)
        snprintf(buf, len, "rank %d, after step %llu", self->rank,
                 (unsigned long long)self->step);
    else
        snprintf(buf, len, "rank %d, before the first step", self->rank);
}

static PyObject *raise_closed(const char *what)
{
    return raise_fmt(CAUDAL_ERR_CLOSED, "%s is closed", what);
}

/* Take a handle's lock for a C call. The handle is checked once the lock is
 * held, since close() clears it under the lock; if it is gone, raise CLOSED
 * and return -1 without the lock. */
static int handle_enter(PyThread_type_lock lock, int (*is_open)(PyObject *), PyObject *self,
                        const char *what)
{
    if (!lock) {
        raise_closed(what);
        return -1;
    }
    lock_take(lock);
    if (!is_open(self)) {
        PyThread_release_lock(lock);
        raise_closed(what);
        return -1;
    }
    return 0;
}

/* Raise status rc with the handle's message, copied before the lock (held by
 * the caller) is released. */
static PyObject *handle_raise(PyThread_type_lock lock, int rc, const char *message)
{
    char msg[768];
    snprintf(msg, sizeof msg, "%s", message);
    PyThread_release_lock(lock);
    return raise_status(rc, msg);
}

/* tp_new of the handle types: the object with its lock (at lock_offset);
 * dealloc frees the lock, and copes with one that was never made. */
static PyObject *handle_new(PyTypeObject *type, size_t lock_offset)
{
    PyObject *self = type->tp_alloc(type, 0);
    if (!self)
        return NULL;
    PyThread_type_lock *lock = (PyThread_type_lock *)((char *)self + lock_offset);
    if (!(*lock = PyThread_allocate_lock())) {
        Py_DECREF(self);
        return PyErr_NoMemory();
    }
    return self;
}

/* __enter__ of the handle types: the handle itself, if it is open. */
static PyObject *handle_with(PyObject *self, int open, const char *what)
{
    if (!open)
        return raise_closed(what);
    Py_INCREF(self);
    return self;
}

/* What __exit__ returns once close() gave `closed`: False (exceptions are
 * never swallowed); a failure to close is raised only when no exception is
 * ending the with block, since that one says more. */
static PyObject *handle_exit(PyObject *closed, PyObject *exit_args)
{
    if (!closed) {
        if (PyTuple_GET_SIZE(exit_args) > 0 && PyTuple_GET_ITEM(exit_args, 0) != Py_None) {
            PyErr_Clear();
            Py_RETURN_FALSE;
        }
        return NULL;
    }
    Py_DECREF(closed);
    Py_RETURN_FALSE;
}

static int client_is_open(PyObject *o) { return ((ClientObject *)o)->c != NULL; }

/* Lock the client for a C call; raises CLOSED (lock not held) if closed. */
static int client_enter(ClientObject *self)
{
    return handle_enter(self->lock, client_is_open, (PyObject *)self, "the client");
}

static void client_leave(ClientObject *self) { PyThread_release_lock(self->lock); }

/* Raise for status rc with the client's message; call with the lock held. */
static PyObject *client_raise(ClientObject *self, int rc)
{
    return handle_raise(self->lock, rc, caudal_last_error(self->c));
}

static void client_free_decls(ClientObject *self)
{
    for (size_t k = 0; k < self->ndecls; k++)
        free(self->decls[k].name);
    free(self->decls);
    self->decls = NULL;
    self->ndecls = self->decls_cap = 0;
}

static decl *client_find(ClientObject *self, const char *name)
{
    for (size_t k = 0; k < self->ndecls; k++)
        if (strcmp(self->decls[k].name, name) == 0)
            return &self->decls[k];
    return NULL;
}

/* Remember a declaration that the library accepted. */
static int client_remember(ClientObject *self, const decl *d)
{
    if (self->ndecls == self->decls_cap) {
        size_t ncap = self->decls_cap ? 2 * self->decls_cap : 8;
        decl *nd = realloc(self->decls, ncap * sizeof *nd);
        if (!nd)
            return -1;
        self->decls = nd;
        self->decls_cap = ncap;
    }
    decl *slot = &self->decls[self->ndecls];
    *slot = *d;
    if (!(slot->name = strdup(d->name)))
        return -1;
    self->ndecls++;
    return 0;
}

static PyObject *Client_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    (void)args;
    (void)kwds;
    return handle_new(type, offsetof(ClientObject, lock));
}

static int Client_init(ClientObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"rank", "size", "endpoint", "token", "ring_depth",
                             "slot_bytes", "policy", "block_timeout_ms",
                             "connect_timeout_ms", NULL};
    int rank, size, block_timeout_ms = 0, connect_timeout_ms = 0;
    const char *endpoint = NULL, *token = NULL;
    Py_ssize_t ring_depth = 0, slot_bytes = 0;
    PyObject *policy = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "ii|zznnOii:Client", kwlist, &rank, &size,
                                     &endpoint, &token, &ring_depth, &slot_bytes, &policy,
                                     &block_timeout_ms, &connect_timeout_ms))
        return -1;
    if (self->c) {
        raise_status(CAUDAL_ERR_STATE, "Client.__init__ called on an open client");
        return -1;
    }
    caudal_options o;
    caudal_options_init(&o);
    o.rank = rank;
    o.size = size;
    o.endpoint = endpoint;
    o.token = token;
    if (ring_depth < 0 || ring_depth > 4096) {
        raise_fmt(CAUDAL_ERR_INVALID, "rank %d: ring_depth %zd is not 0 to 4096", rank,
                  ring_depth);
        return -1;
    }
    if (slot_bytes < 0) {
        raise_fmt(CAUDAL_ERR_INVALID, "rank %d: slot_bytes %zd is negative", rank, slot_bytes);
        return -1;
    }
    o.ring_depth = (unsigned)ring_depth;
    o.slot_bytes = (size_t)slot_bytes;
    if (policy == Py_None) {
        o.policy = CAUDAL_POLICY_DEFAULT;
    } else {
        const char *p = PyUnicode_Check(policy) ? PyUnicode_AsUTF8(policy) : NULL;
        if (p && strcmp(p, "block") == 0)
            o.policy = CAUDAL_POLICY_BLOCK;
        else if (p && strcmp(p, "drop") == 0)
            o.policy = CAUDAL_POLICY_DROP;
        else {
            PyErr_Clear();
            raise_fmt(CAUDAL_ERR_INVALID, "rank %d: policy must be 'block', 'drop' or None",
                      rank);
            return -1;
        }
    }
    o.block_timeout_ms = block_timeout_ms;
    o.connect_timeout_ms = connect_timeout_ms;

    char err[768];
    caudal_client *c = NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = caudal_open(&c, &o, err, sizeof err);
    Py_END_ALLOW_THREADS
    if (rc != CAUDAL_OK) {
        raise_status(rc, err);
        return -1;
    }
    lock_take(self->lock);
    self->c = c;
    self->rank = rank;
    self->size = size;
    self->in_step = self->any_step = 0;
    self->step = 0;
    client_free_decls(self);
    PyThread_release_lock(self->lock);
    return 0;
}

static void Client_dealloc(ClientObject *self)
{
    if (self->c) {
        caudal_client *c = self->c;
        self->c = NULL;
        Py_BEGIN_ALLOW_THREADS
        caudal_close(&c);
        Py_END_ALLOW_THREADS
    }
    client_free_decls(self);
    if (self->lock)
        PyThread_free_lock(self->lock);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int parse_order(PyObject *obj, int *order)
{
    const char *s = PyUnicode_Check(obj) ? PyUnicode_AsUTF8(obj) : NULL;
    if (s && (strcmp(s, "C") == 0 || strcmp(s, "c") == 0)) {
        *order = CAUDAL_ORDER_C;
        return 0;
    }
    if (s && (strcmp(s, "F") == 0 || strcmp(s, "f") == 0)) {
        *order = CAUDAL_ORDER_F;
        return 0;
    }
    PyErr_Clear();
    raise_status(CAUDAL_ERR_INVALID, "order must be 'C' or 'F'");
    return -1;
}

static PyObject *Client_declare(ClientObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"name", "dtype", "shape", "start", "count", "order", NULL};
    const char *name;
    PyObject *dtype_obj, *shape_obj, *start_obj, *count_obj, *order_obj = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "sOOOO|O:declare", kwlist, &name, &dtype_obj,
                                     &shape_obj, &start_obj, &count_obj, &order_obj))
        return NULL;
    decl d = {.name = (char *)name};
    uint64_t shape[CAUDAL_MAX_DIMS], start[CAUDAL_MAX_DIMS];
    if (!(d.dtype = dtype_from_object(dtype_obj)))
        return NULL;
    d.order = CAUDAL_ORDER_C;
    if (order_obj && parse_order(order_obj, &d.order) < 0)
        return NULL;
    int n1 = u64_tuple(shape_obj, "shape", name, shape);
    if (n1 < 0)
        return NULL;
    int n2 = u64_tuple(start_obj, "start", name, start);
    if (n2 < 0)
        return NULL;
    int n3 = u64_tuple(count_obj, "count", name, d.count);
    if (n3 < 0)
        return NULL;
    if (n1 != n2 || n1 != n3)
        return raise_fmt(CAUDAL_ERR_SHAPE,
                         "rank %d, array '%.64s': shape, start and count have %d, %d and %d "
                         "dimensions",
                         self->rank, name, n1, n2, n3);
    d.ndim = n1;
    if (client_enter(self) < 0)
        return NULL;
    int rc = caudal_declare(self->c, name, (caudal_dtype)d.dtype, d.ndim, shape, start,
                            d.count, (caudal_order)d.order);
    if (rc < 0)
        return client_raise(self, rc);
    d.nbytes = caudal_dtype_size(d.dtype);
    for (int k = 0; k < d.ndim; k++)
        d.nbytes *= d.count[k]; /* the library checked that this does not overflow */
    int mem = client_remember(self, &d);
    client_leave(self);
    if (mem < 0)
        return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *Client_declare_var(ClientObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"name", "dtype", "capacity", NULL};
    const char *name;
    PyObject *dtype_obj, *cap_obj = NULL;
    unsigned long long capacity = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "sO|O:declare_var", kwlist, &name, &dtype_obj,
                                     &cap_obj))
        return NULL;
    if (cap_obj && u64_arg(cap_obj, &capacity) < 0)
        return raise_fmt(CAUDAL_ERR_INVALID, "rank %d, array '%.64s': capacity must be an "
                         "integer from 0 to 2**64-1", self->rank, name);
    decl d = {.name = (char *)name, .variable = 1, .ndim = 1, .order = CAUDAL_ORDER_C};
    if (!(d.dtype = dtype_from_object(dtype_obj)))
        return NULL;
    if (client_enter(self) < 0)
        return NULL;
    int rc = caudal_declare_var(self->c, name, (caudal_dtype)d.dtype, capacity);
    if (rc < 0)
        return client_raise(self, rc);
    d.count[0] = capacity;
    int mem = client_remember(self, &d);
    client_leave(self);
    if (mem < 0)
        return PyErr_NoMemory();
    Py_RETURN_NONE;
}

static PyObject *Client_begin_step(ClientObject *self, PyObject *arg)
{
    unsigned long long step;
    if (u64_arg(arg, &step) < 0)
        return raise_fmt(CAUDAL_ERR_INVALID, "rank %d: a step is an integer from 0 to 2**64-1",
                         self->rank);
    if (client_enter(self) < 0)
        return NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = caudal_begin_step(self->c, step);
    Py_END_ALLOW_THREADS
    if (rc < 0)
        return client_raise(self, rc);
    self->in_step = self->any_step = 1;
    self->step = step;
    client_leave(self);
    Py_RETURN_NONE;
}

static PyObject *Client_end_step(ClientObject *self, PyObject *noargs)
{
    (void)noargs;
    if (client_enter(self) < 0)
        return NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = caudal_end_step(self->c);
    Py_END_ALLOW_THREADS
    if (rc != CAUDAL_ERR_STATE)
        self->in_step = 0; /* the library leaves the step even when sending fails */
    if (rc < 0)
        return client_raise(self, rc);
    client_leave(self);
    Py_RETURN_NONE;
}

/* Let the library report what it checks first (outside a step, unknown array,
 * put vs put_var, dtype, put twice) without giving it any data. Returns the
 * status to raise (lock still held), or 0 if those checks pass. */
static int client_dry_put(ClientObject *self, const char *name, int dtype, int variable,
                          const decl *d)
{
    int rc;
    if (variable) {
        /* A count too large fails after every check above, before any effect. */
        rc = caudal_put_var(self->c, name, (caudal_dtype)dtype, NULL, UINT64_MAX);
        if (d && d->variable && rc == CAUDAL_ERR_SHAPE)
            return 0;
        return rc < 0 ? rc : 0;
    }
    if (d && !d->variable && d->nbytes == 0 && dtype == d->dtype)
        return 0; /* NULL data would be accepted as an empty block */
    rc = caudal_put(self->c, name, (caudal_dtype)dtype, NULL);
    if (d && !d->variable && rc == CAUDAL_ERR_INVALID)
        return 0; /* "data is NULL": everything before it passed */
    return rc < 0 ? rc : 0;
}

/* A shape as NumPy writes it: "(4, 8)", "(24,)". */
static void dims_text(char *buf, size_t len, int ndim, const uint64_t *dims)
{
    int off = snprintf(buf, len, "(");
    for (int k = 0; k < ndim && off < (int)len - 24; k++)
        off += snprintf(buf + off, len - off, "%s%llu", k ? ", " : "",
                        (unsigned long long)dims[k]);
    snprintf(buf + off, len - off, "%s)", ndim == 1 ? "," : "");
}

/* A fixed block goes in as an array of the declared block's shape, or as a
 * flat 1-D buffer of its elements (how C and Fortran codes often hold it);
 * the byte count alone would let an (8, 4) array into a (4, 8) block, each
 * element in the wrong place. The dtype was checked, so bytes give elements. */
static int put_shape_ok(const Py_buffer *view, const decl *d)
{
    if ((uint64_t)view->len != d->nbytes)
        return 0;
    if (view->ndim == 1)
        return 1;
    if (view->ndim != d->ndim || !view->shape)
        return 0;
    for (int k = 0; k < d->ndim; k++)
        if ((uint64_t)view->shape[k] != d->count[k])
            return 0;
    return 1;
}

static PyObject *client_put(ClientObject *self, PyObject *args, int variable)
{
    const char *name;
    PyObject *obj;
    if (!PyArg_ParseTuple(args, variable ? "sO:put_var" : "sO:put", &name, &obj))
        return NULL;
    Py_buffer view;
    if (PyObject_GetBuffer(obj, &view, PyBUF_RECORDS_RO) < 0)
        return NULL;
    int dtype = format_dtype(view.format, view.itemsize);
    if (client_enter(self) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    const decl *d = client_find(self, name);
    char where[128], problem[512];
    problem[0] = 0;
    client_where(self, where, sizeof where);
    int status = CAUDAL_ERR_SHAPE;
    int ok = d && d->variable == variable && dtype == d->dtype;
    if (ok) {
        char order = d->order == CAUDAL_ORDER_F ? 'F' : 'C';
        if (!PyBuffer_IsContiguous(&view, order)) {
            status = CAUDAL_ERR_INVALID;
            snprintf(problem, sizeof problem,
                     "the buffer is not %s-contiguous (the array is declared in %s order); "
                     "pass a contiguous copy (numpy.%s)",
                     order == 'F' ? "Fortran" : "C", order == 'F' ? "Fortran" : "C",
                     order == 'F' ? "asfortranarray" : "ascontiguousarray");
        } else if (variable && view.ndim != 1) {
            snprintf(problem, sizeof problem,
                     "put_var takes a 1-D buffer, this one has %d dimensions", view.ndim);
        } else if (!variable && !put_shape_ok(&view, d)) {
            char want[128], have[128];
            uint64_t dims[PyBUF_MAX_NDIM];
            int nd = view.shape ? view.ndim : 0;
            for (int k = 0; k < nd; k++)
                dims[k] = (uint64_t)view.shape[k];
            dims_text(want, sizeof want, d->ndim, d->count);
            dims_text(have, sizeof have, nd, dims);
            if (view.ndim == 1)
                snprintf(problem, sizeof problem,
                         "the buffer has %zd bytes, the declared block (count %s of %s) has "
                         "%llu",
                         view.len, want, dtype_names[d->dtype], (unsigned long long)d->nbytes);
            else
                snprintf(problem, sizeof problem,
                         "the buffer has shape %s, the declared block has shape %s (%s, %s "
                         "order); put an array of that shape or a flat 1-D buffer of its "
                         "%llu elements",
                         have, want, dtype_names[d->dtype],
                         d->order == CAUDAL_ORDER_F ? "Fortran" : "C",
                         (unsigned long long)(d->nbytes / caudal_dtype_size(d->dtype)));
        }
        ok = problem[0] == 0;
    }
    int rc;
    if (!ok) {
        rc = client_dry_put(self, name, dtype, variable, d);
        if (rc < 0) {
            PyBuffer_Release(&view);
            char msg[768];
            snprintf(msg, sizeof msg, "%s", caudal_last_error(self->c));
            if (rc == CAUDAL_ERR_DTYPE && !dtype) {
                size_t n = strlen(msg);
                snprintf(msg + n, sizeof msg - n, " (buffer format '%.16s', itemsize %zd)",
                         view.format ? view.format : "B", view.itemsize);
            }
            client_leave(self);
            return raise_status(rc, msg);
        }
        if (!problem[0]) /* unreachable: the library would have refused */
            snprintf(problem, sizeof problem, "the buffer does not match the declaration");
        client_leave(self);
        PyBuffer_Release(&view);
        return raise_fmt(status, "%s, array '%.64s': %s", where, name, problem);
    }
    uint64_t count = variable ? (uint64_t)view.shape[0] : 0;
    if (view.len >= (Py_ssize_t)GIL_RELEASE_BYTES) {
        Py_BEGIN_ALLOW_THREADS
        rc = variable ? caudal_put_var(self->c, name, (caudal_dtype)dtype, view.buf, count)
                      : caudal_put(self->c, name, (caudal_dtype)dtype, view.buf);
        Py_END_ALLOW_THREADS
    } else {
        rc = variable ? caudal_put_var(self->c, name, (caudal_dtype)dtype, view.buf, count)
                      : caudal_put(self->c, name, (caudal_dtype)dtype, view.buf);
    }
    PyBuffer_Release(&view);
    if (rc < 0)
        return client_raise(self, rc);
    client_leave(self);
    Py_RETURN_NONE;
}

static PyObject *Client_put(ClientObject *self, PyObject *args)
{
    return client_put(self, args, 0);
}

static PyObject *Client_put_var(ClientObject *self, PyObject *args)
{
    return client_put(self, args, 1);
}

static PyObject *Client_steer_get(ClientObject *self, PyObject *args)
{
    const char *key;
    if (!PyArg_ParseTuple(args, "s:steer_get", &key))
        return NULL;
    if (client_enter(self) < 0)
        return NULL;
    double d;
    int rc = caudal_steer_get_double(self->c, key, &d);
    if (rc == CAUDAL_OK) {
        client_leave(self);
        return PyFloat_FromDouble(d);
    }
    if (rc == CAUDAL_NO_VALUE) {
        client_leave(self);
        Py_RETURN_NONE;
    }
    if (rc != CAUDAL_ERR_TYPE)
        return client_raise(self, rc);
    int64_t i;
    rc = caudal_steer_get_int64(self->c, key, &i);
    if (rc == CAUDAL_OK) {
        client_leave(self);
        return PyLong_FromLongLong((long long)i);
    }
    if (rc == CAUDAL_NO_VALUE) {
        client_leave(self);
        Py_RETURN_NONE;
    }
    if (rc != CAUDAL_ERR_TYPE)
        return client_raise(self, rc);
    char *buf = malloc(STEER_STRING_MAX);
    if (!buf) {
        client_leave(self);
        return PyErr_NoMemory();
    }
    rc = caudal_steer_get_string(self->c, key, buf, STEER_STRING_MAX);
    if (rc == CAUDAL_OK) {
        client_leave(self);
        PyObject *s = steer_value_object(CAUDAL_VALUE_STRING, 0, 0, buf);
        free(buf);
        return s;
    }
    free(buf);
    if (rc == CAUDAL_NO_VALUE) {
        client_leave(self);
        Py_RETURN_NONE;
    }
    return client_raise(self, rc);
}

static PyObject *Client_steer_set(ClientObject *self, PyObject *args)
{
    const char *key;
    PyObject *value;
    if (!PyArg_ParseTuple(args, "sO:steer_set", &key, &value))
        return NULL;
    double d = 0;
    int64_t i = 0;
    const char *s = NULL;
    int kind = steer_kind(value, &d, &i, &s);
    if (!kind)
        return NULL;
    if (client_enter(self) < 0)
        return NULL;
    int rc = kind == CAUDAL_VALUE_DOUBLE  ? caudal_steer_set_double(self->c, key, d)
             : kind == CAUDAL_VALUE_INT64 ? caudal_steer_set_int64(self->c, key, i)
                                          : caudal_steer_set_string(self->c, key, s);
    if (rc < 0)
        return client_raise(self, rc);
    client_leave(self);
    Py_RETURN_NONE;
}

static PyObject *Client_counters(ClientObject *self, PyObject *noargs)
{
    (void)noargs;
    if (client_enter(self) < 0)
        return NULL;
    caudal_counters k;
    int rc = caudal_get_counters(self->c, &k);
    if (rc < 0)
        return client_raise(self, rc);
    client_leave(self);
    return counters_dict(&k);
}

static PyObject *Client_close(ClientObject *self, PyObject *noargs)
{
    (void)noargs;
    if (client_enter(self) < 0)
        return NULL;
    caudal_client *c = self->c;
    self->c = NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = caudal_close(&c);
    Py_END_ALLOW_THREADS
    self->in_step = 0;
    client_leave(self);
    if (rc < 0) {
        char where[128];
        client_where(self, where, sizeof where);
        /* The handle is gone, so its message is too: say what close met. */
        return raise_fmt(rc, "%s: closing the client: %s", where, caudal_strerror(rc));
    }
    Py_RETURN_NONE;
}

static PyObject *Client_enter(ClientObject *self, PyObject *noargs)
{
    (void)noargs;
    return handle_with((PyObject *)self, self->c != NULL, "the client");
}

static PyObject *Client_exit(ClientObject *self, PyObject *args)
{
    if (!self->c)
        Py_RETURN_FALSE; /* closed inside the block already */
    return handle_exit(Client_close(self, NULL), args);
}

static PyObject *Client_get_closed(ClientObject *self, void *unused)
{
    (void)unused;
    return PyBool_FromLong(self->c == NULL);
}

static PyObject *Client_get_rank(ClientObject *self, void *unused)
{
    (void)unused;
    return PyLong_FromLong(self->rank);
}

static PyObject *Client_get_size(ClientObject *self, void *unused)
{
    (void)unused;
    return PyLong_FromLong(self->size);
}

static PyObject *Client_repr(ClientObject *self)
{
    return PyUnicode_FromFormat("<caudal.Client rank %d of %d%s>", self->rank, self->size,
                                self->c ? "" : " (closed)");
}

static PyMethodDef Client_methods[] = {
    {"declare", METH(Client_declare), METH_VARARGS | METH_KEYWORDS,
     "declare(name, dtype, shape, start, count, order='C')\n\n"
     "Declare an array of fixed shape: its global shape and this rank's block\n"
     "(start, count), all in the program's index order."},
    {"declare_var", METH(Client_declare_var),
     METH_VARARGS | METH_KEYWORDS,
     "declare_var(name, dtype, capacity=0)\n\n"
     "Declare a 1-D array whose local length changes every step."},
    {"begin_step", METH(Client_begin_step), METH_O,
     "begin_step(step)\n\nStart a step; steps must strictly increase."},
    {"put", METH(Client_put), METH_VARARGS,
     "put(name, array)\n\n"
     "Copy this rank's block. `array` is any buffer, contiguous in the declared\n"
     "order, of the declared dtype, and of the declared block's shape (its count)\n"
     "or 1-D with the block's number of elements (a flat buffer)."},
    {"put_var", METH(Client_put_var), METH_VARARGS,
     "put_var(name, array)\n\nCopy a 1-D buffer of a variable-length array."},
    {"end_step", METH(Client_end_step), METH_NOARGS,
     "end_step()\n\nFinish the step: hand its messages to the socket."},
    {"steer_get", METH(Client_steer_get), METH_VARARGS,
     "steer_get(key)\n\n"
     "The latest steering value the analytics set under key (float, int or\n"
     "str), or None if none was set yet. Never blocks."},
    {"steer_set", METH(Client_steer_set), METH_VARARGS,
     "steer_set(key, value)\n\nReport a float, int or str value to the analytics."},
    {"counters", METH(Client_counters), METH_NOARGS,
     "counters() -> dict\n\nSteps, blocks and bytes sent, drops, time spent."},
    {"close", METH(Client_close), METH_NOARGS,
     "close()\n\nSend what is queued, say goodbye and free the client."},
    {"__enter__", METH(Client_enter), METH_NOARGS, NULL},
    {"__exit__", METH(Client_exit), METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef Client_getset[] = {
    {"closed", GETTER(Client_get_closed), NULL, "True once closed", NULL},
    {"rank", GETTER(Client_get_rank), NULL, "this process's rank", NULL},
    {"size", GETTER(Client_get_size), NULL, "number of publishing processes", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject Client_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "caudal.Client",
    .tp_basicsize = sizeof(ClientObject),
    .tp_dealloc = SLOT(destructor, Client_dealloc),
    .tp_repr = SLOT(reprfunc, Client_repr),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Client(rank, size, endpoint=None, token=None, ring_depth=0, slot_bytes=0,\n"
              "       policy=None, block_timeout_ms=0, connect_timeout_ms=0)\n\n"
              "Publish this process's blocks of arrays, step by step (caudal_client).\n"
              "endpoint and token default to $CAUDAL_ENDPOINT and $CAUDAL_TOKEN; policy\n"
              "is 'block', 'drop' or None ($CAUDAL_POLICY, else block).",
    .tp_methods = Client_methods,
    .tp_getset = Client_getset,
    .tp_init = SLOT(initproc, Client_init),
    .tp_new = Client_new,
};

/* ======================================================================= */
/* Block                                                                   */

typedef struct {
    PyObject_HEAD
    caudal_block *blk; /* NULL once released */
    const void *data;
    Py_ssize_t nbytes;
    Py_ssize_t itemsize;
    int dtype, order, ndim;
    int in_shared_memory;
    Py_ssize_t shape[CAUDAL_MAX_DIMS];
    Py_ssize_t strides[CAUDAL_MAX_DIMS];
    Py_ssize_t exports;
    PyObject *weakrefs;
} BlockObject;

static void block_do_release(BlockObject *self)
{
    if (self->blk) {
        caudal_block *b = self->blk;
        self->blk = NULL;
        self->data = NULL;
        caudal_block_release(b);
    }
}

static void Block_dealloc(BlockObject *self)
{
    if (self->weakrefs)
        PyObject_ClearWeakRefs((PyObject *)self);
    block_do_release(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Block_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    (void)type;
    (void)args;
    (void)kwds;
    PyErr_SetString(PyExc_TypeError, "Block objects come from Receiver.next()");
    return NULL;
}

/* A Block for a BLOCK event; takes ownership of ev->block. */
static PyObject *block_from_event(const caudal_event *ev)
{
    const caudal_array_info *a = ev->array;
    BlockObject *self = PyObject_New(BlockObject, &Block_Type);
    if (!self) {
        caudal_block_release(ev->block);
        return NULL;
    }
    self->blk = ev->block;
    self->data = ev->data;
    self->nbytes = (Py_ssize_t)ev->nbytes;
    self->dtype = a->dtype;
    self->order = a->order;
    self->itemsize = (Py_ssize_t)caudal_dtype_size(a->dtype);
    self->in_shared_memory = ev->in_shared_memory;
    self->exports = 0;
    self->weakrefs = NULL;
    if (a->variable || a->ndim < 1) {
        self->ndim = 1;
        self->shape[0] = (Py_ssize_t)ev->count;
    } else {
        self->ndim = a->ndim;
        for (int k = 0; k < a->ndim; k++)
            self->shape[k] = (Py_ssize_t)a->count[k];
    }
    Py_ssize_t stride = self->itemsize;
    if (self->order == CAUDAL_ORDER_F) {
        for (int k = 0; k < self->ndim; k++) {
            self->strides[k] = stride;
            stride *= self->shape[k];
        }
    } else {
        for (int k = self->ndim - 1; k >= 0; k--) {
            self->strides[k] = stride;
            stride *= self->shape[k];
        }
    }
    if (stride != self->nbytes || !dtype_format(self->dtype)) {
        /* The receiver checks this; never hand out a view past the data. */
        block_do_release(self);
        Py_DECREF(self);
        return raise_fmt(CAUDAL_ERR_PROTOCOL, "rank %d, step %llu, array '%.64s': block of "
                         "%llu bytes does not match its declaration", ev->rank,
                         (unsigned long long)ev->step, a->name,
                         (unsigned long long)ev->nbytes);
    }
    return (PyObject *)self;
}

static int Block_getbuffer(BlockObject *self, Py_buffer *view, int flags)
{
    view->obj = NULL;
    if (!self->blk) {
        raise_status(CAUDAL_ERR_CLOSED, "the block was released");
        return -1;
    }
    if (flags & PyBUF_WRITABLE) {
        PyErr_SetString(PyExc_BufferError, "a caudal block is read-only");
        return -1;
    }
    int c_contig = self->order == CAUDAL_ORDER_C || self->ndim == 1;
    int f_contig = self->order == CAUDAL_ORDER_F || self->ndim == 1;
    /* A zero-sized or all-but-one-dimension-of-one block is both; say so. */
    {
        int big = 0;
        for (int k = 0; k < self->ndim; k++)
            big += self->shape[k] > 1;
        if (big <= 1 || self->nbytes == 0)
            c_contig = f_contig = 1;
    }
    if ((flags & PyBUF_C_CONTIGUOUS) == PyBUF_C_CONTIGUOUS && !c_contig) {
        PyErr_SetString(PyExc_BufferError, "this block is in Fortran order, not C-contiguous");
        return -1;
    }
    if ((flags & PyBUF_F_CONTIGUOUS) == PyBUF_F_CONTIGUOUS && !f_contig) {
        PyErr_SetString(PyExc_BufferError, "this block is in C order, not Fortran-contiguous");
        return -1;
    }
    if ((flags & PyBUF_STRIDES) != PyBUF_STRIDES && (flags & PyBUF_ND) == PyBUF_ND &&
        !c_contig) {
        PyErr_SetString(PyExc_BufferError,
                        "this block is in Fortran order: ask for strides");
        return -1;
    }
    view->buf = (void *)self->data;
    view->len = self->nbytes;
    view->readonly = 1;
    view->itemsize = self->itemsize;
    view->format = (flags & PyBUF_FORMAT) ? (char *)dtype_format(self->dtype) : NULL;
    if ((flags & PyBUF_ND) == PyBUF_ND) {
        view->ndim = self->ndim;
        view->shape = self->shape;
    } else {
        view->ndim = 1;
        view->shape = NULL;
    }
    view->strides = (flags & PyBUF_STRIDES) == PyBUF_STRIDES ? self->strides : NULL;
    view->suboffsets = NULL;
    view->internal = NULL;
    if (!(flags & PyBUF_FORMAT) && (flags & PyBUF_ND) != PyBUF_ND)
        view->itemsize = 1; /* a simple request: plain bytes */
    self->exports++;
    Py_INCREF(self);
    view->obj = (PyObject *)self;
    return 0;
}

static void Block_releasebuffer(BlockObject *self, Py_buffer *view)
{
    (void)view;
    self->exports--;
}

static PyObject *Block_release(BlockObject *self, PyObject *noargs)
{
    (void)noargs;
    if (self->exports > 0)
        return PyErr_Format(PyExc_BufferError,
                            "the block has %zd exported buffer(s) (NumPy arrays or "
                            "memoryviews of it): delete or release them first",
                            self->exports);
    block_do_release(self);
    Py_RETURN_NONE;
}

static PyObject *Block_enter(BlockObject *self, PyObject *noargs)
{
    (void)noargs;
    Py_INCREF(self);
    return (PyObject *)self;
}

static PyObject *Block_exit(BlockObject *self, PyObject *args)
{
    (void)args;
    PyObject *r = Block_release(self, NULL);
    if (!r)
        return NULL;
    Py_DECREF(r);
    Py_RETURN_FALSE;
}

static PyObject *ssize_tuple(const Py_ssize_t *v, int n)
{
    PyObject *t = PyTuple_New(n);
    if (!t)
        return NULL;
    for (int k = 0; k < n; k++) {
        PyObject *x = PyLong_FromSsize_t(v[k]);
        if (!x) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, k, x);
    }
    return t;
}

static PyObject *Block_get_shape(BlockObject *self, void *u)
{
    (void)u;
    return ssize_tuple(self->shape, self->ndim);
}

static PyObject *Block_get_strides(BlockObject *self, void *u)
{
    (void)u;
    return ssize_tuple(self->strides, self->ndim);
}

static PyObject *Block_get_dtype(BlockObject *self, void *u)
{
    (void)u;
    return PyUnicode_FromString(dtype_names[self->dtype]);
}

static PyObject *Block_get_format(BlockObject *self, void *u)
{
    (void)u;
    return PyUnicode_FromString(dtype_format(self->dtype));
}

static PyObject *Block_get_order(BlockObject *self, void *u)
{
    (void)u;
    return PyUnicode_FromString(self->order == CAUDAL_ORDER_F ? "F" : "C");
}

static PyObject *Block_get_in_shm(BlockObject *self, void *u)
{
    (void)u;
    return PyBool_FromLong(self->in_shared_memory);
}

static PyObject *Block_get_released(BlockObject *self, void *u)
{
    (void)u;
    return PyBool_FromLong(self->blk == NULL);
}

static PyObject *Block_repr(BlockObject *self)
{
    char shape[256];
    int off = 0;
    for (int k = 0; k < self->ndim && off < (int)sizeof shape - 24; k++)
        off += snprintf(shape + off, sizeof shape - off, "%s%zd", k ? ", " : "",
                        self->shape[k]);
    if (self->ndim == 1)
        snprintf(shape + off, sizeof shape - off, ",");
    return PyUnicode_FromFormat("<caudal.Block %s (%s) order %s%s>", dtype_names[self->dtype],
                                shape, self->order == CAUDAL_ORDER_F ? "F" : "C",
                                self->blk ? "" : " released");
}

static PyMethodDef Block_methods[] = {
    {"release", METH(Block_release), METH_NOARGS,
     "release()\n\n"
     "Give the block back to the rank now (it is given back anyway when the\n"
     "Block is garbage collected). Raises BufferError while NumPy arrays or\n"
     "memoryviews of it exist; a second call does nothing."},
    {"__enter__", METH(Block_enter), METH_NOARGS, NULL},
    {"__exit__", METH(Block_exit), METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL}};

static PyMemberDef Block_members[] = {
    {"nbytes", T_PYSSIZET, offsetof(BlockObject, nbytes), READONLY, "bytes of data"},
    {"itemsize", T_PYSSIZET, offsetof(BlockObject, itemsize), READONLY, "bytes per element"},
    {"ndim", T_INT, offsetof(BlockObject, ndim), READONLY, "number of dimensions"},
    {NULL, 0, 0, 0, NULL}};

static PyGetSetDef Block_getset[] = {
    {"shape", GETTER(Block_get_shape), NULL, "the block's count, in the declared order", NULL},
    {"strides", GETTER(Block_get_strides), NULL, "byte strides of the exported buffer", NULL},
    {"dtype", GETTER(Block_get_dtype), NULL, "dtype name", NULL},
    {"format", GETTER(Block_get_format), NULL, "buffer-protocol format", NULL},
    {"order", GETTER(Block_get_order), NULL, "'C' or 'F'", NULL},
    {"released", GETTER(Block_get_released), NULL, "True once given back", NULL},
    {"in_shared_memory", GETTER(Block_get_in_shm), NULL,
     "True if the data is in the rank's shared-memory slot (else read inline)", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyBufferProcs Block_as_buffer = {
    .bf_getbuffer = SLOT(getbufferproc, Block_getbuffer),
    .bf_releasebuffer = SLOT(releasebufferproc, Block_releasebuffer),
};

static PyTypeObject Block_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "caudal.Block",
    .tp_basicsize = sizeof(BlockObject),
    .tp_dealloc = SLOT(destructor, Block_dealloc),
    .tp_repr = SLOT(reprfunc, Block_repr),
    .tp_as_buffer = &Block_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A block held by the receiver: a read-only buffer (numpy.asarray(block)\n"
              "is a zero-copy view) given back to the rank on release() or when the\n"
              "Block is garbage collected.",
    .tp_weaklistoffset = offsetof(BlockObject, weakrefs),
    .tp_methods = Block_methods,
    .tp_members = Block_members,
    .tp_getset = Block_getset,
    .tp_new = Block_new,
};

/* ======================================================================= */
/* Event                                                                   */

typedef struct {
    PyObject_HEAD
    PyObject *dict;
} EventObject;

static int Event_traverse(EventObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->dict);
    return 0;
}

static int Event_clear(EventObject *self)
{
    Py_CLEAR(self->dict);
    return 0;
}

static void Event_dealloc(EventObject *self)
{
    PyObject_GC_UnTrack(self);
    Event_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Event_repr(EventObject *self)
{
    PyObject *type = self->dict ? PyDict_GetItemString(self->dict, "type") : NULL;
    PyObject *rank = self->dict ? PyDict_GetItemString(self->dict, "rank") : NULL;
    PyObject *step = self->dict ? PyDict_GetItemString(self->dict, "step") : NULL;
    PyObject *name = self->dict ? PyDict_GetItemString(self->dict, "name") : NULL;
    PyObject *key = self->dict ? PyDict_GetItemString(self->dict, "key") : NULL;
    if (!type || !rank)
        return PyUnicode_FromString("<caudal.Event>");
    if (name)
        return PyUnicode_FromFormat("<caudal.Event %S rank=%R step=%R name=%R>", type, rank,
                                    step ? step : Py_None, name);
    if (key)
        return PyUnicode_FromFormat("<caudal.Event %S rank=%R key=%R>", type, rank, key);
    return PyUnicode_FromFormat("<caudal.Event %S rank=%R step=%R>", type, rank,
                                step ? step : Py_None);
}

static PyObject *Event_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    (void)type;
    (void)args;
    (void)kwds;
    PyErr_SetString(PyExc_TypeError, "Event objects come from Receiver.next()");
    return NULL;
}

static PyObject *Event_asdict(EventObject *self, PyObject *noargs)
{
    (void)noargs;
    return self->dict ? PyDict_Copy(self->dict) : PyDict_New();
}

static PyGetSetDef Event_getset[] = {
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyMethodDef Event_methods[] = {
    {"asdict", METH(Event_asdict), METH_NOARGS, "the event's attributes as a dict"},
    {NULL, NULL, 0, NULL}};

static PyTypeObject Event_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "caudal.Event",
    .tp_basicsize = sizeof(EventObject),
    .tp_dealloc = SLOT(destructor, Event_dealloc),
    .tp_repr = SLOT(reprfunc, Event_repr),
    .tp_getattro = PyObject_GenericGetAttr,
    .tp_setattro = PyObject_GenericSetAttr,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "An event from Receiver.next(). Every event has type, rank, size,\n"
              "connection and step (None where the type has none). By type:\n"
              "  connect     -\n"
              "  declare     name, dtype, order, variable, ndim, shape, start, count\n"
              "              (tuples), array (all of these as an ArrayInfo)\n"
              "  block       name, dtype, order, variable, ndim, shape, start, array,\n"
              "              count (elements in this block), nbytes,\n"
              "              in_shared_memory, block (a Block)\n"
              "  step_end    nblocks\n"
              "  drop        first_step, step (the last dropped), ndropped\n"
              "  steer       key, value\n"
              "  bye         counters (dict)\n"
              "  disconnect  status, message\n"
              "  refused     status, message (a connection that never authenticated\n"
              "              was closed; rank is the one it claimed, or -1: log it)",
    .tp_traverse = SLOT(traverseproc, Event_traverse),
    .tp_clear = SLOT(inquiry, Event_clear),
    .tp_methods = Event_methods,
    .tp_getset = Event_getset,
    .tp_dictoffset = offsetof(EventObject, dict),
    .tp_new = Event_new,
};

/* ArrayInfo: a named tuple of a declaration, shared by declare and block. */
static PyTypeObject *ArrayInfo_Type;
static PyStructSequence_Field ArrayInfo_fields[] = {
    {"name", "array name"},
    {"dtype", "dtype name"},
    {"order", "'C' or 'F'"},
    {"variable", "True for a variable-length 1-D array"},
    {"shape", "global shape (tuple)"},
    {"start", "this rank's block start (tuple)"},
    {"count", "this rank's block count (tuple); for a variable array, (capacity,)"},
    {NULL, NULL}};
static PyStructSequence_Desc ArrayInfo_desc = {
    "caudal.ArrayInfo", "An array's declaration, as a rank sent it.", ArrayInfo_fields, 7};

static PyObject *u64_tuple_obj(const uint64_t *v, int n)
{
    PyObject *t = PyTuple_New(n);
    if (!t)
        return NULL;
    for (int k = 0; k < n; k++) {
        PyObject *x = PyLong_FromUnsignedLongLong((unsigned long long)v[k]);
        if (!x) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, k, x);
    }
    return t;
}

static int set_item(PyObject *d, const char *key, PyObject *value)
{
    if (!value)
        return -1;
    int rc = PyDict_SetItemString(d, key, value);
    Py_DECREF(value);
    return rc;
}

static int event_array_info(PyObject *d, const caudal_array_info *a, int block_event)
{
    int nd = a->ndim < 1 ? 1 : a->ndim > CAUDAL_MAX_DIMS ? CAUDAL_MAX_DIMS : a->ndim;
    PyObject *info = PyStructSequence_New(ArrayInfo_Type);
    if (!info)
        return -1;
    const char *dname = a->dtype >= 1 && a->dtype <= NDTYPES ? dtype_names[a->dtype] : "invalid";
    PyObject *vals[7] = {
        PyUnicode_DecodeUTF8(a->name, (Py_ssize_t)strlen(a->name), "surrogateescape"),
        PyUnicode_FromString(dname),
        PyUnicode_FromString(a->order == CAUDAL_ORDER_F ? "F" : "C"),
        PyBool_FromLong(a->variable),
        u64_tuple_obj(a->shape, nd),
        u64_tuple_obj(a->start, nd),
        u64_tuple_obj(a->count, nd)};
    int bad = 0;
    for (int k = 0; k < 7; k++) {
        if (!vals[k])
            bad = 1;
        else
            PyStructSequence_SET_ITEM(info, k, vals[k]);
    }
    if (bad) {
        for (int k = 0; k < 7; k++)
            if (!vals[k])
                PyStructSequence_SET_ITEM(info, k, Py_NewRef(Py_None));
        Py_DECREF(info);
        return -1;
    }
    static const char *const keys[7] = {"name", "dtype", "order", "variable",
                                        "shape", "start", "count"};
    for (int k = 0; k < 7; k++) {
        if (k == 6 && block_event)
            break; /* a block event's count is its number of elements */
        if (PyDict_SetItemString(d, keys[k], vals[k]) < 0) {
            Py_DECREF(info);
            return -1;
        }
    }
    if (set_item(d, "ndim", PyLong_FromLong(nd)) < 0 ||
        PyDict_SetItemString(d, "array", info) < 0) {
        Py_DECREF(info);
        return -1;
    }
    Py_DECREF(info);
    return 0;
}

static const char *event_type_name(int t)
{
    switch (t) {
    case CAUDAL_EVENT_CONNECT: return "connect";
    case CAUDAL_EVENT_DECLARE: return "declare";
    case CAUDAL_EVENT_BLOCK: return "block";
    case CAUDAL_EVENT_STEP_END: return "step_end";
    case CAUDAL_EVENT_DROP: return "drop";
    case CAUDAL_EVENT_STEER: return "steer";
    case CAUDAL_EVENT_BYE: return "bye";
    case CAUDAL_EVENT_DISCONNECT: return "disconnect";
    case CAUDAL_EVENT_REFUSED: return "refused";
    default: return "unknown";
    }
}

/* Build the Python event; takes ownership of ev->block (released on error). */
static PyObject *event_object(const caudal_event *ev)
{
    PyObject *blockobj = NULL;
    if (ev->type == CAUDAL_EVENT_BLOCK && ev->block) {
        blockobj = block_from_event(ev);
        if (!blockobj)
            return NULL;
    }
    EventObject *self = PyObject_GC_New(EventObject, &Event_Type);
    if (!self) {
        Py_XDECREF(blockobj);
        return NULL;
    }
    self->dict = PyDict_New();
    PyObject_GC_Track(self);
    PyObject *d = self->dict;
    if (!d)
        goto fail;
    int has_step = ev->type == CAUDAL_EVENT_BLOCK || ev->type == CAUDAL_EVENT_STEP_END ||
                   ev->type == CAUDAL_EVENT_DROP;
    if (set_item(d, "type", PyUnicode_FromString(event_type_name(ev->type))) < 0 ||
        set_item(d, "rank", PyLong_FromLong(ev->rank)) < 0 ||
        set_item(d, "size", PyLong_FromLong(ev->size)) < 0 ||
        set_item(d, "connection", PyLong_FromUnsignedLongLong(ev->connection)) < 0 ||
        set_item(d, "step", has_step ? PyLong_FromUnsignedLongLong(ev->step)
                                     : Py_NewRef(Py_None)) < 0)
        goto fail;
    switch (ev->type) {
    case CAUDAL_EVENT_DECLARE:
        if (event_array_info(d, ev->array, 0) < 0)
            goto fail;
        break;
    case CAUDAL_EVENT_BLOCK:
        if (event_array_info(d, ev->array, 1) < 0 ||
            set_item(d, "count", PyLong_FromUnsignedLongLong(ev->count)) < 0 ||
            set_item(d, "nbytes", PyLong_FromUnsignedLongLong(ev->nbytes)) < 0 ||
            set_item(d, "in_shared_memory", PyBool_FromLong(ev->in_shared_memory)) < 0 ||
            PyDict_SetItemString(d, "block", blockobj ? blockobj : Py_None) < 0)
            goto fail;
        break;
    case CAUDAL_EVENT_STEP_END:
        if (set_item(d, "nblocks", PyLong_FromUnsignedLong(ev->nblocks)) < 0)
            goto fail;
        break;
    case CAUDAL_EVENT_DROP:
        if (set_item(d, "first_step", PyLong_FromUnsignedLongLong(ev->first_step)) < 0 ||
            set_item(d, "ndropped", PyLong_FromUnsignedLongLong(ev->ndropped)) < 0)
            goto fail;
        break;
    case CAUDAL_EVENT_STEER:
        if (set_item(d, "key", PyUnicode_DecodeUTF8(ev->key, (Py_ssize_t)strlen(ev->key),
                                                    "surrogateescape")) < 0 ||
            set_item(d, "value", steer_value_object(ev->value_type, ev->value_double,
                                                    ev->value_int64, ev->value_string)) < 0)
            goto fail;
        break;
    case CAUDAL_EVENT_BYE:
        if (set_item(d, "counters", counters_dict(&ev->counters)) < 0)
            goto fail;
        break;
    case CAUDAL_EVENT_DISCONNECT:
    case CAUDAL_EVENT_REFUSED: {
        const char *m = ev->message ? ev->message : "";
        if (set_item(d, "status", PyLong_FromLong(ev->status)) < 0 ||
            set_item(d, "message", PyUnicode_DecodeUTF8(m, (Py_ssize_t)strlen(m), "replace")) < 0)
            goto fail;
        break;
    }
    default:
        break;
    }
    Py_XDECREF(blockobj);
    return (PyObject *)self;
fail:
    Py_XDECREF(blockobj); /* the Block gives the block back when it goes */
    Py_DECREF(self);
    return NULL;
}

/* ======================================================================= */
/* Receiver                                                                */

typedef struct {
    PyObject_HEAD
    caudal_receiver *r;
    PyThread_type_lock lock;
    PyObject *endpoint;
} ReceiverObject;

static int receiver_is_open(PyObject *o) { return ((ReceiverObject *)o)->r != NULL; }

static int receiver_enter(ReceiverObject *self)
{
    return handle_enter(self->lock, receiver_is_open, (PyObject *)self, "the receiver");
}

static void receiver_leave(ReceiverObject *self) { PyThread_release_lock(self->lock); }

static PyObject *receiver_raise(ReceiverObject *self, int rc)
{
    return handle_raise(self->lock, rc, caudal_receiver_last_error(self->r));
}

static PyObject *Receiver_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    (void)args;
    (void)kwds;
    return handle_new(type, offsetof(ReceiverObject, lock));
}

static int Receiver_init(ReceiverObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"endpoint", "token", "max_queued_bytes", "max_held_bytes", NULL};
    const char *endpoint, *token = NULL;
    Py_ssize_t max_queued = 0, max_held = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "s|znn:Receiver", kwlist, &endpoint, &token,
                                     &max_queued, &max_held))
        return -1;
    if (self->r) {
        raise_status(CAUDAL_ERR_STATE, "Receiver.__init__ called on an open receiver");
        return -1;
    }
    if (max_queued < 0 || max_held < 0) {
        raise_status(CAUDAL_ERR_INVALID, "max_queued_bytes and max_held_bytes must not be negative");
        return -1;
    }
    caudal_receiver_options o;
    caudal_receiver_options_init(&o);
    o.endpoint = endpoint;
    o.token = token;
    o.max_queued_bytes = (size_t)max_queued;
    o.max_held_bytes = (size_t)max_held;
    char err[768];
    caudal_receiver *r = NULL;
    int rc = caudal_receiver_open(&r, &o, err, sizeof err);
    if (rc != CAUDAL_OK) {
        raise_status(rc, err);
        return -1;
    }
    PyObject *ep = PyUnicode_FromString(caudal_receiver_endpoint(r));
    if (!ep) {
        caudal_receiver_close(&r);
        return -1;
    }
    self->r = r;
    Py_XDECREF(self->endpoint);
    self->endpoint = ep;
    return 0;
}

static void Receiver_dealloc(ReceiverObject *self)
{
    if (self->r)
        caudal_receiver_close(&self->r); /* held Blocks keep their memory */
    Py_CLEAR(self->endpoint);
    if (self->lock)
        PyThread_free_lock(self->lock);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Receiver_next(ReceiverObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"timeout_ms", NULL};
    int timeout_ms = -1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|i:next", kwlist, &timeout_ms))
        return NULL;
    if (timeout_ms < -1)
        timeout_ms = -1;
    uint64_t deadline = timeout_ms < 0 ? UINT64_MAX : now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        if (receiver_enter(self) < 0)
            return NULL;
        int slice = NEXT_SLICE_MS;
        if (deadline != UINT64_MAX) {
            uint64_t now = now_ms();
            uint64_t left = deadline > now ? deadline - now : 0;
            if (left < (uint64_t)slice)
                slice = (int)left;
        }
        caudal_event ev;
        int rc;
        Py_BEGIN_ALLOW_THREADS
        rc = caudal_receiver_next(self->r, &ev, slice);
        Py_END_ALLOW_THREADS
        if (rc == CAUDAL_OK) {
            PyObject *e = event_object(&ev);
            receiver_leave(self);
            return e;
        }
        if (rc != CAUDAL_ERR_TIMEOUT)
            return receiver_raise(self, rc);
        receiver_leave(self);
        if (PyErr_CheckSignals() < 0)
            return NULL;
        if (deadline != UINT64_MAX && now_ms() >= deadline)
            Py_RETURN_NONE;
    }
}

static PyObject *Receiver_steer(ReceiverObject *self, PyObject *args)
{
    int rank;
    const char *key;
    PyObject *value;
    if (!PyArg_ParseTuple(args, "isO:steer", &rank, &key, &value))
        return NULL;
    double d = 0;
    int64_t i = 0;
    const char *s = NULL;
    int kind = steer_kind(value, &d, &i, &s);
    if (!kind)
        return NULL;
    if (receiver_enter(self) < 0)
        return NULL;
    int rc = kind == CAUDAL_VALUE_DOUBLE ? caudal_receiver_steer_double(self->r, rank, key, d)
             : kind == CAUDAL_VALUE_INT64
                 ? caudal_receiver_steer_int64(self->r, rank, key, i)
                 : caudal_receiver_steer_string(self->r, rank, key, s);
    if (rc < 0)
        return receiver_raise(self, rc);
    receiver_leave(self);
    Py_RETURN_NONE;
}

static PyObject *Receiver_connections(ReceiverObject *self, PyObject *noargs)
{
    (void)noargs;
    if (receiver_enter(self) < 0)
        return NULL;
    int n = caudal_receiver_connections(self->r);
    if (n < 0)
        return receiver_raise(self, n);
    receiver_leave(self);
    return PyLong_FromLong(n);
}

static PyObject *Receiver_close(ReceiverObject *self, PyObject *noargs)
{
    (void)noargs;
    if (receiver_enter(self) < 0)
        return NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = caudal_receiver_close(&self->r);
    Py_END_ALLOW_THREADS
    self->r = NULL;
    receiver_leave(self);
    if (rc < 0)
        return raise_fmt(rc, "closing the receiver: %s", caudal_strerror(rc));
    Py_RETURN_NONE;
}

static PyObject *Receiver_enter(ReceiverObject *self, PyObject *noargs)
{
    (void)noargs;
    return handle_with((PyObject *)self, self->r != NULL, "the receiver");
}

static PyObject *Receiver_exit(ReceiverObject *self, PyObject *args)
{
    if (!self->r)
        Py_RETURN_FALSE; /* closed inside the block already */
    return handle_exit(Receiver_close(self, NULL), args);
}

static PyObject *Receiver_get_endpoint(ReceiverObject *self, void *u)
{
    (void)u;
    if (!self->endpoint)
        Py_RETURN_NONE;
    return Py_NewRef(self->endpoint);
}

static PyObject *Receiver_get_closed(ReceiverObject *self, void *u)
{
    (void)u;
    return PyBool_FromLong(self->r == NULL);
}

static PyObject *Receiver_repr(ReceiverObject *self)
{
    return PyUnicode_FromFormat("<caudal.Receiver %R%s>",
                                self->endpoint ? self->endpoint : Py_None,
                                self->r ? "" : " (closed)");
}

static PyMethodDef Receiver_methods[] = {
    {"next", METH(Receiver_next), METH_VARARGS | METH_KEYWORDS,
     "next(timeout_ms=-1) -> Event or None\n\n"
     "Wait up to timeout_ms (-1: forever, 0: do not wait) for the next event;\n"
     "None if none came. The GIL is released while waiting."},
    {"steer", METH(Receiver_steer), METH_VARARGS,
     "steer(rank, key, value)\n\n"
     "Set a float, int or str steering value for one rank, or every rank\n"
     "(rank -1), the ones that connect later included."},
    {"connections", METH(Receiver_connections), METH_NOARGS,
     "connections() -> int\n\nNumber of ranks connected now."},
    {"close", METH(Receiver_close), METH_NOARGS,
     "close()\n\nStop listening and close every connection; held Blocks stay valid."},
    {"__enter__", METH(Receiver_enter), METH_NOARGS, NULL},
    {"__exit__", METH(Receiver_exit), METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef Receiver_getset[] = {
    {"endpoint", GETTER(Receiver_get_endpoint), NULL,
     "the endpoint clients should use (the chosen port for tcp port 0)", NULL},
    {"closed", GETTER(Receiver_get_closed), NULL, "True once closed", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject Receiver_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "caudal.Receiver",
    .tp_basicsize = sizeof(ReceiverObject),
    .tp_dealloc = SLOT(destructor, Receiver_dealloc),
    .tp_repr = SLOT(reprfunc, Receiver_repr),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Receiver(endpoint, token=None, max_queued_bytes=0, max_held_bytes=0)\n\n"
              "Listen on 'unix:/path' or 'tcp:host:port' (port 0: any free port) and\n"
              "turn the ranks' frames into events (caudal_receiver).",
    .tp_methods = Receiver_methods,
    .tp_getset = Receiver_getset,
    .tp_init = SLOT(initproc, Receiver_init),
    .tp_new = Receiver_new,
};

/* ======================================================================= */
/* module                                                                  */

static PyObject *mod_strerror(PyObject *m, PyObject *arg)
{
    (void)m;
    long st = PyLong_AsLong(arg);
    if (st == -1 && PyErr_Occurred())
        return NULL;
    return PyUnicode_FromString(caudal_strerror((int)st));
}

static PyObject *mod_dtype_size(PyObject *m, PyObject *arg)
{
    (void)m;
    int dt = dtype_from_object(arg);
    if (!dt)
        return NULL;
    return PyLong_FromSize_t(caudal_dtype_size(dt));
}

static PyObject *mod_dtype_name(PyObject *m, PyObject *arg)
{
    (void)m;
    int dt = dtype_from_object(arg);
    if (!dt)
        return NULL;
    return PyUnicode_FromString(dtype_names[dt]);
}

static PyMethodDef module_methods[] = {
    {"strerror", mod_strerror, METH_O, "strerror(status) -> str\n\nDescription of a status code."},
    {"dtype_size", mod_dtype_size, METH_O, "dtype_size(dtype) -> int\n\nBytes per element."},
    {"dtype_name", mod_dtype_name, METH_O,
     "dtype_name(dtype) -> str\n\n"
     "The caudal name ('float64') of a name, a NumPy type string or dtype, or a\n"
     "NumPy scalar type; raises CaudalError (ERR_DTYPE) for anything else."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef caudal_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "caudal._caudal",
    .m_doc = "The C core of the caudal package (libcaudal bindings).",
    .m_size = -1,
    .m_methods = module_methods,
};

static int add_type(PyObject *m, PyTypeObject *t, const char *name)
{
    if (PyType_Ready(t) < 0)
        return -1;
    Py_INCREF(t);
    if (PyModule_AddObject(m, name, (PyObject *)t) < 0) {
        Py_DECREF(t);
        return -1;
    }
    return 0;
}

PyMODINIT_FUNC PyInit__caudal(void)
{
    PyObject *m = PyModule_Create(&caudal_module);
    if (!m)
        return NULL;
    if (add_type(m, &Client_Type, "Client") < 0 || add_type(m, &Receiver_Type, "Receiver") < 0 ||
        add_type(m, &Block_Type, "Block") < 0 || add_type(m, &Event_Type, "Event") < 0)
        goto fail;
    ArrayInfo_Type = PyStructSequence_NewType(&ArrayInfo_desc);
    if (!ArrayInfo_Type)
        goto fail;
    Py_INCREF(ArrayInfo_Type);
    if (PyModule_AddObject(m, "ArrayInfo", (PyObject *)ArrayInfo_Type) < 0) {
        Py_DECREF(ArrayInfo_Type);
        goto fail;
    }

    PyObject *dict = Py_BuildValue("{s:i}", "status", 0);
    if (!dict)
        goto fail;
    CaudalError = PyErr_NewExceptionWithDoc(
        "caudal.CaudalError",
        "A libcaudal call failed. .status is the caudal status code (a negative\n"
        "ERR_* constant), .message the library's message, which names the rank,\n"
        "step and array concerned, .description the status code's description.",
        NULL, dict);
    Py_DECREF(dict);
    if (!CaudalError)
        goto fail;
    Py_INCREF(CaudalError);
    if (PyModule_AddObject(m, "CaudalError", CaudalError) < 0) {
        Py_DECREF(CaudalError);
        goto fail;
    }

    static const struct { const char *name; int value; } consts[] = {
        {"OK", CAUDAL_OK},
        {"NO_VALUE", CAUDAL_NO_VALUE},
        {"ERR_INVALID", CAUDAL_ERR_INVALID},
        {"ERR_CLOSED", CAUDAL_ERR_CLOSED},
        {"ERR_NOMEM", CAUDAL_ERR_NOMEM},
        {"ERR_UNKNOWN_ARRAY", CAUDAL_ERR_UNKNOWN_ARRAY},
        {"ERR_DTYPE", CAUDAL_ERR_DTYPE},
        {"ERR_SHAPE", CAUDAL_ERR_SHAPE},
        {"ERR_STEP_ORDER", CAUDAL_ERR_STEP_ORDER},
        {"ERR_STATE", CAUDAL_ERR_STATE},
        {"ERR_DUPLICATE", CAUDAL_ERR_DUPLICATE},
        {"ERR_TIMEOUT", CAUDAL_ERR_TIMEOUT},
        {"ERR_CONNECT", CAUDAL_ERR_CONNECT},
        {"ERR_IO", CAUDAL_ERR_IO},
        {"ERR_PROTOCOL", CAUDAL_ERR_PROTOCOL},
        {"ERR_AUTH", CAUDAL_ERR_AUTH},
        {"ERR_VERSION", CAUDAL_ERR_VERSION},
        {"ERR_TYPE", CAUDAL_ERR_TYPE},
        {"ERR_TRUNCATED", CAUDAL_ERR_TRUNCATED},
        {"ERR_SYSTEM", CAUDAL_ERR_SYSTEM},
        {"MAX_DIMS", CAUDAL_MAX_DIMS},
        {"MAX_NAME", CAUDAL_MAX_NAME},
        {"VERSION_MAJOR", CAUDAL_VERSION_MAJOR},
        {"VERSION_MINOR", CAUDAL_VERSION_MINOR},
        {"VERSION_PATCH", CAUDAL_VERSION_PATCH},
    };
    for (size_t k = 0; k < sizeof consts / sizeof consts[0]; k++)
        if (PyModule_AddIntConstant(m, consts[k].name, consts[k].value) < 0)
            goto fail;
    PyObject *names = PyTuple_New(NDTYPES);
    if (!names)
        goto fail;
    for (int k = 0; k < NDTYPES; k++) {
        PyObject *s = PyUnicode_FromString(dtype_names[k + 1]);
        if (!s) {
            Py_DECREF(names);
            goto fail;
        }
        PyTuple_SET_ITEM(names, k, s);
    }
    if (PyModule_AddObject(m, "DTYPES", names) < 0) {
        Py_DECREF(names);
        goto fail;
    }
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
