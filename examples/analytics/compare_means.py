"""Compare the analytics' per-step means (a caudal run folder) with the means
the simulation computed itself (heat2d --mean FILE). Exits 1 on a mismatch.

usage: python compare_means.py RUN_DIR MEAN_FILE
"""

import json
import pathlib
import sys


def main(run_dir, mean_file):
    ours = {}
    for line in (pathlib.Path(run_dir) / "results.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r["name"] == "mean":
            ours[r["step"]] = r["value"]
    sim = {int(s): float(m) for s, m in
           (l.split() for l in pathlib.Path(mean_file).read_text().splitlines())}
    missing = sorted(set(sim) - set(ours))
    worst = max((abs(ours[s] - sim[s]) / max(abs(sim[s]), 1e-300) for s in ours), default=0)
    for s in sorted(ours)[:: max(1, len(ours) // 6)]:
        print("  step %4d  analytics mean %.6f  simulation mean %.6f" % (s, ours[s], sim[s]))
    print("%d steps analysed, %d missing; largest relative difference %.1e"
          % (len(ours), len(missing), worst))
    peak = max(sim, key=sim.get)
    if peak < max(sim):
        print("the simulation's mean peaked at step %d (%.4f) and fell after it: the "
              "analytics switched its source off" % (peak, sim[peak]))
    return 1 if missing or worst > 1e-12 else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
