/* bind_fields.c - caudal._kernels bindings of the field kernels: stencils,
 * coarsening, connected components and per-point time statistics.
 *
 * The Python caller allocates every output; these functions check what they
 * are given (naming the argument in each error), release the GIL around the
 * kernel, and return None or a small Python value. */
#include <math.h>

#include "kbuf.h"

/* ------------------------------------------------------------- helpers */

static int block_arg(PyObject *obj, kbuf *b)
{
    if (kbuf_get(obj, "block", 0, 0, b) < 0)
        return -1;
    if (b->ndim < 1) {
        PyErr_SetString(PyExc_ValueError, "block must have at least 1 dimension");
        kbuf_release(b);
        return -1;
    }
    return 0;
}

/* "(3, 4)" into buf. */
static void shape_str(const int64_t *shape, int ndim, char *buf, size_t cap)
{
    size_t at = (size_t)snprintf(buf, cap, "(");
    for (int d = 0; d < ndim && at < cap; d++)
        at += (size_t)snprintf(buf + at, cap - at, d ? ", %lld" : "%lld", (long long)shape[d]);
    if (at < cap)
        snprintf(buf + at, cap - at, ndim == 1 ? ",)" : ")");
}

static int same_shape(const kbuf *b, const int64_t *shape, int ndim)
{
    int same = b->ndim == ndim;
    for (int d = 0; same && d < ndim; d++)
        same = b->shape[d] == shape[d];
    return same;
}

static int check_shape(const kbuf *b, const char *what, const int64_t *shape, int ndim)
{
    if (same_shape(b, shape, ndim))
        return 0;
    char want[256], got[256];
    shape_str(shape, ndim, want, sizeof want);
    shape_str(b->shape, b->ndim, got, sizeof got);
    PyErr_Format(PyExc_ValueError, "%s must have shape %s, not %s", what, want, got);
    return -1;
}

/* The kernels read their input while writing their output. */
static int check_apart(const kbuf *out, const char *what, const kbuf *in)
{
    const char *a = out->view.buf, *b = in->view.buf;
    if (a < b + in->view.len && b < a + out->view.len) {
        PyErr_Format(PyExc_ValueError, "%s must not share memory with block", what);
        return -1;
    }
    return 0;
}

/* A writable output of `dtype`, the block's shape, apart from the block. */
static int out_arg(PyObject *obj, const char *what, int dtype, const kbuf *block, kbuf *b)
{
    if (kbuf_get(obj, what, 1, 0, b) < 0)
        return -1;
    if (kbuf_expect(b, what, dtype, -1) < 0 ||
        check_shape(b, what, block->shape, block->ndim) < 0 || check_apart(b, what, block) < 0) {
        kbuf_release(b);
        return -1;
    }
    return 0;
}

/* A face along `axis`: None (a global border: *ptr = NULL), or an array of
 * the block's dtype and the block's shape without `axis` (the neighbour's
 * plane kept as extent 1 is accepted too). */
static int face_arg(PyObject *obj, const char *side, int axis, const kbuf *block, kbuf *f,
                    const void **ptr)
{
    *ptr = NULL;
    if (obj == Py_None)
        return 0;
    char what[48];
    snprintf(what, sizeof what, "%s face of axis %d", side, axis);
    if (kbuf_get(obj, what, 0, 0, f) < 0)
        return -1;
    int64_t flat[CDK_MAX_DIMS], kept[CDK_MAX_DIMS];
    for (int d = 0, k = 0; d < block->ndim; d++) {
        kept[d] = d == axis ? 1 : block->shape[d];
        if (d != axis)
            flat[k++] = block->shape[d];
    }
    if (kbuf_expect(f, what, block->dtype, -1) < 0 ||
        (!same_shape(f, kept, block->ndim) && check_shape(f, what, flat, block->ndim - 1) < 0)) {
        kbuf_release(f);
        return -1;
    }
    *ptr = f->view.buf;
    return 0;
}

/* A sequence of `n` ints (n < 0: any length from 1 to CDK_MAX_DIMS, stored
 * in *len). */
