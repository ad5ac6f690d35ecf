"""The post hoc side of hdf5_posthoc: after the simulation, read every step
back from the ranks' HDF5 files (one per rank), assemble the global field and
write the common analysis (common.analyse, NumPy) to OUT/results.jsonl.

    python hdf5_posthoc_reader.py DATA_DIR OUT_DIR
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

import common
import h5py
import numpy as np


def main():
    data, out_dir = sys.argv[1], sys.argv[2]
    files = [h5py.File(os.path.join(data, n), "r") for n in sorted(os.listdir(data))
             if n.endswith(".h5")]
    shape = tuple(int(v) for v in files[0].attrs["shape"])
    steps = sorted(set.intersection(*(set(f.keys()) for f in files)))
    results = common.Results(out_dir)
    field = np.empty(shape)
    for name in steps:
        for f in files:
            (x0, y0), (bx, by) = f.attrs["start"], f.attrs["count"]
            f[name].read_direct(field, dest_sel=np.s_[x0:x0 + bx, y0:y0 + by])
        a = common.analyse(field)
        results.write(int(name.split("-")[1]), a["mean"], a["min"], a["max"], a["hist"])
    results.close()
    for f in files:
        f.close()
    print(f"hdf5_posthoc_reader: {len(steps)} steps from {len(files)} files",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
