/* bind_stats.c - caudal._kernels bindings of the statistics kernels: moments,
 * histograms and the quantile sketch.
 *
 * Partial states cross task boundaries as plain Python values: a moments
 * state is an 8-tuple, a histogram an int64 array the caller owns, and a
 * Sketch pickles to its serialized bytes. The GIL is released around every
 * kernel; a Sketch has its own lock, since its methods run without the GIL. */
#include <math.h>

#include "kbuf.h"

static PyObject *none(void)
{
    Py_RETURN_NONE;
}

/* -------------------------------------------------------------- moments */

static PyObject *moments_tuple(const cdk_moments *m)
{
    return Py_BuildValue("(LLdddddd)", (long long)m->n, (long long)m->nan, m->mean, m->m2,
                         m->m3, m->m4, m->min, m->max);
}

static int count_item(PyObject *t, Py_ssize_t i, const char *what, int64_t *v)
{
    long long x = PyLong_AsLongLong(PyTuple_GET_ITEM(t, i));
    if (x == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        x = -1;
    }
    if (x < 0) {
        PyErr_Format(PyExc_ValueError, "%s[%zd] must be a count (an int >= 0)", what, i);
        return -1;
    }
    *v = x;
    return 0;
}

/* A state from moments(): (n, nan, mean, m2, m3, m4, min, max). */
static int moments_arg(PyObject *t, const char *what, cdk_moments *m)
{
    if (!PyTuple_Check(t) || PyTuple_GET_SIZE(t) != 8) {
        PyErr_Format(PyExc_ValueError,
                     "%s must be a moments state, a tuple "
                     "(n, nan, mean, m2, m3, m4, min, max)", what);
        return -1;
    }
    if (count_item(t, 0, what, &m->n) < 0 || count_item(t, 1, what, &m->nan) < 0)
        return -1;
    double *fields[] = {&m->mean, &m->m2, &m->m3, &m->m4, &m->min, &m->max};
    for (Py_ssize_t i = 0; i < 6; i++) {
        *fields[i] = PyFloat_AsDouble(PyTuple_GET_ITEM(t, i + 2));
        if (*fields[i] == -1.0 && PyErr_Occurred()) {
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError, "%s[%zd] must be a float", what, i + 2);
            return -1;
        }
    }
    return 0;
}

static PyObject *k_moments(PyObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"block", NULL};
    PyObject *obj;
    kbuf b;
    cdk_moments m;
    (void)self;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O:moments", kwlist, &obj) ||
        kbuf_get(obj, "block", 0, 0, &b) < 0)
        return NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    cdk_moments_init(&m);
    rc = cdk_moments_add(&m, b.view.buf, b.dtype, b.n);
    Py_END_ALLOW_THREADS
    kbuf_release(&b);
    return rc == CDK_OK ? moments_tuple(&m) : kbuf_raise(rc, "moments");
}

static PyObject *k_moments_change(PyObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"now", "before", "dt", NULL};
    PyObject *o1, *o2;
    double dt;
    kbuf a, b;
    cdk_moments m;
    (void)self;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOd:moments_change", kwlist, &o1, &o2, &dt) ||
        kbuf_get(o1, "now", 0, 0, &a) < 0)
        return NULL;
    if (kbuf_get(o2, "before", 0, 0, &b) < 0) {
        kbuf_release(&a);
        return NULL;
    }
    if (a.n != b.n || a.dtype != b.dtype) {
        kbuf_release(&a);
        kbuf_release(&b);
        PyErr_SetString(PyExc_ValueError,
                        "moments_change: now and before differ in size or dtype");
        return NULL;
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS
    cdk_moments_init(&m);
    rc = cdk_moments_add_change(&m, a.view.buf, b.view.buf, a.dtype, a.n, dt);
    Py_END_ALLOW_THREADS
    kbuf_release(&a);
    kbuf_release(&b);
    return rc == CDK_OK ? moments_tuple(&m) : kbuf_raise(rc, "moments_change");
}

