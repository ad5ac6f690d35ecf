/* handle.c - what Client and Receiver share: a C handle behind a lock.
 *
 * The C handles are not thread-safe, and calls that copy or wait release
 * the GIL, so each object has its own lock: two Python threads never run C
 * calls on the same handle at once. The handle is checked once the lock is
 * held, since close() clears it under the lock. */
#include "binding.h"

#include <stdio.h>

/* tp_new of the handle types: the object with its lock (at lock_offset);
 * dealloc frees the lock, and copes with one that was never made. */
PyObject *handle_new(PyTypeObject *type, size_t lock_offset)
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

/* Take a handle's lock; wait without the GIL if another thread holds it. */
void lock_take(PyThread_type_lock lock)
{
    if (!PyThread_acquire_lock(lock, NOWAIT_LOCK)) {
        Py_BEGIN_ALLOW_THREADS
        PyThread_acquire_lock(lock, WAIT_LOCK);
        Py_END_ALLOW_THREADS
    }
}

PyObject *raise_closed(const char *what)
{
    return raise_fmt(CAUDAL_ERR_CLOSED, "%s is closed", what);
}

int handle_enter(PyThread_type_lock lock, int (*is_open)(PyObject *), PyObject *self,
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

PyObject *handle_raise(PyThread_type_lock lock, int rc, const char *message,
                       const char *suffix)
{
    char msg[768];
    snprintf(msg, sizeof msg, "%s%s", message, suffix ? suffix : "");
    PyThread_release_lock(lock);
    return raise_status(rc, msg);
}

/* __enter__: the handle itself, if it is open. */
PyObject *handle_with(PyObject *self, int open, const char *what)
{
    if (!open)
        return raise_closed(what);
    return Py_NewRef(self);
}

/* What __exit__ returns once close() gave `closed`: False (exceptions are
 * never swallowed); a failure to close is raised only when no exception is
 * ending the with block, since that one says more. */
PyObject *handle_exit(PyObject *closed, PyObject *exit_args)
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
