"""Post hoc analysis through HDF5 files: the simulation writes every step to
HDF5, and after it ends launch() reads every step back and runs the common
analysis (hdf5_posthoc_reader.py, NumPy); t of a step is when its analysis
finished.

h5py is PyPI's wheel (serial HDF5) in .venv-peers/io
(bench/peers/setup_peers_io.sh): Debian's python3-h5py-mpi is built with
Open MPI, not the MPICH our ranks use. So, the usual practice with serial
HDF5 in an MPI code: file per process, each rank writes its block of every
step into its own file (one dataset per step, the block's place in the global
field as attributes) and flushes it at the end of the step; the post hoc
reader assembles each step's global field from the ranks' files.
"""

import os
import shutil
import subprocess

import common

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
PEERS_PY = os.path.join(ROOT, ".venv-peers", "io", "bin", "python")
SETUP = "bench/peers/setup_peers_io.sh"
SUBDIR = "hdf5-posthoc"



def version():
    code = ("import h5py, numpy; print('h5py %s, HDF5 %s (serial), numpy %s' % "
            "(h5py.__version__, h5py.version.hdf5_version, numpy.__version__))")
    out = subprocess.run([common.peer_python(PEERS_PY, SETUP), "-c", code], check=True,
                         capture_output=True, text=True)
    return out.stdout.strip()


def rank_file(out_dir, rank):
    return os.path.join(out_dir, SUBDIR, f"rank-{rank:05d}.h5")


class Bridge:
    """In each rank: its own HDF5 file, one contiguous float64 dataset per
    step, flushed (H5Fflush) when the step is written."""

    def __init__(self, comm, shape, start, count, out_dir):
        import h5py

        path = rank_file(out_dir, comm.rank)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.f = h5py.File(path, "w")
        self.f.attrs["shape"] = shape
        self.f.attrs["start"] = start
        self.f.attrs["count"] = count

    def publish(self, step, block):
        self.f.create_dataset(f"step-{step:06d}", data=block)
        self.f.flush()

    def close(self):
        self.f.close()


def launch(cfg, out_dir, rank_cmd):
    py = common.peer_python(PEERS_PY, SETUP)
    data = os.path.join(out_dir, SUBDIR)
    shutil.rmtree(data, ignore_errors=True)
    try:
        subprocess.run(common.mpiexec(cfg) + [py] + list(rank_cmd[1:]), check=True)
        written = sum(os.path.getsize(os.path.join(data, n)) for n in os.listdir(data))
        files = len(os.listdir(data))
        subprocess.run([py, os.path.join(HERE, "hdf5_posthoc_reader.py"), data, out_dir],
                       check=True)
    finally:
        shutil.rmtree(data, ignore_errors=True)
    return {"config": "post hoc: h5py (serial HDF5, .venv-peers/io), file per process: "
                      "each rank writes every step's block as a contiguous float64 dataset "
                      "of its own file and flushes it; after the run one Python process "
                      "reads the files back step by step, assembles the global field and "
                      "analyses it with NumPy; files removed at the end",
            "bytes_written": written, "files": files}
