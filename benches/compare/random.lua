-- wrk: GET uniformly random paths from a list, the same sequence each run.
--   wrk -s random.lua URL -- PATHS_FILE PREFIX
-- Prints one JSON line with the counts and latency percentiles at the end.
--
-- Every request is built once, in init, so that request() allocates
-- nothing. Built per call, each request was a new string: with a million
-- distinct paths (the million workload) that cost wrk 3-4 µs a request,
-- with pauses of up to 90 ms (LuaJIT interning and collecting a million
-- strings) that stall every connection of the thread. Picking a built
-- request costs 0.1 µs.
local requests = {}

function init(args)
  local prefix = args[2] or ""
  for line in io.lines(args[1]) do
    requests[#requests + 1] = wrk.format("GET", prefix .. "/" .. line)
  end
  math.randomseed(42)
end

function request()
  return requests[math.random(#requests)]
end

-- The summary line, from the file beside this one.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "summary.lua")