static PyObject *k_moments_merge(PyObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"a", "b", NULL};
    PyObject *ta, *tb;
    cdk_moments a, b;
    (void)self;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OO:moments_merge", kwlist, &ta, &tb) ||
        moments_arg(ta, "a", &a) < 0 || moments_arg(tb, "b", &b) < 0)
        return NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = cdk_moments_merge(&a, &b);
    Py_END_ALLOW_THREADS
    return rc == CDK_OK ? moments_tuple(&a) : kbuf_raise(rc, "moments_merge");
}

/* ----------------------------------------------------------- histograms */

/* The counts array: writable int64 with `n` elements, apart from the block
 * (the kernel reads one while adding to the other). */
static int counts_arg(PyObject *obj, int64_t n, const kbuf *block, kbuf *c)
{
    if (kbuf_get(obj, "counts", 1, 0, c) < 0)
        return -1;
    const char *a = c->view.buf, *b = block->view.buf;
    if (kbuf_expect(c, "counts", CAUDAL_INT64, n) < 0)
        goto fail;
    if (a < b + block->view.len && b < a + c->view.len) {
        PyErr_SetString(PyExc_ValueError, "counts must not share memory with block");
        goto fail;
    }
    return 0;
fail:
    kbuf_release(c);
    return -1;
}

/* ValueError for a range: lo and hi themselves (nbins == 0), or nbins
 * edges over it that do not increase. Floats shown as Python shows them. */
static PyObject *range_error(double lo, double hi, long long nbins)
{
    PyObject *a = PyFloat_FromDouble(lo), *b = PyFloat_FromDouble(hi);
    if (a && b && nbins == 0)
        PyErr_Format(PyExc_ValueError, "lo and hi must be finite with lo < hi, not %R and %R",
                     a, b);
    else if (a && b)
        PyErr_Format(PyExc_ValueError,
                     "nbins: %lld bins are too many for the range [%R, %R] (their edges "
                     "would not increase)", nbins, a, b);
    Py_XDECREF(a);
    Py_XDECREF(b);
    return NULL;
}

static PyObject *k_histogram(PyObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"block", "lo", "hi", "nbins", "counts", NULL};
    PyObject *obj, *cobj;
    double lo, hi;
    long long nbins;
    kbuf b, c;
    (void)self;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OddLO:histogram", kwlist, &obj, &lo, &hi,
                                     &nbins, &cobj))
        return NULL;
    if (nbins < 1 || nbins > INT64_MAX - 3)
        return PyErr_Format(PyExc_ValueError, "nbins must be >= 1, not %lld", nbins);
    if (!isfinite(lo) || !isfinite(hi) || !(lo < hi))
        return range_error(lo, hi, 0);
    if (kbuf_get(obj, "block", 0, 0, &b) < 0)
        return NULL;
    if (counts_arg(cobj, nbins + 3, &b, &c) < 0) {
        kbuf_release(&b);
        return NULL;
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = cdk_histogram_uniform(b.view.buf, b.dtype, b.n, lo, hi, nbins, c.view.buf);
    Py_END_ALLOW_THREADS
    kbuf_release(&b);
    kbuf_release(&c);
    if (rc == CDK_ERR_ARG) /* what is left: edges that do not increase */
        return range_error(lo, hi, nbins);
    return rc == CDK_OK ? none() : kbuf_raise(rc, "histogram");
}

static int edges_arg(PyObject *obj, kbuf *e)
{
    if (kbuf_get(obj, "edges", 0, 0, e) < 0)
        return -1;
    if (kbuf_expect(e, "edges", CAUDAL_FLOAT64, -1) < 0)
        goto fail;
    const double *v = e->view.buf;
    if (e->n < 2) {
        PyErr_Format(PyExc_ValueError, "edges must hold at least 2 values, not %lld",
                     (long long)e->n);
        goto fail;
    }
    for (int64_t i = 0; i < e->n; i++)
        if (!isfinite(v[i]) || (i > 0 && !(v[i] > v[i - 1]))) {
            PyErr_Format(PyExc_ValueError,
                         "edges must be finite and strictly increasing (edges[%lld] is not)",
                         (long long)i);
            goto fail;
        }
    return 0;
fail:
    kbuf_release(e);
    return -1;
}

