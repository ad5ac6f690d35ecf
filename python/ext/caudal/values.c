/* values.c - the values that cross between Python and libcaudal as plain
 * Python objects: steering values (float, int or str, both ways) and the
 * client's counters (a dict). */
#include "binding.h"

#include <string.h>

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

int steer_kind(PyObject *value, double *d, int64_t *i, const char **s)
{
    if (PyUnicode_Check(value)) {
        *s = steer_string(value);
        return *s ? CAUDAL_VALUE_STRING : 0;
    }
    if (PyFloat_Check(value)) {
        *d = PyFloat_AsDouble(value);
        return CAUDAL_VALUE_DOUBLE;
    }
    /* Before nb_float: an int, a bool or numpy.int64 stays an integer. */
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

PyObject *steer_value_object(int type, double d, int64_t i, const char *s)
{
    switch (type) {
    case CAUDAL_VALUE_DOUBLE: return PyFloat_FromDouble(d);
    case CAUDAL_VALUE_INT64: return PyLong_FromLongLong((long long)i);
    case CAUDAL_VALUE_STRING:
        /* The peer may send any bytes: keep them, as os.fsdecode would. */
        return PyUnicode_DecodeUTF8(s ? s : "", s ? (Py_ssize_t)strlen(s) : 0,
                                    "surrogateescape");
    default: Py_RETURN_NONE;
    }
}

PyObject *counters_dict(const caudal_counters *k)
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
