-- wrk script for the Medic ingest benchmark (bench/ingest/run.py drives it).
--
-- Environment:
--   MEDIC_BENCH_KEY       API key (heartbeat scope), sent as "Authorization: Bearer"
--   MEDIC_BENCH_SERVICES  how many services exist (slugs PREFIX0 .. PREFIX<n-1>)
--   MEDIC_BENCH_PREFIX    slug prefix (default "bench-")
--   MEDIC_BENCH_MODE      single (POST /api/v1/heartbeats), batch (POST /api/v1/heartbeats:batch)
--                         or ping (GET /api/v1/ping/<slug>)
--   MEDIC_BENCH_BATCH     heartbeats per batch request (batch mode, default 100)
--
-- Every request names the next service in turn (each thread starts at its own offset), so the
-- writer sees many different rows, not one hot row. done() prints one JSON line that run.py reads.

local key = os.getenv("MEDIC_BENCH_KEY") or error("MEDIC_BENCH_KEY is not set")
local services = tonumber(os.getenv("MEDIC_BENCH_SERVICES") or "1000")
local prefix = os.getenv("MEDIC_BENCH_PREFIX") or "bench-"
local mode = os.getenv("MEDIC_BENCH_MODE") or "single"
local batch = tonumber(os.getenv("MEDIC_BENCH_BATCH") or "100")

local headers = {
  ["Authorization"] = "Bearer " .. key,
  ["Content-Type"] = "application/json",
}

local threads = {}
local counter = 0

function setup(thread)
  thread:set("thread_no", #threads)
  table.insert(threads, thread)
end

function init(args)
  counter = (thread_no or 0) * 7919
end

local function next_slug()
  counter = counter + 1
  return prefix .. (counter % services)
end

function request()
  if mode == "batch" then
    local items = {}
    for i = 1, batch do
      items[i] = '{"service":"' .. next_slug() .. '"}'
    end
    return wrk.format("POST", "/api/v1/heartbeats:batch", headers,
      '{"heartbeats":[' .. table.concat(items, ",") .. ']}')
  elseif mode == "ping" then
    return wrk.format("GET", "/api/v1/ping/" .. next_slug(), headers)
  end
  return wrk.format("POST", "/api/v1/heartbeats", headers,
    '{"service":"' .. next_slug() .. '","status":"ok"}')
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"duration_us":%d,"requests":%d,"bytes":%d,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"latency_us":{"mean":%.1f,"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d}}\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9), latency.max))
end
