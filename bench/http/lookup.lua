-- wrk script for bench/http: every request asks for a fresh random public IPv4 address
-- that the database knows: GET <path_prefix><a.b.c.d><path_suffix>.
-- bench/http fills in the values below (path prefix and suffix, excluded ranges) and passes
-- a seed as the script argument (`wrk ... -s lookup.lua URL -- SEED`), different per run,
-- so a warm-up run never primes a cache with the addresses of the measured run.
local path_prefix = "@PATH_PREFIX@"
-- After the address, e.g. a query string ("?fields=...&lang=de"); usually empty.
local path_suffix = "@PATH_SUFFIX@"
-- Batch mode (bench/http --batch N): POST a JSON array of N addresses to path_prefix.
local batch = @BATCH@
-- Sorted, merged, inclusive ranges of excluded addresses (special-purpose + database gaps).
local starts = {@STARTS@}
local ends = {@ENDS@}

local count = #starts
local floor = math.floor
local random = math.random

local function excluded(x)
  -- binary search for the last range that starts at or below x
  local low, high = 1, count
  while low <= high do
    local mid = floor((low + high) / 2)
    if starts[mid] <= x then low = mid + 1 else high = mid - 1 end
  end
  return high >= 1 and x <= ends[high]
end

local next_thread = 0
function setup(thread)
  next_thread = next_thread + 1
  thread:set("thread_number", next_thread)
end

function init(args)
  local seed = tonumber(args[1]) or os.time()
  math.randomseed(seed * 7919 + (thread_number or 0) * 104729)
  for _ = 1, 16 do random() end
end

local function random_address()
  local x
  repeat
    x = random(0, 65535) * 65536 + random(0, 65535)
  until not excluded(x)
  local a = floor(x / 16777216)
  local b = floor(x / 65536) % 256
  local c = floor(x / 256) % 256
  local d = x % 256
  return a .. "." .. b .. "." .. c .. "." .. d
end

local batch_headers = {["Content-Type"] = "application/json"}

function request()
  if batch > 0 then
    local items = {}
    for i = 1, batch do items[i] = random_address() end
    local body = '["' .. table.concat(items, '","') .. '"]'
    return wrk.format("POST", path_prefix, batch_headers, body)
  end
  return wrk.format(nil, path_prefix .. random_address() .. path_suffix)
end
