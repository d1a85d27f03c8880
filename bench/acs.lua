-- wrk script for the login benchmark (bench/run.sh): POSTs pre-minted, unique signed
-- SAMLResponses to /saml/acs and counts the answers by status; only 303 (a session
-- was started) counts as a login.
--
--   wrk -t2 -c16 -d10s -s bench/acs.lua http://127.0.0.1:PORT/saml/acs -- BODIES_FILE 2
--
-- BODIES_FILE has one urlencoded POST body per line; the second argument is wrk's
-- thread count (-t). Thread i of n sends lines
-- i, i+n, i+2n, ... so no response is sent twice; when a thread runs out it starts
-- over (samlgate then refuses the replays with 403, which do not count) and reports
-- "exhausted".

local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local path = args[1]
  local nthreads = tonumber(args[2] or "1")
  local file = assert(io.open(path, "r"), "cannot open " .. tostring(path))
  requests_ = {}
  local index = 0
  local headers = { ["Content-Type"] = "application/x-www-form-urlencoded" }
  for line in file:lines() do
    if line ~= "" then
      if index % nthreads == id then
        table.insert(requests_, wrk.format("POST", nil, headers, line))
      end
      index = index + 1
    end
  end
  file:close()
  assert(#requests_ > 0, "fewer bodies than threads in " .. path)
  next_ = 1
  logins = 0
  others = 0
  wrapped = 0
end

function request()
  local r = requests_[next_]
  next_ = next_ + 1
  if next_ > #requests_ then
    next_ = 1
    wrapped = 1
  end
  return r
end

function response(status, headers, body)
  if status == 303 then
    logins = logins + 1
  else
    others = others + 1
  end
end

function done(summary, latency, requests)
  local total_logins, total_others, exhausted = 0, 0, 0
  for _, thread in ipairs(threads) do
    total_logins = total_logins + thread:get("logins")
    total_others = total_others + thread:get("others")
    exhausted = math.max(exhausted, thread:get("wrapped"))
  end
  io.write(string.format("ACS logins=%d others=%d exhausted=%d duration_us=%d\n",
    total_logins, total_others, exhausted, summary.duration))
end
