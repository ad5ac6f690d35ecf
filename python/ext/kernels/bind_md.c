/* bind_md.c - the molecular dynamics kernels (kernels/md.c) for Python. */
#include "kbuf.h"

/* The n buffers of a call, each named, of its dtype, writable from index
 * `writable` on, of `sizes[i]` elements (-1: any): 0, or -1 with the error
 * raised and every buffer released. */
static int take(PyObject *const *o, const char *const *names, const int *dtypes,
                const int64_t *sizes, int writable, int n, kbuf *b)
{
    memset(b, 0, (size_t)n * sizeof *b);
    for (int i = 0; i < n; i++)
        if (kbuf_get(o[i], names[i], i >= writable, 0, &b[i]) < 0 ||
            kbuf_expect(&b[i], names[i], dtypes[i], sizes[i]) < 0) {
            for (int k = 0; k <= i; k++)
                kbuf_release(&b[k]);
            return -1;
        }
    return 0;
}

static PyObject *release(kbuf *b, int n, PyObject *res)
{
    for (int i = 0; i < n; i++)
        kbuf_release(&b[i]);
    return res;
}

static PyObject *k_md_kinetic(PyObject *self, PyObject *args)
{
    (void)self;
    PyObject *o[5];
    if (!PyArg_ParseTuple(args, "OOOOO:md_kinetic", &o[0], &o[1], &o[2], &o[3], &o[4]))
        return NULL;
    static const char *const names[] = {"v", "type", "mass", "mv2", "count"};
    static const int dtypes[] = {CAUDAL_FLOAT64, CAUDAL_INT32, CAUDAL_FLOAT64, CAUDAL_FLOAT64,
                                 CAUDAL_INT64};
    kbuf b[5];
    PyObject *res = NULL;
    /* mv2 and count: one per mass, which is taken first */
    if (take(o, names, dtypes, (const int64_t[]){-1, -1, -1, -1, -1}, 3, 3, b) < 0)
        return NULL;
    int64_t per_type = b[2].n;
    if (take(o + 3, names + 3, dtypes + 3, (const int64_t[]){per_type, per_type}, 0, 2,
             b + 3) < 0)
        return release(b, 3, NULL);
    if (b[0].n != 3 * b[1].n) {
        PyErr_Format(PyExc_ValueError, "md_kinetic: %lld velocities for %lld atoms (3 per atom)",
                     (long long)b[0].n, (long long)b[1].n);
        goto done;
    }
    int rc;
    int64_t bad = -1;
    Py_BEGIN_ALLOW_THREADS
    rc = cdk_md_kinetic(b[0].view.buf, b[1].view.buf, b[1].n, b[2].view.buf, b[2].n,
                        b[3].view.buf, b[4].view.buf, &bad);
    Py_END_ALLOW_THREADS
    if (rc == CDK_OK)
        res = Py_NewRef(Py_None);
    else if (bad >= 0)
        PyErr_Format(PyExc_ValueError, "md_kinetic: atom %lld has type %d, outside 1..%lld",
                     (long long)bad, (int)((const int32_t *)b[1].view.buf)[bad],
                     (long long)b[2].n - 1);
    else
        kbuf_raise(rc, "md_kinetic");
done:
    return release(b, 5, res);
}

static PyObject *k_md_msd(PyObject *self, PyObject *args)
{
    (void)self;
    static const char *const names[] = {"x", "image", "id", "prd", "ref_id", "ref", "sums"};
    static const int dtypes[] = {CAUDAL_FLOAT64, CAUDAL_INT32,   CAUDAL_INT64, CAUDAL_FLOAT64,
                                 CAUDAL_INT64,   CAUDAL_FLOAT64, CAUDAL_FLOAT64};
    PyObject *o[7];
    if (!PyArg_ParseTuple(args, "OOOOOOO:md_msd", &o[0], &o[1], &o[2], &o[3], &o[4], &o[5],
                          &o[6]))
        return NULL;
    kbuf b[7];
    PyObject *res = NULL;
    if (take(o, names, dtypes, (const int64_t[]){-1, -1, -1, 3, -1, -1, 4}, 6, 7, b) < 0)
        return NULL;
    if (b[0].n != 3 * b[2].n || b[1].n != 3 * b[2].n || b[5].n != 3 * b[4].n) {
        PyErr_Format(PyExc_ValueError, "md_msd: %lld positions and %lld image flags for %lld "
                     "atoms, %lld reference positions for %lld ids (3 per atom each)",
                     (long long)b[0].n, (long long)b[1].n, (long long)b[2].n,
                     (long long)b[5].n, (long long)b[4].n);
        goto done;
    }
    int rc;
    int64_t bad = -1;
    Py_BEGIN_ALLOW_THREADS
    rc = cdk_md_msd(b[0].view.buf, b[1].view.buf, b[2].view.buf, b[2].n, b[3].view.buf,
                    b[4].view.buf, b[5].view.buf, b[4].n, b[6].view.buf, &bad);
    Py_END_ALLOW_THREADS
    if (rc == CDK_OK)
        res = Py_NewRef(Py_None);
    else if (bad >= 0)
        PyErr_Format(PyExc_ValueError, "md_msd: atom %lld has id %lld, which the first step "
                     "did not have (%lld atoms then)", (long long)bad,
                     (long long)((const int64_t *)b[2].view.buf)[bad], (long long)b[4].n);
    else
        kbuf_raise(rc, "md_msd");
done:
    return release(b, 7, res);
}

