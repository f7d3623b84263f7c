-- wrk script shared by every bench run.
-- BENCH_METHOD / BENCH_BODY (from the environment) turn the request into a POST with a JSON body;
-- done() prints one machine-readable line, because wrk's text report has no p95.
local method = os.getenv("BENCH_METHOD")
if method and method ~= "" then
  wrk.method = method
  -- Our request validation answers 400 to a POST without a Content-Type, body or not.
  wrk.headers["Content-Type"] = "application/json"
end
local body = os.getenv("BENCH_BODY")
if body and body ~= "" then
  wrk.body = body
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p95_us":%d,"p99_us":%d,' ..
    '"non2xx":%d,"socket_errors":%d}\n',
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(95), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
