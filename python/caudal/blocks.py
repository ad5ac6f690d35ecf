"""The blocks of a global array, and where the work on each of them runs.

Every kernel (caudal.stats, caudal.stencil, caudal.extract, caudal.features,
caudal.temporal) is a function of one block that returns a small partial
state, and a merge of partial states. This module runs the first next to each
block and the merges as a tree, whatever the array is:

- a `StepArray` from `caudal run`, whose blocks are Ray objects on the node
  of the ingest actor that received them: one Ray task per block, pinned to
  that node, and a tree of Ray tasks for the merges, so only partial states
  and halo faces cross nodes (a reduction over a few MiB of blocks on the
  caller's own node runs in the caller, where a task would cost more);
- a Dask array (a slice of a StepArray's ``.data``, or any computation): one
  Dask task per chunk, run by Dask-on-Ray when Ray is up, else by Dask;
- a NumPy array: one block, computed in this process.

Blocks reach the kernels as they are stored: contiguous in C or Fortran
order. `c_view` gives the C-contiguous view of a block of a C or Fortran
array without a copy (a Fortran block read with its axes reversed), so the C
kernels see one layout; the array's order, not the block's flags, decides,
because a block of extent 1 is both and its neighbours' halos must agree.
`flat_view` is for kernels to which the order of the elements is no matter.
"""

import dataclasses
import functools
import math
import threading
import weakref
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from .analytics import StepArray
from .catalog import BlockRef, global_array

__all__ = ["Block", "Grid", "KernelError", "as_grid", "c_view", "flat_view", "map_blocks",
           "step_array"]

FAN_IN = 8  # partial states per merge task: a shallow tree, small tasks
# Reductions over the blocks on the caller's own node that hold no more than
# this run in the caller: a Ray task costs a few milliseconds, more than
# reading a few MiB from the local store (zero copy) and reducing them.
SMALL_HERE_BYTES = 8 << 20


class KernelError(ValueError):
    """A kernel refused its input; the message names the array, the step and,
    for a block, the rank that published it and where it lies."""


@dataclass(frozen=True)
class Block:
    """One block of a Grid: where it lies in the global array, and its data."""

    pos: tuple  # index in the grid of blocks
    start: tuple  # offset in the global array
    count: tuple  # extent
    # A catalog.BlockRef for a block of `caudal run` (or a task's result on
    # one, next to it), as the ingest made it; a Dask Delayed; a NumPy array.
    data: Any

    @property
    def stored(self) -> Optional[BlockRef]:
        """The BlockRef of a block in Ray's store, else None."""
        return self.data if isinstance(self.data, BlockRef) else None

    @property
    def node(self) -> Optional[str]:
        """The Ray node holding the block, when known."""
        s = self.stored
        return None if s is None else s.node

    @property
    def rank(self) -> Optional[int]:
        """The rank that published the block, when known."""
        s = self.stored
        return None if s is None else s.rank

    def args(self):
        """The block as task arguments: Ray resolves a reference only at the
        top level of the arguments, so an item of a list object travels as
        the list's reference followed by At(index), which _checked resolves."""
        s = self.stored
        if s is None:
            return (self.data,)
        return (s.ref,) if s.index is None else (s.ref, At(s.index))

    def holding(self, obj, array):
        """This block of `array` held by obj: the result of a task that ran
        on it, on its node."""
        s = self.stored
        return dataclasses.replace(self, data=obj if s is None else s.holding(obj, array))

    def where(self, grid):
        region = ", ".join("%d:%d" % (s, s + c) for s, c in zip(self.start, self.count))
        if self.rank is None:
            return "%s, block [%s]" % (grid.describe(), region)
        return "%s [%s]" % (describe_array(grid.name, grid.step, self.rank), region)


# ---------------------------------------------------------------- backends
#
# Where the blocks of a grid are, and so how work on them runs: a backend is
# one of the three objects RAY, DASK and LOCAL below. Code that needs to tell
# them apart asks the grid's backend to do the thing instead.


