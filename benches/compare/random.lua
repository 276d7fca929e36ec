-- wrk: GET uniformly random paths from a list, the same sequence each run.
--   wrk -s random.lua URL -- PATHS_FILE PREFIX
-- Prints one JSON line with the counts and latency percentiles at the end.
local paths = {}
local prefix = ""

function init(args)
  for line in io.lines(args[1]) do
    paths[#paths + 1] = line
  end
  prefix = args[2] or ""
  math.randomseed(42)
end

function request()
  return wrk.format("GET", prefix .. "/" .. paths[math.random(#paths)])
end

function done(summary, latency, requests)
  local secs = summary.duration / 1e6
  io.write(string.format(
    '{"requests":%d,"seconds":%.3f,"bytes":%d,"errors":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, secs, summary.bytes,
    summary.errors.connect + summary.errors.read + summary.errors.write
      + summary.errors.status + summary.errors.timeout,
    latency:percentile(50), latency:percentile(99)))
end
