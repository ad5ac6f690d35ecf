"""The simulation alone: nothing published, nothing analysed (the baseline)."""

import subprocess

import common


def version():
    return "-"


def launch(cfg, out_dir, rank_cmd):
    subprocess.run(common.mpiexec(cfg) + rank_cmd, check=True)
    return {}