def on_node(node, **options):
    """Ray options (for ``.options()``) that run a task or an actor on
    `node` and nowhere else; node None: anywhere. The one place Caudal pins
    work to a node.

    Strict (soft=False): a soft affinity lets Ray run a task elsewhere when
    the node is busy, pulling the block across, and place an actor on
    another node; if the node is gone, so are the blocks it held, so
    elsewhere cannot help."""
    if node is not None:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=False)
    return options


_remote_cache = {}


def _remote(fn):
    import ray

    f = _remote_cache.get(fn)
    if f is None:
        f = _remote_cache[fn] = ray.remote(fn)
    return f


class _Ray:
    """Blocks in Ray's object store, each on a known node: work runs in
    tasks and actors pinned there."""

    def __init__(self):
        # node -> an actor there whose run(fn, *args) does per-block work in
        # its own process: caudal run's ingest actors, which put the blocks
        # in the first place. A call to an actor that is already up costs
        # no worker process (80 MiB each, one per core, kept up for tasks)
        # and no scheduling; nodes without one get tasks pinned there.
        self.executors = {}
        # relay name -> relay (runtime.relay): reductions over steps that
        # came through relays go down their tree (report.Tree).
        self.relays = {}

    def submit(self, fn, args, node=None, num_returns=1):
        executor = self.executors.get(node) if node is not None else None
        if executor is not None:
            return executor.run.options(num_returns=num_returns).remote(fn, *args)
        return _remote(fn).options(**on_node(node, num_returns=num_returns)).remote(*args)

    def share(self, value):
        """value for the tasks of many steps: once in the store, each node
        reading it from its own copy."""
        import ray

        return ray.put(value)

    def fetch(self, objs):
        """The values of objs, references fetched together, values as they are."""
        import ray

        objs = list(objs)
        at = [i for i, o in enumerate(objs) if isinstance(o, ray.ObjectRef)]
        for i, v in zip(at, ray.get([objs[i] for i in at])):
            objs[i] = v
        return objs

    def blocks_here(self, grid):
        """Positions of the blocks in this process's node's store."""
        import ray

        me = ray.get_runtime_context().get_node_id()
        return [p for p, b in grid.blocks.items() if b.node == me]

    def assemble(self, grid):
        """A StepArray: the grid, and a Dask array over its blocks made
        when asked for."""
        return StepArray(grid.step, blocks=grid, shape=grid.shape, dtype=grid.dtype,
                         make_data=lambda: global_array(
                             grid.layout, {b.rank: b.data for b in grid.blocks.values()},
                             grid.step))

    # State kept next to the blocks (caudal.temporal): one keeper per node,
    # an actor there, which the blocks reach without leaving their node.

    def keeper_key(self, node):
        return ("ray", node)

    def new_keeper(self, cls, node):
        import ray

        return ray.remote(cls).options(**on_node(node, num_cpus=0)).remote()

    def send(self, grid, keeper_of, method, *args):
        """keeper.method(pos, where, *args, *block.args()) for every block,
        on the keeper of its node; the calls are returned unfinished."""
        return [getattr(keeper_of(b.node), method).remote(pos, b.where(grid), *args, *b.args())
                for pos, b in grid.blocks.items()]

    def wait(self, calls):
        import ray

        ray.get(calls)

    def ask(self, keepers, method):
        import ray

        return ray.get([getattr(k, method).remote() for k in keepers])


class _Here:
    """Blocks this process computes or holds (Dask chunks, NumPy arrays):
    state is kept here."""

    def blocks_here(self, grid):
        return []  # only blocks in Ray's store have a known node

    def share(self, value):
        return value

    def keeper_key(self, node):
        return "here"

    def new_keeper(self, cls, node):
        return cls()

    def send(self, grid, keeper_of, method, *args):
        keys = sorted(grid.blocks)
        values = self.fetch([grid.blocks[k].args()[0] for k in keys])
        for pos, value in zip(keys, values):
            b = grid.blocks[pos]
            getattr(keeper_of(b.node), method)(pos, b.where(grid), *args, value, *b.args()[1:])
        return []

    def wait(self, calls):
        pass

    def ask(self, keepers, method):
        return [getattr(k, method)() for k in keepers]


