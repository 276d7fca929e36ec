#!/usr/bin/env bash
# unimirror side by side with nginx (static files), Varnish and nginx
# proxy_cache, on the same files, with the same load generator (wrk, and
# curl for the 50-client cold fill). See docs/performance.md for how to
# read the table.
#
#   benches/compare/run.sh [--rounds N] [--seconds S] [--only w1,w2]
#
# Workloads: small-mem small-disk small-cold large-hot cold-200 switch.
# Servers are pinned to CPU $SERVER_CPU, the load generator to $LOAD_CPU.
# Scratch space (about 3 GiB of data, 3 GiB of origin, caches) lives in
# $UNIMIRROR_BENCH_DIR (default /var/tmp/unimirror-bench); results are
# appended to results.jsonl there and summarised by report.py.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WORK=${UNIMIRROR_BENCH_DIR:-/var/tmp/unimirror-bench}
ROUNDS=3
DURATION=10
ONLY=all
SERVER_CPU=${SERVER_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --seconds) DURATION=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
wanted() { [ "$ONLY" = all ] || [[ ",$ONLY," == *",$1,"* ]]; }

for tool in nginx varnishd wrk curl taskset python3; do
  command -v "$tool" >/dev/null || PATH=$PATH:/usr/sbin command -v "$tool" >/dev/null || {
    echo "missing $tool: apt-get install nginx varnish wrk curl util-linux python3" >&2
    exit 1
  }
done
export PATH=$PATH:/usr/sbin

# Ports, one per target.
declare -A PORT=([unimirror]=18081 [unimirror-nomem]=18082 [nginx-static]=18083
  [nginx-nosendfile]=18084 [varnish]=18086 [nginx-proxy]=18087)
ORIGIN_PORT=18085
DATA=$WORK/data
RESULTS=$WORK/results.jsonl
RUN_ID=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$WORK"/{logs,run}

echo "== building (release)"
(cd "$ROOT" && cargo build --release --quiet --bins)
BIN=$ROOT/target/release

echo "== dataset in $DATA (fixed seed)"
python3 "$HERE/dataset.py" "$DATA"
printf 'switch 0\n' > "$DATA/switch.txt"

# --- unimirror ---------------------------------------------------------

unimirror_config() { # name memory_size
  cat > "$WORK/run/$1.toml" <<EOF
origin = "$WORK/origin"
staging = "$WORK/staging"
[volumes.bench]
prefix = "/bench"
[daemon]
listen = ["127.0.0.1:${PORT[$1]}"]
log_format = "json"
[cache]
dir = "$WORK/cache-$1"
disk_size = "8GiB"
memory_size = "$2"
memory_max_object = "1MiB"
scrub_interval = "0s"
EOF
}
unimirror_config unimirror 1GiB
unimirror_config unimirror-nomem 0
echo "== releasing the dataset as volume bench"
"$BIN/unimirror-update" --config "$WORK/run/unimirror.toml" release bench --from "$DATA"

# --- nginx and Varnish --------------------------------------------------

