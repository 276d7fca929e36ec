#!/usr/bin/env bash
# unimirror side by side with nginx (static files), Varnish and nginx
# proxy_cache, on the same files, with the same load generator (wrk, and
# curl for the 50-client cold fill). See docs/performance.md for how to
# read the table.
#
#   benches/compare/run.sh [--rounds N] [--seconds S] [--only w1,w2]
#
# Access logs are off for every target; ACCESS_LOG=on turns them on for
# every target (nginx buffered, like unimirror's batched log).
#
# Workloads: small-mem small-disk small-cold large-hot cold-200 switch
# (these six are `all`, the default), and million.
#
# million is unimirror alone with a release of 1,000,000 files: the daemon's
# memory (VmRSS, VmHWM, RssAnon, RssFile) after start and after random load
# over all the paths, and the latency a request pays in that release over
# one of 10,000 files. It is not part of `all` and runs only when named
# (--only million), being the one costly to set up and to run. Its first
# run writes a million files (one to two minutes, 4.5 GiB of disk blocks, a
# million inodes) and releases them (two to seven minutes: the release reads
# every file, from disk once the page cache has dropped them); later runs
# keep both, and spend about a minute warming (two million requests) and
# 4 x --seconds measuring per round.
#
# Servers are pinned to CPU $SERVER_CPU, the load generator to $LOAD_CPU.
# Scratch space (about 3 GiB of data, 3 GiB of origin, caches; for million
# 5 GiB more, and 1 GiB of daemon log) lives in $UNIMIRROR_BENCH_DIR (default
# /var/tmp/unimirror-bench); results are appended to results.jsonl there and
# summarised by report.py. UNIMIRROR_BENCH_NO_BUILD=1 skips the cargo build
# and uses the binaries already in target/release; UNIMIRROR_BENCH_BIN=<dir>
# uses the binaries in <dir> instead (another commit's, for a before/after).
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
CLASSIC="small-mem small-disk small-cold large-hot cold-200 switch"
for w in ${ONLY//,/ }; do
  [[ " all $CLASSIC million " == *" $w "* ]] || { echo "unknown workload $w" >&2; exit 2; }
done
wanted() { # workload: asked for by --only, or part of `all`
  if [ "$ONLY" = all ]; then [ "$1" != million ]; else [[ ",$ONLY," == *",$1,"* ]]; fi
}
# Whether any of the six workloads that need the dataset and the peers runs.
classic=false
for w in $CLASSIC; do wanted "$w" && classic=true; done

for tool in nginx varnishd wrk curl taskset python3; do
  command -v "$tool" >/dev/null || PATH=$PATH:/usr/sbin command -v "$tool" >/dev/null || {
    echo "missing $tool: apt-get install nginx varnish wrk curl util-linux python3" >&2
    exit 1
  }
done
export PATH=$PATH:/usr/sbin

# Ports, one per target.
declare -A PORT=([unimirror]=18081 [unimirror-nomem]=18082 [nginx-static]=18083
  [nginx-nosendfile]=18084 [varnish]=18086 [nginx-proxy]=18087 [unimirror-million]=18088)
ORIGIN_PORT=18085
DATA=$WORK/data
RESULTS=$WORK/results.jsonl
RUN_ID=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$WORK"/{logs,run}

BIN=${UNIMIRROR_BENCH_BIN:-$ROOT/target/release}
if [ -n "${UNIMIRROR_BENCH_BIN:-}" ] || [ "${UNIMIRROR_BENCH_NO_BUILD:-0}" = 1 ]; then
  echo "== not building (UNIMIRROR_BENCH_NO_BUILD=1): the binaries in $BIN"
  for b in unimirror unimirror-update; do
    [ -x "$BIN/$b" ] || { echo "missing $BIN/$b" >&2; exit 1; }
  done
else
  echo "== building (release)"
  (cd "$ROOT" && cargo build --release --quiet --bins)
fi

if $classic; then
  echo "== dataset in $DATA (fixed seed)"
  python3 "$HERE/dataset.py" "$DATA"
  printf 'switch 0\n' > "$DATA/switch.txt"
fi

# --- unimirror ---------------------------------------------------------

unimirror_config() { # name memory_size [volume...] (default: bench)
  local name=$1 memory=$2 volumes="" v; shift 2
  [ $# -gt 0 ] || set -- bench
  for v in "$@"; do volumes+="[volumes.$v]"$'\n'"prefix = \"/$v\""$'\n'; done
  cat > "$WORK/run/$name.toml" <<EOF
origin = "$WORK/origin"
staging = "$WORK/staging"
$volumes[daemon]
listen = ["127.0.0.1:${PORT[$name]}"]
drain_delay = "0s"
log_format = "json"
[cache]
dir = "$WORK/cache-$name"
disk_size = "8GiB"
memory_size = "$memory"
memory_max_object = "1MiB"
scrub_interval = "0s"
EOF
}
unimirror_config unimirror 1GiB
unimirror_config unimirror-nomem 0
# The million workload's daemon serves only its two volumes, so that its
# memory is theirs alone; its memory tier is the budget the goal adds.
MILLION_MEMORY_MIB=64
unimirror_config unimirror-million "${MILLION_MEMORY_MIB}MiB" million tenk
if $classic; then
  echo "== releasing the dataset as volume bench"
  "$BIN/unimirror-update" --config "$WORK/run/unimirror.toml" release bench --from "$DATA"
fi

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
  ${2//@NAME@/$1}
}
EOF
}
STATIC="open_file_cache max=20000 inactive=60s; open_file_cache_valid 60s;"
# Access logs: off for every target (the default), or on for every target
# with ACCESS_LOG=on (nginx buffered, as unimirror's log is).
if [ "${ACCESS_LOG:-off}" = on ]; then
  UNIMIRROR_LOG_FILTER=info
  LOG="access_log $WORK/logs/@NAME@.access.log combined buffer=64k flush=1s;"
else
  UNIMIRROR_LOG_FILTER=info,access=off
  LOG="access_log off;"
fi
nginx_config nginx-static "$LOG sendfile on; tcp_nopush on; $STATIC
  server { listen 127.0.0.1:${PORT[nginx-static]}; location /bench/ { alias $DATA/; } }"
nginx_config nginx-nosendfile "$LOG sendfile off; output_buffers 2 512k; $STATIC
  server { listen 127.0.0.1:${PORT[nginx-nosendfile]}; location /bench/ { alias $DATA/; } }"
# The origin the caching peers fill from; its log counts the bytes it sent.
nginx_config origin "log_format bytes '\$body_bytes_sent \$uri'; access_log $WORK/logs/origin.access.log bytes;
  sendfile on; $STATIC
  server { listen 127.0.0.1:$ORIGIN_PORT; location /bench/ { alias $DATA/; } }"
nginx_config nginx-proxy "$LOG sendfile on;
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
      # Like nginx here (access_log off), without an access log, unless
      # ACCESS_LOG=on; the million workload reads its daemon's access log.
      UNIMIRROR_LOG=$UNIMIRROR_LOG_FILTER taskset -c "$SERVER_CPU" "$BIN/unimirror" serve \
        --config "$WORK/run/$t.toml" >"$WORK/logs/$t.log" 2>&1 &
      PID[$t]=$! ;;
    unimirror-million)
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
# once.lua ends only when every path was answered, so a target that dies
# meanwhile would leave wrk retrying for its full 600 s: wrk is watched.
warm() { # target paths-file [prefix, default /bench]
  local w
  for _ in 1 2; do
    taskset -c "$LOAD_CPU" wrk -t1 -c16 -d600s -s "$HERE/once.lua" "$(url "$1")" -- "$2" "${3:-/bench}" >/dev/null &
    w=$!
    while kill -0 "$w" 2>/dev/null; do
      if ! kill -0 "${PID[$1]}" 2>/dev/null; then
        kill "$w"
        echo "$1 exited during the warm pass; see $WORK/logs" >&2
        exit 1
      fi
      sleep 0.5
    done
    wait "$w"
  done
}
calc() { awk "BEGIN { printf \"%.3f\", $1 }"; }

