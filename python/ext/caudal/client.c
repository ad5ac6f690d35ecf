/* client.c - caudal.Client, a caudal_client: declare arrays, then per step
 * begin_step, put each block (any buffer), end_step; steering both ways.
 *
 * The library checks every call and writes the messages; what only the
 * binding can see (a buffer's contiguity and dimensions, a Python argument
 * out of range) it reports through caudal_set_error, so those messages
 * name the rank, step and array as the library's do. */
#include "binding.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "buffer_dtype.h"

/* Puts of at least this many bytes release the GIL while copying. */
#define GIL_RELEASE_BYTES (64u * 1024u)

typedef struct {
    PyObject_HEAD
    caudal_client *c; /* NULL once closed */
    PyThread_type_lock lock;
    int rank, size;   /* as opened: rank and repr outlive the handle */
} ClientObject;

static int client_is_open(PyObject *o) { return ((ClientObject *)o)->c != NULL; }

/* Lock the client for a C call; raises CLOSED (lock not held) if closed. */
static int client_enter(ClientObject *self)
{
    return handle_enter(self->lock, client_is_open, (PyObject *)self, "the client");
}

static void client_leave(ClientObject *self) { PyThread_release_lock(self->lock); }

/* Raise status rc with the client's message; call with the lock held. */
static PyObject *client_raise(ClientObject *self, int rc)
{
    return handle_raise(self->lock, rc, caudal_last_error(self->c), NULL);
}

/* Raise a problem the binding found in a call's arguments, as the client's
 * error (prefixed with the rank, the step and the array if not NULL). */
static PyObject *client_fail(ClientObject *self, int status, const char *array,
                             const char *problem)
{
    if (client_enter(self) < 0)
        return NULL;
    return client_raise(self, caudal_set_error(self->c, status, array, problem));
}

/* ----------------------------------------------------------- arguments */

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

/* A shape, start or count: a sequence of 1 to CAUDAL_MAX_DIMS ints from 0
 * to 2**64-1, into out[]. Returns its length; -1 with a Python error (not a
 * sequence of ints); or -2 with `problem` written, for the client to report.
 * Done before the client's lock is taken: __index__ may run Python code. */
static int dims_arg(PyObject *seq, const char *what, uint64_t *out, char *problem,
                    size_t len)
{
    PyObject *fast = PySequence_Fast(seq, "shape, start and count are sequences of ints");
    if (!fast)
        return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    if (n < 1 || n > CAUDAL_MAX_DIMS) {
        Py_DECREF(fast);
        snprintf(problem, len, "%s has %zd dimensions, not 1 to %d", what, n, CAUDAL_MAX_DIMS);
        return -2;
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
            PyErr_Clear();
            Py_DECREF(fast);
            snprintf(problem, len, "%s[%zd] is not an integer from 0 to 2**64-1", what, k);
            return -2;
        }
        out[k] = v;
    }
    Py_DECREF(fast);
    return (int)n;
}

static int parse_order(PyObject *obj, caudal_order *order)
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

static int parse_policy(PyObject *obj, caudal_policy *policy)
{
    if (obj == Py_None) {
        *policy = CAUDAL_POLICY_DEFAULT;
        return 0;
    }
    const char *p = PyUnicode_Check(obj) ? PyUnicode_AsUTF8(obj) : NULL;
    if (p && strcmp(p, "block") == 0)
        *policy = CAUDAL_POLICY_BLOCK;
    else if (p && strcmp(p, "drop") == 0)
        *policy = CAUDAL_POLICY_DROP;
    else {
        PyErr_Clear();
        return -1;
    }
    return 0;
}

