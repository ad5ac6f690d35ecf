"""Compare the analytics of examples/lammps/md_analysis.py (RUN/results.jsonl)
with what LAMMPS wrote itself for the same steps (DIR/thermo.txt, msd.txt,
rdf.txt, from in.lj): the temperature and the MSD to 2 ulp, the coordination
number at the cutoff (the sum over g(r)) bit for bit.

usage: python compare.py RUN_DIR LAMMPS_OUT_DIR
Exits 1 if any published step differs or is missing.
"""

import json
import sys

import numpy as np


def table(path):
    """A fix ave/time file of scalars: step -> its values."""
    rows = {}
    for line in open(path):
        if line.strip() and not line.startswith("#"):
            f = line.split()
            rows[int(f[0])] = [float(x) for x in f[1:]]
    return rows


def rdf_file(path):
    """A fix ave/time file of compute rdf (mode vector): step -> an array of
    rows (bin, r, g, coord, ...)."""
    lines = [ln for ln in open(path) if ln.strip() and not ln.startswith("#")]
    out, i = {}, 0
    while i < len(lines):
        step, n = (int(v) for v in lines[i].split())
        out[step] = np.array([[float(v) for v in ln.split()] for ln in lines[i + 1:i + 1 + n]])
        i += 1 + n
    return out


def main(run_dir, lammps_dir):
    got = {}
    for line in open("%s/results.jsonl" % run_dir):
        r = json.loads(line)
        got.setdefault(r["name"], {})[r["step"]] = r["value"]
    thermo, msd = table("%s/thermo.txt" % lammps_dir), table("%s/msd.txt" % lammps_dir)
    rdf = rdf_file("%s/rdf.txt" % lammps_dir)
    bad = []
    print("%8s %22s %22s %12s %12s" % ("step", "temperature (caudal)", "(LAMMPS)", "MSD", "g(r) peak"))
    for step in sorted(thermo):
        t, m = got.get("temp", {}).get(step), got.get("msd", {}).get(step)
        if t is None or m is None:
            bad.append("step %d: not analysed" % step)
            continue
        if abs(t - thermo[step][0]) > 2 * np.spacing(thermo[step][0]):
            bad.append("step %d: temperature %r, LAMMPS %r" % (step, t, thermo[step][0]))
        if any(abs(a - b) > 2 * np.spacing(b) for a, b in zip(m, msd[step])):
            bad.append("step %d: MSD %r, LAMMPS %r" % (step, m, msd[step]))
        g = rdf[step][:, 2]
        print("%8d %22.17g %22.17g %12.6g %12.4g" % (step, t, thermo[step][0], m[3],
                                                      rdf[step][np.argmax(g), 1]))
    for step, coord in got.get("coordination", {}).items():
        if coord != rdf[step][-1, 3]:
            bad.append("step %d: coordination %r, LAMMPS %r" % (step, coord, rdf[step][-1, 3]))
    if bad:
        print("md demo: FAILED\n  " + "\n  ".join(bad))
        return 1
    print("md demo: OK, %d steps: the temperature, the MSD and g(r)'s coordination number equal LAMMPS's" % len(thermo))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
