#!/bin/sh
# MPICH hydra's remote launcher for the namespace hosts of netns_hosts.py,
# in ssh's place: `mpiexec -launcher ssh -launcher-exec netns_launch.sh`.
# hydra calls it as ssh: options (-x), the host (an address), the command;
# it runs the command inside the namespace that holds that address.
while [ "${1#-}" != "$1" ]; do shift; done
host=$1
shift
for ns in $(ip netns list | awk '{print $1}'); do
    if ip -n "$ns" -4 -o addr show | grep -q " inet $host/"; then
        exec nsenter --net="/run/netns/$ns" sh -c "$*"
    fi
done
echo "netns_launch.sh: no namespace holds $host" >&2
exit 1
