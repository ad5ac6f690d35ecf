/* events.c - caudal.Event and caudal.ArrayInfo, what Receiver.next() gives.
 *
 * An Event is a bag of attributes (a __dict__) rather than one type per
 * event kind: Python code reads ev.type and the fields that kind has, and
 * asdict() gives them to code that logs or pickles events. Its names come
 * from CAUDAL_EVENT_LIST. */
#include "binding.h"

#include <stddef.h>
#include <string.h>

typedef struct {
    PyObject_HEAD
    PyObject *dict;
} EventObject;

static const char *event_type_name(int type)
{
    switch (type) {
#define EVENT_NAME_(NAME, value, text) \
    case CAUDAL_EVENT_##NAME: return text;
        CAUDAL_EVENT_LIST(EVENT_NAME_)
#undef EVENT_NAME_
    default: return "unknown";
    }
}

static int Event_traverse(EventObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->dict);
    return 0;
}

static int Event_clear(EventObject *self)
{
    Py_CLEAR(self->dict);
    return 0;
}

static void Event_dealloc(EventObject *self)
{
    PyObject_GC_UnTrack(self);
    Event_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Event_repr(EventObject *self)
{
    PyObject *type = self->dict ? PyDict_GetItemString(self->dict, "type") : NULL;
    PyObject *rank = self->dict ? PyDict_GetItemString(self->dict, "rank") : NULL;
    PyObject *step = self->dict ? PyDict_GetItemString(self->dict, "step") : NULL;
    PyObject *name = self->dict ? PyDict_GetItemString(self->dict, "name") : NULL;
    PyObject *key = self->dict ? PyDict_GetItemString(self->dict, "key") : NULL;
    if (!type || !rank)
        return PyUnicode_FromString("<caudal.Event>");
    if (name)
        return PyUnicode_FromFormat("<caudal.Event %S rank=%R step=%R name=%R>", type, rank,
                                    step ? step : Py_None, name);
    if (key)
        return PyUnicode_FromFormat("<caudal.Event %S rank=%R key=%R>", type, rank, key);
    return PyUnicode_FromFormat("<caudal.Event %S rank=%R step=%R>", type, rank,
                                step ? step : Py_None);
}

static PyObject *Event_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    (void)type;
    (void)args;
    (void)kwds;
    PyErr_SetString(PyExc_TypeError, "Event objects come from Receiver.next()");
    return NULL;
}

static PyObject *Event_asdict(EventObject *self, PyObject *noargs)
{
    (void)noargs;
    return self->dict ? PyDict_Copy(self->dict) : PyDict_New();
}

static PyGetSetDef Event_getset[] = {
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyMethodDef Event_methods[] = {
    {"asdict", METH(Event_asdict), METH_NOARGS, "the event's attributes as a dict"},
    {NULL, NULL, 0, NULL}};

PyTypeObject Event_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "caudal.Event",
    .tp_basicsize = sizeof(EventObject),
    .tp_dealloc = SLOT(destructor, Event_dealloc),
    .tp_repr = SLOT(reprfunc, Event_repr),
    .tp_getattro = PyObject_GenericGetAttr,
    .tp_setattro = PyObject_GenericSetAttr,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "An event from Receiver.next(). Every event has type, rank, size,\n"
              "connection and step (None where the type has none). By type:\n"
              "  connect     -\n"
              "  declare     name, dtype, order, variable, ndim, shape, start, count\n"
              "              (tuples), array (all of these as an ArrayInfo)\n"
              "  block       name, dtype, order, variable, ndim, shape, start, array,\n"
              "              count (elements in this block), nbytes,\n"
              "              in_shared_memory, block (a Block)\n"
              "  step_end    nblocks\n"
              "  drop        first_step, step (the last dropped), ndropped\n"
              "  steer       key, value\n"
              "  bye         counters (dict)\n"
              "  disconnect  status, message\n"
              "  refused     status, message (a connection that never authenticated\n"
              "              was closed; rank is the one it claimed, or -1: log it)\n"
              "  steps       (Receiver(gather=True) only; rank -1) blocks: a list of\n"
              "              Blocks (each with name, rank, step, count), those of\n"
              "              steps now complete first, ordered by step and rank;\n"
              "              ncomplete: how many those are (the rest went early,\n"
              "              their step not complete yet); progress: {rank: highest\n"
              "              finished step, -1: none} of the connected ranks; drops:\n"
              "              [(rank, first, last, count)] since the last steps event",
    .tp_traverse = SLOT(traverseproc, Event_traverse),
    .tp_clear = SLOT(inquiry, Event_clear),
    .tp_methods = Event_methods,
    .tp_getset = Event_getset,
    .tp_dictoffset = offsetof(EventObject, dict),
    .tp_new = Event_new,
};

