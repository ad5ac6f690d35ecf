"""A real Slurm on one machine: slurmctld in the root namespace, one slurmd
per network-namespace host (netns_hosts), munged with a key of its own.

Everything lives in one directory given by the caller (configuration,
munge's key and socket, state, spool, logs); the commands find the
configuration through SLURM_CONF, which `env` carries, and slurmctld,
slurmd and munged run in the foreground as children of this process, so
that `down()` stops exactly what `up()` started. Used by test_slurm.py and
as a script for trying things by hand:

    python tests/python/slurm_cluster.py 3      # up until Enter, then down

What it took to run Slurm in namespaces (slurm-wlm 22.05, Debian):
- slurmd enters its host with `nsenter --net=` (not `ip netns exec`, which
  remounts /sys: slurmd then finds no cgroups), takes its node's name with
  -N, and every node shares this machine's filesystem: its spool, pid and log
  paths carry %n;
- the machine's hostname maps to 127.0.0.1, so every NodeName has its
  NodeAddr and SlurmctldHost names the bridge address;
- no cgroup plugins (proctrack/linuxproc, task/none): the machine's cgroups
  belong to the machine, not to the hosts.
"""

import os
import re
import shutil
import socket
import subprocess
import sys
import time

import netns_hosts
from caudal.runtime.simulation import kill_until_gone

DAEMONS = ("munged", "slurmctld", "slurmd", "srun", "sbatch")


def available():
    """Why a Slurm cannot be made here, or None."""
    why = netns_hosts.available()
    if why:
        return why
    missing = [d for d in DAEMONS if not shutil.which(d, path=os.environ.get("PATH", "") +
                                                      ":/usr/sbin:/sbin")]
    if missing:
        return "%s not found (scripts/setup.sh installs slurm-wlm and munge)" % ", ".join(missing)
    return None