static int int64_seq(PyObject *obj, const char *what, int n, int64_t *out, int *len)
{
    PyObject *seq = PySequence_Fast(obj, "");
    if (!seq) {
        PyErr_Format(PyExc_TypeError, "%s must be a sequence of ints", what);
        return -1;
    }
    Py_ssize_t m = PySequence_Fast_GET_SIZE(seq);
    if (n >= 0 ? m != n : m < 1 || m > CDK_MAX_DIMS) {
        if (n >= 0)
            PyErr_Format(PyExc_ValueError, "%s must have %d items, not %zd", what, n, m);
        else
            PyErr_Format(PyExc_ValueError, "%s must have 1 to %d items, not %zd", what,
                         CDK_MAX_DIMS, m);
        Py_DECREF(seq);
        return -1;
    }
    for (Py_ssize_t i = 0; i < m; i++) {
        long long v = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(seq, i));
        if (v == -1 && PyErr_Occurred()) {
            PyErr_Format(PyExc_TypeError, "%s[%zd] must be an int", what, i);
            Py_DECREF(seq);
            return -1;
        }
        out[i] = v;
    }
    if (len)
        *len = (int)m;
    Py_DECREF(seq);
    return 0;
}

/* The index of `obj` in `names`, or -1 with a ValueError listing them. */
static int op_arg(PyObject *obj, const char *what, const char *const *names, int n)
{
    const char *s = PyUnicode_Check(obj) ? PyUnicode_AsUTF8(obj) : NULL;
    if (!s && PyErr_Occurred())
        return -1;
    for (int i = 0; s && i < n; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    char allowed[64] = "";
    for (int i = 0; i < n; i++)
        snprintf(allowed + strlen(allowed), sizeof allowed - strlen(allowed), "%s'%s'",
                 i ? ", " : "", names[i]);
    PyErr_Format(PyExc_ValueError, "%s must be one of %s, not %R", what, allowed, obj);
    return -1;
}

static int check_h(double h, const char *what)
{
    if (h > 0 && isfinite(h))
        return 0;
    PyErr_Format(PyExc_ValueError, "%s must be finite and > 0", what);
    return -1;
}

static void release_all(kbuf *b, int n)
{
    for (int i = 0; i < n; i++)
        kbuf_release(&b[i]);
}

/* ------------------------------------------------------------ stencils */

static PyObject *k_gradient(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *bo, *loo, *hio, *oo;
    int axis;
    double h;
    long long global_n;
    if (!PyArg_ParseTuple(args, "OidLOOO:gradient", &bo, &axis, &h, &global_n, &loo, &hio,
                          &oo))
        return NULL;
    kbuf b[4]; /* block, lo, hi, out */
    memset(b, 0, sizeof b);
    const void *lo = NULL, *hi = NULL;
    PyObject *res = NULL;
    if (block_arg(bo, &b[0]) < 0)
        return NULL;
    int ndim = b[0].ndim;
    if (axis < -ndim || axis >= ndim) {
        PyErr_Format(PyExc_ValueError, "axis %d is out of range for a block of %d dimensions",
                     axis, ndim);
        goto done;
    }
    axis = axis < 0 ? axis + ndim : axis;
    if (check_h(h, "h") < 0)
        goto done;
    if (global_n < 2) {
        PyErr_Format(PyExc_ValueError,
                     "global_n must be at least 2 (numpy.gradient needs 2 points), not %lld",
                     global_n);
        goto done;
    }
    if (face_arg(loo, "lo", axis, &b[0], &b[1], &lo) < 0 ||
        face_arg(hio, "hi", axis, &b[0], &b[2], &hi) < 0 ||
        out_arg(oo, "out", CAUDAL_FLOAT64, &b[0], &b[3]) < 0)
        goto done;
    long long n = b[0].shape[axis], spanned = n + (lo != NULL) + (hi != NULL);
    if (spanned > global_n || (!lo && !hi && n != global_n)) {
        PyErr_Format(PyExc_ValueError,
                     "a block of %lld along axis %d with %s does not fit global_n = %lld", n,
                     axis, lo && hi ? "two faces" : lo || hi ? "one face" : "no face (it spans "
                     "the axis)", global_n);
        goto done;
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = cdk_gradient(b[0].view.buf, b[0].dtype, ndim, b[0].shape, axis, h, global_n, lo, hi,
                      b[3].view.buf);
    Py_END_ALLOW_THREADS
    res = rc == CDK_OK ? Py_NewRef(Py_None) : kbuf_raise(rc, "gradient");
done:
    release_all(b, 4);
    return res;
}

/* A sequence of ndim face arguments for one side. */
static int faces_arg(PyObject *obj, const char *side, const kbuf *block, kbuf *f,
                     const void **ptr)
{
    PyObject *seq = PySequence_Fast(obj, "");
    if (!seq || PySequence_Fast_GET_SIZE(seq) != block->ndim) {
        PyErr_Format(PyExc_ValueError, "%s must be a sequence of %d faces (None or arrays)",
                     side, block->ndim);
        Py_XDECREF(seq);
        return -1;
    }
    for (int d = 0; d < block->ndim; d++)
        if (face_arg(PySequence_Fast_GET_ITEM(seq, d), side, d, block, &f[d], &ptr[d]) < 0) {
            Py_DECREF(seq);
            return -1;
        }
    Py_DECREF(seq);
    return 0;
}

static int h_seq(PyObject *obj, int ndim, double *h)
{
    PyObject *seq = PySequence_Fast(obj, "");
    if (!seq || PySequence_Fast_GET_SIZE(seq) != ndim) {
        PyErr_Format(PyExc_ValueError, "h must be a sequence of %d floats", ndim);
        Py_XDECREF(seq);
        return -1;
    }
    for (int d = 0; d < ndim; d++) {
        h[d] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(seq, d));
        char what[16];
        snprintf(what, sizeof what, "h[%d]", d);
        if ((h[d] == -1.0 && PyErr_Occurred()) || check_h(h[d], what) < 0) {
            Py_DECREF(seq);
            return -1;
        }
    }
    Py_DECREF(seq);
    return 0;
}

static PyObject *k_laplacian(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *bo, *ho, *loo, *hio, *oo;
    if (!PyArg_ParseTuple(args, "OOOOO:laplacian", &bo, &ho, &loo, &hio, &oo))
        return NULL;
    kbuf b[2 + 2 * CDK_MAX_DIMS]; /* block, out, lo faces, hi faces */
    memset(b, 0, sizeof b);
    const void *lo[CDK_MAX_DIMS], *hi[CDK_MAX_DIMS];
    double h[CDK_MAX_DIMS];
    PyObject *res = NULL;
    if (block_arg(bo, &b[0]) < 0)
        return NULL;
    if (h_seq(ho, b[0].ndim, h) < 0 || faces_arg(loo, "lo", &b[0], b + 2, lo) < 0 ||
        faces_arg(hio, "hi", &b[0], b + 2 + CDK_MAX_DIMS, hi) < 0 ||
        out_arg(oo, "out", CAUDAL_FLOAT64, &b[0], &b[1]) < 0)
        goto done;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = cdk_laplacian(b[0].view.buf, b[0].dtype, b[0].ndim, b[0].shape, h, lo, hi,
                       b[1].view.buf);
    Py_END_ALLOW_THREADS
    res = rc == CDK_OK ? Py_NewRef(Py_None) : kbuf_raise(rc, "laplacian");
done:
    release_all(b, 2 + 2 * CDK_MAX_DIMS);
    return res;
}

/* ----------------------------------------------------------- coarsening */

/* Each v[d] >= least, else a ValueError naming what[d]. */
static int at_least(const int64_t *v, int ndim, int64_t least, const char *what)
{
    for (int d = 0; d < ndim; d++)
        if (v[d] < least) {
            PyErr_Format(PyExc_ValueError, "%s[%d] must be >= %lld, not %lld", what, d,
                         (long long)least, (long long)v[d]);
            return -1;
        }
    return 0;
}

static PyObject *int64_tuple(const int64_t *v, int n)
{
    PyObject *t = PyTuple_New(n);
    for (int i = 0; t && i < n; i++) {
        PyObject *x = PyLong_FromLongLong(v[i]);
        if (!x) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, i, x);
    }
    return t;
}

