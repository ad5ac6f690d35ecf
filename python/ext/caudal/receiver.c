/* receiver.c - caudal.Receiver, a caudal_receiver: listen for the ranks,
 * hand out their frames as Events, set steering values.
 *
 * next() waits without the GIL, in short slices so that Ctrl-C is seen;
 * Blocks it handed out stay valid after close(). */
#include "binding.h"

#include <stddef.h>
#include <time.h>

/* Receiver.next waits in slices of this many ms so Ctrl-C is seen. */
#define NEXT_SLICE_MS 100

typedef struct {
    PyObject_HEAD
    caudal_receiver *r; /* NULL once closed */
    PyThread_type_lock lock;
    PyObject *endpoint; /* kept for repr after close */
} ReceiverObject;

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int receiver_is_open(PyObject *o) { return ((ReceiverObject *)o)->r != NULL; }

static int receiver_enter(ReceiverObject *self)
{
    return handle_enter(self->lock, receiver_is_open, (PyObject *)self, "the receiver");
}

static void receiver_leave(ReceiverObject *self) { PyThread_release_lock(self->lock); }

static PyObject *receiver_raise(ReceiverObject *self, int rc)
{
    return handle_raise(self->lock, rc, caudal_receiver_last_error(self->r), NULL);
}

static PyObject *Receiver_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    (void)args;
    (void)kwds;
    return handle_new(type, offsetof(ReceiverObject, lock));
}

static int Receiver_init(ReceiverObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"endpoint", "token",  "max_queued_bytes", "max_held_bytes",
                             "gather",   NULL};
    const char *endpoint, *token = NULL;
    Py_ssize_t max_queued = 0, max_held = 0;
    int gather = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "s|znnp:Receiver", kwlist, &endpoint, &token,
                                     &max_queued, &max_held, &gather))
        return -1;
    if (self->r) {
        raise_status(CAUDAL_ERR_STATE, "Receiver.__init__ called on an open receiver");
        return -1;
    }
    if (max_queued < 0 || max_held < 0) {
        raise_status(CAUDAL_ERR_INVALID,
                     "max_queued_bytes and max_held_bytes must not be negative");
        return -1;
    }
    caudal_receiver_options o;
    caudal_receiver_options_init(&o);
    o.endpoint = endpoint;
    o.token = token;
    o.max_queued_bytes = (size_t)max_queued;
    o.max_held_bytes = (size_t)max_held;
    o.gather = (uint64_t)gather;
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
            /* Under the lock: the event's pointers live until the next call. */
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

PyTypeObject Receiver_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "caudal.Receiver",
    .tp_basicsize = sizeof(ReceiverObject),
    .tp_dealloc = SLOT(destructor, Receiver_dealloc),
    .tp_repr = SLOT(reprfunc, Receiver_repr),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Receiver(endpoint, token=None, max_queued_bytes=0, max_held_bytes=0,\n"
              "         gather=False)\n\n"
              "Listen on 'unix:/path' or 'tcp:host:port' (port 0: any free port) and\n"
              "turn the ranks' frames into events (caudal_receiver). With gather=True\n"
              "the ranks' blocks, step ends and drops come as one 'steps' event each\n"
              "time the ranks connected here all finished more steps (see Event).",
    .tp_methods = Receiver_methods,
    .tp_getset = Receiver_getset,
    .tp_init = SLOT(initproc, Receiver_init),
    .tp_new = Receiver_new,
};
