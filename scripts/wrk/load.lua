-- wrk script for scripts/bench: token-endpoint grants and plain GETs, closed loop or paced.
--
--   wrk -t1 -c16 -d5s --latency -s load.lua http://127.0.0.1:PORT -- mode=MODE key=value ...
--
--   mode=get      GET path= (default /.well-known/jwks.json); ok = 2xx.
--   mode=password POST a password grant for each line "username password" of users=FILE, in turn.
--                 capture=refresh_token|mfa_token writes that field of every 200 to out=FILE.
--   mode=refresh  every line of pool=FILE is a refresh token, used once; each 200 puts its successor back at the
--                 end of the pool, so a pool a few times larger than the connections lasts the whole run.
--   mode=mfa      every line of pool=FILE is "mfa_token otp", used once; the thread stops when none is left.
--   client_id= client_secret= audience= scope= form fields; rate=R paces the thread at R requests/s (an intended
--   rate: a connection waits until its next slot, so latency is measured at that load, not at saturation).
--   result=FILE: done() writes one JSON object there; poolout=FILE: the pool's unused lines (refresh: the live
--   tokens at the end, for the next run).
-- ok counts 200s whose body holds "access_token" (2xx for get); status counts every response by code.

local ffi = require("ffi")
pcall(ffi.cdef, [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clk_id, bench_timespec *tp);
]])
local ts = ffi.new("bench_timespec")
local function now()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