class _Dask(_Here):
    """Dask chunks: one Dask task each, run by Dask-on-Ray when Ray is up."""

    def submit(self, fn, args, node=None, num_returns=1):
        import dask

        nout = num_returns if num_returns > 1 else None
        return dask.delayed(fn, pure=True, nout=nout)(*args)

    def fetch(self, objs):
        import dask

        return list(dask.compute(*objs, scheduler=_dask_scheduler()))

    def assemble(self, grid):
        """A Dask array of the chunks, zeros where a block is empty."""
        import dask.array as da

        def chunk(pos):
            b = grid.blocks.get(pos)
            if b is None:
                return da.zeros([c[i] for c, i in zip(grid.chunks, pos)], dtype=grid.dtype)
            return da.from_delayed(b.data, b.count, dtype=grid.dtype)

        return da.block(_nest(grid.chunks, chunk)) if grid.blocks else \
            da.zeros(grid.shape, dtype=grid.dtype)


def _dask_scheduler():
    """Dask-on-Ray when this process is connected to Ray (chunks may be
    ObjectRefs only Ray can resolve), else Dask's default."""
    import sys

    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        from ray.util.dask import ray_dask_get

        return ray_dask_get
    return None


class _Local(_Here):
    """One NumPy array, computed in this process."""

    def submit(self, fn, args, node=None, num_returns=1):
        return fn(*args)

    def fetch(self, objs):
        return list(objs)

    def assemble(self, grid):
        if not grid.blocks:
            return np.zeros(grid.shape, dtype=grid.dtype)
        return next(iter(grid.blocks.values())).data


RAY, DASK, LOCAL = _Ray(), _Dask(), _Local()


@dataclass(frozen=True)
class At:
    """Marks the argument before it as a list whose item `index` is meant."""

    index: int


def resolve(args):
    """Arguments with every (list, At(i)) pair replaced by list[i]."""
    out = []
    for a in args:
        if isinstance(a, At):
            out[-1] = out[-1][a.index]
        else:
            out.append(a)
    return out


def _checked(fn, where, *args):
    """Run a per-block function; a refusal names the block it came from.
    where: its description, or a function that makes it (only on failure:
    the text costs more than a small block's kernel)."""
    try:
        return fn(*resolve(args))
    except (ValueError, TypeError, MemoryError) as e:
        raise KernelError("%s: %s" % (where() if callable(where) else where, e)) from None


# ---------------------------------------------------------------- grids


