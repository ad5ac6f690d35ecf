/* module.c - caudal._caudal, the Python binding of libcaudal: its functions,
 * its constants and its types (each type in its own file; binding.h lists
 * them). The status codes, dtype names and event types come from the
 * header's lists, so a code added there reaches Python by a rebuild. */
#include "binding.h"

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
    return PyUnicode_FromString(caudal_dtype_name(dt));
}

static PyObject *mod_library_version(PyObject *m, PyObject *noargs)
{
    (void)m;
    (void)noargs;
    int major = 0, minor = 0, patch = 0;
    caudal_version(&major, &minor, &patch);
    return Py_BuildValue("(iii)", major, minor, patch);
}

static PyMethodDef module_methods[] = {
    {"strerror", mod_strerror, METH_O, "strerror(status) -> str\n\nDescription of a status code."},
    {"dtype_size", mod_dtype_size, METH_O, "dtype_size(dtype) -> int\n\nBytes per element."},
    {"dtype_name", mod_dtype_name, METH_O,
     "dtype_name(dtype) -> str\n\n"
     "The caudal name ('float64') of a name, a NumPy type string or dtype, or a\n"
     "NumPy scalar type; raises CaudalError (ERR_DTYPE) for anything else."},
    {"pack_blocks", mod_pack_blocks, METH_O,
     "pack_blocks(blocks) -> (bytearray, layout)\n\n"
     "The blocks' data copied into one buffer, each at an offset aligned to 64\n"
     "bytes, and every block released (their slots go back to the ranks).\n"
     "layout[i] is (offset, dtype, shape, order) of blocks[i]. Raises, packing\n"
     "and releasing nothing, if a block was released or has views exported."},
    {"library_version", mod_library_version, METH_NOARGS,
     "library_version() -> (major, minor, patch)\n\n"
     "The version of the libcaudal loaded, which may be newer than the header\n"
     "this module was built with (VERSION_MAJOR, VERSION_MINOR, VERSION_PATCH)."},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef caudal_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "caudal._caudal",
    .m_doc = "The C core of the caudal package (libcaudal bindings).",
    .m_size = -1,
    .m_methods = module_methods,
};

typedef struct {
    const char *name;
    int value;
} int_constant;

/* OK, NO_VALUE and the ERR_* codes. */
static const int_constant statuses[] = {
#define STATUS_CONSTANT_(NAME, value, text) {#NAME, CAUDAL_##NAME},
    CAUDAL_STATUS_LIST(STATUS_CONSTANT_)
#undef STATUS_CONSTANT_
};

/* The header this module was built with. */
static const int_constant limits[] = {
    {"MAX_DIMS", CAUDAL_MAX_DIMS},
    {"MAX_NAME", CAUDAL_MAX_NAME},
    {"VERSION_MAJOR", CAUDAL_VERSION_MAJOR},
    {"VERSION_MINOR", CAUDAL_VERSION_MINOR},
    {"VERSION_PATCH", CAUDAL_VERSION_PATCH},
};

static const char *const event_types[] = {
#define EVENT_TYPE_(NAME, value, text) text,
    CAUDAL_EVENT_LIST(EVENT_TYPE_)
#undef EVENT_TYPE_
};

static int add_constants(PyObject *m, const int_constant *c, size_t n)
{
    for (size_t k = 0; k < n; k++)
        if (PyModule_AddIntConstant(m, c[k].name, c[k].value) < 0)
            return -1;
    return 0;
}

/* PyModule_AddObject that takes the reference in every case. */
static int add_object(PyObject *m, const char *name, PyObject *o)
{
    if (!o)
        return -1;
    if (PyModule_AddObject(m, name, o) < 0) {
        Py_DECREF(o);
        return -1;
    }
    return 0;
}

static int add_type(PyObject *m, PyTypeObject *t, const char *name)
{
    if (PyType_Ready(t) < 0)
        return -1;
    Py_INCREF(t);
    return add_object(m, name, (PyObject *)t);
}

static PyObject *event_type_names(void)
{
    size_t n = sizeof event_types / sizeof event_types[0];
    PyObject *t = PyTuple_New((Py_ssize_t)n);
    if (!t)
        return NULL;
    for (size_t k = 0; k < n; k++) {
        PyObject *s = PyUnicode_FromString(event_types[k]);
        if (!s) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, (Py_ssize_t)k, s);
    }
    return t;
}

PyMODINIT_FUNC PyInit__caudal(void)
{
    PyObject *m = PyModule_Create(&caudal_module);
    if (!m)
        return NULL;
    if (add_type(m, &Client_Type, "Client") < 0 || add_type(m, &Receiver_Type, "Receiver") < 0 ||
        add_type(m, &Block_Type, "Block") < 0 || add_type(m, &Event_Type, "Event") < 0 ||
        arrayinfo_init() < 0 ||
        add_object(m, "ArrayInfo", Py_NewRef(ArrayInfo_Type)) < 0 || errors_add(m) < 0 ||
        add_constants(m, statuses, sizeof statuses / sizeof statuses[0]) < 0 ||
        add_constants(m, limits, sizeof limits / sizeof limits[0]) < 0 ||
        add_object(m, "DTYPES", dtype_names()) < 0 ||
        add_object(m, "EVENT_TYPES", event_type_names()) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
