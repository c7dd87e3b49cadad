-- wrk script for the ingest benchmark: POSTs pre-generated packet bodies to
-- /ingest/packets in rotation, each with its device's key.
--
-- BENCH_BODIES names the bodies file written by `iot-ingest sim --emit`
-- (bench/gen_bodies.sh): one request per line, HEADER<TAB>KEY<TAB>BODY.
-- Requests are formatted once, in init(), so wrk spends no time building
-- them. Every thread starts at a different point of the rotation.
--
-- The peers reuse it (bench/peers/lineproto.py): BENCH_CONTENT_TYPE replaces
-- application/json, a HEADER of "-" sends no key header, and BENCH_BODY_NL=1
-- turns the two characters \n of a body into newlines (line protocol).
-- BENCH_CLOSE=1 adds "Connection: close": a new connection (and, over HTTPS, a
-- new TLS handshake) for every request.
--
-- done() prints one "BENCH key=value ..." line that bench/run.sh parses.

local path = os.getenv("BENCH_BODIES") or "bodies.tsv"
local ctype = os.getenv("BENCH_CONTENT_TYPE") or "application/json"
local body_nl = os.getenv("BENCH_BODY_NL") == "1"
local close = os.getenv("BENCH_CLOSE") == "1"
local reqs = {}
local n = 0
local i = 0

function init(args)
  for line in io.lines(path) do
    local h, k, body = line:match("^([^\t]+)\t([^\t]+)\t(.+)$")
    if h then
      local headers = { ["Content-Type"] = ctype }
      if h ~= "-" then headers[h] = k end
      if close then headers["Connection"] = "close" end
      if body_nl then body = body:gsub("\\n", "\n") end
      n = n + 1
      reqs[n] = wrk.format("POST", nil, headers, body)
    end
  end
  if n == 0 then
    error("no request in " .. path)
  end
  i = math.random(n) - 1
end

function request()
  i = i % n + 1
  return reqs[i]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d bytes=%d non2xx=%d connect_errors=%d read_errors=%d " ..
    "write_errors=%d timeouts=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d\n",
    summary.requests, summary.duration, summary.bytes, e.status, e.connect, e.read, e.write,
    e.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max))
end
