-- wrk: GET every path of a list once, spread over the connections, then
-- stop. For cold caches: each object is fetched once.
--   wrk -t1 -c32 -d600s -s once.lua URL -- PATHS_FILE PREFIX
-- Use one thread (-t1). wrk's main thread sleeps for the whole -d, so the
-- script ends the run by sending wrk the SIGINT of a Ctrl-C (wrk then
-- reports as usual, with the real duration).
local paths = {}
local prefix = ""
local next_index = 1
local answered = 0

function init(args)
  for line in io.lines(args[1]) do
    paths[#paths + 1] = line
  end
  prefix = args[2] or ""
end

function request()
  local i = next_index
  next_index = next_index + 1
  if i > #paths then
    -- Every path has been asked for; repeat the last one (a hit) until
    -- the answers are in. These extra requests are not counted below.
    i = #paths
  end
  return wrk.format("GET", prefix .. "/" .. paths[i])
end

function response(status, headers, body)
  answered = answered + 1
  if answered == #paths then
    -- The shell os.execute starts is wrk's child: $PPID is wrk. The kill
    -- runs in the background, after os.execute returns: system() ignores
    -- SIGINT while its child runs.
    os.execute("(sleep 0.05; kill -INT $PPID) &")
    wrk.thread:stop()
  end
end

-- The summary line, from the file beside this one.
dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "summary.lua")
