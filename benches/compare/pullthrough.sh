#!/usr/bin/env bash
# unimirror's PyPI proxy volume side by side with the pull-through peers,
# all filling from one PyPI-layout upstream (nginx serving
# pullthrough_data.py's tree) that waits DELAY_MS (default 20) before
# answering each request: nginx's echo module (`apt-get install
# libnginx-mod-http-echo`), or, without it, delay.py, a Python relay in
# front of the upstream, which caps every target at about 1,300 pages a
# second on two cores. See docs/performance.md.
#
#   benches/compare/pullthrough.sh [--rounds N] [--seconds S] [--only W,W]
#
# Peers: nginx proxy_cache with proxy_cache_lock, Varnish, and proxpi (the
# PyPI pages only: proxpi redirects a file it has not cached yet to the
# upstream). Every target starts with an empty cache each round. Measured:
# - pages-cold: 2,000 project pages, each asked for once, 32 connections;
# - pages-hot: the same pages, random, 64 connections, for --seconds;
# - large-cold: eight 32 MiB files, each once, 4 connections;
# - herd: 50 clients (curl) at once on one cold 200 MiB file: wall time,
#   and bytes the upstream sent (its access log) over the file's size;
# - large-hot: the eight files, random, 16 connections, for --seconds.
# --only pages-cold (or a comma-separated list) runs only those workloads.
# Each pages-cold result also records the server's CPU seconds for the
# round (from /proc), so a change's cost per page can be compared too.
# Servers on CPU $SERVER_CPU, load on $LOAD_CPU; the upstream and its
# front on the load's CPU (they are the "network"). Page requests carry
# pip's Accept header. Results are appended to
# $UNIMIRROR_BENCH_DIR/pullthrough/pullthrough.jsonl and summarised at the
# end. CACHE_TMPFS=1 (as root) puts nginx's and unimirror's caches on a
# tmpfs, as Varnish's is in memory: on a filesystem that has seen millions
# of files deleted (the million workload), ext4's inode allocation costs a
# cold page more than the rest of its work (unimirror and nginx create one
# file per page).
# VARNISH_STORAGE=file gives Varnish a cache file there too (default:
# malloc, memory only). TARGETS="unimirror varnish" measures only those
# (default: all four).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WORK=${UNIMIRROR_BENCH_DIR:-/var/tmp/unimirror-bench}/pullthrough
ROUNDS=3
DURATION=10
ONLY=",pages-cold,pages-hot,large-cold,herd,large-hot,"
DELAY_MS=${DELAY_MS:-20}
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --seconds) DURATION=$2; shift 2 ;;
    --only) ONLY=",$2,"; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
export PATH=$PATH:/usr/sbin
for tool in nginx varnishd wrk curl taskset python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool" >&2; exit 1; }
done
BIN=${UNIMIRROR_BENCH_BIN:-$ROOT/target/release}
if [ -z "${UNIMIRROR_BENCH_BIN:-}" ] && [ "${UNIMIRROR_BENCH_NO_BUILD:-0}" != 1 ]; then
  (cd "$ROOT" && cargo build --release --quiet --bins)
fi
mkdir -p "$WORK"/{run,logs}
RESULTS=$WORK/pullthrough.jsonl
RUN_ID=$(date -u +%Y%m%dT%H%M%SZ)

declare -A PORT=([unimirror]=18091 [nginx-proxy]=18092 [varnish]=18093 [proxpi]=18094)
# What each target serves the upstream's paths under, and its pages'.
declare -A PREFIX=([unimirror]=/pypi [nginx-proxy]="" [varnish]="" [proxpi]="")
ORIGIN_PORT=18095
FRONT_PORT=18096
DATA=$WORK/data
CACHES=$WORK
if [ "${CACHE_TMPFS:-0}" = 1 ]; then
  CACHES=$WORK/tmpfs
  mkdir -p "$CACHES"
  mountpoint -q "$CACHES" || mount -t tmpfs -o size=6g tmpfs "$CACHES"