/* ------------------------------------------------------------ life cycle */

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
    /* No client yet to prefix these: they name the rank themselves. */
    caudal_options o;
    caudal_options_init(&o);
    if (ring_depth < 0 || ring_depth > 4096) {
        raise_fmt(CAUDAL_ERR_INVALID, "rank %d: ring_depth %zd is not 0 to 4096", rank,
                  ring_depth);
        return -1;
    }
    if (slot_bytes < 0) {
        raise_fmt(CAUDAL_ERR_INVALID, "rank %d: slot_bytes %zd is negative", rank, slot_bytes);
        return -1;
    }
    if (parse_policy(policy, &o.policy) < 0) {
        raise_fmt(CAUDAL_ERR_INVALID, "rank %d: policy must be 'block', 'drop' or None", rank);
        return -1;
    }
    o.rank = rank;
    o.size = size;
    o.endpoint = endpoint;
    o.token = token;
    o.ring_depth = (unsigned)ring_depth;
    o.slot_bytes = (size_t)slot_bytes;
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
    if (self->lock)
        PyThread_free_lock(self->lock);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Client_close(ClientObject *self, PyObject *noargs)
{
    (void)noargs;
    if (client_enter(self) < 0)
        return NULL;
    caudal_client *c = self->c;
    self->c = NULL;
    char msg[640];
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = caudal_close_report(&c, msg, sizeof msg);
    Py_END_ALLOW_THREADS
    client_leave(self);
    if (rc < 0)
        return raise_status(rc, msg);
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

/* ---------------------------------------------------------- declarations */

static PyObject *Client_declare(ClientObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"name", "dtype", "shape", "start", "count", "order", NULL};
    const char *name;
    PyObject *dtype_obj, *shape_obj, *start_obj, *count_obj, *order_obj = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "sOOOO|O:declare", kwlist, &name, &dtype_obj,
                                     &shape_obj, &start_obj, &count_obj, &order_obj))
        return NULL;
    int dtype = dtype_from_object(dtype_obj);
    if (!dtype)
        return NULL;
    caudal_order order = CAUDAL_ORDER_C;
    if (order_obj && parse_order(order_obj, &order) < 0)
        return NULL;
    uint64_t shape[CAUDAL_MAX_DIMS], start[CAUDAL_MAX_DIMS], count[CAUDAL_MAX_DIMS];
    char problem[256] = "";
    int n[3] = {0, 0, 0};
    PyObject *objs[3] = {shape_obj, start_obj, count_obj};
    static const char *const what[3] = {"shape", "start", "count"};
    uint64_t *outs[3] = {shape, start, count};
    for (int k = 0; k < 3 && !problem[0]; k++)
        if ((n[k] = dims_arg(objs[k], what[k], outs[k], problem, sizeof problem)) == -1)
            return NULL;
    if (!problem[0] && (n[0] != n[1] || n[0] != n[2]))
        snprintf(problem, sizeof problem,
                 "shape, start and count have %d, %d and %d dimensions", n[0], n[1], n[2]);
    if (problem[0])
        return client_fail(self, CAUDAL_ERR_SHAPE, name, problem);
    if (client_enter(self) < 0)
        return NULL;
    int rc = caudal_declare(self->c, name, (caudal_dtype)dtype, n[0], shape, start, count,
                            order);
    if (rc < 0)
        return client_raise(self, rc);
    client_leave(self);
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
        return client_fail(self, CAUDAL_ERR_INVALID, name,
                           "capacity must be an integer from 0 to 2**64-1");
    int dtype = dtype_from_object(dtype_obj);
    if (!dtype)
        return NULL;
    if (client_enter(self) < 0)
        return NULL;
    int rc = caudal_declare_var(self->c, name, (caudal_dtype)dtype, capacity);
    if (rc < 0)
        return client_raise(self, rc);
    client_leave(self);
    Py_RETURN_NONE;
}

/* ----------------------------------------------------------------- steps */

