/* dtypes.c - caudal dtypes on the Python side: the dtype arguments the
 * binding accepts, and how a Block's elements are described to the buffer
 * protocol.
 *
 * Names, codes and sizes come from CAUDAL_DTYPE_LIST. What the binding adds
 * per dtype is written below under the list's names, so a dtype added to
 * the list without its line here does not compile. */
#include "binding.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buffer_dtype.h"

/* The buffer-protocol format a Block of the dtype is exported with, and the
 * kind letter of its NumPy type string ("<f8": kind 'f', 8 bytes). */
#define DTYPE_CODES_INT8 "b", 'i'
#define DTYPE_CODES_INT16 "h", 'i'
#define DTYPE_CODES_INT32 "i", 'i'
#define DTYPE_CODES_INT64 "q", 'i'
#define DTYPE_CODES_UINT8 "B", 'u'
#define DTYPE_CODES_UINT16 "H", 'u'
#define DTYPE_CODES_UINT32 "I", 'u'
#define DTYPE_CODES_UINT64 "Q", 'u'
#define DTYPE_CODES_FLOAT32 "f", 'f'
#define DTYPE_CODES_FLOAT64 "d", 'f'
#define DTYPE_CODES_COMPLEX64 "Zf", 'c'
#define DTYPE_CODES_COMPLEX128 "Zd", 'c'

typedef struct {
    int dtype;
    const char *name;
    size_t size;
    const char *format;
    char kind;
} dtype_entry;

static const dtype_entry dtypes[] = {
#define DTYPE_ENTRY_(NAME, value, size, text) {CAUDAL_##NAME, text, size, DTYPE_CODES_##NAME},
    CAUDAL_DTYPE_LIST(DTYPE_ENTRY_)
#undef DTYPE_ENTRY_
};
#define NDTYPES ((int)(sizeof dtypes / sizeof dtypes[0]))

static const dtype_entry *entry_of(int dtype)
{
    for (int k = 0; k < NDTYPES; k++)
        if (dtypes[k].dtype == dtype)
            return &dtypes[k];
    return NULL;
}

const char *dtype_format(int dtype)
{
    const dtype_entry *e = entry_of(dtype);
    return e ? e->format : NULL;
}

PyObject *dtype_names(void)
{
    PyObject *names = PyTuple_New(NDTYPES);
    if (!names)
        return NULL;
    for (int k = 0; k < NDTYPES; k++) {
        /* Python code turns a name into its code as DTYPES.index(name) + 1. */
        if (dtypes[k].dtype != k + 1) {
            Py_DECREF(names);
            PyErr_SetString(PyExc_SystemError, "CAUDAL_DTYPE_LIST is not in code order");
            return NULL;
        }
        PyObject *s = PyUnicode_FromString(dtypes[k].name);
        if (!s) {
            Py_DECREF(names);
            return NULL;
        }
        PyTuple_SET_ITEM(names, k, s);
    }
    return names;
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
    size_t size = (size_t)atoi(s);
    for (int k = 0; k < NDTYPES; k++)
        if (dtypes[k].kind == kind && dtypes[k].size == size)
            return dtypes[k].dtype;
    return 0;
}

static int name_dtype(const char *s)
{
    for (int k = 0; k < NDTYPES; k++)
        if (strcmp(s, dtypes[k].name) == 0)
            return dtypes[k].dtype;
    return typestr_dtype(s);
}

/* The dtype named by obj's .name (numpy.dtype) or .__name__ (numpy.float64,
 * float), if it is in native byte order; 0 if none. Clears what it meets. */
static int attribute_dtype(PyObject *obj)
{
    static const char *const attrs[] = {"name", "__name__"};
    int dt = 0;
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
                if (s && ((*s == '>' && host_is_little()) || (*s == '<' && !host_is_little())))
                    dt = 0;
            }
            Py_DECREF(bo);
        }
    }
    return dt;
}

/* dtype argument: a name ("float64"), a NumPy type string ("<f8"), an object
 * whose .name is one (numpy.dtype), a type whose __name__ is one
 * (numpy.float64), or a caudal_dtype code. */
int dtype_from_object(PyObject *obj)
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
        else if (v > 0 && v <= INT32_MAX && entry_of((int)v))
            dt = (int)v;
    } else {
        dt = attribute_dtype(obj);
    }
    if (dt)
        return dt;
    char choices[256];
    int off = 0;
    for (int k = 0; k < NDTYPES && off < (int)sizeof choices; k++)
        off += snprintf(choices + off, sizeof choices - off, "%s%s", k ? ", " : "",
                        dtypes[k].name);
    PyObject *r = PyObject_Repr(obj);
    const char *rs = r ? PyUnicode_AsUTF8(r) : NULL;
    if (!rs)
        PyErr_Clear();
    raise_fmt(CAUDAL_ERR_DTYPE, "%s is not a caudal dtype (one of %s, in native byte order)",
              rs ? rs : "the object", choices);
    Py_XDECREF(r);
    return 0;
}