static PyObject *k_coarsen_cells(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *so, *co, *fo;
    if (!PyArg_ParseTuple(args, "OOO:coarsen_cells", &so, &co, &fo))
        return NULL;
    int64_t start[CDK_MAX_DIMS], count[CDK_MAX_DIMS], factor[CDK_MAX_DIMS];
    int64_t first[CDK_MAX_DIMS], ncells[CDK_MAX_DIMS];
    int ndim;
    if (int64_seq(so, "start", -1, start, &ndim) < 0 ||
        int64_seq(co, "count", ndim, count, NULL) < 0 ||
        int64_seq(fo, "factor", ndim, factor, NULL) < 0 || at_least(start, ndim, 0, "start") < 0 ||
        at_least(count, ndim, 0, "count") < 0 || at_least(factor, ndim, 1, "factor") < 0)
        return NULL;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = cdk_coarsen_cells(ndim, start, count, factor, first, ncells);
    Py_END_ALLOW_THREADS
    if (rc != CDK_OK)
        return kbuf_raise(rc, "coarsen_cells");
    PyObject *f = int64_tuple(first, ndim), *n = f ? int64_tuple(ncells, ndim) : NULL;
    PyObject *res = n ? PyTuple_Pack(2, f, n) : NULL;
    Py_XDECREF(f);
    Py_XDECREF(n);
    return res;
}

