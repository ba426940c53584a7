#!/usr/bin/env bash
# The README's walkthrough as a script: network, subnet, volume, a server on them, then everything
# deleted again, checking at each step what a user would check. Runs against any cogs cloud:
#
#   export COGS_URL=https://127.0.0.1:8780 COGS_TOKEN=... COGS_CACERT=.cogs/pki/ca.crt  # printed by `cogs dev`
#   scripts/walkthrough.sh
#
# COGS names the cogs binary (default: `cogs` on PATH). Names carry a per-run suffix, so the script
# can run again and again against the same cloud. Exits non-zero at the first thing that is wrong.
set -euo pipefail

COGS=${COGS:-cogs}
: "${COGS_URL:?set COGS_URL to the API endpoint (cogs dev prints it)}"
: "${COGS_TOKEN:?set COGS_TOKEN to a token (cogs dev prints the admin token)}"
export COGS_URL COGS_TOKEN

suffix=${WALKTHROUGH_SUFFIX:-$(date +%s)-$$}
net=walk-net-$suffix
subnet=walk-subnet-$suffix
vol=walk-vol-$suffix
srv=walk-srv-$suffix

step() { printf '\n== %s\n' "$*"; }
fail() {
    echo "walkthrough: FAILED: $*" >&2
    exit 1
}
cogs() {
    echo "\$ cogs $*"
    command "$COGS" "$@"
}
# field NAME ARGS...: the value of FIELD NAME in `cogs ARGS...` (a FIELD/VALUE table).
field() {
    local name=$1
    shift
    command "$COGS" "$@" | awk -v f="$name" '$1 == f { $1 = ""; sub(/^ +/, ""); print; exit }'
}
# count_named KIND NAME: how many KINDs named NAME exist.
count_named() {
    command "$COGS" "$1" list --name "$2" | awk -v n="$2" 'NR > 1 && $2 == n' | wc -l
}

step "who am I"
cogs whoami

step "a network with a subnet"
cogs network create "$net" --wait
cogs subnet create "$subnet" --network "$net" --cidr 10.20.0.0/24 --wait
[[ $(field status network show "$net") == ACTIVE ]] || fail "network $net is not ACTIVE"

step "a volume of 1 GiB"
cogs volume create "$vol" --size 1 --wait
[[ $(field status volume show "$vol") == available ]] || fail "volume $vol is not available"

step "a server on that network with that volume"
cogs server create "$srv" --flavor m1.tiny --image cirros --network "$net" --volume "$vol" --wait

step "what there is"
cogs server list
cogs volume list
cogs server show "$srv"

status=$(field status server show "$srv")
ip=$(field ip_address server show "$srv")
server_id=$(field id server show "$srv")
[[ $status == ACTIVE ]] || fail "server $srv is $status, not ACTIVE"
if ! [[ $ip =~ ^10\.20\.0\.([0-9]+)$ ]] || ((BASH_REMATCH[1] < 1 || BASH_REMATCH[1] > 254)); then
    fail "server $srv has address '$ip', not one in 10.20.0.0/24"
fi
[[ $(field status volume show "$vol") == in-use ]] || fail "volume $vol is not in-use"
[[ $(field server_id volume show "$vol") == "$server_id" ]] || fail "volume $vol is not attached to $srv"
echo "server $srv is ACTIVE at $ip with $vol attached"

step "delete the server; its volume stays, detached"
cogs server delete "$srv" --wait
[[ $(count_named server "$srv") == 0 ]] || fail "server $srv is still listed"
[[ $(field status volume show "$vol") == available ]] || fail "volume $vol is not available after the delete"

step "delete the rest"
cogs volume delete "$vol" --wait
cogs subnet delete "$subnet" --wait
cogs network delete "$net" --wait
for kind_name in "volume $vol" "subnet $subnet" "network $net" "server $srv"; do
    # shellcheck disable=SC2086
    [[ $(count_named $kind_name) == 0 ]] || fail "$kind_name is still listed"
done

printf '\nwalkthrough: OK (suffix %s)\n' "$suffix"
