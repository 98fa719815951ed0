-- wrk script: asynchronous POST /saga (Prefer: respond-async: 202 once the
-- saga is durably stored). Same body, counters and RESULT line as
-- post_saga.lua, which it loads from the same directory. The latencies are
-- those of the 202; bench/run.sh measures completion end to end from the
-- store after the run.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(dir .. "post_saga.lua")
wrk.headers["Prefer"] = "respond-async"