static const char *const coarsen_ops[] = {"mean", "max", "min"};

static PyObject *k_coarsen(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *bo, *so, *fo, *opo, *ao, *no;
    if (!PyArg_ParseTuple(args, "OOOOOO:coarsen", &bo, &so, &fo, &opo, &ao, &no))
        return NULL;
    kbuf b[3]; /* block, acc, num */
    memset(b, 0, sizeof b);
    int64_t start[CDK_MAX_DIMS], factor[CDK_MAX_DIMS], first[CDK_MAX_DIMS],
        ncells[CDK_MAX_DIMS];
    PyObject *res = NULL;
    int op = op_arg(opo, "op", coarsen_ops, 3);
    if (op < 0 || block_arg(bo, &b[0]) < 0)
        return NULL;
    int ndim = b[0].ndim, rc;
    if (int64_seq(so, "start", ndim, start, NULL) < 0 ||
        int64_seq(fo, "factor", ndim, factor, NULL) < 0 || at_least(start, ndim, 0, "start") < 0 ||
        at_least(factor, ndim, 1, "factor") < 0)
        goto done;
    rc = cdk_coarsen_cells(ndim, start, b[0].shape, factor, first, ncells);
    if (rc != CDK_OK) {
        kbuf_raise(rc, "coarsen");
        goto done;
    }
    int64_t cells = 1;
    for (int d = 0; d < ndim; d++)
        cells *= ncells[d];
    if (kbuf_get(ao, "acc", 1, 0, &b[1]) < 0 ||
        kbuf_expect(&b[1], "acc", CAUDAL_FLOAT64, cells) < 0 ||
        kbuf_get(no, "num", 1, 0, &b[2]) < 0 ||
        kbuf_expect(&b[2], "num", CAUDAL_INT64, cells) < 0)
        goto done;
    Py_BEGIN_ALLOW_THREADS
    rc = cdk_coarsen(b[0].view.buf, b[0].dtype, ndim, start, b[0].shape, factor, op,
                     b[1].view.buf, b[2].view.buf);
    Py_END_ALLOW_THREADS
    res = rc == CDK_OK ? Py_NewRef(Py_None) : kbuf_raise(rc, "coarsen");
done:
    release_all(b, 3);
    return res;
}

/* ---------------------------------------------------------------- labels */

/* In the order of CDK_GT, CDK_GE, CDK_LT, CDK_LE. */
static const char *const label_ops[] = {">", ">=", "<", "<="};

static PyObject *k_label(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *bo, *opo, *lo;
    double threshold;
    if (!PyArg_ParseTuple(args, "OdOO:label", &bo, &threshold, &opo, &lo))
        return NULL;
    kbuf b[2]; /* block, labels */
    memset(b, 0, sizeof b);
    PyObject *res = NULL;
    int op = op_arg(opo, "op", label_ops, 4);
    if (op < 0 || block_arg(bo, &b[0]) < 0)
        return NULL;
    if (out_arg(lo, "labels", CAUDAL_INT32, &b[0], &b[1]) < 0)
        goto done;
    int64_t nlabels = 0;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = cdk_label(b[0].view.buf, b[0].dtype, b[0].ndim, b[0].shape, threshold, op,
                   b[1].view.buf, &nlabels);
    Py_END_ALLOW_THREADS
    if (rc == CDK_ERR_ARG)
        PyErr_SetString(PyExc_ValueError, "label: more components than int32 labels hold");
    else
        res = rc == CDK_OK ? PyLong_FromLongLong(nlabels) : kbuf_raise(rc, "label");
done:
    release_all(b, 2);
    return res;
}

