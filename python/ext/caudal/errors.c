/* errors.c - caudal.CaudalError, raised by every failing call.
 *
 * The exception carries the status code so that Python code can tell the
 * failures apart without reading the message, and the library's message,
 * which names the rank, step and array concerned. */
#include "binding.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

PyObject *CaudalError;

int errors_add(PyObject *module)
{
    PyObject *dict = Py_BuildValue("{s:i}", "status", 0);
    if (!dict)
        return -1;
    CaudalError = PyErr_NewExceptionWithDoc(
        "caudal.CaudalError",
        "A libcaudal call failed. .status is the caudal status code (a negative\n"
        "ERR_* constant), .message the library's message, which names the rank,\n"
        "step and array concerned, .description the status code's description.",
        NULL, dict);
    Py_DECREF(dict);
    if (!CaudalError)
        return -1;
    Py_INCREF(CaudalError);
    if (PyModule_AddObject(module, "CaudalError", CaudalError) < 0) {
        Py_DECREF(CaudalError);
        return -1;
    }
    return 0;
}

PyObject *raise_status(int status, const char *message)
{
    if (!message || !*message)
        message = caudal_strerror(status);
    /* "replace": a message quotes names the caller gave, which may be any bytes. */
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
    int bad = !st || !name || PyObject_SetAttrString(exc, "status", st) < 0 ||
              PyObject_SetAttrString(exc, "message", msg) < 0 ||
              PyObject_SetAttrString(exc, "description", name) < 0;
    Py_XDECREF(st);
    Py_XDECREF(name);
    Py_DECREF(msg);
    if (!bad)
        PyErr_SetObject(CaudalError, exc);
    Py_DECREF(exc);
    return NULL;
}

PyObject *raise_fmt(int status, const char *fmt, ...)
{
    char buf[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    return raise_status(status, buf);
}
