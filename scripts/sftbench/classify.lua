-- wrk script for `scripts/bench.py serve`: POST one body a request to /v1/classify, cycling through
-- the file given after `--` (one JSON body a line), and print wrk's summary as one JSON line.
local bodies, next_body = {}, 0
local headers = {["Content-Type"] = "application/json"}

function init(args)
  for line in io.lines(args[1]) do bodies[#bodies + 1] = line end
  next_body = math.random(#bodies)  -- each connection's thread starts at its own place
end

function request()
  next_body = next_body % #bodies + 1
  return wrk.format("POST", "/v1/classify", headers, bodies[next_body])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "seconds": %.3f, "errors": {"connect": %d, "read": %d, "write": %d, "status": %d, ' ..
    '"timeout": %d}, "latency_ms": {"p50": %.3f, "p95": %.3f, "p99": %.3f, "mean": %.3f, "max": %.3f}}\n',
    summary.requests, summary.duration / 1e6, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50) / 1e3, latency:percentile(95) / 1e3, latency:percentile(99) / 1e3,
    latency.mean / 1e3, latency.max / 1e3))
end
