#!/usr/bin/env bash
# bench/openstack_cli.sh: what a user of Debian's `openstack` command (python3-openstackclient)
# waits for against `cogs dev`, beside the same through the `cogs` command (issue 18).
#
#   bench/openstack_cli.sh [BIN_DIR]        (default: build/bin of this checkout; N=10 by default)
#
# 1. `cogs dev --data-dir T --port 0 --hosts 3 --boot-ms 200` (TLS, its default) in the background;
#    with the admin token: a project `bench`, a member token of it, a member user with a password;
#    as that member, a network and its subnet.
# 2. N times each, interleaved (openstack, then cogs):
#      openstack server create --flavor m1.tiny --image busybox --network benchnet --wait NAME
#      cogs server create NAME --flavor m1.tiny --image busybox --network benchnet --wait
#    each timed (wall clock), while a side loop polls `cogs server show NAME` every ~0.1 s and notes
#    when the server is first ACTIVE (the time the cloud took, as the same poller sees it for both);
#    each server is then deleted (--wait, not timed). The openstack command logs in with the
#    password (Keystone, OS_* variables) as its users do.
# 3. N times each, interleaved: `openstack server list` (password login), `openstack server list`
#    with a token (--os-auth-type token: no password hash on cogsd), `cogs server list`, and
#    `openstack --version` (the Python start-up alone: the floor of every openstack command).
#
# Prints each sample, then the median, min and max of each and the load average, and as the last
# line one JSON object. Reports; never fails on a timing. cogs dev and its children are stopped on
# exit, on failure too.
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:-$src/build/bin}
bin=$(cd "$bin" && pwd)
N=${N:-10}
BOOT_MS=200
HOSTS=3
OPENSTACK=/usr/bin/openstack
[[ -x $OPENSTACK ]] || { echo "openstack_cli: $OPENSTACK is missing (Debian package python3-openstackclient)" >&2; exit 77; }

T=$(mktemp -d "${TMPDIR:-/tmp}/cogs-openstack-cli.XXXXXX")
dev_pid=
poller_pid=

fail() {
    echo "openstack_cli: FAILED: $*" >&2
    for f in "$T"/dev.err "$T"/cmd.err "$T"/logs/cogsd*.log; do
        [[ -f $f ]] && { echo "---- tail of $f" >&2; tail -n 30 "$f" >&2; }
    done
    exit 1
}

# The pids cogs dev listed in dev.json (its children).
child_pids() { grep -o '"pid": *[0-9]*' "$T/dev.json" | grep -o '[0-9]*$'; }

cleanup() {
    if [[ -n $poller_pid ]]; then kill "$poller_pid" 2>/dev/null || true; fi
    if [[ -n $dev_pid ]] && kill -0 "$dev_pid" 2>/dev/null; then
        kill -INT "$dev_pid" 2>/dev/null || true
        for _ in $(seq 100); do kill -0 "$dev_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$dev_pid" 2>/dev/null || true
    fi
    if [[ -f $T/dev.json ]]; then
        for p in $(child_pids); do kill -KILL "$p" 2>/dev/null || true; done
    fi
    rm -rf "$T"
}
trap cleanup EXIT

loadavg() { cut -d' ' -f1 /proc/loadavg; }
load_before=$(loadavg)

# ---- the cloud ----
"$bin/cogs" dev --data-dir "$T" --port 0 --hosts "$HOSTS" --boot-ms "$BOOT_MS" >"$T/dev.out" 2>"$T/dev.err" &
dev_pid=$!
deadline=$((SECONDS + 120))
until [[ -f $T/dev.json ]]; do
    kill -0 "$dev_pid" 2>/dev/null || fail "cogs dev exited before writing dev.json"
    ((SECONDS < deadline)) || fail "no $T/dev.json after 120 s"
    sleep 0.1
