-- wrk script of `make soak` (bench/soak.py): each connection cycles over every endpoint, and
-- done() prints the answers counted by status class, summed over wrk's threads.
-- SOAK_QUEUE names the queue the publish requests fill (the script deletes it afterwards).
local queue = os.getenv("SOAK_QUEUE") or "soak"
local json = { ["Content-Type"] = "application/json" }

local endpoints = {
  { "GET", "/" },
  { "GET", "/health/" },
  { "GET", "/health/ready" },
  { "GET", "/health/all" },
  { "GET", "/health/vault" },
  { "GET", "/health/postgres" },
  { "GET", "/health/mysql" },
  { "GET", "/health/mongodb" },
  { "GET", "/health/redis" },
  { "GET", "/health/rabbitmq" },
  { "GET", "/examples/vault/secret/postgres" },
  { "GET", "/examples/vault/secret/postgres/user" },
  { "GET", "/examples/database/postgres/query" },
  { "GET", "/examples/database/mysql/query" },
  { "GET", "/examples/database/mongodb/query" },
  { "POST", "/examples/cache/soak:key?value=v&ttl=300", json, "" },
  { "GET", "/examples/cache/soak:key" },
  { "DELETE", "/examples/cache/soak:key" },
  { "POST", "/examples/messaging/publish?queue_name=" .. queue, json, '{"event": "soak"}' },
  { "GET", "/examples/messaging/queue/" .. queue .. "/info" },
  { "GET", "/redis/cluster/nodes" },
  { "GET", "/redis/cluster/slots" },
  { "GET", "/redis/cluster/info" },
  { "GET", "/redis/nodes/redis-1/info" },
  { "GET", "/metrics" },
  { "GET", "/openapi.json" },
}

local threads = {}

function setup(thread)
  thread:set("id", #threads)
  table.insert(threads, thread)
end

function init(args)
  requests = {}
  for i, e in ipairs(endpoints) do
    requests[i] = wrk.format(e[1], e[2], e[3], e[4])
  end
  -- Each thread starts at another endpoint; its connections take the endpoints in turn.
  next_request = (id * 13) % #requests + 1
  classes = { 0, 0, 0, 0, 0 }
  other = 0
end

function request()
  local r = requests[next_request]
  next_request = next_request % #requests + 1
  return r
end

function response(status, headers, body)
  local class = math.floor(status / 100)
  if class >= 1 and class <= 5 then
    classes[class] = classes[class] + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local total = { 0, 0, 0, 0, 0 }
  local others = 0
  for _, thread in ipairs(threads) do
    local counted = thread:get("classes")
    for class = 1, 5 do
      total[class] = total[class] + counted[class]
    end
    others = others + thread:get("other")
  end
  local e = summary.errors
  io.write(string.format(
    'SOAK_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"1xx":%d,"2xx":%d,"3xx":%d,"4xx":%d,"5xx":%d,"other":%d,' ..
    '"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d}\n',
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99), latency.max,
    total[1], total[2], total[3], total[4], total[5], others,
    e.connect, e.read, e.write, e.timeout))
end