record() { # workload target round json-fields...
  local w=$1 t=$2 r=$3; shift 3
  printf '{"run":"%s","workload":"%s","target":"%s","round":%s,%s}\n' \
    "$RUN_ID" "$w" "$t" "$r" "$(IFS=,; echo "$*")" >> "$RESULTS"
}

# One wrk measurement: prints wrk's JSON line with CPU and RSS added (and
# the JSON fields in $MEASURE_TAGS, when set).
measure() { # workload target round wrk-args...
  local w=$1 t=$2 r=$3; shift 3
  reset_peak "$t"
  local c0 out c1
  c0=$(cpu_ticks "$t")
  out=$(taskset -c "$LOAD_CPU" wrk "$@" | tail -1)
  c1=$(cpu_ticks "$t")
  record "$w" "$t" "$r" ${MEASURE_TAGS:+"$MEASURE_TAGS"} "${out:1:-1}" \
    "\"cpu_s\":$(calc "($c1-$c0)/$HZ")" "\"rss_kib\":$(peak_kib "$t")"
  echo "   $w $t round $r${MEASURE_TAGS:+ ($MEASURE_TAGS)}: $out"
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
if awk "BEGIN { exit !($IDLE_BUSY > 10) }"; then
  echo "   warning: something else is running; its load will be in the figures" >&2
fi
record machine - 0 "\"busy_percent\":$IDLE_BUSY" "\"cpus\":$(nproc)"

HOT_TARGETS="unimirror nginx-static varnish nginx-proxy"
if $classic; then start origin; fi

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

# --- million: a release of 1,000,000 files ---------------------------------
# One daemon (memory tier $MILLION_MEMORY_MIB MiB) serves volume million
# (1,000,000 files) and volume tenk (the first 10,000 of them: the same
# sizes and the same objects, so the two differ only in their manifest).
# Measured: the daemon's memory after start, after the warm passes and after
# random load over all the paths; and the latency of one request in each
# volume, at 1 and 64 connections. The difference is what a lookup in the
# large manifest adds to a request. Besides wrk's figures, each run records
# the daemon's own time per request (its access log) and its page faults.

# Runs a command; writes its wall time and peak RSS (wait4) to FILE as JSON.
timed() { # file command...
  python3 - "$@" <<'PY'
import json, os, sys, time
t = time.monotonic()
pid = os.posix_spawnp(sys.argv[2], sys.argv[2:], os.environ)
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as f:
    json.dump({"seconds": round(time.monotonic() - t, 2), "max_rss_kib": usage.ru_maxrss}, f)
sys.exit(os.waitstatus_to_exitcode(status))
PY
}
# The named fields of a JSON object, as "key":value pairs for record.
json_fields() { # file key...
  python3 -c 'import json, sys; d = json.load(open(sys.argv[1]))
print(",".join(f"{json.dumps(k)}:{json.dumps(d[k])}" for k in sys.argv[2:]))' "$@"
}
# The daemon's memory from /proc/PID/status, in KiB: resident (VmRSS), its
# peak since start or the last reset_peak (VmHWM), and resident split into
# anonymous (heap, memory tier) and file-backed (binary, mapped manifests
# and cache files).
mem_fields() { # target
  awk '$1 ~ /^(VmRSS|VmHWM|RssAnon|RssFile|RssShmem):$/ {
      printf "%s\"%s_kib\":%d", sep, tolower(substr($1, 1, length($1) - 1)), $2; sep = "," }' \
    "/proc/${PID[$1]}/status"
}
mem_sample() { # at: records and prints the daemon's memory now
  local f
  f=$(mem_fields unimirror-million)
  record million unimirror-million 0 '"kind":"rss"' "\"at\":\"$1\"" "$f" \
    "\"memory_tier_kib\":$((MILLION_MEMORY_MIB << 10))" \
    "\"goal_kib\":$(((100 + MILLION_MEMORY_MIB) << 10))"
  echo "   million memory, $1: $f"
}
faults() { awk '{print $10, $12}' "/proc/${PID[$1]}/stat"; } # target -> minor major
# The daemon's own time for the requests to VOLUME it logged after byte
# OFFSET of its log: the access log's micros, from the parsed request to the
# end of the response body, so without the network, the queue or wrk. Its
# count, mean, p50, p99 and max as JSON fields.
served_fields() { # log offset volume
  python3 - "$@" <<'PY'
import re, sys
path, offset, volume = sys.argv[1], int(sys.argv[2]), sys.argv[3]
want = b'"volume":"%s"' % volume.encode()
micros = re.compile(rb'"micros":(\d+)')
m = []
with open(path, "rb") as f:
    f.seek(offset)
    for line in f:
        if b'"message":"request"' in line and want in line:
            m.append(int(micros.search(line).group(1)))
m.sort()
n = max(len(m), 1)
print(f'"served":{len(m)},"served_mean_us":{sum(m) / n:.2f},"served_p50_us":{m[n // 2] if m else 0},'
      f'"served_p99_us":{m[int(n * 0.99)] if m else 0},"served_max_us":{m[-1] if m else 0}')
PY
}

