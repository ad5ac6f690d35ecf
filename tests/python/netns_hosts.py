"""Real hosts on one machine: network namespaces joined by a bridge.

Each host is a network namespace with its own interface and address on a
private /24 (a veth pair whose other end is on a bridge in the root
namespace; the bridge holds the .1 address, so the root namespace, where
the tests and `caudal run` live, reaches every host). Processes enter a host
with `nsenter --net=/run/netns/NAME`, not `ip netns exec`: the latter
remounts /sys, and slurmd then finds no cgroups.

Made and removed by the tests (root here and in CI); the names carry the
creating process's pid, and `cleanup_stale()` removes what a killed test run
left. Used as a module by the tests and as a script for trying things by
hand:

    python tests/python/netns_hosts.py up 3     # prints the hosts
    python tests/python/netns_hosts.py down
"""

import os
import re
import subprocess
import sys

PREFIX = "cdl"
# A private range nothing on the machine uses (checked at setup: a route or
# address inside it stops the setup).
SUBNET = "10.213.%d"
LAUNCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "netns_launch.sh")


def _ip(*args, check=True):
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def available():
    """Why hosts cannot be made here, or None."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if subprocess.run(["which", "nsenter"], capture_output=True).returncode:
        return "nsenter not found"
    try:
        _ip("netns", "list")
    except (OSError, subprocess.CalledProcessError) as e:
        return "ip netns does not work here: %s" % e
    return None


class Host:
    def __init__(self, name, ns, ip):
        self.name = name  # the host's name, as Slurm and the tests call it
        self.ns = ns  # the network namespace
        self.ip = ip

    def cmd(self, argv):
        """`argv` to run inside this host."""
        return ["nsenter", "--net=/run/netns/%s" % self.ns, *argv]

    def __repr__(self):
        return "Host(%s, %s)" % (self.name, self.ip)


class Hosts:
    """`n` hosts named node1..noden, addresses 10.213.X.11 upwards, the
    bridge (the root namespace's side) at 10.213.X.1."""

    def __init__(self, n, tag=None):
        self.tag = tag or str(os.getpid() % 100000)
        self.bridge = "%sbr%s" % (PREFIX, self.tag)
        # One /24 per creating process, so that two test runs never share one.
        self.net = SUBNET % (int(self.tag) % 200 + 20)
        self.gateway = self.net + ".1"
        self.hosts = [Host("node%d" % (i + 1), "%s%s-%d" % (PREFIX, self.tag, i + 1),
                           "%s.%d" % (self.net, 11 + i)) for i in range(n)]

    def __iter__(self):
        return iter(self.hosts)

    def __getitem__(self, i):
        return self.hosts[i]

    def __len__(self):
        return len(self.hosts)

    def up(self):
        taken = _ip("-4", "addr").stdout + _ip("-4", "route").stdout
        if (self.net + ".") in taken:
            raise RuntimeError("%s.0/24 is already in use on this machine" % self.net)
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", self.gateway + "/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for i, h in enumerate(self.hosts):
                outer, inner = "%sv%s-%d" % (PREFIX, self.tag, i + 1), "eth0"
                _ip("netns", "add", h.ns)
                _ip("link", "add", outer, "type", "veth", "peer", "name", "tmp" + outer)
                _ip("link", "set", "tmp" + outer, "netns", h.ns)
                _ip("-n", h.ns, "link", "set", "tmp" + outer, "name", inner)
                _ip("-n", h.ns, "addr", "add", h.ip + "/24", "dev", inner)
                _ip("-n", h.ns, "link", "set", inner, "up")
                _ip("-n", h.ns, "link", "set", "lo", "up")
                _ip("-n", h.ns, "route", "add", "default", "via", self.gateway)
                _ip("link", "set", outer, "master", self.bridge)
                _ip("link", "set", outer, "up")
        except BaseException:
            self.down()
            raise
        return self

    def down(self):
        for i, h in enumerate(self.hosts):
            _ip("link", "del", "%sv%s-%d" % (PREFIX, self.tag, i + 1), check=False)
            _ip("netns", "del", h.ns, check=False)
        _ip("link", "del", self.bridge, check=False)

    def __enter__(self):
        return self.up()

    def __exit__(self, *exc):
        self.down()


def mpiexec_from(host):
    """An MPICH mpiexec, run on `host`, that starts ranks on the others:
    through netns_launch.sh in ssh's place, and told its own address (this
    machine's name resolves to 127.0.0.1, which other hosts cannot reach)."""
    return "mpiexec -launcher ssh -launcher-exec %s -localhost %s" % (LAUNCH, host.ip)


def cleanup_stale():
    """Remove namespaces and bridges that a test run of a dead process left."""
    gone = []
    for line in _ip("netns", "list", check=False).stdout.splitlines():
        m = re.match(r"(%s(\d+)-\d+)\b" % PREFIX, line)
        if m and not os.path.exists("/proc/%s" % m.group(2)):
            _ip("netns", "del", m.group(1), check=False)
            gone.append(m.group(1))
    for line in _ip("-o", "link", "show", check=False).stdout.splitlines():
        m = re.match(r"\d+: (%s(?:br|v)(\d+)[-\d]*)[@:]" % PREFIX, line)
        if m and not os.path.exists("/proc/%s" % m.group(2)):
            _ip("link", "del", m.group(1), check=False)
            gone.append(m.group(1))
    return gone


if __name__ == "__main__":
    if sys.argv[1:2] == ["up"]:
        hs = Hosts(int(sys.argv[2]), tag="1").up()
        for h in hs:
            print(h.name, h.ns, h.ip)
        print("bridge", hs.bridge, hs.gateway)
    elif sys.argv[1:2] == ["down"]:
        Hosts(int(sys.argv[2]) if len(sys.argv) > 2 else 8, tag="1").down()
    else:
        sys.exit(__doc__)