static PyObject *Client_begin_step(ClientObject *self, PyObject *arg)
{
    unsigned long long step;
    if (u64_arg(arg, &step) < 0)
        return client_fail(self, CAUDAL_ERR_INVALID, NULL,
                           "a step is an integer from 0 to 2**64-1");
    if (client_enter(self) < 0)
        return NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = caudal_begin_step(self->c, step);
    Py_END_ALLOW_THREADS
    if (rc < 0)
        return client_raise(self, rc);
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
    if (rc < 0)
        return client_raise(self, rc);
    client_leave(self);
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------------ puts */

/* The checks of a put before its data, in the order their errors take
 * precedence: the library's own (inside a step, declared, put or put_var,
 * dtype, not put twice), then the buffer's contiguity in the declared
 * order, then its dimensions (the block's shape or a flat run; 1-D for
 * put_var). On failure the client's last error says what, and `hint` holds
 * what the buffer adds to it. Call with the lock held. */
static int put_checks(caudal_client *c, const char *name, int dtype, int variable,
                      const Py_buffer *view, char *hint, size_t hintlen)
{
    hint[0] = 0;
    int rc = caudal_put_check(c, name, (caudal_dtype)dtype, variable, 0, NULL);
    if (rc < 0) {
        if (rc == CAUDAL_ERR_DTYPE && !dtype)
            snprintf(hint, hintlen, " (buffer format '%.16s', itemsize %zd)",
                     view->format ? view->format : "B", view->itemsize);
        return rc;
    }
    caudal_array_info info;
    if ((rc = caudal_query_array(c, name, &info)) < 0)
        return rc;
    char message[256];
    int fortran = info.order == CAUDAL_ORDER_F;
    if (!PyBuffer_IsContiguous(view, fortran ? 'F' : 'C')) {
        snprintf(message, sizeof message,
                 "the buffer is not %s-contiguous (the array is declared in %s order); pass "
                 "a contiguous copy (numpy.%s)",
                 fortran ? "Fortran" : "C", fortran ? "Fortran" : "C",
                 fortran ? "asfortranarray" : "ascontiguousarray");
        return caudal_set_error(c, CAUDAL_ERR_INVALID, name, message);
    }
    /* The library takes 1 to CAUDAL_MAX_DIMS dimensions; a buffer may have
     * 0 (a NumPy scalar) or up to 64, which fit no declaration. */
    if (view->ndim < 1 || view->ndim > CAUDAL_MAX_DIMS) {
        if (variable)
            snprintf(message, sizeof message,
                     "put_var takes a 1-D run of elements, this one has %d dimensions",
                     view->ndim);
        else
            snprintf(message, sizeof message,
                     "the buffer has %d dimensions; put an array of the declared block's "
                     "shape or a flat 1-D run of its elements", view->ndim);
        return caudal_set_error(c, CAUDAL_ERR_SHAPE, name, message);
    }
    uint64_t dims[CAUDAL_MAX_DIMS];
    for (int k = 0; k < view->ndim; k++)
        dims[k] = (uint64_t)view->shape[k];
    rc = caudal_put_check(c, name, (caudal_dtype)dtype, variable, view->ndim, dims);
    if (rc == CAUDAL_ERR_SHAPE && !variable && view->ndim == 1) {
        /* A flat buffer of the wrong length: its size in bytes too, the
         * unit Python measures buffers in (len(bytes), memoryview.nbytes). */
        uint64_t block = caudal_dtype_size(info.dtype);
        for (int k = 0; k < info.ndim; k++)
            block *= info.count[k];
        snprintf(hint, hintlen, " (the buffer has %zd bytes, the block %llu)", view->len,
                 (unsigned long long)block);
    }
    return rc;
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
    char hint[128];
    int rc = put_checks(self->c, name, dtype, variable, &view, hint, sizeof hint);
    if (rc == CAUDAL_OK) {
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
    }
    PyBuffer_Release(&view);
    if (rc < 0)
        return handle_raise(self->lock, rc, caudal_last_error(self->c), hint);
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

/* -------------------------------------------------------------- steering */

static PyObject *Client_steer_get(ClientObject *self, PyObject *args)
{
    const char *key;
    if (!PyArg_ParseTuple(args, "s:steer_get", &key))
        return NULL;
    if (client_enter(self) < 0)
        return NULL;
    caudal_value v;
    int rc = caudal_steer_get(self->c, key, &v);
    if (rc < 0)
        return client_raise(self, rc);
    /* Under the lock: v.as_string lives until the next call on the client. */
    PyObject *value = rc == CAUDAL_NO_VALUE
                          ? Py_NewRef(Py_None)
                          : steer_value_object(v.type, v.as_double, v.as_int64, v.as_string);
    client_leave(self);
    return value;
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

/* ---------------------------------------------------------- the rest */

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
    {"declare_var", METH(Client_declare_var), METH_VARARGS | METH_KEYWORDS,
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

PyTypeObject Client_Type = {
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