static PyObject *k_label_stats(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *lo, *so, *zo, *uo;
    if (!PyArg_ParseTuple(args, "OOOO:label_stats", &lo, &so, &zo, &uo))
        return NULL;
    kbuf b[3]; /* labels, size, sums */
    memset(b, 0, sizeof b);
    int64_t start[CDK_MAX_DIMS];
    PyObject *res = NULL;
    if (kbuf_get(lo, "labels", 0, 0, &b[0]) < 0)
        return NULL;
    int ndim = b[0].ndim;
    if (kbuf_expect(&b[0], "labels", CAUDAL_INT32, -1) < 0)
        goto done;
    if (ndim < 1) {
        PyErr_SetString(PyExc_ValueError, "labels must have at least 1 dimension");
        goto done;
    }
    if (int64_seq(so, "start", ndim, start, NULL) < 0 ||
        kbuf_get(zo, "size", 1, 0, &b[1]) < 0 ||
        kbuf_expect(&b[1], "size", CAUDAL_INT64, -1) < 0 ||
        kbuf_get(uo, "sums", 1, 0, &b[2]) < 0 ||
        kbuf_expect(&b[2], "sums", CAUDAL_FLOAT64, b[1].n * ndim) < 0)
        goto done;
    int64_t nlabels = b[1].n;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = cdk_label_stats(b[0].view.buf, ndim, start, b[0].shape, nlabels, b[1].view.buf,
                         b[2].view.buf);
    Py_END_ALLOW_THREADS
    if (rc == CDK_ERR_ARG)
        PyErr_Format(PyExc_ValueError,
                     "labels holds values outside 0..%lld (nlabels = len(size))",
                     (long long)nlabels);
    else
        res = rc == CDK_OK ? Py_NewRef(Py_None) : kbuf_raise(rc, "label_stats");
done:
    release_all(b, 3);
    return res;
}

/* ------------------------------------------------- per-point statistics */

static PyObject *k_pointstats_add(PyObject *self, PyObject *args)
{
    (void)self;
    static const char *const names[] = {"num", "mean", "m2", "min", "max"};
    PyObject *o[6];
    if (!PyArg_ParseTuple(args, "OOOOOO:pointstats_add", &o[0], &o[1], &o[2], &o[3], &o[4],
                          &o[5]))
        return NULL;
    kbuf b[6]; /* block, num, mean, m2, min, max */
    memset(b, 0, sizeof b);
    PyObject *res = NULL;
    if (kbuf_get(o[0], "block", 0, 0, &b[0]) < 0)
        return NULL;
    for (int i = 1; i < 6; i++)
        if (kbuf_get(o[i], names[i - 1], 1, 0, &b[i]) < 0 ||
            kbuf_expect(&b[i], names[i - 1], i == 1 ? CAUDAL_INT64 : CAUDAL_FLOAT64,
                        b[0].n) < 0 ||
            check_apart(&b[i], names[i - 1], &b[0]) < 0)
            goto done;
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = cdk_pointstats_add(b[0].view.buf, b[0].dtype, b[0].n, b[1].view.buf, b[2].view.buf,
                            b[3].view.buf, b[4].view.buf, b[5].view.buf);
    Py_END_ALLOW_THREADS
    res = rc == CDK_OK ? Py_NewRef(Py_None) : kbuf_raise(rc, "pointstats_add");
done:
    release_all(b, 6);
    return res;
}

PyMethodDef kfields_methods[] = {
    {"gradient", k_gradient, METH_VARARGS,
     "gradient(block, axis, h, global_n, lo_face, hi_face, out) -> None\n\n"
     "numpy.gradient (edge_order=1) of a block along axis into out (float64, the\n"
     "block's shape). lo_face/hi_face: the neighbours' planes next to the block\n"
     "(the block's shape without axis, its dtype), None at the global border."},
    {"laplacian", k_laplacian, METH_VARARGS,
     "laplacian(block, h, lo, hi, out) -> None\n\n"
     "Sum over axes of second differences / h[d]**2, borders replicated\n"
     "(scipy.ndimage.laplace mode='nearest'). lo, hi: per axis None or a face."},
    {"coarsen_cells", k_coarsen_cells, METH_VARARGS,
     "coarsen_cells(start, count, factor) -> (first, ncells)\n\n"
     "The coarse cells a block touches: tuples of ints."},
    {"coarsen", k_coarsen, METH_VARARGS,
     "coarsen(block, start, factor, op, acc, num) -> None\n\n"
     "A block's partial over its coarse cells; op 'mean' (acc gets sums), 'max'\n"
     "or 'min'; acc float64 and num int64 hold prod(ncells) elements."},
    {"label", k_label, METH_VARARGS,
     "label(block, threshold, op, labels) -> nlabels\n\n"
     "Face-connected components of block OP threshold (op '>', '>=', '<', '<=')\n"
     "into labels (int32, the block's shape), 1.. in order of first appearance."},
    {"label_stats", k_label_stats, METH_VARARGS,
     "label_stats(labels, start, size, sums) -> None\n\n"
     "Per label l (1..len(size)): size[l-1] elements and sums[(l-1)*ndim + d],\n"
     "the sum of global coordinates start[d] + index along d."},
    {"pointstats_add", k_pointstats_add, METH_VARARGS,
     "pointstats_add(block, num, mean, m2, min, max) -> None\n\n"
     "One step into per-point Welford state (NaN skipped per point)."},
    {NULL, NULL, 0, NULL}};
