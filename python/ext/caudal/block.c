/* block.c - caudal.Block, a block the receiver holds for Python.
 *
 * It exports the block's memory read-only through the buffer protocol, so
 * numpy.asarray(block) is a zero-copy view of the rank's shared-memory slot
 * (or of the buffer an inline block was read into), and gives the block
 * back to the rank exactly once: on release(), or when it is garbage
 * collected. release() refuses while views exist, since the rank may then
 * write the slot under them. */
#include "binding.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <structmember.h>

typedef struct {
    PyObject_HEAD
    caudal_block *blk; /* NULL once released */
    const void *data;
    Py_ssize_t nbytes;
    Py_ssize_t itemsize;
    int dtype, order, ndim;
    int in_shared_memory;
    unsigned int ring_slots; /* caudal_block_ring_slots, read while held */
    Py_ssize_t shape[CAUDAL_MAX_DIMS];
    Py_ssize_t strides[CAUDAL_MAX_DIMS];
    Py_ssize_t exports;
    PyObject *weakrefs;
    PyObject *name; /* the array's */
    int rank;
    unsigned long long step, count;
} BlockObject;

static void block_do_release(BlockObject *self)
{
    if (self->blk) {
        caudal_block *b = self->blk;
        self->blk = NULL;
        self->data = NULL;
        caudal_block_release(b);
    }
}

static void Block_dealloc(BlockObject *self)
{
    if (self->weakrefs)
        PyObject_ClearWeakRefs((PyObject *)self);
    block_do_release(self);
    Py_CLEAR(self->name);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Block_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    (void)type;
    (void)args;
    (void)kwds;
    PyErr_SetString(PyExc_TypeError, "Block objects come from Receiver.next()");
    return NULL;
}

PyObject *block_from_event(const caudal_event *ev)
{
    const caudal_array_info *a = ev->array;
    PyObject *name = PyUnicode_DecodeUTF8(a->name, (Py_ssize_t)strlen(a->name),
                                          "surrogateescape");
    if (!name) {
        caudal_block_release(ev->block);
        return NULL;
    }
    caudal_step_block b = {.array = a, .step = ev->step, .data = ev->data,
                           .nbytes = ev->nbytes, .count = ev->count, .block = ev->block,
                           .rank = ev->rank, .in_shared_memory = ev->in_shared_memory};
    PyObject *self = block_new(&b, name);
    Py_DECREF(name);
    return self;
}

PyObject *block_new(const caudal_step_block *b, PyObject *name)
{
    const caudal_array_info *a = b->array;
    BlockObject *self = PyObject_New(BlockObject, &Block_Type);
    if (!self) {
        caudal_block_release(b->block);
        return NULL;
    }
    self->blk = b->block;
    self->data = b->data;
    self->nbytes = (Py_ssize_t)b->nbytes;
    self->dtype = a->dtype;
    self->order = a->order;
    self->itemsize = (Py_ssize_t)caudal_dtype_size(a->dtype);
    self->in_shared_memory = b->in_shared_memory;
    uint32_t slots = 0;
    (void)caudal_block_ring_slots(b->block, &slots); /* b->block is held: never fails */
    self->ring_slots = slots;
    self->exports = 0;
    self->weakrefs = NULL;
    self->name = Py_NewRef(name);
    self->rank = b->rank;
    self->step = (unsigned long long)b->step;
    self->count = (unsigned long long)b->count;
    if (a->variable || a->ndim < 1) {
        self->ndim = 1;
        self->shape[0] = (Py_ssize_t)b->count;
    } else {
        self->ndim = a->ndim;
        for (int k = 0; k < a->ndim; k++)
            self->shape[k] = (Py_ssize_t)a->count[k];
    }
    Py_ssize_t stride = self->itemsize;
    if (self->order == CAUDAL_ORDER_F) {
        for (int k = 0; k < self->ndim; k++) {
            self->strides[k] = stride;
            stride *= self->shape[k];
        }
    } else {
        for (int k = self->ndim - 1; k >= 0; k--) {
            self->strides[k] = stride;
            stride *= self->shape[k];
        }
    }
    if (stride != self->nbytes || !dtype_format(self->dtype)) {
        /* The receiver checks this; never hand out a view past the data. */
        block_do_release(self);
        Py_DECREF(self);
        return raise_fmt(CAUDAL_ERR_PROTOCOL, "rank %d, step %llu, array '%.64s': block of "
                         "%llu bytes does not match its declaration", b->rank,
                         (unsigned long long)b->step, a->name,
                         (unsigned long long)b->nbytes);
    }
    return (PyObject *)self;
}

