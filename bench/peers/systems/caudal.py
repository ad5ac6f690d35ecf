"""Caudal: libcaudal's Python binding in the ranks, `caudal run` with an
embedded local Ray, the analysis with the C kernels next to the blocks."""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def version():
    import caudal
    import ray

    return "caudal %s, ray %s" % (caudal.__version__, ray.__version__)


class Bridge:
    def __init__(self, comm, shape, start, count, out_dir):
        import caudal

        self.c = caudal.Client(comm.rank, comm.size)
        self.c.declare("temperature", "float64", shape=shape, start=start, count=count)

    def publish(self, step, block):
        self.c.begin_step(step)
        self.c.put("temperature", block)
        self.c.end_step()

    def close(self):
        self.c.close()


def launch(cfg, out_dir, rank_cmd):
    cmd = [sys.executable, "-m", "caudal", "run", "-n", str(cfg["ranks"]), "--analytics",
           os.path.join(HERE, "caudal_analytics.py"), "--run-dir",
           os.path.join(out_dir, "caudal-run"), "--"] + rank_cmd
    subprocess.run(cmd, check=True, env=dict(os.environ, CAUDAL_PEERS_OUT=out_dir))
    keep = os.environ.get("CAUDAL_PEERS_KEEP") == "1"
    return {"config": "caudal run, embedded local Ray, shm transport, block policy, "
                      "ring depth 4, max pending 8, reduced at receipt"
                      + (", blocks put too" if keep else ", blocks not put (reductions_only)")}