nginx_config() { # name body
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
STATIC="open_file_cache max=20000 inactive=60s; open_file_cache_valid 60s;"
nginx_config nginx-static "access_log off; sendfile on; tcp_nopush on; $STATIC
  server { listen 127.0.0.1:${PORT[nginx-static]}; location /bench/ { alias $DATA/; } }"
nginx_config nginx-nosendfile "access_log off; sendfile off; output_buffers 2 512k; $STATIC
  server { listen 127.0.0.1:${PORT[nginx-nosendfile]}; location /bench/ { alias $DATA/; } }"
# The origin the caching peers fill from; its log counts the bytes it sent.
nginx_config origin "log_format bytes '\$body_bytes_sent \$uri'; access_log $WORK/logs/origin.access.log bytes;
  sendfile on; $STATIC
  server { listen 127.0.0.1:$ORIGIN_PORT; location /bench/ { alias $DATA/; } }"
nginx_config nginx-proxy "access_log off; sendfile on;
  proxy_cache_path $WORK/cache-nginx-proxy levels=1:2 keys_zone=bench:64m max_size=8g inactive=1d use_temp_path=off;
  upstream origin { server 127.0.0.1:$ORIGIN_PORT; keepalive 64; }
  server { listen 127.0.0.1:${PORT[nginx-proxy]};
    location / { proxy_pass http://origin; proxy_http_version 1.1; proxy_set_header Connection '';
      proxy_cache bench; proxy_cache_valid 200 1d; proxy_cache_lock on; proxy_cache_lock_timeout 600s;
      proxy_cache_lock_age 600s; proxy_buffering on; } }"

declare -A PID=()

start() { # target
  local t=$1
  if curl -s -o /dev/null "http://127.0.0.1:${PORT[$t]:-$ORIGIN_PORT}/"; then
    echo "port ${PORT[$t]:-$ORIGIN_PORT} for $t is taken: is an earlier run still up?" >&2
    exit 1
  fi
  case "$t" in
    unimirror|unimirror-nomem)
      taskset -c "$SERVER_CPU" "$BIN/unimirror" serve --config "$WORK/run/$t.toml" >"$WORK/logs/$t.log" 2>&1 &
      PID[$t]=$! ;;
    nginx-*|origin)
      taskset -c "$SERVER_CPU" nginx -c "$WORK/run/$t/nginx.conf" >"$WORK/logs/$t.out" 2>&1 &
      PID[$t]=$! ;;
    varnish)
      rm -rf "$WORK/run/varnish" && mkdir -p "$WORK/run/varnish"
      taskset -c "$SERVER_CPU" varnishd -F -n "$WORK/run/varnish" -a "127.0.0.1:${PORT[varnish]}" \
        -b "127.0.0.1:$ORIGIN_PORT" -s malloc,3G -t 86400 -p thread_pools=1 \
        >"$WORK/logs/varnish.log" 2>&1 &
      PID[$t]=$! ;;
  esac
  local port=${PORT[$t]:-$ORIGIN_PORT}
  # Up to two minutes: unimirror re-reads its cache directory at start,
  # slow when the directory entries are no longer in memory.
  for _ in $(seq 1 2400); do
    curl -s -o /dev/null "http://127.0.0.1:$port/" && return 0
    sleep 0.05
  done
  echo "$t did not start; see $WORK/logs" >&2
  exit 1
}

stop() { # target
  local t=$1
  [ -n "${PID[$t]:-}" ] || return 0
  kill -TERM "${PID[$t]}" 2>/dev/null || true
  wait "${PID[$t]}" 2>/dev/null || true
  unset "PID[$t]"
}
cleanup() { for t in "${!PID[@]}"; do stop "$t"; done; }
trap cleanup EXIT

