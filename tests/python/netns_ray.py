"""A real Ray cluster over netns_hosts hosts: `ray start --block` on each,
the first the head, every node its own object store and temp dir (the hosts
share one filesystem), token authentication with a token only this test
can read. Stopped by process group with SIGKILL (Ray's agents ignore
SIGTERM), never with `ray stop`, which would stop every Ray on the machine.
"""

import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from caudal.runtime.simulation import kill_until_gone

RAY = os.path.join(os.path.dirname(sys.executable), "ray")
PORT = 6391


class RayCluster:
    def __init__(self, hosts, cpus=1, store_bytes=256 << 20):
        self.hosts = list(hosts)
        self.cpus = cpus
        self.store = store_bytes
        # Short: Ray's socket paths must stay under 107 bytes.
        self.dir = tempfile.mkdtemp(prefix="cdlr", dir="/tmp")
        self.token = os.path.join(self.dir, "token")
        self.procs = []
        self.address = "%s:%d" % (self.hosts[0].ip, PORT)

    @property
    def env(self):
        """What a driver (caudal run) needs to join."""
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": self.token}

    def up(self, timeout=120):
        fd = os.open(self.token, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, secrets.token_hex(16).encode())
        os.close(fd)
        env = dict(os.environ, **self.env, RAY_task_events_report_interval_ms="0")
        try:
            for i, h in enumerate(self.hosts):
                tmp = os.path.join(self.dir, str(i))
                os.mkdir(tmp)
                argv = [RAY, "start", "--block", "--node-ip-address", h.ip, "--temp-dir", tmp,
                        "--num-cpus", str(self.cpus), "--object-store-memory", str(self.store),
                        "--disable-usage-stats"]
                argv += (["--head", "--port", str(PORT), "--include-dashboard", "false"]
                         if i == 0 else ["--address", self.address])
                log = open(os.path.join(self.dir, "start-%d.log" % i), "w")
                self.procs.append(subprocess.Popen(h.cmd(argv), env=env, stdout=log,
                                                   stderr=subprocess.STDOUT,
                                                   start_new_session=True))
                if i == 0:
                    self._wait_port(h.ip, PORT, timeout)
            self._wait_nodes(timeout)
        except BaseException:
            self.down()
            raise
        return self

    def _wait_port(self, ip, port, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                socket.create_connection((ip, port), timeout=1).close()
                return
            except OSError:
                if self.procs[0].poll() is not None:
                    break
                time.sleep(0.3)
        raise RuntimeError("the Ray head on %s did not start: %s" % (ip, self.log(0)))

    def _wait_nodes(self, timeout):
        probe = ("import ray; ray.init(address=%r, log_to_driver=False, configure_logging="
                 "False); print(sum(n['Alive'] for n in ray.nodes()))" % self.address)
        env = dict(os.environ, **self.env)
        end = time.monotonic() + timeout
        seen = None
        while time.monotonic() < end:
            try:
                p = subprocess.run(self.hosts[0].cmd([sys.executable, "-c", probe]), env=env,
                                   capture_output=True, text=True,
                                   timeout=max(1, min(60, end - time.monotonic())))
            except subprocess.TimeoutExpired:  # a slow GCS under load: ask again
                seen = "a probe that did not answer"
                continue
            seen = p.stdout.strip().splitlines()[-1:] or p.stderr[-300:]
            if p.returncode == 0 and seen == [str(len(self.hosts))]:
                return
            time.sleep(1)
        raise RuntimeError("%d Ray nodes expected, saw %s: %s" % (
            len(self.hosts), seen, " | ".join(self.log(i) for i in range(len(self.procs)))))

    def log(self, i):
        path = os.path.join(self.dir, "start-%d.log" % i)
        return open(path).read()[-600:] if os.path.exists(path) else ""

    def pids(self):
        """Every live process of this cluster: those that name its directory
        and their process groups' members."""
        out = set()
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                cmd = open("/proc/%s/cmdline" % pid, "rb").read()
                if open("/proc/%s/stat" % pid).read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue  # gone already, waiting for its parent
                pgid = os.getpgid(int(pid))
            except (OSError, IndexError):
                continue
            if self.dir.encode() in cmd or pgid in {p.pid for p in self.procs}:
                out.add(int(pid))
        return out

    def down(self):
        kill_until_gone(self.pids, rounds=3, pause=0.5)
        for p in self.procs:
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                pass
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self.up()

    def __exit__(self, *exc):
        self.down()
