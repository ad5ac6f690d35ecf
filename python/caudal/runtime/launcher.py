"""``caudal run``: a simulation with online analytics, in one command.

    caudal run -n 4 --analytics my_analytics.py -- ./heat2d 1024 1024 100

Starts an embedded local Ray (or joins --address), the head actor and one
ingest actor per Ray node, launches the simulation with mpiexec pointing its
ranks at their node's ingest actor (the same unix socket path on every node),
runs the analyses while the simulation computes, drains every complete step
once all ranks said goodbye, writes the run folder and prints a summary.
With --transit N the ranks' hosts need no Ray: N ingest actors listen on TCP
on the Ray nodes, and each rank streams to one of them (ranks in contiguous
blocks, rank r to endpoint r * N / ranks), with the job token.

Whatever ends the run, it ends the same way: the simulation is stopped if it
still runs, what is complete is analysed if that is quick, summary.json says
what was analysed and how the run ended ("end": reason, message, exit code),
Ray is shut down, and the run's private directory (socket, Ray's temp dir) is
removed. Exit codes: 0 completed; 1 an analysis call failed or timed out; 2
the simulation failed (non-zero exit, a rank killed, MPI_Abort, a rank left
without goodbye); 3 a declaration or setup error (also an analytics script
that does not load); 4 Caudal's own runtime failed (an
ingest actor or the head lost, a Ray failure); 5 --timeout expired; 130
interrupted (SIGINT), 143 terminated (SIGTERM). When several apply, the
first of 130/143, 5, 3, 4, 2, 1. One line says why on stderr; tracebacks
only with --debug (or CAUDAL_DEBUG=1).
"""

import collections
import contextlib
import functools
import inspect
import json
import math
import os
import pathlib
import re
import runpy
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
import traceback
import warnings

from ..analytics import analyses_in, array_dims, finishers_in
from .. import htmlreport
from .. import results
from ..results import SIM_TAIL, write_tables
from . import budget, placement, slurm
from .progress import Progress
from .private import private_dir, ray_token, remove_stale_dirs, start_guard
from .simulation import GRACE_SECONDS, Output, die_with_parent, stop_simulation

EXIT = {"completed": 0, "analysis_failed": 1, "simulation_failed": 2,
        "declaration_error": 3, "runtime_failed": 4, "timeout": 5}
# When several apply, the first of these wins (signals come before all).
PRIORITY = ("interrupted", "timeout", "declaration_error", "runtime_failed",
            "simulation_failed", "analysis_failed", "completed")

DRAIN_QUIET_SECONDS = 5  # a drain ends after this long without progress


def add_parser(sub):
    r = sub.add_parser("run", help="run a simulation with online analytics",
                       description=__doc__.split("\n\n")[1].strip())
    r.add_argument("-n", "--ranks", type=int, required=True, help="MPI ranks")
    r.add_argument("--analytics", required=True, help="the analytics script (Python)")
    r.add_argument("--address", help="join this Ray cluster instead of starting one")
    r.add_argument("--run-dir", help="where results go (default runs/<time>)")
    r.add_argument("--policy", choices=["block", "drop"], default="block",
                   help="when a rank's ring is full (default block)")
    r.add_argument("--ring-depth", type=int, default=0, help="slots per rank (default 4)")
    r.add_argument("--max-pending", type=int, default=8,
                   help="complete steps waiting for the analyses before ranks wait")
    r.add_argument("--transit", type=int, default=0, metavar="N",
                   help="in transit: the ranks stream over TCP (with the job token) to N "
                        "ingest endpoints on the Ray nodes, contiguous blocks of ranks to "
                        "each (rank r to endpoint r*N/ranks), and their hosts run no Ray; "
                        "N from 1 to the number of ranks. Default: in situ, each rank to "
                        "its own node's ingest through a unix socket and shared memory")
    r.add_argument("--analytics-nodes", type=int, default=0, metavar="K",
                   help="under Slurm with --transit: the last K nodes of the allocation run "
                        "Ray (the ingest endpoints and the analyses), the others the "
                        "simulation (default 1)")
    r.add_argument("--launcher", choices=["srun", "mpiexec"], default=None,
                   help="how the simulation starts: srun --mpi=pmi2 (the default inside a "
                        "Slurm allocation) or --mpiexec (the default elsewhere)")
    r.add_argument("--mpiexec", default="mpiexec",
                   help="the MPI launcher, a command line of its own (default mpiexec); in "
                        "situ on several Ray nodes caudal run adds the nodes and their rank "
                        "counts in its syntax (MPICH's -hosts, Open MPI's --host)")
    r.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="stop the whole run after this long (exit code 5)")
    r.add_argument("--analysis-timeout", type=float, default=300.0, metavar="SECONDS",
                   help="default deadline of one analysis call (default 300); "
                        "@caudal.analysis(..., timeout=) overrides it")
    r.add_argument("--workers", type=int, default=None, metavar="N",
                   help="Ray worker processes to start on each Ray node before the "
                        "simulation starts (about 65 MiB each), for Dask graphs "
                        "(StepArray.data) and your own Ray tasks; Caudal's kernels need "
                        "none. Default: 1 when the analytics use Dask (they import it or "
                        "an analysis names `data`), so that a Dask graph's first tasks "
                        "start at once (Ray starts more as needed), else 0; with 0 the "
                        "first Dask graph or task waits about a second")
    r.add_argument("--progress", type=float, default=30.0, metavar="SECONDS",
                   help="when stderr is not a terminal (a batch job's log), print a line of "
                        "progress every SECONDS (default 30; 0: none); on a terminal a live "
                        "table shows it")
    r.add_argument("--csv", action="store_true",
                   help="also write the recorded values as results.csv (results.parquet "
                        "is always written)")
    r.add_argument("--debug", action="store_true",
                   help="print tracebacks of internal errors (also CAUDAL_DEBUG=1)")
    r.add_argument("command", nargs="+", help="the simulation, after --")
    r.set_defaults(func=main)