/* ---------------------------------------------------------- STEPS */

/* The array names of one event's blocks: a few arrays, many blocks. */
#define NAMES_KEPT 16

static PyObject *block_name(const caudal_array_info *a, const caudal_array_info **keys,
                            PyObject **names, int *n)
{
    for (int i = 0; i < *n; i++)
        if (keys[i] == a || strcmp(keys[i]->name, a->name) == 0)
            return Py_NewRef(names[i]);
    PyObject *name = PyUnicode_DecodeUTF8(a->name, (Py_ssize_t)strlen(a->name),
                                          "surrogateescape");
    if (name && *n < NAMES_KEPT) {
        keys[*n] = a;
        names[(*n)++] = Py_NewRef(name);
    }
    return name;
}

/* A STEPS event's blocks as a list of Blocks; every block is released if
 * this fails. */
static PyObject *steps_blocks(const caudal_event *ev)
{
    const caudal_array_info *keys[NAMES_KEPT];
    PyObject *names[NAMES_KEPT];
    int nnames = 0;
    PyObject *list = PyList_New((Py_ssize_t)ev->nblocks);
    uint32_t i = 0;
    for (; list && i < ev->nblocks; i++) {
        const caudal_step_block *b = &ev->blocks[i];
        PyObject *name = block_name(b->array, keys, names, &nnames);
        PyObject *block = name ? block_new(b, name) : NULL;
        Py_XDECREF(name);
        if (!block) {
            if (!name)
                caudal_block_release(b->block);
            i++;
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, block);
    }
    for (; i < ev->nblocks; i++) /* not made into Blocks: still ours to give back */
        caudal_block_release(ev->blocks[i].block);
    for (int k = 0; k < nnames; k++)
        Py_DECREF(names[k]);
    return list;
}

static PyObject *steps_progress(const caudal_event *ev)
{
    PyObject *d = PyDict_New();
    for (uint32_t i = 0; d && i < ev->nprogress; i++) {
        PyObject *k = PyLong_FromLong(ev->progress[i].rank);
        PyObject *v = k ? PyLong_FromLongLong(ev->progress[i].high) : NULL;
        if (!v || PyDict_SetItem(d, k, v) < 0)
            Py_CLEAR(d);
        Py_XDECREF(k);
        Py_XDECREF(v);
    }
    return d;
}

static PyObject *steps_drops(const caudal_event *ev)
{
    PyObject *list = PyList_New((Py_ssize_t)ev->ndrops);
    for (uint32_t i = 0; list && i < ev->ndrops; i++) {
        const caudal_rank_drop *d = &ev->drops[i];
        PyObject *t = Py_BuildValue("(iKKK)", d->rank, (unsigned long long)d->first_step,
                                    (unsigned long long)d->last_step,
                                    (unsigned long long)d->count);
        if (!t)
            Py_CLEAR(list);
        else
            PyList_SET_ITEM(list, (Py_ssize_t)i, t);
    }
    return list;
}

/* ---------------------------------------------------------- ArrayInfo */

