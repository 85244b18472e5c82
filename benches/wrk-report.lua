-- wrk script for the load benchmarks.
-- With WRK_HOSTS=N set, requests rotate over the hosts app-0.bench ..
-- app-(N-1).bench (many_apps.py); otherwise wrk's default request is sent.
-- At the end it prints one machine-readable line with throughput, latency
-- percentiles (µs) and every kind of error.
local hosts = tonumber(os.getenv("WRK_HOSTS") or "")
local counter = 0

if hosts then
  request = function()
    counter = counter + 1
    return wrk.format("GET", "/", { ["Host"] = "app-" .. (counter % hosts) .. ".bench" })
  end
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d seconds=%.3f p50=%d p99=%d p999=%d errors=%d\n",
    summary.requests, summary.duration / 1e6,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9),
    e.connect + e.read + e.write + e.status + e.timeout))
end