done
COGS_URL=$(grep -o '"api_url": *"[^"]*"' "$T/dev.json" | sed 's/.*"\(http[^"]*\)"/\1/')
COGS_CACERT=$T/pki/ca.crt
admin_token=$(tr -d '[:space:]' <"$T/admin.token")
[[ -n $COGS_URL && -n $admin_token && -f $COGS_CACERT ]] || fail "dev.json has no api_url, or no admin token or CA"
export COGS_URL COGS_CACERT
unset COGS COGS_TOKEN
echo "cogs dev is up at $COGS_URL (pid $dev_pid; $HOSTS hosts, --boot-ms $BOOT_MS)"

admin() { COGS_TOKEN=$admin_token "$bin/cogs" "$@" 2>"$T/cmd.err"; }
member() { COGS_TOKEN=$member_token "$bin/cogs" "$@" 2>"$T/cmd.err"; }
# A field of the JSON object on standard input, or of the one object it wraps ({"token": {...}}).
field() {
    /usr/bin/python3 -c '
import json, sys
o = json.load(sys.stdin)
if sys.argv[1] not in o and len(o) == 1:
    o = next(iter(o.values()))
print(o[sys.argv[1]])' "$1"
}

admin project create bench >/dev/null || fail "project create"
member_token=$(admin -o json token create --project bench --role member --name bench-cli | field secret) ||
    fail "token create"
password=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
printf '%s\n' "$password" >"$T/bench.password"
chmod 600 "$T/bench.password"
admin user create benchuser --project bench --role member --password-file "$T/bench.password" >/dev/null ||
    fail "user create"
member network create benchnet --wait >/dev/null || fail "network create"
member subnet create benchsub --network benchnet --cidr 10.42.0.0/24 --wait >/dev/null || fail "subnet create"

# The openstack command as a tenant runs it: a password login (Keystone v3) from OS_* variables,
# Debian's Python without the caller's Python path or OS_* settings.
py_env=(env -u PYTHONPATH -u PYTHONHOME)
for v in $(env | grep -o '^OS_[A-Za-z_]*' || true); do py_env+=(-u "$v"); done
py_env+=(PYTHONWARNINGS=ignore OS_AUTH_URL="$COGS_URL/v3" OS_IDENTITY_API_VERSION=3 OS_REGION_NAME=RegionOne
         OS_INTERFACE=public OS_CACERT="$COGS_CACERT" OS_PROJECT_NAME=bench OS_PROJECT_DOMAIN_NAME=Default)
os_env=("${py_env[@]}" OS_USERNAME=benchuser OS_PASSWORD="$password" OS_USER_DOMAIN_NAME=Default)
openstack() { "${os_env[@]}" "$OPENSTACK" "$@" 2>"$T/cmd.err"; }
# With a token instead of the password: keystoneauth still asks /v3/auth/tokens for the catalog
# (the token method, no hash).
openstack_token() { "${py_env[@]}" OS_AUTH_TYPE=token OS_TOKEN="$member_token" "$OPENSTACK" "$@" 2>"$T/cmd.err"; }
openstack token issue -f value -c id >/dev/null || fail "openstack token issue (password login)"
openstack_token server list >/dev/null || fail "openstack server list with a token"

# ---- timing ----
now_us() { local t=$EPOCHREALTIME; echo "${t/./}"; }
secs() { awk -v us="$1" 'BEGIN { printf "%.3f", us / 1e6 }'; }

