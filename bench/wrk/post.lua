-- POST a fixed body with fixed headers; report exact figures as one JSON line at the end.
--
-- usage: wrk ... -s bench/wrk/post.lua URL -- BODY_FILE [NAME:VALUE ...]
--   BODY_FILE   the request body, sent unchanged on every request
--   NAME:VALUE  extra request headers (e.g. "x-api-key:bench-key")
--
-- The last line of output is `WRK_JSON {...}`: requests, duration and latency in microseconds
-- (p50, p90, p99, p99.9, mean, max), bytes, and errors by kind (status counts non-2xx/3xx).

function init(args)
   local path = args[1]
   if path == nil then
      error("post.lua needs the body file as its first argument (after --)")
   end
   local f = assert(io.open(path, "rb"))
   wrk.body = f:read("*a")
   f:close()
   wrk.method = "POST"
   wrk.headers["Content-Type"] = "application/json"
   for i = 2, #args do
      local name, value = string.match(args[i], "^([^:]+):%s*(.*)$")
      if name == nil then
         error("bad header argument: " .. args[i])
      end
      wrk.headers[name] = value
   end
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      'WRK_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
      '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"p999":%d,"mean":%.1f,"max":%d},' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
      summary.requests, summary.duration, summary.bytes,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency:percentile(99.9), latency.mean, latency.max,
      e.connect, e.read, e.write, e.status, e.timeout))
end