static int Block_getbuffer(BlockObject *self, Py_buffer *view, int flags)
{
    view->obj = NULL;
    if (!self->blk) {
        raise_status(CAUDAL_ERR_CLOSED, "the block was released");
        return -1;
    }
    if (flags & PyBUF_WRITABLE) {
        PyErr_SetString(PyExc_BufferError, "a caudal block is read-only");
        return -1;
    }
    int c_contig = self->order == CAUDAL_ORDER_C || self->ndim == 1;
    int f_contig = self->order == CAUDAL_ORDER_F || self->ndim == 1;
    /* A zero-sized or all-but-one-dimension-of-one block is both; say so. */
    {
        int big = 0;
        for (int k = 0; k < self->ndim; k++)
            big += self->shape[k] > 1;
        if (big <= 1 || self->nbytes == 0)
            c_contig = f_contig = 1;
    }
    if ((flags & PyBUF_C_CONTIGUOUS) == PyBUF_C_CONTIGUOUS && !c_contig) {
        PyErr_SetString(PyExc_BufferError, "this block is in Fortran order, not C-contiguous");
        return -1;
    }
    if ((flags & PyBUF_F_CONTIGUOUS) == PyBUF_F_CONTIGUOUS && !f_contig) {
        PyErr_SetString(PyExc_BufferError, "this block is in C order, not Fortran-contiguous");
        return -1;
    }
    if ((flags & PyBUF_STRIDES) != PyBUF_STRIDES && (flags & PyBUF_ND) == PyBUF_ND &&
        !c_contig) {
        PyErr_SetString(PyExc_BufferError,
                        "this block is in Fortran order: ask for strides");
        return -1;
    }
    view->buf = (void *)self->data;
    view->len = self->nbytes;
    view->readonly = 1;
    view->itemsize = self->itemsize;
    view->format = (flags & PyBUF_FORMAT) ? (char *)dtype_format(self->dtype) : NULL;
    if ((flags & PyBUF_ND) == PyBUF_ND) {
        view->ndim = self->ndim;
        view->shape = self->shape;
    } else {
        view->ndim = 1;
        view->shape = NULL;
    }
    view->strides = (flags & PyBUF_STRIDES) == PyBUF_STRIDES ? self->strides : NULL;
    view->suboffsets = NULL;
    view->internal = NULL;
    if (!(flags & PyBUF_FORMAT) && (flags & PyBUF_ND) != PyBUF_ND)
        view->itemsize = 1; /* a simple request: plain bytes */
    self->exports++;
    Py_INCREF(self);
    view->obj = (PyObject *)self;
    return 0;
}

static void Block_releasebuffer(BlockObject *self, Py_buffer *view)
{
    (void)view;
    self->exports--;
}

static PyObject *Block_release(BlockObject *self, PyObject *noargs)
{
    (void)noargs;
    if (self->exports > 0)
        return PyErr_Format(PyExc_BufferError,
                            "the block has %zd exported buffer(s) (NumPy arrays or "
                            "memoryviews of it): delete or release them first",
                            self->exports);
    block_do_release(self);
    Py_RETURN_NONE;
}

static PyObject *Block_enter(BlockObject *self, PyObject *noargs)
{
    (void)noargs;
    return Py_NewRef(self);
}

static PyObject *Block_exit(BlockObject *self, PyObject *args)
{
    (void)args;
    PyObject *r = Block_release(self, NULL);
    if (!r)
        return NULL;
    Py_DECREF(r);
    Py_RETURN_FALSE;
}

static PyObject *ssize_tuple(const Py_ssize_t *v, int n)
{
    PyObject *t = PyTuple_New(n);
    if (!t)
        return NULL;
    for (int k = 0; k < n; k++) {
        PyObject *x = PyLong_FromSsize_t(v[k]);
        if (!x) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, k, x);
    }
    return t;
}

static PyObject *Block_get_shape(BlockObject *self, void *u)
{
    (void)u;
    return ssize_tuple(self->shape, self->ndim);
}

