/* kbuf.h - what every binding of caudal._kernels needs: a buffer argument
 * with its caudal dtype and shape, and errors raised with their argument's
 * name. The Python layer (python/caudal/) adds the array, rank and step. */
#ifndef CAUDAL_KBUF_H
#define CAUDAL_KBUF_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#include "caudal_kernels.h"

typedef struct kbuf {
    Py_buffer view;
    int held;   /* view must be released */
    int dtype;  /* caudal_dtype */
    int ndim;
    int64_t n;  /* elements */
    int64_t shape[CDK_MAX_DIMS];
} kbuf;

/* Take obj's buffer, which must be C-contiguous (writable if asked) with a
 * real dtype (any caudal dtype if allow_complex). On failure raise TypeError
 * or ValueError naming `what` and return -1; b needs no release then. */
int kbuf_get(PyObject *obj, const char *what, int writable, int allow_complex, kbuf *b);
void kbuf_release(kbuf *b);

/* `what` must hold `dtype` (its elements are written by the kernel). */
int kbuf_expect(const kbuf *b, const char *what, int dtype, int64_t n);

/* Raise for a kernel status: ValueError for ARG, SHAPE and FORMAT, TypeError
 * for DTYPE, MemoryError for NOMEM; message "<where>: <strerror>". NULL. */
PyObject *kbuf_raise(int status, const char *where);

/* The method tables of the binding files, joined by module.c. */
extern PyMethodDef kstats_methods[];  /* bind_stats.c: moments, histograms */
extern PyMethodDef kfields_methods[]; /* bind_fields.c: stencils, coarsening,
                                         labels, per-point statistics */
extern PyMethodDef kmd_methods[];    /* bind_md.c: molecular dynamics */
/* bind_stats.c also defines the Sketch type; module.c adds it. */
extern PyTypeObject KSketch_Type;

#endif