local function urlencode(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", string.byte(c)) end))
end

local function form(fields)
  local parts = {}
  for _, kv in ipairs(fields) do
    if kv[2] ~= nil and kv[2] ~= "" then parts[#parts + 1] = kv[1] .. "=" .. urlencode(kv[2]) end
  end
  return table.concat(parts, "&")
end

local function read_lines(path)
  local lines = {}
  local f = assert(io.open(path, "r"), "cannot open " .. tostring(path))
  for line in f:lines() do
    line = line:gsub("%s+$", "")
    if line ~= "" then lines[#lines + 1] = line end
  end
  f:close()
  return lines
end

local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

opt, mode, ok, status, captured, t_first, t_last_ok, exhausted = nil, nil, 0, {}, {}, nil, nil, false
local hdrs, reqs, pos, interval, next_at
pool, head, tail = nil, 1, 0

function init(args)
  opt = {}
  local i = 0
  while args[i] ~= nil do
    local k, v = string.match(args[i], "^([%w_]+)=(.*)$")
    if k then opt[k] = v end
    i = i + 1
  end
  mode = opt.mode or "get"
  hdrs = { ["Content-Type"] = "application/x-www-form-urlencoded", ["Accept"] = "application/json" }
  local rate = tonumber(opt.rate or "0")
  if rate > 0 then interval = 1.0 / rate end
  if mode == "get" then
    reqs = { wrk.format("GET", opt.path or "/.well-known/jwks.json", { ["Accept"] = "application/json" }) }
  elseif mode == "password" then
    reqs = {}
    for _, line in ipairs(read_lines(opt.users)) do
      local u, p = string.match(line, "^(%S+)%s+(%S+)")
      reqs[#reqs + 1] = wrk.format("POST", "/oauth/token", hdrs, form({
        { "grant_type", "password" }, { "username", u }, { "password", p },
        { "client_id", opt.client_id }, { "client_secret", opt.client_secret },
        { "audience", opt.audience }, { "scope", opt.scope },
      }))
    end
  else
    pool, head, tail = {}, 1, 0
    local all, step = read_lines(opt.pool), tonumber(opt.threads or "1")
    for k = tid + 1, #all, step do tail = tail + 1; pool[tail] = all[k] end
  end
  pos = 0
end

function delay()
  if not interval then return 0 end
  local t = now()
  if next_at == nil or next_at < t - 0.1 then next_at = t end  -- never burst to catch up after a stall
  next_at = next_at + interval
  local wait = next_at - t
  return wait > 0 and wait * 1000 or 0
end

local function stop()
  if not exhausted then exhausted = true; wrk.thread:stop() end
  return wrk.format("GET", "/healthz", {})
end

function request()
  if t_first == nil then t_first = now() end
  if mode == "get" or mode == "password" then
    pos = pos % #reqs + 1
    return reqs[pos]
  end
  local item = pool[head]
  if item == nil then return stop() end
  pool[head] = nil
  head = head + 1
  if mode == "refresh" then
    return wrk.format("POST", "/oauth/token", hdrs, form({
      { "grant_type", "refresh_token" }, { "refresh_token", item },
      { "client_id", opt.client_id }, { "client_secret", opt.client_secret },
    }))
  end
  local token, otp = string.match(item, "^(%S+)%s+(%S+)")
  return wrk.format("POST", "/oauth/token", hdrs, form({
    { "grant_type", "http://auth0.com/oauth/grant-type/mfa-otp" }, { "mfa_token", token }, { "otp", otp },
    { "client_id", opt.client_id }, { "client_secret", opt.client_secret },
  }))
end

function response(st, headers, body)
  status[st] = (status[st] or 0) + 1
  if mode == "get" then
    if st >= 200 and st < 300 then ok = ok + 1; t_last_ok = now() end
    return
  end
  if st == 200 and body and string.find(body, '"access_token"', 1, true) then
    ok = ok + 1
    t_last_ok = now()
    if mode == "refresh" then
      local successor = string.match(body, '"refresh_token"%s*:%s*"([^"]+)"')
      if successor then tail = tail + 1; pool[tail] = successor end
    end
  end
  if opt.capture and body then
    local value = string.match(body, '"' .. opt.capture .. '"%s*:%s*"([^"]+)"')
    if value then captured[#captured + 1] = value end
  end
end

function done(summary, latency, requests)
  local total_ok, t0, t1, any_exhausted, result, out = 0, nil, nil, false, nil, nil
  local left, poolout = nil, nil
  local by_status, values = {}, {}
  for _, t in ipairs(threads) do
    total_ok = total_ok + (t:get("ok") or 0)
    local tf, tl = t:get("t_first"), t:get("t_last_ok")
    if tf and (t0 == nil or tf < t0) then t0 = tf end
    if tl and (t1 == nil or tl > t1) then t1 = tl end
    if t:get("exhausted") then any_exhausted = true end
    for k, v in pairs(t:get("status") or {}) do by_status[k] = (by_status[k] or 0) + v end
    local o = t:get("opt") or {}
    result, out = result or o.result, out or o.out
    for _, v in ipairs(t:get("captured") or {}) do values[#values + 1] = v end
    local p, h, tl2 = t:get("pool"), t:get("head"), t:get("tail")
    if p and o.poolout then
      for k = h, tl2 do if p[k] then left = left or {}; left[#left + 1] = p[k] end end
      poolout = o.poolout
    end
  end
  if poolout then
    local f = assert(io.open(poolout, "w"))
    for _, v in ipairs(left or {}) do f:write(v, "\n") end
    f:close()
  end
  if out then
    local f = assert(io.open(out, "w"))
    for _, v in ipairs(values) do f:write(v, "\n") end
    f:close()
  end
  local duration = summary.duration / 1e6
  local window = duration
  if any_exhausted and t0 and t1 and t1 > t0 then window = t1 - t0 end
  local parts = {}
  for k, v in pairs(by_status) do parts[#parts + 1] = string.format('"%s": %d', tostring(k), v) end
  local e = summary.errors
  local js = string.format(
    '{"requests": %d, "ok": %d, "duration_s": %.3f, "window_s": %.3f, "rate": %.2f, "p50_ms": %.3f, ' ..
    '"p90_ms": %.3f, "p99_ms": %.3f, "max_ms": %.3f, "status": {%s}, "socket_errors": %d, "timeouts": %d}',
    summary.requests, total_ok, duration, window, window > 0 and total_ok / window or 0,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000, latency.max / 1000,
    table.concat(parts, ", "), e.connect + e.read + e.write, e.timeout)
  if result then
    local f = assert(io.open(result, "w"))
    f:write(js, "\n")
    f:close()
  end
end