class SetupError(Exception):
    """The run as given cannot start: arguments, the analytics script, the
    launcher. Exit code 3, like the simulation's declaration errors: what the
    user declared is wrong."""


def _load(path):
    if not os.path.isfile(path):
        raise SetupError("analytics script %s not found" % path)
    try:
        namespace = runpy.run_path(path)
    except Exception as e:  # the user's script: its own error, in one line
        where = " (line %s)" % e.lineno if isinstance(e, SyntaxError) else ""
        raise SetupError("the analytics script %s failed to load%s: %s: %s"
                         % (path, where, type(e).__name__, e)) from e
    analyses = analyses_in(namespace)
    if not analyses:
        raise SetupError("%s registers no analysis (use @caudal.analysis)" % path)
    try:
        array_dims(analyses)
    except ValueError as e:
        raise SetupError("%s: %s" % (path, e)) from None
    return analyses, finishers_in(namespace)


def uses_dask(analyses, finishers):
    """Whether the analytics compute Dask graphs, as far as their code
    tells: the script (or what it imported) imported Dask, or an analysis
    names `data` (a StepArray's Dask array) or `dask`. A user helper that
    does so unseen costs a second at its first graph (dask_on_ray)."""
    if "dask" in sys.modules:
        return True

    def names(code):
        yield from code.co_names
        for c in code.co_consts:
            if hasattr(c, "co_names"):
                yield from names(c)

    for a in list(analyses) + list(finishers):
        code = getattr(a.func, "__code__", None)
        if code is not None and {"data", "dask"} & set(names(code)):
            return True
    return False


def dask_on_ray(eager):
    """Dask-on-Ray as Dask's scheduler in this process: a step's Dask array
    has chunks only Ray resolves. ray.util.dask imports Dask's dataframes
    and pandas, 78 MiB of the driver's memory, so it is imported now only
    when the analytics use Dask (`eager`, see uses_dask), else when the
    first Dask graph is computed (a second or two, once)."""
    def enable():
        from ray.util.dask import enable_dask_on_ray

        with warnings.catch_warnings():  # Ray sets a Dask key Dask has renamed
            warnings.simplefilter("ignore", FutureWarning)
            enable_dask_on_ray()

    if eager:
        enable()
        return
    import dask

    def first_get(dsk, keys, **kwargs):
        from ray.util.dask import ray_dask_get

        enable()  # from now on Ray's own, with its shuffle settings
        return ray_dask_get(dsk, keys, **kwargs)

    dask.config.set(scheduler=first_get)


# ---- stopping: signals and the whole-run timeout -------------------------


class _Stop(BaseException):
    """Raised from a signal handler to stop the run (not an Exception, so
    that no `except Exception` in an analysis path swallows it)."""

    def __init__(self, reason, signum=None):
        super().__init__(reason)
        self.reason = reason
        self.signum = signum


class _Signals:
    """SIGINT, SIGTERM and the --timeout alarm: the first records why the
    run ends and, while `armed`, raises _Stop where the run is; once the
    run is being wound up they are only recorded (a second Ctrl-C during
    the drain skips the drain, see Run._drain)."""

    def __init__(self):
        self.reason = None
        self.signum = None
        self.armed = True
        self.old = {}

    def install(self):
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM):
            prev = signal.signal(s, self._handle)
            self.old.setdefault(s, prev)

    def restore(self):
        signal.setitimer(signal.ITIMER_REAL, 0)
        for s, h in self.old.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)

    def _handle(self, signum, frame):
        reason = "timeout" if signum == signal.SIGALRM else "interrupted"
        if self.reason is None or (reason == "interrupted" and self.reason != "interrupted"):
            self.reason, self.signum = reason, signum
        if self.armed:
            self.armed = False
            raise _Stop(reason, signum)


# ---- the run ---------------------------------------------------------------


def main(args):
    debug = getattr(args, "debug", False) or os.environ.get("CAUDAL_DEBUG") == "1"
    signals = _Signals()
    signals.install()
    try:
        return Run(args, signals, debug).run()
    except SetupError as e:  # nothing was started, no run folder written
        print("caudal run: %s" % e, file=sys.stderr)
        return EXIT["declaration_error"]
    except _Stop as e:  # before anything was started
        code = 128 + (e.signum or signal.SIGINT) if e.reason == "interrupted" else EXIT[e.reason]
        print("caudal run: %s before the simulation started" % (
            "interrupted" if e.reason == "interrupted" else "timed out"), file=sys.stderr)
        return code
    finally:
        signals.restore()