# A target's processes: the one started and its children (nginx's worker,
# Varnish's cache process).
procs() { local p=${PID[$1]}; echo "$p" $(pgrep -P "$p" || true); }
cpu_ticks() { # target -> utime+stime of its processes, in clock ticks
  local sum=0
  for p in $(procs "$1"); do
    [ -r "/proc/$p/stat" ] || continue
    sum=$((sum + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo $sum
}
reset_peak() { for p in $(procs "$1"); do { echo 5 > "/proc/$p/clear_refs"; } 2>/dev/null || true; done; }
peak_kib() {
  local sum=0
  for p in $(procs "$1"); do
    sum=$((sum + $(awk '/VmHWM/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)))
  done
  echo $sum
}
HZ=$(getconf CLK_TCK)

# The target's base URL; wrk scripts add the /bench prefix themselves.
url() { echo "http://127.0.0.1:${PORT[$1]}"; }

# Reads every listed file through the target twice, right before a
# measurement: the first pass fills its tiers, the second leaves every file
# hot, page cache included (this machine drops page cache idle for ~30 s).
warm() { # target paths-file
  for _ in 1 2; do
    taskset -c "$LOAD_CPU" wrk -t1 -c16 -d600s -s "$HERE/once.lua" "$(url "$1")" -- "$2" /bench >/dev/null
  done
}
calc() { awk "BEGIN { printf \"%.3f\", $1 }"; }

record() { # workload target round json-fields...
  local w=$1 t=$2 r=$3; shift 3
  printf '{"run":"%s","workload":"%s","target":"%s","round":%s,%s}\n' \
    "$RUN_ID" "$w" "$t" "$r" "$(IFS=,; echo "$*")" >> "$RESULTS"
}

# One wrk measurement: prints wrk's JSON line with CPU and RSS added.
measure() { # workload target round wrk-args...
  local w=$1 t=$2 r=$3; shift 3
  reset_peak "$t"
  local c0 out c1
  c0=$(cpu_ticks "$t")
  out=$(taskset -c "$LOAD_CPU" wrk "$@" | tail -1)
  c1=$(cpu_ticks "$t")
  record "$w" "$t" "$r" "${out:1:-1}" "\"cpu_s\":$(calc "($c1-$c0)/$HZ")" \
    "\"rss_kib\":$(peak_kib "$t")"
  echo "   $w $t round $r: $out"
}

idle_level() { # busy % of the machine over 3 s, before anything runs
  local a b
  a=($(head -1 /proc/stat)); sleep 3; b=($(head -1 /proc/stat))
  local busy=0 total=0 i
  for i in 1 2 3 6 7 8; do busy=$((busy + b[i] - a[i])); done
  for i in $(seq 1 8); do total=$((total + b[i] - a[i])); done
  calc "100*$busy/$total"
}
IDLE_BUSY=$(idle_level)
echo "== machine busy before the run: $IDLE_BUSY% (of $(nproc) CPUs)"
record machine - 0 "\"busy_percent\":$IDLE_BUSY" "\"cpus\":$(nproc)"

HOT_TARGETS="unimirror nginx-static varnish nginx-proxy"
start origin

# --- hot workloads: servers stay up, measured in alternation ---------------
if wanted small-mem || wanted small-disk || wanted large-hot; then
  for t in unimirror unimirror-nomem nginx-static nginx-nosendfile varnish nginx-proxy; do start "$t"; done
  for r in $(seq 1 "$ROUNDS"); do
    if wanted small-mem; then
      for t in $HOT_TARGETS; do
        warm "$t" "$DATA/small.paths"
        measure small-mem "$t" "$r" -t1 -c64 -d"${DURATION}s" -s "$HERE/random.lua" "$(url "$t")" -- "$DATA/small.paths" /bench
      done
    fi
    if wanted small-disk; then
      for t in unimirror-nomem nginx-static; do
        warm "$t" "$DATA/small.paths"
        measure small-disk "$t" "$r" -t1 -c64 -d"${DURATION}s" -s "$HERE/random.lua" "$(url "$t")" -- "$DATA/small.paths" /bench
      done
    fi
    if wanted large-hot; then
      for t in unimirror nginx-static nginx-nosendfile varnish nginx-proxy; do
        warm "$t" "$DATA/large.paths"
        measure large-hot "$t" "$r" -t1 -c4 -d"${DURATION}s" -s "$HERE/random.lua" "$(url "$t")" -- "$DATA/large.paths" /bench
      done
    fi
  done
  for t in unimirror unimirror-nomem nginx-static nginx-nosendfile varnish nginx-proxy; do stop "$t"; done
fi

# --- cold workloads: each target starts empty every round ------------------
# An emptied cache is moved aside, not deleted: ext4 skips inodes freed in
# the last few seconds when it allocates new ones, so creating files right
# after deleting ten thousand crawls (for unimirror and nginx proxy_cache
# alike). The trash goes at the end of the run.
empty_start() { # target
  mkdir -p "$WORK/trash"
  case "$1" in
    unimirror|nginx-proxy)
      [ -d "$WORK/cache-$1" ] && mv "$WORK/cache-$1" "$WORK/trash/cache-$1-$RANDOM$RANDOM" ;;
  esac
  start "$1"
}
COLD_TARGETS="unimirror varnish nginx-proxy"
# What the origin holds for each: unimirror reads the volume's objects,
# the peers ask the origin nginx for the data files.
preread_origin() { cat "$DATA"/small/*/* "$DATA/cold/cold.bin" > /dev/null; find "$WORK/origin/bench/objects" -type f -exec cat {} + > /dev/null; }

if wanted small-cold; then
  for r in $(seq 1 "$ROUNDS"); do
    for t in $COLD_TARGETS; do
      empty_start "$t"
      preread_origin
      measure small-cold "$t" "$r" -t1 -c32 -d600s -s "$HERE/once.lua" "$(url "$t")" -- "$DATA/small.paths" /bench
      stop "$t"
    done
  done
fi

if wanted cold-200; then
  object=$((200 << 20))
  for r in $(seq 1 "$ROUNDS"); do
    for t in $COLD_TARGETS; do
      empty_start "$t"
      preread_origin
      : > "$WORK/logs/origin.access.log"
      kill -USR1 "${PID[origin]}"  # reopen the truncated log
      args=()
      for _ in $(seq 1 50); do args+=(-o /dev/null "$(url "$t")/bench/cold/cold.bin"); done
      reset_peak "$t"
      c0=$(cpu_ticks "$t")
      t0=$(date +%s.%N)
      taskset -c "$LOAD_CPU" curl -sf --parallel --parallel-immediate --parallel-max 50 "${args[@]}"
      t1=$(date +%s.%N)
      c1=$(cpu_ticks "$t")
      if [ "$t" = unimirror ]; then
        origin_bytes=$(curl -s "http://127.0.0.1:${PORT[unimirror]}/metrics" \
          | awk '/^unimirror_origin_read_bytes_total/ {s += $2} END {printf "%d", s}')
      else
        sleep 0.2  # nginx writes its log line after the response
        origin_bytes=$(awk '$2 == "/bench/cold/cold.bin" {s += $1} END {printf "%d", s}' "$WORK/logs/origin.access.log")
      fi
      secs=$(calc "$t1 - $t0")
      record cold-200 "$t" "$r" "\"seconds\":$secs" "\"requests\":50" "\"bytes\":$((50 * object))" \
        "\"origin_ratio\":$(calc "$origin_bytes / $object")" \
        "\"cpu_s\":$(calc "($c1-$c0)/$HZ")" "\"rss_kib\":$(peak_kib "$t")"
      echo "   cold-200 $t round $r: ${secs}s, origin read $(calc "$origin_bytes / $object")x"
      stop "$t"
    done
  done
fi

# --- release switch: pointer flip to the first response from the new one ---
if wanted switch; then
  start unimirror
  for r in $(seq 1 "$ROUNDS"); do
    printf 'switch %s %s\n' "$RUN_ID" "$r" > "$DATA/switch.txt"
    before=$(curl -s -D - -o /dev/null "$(url unimirror)/bench/switch.txt" | awk -F': ' 'tolower($1)=="x-unimirror-release" {print $2+0}')
    python3 "$HERE/switch.py" "$(url unimirror)/bench/switch.txt" "$before" "$WORK/origin/bench/current" \
      "$BIN/unimirror-update" --config "$WORK/run/unimirror.toml" release bench --from "$DATA" \
      > "$WORK/run/switch.json"
    record switch unimirror "$r" "$(sed 's/^{//; s/}$//' "$WORK/run/switch.json")"
    echo "   switch round $r: $(cat "$WORK/run/switch.json")"
  done
  stop unimirror
fi

stop origin
rm -rf "$WORK/trash"
python3 "$HERE/report.py" "$RESULTS" "$RUN_ID"
