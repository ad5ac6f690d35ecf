"""The common analysis under `caudal run`: moments and a 64-bin histogram
with the C kernels in one pass (caudal.stats.describe). It reads the field
only through that reduction and says so (reductions_only): from the third
step on, each ingest reduces the blocks as they arrive and puts none of
them in Ray's store (caudal/runtime/receipt.py), as SST's reader reduces
what it reads. CAUDAL_PEERS_KEEP=1 leaves it out: blocks put as well."""

import os
import sys

import caudal

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import common  # noqa: E402

results = common.Results(os.environ["CAUDAL_PEERS_OUT"])


@caudal.analysis("temperature",
                 reductions_only=os.environ.get("CAUDAL_PEERS_KEEP") != "1")
def common_analysis(temperature, ctx):
    t = temperature[-1]
    m, h = caudal.stats.describe(t, bins=common.HIST_BINS, range=(0.0, common.HIST_MAX))
    results.write(t.step, m.mean, m.min, m.max, h.counts)


@caudal.at_end
def close(ctx):
    results.close()