class Grid:
    """The blocks of one step of an array, on a rectilinear grid (``chunks``
    as in Dask), each with the node it lives on when known."""

    def __init__(self, name, step, shape, dtype, chunks, blocks, backend, layout=None,
                 order="C"):
        self.name = name
        self.order = order  # of every block: "C" or "F"
        self.step = step
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.chunks = chunks
        self.blocks = blocks  # pos -> Block, only the non-empty ones
        self.backend = backend
        self.layout = layout  # the catalog's Layout, for arrays from caudal run

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        return math.prod(self.shape)

    def describe(self):
        return describe_array(self.name, self.step)

    def fail(self, text):
        raise KernelError("%s: %s" % (self.describe(), text))

    # ---- checks every kernel makes before it submits anything

    def require_real(self, kernel):
        if self.dtype.kind not in "iuf":
            self.fail("%s takes integer and floating-point arrays, not %s" % (kernel, self.dtype))

    def require_elements(self, kernel):
        if self.size == 0:
            self.fail("%s needs elements; the array's shape is %s" % (kernel, self.shape))

    def require_fixed(self, kernel):
        if self.layout is not None and self.layout.variable:
            self.fail("%s needs a fixed grid; this is a variable-length array" % kernel)

    def require_same_grid(self, others, kernel):
        for o in others:
            if o.shape != self.shape or o.chunks != self.chunks:
                raise KernelError("%s: %s and %s differ in shape or blocks: %s in %s against "
                                  "%s in %s" % (kernel, self.describe(), o.describe(),
                                                self.shape, self.chunks, o.shape, o.chunks))

    # ---- running work

    def map(self, fn, *args, num_returns=1, small_here=False):
        """fn(block, *args) for every block, on its node: pos -> result.
        small_here: when the blocks on this process's node hold at most
        SMALL_HERE_BYTES, fn runs on them here (for small partial states,
        which a reduction brings here anyway)."""
        local = {}
        if small_here:
            mine = self.backend.blocks_here(self)
            size = self.dtype.itemsize * sum(math.prod(self.blocks[p].count) for p in mine)
            if mine and size <= SMALL_HERE_BYTES:
                # Per block, only what it needs (128 blocks of a node are
                # a step's latency): its BlockRef, its item of a list once got.
                stored = [(p, self.blocks[p].data) for p in mine]
                refs = list(dict.fromkeys(s.ref for _, s in stored))  # lists once
                got = dict(zip(refs, self.fetch(refs)))
                for p, s in stored:
                    obj = got[s.ref]
                    block = obj if s.index is None else obj[s.index]
                    local[p] = _checked(fn, functools.partial(self.blocks[p].where, self), block,
                                        *args)
        out = {pos: self.backend.submit(_checked, (fn, b.where(self)) + b.args() + args,
                                        b.node, num_returns)
               for pos, b in self.blocks.items() if pos not in local}
        out.update(local)
        return out

    def run_on(self, b, fn, *args):
        """fn(block, *args) for the one block b, on its node."""
        return self.backend.submit(_checked, (fn, b.where(self)) + b.args() + args, b.node)

    def map_each(self, fn, args_of, num_returns=1):
        """fn(*args_of(block)) for every block, on its node: pos -> result."""
        return {pos: self.backend.submit(_checked, (fn, b.where(self)) + tuple(args_of(b)),
                                         b.node, num_returns)
                for pos, b in self.blocks.items()}

    def reduce(self, merge, parts):
        """Merge partial states (pos -> state) in a tree of tasks, each next
        to the first of its inputs, and return the merged state. The root of
        the tree (at most FAN_IN states) is merged here: its result is
        needed here, and a task would add a round trip."""
        level = [(parts[p], self.blocks[p].node) for p in sorted(parts)]
        if not level:
            raise KernelError("%s: no blocks to merge" % self.describe())
        return _merged(merge, level, self.backend.submit, self.fetch)

    def map_reduce(self, fn, merge, *args):
        """merge of fn(block, *args) over every block (map, then reduce),
        None when the grid has no block."""
        if not self.blocks:
            return None
        return self.reduce(merge, self.map(fn, *args, small_here=True))

    def fetch(self, objs):
        return self.backend.fetch(objs)

    # ---- halos

    def faces(self):
        """pos -> the block's 2 * ndim boundary planes (lo and hi per axis,
        in C view order), one task per block on its node."""
        n = 2 * self.ndim
        out = self.map(_faces, self.order, num_returns=n)
        if n == 1:  # a task with one return gives the object, not a list
            out = {p: [o] for p, o in out.items()}
        return out

    def halo(self, faces, pos):
        """For the block at pos: per axis, the lo neighbour's hi plane and the
        hi neighbour's lo plane (None at the global border), flattened."""
        out = []
        for d in range(self.ndim):
            lo = pos[:d] + (pos[d] - 1,) + pos[d + 1:]
            hi = pos[:d] + (pos[d] + 1,) + pos[d + 1:]
            out.append(faces[lo][2 * d + 1] if lo in self.blocks else None)
            out.append(faces[hi][2 * d] if hi in self.blocks else None)
        return out

    # ---- results with the same blocks

    def derive(self, objs, dtype, name):
        """A grid of new objects (pos -> obj), block for block like this one."""
        blocks = {p: b.holding(objs[p], name) for p, b in self.blocks.items()}
        layout = self.layout
        if layout is not None:
            layout = dataclasses.replace(layout, name=name, dtype=np.dtype(dtype))
        return Grid(name, self.step, self.shape, dtype, self.chunks, blocks, self.backend,
                    layout, self.order)

    def assemble(self):
        """What the user gets back: a StepArray for Ray blocks (a Dask array
        over them plus this grid), a Dask array for Dask chunks, NumPy for
        one local block."""
        return self.backend.assemble(self)


def require_alike(grids, kernel):
    """What a kernel working block by block across several grids needs of
    them: real values, a fixed grid, elements, the same blocks, one order."""
    g = grids[0]
    for x in grids:
        x.require_real(kernel)
        x.require_fixed(kernel)
        x.require_elements(kernel)
    g.require_same_grid(grids[1:], kernel)
    if any(x.order != g.order for x in grids):
        raise KernelError("%s: the components mix C and Fortran order" % kernel)