static PyObject *k_md_pairs(PyObject *self, PyObject *args)
{
    (void)self;
    static const char *const names[] = {"x", "type", "id", "hx", "htype", "hid", "counts"};
    static const int dtypes[] = {CAUDAL_FLOAT64, CAUDAL_INT32, CAUDAL_INT64, CAUDAL_FLOAT64,
                                 CAUDAL_INT32,   CAUDAL_INT64, CAUDAL_INT64};
    PyObject *o[7];
    double cutoff, delrinv;
    long long nbins, ntypes;
    if (!PyArg_ParseTuple(args, "OOOOOOddLLO:md_pairs", &o[0], &o[1], &o[2], &o[3], &o[4],
                          &o[5], &cutoff, &delrinv, &nbins, &ntypes, &o[6]))
        return NULL;
    kbuf b[7];
    PyObject *res = NULL;
    int64_t ncounts = (int64_t)(ntypes + 1) * (ntypes + 1) * nbins;
    if (take(o, names, dtypes, (const int64_t[]){-1, -1, -1, -1, -1, -1, ncounts}, 6, 7, b) < 0)
        return NULL;
    if (b[0].n != 3 * b[1].n || b[1].n != b[2].n || b[3].n != 3 * b[4].n || b[4].n != b[5].n) {
        PyErr_Format(PyExc_ValueError, "md_pairs: %lld positions, %lld types, %lld ids; halo "
                     "%lld positions, %lld types, %lld ids (3 positions per atom)",
                     (long long)b[0].n, (long long)b[1].n, (long long)b[2].n,
                     (long long)b[3].n, (long long)b[4].n, (long long)b[5].n);
        goto done;
    }
    int rc;
    int64_t bad = -1;
    Py_BEGIN_ALLOW_THREADS
    rc = cdk_md_pairs(b[0].view.buf, b[1].view.buf, b[2].view.buf, b[1].n, b[3].view.buf,
                      b[4].view.buf, b[5].view.buf, b[4].n, cutoff, delrinv, nbins, ntypes,
                      b[6].view.buf, &bad);
    Py_END_ALLOW_THREADS
    if (rc == CDK_OK)
        res = Py_NewRef(Py_None);
    else if (bad >= 0) {
        int own = bad < b[1].n;
        int64_t k = own ? bad : bad - b[1].n;
        int t = own ? ((const int32_t *)b[1].view.buf)[k] : ((const int32_t *)b[4].view.buf)[k];
        if (t < 1 || t > ntypes)
            PyErr_Format(PyExc_ValueError, "md_pairs: %s atom %lld has type %d, outside 1..%lld",
                         own ? "the" : "the halo's", (long long)k, t, ntypes);
        else
            PyErr_Format(PyExc_ValueError, "md_pairs: %s atom %lld has a position that is not "
                         "finite", own ? "the" : "the halo's", (long long)k);
    }
    else
        kbuf_raise(rc, "md_pairs");
done:
    return release(b, 7, res);
}

PyMethodDef kmd_methods[] = {
    {"md_kinetic", k_md_kinetic, METH_VARARGS,
     "md_kinetic(v, type, mass, mv2, count) -> None\n\n"
     "Per type t: mv2[t] += sum of mass[t] * |v|^2, count[t] += atoms (v float64\n"
     "3n, type int32 n, mass/mv2 float64 and count int64 of ntypes + 1)."},
    {"md_msd", k_md_msd, METH_VARARGS,
     "md_msd(x, image, id, prd, ref_id, ref, sums) -> None\n\n"
     "sums[0..2] += per-component squared displacements of x + image * prd from\n"
     "the reference position of each atom's id (ref_id sorted, ref 3 per id in\n"
     "that order), sums[3] += their total (x float64 3n, image int32 3n, id int64\n"
     "n, prd float64 3, sums float64 4)."},
    {"md_pairs", k_md_pairs, METH_VARARGS,
     "md_pairs(x, type, id, hx, htype, hid, cutoff, delrinv, nbins, ntypes, counts)\n\n"
     "Pairs of own atoms, and of own with halo atoms (the smaller id's side), binned\n"
     "at (int)(r * delrinv) < nbins into counts[ti, tj, bin] (int64, ti <= tj)."},
    {NULL, NULL, 0, NULL}};
