"""The analytics side of adios2_sst: one serial Python process that opens the
SST stream, reads the whole global variable "temperature" every step (as the
ADIOS2 documentation's Python SST reader example does, with Stream.steps()),
and writes the common analysis (common.analyse, NumPy) to OUT/results.jsonl.

    python adios2_sst_reader.py STREAM OUT_DIR
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(HERE, ".."), HERE]

import adios2
import adios2_sst
import common


def main():
    stream_path, out_dir = sys.argv[1], sys.argv[2]
    results = common.Results(out_dir)
    adios = adios2.Adios()
    io = adios.declare_io("analytics")
    io.set_engine("SST")
    io.set_parameters(adios2_sst.PARAMS)
    n = 0
    with adios2.Stream(io, stream_path, "r") as stream:
        for _ in stream.steps():
            step = stream.current_step()
            field = stream.read("temperature")  # the whole global array
            a = common.analyse(field)
            results.write(step, a["mean"], a["min"], a["max"], a["hist"])
            n += 1
    results.close()
    print(f"adios2_sst_reader: {n} steps analysed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