def describe_array(name, step=None, rank=None):
    """How a kernel's error names an array, a step of it, a rank's block."""
    s = "array %r" % name if name else "the array"
    s = s if step is None else "%s, step %d" % (s, step)
    return s if rank is None else "%s, rank %d's block" % (s, rank)


def _merged(merge, level, submit=None, fetch=list):
    """The states of `level` ((state or reference, node), in block order)
    merged FAN_IN at a time, in the same groups whatever holds them (so
    that the result is the same to the last bit): a group of values
    here, any other in a task next to its first (submit)."""
    while len(level) > FAN_IN:
        nxt = []
        for i in range(0, len(level), FAN_IN):
            group = level[i:i + FAN_IN]
            if len(group) == 1:
                nxt.append(group[0])
                continue
            objs = tuple(o for o, _ in group)
            if all(_is_value(o) for o in objs):  # computed here: merge here
                nxt.append((merge(*objs), group[0][1]))
            else:
                nxt.append((submit(merge, objs, group[0][1]), group[0][1]))
        level = nxt
    return merge(*fetch([o for o, _ in level]))


def _is_value(obj):
    import sys

    ray = sys.modules.get("ray")
    return ray is None or not isinstance(obj, ray.ObjectRef)


def _nest(chunks, leaf, prefix=()):
    d = len(prefix)
    if d == len(chunks):
        return leaf(prefix)
    return [_nest(chunks, leaf, prefix + (i,)) for i in range(len(chunks[d]))]


def _offsets(sizes):
    return tuple(np.cumsum((0,) + tuple(sizes))[:-1].tolist())


# ---------------------------------------------------------------- making grids


def step_array(layout, blocks, step, token=None, tree=None, received=None):
    """The StepArray of one step of an array from `caudal run`: its Dask
    array and its grid of blocks, each made when first asked for.
    blocks: rank -> catalog.BlockRef, or a function that returns them
    (called once, by the first of the two made). token: what names the
    step's blocks in the graph's name, when the caller knows it (else
    global_array hashes each block's identity). tree: the function that
    runs per-block work down the report tree (report.StepBlocks.tree), for
    reductions (TreeStep) while neither is made. received: the
    reductions computed at receipt (runtime/receipt.Received: ReceivedStep)."""
    if callable(blocks):
        lock, got = threading.Lock(), []

        def refs():
            with lock:
                if not got:
                    got.append(blocks())
            return _kept(got[0], layout, step, received)
    else:
        refs = lambda: _kept(blocks, layout, step, received)  # noqa: E731
    return StepArray(step, shape=None if layout.variable else layout.shape, dtype=layout.dtype,
                     make_data=lambda: global_array(layout, refs(), step, token=token),
                     make_blocks=lambda: _step_grid(layout, refs(), step),
                     tree=None if tree is None else (layout, tree), received=received)


def _kept(blocks, layout, step, received):
    """The step's BlockRefs, refused when its blocks were not put (an array
    whose analyses are all reductions_only)."""
    if any(b.ref is None for b in blocks.values()):
        raise KernelError("%s: %s" % (describe_array(layout.name, step),
                                      received.unkept_error() if received is not None
                                      else "its blocks were not kept"))
    return blocks


def _step_grid(layout, blocks, step):
    grid = {}
    if layout.variable:
        ranks = [r for r in range(layout.nranks) if r in blocks and blocks[r].count > 0]
        sizes = tuple(blocks[r].count for r in ranks)
        starts = _offsets(sizes)
        for i, r in enumerate(ranks):
            grid[(i,)] = Block((i,), (starts[i],), (sizes[i],), blocks[r])
        shape = (sum(sizes),)
        chunks = (sizes,) if ranks else ((0,),)
    else:
        shape, chunks = layout.shape, layout.chunks
        missing = [r for r in layout.positions if r not in blocks]
        if missing:  # as global_array says it
            global_array(layout, blocks, step)
        for r, (pos, start, count) in _geometry(layout).items():
            grid[pos] = Block(pos, start, count, blocks[r])
    return Grid(layout.name, step, shape, layout.dtype, chunks, grid, RAY, layout, layout.order)


