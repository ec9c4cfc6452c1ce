#!/usr/bin/env bash
# What one setting of a VXLAN overlay does to its throughput against the underlay, measured
# without wharfd: two hosts (namespaces) on one underlay bridge, each with a bridge, a VXLAN
# device and a sandbox on a veth pair, as wharf's overlay driver builds them in cluster mode
# (static FDB and neighbour entries, no learning). bench/RESULTS.md reports what it found.
#
# Usage (root): bash bench/overlay-knobs.sh ROUNDS 'COMMAND A' 'COMMAND B'
#   Each round runs COMMAND A, then iperf3 host 1 -> host 2 over the underlay and sandbox 1 ->
#   sandbox 2 over the overlay (2 s each, T=secs to change), then the same with COMMAND B, so
#   that a machine busy with other work weighs on both alike. The commands see $P, the
#   namespaces' prefix: ${P}h1/${P}h2 (hosts: u0 on the underlay, br0, vx0, ve1/ve2 the
#   sandboxes' host ends), ${P}s1/${P}s2 (sandboxes: eth0). VXOPTS adds options to the VXLAN
#   devices. Example: GRO on the sandboxes' veths:
#     bash bench/overlay-knobs.sh 6 \
#       'for n in 1 2; do ip netns exec ${P}s$n ethtool -K eth0 gro off; done' \
#       'for n in 1 2; do ip netns exec ${P}s$n ethtool -K eth0 gro on; done'
#   (ethtool: `apt-get install ethtool`; the script itself needs only iproute2 and iperf3.)
# Everything lives in private namespaces, deleted on exit.
set -euo pipefail
ROUNDS=$1 A=$2 B=$3 T=${T:-2}
export P="wk$$"
NS="${P}s1 ${P}s2 ${P}h1 ${P}h2 ${P}u"
down() { for n in $NS; do ip netns del "$n" 2>/dev/null || true; done; }
trap down EXIT

ip netns add "${P}u"
ip -n "${P}u" link add ubr type bridge
ip -n "${P}u" link set ubr up
for n in 1 2; do
    h=${P}h$n s=${P}s$n
    ip netns add "$h"
    ip netns add "$s"
    ip -n "$h" link set lo up
    ip -n "$s" link set lo up
    ip -n "$h" link add u0 type veth peer name "u$n" netns "${P}u"
    ip -n "$h" addr add "192.168.81.$n/24" dev u0
    ip -n "$h" link set u0 up
    ip -n "${P}u" link set "u$n" master ubr
    ip -n "${P}u" link set "u$n" up
    ip -n "$h" link add br0 mtu 1450 type bridge
    # shellcheck disable=SC2086
    ip -n "$h" link add vx0 mtu 1450 type vxlan id 4242 dstport 4789 local "192.168.81.$n" dev u0 \
        nolearning proxy ${VXOPTS:-}
    ip -n "$h" link set vx0 master br0
    ip -n "$h" link set br0 up
    ip -n "$h" link set vx0 up
    ip -n "$h" link add "ve$n" mtu 1450 type veth peer name eth0 netns "$s"
    ip -n "$h" link set "ve$n" master br0
    ip -n "$h" link set "ve$n" up
    ip -n "$s" addr add "10.96.0.$n/24" dev eth0
    ip -n "$s" link set eth0 up
done
for n in 1 2; do
    m=$((3 - n))
    mac=$(ip netns exec "${P}s$m" cat /sys/class/net/eth0/address)
    ip -n "${P}h$n" neigh add "10.96.0.$m" lladdr "$mac" dev vx0 nud permanent
    bridge -n "${P}h$n" fdb add "$mac" dev vx0 dst "192.168.81.$m" self permanent
done

# Gbit/s from namespace $2 to address $3, served in namespace $1.
gbps() {
    ip netns exec "$1" iperf3 -s -1 -p 5299 >/dev/null 2>&1 &
    local server=$!
    sleep 0.3
    ip netns exec "$2" iperf3 -J -c "$3" -p 5299 -t "$T" |
        python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 1e9))'
    wait "$server" || true
}

out=""
for _ in $(seq "$ROUNDS"); do
    for which in A B; do
        if [ "$which" = A ]; then eval "$A"; else eval "$B"; fi
        u=$(gbps "${P}h2" "${P}h1" 192.168.81.2)
        o=$(gbps "${P}s2" "${P}s1" 10.96.0.2)
        out="$out $which,$u,$o"
    done
done
python3 - "$out" <<'EOF'
import statistics as st, sys
runs = {"A": [], "B": []}
for t in sys.argv[1].split():
    which, u, o = t.split(",")
    runs[which].append((float(u), float(o)))
for which, v in runs.items():
    u, o = [a for a, _ in v], [b for _, b in v]
    print(f"{which}: underlay {u}\n   overlay  {o}")
    print(f"   best {max(o):.2f} / {max(u):.2f} = {max(o) / max(u):.2f}; "
          f"pairwise median overlay/underlay {st.median(b / a for a, b in v):.2f}")
EOF
