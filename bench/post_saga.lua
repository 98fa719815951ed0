-- wrk script: synchronous POST /saga with the seed's example body (47 bytes).
-- Also used for the stubs-alone cell (POST /anonymize with the same body).
--
-- done() prints one line "RESULT {json}" that bench/lib/benchlib.py reads:
-- requests, duration_us, ok (2xx answers) and non2xx (counted here, in the
-- response callback of each wrk thread), wrk's socket errors (connect, read,
-- write, timeout; status = answers > 399 as wrk counts them), latency
-- percentiles in microseconds.
wrk.method = "POST"
wrk.body = '{"image_id":"img_123","data":"datos de prueba"}'
wrk.headers["Content-Type"] = "application/json"

-- Thread side: one Lua state per wrk thread; globals read back by done().
ok = 0
non2xx = 0
function response(status, headers, body)
  if status >= 200 and status < 300 then
    ok = ok + 1
  else
    non2xx = non2xx + 1
  end
end

-- Setup/done side: a separate Lua state that sees every thread.
local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

function done(summary, latency, requests)
  local okn, bad = 0, 0
  for _, t in ipairs(threads) do
    okn = okn + t:get("ok")
    bad = bad + t:get("non2xx")
  end
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"ok":%d,"non2xx":%d,' ..
    '"connect":%d,"read":%d,"write":%d,"timeout":%d,"status":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
    summary.requests, summary.duration, okn, bad,
    e.connect, e.read, e.write, e.timeout, e.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean))
end