_geometries = weakref.WeakKeyDictionary()


def _geometry(layout):
    """rank -> (pos, start, count) of each block of a fixed layout, worked
    out once per layout: every step of the array has the same."""
    g = _geometries.get(layout)
    if g is None:
        offs = [_offsets(c) for c in layout.chunks]
        g = {r: (pos, tuple(offs[d][i] for d, i in enumerate(pos)),
                 tuple(layout.chunks[d][i] for d, i in enumerate(pos)))
             for r, pos in layout.positions.items()}
        _geometries[layout] = g
    return g


def _dask_grid(x, name=None, step=None):
    if any(math.isnan(c) for cs in x.chunks for c in cs):
        raise KernelError("%s has chunks of unknown size; call compute_chunk_sizes() first"
                          % ("array %r" % name if name else "the Dask array"))
    delayed = x.to_delayed()
    offs = [_offsets(c) for c in x.chunks]
    blocks = {}
    for pos in np.ndindex(*[len(c) for c in x.chunks]):
        count = tuple(x.chunks[d][i] for d, i in enumerate(pos))
        if all(count):
            start = tuple(offs[d][i] for d, i in enumerate(pos))
            blocks[pos] = Block(pos, start, count, delayed[pos])
    return Grid(name, step, x.shape, x.dtype, x.chunks, blocks, DASK)


class TreeStep:
    """One step of an array from caudal run whose blocks came through the
    head's relays and were not resolved in this process: a reduction over
    it runs down the report tree (runtime.report.Tree), and only the blocks'
    partial states come here, where a Grid would first fetch a reference per
    node. It has what the reductions ask of a Grid: the checks and
    map_reduce, whose result is the Grid's to the last bit (the states are
    merged in block order, in the same groups)."""

    def __init__(self, x, layout, run):
        self.x, self.run = x, run
        self.layout = layout
        self.name, self.step = self.layout.name, x.step
        self.dtype = np.dtype(self.layout.dtype)
        self.shape = layout.shape  # a variable array's: known once its blocks answered
        self.needs = None  # the kernel that needs elements (require_elements)

    describe, fail, require_real = Grid.describe, Grid.fail, Grid.require_real

    def require_elements(self, kernel):
        """Known only once the blocks' sizes are, for a variable-length
        array: map_reduce checks it then."""
        self.needs = kernel
        if not self.layout.variable:
            Grid.require_elements(self, kernel)

    @property
    def size(self):
        return math.prod(self.shape)

    def map_reduce(self, fn, merge, *args):
        got = self.run(fn, args)
        if got is None:  # the grid was made meanwhile: it is cheaper now
            return as_grid(self.x).map_reduce(fn, merge, *args)
        return self._merge(got, merge)

    def _merge(self, got, merge):
        """[(rank, count, state), ...] of every block merged as the grid
        merges them."""
        layout = self.layout
        if layout.variable:
            states = [s for _, count, s in sorted(got, key=lambda g: g[0]) if count > 0]
            self.shape = (sum(count for _, count, _ in got),)
            if self.needs:
                Grid.require_elements(self, self.needs)
        else:
            where = _geometry(layout)
            states = [s for _, s in sorted(((where[r][0], s) for r, _, s in got if r in where),
                                           key=lambda p: p[0])]
        if not states:
            return None
        return _merged(merge, [(s, None) for s in states])


