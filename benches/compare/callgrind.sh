#!/usr/bin/env bash
# The daemon's user-space instructions per request, counted by callgrind:
# every small file of the comparison dataset once, over one keep-alive
# connection, with the tiers warm and the access log off. Repeatable to the
# instruction whatever else the machine does, where req/s moves by ±15%
# between identical runs; docs/performance.md keeps the figures.
#
#   benches/compare/callgrind.sh [memory|disk]     (default: memory)
#
# memory: a memory hit (memory tier of 1 GiB); disk: a disk hit (memory
# tier off). Needs the dataset and the release that run.sh made in
# $UNIMIRROR_BENCH_DIR (default /var/tmp/unimirror-bench), valgrind and
# python3. UNIMIRROR_BENCH_BIN=<dir> measures the binaries in <dir>
# (another commit's, for a before/after); the default is target/release.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WORK=${UNIMIRROR_BENCH_DIR:-/var/tmp/unimirror-bench}
BIN=${UNIMIRROR_BENCH_BIN:-$ROOT/target/release}
MODE=${1:-memory}
PORT=${CALLGRIND_PORT:-18199}
case "$MODE" in
  memory) MEMORY=1GiB ;;
  disk) MEMORY=0 ;;
  *) echo "usage: $0 [memory|disk]" >&2; exit 2 ;;
esac
PATHS=$WORK/data/small.paths
[ -s "$PATHS" ] || { echo "no dataset in $WORK: run benches/compare/run.sh first" >&2; exit 1; }
[ -d "$WORK/origin/bench" ] || { echo "volume bench is not released in $WORK/origin" >&2; exit 1; }

CACHE=$WORK/cache-callgrind
CONFIG=$WORK/run/callgrind.toml
OUT=$WORK/callgrind.$MODE.out
rm -rf "$CACHE" "$OUT"
mkdir -p "$WORK/run" "$WORK/logs"
cat > "$CONFIG" <<EOF
origin = "$WORK/origin"
staging = "$WORK/staging"
[volumes.bench]
prefix = "/bench"
[daemon]
drain_delay = "0s"
listen = ["127.0.0.1:$PORT"]
log_format = "json"
[cache]
dir = "$CACHE"
disk_size = "8GiB"
memory_size = "$MEMORY"
memory_max_object = "1MiB"
scrub_interval = "0s"
EOF

# Instrumentation starts off: start-up and the warm passes are not counted.
UNIMIRROR_LOG=info,access=off valgrind --tool=callgrind --instr-atstart=no \
  --callgrind-out-file="$OUT" "$BIN/unimirror" serve --config "$CONFIG" \
  >"$WORK/logs/callgrind.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT

# One keep-alive connection, every path once; exits non-zero on any status
# but 200.
pass() {
  python3 - "$PORT" "$PATHS" <<'EOF'
import http.client, sys
port, paths = int(sys.argv[1]), [l.strip() for l in open(sys.argv[2]) if l.strip()]
c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
for p in paths:
    c.request("GET", "/bench/" + p)
    r = c.getresponse()
    r.read()
    if r.status != 200:
        sys.exit(f"{p}: {r.status}")
print(len(paths))
EOF
}

for _ in $(seq 1 600); do
  curl -sf -o /dev/null "http://127.0.0.1:$PORT/healthz" && break
  kill -0 $PID || { cat "$WORK/logs/callgrind.log" >&2; exit 1; }
  sleep 0.5
done
pass >/dev/null
pass >/dev/null
callgrind_control -i on $PID >/dev/null
N=$(pass)
callgrind_control -i off $PID >/dev/null
kill -TERM $PID
wait $PID || true
trap - EXIT
TOTAL=$(awk '/^totals:/ { t = $2 } END { print t }' "$OUT")
echo "$MODE hit: $TOTAL instructions over $N requests: $((TOTAL / N)) a request ($BIN)"
