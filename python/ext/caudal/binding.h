/* binding.h - what the files of caudal._caudal share.
 *
 * The extension binds libcaudal with the CPython C API and the buffer
 * protocol only, so building it needs no NumPy. One file per type:
 *
 *   client.c    Client: caudal_client (declare, steps, puts, steering)
 *   receiver.c  Receiver: caudal_receiver; next() hands out Events
 *   block.c     Block: a held caudal_block as a read-only buffer
 *   events.c    Event and ArrayInfo, made from a caudal_event
 *   errors.c    CaudalError and raising it
 *   handle.c    the lock and life cycle Client and Receiver share
 *   dtypes.c    dtype arguments and the per-dtype buffer formats
 *   values.c    steering values and counters as Python objects
 *   module.c    the module: functions and constants
 *
 * The binding keeps no copy of the library's state: it asks the library
 * (caudal_put_check, caudal_query_array), and its own checks become the
 * client's last error (caudal_set_error), so every message names the rank,
 * step and array the same way.
 */
#ifndef CAUDAL_BINDING_H
#define CAUDAL_BINDING_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pythread.h>

#include <stdint.h>

#include "caudal.h"
#include "caudal_receiver.h"

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

/* errors.c: CaudalError(message) with .status, .message and .description. */
extern PyObject *CaudalError;
int errors_add(PyObject *module);
PyObject *raise_status(int status, const char *message); /* NULL */
PyObject *raise_fmt(int status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3))); /* NULL */

/* handle.c: a Client or Receiver is a C handle behind a lock, since the
 * handles are not thread-safe and calls release the GIL. */
PyObject *handle_new(PyTypeObject *type, size_t lock_offset);
void lock_take(PyThread_type_lock lock);
/* Lock for a C call; raises CLOSED (lock not held) and returns -1 if the
 * handle is closed, which is checked under the lock since close() clears it. */
int handle_enter(PyThread_type_lock lock, int (*is_open)(PyObject *), PyObject *self,
                 const char *what);
/* Raise status rc with the handle's message and `suffix`, copied before the
 * lock (held by the caller) is released. */
PyObject *handle_raise(PyThread_type_lock lock, int rc, const char *message,
                       const char *suffix);
PyObject *raise_closed(const char *what);
PyObject *handle_with(PyObject *self, int open, const char *what);
PyObject *handle_exit(PyObject *closed, PyObject *exit_args);

/* block.c: pack_blocks(blocks) -> (bytearray, layout), module-level. */
PyObject *mod_pack_blocks(PyObject *m, PyObject *arg);

/* dtypes.c */
int dtype_from_object(PyObject *obj); /* a caudal_dtype; 0 with CaudalError */
const char *dtype_format(int dtype);  /* buffer-protocol format; NULL if none */
PyObject *dtype_names(void);          /* DTYPES: the names, in code order */

/* values.c */
/* The type of a steering value (CAUDAL_VALUE_*) with the value in *d, *i or
 * *s; 0 with an error. */
int steer_kind(PyObject *value, double *d, int64_t *i, const char **s);
PyObject *steer_value_object(int type, double d, int64_t i, const char *s);
PyObject *counters_dict(const caudal_counters *k);

/* The types, each in its file; module.c adds them. */
extern PyTypeObject Client_Type, Receiver_Type, Block_Type, Event_Type;
extern PyTypeObject *ArrayInfo_Type; /* events.c; made by arrayinfo_init */
int arrayinfo_init(void);

/* block.c: a Block for a BLOCK event, or for a STEPS event's block `b` of
 * array `name`; each takes ownership of the caudal_block (released on error). */
PyObject *block_from_event(const caudal_event *ev);
PyObject *block_new(const caudal_step_block *b, PyObject *name);
/* events.c: an Event; takes ownership of ev->block (released on error). */
PyObject *event_object(const caudal_event *ev);

#endif