class ReceivedStep(TreeStep):
    """One step of an array from caudal run whose reductions may have been
    computed at receipt, on each block as it arrived in its ingest
    (runtime/receipt.py): a reduction whose states every block has merges
    them here, with no call to any actor, in the grid's order and groups
    (the same result to the last bit); any other takes the blocks' path
    (TreeStep or the grid), or fails when the blocks were not kept."""

    def __init__(self, x, received):
        super().__init__(x, received.layout, None)
        self.received = received

    def map_reduce(self, fn, merge, *args):
        got = self.received.states(fn, args)
        if got is not None:
            return self._merge(got, merge)
        if not self.received.kept():
            self.fail(self.received.missed_error(fn))
        tree = self.x.tree()
        g = TreeStep(self.x, *tree) if tree is not None else as_grid(self.x)
        if self.needs:  # deferred for a variable array (require_elements)
            g.require_elements(self.needs)
        return g.map_reduce(fn, merge, *args)

    def pair_reduce(self, fn, merge, old, args, kernel):
        """merge of fn(block, its rank's block of `old`, *args) over every
        block, from the states computed at receipt (a pair reduction:
        runtime/receipt.py), or None when they are not all there and both
        steps' blocks were kept: the caller then takes the blocks' path."""
        rec = self.received
        if not isinstance(old, StepArray) or old.received is None or old.received.array != rec.array:
            return None
        Grid.require_fixed(self, kernel)
        self.require_real(kernel)
        self.require_elements(kernel)
        got = rec.pair_states(fn, args, old.step)
        if got is not None:
            return self._merge(got, merge)
        if not (rec.kept() and old.received.kept()):
            self.fail(rec.pair_missed_error(kernel, old.step))
        return None


def as_reducible(x, name=None):
    """What a reduction (Grid.map_reduce) runs on: a ReceivedStep for a
    step of caudal run with states computed at receipt, a TreeStep for a
    step whose blocks the report tree holds, else as_grid(x, name)."""
    if isinstance(x, (Grid, TreeStep)):
        return x
    if isinstance(x, StepArray):
        if x.received is not None:
            return ReceivedStep(x, x.received)
        tree = x.tree()
        if tree is not None:
            return TreeStep(x, *tree)
    return as_grid(x, name)


def as_grid(x, name=None):
    """The grid of blocks of x: a StepArray, a Dask array, a NumPy array
    (one block), or a Grid."""
    if isinstance(x, Grid):
        return x
    if isinstance(x, TreeStep):
        x = x.x
    if isinstance(x, StepArray):
        if x.blocks is not None:
            return x.blocks
        return _dask_grid(x.data, name, x.step)
    try:
        import dask.array as da

        if isinstance(x, da.Array):
            return _dask_grid(x, name)
    except ImportError:  # pragma: no cover - dask is a dependency
        pass
    a = np.asarray(x)
    if a.ndim == 0:
        raise KernelError("%s is a scalar; the kernels take arrays"
                          % ("array %r" % name if name else "the input"))
    blocks = {}
    if a.size:
        blocks[(0,) * a.ndim] = Block((0,) * a.ndim, (0,) * a.ndim, a.shape, a)
    order = "F" if a.flags.f_contiguous and not a.flags.c_contiguous else "C"
    return Grid(name, None, a.shape, a.dtype, tuple((n,) for n in a.shape), blocks, LOCAL,
                order=order)


def map_blocks(fn, x, *args):
    """fn(block, *args) on every block of x, next to it; the results in the
    order of the blocks' positions. block is a NumPy array (read-only for
    Ray blocks, which are zero-copy views of the object store)."""
    g = as_grid(x)
    out = g.map(fn, *args)
    keys = sorted(out)
    return g.fetch([out[k] for k in keys])


# ---------------------------------------------------------------- per block


def c_view(block, order):
    """A C-contiguous view of a block of an array of `order` ("C" or "F")
    and whether its axes are reversed (Fortran); copies only a block that is
    not contiguous in that order."""
    b = np.asarray(block)
    if order == "F":
        return np.asfortranarray(b).T, True
    return np.ascontiguousarray(b), False


def flat_view(block):
    """The block's elements in memory order, without a copy when it is
    contiguous either way."""
    b = np.asarray(block)
    if b.flags.f_contiguous and not b.flags.c_contiguous:
        return b.T
    return np.ascontiguousarray(b)


def view_axis(axis, ndim, flipped):
    return ndim - 1 - axis if flipped else axis


def _faces(block, order):
    """Lo and hi planes per axis (in the block's axis order, each plane
    C-contiguous in the C view), for the neighbours' halos."""
    v, flipped = c_view(block, order)
    out = []
    for d in range(v.ndim):
        vd = view_axis(d, v.ndim, flipped)
        out.append(np.ascontiguousarray(v.take(0, axis=vd)))
        out.append(np.ascontiguousarray(v.take(v.shape[vd] - 1, axis=vd)))
    return out[0] if len(out) == 1 else tuple(out)