/* A named tuple of a declaration, shared by declare and block events. */
PyTypeObject *ArrayInfo_Type;
static PyStructSequence_Field ArrayInfo_fields[] = {
    {"name", "array name"},
    {"dtype", "dtype name"},
    {"order", "'C' or 'F'"},
    {"variable", "True for a variable-length 1-D array"},
    {"shape", "global shape (tuple)"},
    {"start", "this rank's block start (tuple)"},
    {"count", "this rank's block count (tuple); for a variable array, (capacity,)"},
    {NULL, NULL}};
#define ARRAYINFO_NFIELDS 7
static PyStructSequence_Desc ArrayInfo_desc = {
    "caudal.ArrayInfo", "An array's declaration, as a rank sent it.", ArrayInfo_fields,
    ARRAYINFO_NFIELDS};

int arrayinfo_init(void)
{
    ArrayInfo_Type = PyStructSequence_NewType(&ArrayInfo_desc);
    return ArrayInfo_Type ? 0 : -1;
}

static PyObject *u64_tuple_obj(const uint64_t *v, int n)
{
    PyObject *t = PyTuple_New(n);
    if (!t)
        return NULL;
    for (int k = 0; k < n; k++) {
        PyObject *x = PyLong_FromUnsignedLongLong((unsigned long long)v[k]);
        if (!x) {
            Py_DECREF(t);
            return NULL;
        }
        PyTuple_SET_ITEM(t, k, x);
    }
    return t;
}

/* d[key] = value, taking the reference; -1 if value is NULL (an error). */
static int set_item(PyObject *d, const char *key, PyObject *value)
{
    if (!value)
        return -1;
    int rc = PyDict_SetItemString(d, key, value);
    Py_DECREF(value);
    return rc;
}

/* The declaration's fields, as attributes and as one ArrayInfo. */
static int event_array_info(PyObject *d, const caudal_array_info *a, int block_event)
{
    int nd = a->ndim < 1 ? 1 : a->ndim > CAUDAL_MAX_DIMS ? CAUDAL_MAX_DIMS : a->ndim;
    PyObject *info = PyStructSequence_New(ArrayInfo_Type);
    if (!info)
        return -1;
    PyObject *vals[ARRAYINFO_NFIELDS] = {
        PyUnicode_DecodeUTF8(a->name, (Py_ssize_t)strlen(a->name), "surrogateescape"),
        PyUnicode_FromString(caudal_dtype_name(a->dtype)),
        PyUnicode_FromString(a->order == CAUDAL_ORDER_F ? "F" : "C"),
        PyBool_FromLong(a->variable),
        u64_tuple_obj(a->shape, nd),
        u64_tuple_obj(a->start, nd),
        u64_tuple_obj(a->count, nd)};
    int bad = 0;
    for (int k = 0; k < ARRAYINFO_NFIELDS; k++) {
        if (!vals[k])
            bad = 1;
        else
            PyStructSequence_SET_ITEM(info, k, vals[k]);
    }
    if (bad) {
        for (int k = 0; k < ARRAYINFO_NFIELDS; k++)
            if (!vals[k])
                PyStructSequence_SET_ITEM(info, k, Py_NewRef(Py_None));
        Py_DECREF(info);
        return -1;
    }
    for (int k = 0; k < ARRAYINFO_NFIELDS; k++) {
        if (k == 6 && block_event)
            break; /* a block event's count is its number of elements */
        if (PyDict_SetItemString(d, ArrayInfo_fields[k].name, vals[k]) < 0) {
            Py_DECREF(info);
            return -1;
        }
    }
    if (set_item(d, "ndim", PyLong_FromLong(nd)) < 0 ||
        PyDict_SetItemString(d, "array", info) < 0) {
        Py_DECREF(info);
        return -1;
    }
    Py_DECREF(info);
    return 0;
}

