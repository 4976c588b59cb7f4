#!/usr/bin/env bash
# A real S3-protocol server for tests: a single-node Ceph cluster (one monitor, one
# in-memory OSD, one RADOS gateway) listening on 127.0.0.1 only.
#
#   scripts/s3-server.sh start    start it (or notice it already answers); prints "ready" when usable
#   scripts/s3-server.sh stop     kill every daemon this script started and remove its scratch directory
#                                 (with AEGIS_S3_USER: only when no other registered user remains)
#   scripts/s3-server.sh status   exit 0 when the gateway answers
#   scripts/s3-server.sh env      print the AWS_* variables a client needs (test credentials)
#
# Settings (environment):
#   AEGIS_S3_PORT       gateway port (default 17480); the monitor listens on AEGIS_S3_MON_PORT (default 16789)
#   AEGIS_S3_DIR        scratch directory (default /tmp/aegis-s3-<port>); everything lives there, data in RAM
#   AEGIS_S3_ACCESS_KEY / AEGIS_S3_SECRET_KEY   the test user's keys (defaults below: for loopback tests only)
#   CEPH_ROOT           where the Ceph Debian packages were unpacked with dpkg -x ("" when installed with apt-get)
#   AEGIS_S3_USER       a process ID that uses the server (the test runner sets its own): start registers it,
#                       stop unregisters it and stops the server only when no other registered process is alive
#                       and nobody started it by hand, so two test runs on one machine share one server and
#                       neither pulls it from under the other. Without it, stop stops unconditionally.
#
# Auth between the Ceph daemons is off and the pool has one replica: never expose this beyond 127.0.0.1.
# Packages: `bash scripts/setup.sh --test` installs radosgw, ceph-mon, ceph-osd and ceph-common.
set -euo pipefail

PORT=${AEGIS_S3_PORT:-17480}
MON_PORT=${AEGIS_S3_MON_PORT:-16789}
D=${AEGIS_S3_DIR:-/tmp/aegis-s3-$PORT}
AK=${AEGIS_S3_ACCESS_KEY:-aegis-test-access}
SK=${AEGIS_S3_SECRET_KEY:-aegis-test-secret}
R=${CEPH_ROOT:-}
URL="http://127.0.0.1:$PORT"
C=$D/ceph.conf
USERS=$D.users