if wanted million; then
  MDATA=$WORK/million-data
  MLOG=$WORK/logs/unimirror-million.log
  echo "== million: trees in $MDATA (fixed seed; kept when complete)"
  python3 "$HERE/million.py" "$MDATA" > "$WORK/run/million-trees.jsonl"
  # A tree it replaced goes with the trash, once everything is measured.
  mkdir -p "$WORK/trash"
  for old in "$MDATA"/*.old; do
    if [ -e "$old" ]; then mv "$old" "$WORK/trash/$(basename "$old")-$RANDOM$RANDOM"; fi
  done
  while read -r line; do
    record million - 0 '"kind":"generate"' "${line:1:-1}"
    echo "   $line"
  done < "$WORK/run/million-trees.jsonl"

  # Released only when the tree is newer than its last release, or the
  # origin lost that release (an identical tree would publish nothing, but
  # the walk over a million entries still costs seconds). The stamp holds
  # the pointer it left and the release's timing.
  for v in million tenk; do
    stamp=$MDATA/$v.released current=$WORK/origin/$v/current
    if [ -f "$stamp" ] && [ -f "$current" ] && [ "$stamp" -nt "$MDATA/$v.done" ] \
      && [ "$(head -1 "$stamp")" = "$(cat "$current")" ]; then
      echo "   $v: unchanged since its release, not released again"
      released=false
    else
      echo "== million: releasing $MDATA/$v as volume $v"
      timed "$WORK/run/release-$v.json" "$BIN/unimirror-update" \
        --config "$WORK/run/unimirror-million.toml" release "$v" --from "$MDATA/$v"
      printf '%s\n%s\n' "$(cat "$current")" "$(cat "$WORK/run/release-$v.json")" > "$stamp"
      released=true
    fi
    id=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["release"])' "$current")
    sed -n 2p "$stamp" > "$WORK/run/release-$v.json"
    record million unimirror-update 0 '"kind":"release"' "\"volume\":\"$v\"" "\"released\":$released" \
      "$(json_fields "$WORK/run/release-$v.json" seconds max_rss_kib)" \
      "$(json_fields "$WORK/origin/$v/releases/$id.json" id files directories bytes manifest_size new_objects)"
    echo "   $v: release $id, $(cat "$WORK/run/release-$v.json")"
  done

  # An empty cache each run, so that the first sample is the same every time.
  if [ -d "$WORK/cache-unimirror-million" ]; then
    mv "$WORK/cache-unimirror-million" "$WORK/trash/cache-unimirror-million-$RANDOM$RANDOM"
  fi
  start unimirror-million
  # start returns at the first answer, possibly before the volumes are
  # open; /readyz answers 200 once they are.
  for _ in $(seq 1 600); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$(url unimirror-million)/readyz")" = 200 ] && break
    sleep 0.05
  done
  for v in million tenk; do
    first=$(head -1 "$MDATA/$v.paths")
    curl -sf -o /dev/null "$(url unimirror-million)/$v/$first" \
      || { echo "unimirror-million does not serve /$v/$first; see $MLOG" >&2; exit 1; }
  done
  mem_sample start  # ready, and one request answered in each volume

  for r in $(seq 1 "$ROUNDS"); do
    # tenk first, so that million's warm pass is the more recent one.
    warm unimirror-million "$MDATA/tenk.paths" /tenk
    warm unimirror-million "$MDATA/million.paths" /million
    if [ "$r" = 1 ]; then mem_sample warm; fi  # VmHWM: the peak since start
    # Neither volume always goes first: the order swaps every round.
    order="tenk million"
    if [ $((r % 2)) = 0 ]; then order="million tenk"; fi
    for c in 1 64; do
      for v in $order; do
        # Both volumes' objects are hot in the memory tier; the two runs
        # differ in the manifest only. Random paths over a million files
        # also touch the whole of million's manifest (70 MiB of index and
        # records, far more than the CPU caches hold, against 1 MiB for
        # tenk), which is part of what a lookup in a large release costs
        # and is measured here.
        tags="\"volume\":\"$v\",\"files\":$(wc -l < "$MDATA/$v.paths"),\"connections\":$c"
        # tenk's list is repeated to a million lines, so that wrk picks from
        # a table of a million requests for both volumes and its own cost
        # per request (cache misses in that table) is the same.
        paths=$MDATA/$v.paths
        if [ "$v" = tenk ]; then paths=$MDATA/tenk.random.paths; fi
        offset=$(stat -c %s "$MLOG")
        read -r min0 maj0 < <(faults unimirror-million)
        MEASURE_TAGS="\"kind\":\"latency\",$tags" \
          measure million unimirror-million "$r" -t1 -c"$c" -d"${DURATION}s" -s "$HERE/random.lua" \
          "$(url unimirror-million)" -- "$paths" "/$v"
        tail -1 "$RESULTS" | grep -q '"errors":0,' \
          || echo "   warning: errors in the last run; see $MLOG" >&2
        read -r min1 maj1 < <(faults unimirror-million)
        # Memory after random load over all of million (the last round's run
        # at 64 connections); measure reset VmHWM as it began, so VmHWM is
        # that run's peak.
        if [ "$r" = "$ROUNDS" ] && [ "$c" = 64 ] && [ "$v" = million ]; then mem_sample load; fi
        # The daemon writes its log every 100 ms: after this pause, what it
        # logged for this run is in, and the next run's lines come after the
        # next offset.
        sleep 0.3
        served=$(served_fields "$MLOG" "$offset" "$v")
        record million unimirror-million "$r" '"kind":"served"' "$tags" "$served" \
          "\"minor_faults\":$((min1 - min0))" "\"major_faults\":$((maj1 - maj0))"
        echo "   daemon's own time: $served, page faults $((min1 - min0)) minor, $((maj1 - maj0)) major"
      done
    done
  done
  stop unimirror-million
fi

stop origin
python3 "$HERE/report.py" "$RESULTS" "$RUN_ID"
# Last, as it can take minutes (a million-file tree that million.py replaced).
echo "== removing $WORK/trash"
rm -rf "$WORK/trash"
