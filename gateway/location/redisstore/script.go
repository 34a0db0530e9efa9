package redisstore

import "github.com/redis/go-redis/v9"

// change is the script: every write to an AOR's key goes through it, so
// that Redis runs each read-check-write whole, with nothing of another
// client's in between, and the gateway pays one round trip for it.
//
// KEYS[1] is the AOR's key: a JSON array of entries (see entry), in the
// order the embedded store keeps them before sorting. ARGV[1] is the
// gateway's time in Unix milliseconds, ARGV[2] the most bindings an AOR
// may have, ARGV[3] the operation (see op). It answers a status ("ok",
// "order" or "many") followed by the encoded bindings the operation
// returns: those after it ("ok" of an update), those kept ("many"), or
// those removed (a flow's).
//
// Matching is Binding.Matches: by instance and reg-id when the new
// binding uses outbound, else by URI as RFC 3261 §19.1.4 compares them,
// on the forms uriKey computed — parameters on both sides must be equal,
// user, ttl, method, maddr and transport must be on both sides or none.
//
// The key expires by itself with the last of its bindings.
var change = redis.NewScript(`
local key = KEYS[1]
local now = tonumber(ARGV[1])
local max = tonumber(ARGV[2])
local op = cjson.decode(ARGV[3])

local cur = {}
local raw = redis.call('GET', key)
if raw then
  for _, e in ipairs(cjson.decode(raw)) do
    if e.x > now then cur[#cur + 1] = e end
  end
end

local significant = {user = true, ttl = true, method = true, maddr = true, transport = true}
local function sameURI(a, b)
  if a.b ~= b.b then return false end
  for k, v in pairs(a.p) do
    local w = b.p[k]
    if w == nil then
      if significant[k] then return false end
    elseif w ~= v then
      return false
    end
  end
  for k in pairs(b.p) do
    if a.p[k] == nil and significant[k] then return false end
  end
  return true
end
-- matches is stored:Matches(new).
local function matches(stored, new)
  if new.rg > 0 and new.i ~= '' then
    return stored.rg == new.rg and stored.i == new.i
  end
  return sameURI(stored.u, new.u)
end
local function without(list, e)
  local keep = {}
  for _, c in ipairs(list) do
    if not matches(c, e) then keep[#keep + 1] = c end
  end
  return keep
end
local function answer(status, list)
  local out = {status}
  for _, e in ipairs(list) do out[#out + 1] = e.b end
  return out
end
local function store(list)
  if #list == 0 then
    redis.call('DEL', key)
    return
  end
  local last = 0
  for _, e in ipairs(list) do
    if e.x > last then last = e.x end
  end
  redis.call('SET', key, cjson.encode(list), 'PX', string.format('%d', math.max(1, last - now)))
end

-- A closed flow: its bindings that need it, of this node.
if op.df then
  local removed, keep = {}, {}
  for _, c in ipairs(cur) do
    if c.f and c.s == op.df.s and c.n == op.df.n then
      removed[#removed + 1] = c
    else
      keep[#keep + 1] = c
    end
  end
  if #removed > 0 then store(keep) end
  return answer('ok', removed)
end

-- Bindings held by a node, written back after Redis lost them: each one
-- goes in unless a binding it matches was refreshed since.
if op.merge then
  local changed = false
  for _, e in ipairs(op.ch) do
    local newer = false
    for _, c in ipairs(cur) do
      if matches(c, e.r) and c.rv >= e.r.rv then newer = true end
    end
    if not newer and e.r.x > now then
      local next = without(cur, e.r)
      if #next < max then
        next[#next + 1] = e.r
        cur = next
        changed = true
      end
    end
  end
  if changed then store(cur) end
  return answer('ok', cur)
end

-- RFC 3261 §10.3 step 7.
if op.ci ~= '' then
  for _, c in ipairs(cur) do
    if c.ci == op.ci and op.cs <= c.cs then
      if op.all then return {'order'} end
      for _, e in ipairs(op.ch) do
        if matches(c, e.r) then return {'order'} end
      end
    end
  end
end
if op.all then
  redis.call('DEL', key)
  return {'ok'}
end
if #op.ch == 0 then
  return answer('ok', cur)
end
local before = cur
for _, e in ipairs(op.ch) do
  if e.rm then cur = without(cur, e.r) end
end
for _, e in ipairs(op.ch) do
  if not e.rm then
    cur = without(cur, e.r)
    cur[#cur + 1] = e.r
  end
end
if #cur > max and #cur > #before then
  return answer('many', before)
end
store(cur)
return answer('ok', cur)
`)