# Polls the server NAME until it is ACTIVE (or 120 s), then writes the µs since START_US to FILE.
poll_active() {
    local name=$1 start=$2 file=$3 end=$((SECONDS + 120)) out
    while ((SECONDS < end)); do
        out=$(COGS_TOKEN=$member_token "$bin/cogs" -o json server show "$name" 2>/dev/null || true)
        if [[ $out =~ \"status\":\ *\"ACTIVE\" ]]; then
            echo $(($(now_us) - start)) >"$file"
            return 0
        fi
        sleep 0.1
    done
    echo -1 >"$file"
}

# Times one create --wait (the command line after the CLI's name) with its side poller; appends
# the wall seconds to $T/KEY.wall and the seconds until ACTIVE to $T/KEY.active; deletes it.
timed_create() {
    local key=$1 name=$2
    shift 2
    local start end active
    start=$(now_us)
    poll_active "$name" "$start" "$T/active.us" &
    poller_pid=$!
    "$@" >/dev/null || fail "$key: create of $name"
    end=$(now_us)
    wait "$poller_pid" || true
    poller_pid=
    active=$(cat "$T/active.us")
    echo "$(secs $((end - start)))" >>"$T/$key.wall"
    echo "$(secs "$active")" >>"$T/$key.active"
    printf '  %-9s %-12s wall %6s s   ACTIVE after %6s s\n' "$key" "$name" "$(secs $((end - start)))" "$(secs "$active")"
    member server delete "$name" --wait >/dev/null || fail "delete of $name"
}

timed() {
    local key=$1 start end
    shift
    start=$(now_us)
    "$@" >/dev/null || fail "$key: $*"
    end=$(now_us)
    echo "$(secs $((end - start)))" >>"$T/$key.wall"
}

# "median min max" of the numbers in FILE.
stats() { sort -n "$1" | awk '{ v[NR] = $1 } END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.3f %.3f %.3f", m, v[1], v[NR] }'; }
stats_json() { read -r m lo hi <<<"$(stats "$1")"; printf '{"median":%s,"min":%s,"max":%s}' "$m" "$lo" "$hi"; }

echo "server create --wait, $N each (interleaved):"
for i in $(seq "$N"); do
    timed_create openstack "os-$i" openstack server create --flavor m1.tiny --image busybox --network benchnet --wait "os-$i"
    timed_create cogs "cogs-$i" member server create "cogs-$i" --flavor m1.tiny --image busybox --network benchnet --wait
done

echo "server list, $N each (interleaved) ..."
for i in $(seq "$N"); do
    timed list_openstack openstack server list
    timed list_openstack_token openstack_token server list
    timed list_cogs member server list
    timed openstack_version "${os_env[@]}" "$OPENSTACK" --version
done
load_after=$(loadavg)

# ---- report ----
echo
printf '%-40s %8s %8s %8s\n' "seconds, $N samples each" median min max
row() { read -r m lo hi <<<"$(stats "$T/$2")"; printf '%-40s %8s %8s %8s\n' "$1" "$m" "$lo" "$hi"; }
row "openstack server create --wait (wall)" openstack.wall
row "  ... ACTIVE seen by the side poller" openstack.active
row "cogs server create --wait (wall)" cogs.wall
row "  ... ACTIVE seen by the side poller" cogs.active
row "openstack server list (password)" list_openstack.wall
row "openstack server list (token)" list_openstack_token.wall
row "cogs server list" list_cogs.wall
row "openstack --version (Python start-up)" openstack_version.wall
echo "nproc $(nproc); load average before $load_before, after $load_after; now: $(cut -d' ' -f1-3 /proc/loadavg)"

note="openstack --wait polls the server every 5 s (osc_lib's default), so its wall time is the time until ACTIVE rounded up to that poll; *_active is when a side loop running cogs server show every ~0.1 s first saw ACTIVE (from the command's start, start-up and login included). openstack logs in with the password on every command (a PBKDF2 hash of 600,000 iterations on cogsd, ~0.3 s); list_openstack_token uses --os-auth-type token instead. openstack_version is Python's start-up alone."
printf '{"n":%s,"hosts":%s,"boot_ms":%s,"server_create_wait_s":{"openstack":%s,"cogs":%s},"server_active_s":{"openstack":%s,"cogs":%s},"server_list_s":{"openstack":%s,"openstack_token":%s,"cogs":%s},"openstack_version_s":%s,"machine":{"nproc":%s,"loadavg_1m_before":%s,"loadavg_1m_after":%s},"note":"%s"}\n' \
    "$N" "$HOSTS" "$BOOT_MS" \
    "$(stats_json "$T/openstack.wall")" "$(stats_json "$T/cogs.wall")" \
    "$(stats_json "$T/openstack.active")" "$(stats_json "$T/cogs.active")" \
    "$(stats_json "$T/list_openstack.wall")" "$(stats_json "$T/list_openstack_token.wall")" \
    "$(stats_json "$T/list_cogs.wall")" "$(stats_json "$T/openstack_version.wall")" \
    "$(nproc)" "$load_before" "$load_after" "$note"
