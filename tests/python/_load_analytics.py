"""Analytics for the load tests (tests/python/test_load.py), configured by
the environment:

CAUDAL_LOAD_WINDOW  steps the analysis holds (default 1): its window keeps
                    that many steps' objects in the store
CAUDAL_LOAD_SLEEP   seconds each call sleeps besides its work (default 0),
                    to be slower than the simulation
CAUDAL_LOAD_ONLY    1: the analysis is declared reductions_only (the field's
                    blocks are then not put once its moments are planned)

At every step it records the mean of the newest step of "field" (caudal.stats,
next to the blocks) and, with a window, that the window is the consecutive
steps up to this one.
"""

import os
import time

import caudal

WINDOW = int(os.environ.get("CAUDAL_LOAD_WINDOW", "1"))
SLEEP = float(os.environ.get("CAUDAL_LOAD_SLEEP", "0"))


@caudal.analysis("field", window=WINDOW,
                 reductions_only=os.environ.get("CAUDAL_LOAD_ONLY") == "1")
def mean(field, ctx):
    newest = field[-1]
    ctx.record("mean", caudal.stats.moments(newest).mean)
    if WINDOW > 1:
        ctx.record("window_ok", [f.step for f in field] == list(
            range(newest.step - WINDOW + 1, newest.step + 1)))
    if SLEEP:
        time.sleep(SLEEP)