static PyObject *Block_get_strides(BlockObject *self, void *u)
{
    (void)u;
    return ssize_tuple(self->strides, self->ndim);
}

static PyObject *Block_get_dtype(BlockObject *self, void *u)
{
    (void)u;
    return PyUnicode_FromString(caudal_dtype_name(self->dtype));
}

static PyObject *Block_get_format(BlockObject *self, void *u)
{
    (void)u;
    return PyUnicode_FromString(dtype_format(self->dtype));
}

static PyObject *Block_get_order(BlockObject *self, void *u)
{
    (void)u;
    return PyUnicode_FromString(self->order == CAUDAL_ORDER_F ? "F" : "C");
}

static PyObject *Block_get_in_shm(BlockObject *self, void *u)
{
    (void)u;
    return PyBool_FromLong(self->in_shared_memory);
}

static PyObject *Block_get_released(BlockObject *self, void *u)
{
    (void)u;
    return PyBool_FromLong(self->blk == NULL);
}

static PyObject *Block_repr(BlockObject *self)
{
    char shape[256];
    int off = 0;
    for (int k = 0; k < self->ndim && off < (int)sizeof shape - 24; k++)
        off += snprintf(shape + off, sizeof shape - off, "%s%zd", k ? ", " : "",
                        self->shape[k]);
    if (self->ndim == 1)
        snprintf(shape + off, sizeof shape - off, ",");
    return PyUnicode_FromFormat("<caudal.Block %s (%s) order %s%s>",
                                caudal_dtype_name(self->dtype), shape,
                                self->order == CAUDAL_ORDER_F ? "F" : "C",
                                self->blk ? "" : " released");
}

static PyMethodDef Block_methods[] = {
    {"release", METH(Block_release), METH_NOARGS,
     "release()\n\n"
     "Give the block back to the rank now (it is given back anyway when the\n"
     "Block is garbage collected). Raises BufferError while NumPy arrays or\n"
     "memoryviews of it exist; a second call does nothing."},
    {"__enter__", METH(Block_enter), METH_NOARGS, NULL},
    {"__exit__", METH(Block_exit), METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL}};

static PyMemberDef Block_members[] = {
    {"nbytes", T_PYSSIZET, offsetof(BlockObject, nbytes), READONLY, "bytes of data"},
    {"itemsize", T_PYSSIZET, offsetof(BlockObject, itemsize), READONLY, "bytes per element"},
    {"ndim", T_INT, offsetof(BlockObject, ndim), READONLY, "number of dimensions"},
    {"name", T_OBJECT_EX, offsetof(BlockObject, name), READONLY, "the array's name"},
    {"rank", T_INT, offsetof(BlockObject, rank), READONLY, "the rank that put it"},
    {"step", T_ULONGLONG, offsetof(BlockObject, step), READONLY, "its step"},
    {"count", T_ULONGLONG, offsetof(BlockObject, count), READONLY,
     "elements in the block (a variable array's length this step)"},
    {"ring_slots", T_UINT, offsetof(BlockObject, ring_slots), READONLY,
     "slots in the ring it lies in (its rank's ring depth); 0: read inline"},
    {NULL, 0, 0, 0, NULL}};

