/* module.c - caudal._kernels: the C analysis kernels (kernels/) for Python.
 *
 * Each binding takes NumPy arrays (any C-contiguous buffer) without copying
 * and calls one kernel; the per-block / merge split and where it runs are
 * the Python package's business (python/caudal/blocks.py). The GIL is
 * released around every kernel so that tasks in one worker run in parallel. */
#include "kbuf.h"

#include "buffer_dtype.h"

int kbuf_get(PyObject *obj, const char *what, int writable, int allow_complex, kbuf *b)
{
    memset(b, 0, sizeof *b);
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(obj, &b->view, flags) < 0) {
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_Format(PyExc_TypeError, "%s must be a C-contiguous%s array (%S)", what,
                     writable ? ", writable" : "", value ? value : Py_None);
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
        return -1;
    }
    b->held = 1;
    b->dtype = format_dtype(b->view.format, b->view.itemsize);
    int complex = b->dtype == CAUDAL_COMPLEX64 || b->dtype == CAUDAL_COMPLEX128;
    if (!b->dtype || (complex && !allow_complex)) {
        PyErr_Format(PyExc_TypeError, "%s has elements of format '%s' (itemsize %zd); the "
                     "kernels take integer and floating-point arrays", what,
                     b->view.format ? b->view.format : "B", b->view.itemsize);
        kbuf_release(b);
        return -1;
    }
    if (b->view.ndim > CDK_MAX_DIMS) {
        PyErr_Format(PyExc_ValueError, "%s has %d dimensions; the kernels take at most %d",
                     what, b->view.ndim, CDK_MAX_DIMS);
        kbuf_release(b);
        return -1;
    }
    b->ndim = b->view.ndim;
    b->n = 1;
    for (int d = 0; d < b->ndim; d++) {
        b->shape[d] = b->view.shape[d];
        b->n *= b->shape[d];
    }
    if (b->ndim == 0)
        b->n = b->view.len / b->view.itemsize;
    return 0;
}

void kbuf_release(kbuf *b)
{
    if (b->held)
        PyBuffer_Release(&b->view);
    b->held = 0;
}

int kbuf_expect(const kbuf *b, const char *what, int dtype, int64_t n)
{
    if (b->dtype != dtype) {
        PyErr_Format(PyExc_TypeError, "%s must hold %s, not %s", what,
                     caudal_dtype_name(dtype), caudal_dtype_name(b->dtype));
        return -1;
    }
    if (n >= 0 && b->n != n) {
        PyErr_Format(PyExc_ValueError, "%s must hold %lld elements, not %lld", what,
                     (long long)n, (long long)b->n);
        return -1;
    }
    return 0;
}

PyObject *kbuf_raise(int status, const char *where)
{
    PyObject *type = PyExc_ValueError;
    if (status == CDK_ERR_DTYPE)
        type = PyExc_TypeError;
    else if (status == CDK_ERR_NOMEM)
        type = PyExc_MemoryError;
    PyErr_Format(type, "%s: %s", where, cdk_strerror(status));
    return NULL;
}

static PyMethodDef no_methods[] = {{NULL, NULL, 0, NULL}};

static struct PyModuleDef kernels_module = {
    PyModuleDef_HEAD_INIT, "_kernels",
    "The C analysis kernels of caudal (per-block partial states and merges).", -1,
    no_methods, NULL, NULL, NULL, NULL};

static int add_methods(PyObject *m, PyMethodDef *defs)
{
    PyObject *name = PyModule_GetNameObject(m);
    if (!name)
        return -1;
    for (PyMethodDef *d = defs; d->ml_name; d++) {
        PyObject *f = PyCFunction_NewEx(d, NULL, name);
        if (!f || PyModule_AddObject(m, d->ml_name, f) < 0) {
            Py_XDECREF(f);
            Py_DECREF(name);
            return -1;
        }
    }
    Py_DECREF(name);
    return 0;
}

PyMODINIT_FUNC PyInit__kernels(void)
{
    PyObject *m = PyModule_Create(&kernels_module);
    if (!m)
        return NULL;
    if (add_methods(m, kstats_methods) < 0 || add_methods(m, kfields_methods) < 0 ||
        add_methods(m, kmd_methods) < 0 ||
        PyType_Ready(&KSketch_Type) < 0 ||
        PyModule_AddObjectRef(m, "Sketch", (PyObject *)&KSketch_Type) < 0 ||
        PyModule_AddIntConstant(m, "MAX_DIMS", CDK_MAX_DIMS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
