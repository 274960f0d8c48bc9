#!/bin/sh
# Re-record the /proc/net route fixtures from real kernels (run as root; needs `ip netns`).
# Each scenario is built in a throwaway namespace whose interfaces are veth pairs to a second
# throwaway namespace (the "wire"), so nothing leaves the two; addresses stay in 10.253.0.0/16. The expected
# answers live in expected.json next to the recordings and are written by hand.
set -eu
cd "$(dirname "$0")"
NS="cxrec$$"

begin() { ip netns add "$NS"; ip netns add "${NS}w"; ip -n "$NS" link set lo up; }
nic() {  # nic NAME ADDR/PREFIX|-
    ip -n "$NS" link add "$1" type veth peer name "$1" netns "${NS}w"
    ip -n "${NS}w" link set "$1" up
    ip -n "$NS" link set "$1" up
    [ "$2" = - ] || ip -n "$NS" addr add "$2" dev "$1"
}
r() { ip -n "$NS" "$@"; }
save() {
    mkdir -p "$1/net"
    ip netns exec "$NS" cat /proc/net/route > "$1/net/route"
    ip netns exec "$NS" cat /proc/net/ipv6_route > "$1/net/ipv6_route"
    ip netns del "$NS"; ip netns del "${NS}w"
}
trap 'ip netns del "$NS" 2>/dev/null || true; ip netns del "${NS}w" 2>/dev/null || true' EXIT

# A laptop in a dock: cable (metric 100) and Wi-Fi (metric 600) up at once, plus docker.
begin
nic enp0s31f6 10.253.2.57/24; nic wlp2s0 10.253.1.23/24; nic docker0 10.253.200.1/24
r route add default via 10.253.2.1 dev enp0s31f6 proto dhcp metric 100
r route add default via 10.253.1.1 dev wlp2s0 proto dhcp metric 600
r -6 route add default via fe80::2 dev enp0s31f6 proto ra metric 100
r -6 route add default via fe80::1 dev wlp2s0 proto ra metric 600
save laptop_dock_and_wifi

# Full-tunnel VPN: a gateway-less default on tun0 wins on metric, the Wi-Fi router is behind it.
begin
nic wlp2s0 10.253.1.23/24; nic tun0 10.253.99.2/32
r route add default dev tun0 metric 50
r route add 10.253.98.10 via 10.253.1.1 dev wlp2s0
r route add default via 10.253.1.1 dev wlp2s0 proto dhcp metric 600
save vpn_full_tunnel

# An administrator's "unreachable default" with a lower metric than the real one.
begin
nic eth0 10.253.3.5/24
r route add unreachable default metric 10
r route add default via 10.253.3.1 dev eth0 metric 100
save reject_default

# IPv6-only network: the router is only known by its link-local address.
begin
nic eth0 -
r -6 route add default via fe80::1 dev eth0 proto ra metric 1024
save ipv6_only

# Isolated lab segment: addresses, no default route at all.
begin
nic eth0 10.253.3.5/24
save no_default
