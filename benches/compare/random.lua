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

-- The summary line, from the file beside this one.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "summary.lua")