static PyGetSetDef Block_getset[] = {
    {"shape", GETTER(Block_get_shape), NULL, "the block's count, in the declared order", NULL},
    {"strides", GETTER(Block_get_strides), NULL, "byte strides of the exported buffer", NULL},
    {"dtype", GETTER(Block_get_dtype), NULL, "dtype name", NULL},
    {"format", GETTER(Block_get_format), NULL, "buffer-protocol format", NULL},
    {"order", GETTER(Block_get_order), NULL, "'C' or 'F'", NULL},
    {"released", GETTER(Block_get_released), NULL, "True once given back", NULL},
    {"in_shared_memory", GETTER(Block_get_in_shm), NULL,
     "True if the data is in the rank's shared-memory slot (else read inline)", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyBufferProcs Block_as_buffer = {
    .bf_getbuffer = SLOT(getbufferproc, Block_getbuffer),
    .bf_releasebuffer = SLOT(releasebufferproc, Block_releasebuffer),
};

PyTypeObject Block_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "caudal.Block",
    .tp_basicsize = sizeof(BlockObject),
    .tp_dealloc = SLOT(destructor, Block_dealloc),
    .tp_repr = SLOT(reprfunc, Block_repr),
    .tp_as_buffer = &Block_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A block held by the receiver: a read-only buffer (numpy.asarray(block)\n"
              "is a zero-copy view) given back to the rank on release() or when the\n"
              "Block is garbage collected.",
    .tp_weaklistoffset = offsetof(BlockObject, weakrefs),
    .tp_methods = Block_methods,
    .tp_members = Block_members,
    .tp_getset = Block_getset,
    .tp_new = Block_new,
};

/* ---------------------------------------------------------- pack_blocks */

#define PACK_ALIGN 64 /* each block's offset: views stay as aligned as in a slot */

static Py_ssize_t padded(Py_ssize_t nbytes)
{
    return (nbytes + PACK_ALIGN - 1) / PACK_ALIGN * PACK_ALIGN;
}

static int block_check(PyObject *o, Py_ssize_t i)
{
    if (!PyObject_TypeCheck(o, &Block_Type)) {
        PyErr_Format(PyExc_TypeError, "pack_blocks: item %zd is a %.80s, not a caudal.Block",
                     i, Py_TYPE(o)->tp_name);
        return -1;
    }
    BlockObject *b = (BlockObject *)o;
    if (!b->blk) {
        raise_fmt(CAUDAL_ERR_CLOSED, "pack_blocks: rank %d's block of '%.64s', step %llu, "
                  "was released", b->rank, PyUnicode_AsUTF8(b->name), b->step);
        return -1;
    }
    if (b->exports > 0) {
        PyErr_Format(PyExc_BufferError, "pack_blocks: rank %d's block of '%.64s', step "
                     "%llu, has %zd exported buffer(s)", b->rank, PyUnicode_AsUTF8(b->name),
                     b->step, b->exports);
        return -1;
    }
    return 0;
}

/* (offset, dtype, shape, order) of one packed block. */
static PyObject *pack_entry(const BlockObject *b, Py_ssize_t offset)
{
    PyObject *shape = ssize_tuple(b->shape, b->ndim);
    if (!shape)
        return NULL;
    PyObject *t = Py_BuildValue("(nsNs)", offset, caudal_dtype_name(b->dtype), shape,
                                b->order == CAUDAL_ORDER_F ? "F" : "C");
    return t;
}

PyObject *mod_pack_blocks(PyObject *m, PyObject *arg)
{
    (void)m;
    PyObject *seq = PySequence_Fast(arg, "pack_blocks: expected a sequence of caudal.Block");
    if (!seq)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject **items = PySequence_Fast_ITEMS(seq);
    Py_ssize_t total = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        if (block_check(items[i], i) < 0)
            goto fail;
        Py_ssize_t nb = ((BlockObject *)items[i])->nbytes;
        if (total > PY_SSIZE_T_MAX - nb - PACK_ALIGN) {
            PyErr_SetString(PyExc_OverflowError, "pack_blocks: blocks too large");
            goto fail;
        }
        total += padded(nb);
    }
    PyObject *buf = PyByteArray_FromStringAndSize(NULL, total);
    PyObject *layout = buf ? PyTuple_New(n) : NULL;
    if (!layout) {
        Py_XDECREF(buf);
        goto fail;
    }
    char *dst = PyByteArray_AS_STRING(buf);
    Py_ssize_t off = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        BlockObject *b = (BlockObject *)items[i];
        PyObject *e = pack_entry(b, off);
        if (!e) {
            Py_DECREF(buf);
            Py_DECREF(layout);
            goto fail;
        }
        PyTuple_SET_ITEM(layout, i, e);
        memcpy(dst + off, b->data, (size_t)b->nbytes);
        /* no stale heap bytes in the store */
        memset(dst + off + b->nbytes, 0, (size_t)(padded(b->nbytes) - b->nbytes));
        off += padded(b->nbytes);
    }
    /* Copied: every slot goes back to its rank at once. */
    for (Py_ssize_t i = 0; i < n; i++)
        block_do_release((BlockObject *)items[i]);
    Py_DECREF(seq);
    return Py_BuildValue("(NN)", buf, layout);
fail:
    Py_DECREF(seq);
    return NULL;
}