static PyObject *k_histogram_edges(PyObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"block", "edges", "counts", NULL};
    PyObject *obj, *eobj, *cobj;
    kbuf b, e, c;
    (void)self;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO:histogram_edges", kwlist, &obj, &eobj,
                                     &cobj))
        return NULL;
    if (edges_arg(eobj, &e) < 0)
        return NULL;
    if (kbuf_get(obj, "block", 0, 0, &b) < 0) {
        kbuf_release(&e);
        return NULL;
    }
    if (counts_arg(cobj, e.n + 2, &b, &c) < 0) {
        kbuf_release(&b);
        kbuf_release(&e);
        return NULL;
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = cdk_histogram_edges(b.view.buf, b.dtype, b.n, e.view.buf, e.n, c.view.buf);
    Py_END_ALLOW_THREADS
    kbuf_release(&b);
    kbuf_release(&e);
    kbuf_release(&c);
    return rc == CDK_OK ? none() : kbuf_raise(rc, "histogram_edges");
}

/* ---------------------------------------------------------------- Sketch */

typedef struct {
    PyObject_HEAD
    cdk_sketch *s;
    PyThread_type_lock lock; /* held, without the GIL, by every use of s */
} KSketch;

/* Take one or two sketches' locks (without the GIL), in address order so
 * that two threads merging a into b and b into a cannot deadlock. */
static void lock_pair(KSketch *a, KSketch *b)
{
    KSketch *first = (!b || (uintptr_t)a <= (uintptr_t)b) ? a : b;
    KSketch *second = first == a ? b : a;
    PyThread_acquire_lock(first->lock, WAIT_LOCK);
    if (second && second != first)
        PyThread_acquire_lock(second->lock, WAIT_LOCK);
}

static void unlock_pair(KSketch *a, KSketch *b)
{
    PyThread_release_lock(a->lock);
    if (b && b != a)
        PyThread_release_lock(b->lock);
}

/* A Sketch object owning s (freed on failure). */
static PyObject *sketch_wrap(PyTypeObject *type, cdk_sketch *s)
{
    KSketch *self = (KSketch *)type->tp_alloc(type, 0);
    if (self)
        self->lock = PyThread_allocate_lock();
    if (!self || !self->lock) {
        cdk_sketch_free(s);
        Py_XDECREF(self);
        return self ? PyErr_NoMemory() : NULL;
    }
    self->s = s;
    return (PyObject *)self;
}

static PyObject *sketch_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"k", NULL};
    long long k = 200;
    cdk_sketch *s;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|L:Sketch", kwlist, &k))
        return NULL;
    int rc = cdk_sketch_new(k, &s);
    if (rc == CDK_ERR_ARG)
        return PyErr_Format(PyExc_ValueError, "k must be even and in [8, 1048576], not %lld",
                            k);
    return rc == CDK_OK ? sketch_wrap(type, s) : kbuf_raise(rc, "Sketch");
}