def _which(name):
    return shutil.which(name, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


def _free_port(host):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


CONF = """\
ClusterName=caudal{tag}
SlurmctldHost={hostname}({gateway})
SlurmctldPort={ctld_port}
SlurmdPort=6818
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={dir}/munge/socket
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool/%n
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd.%n.pid
SlurmctldLogFile={dir}/log/slurmctld.log
SlurmdLogFile={dir}/log/slurmd.%n.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
KillWait=30
MessageTimeout=30
InactiveLimit=0
# sbatch --wait reads the exit code from the job's record: a record purged
# before sbatch polls it makes sbatch exit 0. 0 keeps every record (the
# cluster lasts one test module), and sbatch then polls every 2 s: with a
# MinJobAge it waits 2, 8, then 32 s between polls, and a job of 15 s took
# 42 s to be seen done.
MinJobAge=0
{nodes}
PartitionName=test Nodes={names} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
"""


def processes_in(hosts):
    """{pid: host name} of the processes in the hosts' network namespaces."""
    by_ns = {}
    for h in hosts:
        try:
            by_ns[os.stat("/run/netns/%s" % h.ns).st_ino] = h.name
        except OSError:
            pass
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            link = os.readlink("/proc/%s/ns/net" % d)
        except OSError:
            continue
        m = re.fullmatch(r"net:\[(\d+)\]", link)
        if m and int(m.group(1)) in by_ns:
            out[int(d)] = by_ns[int(m.group(1))]
    return out


def kill_in_hosts(hosts, rounds=20):
    """SIGKILL whatever runs in the hosts until nothing does; returns what
    was found at first ({pid: host}), for the tests to complain about."""
    found = processes_in(hosts)
    kill_until_gone(lambda: processes_in(hosts), rounds, pause=0.1)
    return found


class Slurm:
    """`hosts` (a netns_hosts.Hosts, up) as the nodes of a Slurm cluster
    whose files are under `root`. `env` is the environment for Slurm's
    commands (SLURM_CONF); `cpus` per node."""

    def __init__(self, hosts, root, cpus=2):
        self.hosts = hosts
        self.dir = str(root)
        self.cpus = cpus
        self.procs = []
        self.left = {}  # what down() found still running in the hosts
        self.conf = os.path.join(self.dir, "slurm.conf")
        self.env = dict(os.environ, SLURM_CONF=self.conf)
        self.names = [h.name for h in hosts]

    def up(self, timeout=60):
        try:
            self._configure()
            self._start()
            self._wait_idle(timeout)
        except BaseException:
            self.down()
            raise
        return self

    def _configure(self):
        for sub in ["munge", "state", "log"] + ["spool/" + n for n in self.names]:
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        os.chmod(os.path.join(self.dir, "munge"), 0o700)
        key = os.path.join(self.dir, "munge", "key")
        with open(key, "wb") as f:
            f.write(os.urandom(1024))
        os.chmod(key, 0o400)
        nodes = "\n".join("NodeName=%s NodeAddr=%s CPUs=%d RealMemory=1000 State=UNKNOWN"
                          % (h.name, h.ip, self.cpus) for h in self.hosts)
        with open(self.conf, "w") as f:
            f.write(CONF.format(tag=self.hosts.tag, hostname=socket.gethostname(),
                                gateway=self.hosts.gateway,
                                ctld_port=_free_port(self.hosts.gateway), dir=self.dir,
                                nodes=nodes, names=",".join(self.names)))
        # Slurm 22.05's slurmd loads a cgroup plugin whatever the
        # proctrack and task plugins; this one is left unused by them.
        with open(os.path.join(self.dir, "cgroup.conf"), "w") as f:
            f.write("CgroupPlugin=cgroup/v1\nIgnoreSystemd=yes\n")

    def _spawn(self, argv, log):
        out = open(os.path.join(self.dir, "log", log), "ab")
        p = subprocess.Popen(argv, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL)
        out.close()
        self.procs.append(p)
        return p

    def _start(self):
        m = os.path.join(self.dir, "munge")
        self._spawn([_which("munged"), "-F", "-f", "--key-file=%s/key" % m,
                     "--socket=%s/socket" % m, "--pid-file=%s/pid" % m,
                     "--seed-file=%s/seed" % m, "--log-file=%s/log" % m], "munged.out")
        deadline = time.monotonic() + 20
        while not os.path.exists(os.path.join(m, "socket")):
            self._check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError("munged did not start: %s" % self._tail("munged.out"))
            time.sleep(0.05)
        self._spawn([_which("slurmctld"), "-D", "-i", "-f", self.conf], "slurmctld.out")
        for h in self.hosts:
            self._spawn(h.cmd([_which("slurmd"), "-D", "-N", h.name, "-f", self.conf]),
                        "slurmd.%s.out" % h.name)

    def _check_alive(self):
        for p in self.procs:
            if p.poll() is not None:
                raise RuntimeError("%s exited with %s" % (p.args[0], p.returncode))

    def _tail(self, log, n=2000):
        try:
            with open(os.path.join(self.dir, "log", log), "rb") as f:
                return f.read()[-n:].decode(errors="replace")
        except OSError:
            return ""

    def _wait_idle(self, timeout):
        deadline = time.monotonic() + timeout
        states = ""
        while time.monotonic() < deadline:
            self._check_alive()
            p = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %t"], env=self.env,
                               capture_output=True, text=True)
            states = p.stdout
            idle = {line.split()[0] for line in states.splitlines() if line.split()[1:] == ["idle"]}
            if idle >= set(self.names):
                return
            time.sleep(0.3)
        raise RuntimeError("the nodes are not idle after %gs: %s\nslurmctld: %s" % (
            timeout, states.strip(), self._tail("slurmctld.log")))

    def run(self, argv, **kw):
        """A Slurm command (sbatch, srun, squeue...) against this cluster."""
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        env = dict(self.env, **kw.pop("env", {}))
        return subprocess.run(argv, env=env, **kw)

    def down(self):
        """Every job cancelled, the daemons stopped, and then whatever still
        runs in a host killed: slurmstepd and a job's processes outlive
        slurmd, and would outlive the namespaces."""
        if self.procs and all(p.poll() is None for p in self.procs):
            jobs = self.run(["squeue", "--noheader", "--format=%A"], timeout=30).stdout.split()
            if jobs:
                self.run(["scancel", "--signal=KILL", "--full", *jobs], timeout=30)
                self.run(["scancel", *jobs], timeout=30)
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline and self.run(
                        ["squeue", "--noheader", "--format=%A"], timeout=30).stdout.split():
                    time.sleep(0.3)
        # slurmd first, then the controller, and munged last: each one's
        # last messages are signed.
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs = []
        self.left = kill_in_hosts(self.hosts)

    def __enter__(self):
        return self.up()

    def __exit__(self, *exc):
        self.down()


if __name__ == "__main__":
    import tempfile

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    root = tempfile.mkdtemp(prefix="cdl-slurm-")
    with netns_hosts.Hosts(n) as hosts, Slurm(hosts, root) as slurm:
        print("SLURM_CONF=%s" % slurm.conf)
        for h in hosts:
            print(h.name, h.ip, h.ns)
        input("Enter to stop")
    shutil.rmtree(root, ignore_errors=True)