fi
# Varnish keeps objects in memory by default (malloc); VARNISH_STORAGE=file
# gives it a file on the caches' filesystem, persisted like the others'.
VARNISH_STORAGE=${VARNISH_STORAGE:-malloc,2G}
[ "$VARNISH_STORAGE" = file ] && VARNISH_STORAGE="file,$CACHES/varnish.bin,2G"
ACCEPT="Accept: application/vnd.pypi.simple.v1+json, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.1"
python3 "$HERE/pullthrough_data.py" "$DATA" "http://127.0.0.1:$FRONT_PORT/"

if ! [ -x "$WORK/proxpi/bin/gunicorn" ]; then
  python3 -m venv "$WORK/proxpi"
  "$WORK/proxpi/bin/pip" install -q proxpi gunicorn
fi

cat > "$WORK/run/unimirror.toml" <<EOF
origin = "$WORK/origin"
staging = "$WORK/staging"
[volumes.pypi]
proxy = { type = "pypi", url = "http://127.0.0.1:$FRONT_PORT/simple/", files_url = "http://127.0.0.1:$FRONT_PORT/", verify = "blake2b-path" }
[daemon]
drain_delay = "0s"
listen = ["127.0.0.1:${PORT[unimirror]}"]
[cache]
dir = "$CACHES/cache-unimirror"
disk_size = "4GiB"
memory_size = "1GiB"
memory_max_object = "1MiB"
scrub_interval = "0s"
EOF

nginx_conf() { # name body
  mkdir -p "$WORK/run/$1"
  cat > "$WORK/run/$1/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/run/$1/nginx.pid;
error_log $WORK/logs/$1.error.log;
events { worker_connections 4096; }
http {
  include /etc/nginx/mime.types;
  client_body_temp_path $WORK/run/$1/body;
  proxy_temp_path $WORK/run/$1/proxy;
  fastcgi_temp_path $WORK/run/$1/fastcgi;
  uwsgi_temp_path $WORK/run/$1/uwsgi;
  scgi_temp_path $WORK/run/$1/scgi;
  keepalive_requests 1000000;
  $2
}
EOF
}
nginx_conf origin "log_format bytes '\$body_bytes_sent \$uri'; access_log $WORK/logs/origin.access.log bytes;
  sendfile on; server { listen 127.0.0.1:$ORIGIN_PORT; root $DATA; index index.html;
  add_header X-PyPI-Last-Serial 1; } "
ECHO_MODULE=/usr/lib/nginx/modules/ngx_http_echo_module.so
if [ -e "$ECHO_MODULE" ]; then
  # The delaying front is the upstream itself: each request waits, then
  # is served (try_files serves an index.html in place, with no second
  # pass through the delay).
  nginx_conf origin "log_format bytes '\$body_bytes_sent \$uri'; access_log $WORK/logs/origin.access.log bytes;
    sendfile on; server { listen 127.0.0.1:$FRONT_PORT;
      location / { echo_sleep $(awk "BEGIN { print $DELAY_MS / 1000 }"); echo_exec @files; }
      location @files { root $DATA; try_files \$uri \$uri/index.html =404; add_header X-PyPI-Last-Serial 1; } }
    server { listen 127.0.0.1:$ORIGIN_PORT; root $DATA; } "
  sed -i "1i load_module $ECHO_MODULE;" "$WORK/run/origin/nginx.conf"
fi
nginx_conf nginx-proxy "access_log off; sendfile on;
  proxy_cache_path $CACHES/cache-nginx levels=1:2 keys_zone=pt:64m max_size=4g inactive=1d use_temp_path=off;
  upstream front { server 127.0.0.1:$FRONT_PORT; keepalive 64; }
  server { listen 127.0.0.1:${PORT[nginx-proxy]};
    location / { proxy_pass http://front; proxy_http_version 1.1; proxy_set_header Connection '';
      proxy_cache pt; proxy_cache_valid 200 10m; proxy_cache_lock on; proxy_cache_lock_timeout 600s;
      proxy_cache_lock_age 600s; } }"