export PATH=$R/usr/bin:$R/usr/sbin:$PATH
if [ -n "$R" ]; then
  export LD_LIBRARY_PATH=$R/lib/x86_64-linux-gnu:$R/usr/lib/x86_64-linux-gnu:$R/usr/lib/x86_64-linux-gnu/ceph${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
  export PYTHONPATH=$R/usr/lib/python3/dist-packages${PYTHONPATH:+:$PYTHONPATH}
fi

say() { echo "s3-server: $*"; }

answering() { curl -s -o /dev/null --max-time 2 "$URL/"; }

# Print the end of every log, then stop what was started and fail.
fail() {
  echo "s3-server: $*" >&2
  for f in "$D"/log/*.log "$D"/log/*.out; do
    [ -s "$f" ] || continue
    echo "---- last lines of $f" >&2
    tail -n 25 "$f" >&2
  done
  stop_daemons
  exit 1
}

stop_daemons() {
  local pids=() f pid
  for f in "$D"/run/*.pid; do
    [ -f "$f" ] || continue
    pid=$(cat "$f" 2>/dev/null || true)
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && pids+=("$pid")
  done
  [ ${#pids[@]} -eq 0 ] && return 0
  kill -TERM "${pids[@]}" 2>/dev/null || true
  for _ in $(seq 1 100); do
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ $alive -eq 0 ] && return 0
    sleep 0.1
  done
  kill -KILL "${pids[@]}" 2>/dev/null || true
}

need() {
  command -v "$1" >/dev/null || { echo "s3-server: $1 is not installed (run: bash scripts/setup.sh --test)" >&2; exit 1; }
}

# A start without AEGIS_S3_USER (by hand) registers "manual": such a server is only stopped by hand.
register() {
  mkdir -p "$USERS" && : >"$USERS/${AEGIS_S3_USER:-manual}"
}

# Other registered users whose process still lives ("manual" always counts).
other_users() {
  local n=0 f pid
  for f in "$USERS"/*; do
    [ -e "$f" ] || continue
    pid=$(basename "$f")
    [ "$pid" = "${AEGIS_S3_USER:-}" ] && continue
    if [ "$pid" = manual ] || kill -0 "$pid" 2>/dev/null; then n=$((n + 1)); else rm -f "$f"; fi
  done
  echo $n
}

start() {
  if answering; then
    register
    say "already answering at $URL"
    exit 0
  fi
  for tool in ceph-mon ceph-osd radosgw ceph ceph-authtool monmaptool radosgw-admin curl; do need "$tool"; done
  # Leftovers of an earlier run (daemons that died or were left running) go first.
  stop_daemons
  rm -rf "$D"
  mkdir -p "$D"/{run,log,mon,osd,rgw}
  local fsid
  fsid=$(cat /proc/sys/kernel/random/uuid)
  cat >"$C" <<CONF
[global]
fsid = $fsid
mon host = v1:127.0.0.1:$MON_PORT
mon initial members = a
auth cluster required = none
auth service required = none
auth client required = none
auth allow insecure global id reclaim = true
osd pool default size = 1
osd pool default min size = 1
mon allow pool size one = true
mon allow pool delete = true
osd crush chooseleaf type = 0
osd pool default pg num = 8
osd pool default pgp num = 8
osd pool default pg autoscale mode = off
mon max pg per osd = 1000
run dir = $D/run
pid file = $D/run/\$name.pid
log file = $D/log/\$name.log
admin socket = $D/run/\$name.asok
keyring = $D/keyring
mon data = $D/mon/\$cluster-\$id
osd data = $D/osd/\$cluster-\$id
osd objectstore = memstore
memstore device bytes = 4294967296
osd class dir = $R/usr/lib/x86_64-linux-gnu/rados-classes
erasure code dir = $R/usr/lib/x86_64-linux-gnu/ceph/erasure-code
plugin dir = $R/usr/lib/x86_64-linux-gnu/ceph
ms bind msgr2 = false
# The OSD's optional device-class update at start can race the monitor map on a busy
# machine (the monitor sees fsid 00000000-... and answers "wrong fsid"); we need no classes.
osd class update on start = false
[client.rgw.a]
rgw frontends = beast endpoint=127.0.0.1:$PORT
rgw data = $D/rgw
CONF
  local t0=$SECONDS
  ceph-authtool --create-keyring "$D/keyring" --gen-key -n mon. --cap mon 'allow *' >"$D/log/setup.out" 2>&1 || fail "ceph-authtool failed"
  ceph-authtool "$D/keyring" --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' >>"$D/log/setup.out" 2>&1 || fail "ceph-authtool failed"
  monmaptool --create --addv a "v1:127.0.0.1:$MON_PORT" --fsid "$fsid" "$D/monmap" >>"$D/log/setup.out" 2>&1 || fail "monmaptool failed"
  ceph-mon -c "$C" --mkfs -i a --monmap "$D/monmap" --keyring "$D/keyring" >>"$D/log/setup.out" 2>&1 || fail "ceph-mon --mkfs failed"
  # 9>&-: the daemons must not inherit (and keep holding) the start/stop lock.
  ceph-mon -c "$C" -i a >>"$D/log/setup.out" 2>&1 9>&- || fail "ceph-mon did not start"
  local osd
  # The monitor may take a while on a loaded machine: ask again until it answers (up to 90 s).
  local osd_uuid
  osd_uuid=$(cat /proc/sys/kernel/random/uuid)
  osd=""
  for _ in $(seq 1 9); do
    # With a UUID, "osd create" is idempotent: a retry after a lost answer gets the same ID.
    if osd=$(timeout 10 ceph -c "$C" osd create "$osd_uuid" 2>>"$D/log/setup.out"); then break; fi
    osd=""
    kill -0 "$(cat "$D/run/mon.a.pid" 2>/dev/null || echo 0)" 2>/dev/null || fail "the monitor died at start"
  done
  [ -n "$osd" ] || fail "the monitor did not answer within 90 s"
  mkdir -p "$D/osd/ceph-$osd"
  ceph-osd -c "$C" -i "$osd" --mkfs --osd-uuid "$osd_uuid" >>"$D/log/setup.out" 2>&1 || fail "ceph-osd --mkfs failed"
  local up=0 attempt
  # An OSD that dies during init on a loaded machine is started again (five tries).
  for attempt in 1 2 3 4 5; do
    # Its first command to a monitor that has only just started can go out with an
    # empty fsid ("wrong fsid", seen in bench runs): then ceph-osd exits at once.
    # Three tries at once all failed within 0.1 s once; the next try waits a little
    # longer each time, for the monitor to settle.
    if ! ceph-osd -c "$C" -i "$osd" >>"$D/log/setup.out" 2>&1 9>&-; then
      say "the OSD failed to start (attempt $attempt); starting it again in $attempt s"
      sleep "$attempt"
      continue
    fi
    for _ in $(seq 1 120); do
      if timeout 10 ceph -c "$C" osd stat 2>/dev/null | grep -q "1 up"; then up=1; break; fi
      kill -0 "$(cat "$D/run/osd.$osd.pid" 2>/dev/null || echo 0)" 2>/dev/null || break
      sleep 0.5
    done
    [ $up -eq 1 ] && break
    say "the OSD died while starting (attempt $attempt); starting it again"
  done
  [ $up -eq 1 ] || fail "the OSD did not come up in five tries"
  radosgw -c "$C" -n client.rgw.a >>"$D/log/setup.out" 2>&1 9>&- || fail "radosgw did not start"
  up=0
  for _ in $(seq 1 240); do
    if answering; then up=1; break; fi
    sleep 0.5
  done
  [ $up -eq 1 ] || fail "the gateway did not answer at $URL within 120 s"
  radosgw-admin -c "$C" user create --uid=aegis-test --display-name="aegis tests" \
    --access-key="$AK" --secret-key="$SK" >>"$D/log/setup.out" 2>&1 || fail "radosgw-admin user create failed"
  # A signed request proves the user works end to end.
  up=0
  for _ in $(seq 1 40); do
    if curl -s -f -o /dev/null --max-time 5 --aws-sigv4 "aws:amz:us-east-1:s3" \
      -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' --user "$AK:$SK" "$URL/"; then up=1; break; fi
    sleep 0.5
  done
  [ $up -eq 1 ] || fail "the gateway refused the test user's signed request"
  register
  say "ready at $URL after $((SECONDS - t0)) s (scratch $D)"
}

stop() {
  if [ "${1:-}" != "--force" ] && [ -n "${AEGIS_S3_USER:-}" ]; then
    if [ ! -e "$USERS/$AEGIS_S3_USER" ]; then
      say "process $AEGIS_S3_USER is not registered; left as it is"
      return 0
    fi
    rm -f "$USERS/$AEGIS_S3_USER"
    local others
    others=$(other_users)
    if [ "$others" -gt 0 ]; then
      say "left running: $others other user(s) registered"
      return 0
    fi
  fi
  stop_daemons
  rm -rf "$D" "$USERS"
  say "stopped"
}

# One start or stop at a time per port: two test runs starting together must not both build a cluster.
mkdir -p "$(dirname "$D")"
exec 9>"$D.lock"
flock 9

case "${1:-}" in
  start) start ;;
  stop) stop "${2:-}" ;;
  status)
    if answering; then say "answering at $URL"; else say "not answering at $URL"; exit 1; fi
    ;;
  requests)
    # The gateway's own request counters (JSON: rgw.req, rgw.get, rgw.put, ...),
    # so that a bench can count requests without a proxy in the timed path.
    # (No `answering` check here: its request would be counted.)
    [ -S "$D/run/client.rgw.a.asok" ] || fail "no gateway admin socket under $D/run"
    ceph --admin-daemon "$D/run/client.rgw.a.asok" perf dump rgw
    ;;
  env)
    echo "AWS_ACCESS_KEY_ID=$AK"
    echo "AWS_SECRET_ACCESS_KEY=$SK"
    echo "AWS_REGION=us-east-1"
    echo "AEGIS_S3_ENDPOINT=$URL"
    ;;
  *)
    echo "usage: scripts/s3-server.sh start|stop|status|env|requests" >&2
    exit 2
    ;;
esac