PyObject *event_object(const caudal_event *ev)
{
    PyObject *blockobj = NULL;
    if (ev->type == CAUDAL_EVENT_BLOCK && ev->block) {
        blockobj = block_from_event(ev);
        if (!blockobj)
            return NULL;
    } else if (ev->type == CAUDAL_EVENT_STEPS) {
        blockobj = steps_blocks(ev); /* the list: the Blocks give their blocks back */
        if (!blockobj)
            return NULL;
    }
    EventObject *self = PyObject_GC_New(EventObject, &Event_Type);
    if (!self) {
        Py_XDECREF(blockobj);
        return NULL;
    }
    self->dict = PyDict_New();
    PyObject_GC_Track(self);
    PyObject *d = self->dict;
    if (!d)
        goto fail;
    int has_step = ev->type == CAUDAL_EVENT_BLOCK || ev->type == CAUDAL_EVENT_STEP_END ||
                   ev->type == CAUDAL_EVENT_DROP;
    if (set_item(d, "type", PyUnicode_FromString(event_type_name(ev->type))) < 0 ||
        set_item(d, "rank", PyLong_FromLong(ev->rank)) < 0 ||
        set_item(d, "size", PyLong_FromLong(ev->size)) < 0 ||
        set_item(d, "connection", PyLong_FromUnsignedLongLong(ev->connection)) < 0 ||
        set_item(d, "step", has_step ? PyLong_FromUnsignedLongLong(ev->step)
                                     : Py_NewRef(Py_None)) < 0)
        goto fail;
    switch (ev->type) {
    case CAUDAL_EVENT_DECLARE:
        if (event_array_info(d, ev->array, 0) < 0)
            goto fail;
        break;
    case CAUDAL_EVENT_BLOCK:
        if (event_array_info(d, ev->array, 1) < 0 ||
            set_item(d, "count", PyLong_FromUnsignedLongLong(ev->count)) < 0 ||
            set_item(d, "nbytes", PyLong_FromUnsignedLongLong(ev->nbytes)) < 0 ||
            set_item(d, "in_shared_memory", PyBool_FromLong(ev->in_shared_memory)) < 0 ||
            PyDict_SetItemString(d, "block", blockobj ? blockobj : Py_None) < 0)
            goto fail;
        break;
    case CAUDAL_EVENT_STEP_END:
        if (set_item(d, "nblocks", PyLong_FromUnsignedLong(ev->nblocks)) < 0)
            goto fail;
        break;
    case CAUDAL_EVENT_DROP:
        if (set_item(d, "first_step", PyLong_FromUnsignedLongLong(ev->first_step)) < 0 ||
            set_item(d, "ndropped", PyLong_FromUnsignedLongLong(ev->ndropped)) < 0)
            goto fail;
        break;
    case CAUDAL_EVENT_STEER:
        if (set_item(d, "key", PyUnicode_DecodeUTF8(ev->key, (Py_ssize_t)strlen(ev->key),
                                                    "surrogateescape")) < 0 ||
            set_item(d, "value", steer_value_object(ev->value_type, ev->value_double,
                                                    ev->value_int64, ev->value_string)) < 0)
            goto fail;
        break;
    case CAUDAL_EVENT_BYE:
        if (set_item(d, "counters", counters_dict(&ev->counters)) < 0)
            goto fail;
        break;
    case CAUDAL_EVENT_STEPS:
        if (PyDict_SetItemString(d, "blocks", blockobj) < 0 ||
            set_item(d, "ncomplete", PyLong_FromUnsignedLong(ev->ncomplete)) < 0 ||
            set_item(d, "progress", steps_progress(ev)) < 0 ||
            set_item(d, "drops", steps_drops(ev)) < 0)
            goto fail;
        break;
    case CAUDAL_EVENT_DISCONNECT:
    case CAUDAL_EVENT_REFUSED: {
        const char *m = ev->message ? ev->message : "";
        if (set_item(d, "status", PyLong_FromLong(ev->status)) < 0 ||
            set_item(d, "message", PyUnicode_DecodeUTF8(m, (Py_ssize_t)strlen(m), "replace")) < 0)
            goto fail;
        break;
    }
    default:
        break;
    }
    Py_XDECREF(blockobj);
    return (PyObject *)self;
fail:
    Py_XDECREF(blockobj); /* the Block gives the block back when it goes */
    Py_DECREF(self);
    return NULL;
}