declare -A PID=()
up() { curl -s -o /dev/null "http://127.0.0.1:$1/"; }
start() { # target
  local t=$1 port=${PORT[$1]:-}
  case "$t" in
    origin) taskset -c "$LOAD_CPU" nginx -c "$WORK/run/origin/nginx.conf" & port=$ORIGIN_PORT ;;
    front) taskset -c "$LOAD_CPU" python3 "$HERE/delay.py" "$FRONT_PORT" "$ORIGIN_PORT" "$DELAY_MS" & port=$FRONT_PORT ;;
    unimirror)
      rm -rf "$CACHES/cache-unimirror"
      UNIMIRROR_LOG=info,access=off taskset -c "$SERVER_CPU" "$BIN/unimirror" serve \
        --config "$WORK/run/unimirror.toml" >"$WORK/logs/unimirror.log" 2>&1 & ;;
    nginx-proxy)
      rm -rf "$CACHES/cache-nginx"
      taskset -c "$SERVER_CPU" nginx -c "$WORK/run/nginx-proxy/nginx.conf" & ;;
    varnish)
      rm -rf "$WORK/run/varnish" && mkdir -p "$WORK/run/varnish"
      taskset -c "$SERVER_CPU" varnishd -F -n "$WORK/run/varnish" -a "127.0.0.1:$port" \
        -b "127.0.0.1:$FRONT_PORT" -s "$VARNISH_STORAGE" -t 600 -p thread_pools=1 >"$WORK/logs/varnish.log" 2>&1 & ;;
    proxpi)
      rm -rf "$WORK/cache-proxpi"
      PROXPI_INDEX_URL="http://127.0.0.1:$FRONT_PORT/simple/" PROXPI_CACHE_DIR="$WORK/cache-proxpi" \
        taskset -c "$SERVER_CPU" "$WORK/proxpi/bin/gunicorn" -b "127.0.0.1:$port" -w 1 --threads 32 \
        proxpi.server:app >"$WORK/logs/proxpi.log" 2>&1 & ;;
  esac
  PID[$t]=$!
  for _ in $(seq 1 600); do up "$port" && return 0; sleep 0.05; done
  echo "$t did not start; see $WORK/logs" >&2
  exit 1
}
stop() { [ -n "${PID[$1]:-}" ] || return 0; kill -TERM "${PID[$1]}" 2>/dev/null || true; wait "${PID[$1]}" 2>/dev/null || true; unset "PID[$1]"; }
cleanup() { for t in "${!PID[@]}"; do stop "$t"; done; }
trap cleanup EXIT