class Run:
    def __init__(self, args, signals, debug):
        self.args = args
        self.signals = signals
        self.debug = debug
        self.sim = None
        self.sim_output = None  # simulation.Output: its stdout and stderr
        self.rc = None
        self.driver = None
        self.head = None
        self.progress = None  # progress.Progress, while the loop runs
        self.reporter = None  # the process writing report.html (htmlreport.start)
        self.ingests = []
        self.endpoints = []  # per ingest actor, where it listens
        self.labels = []  # per ingest actor, how messages name it
        self.watches = {}  # ObjectRef of IngestActor.watch -> its label
        self.runtime_error = None  # Caudal's own failure, a line
        self.decl_errors = []
        self.setup_error = None
        self.capacity = {}  # Ray node -> its object store's bytes
        self.budget = None  # the store's budget, once the first step was analysed
        self.budget_error = None  # it cannot fit: the run is stopped (exit 3)
        self.stopped_by_us = False
        self.analysed_before_loss = None
        self.priv = None
        self.guard = None
        self.ray_tmp = None
        self.ray_started = False
        self.analyses = []
        self.alloc = None  # the Slurm allocation, when in one (and no --address)
        self.ray_nodes = self.sim_nodes = None  # under Slurm, by name
        self.cluster = None  # slurm.RayCluster: Ray started on the allocation
        self.node_names = {}  # Ray node id -> Slurm node name
        self.places = []  # where each ingest actor runs (placement.Place)

    def run(self):
        args = self.args
        t_start = time.time()
        if args.timeout is not None and args.timeout <= 0:
            raise SetupError("--timeout must be positive")
        if args.ranks < 1:
            raise SetupError("-n must be at least 1")
        if args.max_pending < 1:
            raise SetupError("--max-pending %d: the complete steps that may wait for the "
                             "analyses must be at least 1" % args.max_pending)
        if args.workers is not None and args.workers < 0:
            raise SetupError("--workers %d: the Ray workers to start per node must be 0 or "
                             "more" % args.workers)
        if args.transit < 0 or args.transit > args.ranks:
            raise SetupError("--transit %d: the number of ingest endpoints must be from 1 to "
                             "the number of ranks (%d)" % (args.transit, args.ranks))
        self._plan_slurm()
        if self.alloc and self.alloc.here != self.ray_nodes[0]:
            return self._relaunch()  # which keeps the time, and all the rest
        if os.environ.get(slurm.RELAUNCHED):
            slurm.listen_to_relauncher()
        if args.timeout is not None:
            signal.setitimer(signal.ITIMER_REAL, args.timeout)
        for path in remove_stale_dirs():
            print("caudal run: removed %s, left by a run that was killed" % path,
                  file=sys.stderr)
        analyses, finishers = _load(args.analytics)
        self.analyses = analyses
        self.run_dir = pathlib.Path(args.run_dir or "runs/%s" % time.strftime("%Y%m%d-%H%M%S"))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if results.clear(self.run_dir):
            print("caudal run: %s held an earlier run's results; they are replaced"
                  % self.run_dir, file=sys.stderr)
        self.command = self._command()
        self.priv = private_dir()
        self.guard = start_guard(self.priv)
        try:
            try:
                # A signal is only noted while Ray starts: a stop raised
                # inside ray.init or a first Ray call can leave Ray's IO
                # thread to crash the process (SIGSEGV) at shutdown, and a
                # half-started Ray's agents to outlive it.
                self.signals.armed = False
                self._start(analyses, finishers)
                if self.signals.reason:
                    raise _Stop(self.signals.reason, self.signals.signum)
                self.signals.armed = True
                self._loop()
            except _Stop:
                pass  # the reason is in self.signals
            except SetupError as e:  # found once Ray is up (how to place the ranks)
                self.setup_error = str(e)
            except Exception as e:  # Ray or Caudal itself: runtime failure, one line
                self._runtime_failed(e)
            self.signals.armed = False
            return self._finish(finishers, t_start)
        finally:
            self.signals.armed = False
            self._teardown()

    def _plan_slurm(self):
        """Inside a Slurm allocation (and without --address): which nodes
        run Ray and which the simulation, and how it is launched."""
        args = self.args
        try:
            self.alloc = None if args.address else slurm.detect()
        except slurm.SlurmError as e:
            raise SetupError(str(e))
        launcher = args.launcher or ("srun" if self.alloc else "mpiexec")
        if self.alloc:
            try:
                self.ray_nodes, self.sim_nodes = slurm.split(
                    self.alloc, args.transit, args.analytics_nodes)
            except slurm.SlurmError as e:
                raise SetupError(str(e))
            for tool in ("srun", "squeue", "scancel"):
                if not shutil.which(tool):
                    raise SetupError("%s not found, inside a Slurm allocation" % tool)
        elif args.analytics_nodes:
            raise SetupError("--analytics-nodes needs a Slurm allocation (and --transit); "
                             "without one Ray's nodes are those of --address")
        elif launcher == "srun":
            raise SetupError("--launcher srun needs a Slurm allocation")
        if args.analytics_nodes and not args.transit:
            raise SetupError("--analytics-nodes sets nodes aside for in transit: give "
                             "--transit N too")
        if launcher == "mpiexec":
            program = (shlex.split(args.mpiexec) or [""])[0]
            if not shutil.which(program):
                raise SetupError("%s not found" % program)
        self.launcher = launcher

    def _relaunch(self):
        """The driver must be on the first Ray node (a Ray driver attaches
        to its own node's raylet): run this same command there."""
        node = self.ray_nodes[0]
        if os.environ.get(slurm.RELAUNCHED):
            raise SetupError("relaunched on %s but Slurm says this is %s" % (
                node, os.environ.get("SLURMD_NODENAME")))
        print("caudal run: running on %s, the first %sRay node, through srun" % (
            node, "analytics " if self.args.transit else ""), file=sys.stderr)
        return slurm.relaunch(self.alloc, node, self.args.argv)

    def _command(self):
        """The simulation's command line: --mpiexec -n RANKS, to which
        _start adds the Ray nodes in situ on several. Under Slurm it names
        the simulation's nodes at once, node k taking the ranks of
        placement.ranks_of (as in situ's endpoint list expects): srun with
        a hostfile (_start writes it), or mpiexec with the nodes and their
        counts in its syntax."""
        args = self.args
        if not self.alloc:
            return shlex.split(args.mpiexec) + ["-n", str(args.ranks)] + args.command
        if self.launcher == "srun":
            return slurm.srun_ranks(args.ranks, args.command)
        counts = placement.rank_counts(len(self.sim_nodes), args.ranks)
        hosts = [(n, c) for n, c in zip(self.sim_nodes, counts) if c]
        try:
            return placement.mpiexec_command(args.mpiexec, args.ranks, hosts, args.command,
                                             named=True)
        except ValueError as e:
            raise SetupError(str(e)) from e

    # ---- starting ----------------------------------------------------

    def _start(self, analyses, finishers):
        import ray

        from ..blocks import RAY, on_node
        from .driver import Driver
        from .head import start_head
        from .ingest import CONTROL_THREADS, IngestActor
        from .relay import tree_of

        args = self.args
        token = secrets.token_hex(16)
        self._start_ray(args.address)
        self.signals.install()  # ray.init sets a SIGTERM handler of its own
        dask = uses_dask(analyses, finishers)
        dask_on_ray(eager=dask)
        alive = [n for n in ray.nodes() if n["Alive"]]
        if self.node_names:  # in the allocation's order, not Ray's
            order = {name: i for i, name in enumerate(self.ray_nodes)}
            alive.sort(key=lambda n: order.get(self.node_names.get(n["NodeID"]), len(order)))
        else:  # Ray's order changes from call to call: this node first, then by address
            alive = placement.ordered(alive, ray.get_runtime_context().get_node_id())
        nodes = [n["NodeID"] for n in alive]
        # Each node's object store, for the budget (_check_budget).
        self.capacity = {n["NodeID"]: int(n["Resources"].get("object_store_memory", 0))
                         for n in alive}
        if args.transit:
            places = placement.in_transit(alive, args.transit)
        else:  # one per node, each rank to its own node's
            places = placement.in_situ(alive, self.priv)
        # Past a few dozen ingests their reports reach the head through
        # relays (head.start_head): one call per ingest and step would cost
        # the head more than a step lasts.
        self.head, targets = start_head(args.ranks, args.max_pending,
                                        [p.name for p in places],
                                        where={p.name: p.node for p in places})
        # Each on its node: it listens there, and the blocks it puts are born
        # in that node's store.
        self.places = places
        cores = {n["NodeID"]: max(1, int(n["Resources"].get("CPU", 1))) for n in alive}
        self.ingests = [IngestActor.options(
            max_concurrency=CONTROL_THREADS + cores.get(p.node, 1), **on_node(p.node)
        ).remote(p.listen, token, targets[p.name], p.node, p.name, cores.get(p.node, 1),
                 steps_per_put=args.max_pending)
            for p in places]
        # The kernels run in them (blocks.RAY.executors): one per node;
        # reductions over many nodes go down the relays (report.Tree).
        RAY.executors = {}
        for p, ingest in zip(places, self.ingests):
            RAY.executors.setdefault(p.node, ingest)
        RAY.relays = tree_of(targets, self.head, RAY.executors).relays
        # Listening before the ranks start; in transit, on ports of their own.
        self.endpoints = ray.get([i.endpoint.remote() for i in self.ingests])
        if args.transit:
            self.labels = ["%s (ranks %d-%d, %s)" % (
                p.name, *placement.ranks_of(k, args.transit, args.ranks), ep)
                for k, (p, ep) in enumerate(zip(places, self.endpoints))]
        else:
            self.labels = ["on node %s (%s)" % (p.node[:12], p.address) for p in places]
            if len(places) > 1 and not self.alloc:  # spread as the list expects
                try:
                    self.command = placement.mpiexec_command(
                        args.mpiexec, args.ranks, placement.rank_hosts(places, args.ranks),
                        args.command)
                except ValueError as e:
                    raise SetupError(str(e)) from e
        endpoint = placement.endpoint_list(places, self.endpoints, args.transit)
        self.watches = {i.watch.remote(): label for i, label in zip(self.ingests, self.labels)}
        _warm_up(self.ingests, nodes, int(dask) if args.workers is None else args.workers)
        env = dict(slurm.step_env() if self.alloc else os.environ, CAUDAL_ENDPOINT=endpoint,
                   CAUDAL_TOKEN=token, CAUDAL_POLICY=args.policy)
        if self.alloc:
            env.update(slurm.ranks_env(self.launcher, self.sim_nodes, args.ranks, self.priv))
        if args.ring_depth:
            env["CAUDAL_RING_DEPTH"] = str(args.ring_depth)
        how = " in transit to %d TCP endpoint(s)" % args.transit if args.transit else ""
        print("caudal run: %d ranks%s, %d Ray node(s), %d analyses, results in %s"
              % (args.ranks, how, len(nodes), len(analyses), self.run_dir), file=sys.stderr)
        if self.alloc:
            print("caudal run: Slurm job %s: Ray on %s, the simulation on %s"
                  % (self.alloc.job_id, ",".join(self.ray_nodes), ",".join(self.sim_nodes)),
                  file=sys.stderr)
        self.driver = Driver(analyses, self.head, self.ingests, self.run_dir, finishers,
                             analysis_timeout=args.analysis_timeout)
        # Its own session: a Ctrl-C at the terminal reaches caudal run, which
        # stops the ranks in order, not the ranks directly.
        self.sim = subprocess.Popen(self.command, env=env, start_new_session=True,
                                    preexec_fn=die_with_parent(os.getpid()),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.sim_output = Output(self.sim, self.run_dir / SIM_TAIL)

    def _start_ray(self, address):
        import ray

        self.ray_started = True  # a signal may stop ray.init half way: shut down anyway
        if address:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
            return
        # Ray keeps an event of every task in the GCS (capped only at
        # 100,000 tasks): a few actor calls per step grow it by about
        # 6.5 MiB per 1,000 steps. Nothing of Caudal reads them.
        os.environ.setdefault("RAY_task_events_report_interval_ms", "0")
        token = ray_token(self.priv)
        if self.alloc:
            # One `ray start` per node in a step of its own, then this
            # driver on the first node's raylet (the ps of a shared machine
            # shows other nodes' raylets too: the address picks ours).
            # The steps' output (Ray's own lines, the node side's errors)
            # stays with the results.
            self.cluster = slurm.RayCluster(self.alloc, self.ray_nodes, token, self.run_dir,
                                            tag=os.path.basename(self.priv)[len("caudal-"):])
            self.cluster.start()
            ray.init(address=self.cluster.address, log_to_driver=False,
                     configure_logging=False,
                     _node_ip_address=self.cluster.ips[self.ray_nodes[0]])
            self.node_names = {v: k for k, v in self.cluster.wait_nodes(ray).items()}
            return
        # In the private directory: removed with it, also by a later run
        # when this one was killed; the path stays short for Ray's sockets.
        self.ray_tmp = os.path.join(self.priv, "ray")
        os.mkdir(self.ray_tmp, 0o700)
        with lean_ray_head():
            ray.init(include_dashboard=False, _temp_dir=self.ray_tmp, log_to_driver=False,
                     configure_logging=False)

    # ---- running -------------------------------------------------------

    def _loop(self):
        driver = self.driver
        self.progress = Progress(sys.stderr, sys.stderr.isatty(), max(0.0, self.args.progress))
        driver.while_waiting = self._show_progress
        while True:
            over = driver.poll(0.2)
            self._check_ingests()
            if self.runtime_error:
                self._after_ingest_lost()
                return
            self.decl_errors = driver.declaration_errors
            if self.decl_errors:
                return  # stopped for them (in _finish), the simulation with it
            if self.budget is None and driver.last_step is not None:
                self._check_budget()
                if self.budget_error:
                    return  # stopped (in _finish) before the store fills
            if over:
                return
            if self.sim.poll() is not None:
                # Ranks that died leave without goodbye; drain what came.
                self._drain()
                return
            self._show_progress()

    def _show_progress(self):
        """Update the progress display when it is due: from the loop, and
        from the driver while a call runs."""
        import ray

        progress = self.progress
        if progress is None or not progress.due():
            return
        try:
            head = ray.get(self.head.progress.remote(), timeout=5)
        except Exception:  # the head's loss is found by the loop's checks
            return
        progress.update(head, self.driver.progress())

    def _check_budget(self):
        """Print what each node's store must hold against what it has, once
        every array of a step was declared (a step was analysed); stop the
        run if it cannot fit (runtime/budget.py)."""
        import ray

        per_ingest = ray.get([i.step_bytes.remote() for i in self.ingests], timeout=60)
        per_node = collections.defaultdict(lambda: collections.defaultdict(int))
        variable = set()
        for place, arrays in zip(self.places, per_ingest):
            for name, (nbytes, var) in arrays.items():
                per_node[place.node][name] += nbytes
                if var:
                    variable.add(name)
        # An array whose analyses are all reductions_only is put only until
        # the ingests have their plan (receipt.py): like a variable array's
        # capacity, its figure is an upper bound that warns, never refuses.
        learner = self.driver.learner
        unkept = learner.unkept if learner is not None else frozenset()
        windows = {}
        for a in self.analyses:
            for name in a.arrays:
                windows[name] = max(windows.get(name, 0), a.window)
        v = budget.check(per_node, windows, self.args.max_pending, self.capacity,
                         names={p.node: p.address for p in self.places}, variable=variable,
                         unkept=unkept)
        self.budget = {"lines": v.lines, "warning": v.warning, "error": v.error}
        for line in v.lines:
            print("caudal run: %s" % line, file=sys.stderr)
        if v.warning:
            print("caudal run: warning: %s" % v.warning, file=sys.stderr)
        self.budget_error = v.error

    def _check_ingests(self):
        import ray

        if not self.watches:
            return
        ready, _ = ray.wait(list(self.watches), num_returns=len(self.watches), timeout=0)
        for ref in ready:
            label = self.watches.pop(ref)
            try:
                error = ray.get(ref)
            except Exception as e:
                error = "the ingest actor %s was lost (%s)" % (label, _short(e))
            if error is None:
                error = "the ingest actor %s stopped during the run" % label
            self._runtime(error)

    def _runtime(self, message):
        if self.runtime_error is None:
            self.runtime_error = message
            if self.driver is not None and self.analysed_before_loss is None:
                self.analysed_before_loss = self.driver.last_step

    def _runtime_failed(self, e):
        if self.debug:
            traceback.print_exc()
        self._runtime("%s: %s" % (type(e).__name__, _short(e)))

    def _after_ingest_lost(self):
        """The ranks of a lost ingest got an error on their next call. With
        drop they may carry on without analytics: let the simulation end on
        its own. With block they stop; one that does not is stopped."""
        print("caudal run: %s; the ranks were told (an error on their next call)"
              % self.runtime_error, file=sys.stderr)
        try:
            self.driver.poll(0.2)  # what was complete before the loss
        except Exception:
            pass
        grace = None if self.args.policy == "drop" else 10
        try:
            self.sim.wait(grace)
        except subprocess.TimeoutExpired:
            self.stopped_by_us = True
            self._stop_simulation()

    def _stop_simulation(self, grace=GRACE_SECONDS):
        """Stop it (stop_simulation); what it and its MPI launcher print
        from now on goes to the run folder (simulation.Output)."""
        self.sim_output.divert()
        return stop_simulation(self.sim, grace)

    def _drain(self):
        """Analyse what is complete, as long as steps keep coming; a second
        signal skips it."""
        driver = self.driver
        if driver is None or self.runtime_error:
            return
        self.signals.armed = True
        try:
            quiet = time.monotonic()
            mark = (driver.last_step, driver.counts["calls"])
            while not driver.poll(0.2):
                self._check_ingests()
                if self.runtime_error:
                    break
                now = (driver.last_step, driver.counts["calls"])
                if now != mark:
                    mark, quiet = now, time.monotonic()
                elif time.monotonic() - quiet > DRAIN_QUIET_SECONDS:
                    break
        except _Stop:
            pass
        except Exception as e:
            self._runtime_failed(e)
        finally:
            self.signals.armed = False

    # ---- ending --------------------------------------------------------

    def _finish(self, finishers, t_start):
        import ray

        self._close_progress()
        reason_stop = self.signals.reason
        stopping = reason_stop or self.decl_errors or self.budget_error or (
            self.runtime_error and self.sim is not None and self.sim.poll() is None)
        if self.sim is not None:
            if stopping and self.sim.poll() is None:
                self.stopped_by_us = True
                self.rc = self._stop_simulation()
                if reason_stop:  # the progress display is gone: say why it still runs
                    print("caudal run: stopping: analysing the steps complete before the stop "
                          "(Ctrl-C again skips them)", file=sys.stderr, flush=True)
                self._drain()  # what became complete (the ranks' steps sent before)
            else:
                self.signals.armed = self.signals.reason is None
                try:
                    self.rc = self.sim.wait(60)
                except (_Stop, subprocess.TimeoutExpired):
                    self.stopped_by_us = True
                    self.rc = self._stop_simulation()
                finally:
                    self.signals.armed = False
        run_finishers = self.driver is not None and not (
            reason_stop or self.decl_errors or self.budget_error or self.runtime_error)
        if run_finishers:
            self.signals.armed = True
            try:
                self.driver.finish()
            except _Stop:
                pass
            except Exception as e:
                self._runtime_failed(e)
            self.signals.armed = False
        summary = {"command": self.command, "returncode": self.rc,
                   "seconds": time.time() - t_start}
        tail = self.sim_output.close() if self.sim_output is not None else None
        if tail is not None:
            summary["simulation_output_after_stop"] = str(tail)
        if self.alloc:
            summary["slurm"] = {"job_id": self.alloc.job_id, "ray_nodes": self.ray_nodes,
                                "simulation_nodes": self.sim_nodes, "launcher": self.launcher}
        head = {}
        if self.head is not None:
            try:
                head = ray.get(self.head.summary.remote(), timeout=30)
            except Exception as e:
                self._runtime("the head actor was lost (%s)" % _short(e))
        summary.update(head)
        if self.driver is not None:
            summary.update(self.driver.summary())
        summary["ingest"] = self._shutdown_ingests()
        if self.budget is not None:
            summary["memory"] = self.budget
        if not self.decl_errors:  # also those the head finds at the end
            self.decl_errors = head.get("declaration_errors", [])
        reason, message = self._classify(summary, head)
        if reason == "runtime_failed" and self.driver is not None:
            first = 0 if self.analysed_before_loss is None else self.analysed_before_loss + 1
            # From there on nothing reached the analyses: steps still in
            # the lost actor, and every later step of the simulation.
            summary["steps_lost"] = [[first, None]]
            message += "; steps from %d on were not analysed" % first
        code = EXIT.get(reason)
        if reason == "interrupted":
            code = 128 + (self.signals.signum or signal.SIGINT)
        summary["end"] = {"reason": reason, "message": message, "exit_code": code}
        (self.run_dir / "summary.json").write_text(
            json.dumps(_json_safe(summary), indent=2, default=str, allow_nan=False))
        if self.driver is not None:
            self.driver.close()  # results.jsonl whole before its table is made
            try:
                write_tables(self.run_dir, csv=self.args.csv)
            except Exception as e:  # results.jsonl stays: the record is not lost
                print("caudal run: results.parquet was not written (%s); results.jsonl holds "
                      "every record" % _short(e), file=sys.stderr)
            # Drawn in a process of its own while Ray shuts down (a second
            # or more of matplotlib); waited for at the end of _teardown.
            # Nothing of the private directory in its environment: the
            # guard would take it for one of Ray's and stop it.
            self.reporter = htmlreport.start(self.run_dir, env={
                k: v for k, v in os.environ.items() if not (self.priv and self.priv in v)})
        if self.driver is not None:
            _print_summary(summary, self.run_dir)
        _print_refused(summary["ingest"])
        for e in self.decl_errors[1:4]:
            print("caudal run: error: %s" % e, file=sys.stderr)
        if tail is not None:
            print("caudal run: what the simulation and its MPI launcher printed after caudal "
                  "run stopped it is in %s" % tail, file=sys.stderr)
        if code:
            print("caudal run: %s" % message, file=sys.stderr)
        return code

    def _shutdown_ingests(self):
        import ray

        out = []
        for k, ingest in enumerate(self.ingests):
            try:
                entry = ray.get(ingest.shutdown.remote(), timeout=15)
            except Exception as e:
                entry = {"error": "lost: %s" % _short(e)}
            if k < len(self.endpoints):  # none if the actors failed to start
                entry["endpoint"] = self.endpoints[k]
            if self.node_names and k < len(self.places):
                entry["node"] = self.node_names.get(self.places[k].node)
            if self.args.transit:
                entry["ranks"] = list(placement.ranks_of(k, self.args.transit, self.args.ranks))
            out.append(entry)
        return out

    def _classify(self, summary, head):
        """The end reason and its one-line message, by PRIORITY."""
        found = {}
        if self.signals.reason == "interrupted":
            name = signal.Signals(self.signals.signum or signal.SIGINT).name
            found["interrupted"] = "interrupted (%s): the simulation was stopped" % name
        if self.signals.reason == "timeout":
            found["timeout"] = ("the run took longer than --timeout %g s: the simulation "
                                "was stopped" % self.args.timeout)
        if self.setup_error:
            found["declaration_error"] = self.setup_error
        elif self.budget_error:
            found["declaration_error"] = "the run cannot fit: %s" % self.budget_error
        elif self.decl_errors:
            more = len(self.decl_errors) - 1
            found["declaration_error"] = "declaration error: %s%s" % (
                self.decl_errors[0], " (and %d more)" % more if more else "")
        if self.runtime_error:
            found["runtime_failed"] = "Caudal's runtime failed: %s" % self.runtime_error
        sim = self._simulation_failure(head, summary.get("ingest", []))
        if sim:
            found["simulation_failed"] = sim
        failures = summary.get("failures", 0)
        if failures:
            found["analysis_failed"] = "%d analysis call(s) failed, see %s" % (
                failures, self.run_dir / "errors.jsonl")
        unknown = self._arrays_never_declared(head)
        if unknown:  # a typo in an array's name would otherwise pass as "0 steps"
            summary["arrays_never_declared"] = unknown
            text = "%s, which no rank declared (declared: %s)" % (
                ", ".join("analysis %s reads array %s" % pair for pair in unknown),
                ", ".join(head.get("arrays_declared", [])) or "none")
            # Said beside failed calls too: the typo is likely their cause.
            found["analysis_failed"] = ("%s; %s" % (found["analysis_failed"], text)
                                        if "analysis_failed" in found else text)
        found["completed"] = "completed: %d steps analysed" % summary.get("steps_analysed", 0)
        reason = next(r for r in PRIORITY if r in found)
        return reason, found[reason]

    def _arrays_never_declared(self, head):
        """(analysis, array) pairs whose array no rank declared, once the
        run got as far as declarations."""
        declared = head.get("arrays_declared")
        if declared is None or not head.get("ranks_clean"):
            return []
        return [(a.name, n) for a in self.analyses for n in a.arrays if n not in declared]

    def _simulation_failure(self, head, ingest):
        at = head.get("ranks_lost_at", {})
        lost = sorted(head.get("ranks_lost", {}).items(), key=lambda kv: at.get(kv[0], 0))
        if self.rc in (0, None) and not lost:
            return None
        came = {r for i in ingest for a, b in i.get("ranks_connected", []) for r in range(a, b + 1)}
        never = [r for r in range(self.args.ranks) if r not in came]
        if self.rc not in (0, None) and came and never:
            # A rank that failed at caudal_open (its message, above, says why:
            # no endpoint for its host, a wrong token): the launcher then
            # ended the others, which left without goodbye.
            return ("the simulation failed (%s exit code %s): rank%s %s never connected "
                    "to Caudal (%s own message above says why)" % (
                        os.path.basename(self.command[0]), self.rc,
                        "s" if len(never) > 1 else "", _ranks_text(never),
                        "their" if len(never) > 1 else "its"))
        together = len(lost) > 1 and at and \
            abs(at.get(lost[1][0], 0) - at.get(lost[0][0], 0)) < 1.0
        words = []
        if self.rc not in (0, None):
            words.append("the simulation failed (%s exit code %s)" % (
                os.path.basename(self.command[0]), self.rc))
        else:
            words.append("the simulation failed")
        if lost:
            first, why = lost[0]
            why = re.sub(r"^rank \d+: ", "", str(why))
            words.append("rank %s was the first to leave without goodbye (%s)" % (first, why))
            if together:
                # The launcher ending every rank after one failed, in
                # whatever order their sockets closed.
                words.append("rank%s %s followed within a second (when one rank fails the "
                             "launcher ends the others: the first to leave is most likely "
                             "the one that failed, and the launcher's own message names it)"
                             % ("s" if len(lost) > 2 else "",
                                ", ".join(str(r) for r, _ in lost[1:])))
            elif len(lost) > 1:
                words.append("then rank%s %s" % ("s" if len(lost) > 2 else "",
                                                 ", ".join(str(r) for r, _ in lost[1:])))
        return ": ".join(words[:2]) + ("; " + words[2] if len(words) > 2 else "")

    def _close_progress(self):
        if self.progress is not None:
            self.progress.close()
            self.progress = None

    def _teardown(self):
        """Whatever happened: no simulation, no Ray, no private directory."""
        self._close_progress()
        if self.sim is not None and self.sim.poll() is None:
            self._stop_simulation(grace=1)
        if self.ray_started:
            import ray

            try:
                ray.shutdown()
            except Exception:
                if self.debug:
                    traceback.print_exc()
        if self.cluster is not None:
            for line in self.cluster.stop():
                print("caudal run: %s" % line, file=sys.stderr)
        if self.guard is not None:
            # It stops what outlived ray.shutdown() and removes the directory.
            self.guard.stdin.close()
            try:
                self.guard.wait(15)
            except subprocess.TimeoutExpired:
                pass
        if self.priv:
            shutil.rmtree(self.priv, ignore_errors=True)
        if self.reporter is not None:
            failed = htmlreport.wait(self.reporter)
            if failed:
                print("caudal run: report.html was not written (%s); caudal report %s tries "
                      "again" % (failed, self.run_dir), file=sys.stderr)


@contextlib.contextmanager
def lean_ray_head():
    """ray.init, inside, starts no autoscaler monitor, no log monitor and no
    API server. A run's own Ray has nothing to autoscale; with
    log_to_driver=False nobody reads what the log monitor forwards; and with
    the dashboard off the API server loads only Ray's usage statistics,
    which are off too. The three cost about 150 MiB and a second and a half
    of CPU at start. `ray start --no-monitor --include-log-monitor=false`
    leaves the first two out, but ray.init does not pass those RayParams
    on: they are made defaults here while it runs. Ray starts the API
    server unasked; Ray's own code treats one that failed to start as
    absent (no URL, no process), which is what it is made here. A Ray whose
    RayParams or Node lacks these gets all three, as before."""
    from ray._private import node, parameter

    make, api = parameter.RayParams.__init__, getattr(node.Node, "start_api_server", None)
    known = inspect.signature(make).parameters
    if "no_monitor" not in known or "include_log_monitor" not in known or api is None:
        yield
        return

    @functools.wraps(make)
    def lean(self, *a, **kw):
        kw.setdefault("no_monitor", True)
        kw.setdefault("include_log_monitor", False)
        make(self, *a, **kw)

    @functools.wraps(api)
    def no_api_server(self, *, include_dashboard, raise_on_failure):
        if include_dashboard:
            return api(self, include_dashboard=include_dashboard,
                       raise_on_failure=raise_on_failure)
        self._webui_url = None

    parameter.RayParams.__init__, node.Node.start_api_server = lean, no_api_server
    try:
        yield
    finally:
        parameter.RayParams.__init__, node.Node.start_api_server = make, api


def _json_safe(x):
    """NaN and infinities as null: JSON has no such numbers, and parsers
    other than Python's refuse the file that holds them."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


def _short(e):
    """An exception as one line (Ray's carry a traceback in their text)."""
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def _ranks_text(ranks, shown=8):
    """'1, 3, 5' or '1, 3, ... (12 in all)'."""
    text = ", ".join(str(r) for r in ranks[:shown])
    return text if len(ranks) <= shown else "%s, ... (%d in all)" % (text, len(ranks))


def _warm_up(ingests, nodes, workers):
    """Import the kernels in the ingest actors, which run them, and start
    `workers` Ray workers on each node with Dask imported, before the
    simulation runs, so that the first steps do not wait for that (and fill
    the rings). Workers are started only when asked: each costs 80 MiB, and
    only Dask graphs and the user's own tasks need them (the first such
    computation waits for them once)."""
    import ray

    from ..blocks import on_node

    calls = [i.run.remote(_import_kernels) for i in ingests]
    if workers > 0:
        hold = ray.remote(num_cpus=1)(_hold_worker)
        seconds = 0.5 if workers > 1 else 0.0  # one call per node needs no overlap
        calls += [hold.options(**on_node(n)).remote(seconds) for n in nodes
                  for _ in range(workers)]
    ray.get(calls)


def _import_kernels():
    from .. import features, stats, stencil, temporal  # noqa: F401


def _hold_worker(seconds):
    """Held `seconds`, so that calls made at once each take a worker of
    their own."""
    import dask.array  # noqa: F401

    time.sleep(seconds)


def _print_refused(ingest):
    """Connections refused on the socket (wrong token, bad hello, a rank
    claimed twice): logged, counted, never taken for a rank."""
    n = sum(i.get("connections_refused", 0) for i in ingest)
    if not n:
        return
    msgs = [m for i in ingest for m in i.get("refused_messages", [])]
    for m in msgs[:3]:
        print("caudal run: refused a connection: %s" % m, file=sys.stderr)
    print("caudal run: %d connection(s) to the ingest endpoints refused in all (they did "
          "not affect the run)" % n, file=sys.stderr)


def _print_summary(s, run_dir):
    ingest = s.get("ingest") or []
    blocks = sum(i.get("blocks", 0) for i in ingest)
    nbytes = sum(i.get("bytes", 0) for i in ingest)
    dropped = s.get("rank_steps_dropped", s.get("steps_dropped_by_ranks", 0))
    skipped = s.get("calls_skipped", 0)
    print("caudal run: %d steps analysed, %d blocks (%.1f MiB) received, %d rank-steps "
          "dropped, %d calls succeeded, %d failed%s, lag median %.3f s, p99 %.3f s, "
          "%.1f s in all; %s"
          % (s.get("steps_analysed", 0), blocks, nbytes / 2**20, dropped,
             s.get("calls", 0), s.get("failures", 0),
             ", %d skipped (their analysis still running)" % skipped if skipped else "",
             s.get("lag_seconds_median") or 0.0,
             s.get("lag_seconds_p99") or 0.0, s["seconds"], run_dir), file=sys.stderr)
