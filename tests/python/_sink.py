"""A receiving process for the tests: accepts everything, gives every block
back at once, and logs each event as a JSON line on stdout.

    python _sink.py ENDPOINT [TOKEN]

The first stdout line is {"endpoint": ...}. Commands come on stdin, one JSON
object a line: {"steer": [rank, key, value]} sets a steering value; EOF or
{"quit": true} stops the sink, which then closes its receiver and exits.
"""

import json
import queue
import sys
import threading

import numpy as np

import caudal


def main():
    endpoint = sys.argv[1]
    token = sys.argv[2] if len(sys.argv) > 2 else None
    r = caudal.Receiver(endpoint, token=token)
    out = sys.stdout
    out.write(json.dumps({"endpoint": r.endpoint}) + "\n")
    out.flush()
    commands = queue.Queue()

    def read_stdin():
        for line in sys.stdin:
            if line.strip():
                commands.put(json.loads(line))
        commands.put({"quit": True})

    threading.Thread(target=read_stdin, daemon=True).start()
    while True:
        try:
            cmd = commands.get_nowait()
        except queue.Empty:
            cmd = None
        if cmd is not None:
            if cmd.get("quit"):
                break
            if "steer" in cmd:
                rank, key, value = cmd["steer"]
                r.steer(rank, key, value)
                out.write(json.dumps({"type": "steered", "key": key}) + "\n")
                out.flush()
            continue
        ev = r.next(20)
        if ev is None:
            continue
        rec = {"type": ev.type, "rank": ev.rank, "step": ev.step}
        if ev.type == "block":
            rec.update(name=ev.name, count=ev.count, nbytes=ev.nbytes,
                       sum=float(np.asarray(ev.block).real.astype(np.float64).sum()))
            ev.block.release()
        elif ev.type == "declare":
            rec.update(name=ev.name, dtype=ev.dtype)
        elif ev.type == "steer":
            rec.update(key=ev.key, value=ev.value)
        elif ev.type in ("disconnect", "refused"):
            rec.update(status=ev.status, message=ev.message)
        elif ev.type == "step_end":
            rec.update(nblocks=ev.nblocks)
        out.write(json.dumps(rec) + "\n")
        out.flush()
    r.close()


if __name__ == "__main__":
    main()
