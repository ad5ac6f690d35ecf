"""ADIOS2's SST staging engine: the ranks are one MPI writer of a global 2-D
variable (each rank Puts its block every step), one serial Python reader
(adios2_sst_reader.py) reads the whole variable every step and runs the
common analysis with NumPy.

ADIOS2 comes from .venv-peers/io (bench/peers/setup_peers_io.sh): PyPI's
adios2 wheel is built without MPI and Debian 12 has no ADIOS2, so the script
builds ADIOS2's PyPI source with MPI against Debian's MPICH and mpi4py;
launch() runs the ranks and the reader with that venv's python.
"""

import glob
import os
import subprocess

import common

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
PEERS_PY = os.path.join(ROOT, ".venv-peers", "io", "bin", "python")
SETUP = "bench/peers/setup_peers_io.sh"
STREAM = "heat-sst"  # the stream's name: SST writes STREAM.sst, its contact file

# The engine's parameters, per the ADIOS2 user guide's SST section, for one node:
PARAMS = {
    # the writer's Open waits for the one reader, so no step goes by unread
    "RendezvousReaderCount": "1",
    # at most 4 steps queued at the writer (Caudal's ring depth), then EndStep
    # blocks until the reader has released one: no step is ever dropped
    "QueueLimit": "4",
    "QueueFullPolicy": "Block",
    # no libfabric/UCX here: the WAN data plane (EVPath sockets), on loopback
    "DataTransport": "WAN",
    "WANDataTransport": "sockets",
    "ControlTransport": "tcp",
    "NetworkInterface": "lo",
    "MarshalMethod": "BP5",
    # the reader side: contact file wait (the reader starts before the ranks)
    "OpenTimeoutSecs": "120",
}



def version():
    code = ("import adios2, adios2.bindings as b, numpy; "
            "print('adios2 %s (MPI %s), numpy %s' % (adios2.__version__, "
            "b.is_built_with_mpi, numpy.__version__))")
    out = subprocess.run([common.peer_python(PEERS_PY, SETUP), "-c", code], check=True,
                         capture_output=True, text=True)
    return out.stdout.strip()


class Bridge:
    """In each rank: one MPI-collective SST writer, the rank's block of the
    global variable "temperature" per step."""

    def __init__(self, comm, shape, start, count, out_dir):
        import adios2

        self.adios = adios2.Adios(comm=comm)
        io = self.adios.declare_io("heat")
        io.set_engine("SST")
        io.set_parameters(PARAMS)
        self.shape, self.start, self.count = list(shape), list(start), list(count)
        self.var = None
        self.io = io
        # Open waits for the reader (RendezvousReaderCount=1)
        self.engine = io.open(os.path.join(out_dir, STREAM), adios2.bindings.Mode.Write)
        self.Mode = adios2.bindings.Mode

    def publish(self, step, block):
        if self.var is None:
            self.var = self.io.define_variable("temperature", block, self.shape, self.start,
                                               self.count, True)
        self.engine.begin_step()
        # deferred Put: the block is the simulation's fresh copy, untouched
        # until EndStep, where SST marshals it into the step's queue entry
        self.engine.put(self.var, block, self.Mode.Deferred)
        self.engine.end_step()

    def close(self):
        # waits until the reader has released the queued steps
        self.engine.close()


def _cleanup(out_dir):
    for path in glob.glob(os.path.join(out_dir, STREAM + "*")):
        os.remove(path)


def launch(cfg, out_dir, rank_cmd):
    py = common.peer_python(PEERS_PY, SETUP)
    _cleanup(out_dir)
    reader = subprocess.Popen(
        [py, os.path.join(HERE, "adios2_sst_reader.py"), os.path.join(out_dir, STREAM),
         out_dir],
        start_new_session=True)
    try:
        subprocess.run(common.mpiexec(cfg) + [py] + list(rank_cmd[1:]), check=True)
        rc = reader.wait(timeout=600)
        if rc != 0:
            raise RuntimeError(f"adios2_sst_reader.py exited with {rc}")
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
        _cleanup(out_dir)
    return {"config": "ADIOS2 SST engine, MPI writer (ADIOS2 built with MPI against "
                      "Debian MPICH, .venv-peers/io), each rank Puts its block of the "
                      "global 2-D variable (deferred Put, BeginStep/EndStep); one serial "
                      "Python reader reads the whole variable per step (Stream.steps() + "
                      "Stream.read, as the ADIOS2 docs' SST reader example), NumPy "
                      "analysis; " +
                      ", ".join("{}={}".format(*kv) for kv in PARAMS.items()),
            "reader": "1 process, serial ADIOS2 engine, NumPy"}