static void sketch_dealloc(KSketch *self)
{
    cdk_sketch_free(self->s);
    if (self->lock)
        PyThread_free_lock(self->lock);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *sketch_add(KSketch *self, PyObject *obj)
{
    kbuf b;
    if (kbuf_get(obj, "block", 0, 0, &b) < 0)
        return NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    lock_pair(self, NULL);
    rc = cdk_sketch_add(self->s, b.view.buf, b.dtype, b.n);
    unlock_pair(self, NULL);
    Py_END_ALLOW_THREADS
    kbuf_release(&b);
    return rc == CDK_OK ? none() : kbuf_raise(rc, "Sketch.add");
}

static PyObject *sketch_merge(KSketch *self, PyObject *obj)
{
    if (!PyObject_TypeCheck(obj, &KSketch_Type))
        return PyErr_Format(PyExc_TypeError, "other must be a Sketch, not %.100s",
                            Py_TYPE(obj)->tp_name);
    KSketch *other = (KSketch *)obj;
    int64_t ka, kb; /* fixed at creation: no lock needed */
    cdk_sketch_k(self->s, &ka);
    cdk_sketch_k(other->s, &kb);
    if (ka != kb)
        return PyErr_Format(PyExc_ValueError,
                            "other must have k=%lld like this sketch, not %lld", (long long)ka,
                            (long long)kb);
    int rc;
    Py_BEGIN_ALLOW_THREADS
    lock_pair(self, other);
    rc = cdk_sketch_merge(self->s, other->s);
    unlock_pair(self, other);
    Py_END_ALLOW_THREADS
    if (rc == CDK_ERR_ARG)
        return PyErr_Format(PyExc_ValueError, "other: the merged counts would overflow int64");
    return rc == CDK_OK ? none() : kbuf_raise(rc, "Sketch.merge");
}

static PyObject *sketch_quantile(KSketch *self, PyObject *arg)
{
    double q = PyFloat_AsDouble(arg), x = 0.0;
    if (q == -1.0 && PyErr_Occurred())
        return NULL;
    if (!(q >= 0.0 && q <= 1.0))
        return PyErr_Format(PyExc_ValueError, "q must be in [0, 1], not %R", arg);
    int rc;
    int64_t n = 0;
    Py_BEGIN_ALLOW_THREADS
    lock_pair(self, NULL);
    cdk_sketch_info(self->s, &n, NULL, NULL);
    rc = n > 0 ? cdk_sketch_quantile(self->s, q, &x) : CDK_OK;
    unlock_pair(self, NULL);
    Py_END_ALLOW_THREADS
    if (rc != CDK_OK)
        return kbuf_raise(rc, "Sketch.quantile");
    if (n == 0)
        return PyErr_Format(PyExc_ValueError,
                            "Sketch.quantile: the sketch is empty (no values but NaN added)");
    return PyFloat_FromDouble(x);
}

static PyObject *sketch_to_bytes(KSketch *self, PyObject *unused)
{
    (void)unused;
    /* Saved into a C buffer under the lock, so that the size cannot change
     * between asking for it and writing. */
    int rc;
    size_t size = 0;
    char *buf = NULL;
    Py_BEGIN_ALLOW_THREADS
    lock_pair(self, NULL);
    rc = cdk_sketch_size(self->s, &size);
    buf = rc == CDK_OK ? malloc(size) : NULL;
    rc = rc != CDK_OK ? rc : !buf ? CDK_ERR_NOMEM : cdk_sketch_save(self->s, buf, size);
    unlock_pair(self, NULL);
    Py_END_ALLOW_THREADS
    PyObject *bytes = rc == CDK_OK ? PyBytes_FromStringAndSize(buf, (Py_ssize_t)size)
                                   : kbuf_raise(rc, "Sketch.to_bytes");
    free(buf);
    return bytes;
}

static PyObject *k_sketch_load(PyObject *self, PyObject *obj)
{
    Py_buffer view;
    cdk_sketch *s = NULL;
    (void)self;
    if (PyObject_GetBuffer(obj, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = cdk_sketch_load(view.buf, (size_t)view.len, &s);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    if (rc == CDK_ERR_FORMAT)
        return PyErr_Format(PyExc_ValueError, "data is not a serialized Sketch (%s)",
                            cdk_strerror(rc));
    return rc == CDK_OK ? sketch_wrap(&KSketch_Type, s) : kbuf_raise(rc, "sketch_load");
}

/* Pickles as sketch_load(to_bytes()), found in the module that defines the
 * type (tp_name's module, "caudal._kernels"), so that it unpickles there. */
static PyObject *sketch_reduce(KSketch *self, PyObject *unused)
{
    (void)unused;
    PyObject *modname = PyObject_GetAttrString((PyObject *)Py_TYPE(self), "__module__");
    PyObject *mod = modname ? PyImport_Import(modname) : NULL;
    PyObject *load = mod ? PyObject_GetAttrString(mod, "sketch_load") : NULL;
    PyObject *bytes = load ? sketch_to_bytes(self, NULL) : NULL;
    PyObject *r = bytes ? Py_BuildValue("(O(O))", load, bytes) : NULL;
    Py_XDECREF(modname);
    Py_XDECREF(mod);
    Py_XDECREF(load);
    Py_XDECREF(bytes);
    return r;
}

/* n, nan, rank_error and k under the lock (another thread may be adding). */
static void sketch_info(KSketch *self, int64_t v[4])
{
    Py_BEGIN_ALLOW_THREADS
    lock_pair(self, NULL);
    cdk_sketch_info(self->s, &v[0], &v[1], &v[2]);
    cdk_sketch_k(self->s, &v[3]);
    unlock_pair(self, NULL);
    Py_END_ALLOW_THREADS
}

static PyObject *sketch_get(KSketch *self, void *which)
{
    int64_t v[4];
    sketch_info(self, v);
    return PyLong_FromLongLong((long long)v[(intptr_t)which]);
}

static PyObject *sketch_repr(KSketch *self)
{
    int64_t v[4];
    sketch_info(self, v);
    return PyUnicode_FromFormat("Sketch(k=%lld, n=%lld, nan=%lld, rank_error=%lld)",
                                (long long)v[3], (long long)v[0], (long long)v[1],
                                (long long)v[2]);
}

static PyMethodDef sketch_methods[] = {
    {"add", (PyCFunction)sketch_add, METH_O,
     "add(block): add the values of an array of a real dtype (NaN counted apart)."},
    {"merge", (PyCFunction)sketch_merge, METH_O,
     "merge(other): take in every value of another Sketch of the same k."},
    {"quantile", (PyCFunction)sketch_quantile, METH_O,
     "quantile(q) -> float: a value added whose rank is within rank_error of q (n - 1)."},
    {"to_bytes", (PyCFunction)sketch_to_bytes, METH_NOARGS,
     "to_bytes() -> bytes: the serialized state; sketch_load(bytes) reads it back."},
    {"__reduce__", (PyCFunction)sketch_reduce, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef sketch_getset[] = {
    {"n", (getter)sketch_get, NULL, "values ranked (NaN not included)", (void *)0},
    {"nan", (getter)sketch_get, NULL, "NaN values seen", (void *)1},
    {"rank_error", (getter)sketch_get, NULL,
     "guaranteed bound on the rank error of quantile()", (void *)2},
    {"k", (getter)sketch_get, NULL, "values a level holds before it compacts", (void *)3},
    {NULL, NULL, NULL, NULL, NULL}};

PyTypeObject KSketch_Type = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "caudal._kernels.Sketch",
    .tp_basicsize = sizeof(KSketch),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Sketch(k=200): a mergeable quantile sketch with a guaranteed rank error.",
    .tp_new = sketch_new,
    .tp_dealloc = (destructor)sketch_dealloc,
    .tp_repr = (reprfunc)sketch_repr,
    .tp_methods = sketch_methods,
    .tp_getset = sketch_getset,
};

/* ---------------------------------------------------------------- table */

PyMethodDef kstats_methods[] = {
    {"moments", (PyCFunction)(void (*)(void))k_moments, METH_VARARGS | METH_KEYWORDS,
     "moments(block) -> (n, nan, mean, m2, m3, m4, min, max): NaN counted apart."},
    {"moments_change", (PyCFunction)(void (*)(void))k_moments_change,
     METH_VARARGS | METH_KEYWORDS,
     "moments_change(now, before, dt) -> moments of (now - before) / dt, without the array."},
    {"moments_merge", (PyCFunction)(void (*)(void))k_moments_merge,
     METH_VARARGS | METH_KEYWORDS, "moments_merge(a, b) -> the state of both states' values."},
    {"histogram", (PyCFunction)(void (*)(void))k_histogram, METH_VARARGS | METH_KEYWORDS,
     "histogram(block, lo, hi, nbins, counts): add numpy.histogram's counts over nbins equal "
     "bins of [lo, hi] to counts[:nbins]; below, above and NaN to counts[nbins:]."},
    {"histogram_edges", (PyCFunction)(void (*)(void))k_histogram_edges,
     METH_VARARGS | METH_KEYWORDS,
     "histogram_edges(block, edges, counts): the same over the bins between float64 edges."},
    {"sketch_load", (PyCFunction)k_sketch_load, METH_O,
     "sketch_load(data) -> Sketch: read Sketch.to_bytes() back."},
    {NULL, NULL, 0, NULL}};
