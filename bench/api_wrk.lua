-- wrk script of bench.api: one scenario per run, chosen by the first argument after `--`.
--
--   wrk -t2 -c32 -d15s -s bench/api_wrk.lua http://127.0.0.1:8765 -- <mode> <api-key> <token> <members> \
--       <long-members> <reward> <placed-at> <one-member>
--
-- modes: bare (GET /bench/bare/), member (GET a member's detail), order (POST a new order), order_idem (the same with
-- an Idempotency-Key), redeem (POST a redemption for a random member), redeem_one (every redemption on one member).
-- Members are the import's customers C0000001..C<members>; the first <long-members> of them have long histories and
-- get one request in twenty. Order ids and idempotency keys are <token>-<thread>-<n>: unique across threads and runs.
-- done() prints one JSON line: requests, seconds, latency percentiles (ms) and the count of responses by status.

local threads = {}
local counter = 0

function setup(thread)
  thread:set("thread_no", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  mode = args[1]
  api_key = args[2] or ""
  token = args[3] or "t"
  members = tonumber(args[4] or "1")
  long_members = tonumber(args[5] or "0")
  reward = args[6] or ""
  placed_at = args[7] or ""
  one_member = args[8] or ""
  statuses = {}
  math.randomseed(os.time() * 100 + thread_no)
  -- Production sits behind a TLS proxy (SECURE_SSL_REDIRECT is on): the proxy's header says the request was HTTPS.
  headers = {
    ["Authorization"] = "Api-Key " .. api_key,
    ["X-Forwarded-Proto"] = "https",
    ["Content-Type"] = "application/json",
  }
end

local function customer()
  local n
  if long_members > 0 and math.random(20) == 1 then
    n = math.random(long_members)
  else
    n = math.random(long_members + 1, members)
  end
  return string.format("C%07d", n)
end

local function next_id()
  counter = counter + 1
  return token .. "-" .. thread_no .. "-" .. counter
end

function request()
  if mode == "bare" then
    return wrk.format("GET", "/bench/bare/", headers)
  elseif mode == "member" then
    return wrk.format("GET", "/api/v1/members/" .. customer() .. "/", headers)
  elseif mode == "order" or mode == "order_idem" then
    local id = next_id()
    local body = string.format(
      '{"order_id":"%s","customer_id":"%s","placed_at":"%s","amount":"%d.%02d","category":"apparel"}',
      id, customer(), placed_at, math.random(5, 2000), math.random(0, 99))
    local h = headers
    if mode == "order_idem" then
      h = {}
      for k, v in pairs(headers) do h[k] = v end
      h["Idempotency-Key"] = "k-" .. id
    end
    return wrk.format("POST", "/api/v1/orders/", h, body)
  elseif mode == "redeem" or mode == "redeem_one" then
    local member = mode == "redeem_one" and one_member or customer()
    local h = {}
    for k, v in pairs(headers) do h[k] = v end
    h["Idempotency-Key"] = "k-" .. next_id()
    local body = string.format('{"member":"%s","reward":"%s","quantity":1}', member, reward)
    return wrk.format("POST", "/api/v1/redemptions/", h, body)
  end
  error("unknown mode " .. tostring(mode))
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local counts = {}
  for _, thread in ipairs(threads) do
    local mine = thread:get("statuses")
    for status, n in pairs(mine) do
      counts[status] = (counts[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(counts) do
    table.insert(parts, string.format('"%d":%d', status, n))
  end
  local e = summary.errors
  io.write(string.format(
    'WRK {"requests":%d,"seconds":%.3f,"p50_ms":%.3f,"p90_ms":%.3f,"p99_ms":%.3f,"mean_ms":%.3f,"max_ms":%.3f,' ..
    '"socket_errors":%d,"statuses":{%s}}\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(90) / 1000,
    latency:percentile(99) / 1000, latency.mean / 1000, latency.max / 1000,
    e.connect + e.read + e.write + e.timeout, table.concat(parts, ",")))
end
