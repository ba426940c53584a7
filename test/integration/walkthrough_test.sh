#!/usr/bin/env bash
# integration.walkthrough: the one-command local cloud end to end, as a new user meets it.
#
#   walkthrough_test.sh BIN_DIR SOURCE_DIR
#
# 1. `cogs dev --data-dir T --port 0 --hosts 3 --boot-ms 50` in the background; wait for T/dev.json
#    (written once the hosts are up and the catalog is seeded).
# 2. scripts/walkthrough.sh against it, with COGS_URL from dev.json and the admin token from its file.
# 3. SIGINT: cogs dev must exit 0 and every child pid it listed must be gone.
# 4. `cogs dev` again on the same directory: the seeded flavor is still there and the same admin
#    token still works. SIGINT again, same checks.
set -euo pipefail

bin=${1:?usage: walkthrough_test.sh BIN_DIR SOURCE_DIR}
src=${2:?usage: walkthrough_test.sh BIN_DIR SOURCE_DIR}
bin=$(cd "$bin" && pwd)
T=$(mktemp -d "${TMPDIR:-/tmp}/cogs-walkthrough.XXXXXX")
dev_pid=

fail() {
    echo "integration.walkthrough: FAILED: $*" >&2
    for f in "$T"/dev.err "$T"/logs/*.log; do
        [[ -f $f ]] && { echo "---- tail of $f" >&2; tail -n 30 "$f" >&2; }
    done
    exit 1
}

# The pids cogs dev listed in dev.json (its children).
child_pids() { grep -o '"pid": *[0-9]*' "$T/dev.json" | grep -o '[0-9]*$'; }

cleanup() {
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

start_dev() {
    rm -f "$T/dev.json"
    "$bin/cogs" dev --data-dir "$T" --port 0 --hosts 3 --boot-ms 50 >"$T/dev.out" 2>"$T/dev.err" &
    dev_pid=$!
    local deadline=$((SECONDS + 60))
    until [[ -f $T/dev.json ]]; do
        kill -0 "$dev_pid" 2>/dev/null || fail "cogs dev exited before writing dev.json"
        ((SECONDS < deadline)) || fail "no $T/dev.json after 60 s"
        sleep 0.1
    done
    COGS_URL=$(grep -o '"api_url": *"[^"]*"' "$T/dev.json" | sed 's/.*"\(http[^"]*\)"/\1/')
    COGS_TOKEN=$(tr -d '[:space:]' <"$T/admin.token")
    COGS_CACERT=$(grep -o '"ca_file": *"[^"]*"' "$T/dev.json" | sed 's/.*"\([^"]*\)"$/\1/')
    [[ -n $COGS_URL && -n $COGS_TOKEN ]] || fail "dev.json has no api_url or the admin token file is empty"
    [[ $COGS_URL == https://* && $COGS_CACERT == "$T/pki/ca.crt" ]] ||
        fail "cogs dev is not on TLS by default (api_url $COGS_URL, ca_file $COGS_CACERT)"
    export COGS_URL COGS_TOKEN COGS_CACERT
    echo "cogs dev is up at $COGS_URL (pid $dev_pid; children: $(child_pids | tr '\n' ' '))"
}

stop_dev() {
    local pids
    pids=$(child_pids)
    [[ -n $pids ]] || fail "dev.json lists no processes"
    kill -INT "$dev_pid"
    local rc=0
    wait "$dev_pid" || rc=$?
    dev_pid=
    ((rc == 0)) || fail "cogs dev exited with $rc after SIGINT"
    for p in $pids; do
        if kill -0 "$p" 2>/dev/null; then fail "child pid $p still runs after cogs dev stopped"; fi
    done
    echo "cogs dev stopped cleanly; children gone: $(echo "$pids" | tr '\n' ' ')"
}

start_dev
grep -q "^export COGS_URL=$COGS_URL COGS_TOKEN=$COGS_TOKEN COGS_CACERT=$COGS_CACERT\$" "$T/dev.out" ||
    fail "cogs dev did not print the export line"
for f in admin.token network.token volume.token agent.key hosts/host-1/host.token hosts/host-1/agent.token; do
    [[ $(stat -c %a "$T/$f") == 600 ]] || fail "$f is not mode 0600"
done
for key in "$T"/pki/*.key; do
    [[ $(stat -c %a "$key") == 600 ]] || fail "$key is not mode 0600"
done
# No agent holds the admin token: each runs with its own host's credentials.
for i in 1 2 3; do
    pid=$(grep -A1 "\"name\": \"cogs-compute-$i\"" "$T/dev.json" | grep -o '"pid": *[0-9]*' | grep -o '[0-9]*$')
    args=$(tr '\0' ' ' <"/proc/$pid/cmdline")
    [[ $args == *"hosts/host-$i/host.token"* && $args != *admin.token* ]] ||
        fail "cogs-compute-$i does not run with its own host's credentials: $args"
done
# Without the CA the CLI refuses to talk (it cannot verify cogsd), and says what to give it.
out=$(COGS_CACERT= "$bin/cogs" whoami 2>&1) && fail "cogs whoami without the CA succeeded"
grep -q "COGS_CACERT" <<<"$out" || fail "cogs without the CA did not say to set COGS_CACERT: $out"
# As the README runs it: `cogs` found on PATH, COGS unset.
(unset COGS; PATH="$bin:$PATH" bash "$src/scripts/walkthrough.sh") || fail "the walkthrough failed"
first_token=$COGS_TOKEN
first_ca=$COGS_CACERT
cp "$T/pki/ca.crt" "$T/first-ca.crt"

# A child that dies is restarted on the same port: cogsd keeps reaching the network service.
pid_of() { grep -A1 "\"name\": \"$1\"" "$T/dev.json" | grep -o '"pid": *[0-9]*' | grep -o '[0-9]*$'; }
old_pid=$(pid_of cogs-network)
kill -KILL "$old_pid"
deadline=$((SECONDS + 30))
until new_pid=$(pid_of cogs-network) && [[ -n $new_pid && $new_pid != "$old_pid" ]]; do
    ((SECONDS < deadline)) || fail "cogs-network was not restarted within 30 s"
    sleep 0.1
done
grep -q "cogs-network exited" "$T/dev.err" || fail "cogs dev did not log the exit of cogs-network"
"$bin/cogs" network create "restart-check-$$" --wait >/dev/null || fail "no network after cogs-network restarted"
"$bin/cogs" network delete "restart-check-$$" --wait >/dev/null || fail "network delete after the restart failed"
echo "cogs-network was restarted (pid $old_pid -> $new_pid) and serves again"
stop_dev

start_dev
[[ $COGS_TOKEN == "$first_token" ]] || fail "the admin token changed across a restart"
[[ $COGS_CACERT == "$first_ca" ]] && cmp -s "$T/pki/ca.crt" "$T/first-ca.crt" || fail "the CA changed across a restart"
"$bin/cogs" flavor show m1.tiny | grep -q '^ram_mb  *512$' || fail "flavor m1.tiny is gone after a restart"
"$bin/cogs" whoami | grep -q '^role  *admin$' || fail "the admin token no longer works after a restart"
[[ $("$bin/cogs" flavor list | grep -c ' m1.tiny ') == 1 ]] || fail "the restart seeded m1.tiny twice"
stop_dev

echo "integration.walkthrough: OK"
