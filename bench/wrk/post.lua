-- wrk script: POST a form body to an OAuth endpoint, check every response,
-- and print the figures as one JSON line that bench/loadgen.py parses.
--
-- Environment:
--   BENCH_BODY     the application/x-www-form-urlencoded body; with a pool, the
--                  text {item} in it is replaced by the request's item
--   BENCH_AUTH     the Authorization header value (client_secret_basic)
--   BENCH_EXPECT   a substring every 200 response body must contain (optional)
-- Optional, for single-use material (DPoP proofs, tokens to revoke, refresh tokens):
--   BENCH_POOL         file with one item per line; each request spends the next one
--                      (thread i of n takes lines i, i+n, ...). A thread that runs out
--                      stops and the run reports "exhausted" (its figures are void).
--                      wrk calls request() once before the run to check it, so the
--                      first item of thread 1 is taken but never sent.
--   BENCH_POOL_HEADER  send the item in this header (else only through {item} in the body)
--   BENCH_THREADS      wrk -t, so that threads split the pool
--   BENCH_COLLECT      append the string field BENCH_COLLECT_FIELD of every good
--                      response to this file, one per line (use with -t1)
--   BENCH_LIMIT        stop after this many good responses (their rate is then void)

wrk.method = "POST"
local body = os.getenv("BENCH_BODY") or ""
wrk.body = body
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
local auth = os.getenv("BENCH_AUTH")
if auth and auth ~= "" then
  wrk.headers["Authorization"] = auth
end
local expect = os.getenv("BENCH_EXPECT")
local pool_path = os.getenv("BENCH_POOL")
local pool_header = os.getenv("BENCH_POOL_HEADER")
local collect_path = os.getenv("BENCH_COLLECT")
local collect_field = os.getenv("BENCH_COLLECT_FIELD") or "access_token"
local limit = tonumber(os.getenv("BENCH_LIMIT") or "")

local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

local items, collect_out, field_pattern

function init(args)
  -- globals: done() reads them through thread:get()
  ok = 0
  bad = 0
  used = 0
  exhausted = 0
  if pool_path and pool_path ~= "" then
    local n = tonumber(os.getenv("BENCH_THREADS") or "1")
    items = {}
    local i = 0
    for line in io.lines(pool_path) do
      if i % n == tid then
        items[#items + 1] = line
      end
      i = i + 1
    end
  end
  if collect_path and collect_path ~= "" then
    collect_out = assert(io.open(collect_path, "a"))
    field_pattern = '"' .. collect_field .. '"%s*:%s*"([^"]+)"'
  end
end

local function stop()
  if collect_out then
    collect_out:flush()
  end
  wrk.thread:stop()
end

if pool_path and pool_path ~= "" then
  local before, after
  local at = string.find(body, "{item}", 1, true)
  if at then
    before, after = string.sub(body, 1, at - 1), string.sub(body, at + 6)
  end

  function request()
    used = used + 1
    local item = items[used]
    if item == nil then
      -- Never resend an item: stop, and send a request the server ignores.
      exhausted = 1
      stop()
      return wrk.format("GET", "/bench-pool-exhausted", {}, nil)
    end
    if pool_header and pool_header ~= "" then
      wrk.headers[pool_header] = item
    end
    local b = body
    if before then
      b = before .. item .. after
    end
    return wrk.format(nil, nil, nil, b)
  end
end

function response(status, headers, resp)
  if exhausted == 1 then
    return
  end
  if status == 200 and (expect == nil or expect == "" or string.find(resp, expect, 1, true)) then
    ok = ok + 1
    if collect_out then
      local value = string.match(resp, field_pattern)
      if value then
        collect_out:write(value, "\n")
      else
        bad = bad + 1
      end
    end
    if limit and ok >= limit then
      stop()
    end
  else
    bad = bad + 1
    if bad == 1 then
      first_bad = status .. " " .. string.sub(resp or "", 1, 300)
    end
  end
end

local function json_string(text)
  return '"' .. string.gsub(text or "", '[%c"\\]', function(c)
    return string.format("\\u%04x", string.byte(c))
  end) .. '"'
end

function done(summary, latency, requests)
  local good, wrong, spent, spent_min, out, sample = 0, 0, 0, nil, 0, ""
  for _, t in ipairs(threads) do
    good = good + t:get("ok")
    if sample == "" then
      sample = t:get("first_bad") or ""
    end
    wrong = wrong + t:get("bad")
    local u = t:get("used") or 0
    spent = spent + u
    if spent_min == nil or u < spent_min then
      spent_min = u
    end
    out = out + (t:get("exhausted") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"ok":%d,"bad":%d,' ..
    '"errors_connect":%d,"errors_read":%d,"errors_write":%d,"errors_status":%d,' ..
    '"errors_timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f,' ..
    '"used":%d,"used_min":%d,"exhausted":%d,"first_bad":%s}\n',
    summary.requests, summary.duration, good, wrong,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean, spent, spent_min or 0, out, json_string(sample)))
end