url() { echo "http://127.0.0.1:${PORT[$1]}"; }
pages_prefix() { [ "$1" = proxpi ] && echo /index || echo "${PREFIX[$1]}/simple"; }
record() { # workload target round fields...
  local w=$1 t=$2 r=$3; shift 3
  printf '{"run":"%s","caches":"%s","workload":"%s","target":"%s","round":%s,%s}\n' \
    "$RUN_ID" "$([ "$CACHES" = "$WORK" ] && echo disk || echo tmpfs) varnish=${VARNISH_STORAGE%%,*}" "$w" "$t" "$r" "$(IFS=,; echo "$*")" >> "$RESULTS"
}
wrk_json() { taskset -c "$LOAD_CPU" wrk "$@" | tail -1; }
wants() { [[ $ONLY == *",$1,"* ]]; }
# User and system CPU seconds of a target's processes (Varnish and nginx
# work in children).
tree_of() { echo "$1"; for c in $(ps -o pid= --ppid "$1"); do tree_of "$c"; done; }
cpu_of() {
  local ticks=0 p
  for p in $(tree_of "$1"); do
    ticks=$((ticks + $(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  calc "$ticks / $(getconf CLK_TCK)"
}
calc() { awk "BEGIN { printf \"%.3f\", $1 }"; }

# The pages' paths as each target names them (proxpi: /index/<project>/).
sed 's|^simple/||' "$DATA/pages.paths" > "$WORK/run/projects.paths"

start origin
[ -e "$ECHO_MODULE" ] || start front
for r in $(seq 1 "$ROUNDS"); do
  for t in ${TARGETS:-unimirror nginx-proxy varnish proxpi}; do
    start "$t"
    if wants pages-cold; then
      before=$(cpu_of "${PID[$t]}")
      out=$(wrk_json -t1 -c32 -d600s -H "$ACCEPT" -s "$HERE/once.lua" "$(url "$t")" -- "$WORK/run/projects.paths" "$(pages_prefix "$t")")
      cpu=$(calc "$(cpu_of "${PID[$t]}") - $before")
      record pages-cold "$t" "$r" "${out:1:-1}" "\"server_cpu\":$cpu"
      echo "   pages-cold $t round $r: $out, server CPU ${cpu}s"
    fi
    if wants pages-hot; then
      out=$(wrk_json -t1 -c64 -d"${DURATION}s" -H "$ACCEPT" -s "$HERE/random.lua" "$(url "$t")" -- "$WORK/run/projects.paths" "$(pages_prefix "$t")")
      record pages-hot "$t" "$r" "${out:1:-1}"
      echo "   pages-hot $t round $r: $out"
    fi
    if [ "$t" != proxpi ]; then
      # As a client would, the project pages first (unimirror then checks
      # the files against their sha256).
      for p in large herd; do curl -s -o /dev/null "$(url "$t")$(pages_prefix "$t")/$p/"; done
    fi
    if [ "$t" != proxpi ] && wants large-cold; then
      out=$(wrk_json -t1 -c4 -d600s -s "$HERE/once.lua" "$(url "$t")" -- "$DATA/large.paths" "${PREFIX[$t]}")
      record large-cold "$t" "$r" "${out:1:-1}"
      echo "   large-cold $t round $r: $out"
    fi
    if [ "$t" != proxpi ] && wants herd; then
      herd=$(cat "$DATA/herd.path")
      size=$(stat -c %s "$DATA/$herd")
      : > "$WORK/logs/origin.access.log"
      kill -USR1 "$(cat "$WORK/run/origin/nginx.pid")"
      args=()
      for _ in $(seq 1 50); do args+=(-o /dev/null "$(url "$t")${PREFIX[$t]}/$herd"); done
      start_ns=$(date +%s%N)
      taskset -c "$LOAD_CPU" curl -s --no-progress-meter --fail --parallel --parallel-max 50 "${args[@]}"
      secs=$(calc "($(date +%s%N) - $start_ns) / 1e9")
      sleep 1 # the access log line of the last upstream read is written
      upstream=$(awk -v p="/$herd" '$2 == p {s += $1} END {printf "%d", s}' "$WORK/logs/origin.access.log")
      record herd "$t" "$r" "\"seconds\":$secs" "\"upstream_read\":$(calc "$upstream / $size")"
      echo "   herd $t round $r: ${secs}s, upstream read $(calc "$upstream / $size")x"
    fi
    if [ "$t" != proxpi ] && wants large-hot; then
      out=$(wrk_json -t1 -c16 -d"${DURATION}s" -s "$HERE/random.lua" "$(url "$t")" -- "$DATA/large.paths" "${PREFIX[$t]}")
      record large-hot "$t" "$r" "${out:1:-1}"
      echo "   large-hot $t round $r: $out"
    fi
    stop "$t"
  done
done

python3 - "$RESULTS" "$RUN_ID" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if json.loads(l)["run"] == sys.argv[2]]
def med(w, t, f):
    v = [f(r) for r in rows if r["workload"] == w and r["target"] == t]
    return statistics.median(v) if v else None
targets = ["unimirror", "nginx-proxy", "varnish", "proxpi"]
figures = [
    ("pages-cold", "requests/s", lambda r: r["requests"] / r["seconds"], max),
    ("pages-cold", "server CPU ms per page", lambda r: r.get("server_cpu", float("nan")) * 1000 / r["requests"], min),
    ("pages-hot", "requests/s", lambda r: r["requests"] / r["seconds"], max),
    ("large-cold", "MiB/s", lambda r: r["bytes"] / r["seconds"] / 2**20, max),
    ("herd", "seconds", lambda r: r["seconds"], min),
    ("herd", "upstream read (x)", lambda r: r["upstream_read"], min),
    ("large-hot", "MiB/s", lambda r: r["bytes"] / r["seconds"] / 2**20, max),
]
print("| workload | figure | " + " | ".join(targets) + " | unimirror / best peer |")
print("|---|---|" + "---|" * (len(targets) + 1))
for w, name, f, best in figures:
    vals = {t: med(w, t, f) for t in targets}
    peers = [v for t, v in vals.items() if t != "unimirror" and v is not None]
    ratio = vals["unimirror"] / best(peers) if peers and vals["unimirror"] else None
    cell = lambda v: "-" if v is None else f"{v:,.2f}"
    print(f"| {w} | {name} | " + " | ".join(cell(vals[t]) for t in targets) + f" | {cell(ratio)} |")
EOF
