"""The Lua scripts: each is one atomic step on Redis, timed by Redis's own clock.

Redis's ``TIME`` rather than the callers' clocks: processes on several machines share one
budget and one set of leases, and their clocks need not agree. Keys carry the namespace as a
hash tag (``alloy:{ns}:...``) so every key a script touches lives in one Redis Cluster slot.
"""

from __future__ import annotations

__all__ = ["CLAIM", "FORGET", "JOIN", "LEASE", "LEAVE", "PEEK", "RATE", "RENEW", "RENEW_RUNS"]

#: A moving window: at most ARGV[1] permits in any ARGV[2] microseconds. 0 when granted, else
#: the microseconds until the oldest permit leaves the window.
RATE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local burst = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < burst then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000) + 1000)
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, tonumber(oldest[2]) + window - now)
"""

#: Lease one slot of every key (KEYS) at once or none: a lease is the member ARGV[2] with its
#: expiry (now + ARGV[1] ms) as score; expired leases (a dead holder's) are dropped first.
#: ARGV[3..] are the caps. 0 when granted (also when this lease id already holds them: a
#: retried call), else the 1-based index of the first full key.
LEASE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  if not redis.call('ZSCORE', key, ARGV[2]) then
    if redis.call('ZCARD', key) >= tonumber(ARGV[i + 2]) then
      return i
    end
  end
end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now + ttl, ARGV[2])
  redis.call('PEXPIRE', key, ttl * 2)
end
return 0
"""

#: Renew leases: KEYS[i] holds member ARGV[i + 1]; each gets a new expiry (now + ARGV[1] ms)
#: if it is still there (XX: a lease already released is not brought back).
RENEW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, 'XX', now + ttl, ARGV[i + 1])
  redis.call('PEXPIRE', key, ttl * 2)
end
return 0
"""

# What the journal holds of a job (KEYS[1], a hash: s = state, r = run id, row = its outcome
# line) as a verdict for run ARGV[1]; the run that wrote an intent is alive while its key
# (KEYS[2] .. the run id) exists. The shared part of PEEK and CLAIM.
_VERDICT = """
local state = redis.call('HGET', KEYS[1], 's')
if not state then
  return nil
end
if state ~= 'intent' then
  return 'done'
end
local run = redis.call('HGET', KEYS[1], 'r')
if run == ARGV[1] then
  return 'mine'
end
if run and redis.call('EXISTS', KEYS[2] .. run) == 1 then
  return 'claimed'
end
return 'intent'
"""

#: What other runs recorded of a job: nil, 'done', 'claimed', 'intent' or 'mine'.
PEEK = "local function verdict()" + _VERDICT + "end\nreturn verdict()"

#: Write the intent of a job for run ARGV[1] (expiring after ARGV[2] ms, 0: never) unless a
#: run recorded it: nil when written (or already this run's: a retried call), else the verdict.
#: A row without a state (a late write after the record went) is dropped: it is not this run's.
CLAIM = (
    "local function verdict()"
    + _VERDICT
    + """end
local found = verdict()
if found == 'mine' then
  return nil
end
if found then
  return found
end
redis.call('HDEL', KEYS[1], 'row')
redis.call('HSET', KEYS[1], 's', 'intent', 'r', ARGV[1])
if tonumber(ARGV[2]) > 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return nil
"""
)

#: Remove a job's record only if it is still run ARGV[1]'s intent: a forget that follows a claim
#: that never ran (cancelled in flight) must not remove another run's record.
FORGET = """
if redis.call('HGET', KEYS[1], 'r') == ARGV[1] and redis.call('HGET', KEYS[1], 's') == 'intent' then
  redis.call('DEL', KEYS[1])
end
return 0
"""

# The live runs of a namespace (KEYS[1], a sorted set: run id -> expiry, now + ttl ms) hold its
# quarantine (KEYS[3], a hash: credential id -> why). When none is left (the last one ended, or
# every holder died and its expiry passed) the quarantine goes with them: a rerun after the
# users reconnect sends the jobs it held back. The shared part of JOIN and LEAVE.
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""
_LAST_ONE_OUT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[1], KEYS[3])
end
"""

#: Start run ARGV[1] (its key KEYS[2] lives ARGV[2] ms unless renewed): join the live runs,
#: and return the quarantine (a flat field, value list) it now shares.
JOIN = (
    _NOW
    + _LAST_ONE_OUT
    + """local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('PEXPIRE', KEYS[1], ttl * 2)
redis.call('SET', KEYS[2], '1', 'PX', ttl)
if redis.call('EXISTS', KEYS[3]) == 1 then
  redis.call('PEXPIRE', KEYS[3], ttl * 2)
end
return redis.call('HGETALL', KEYS[3])
"""
)

#: End run ARGV[1]: leave the live runs; the last one out takes the quarantine with it.
LEAVE = (
    _NOW
    + """redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
"""
    + _LAST_ONE_OUT
    + "return 0\n"
)

#: Renew live runs: ARGV[i + 1] (key KEYS[i + 2]) gets a new expiry (now + ARGV[1] ms) if it
#: is still live (XX); the set and the quarantine they hold (KEYS[2]) outlive them by a ttl.
RENEW_RUNS = (
    _NOW
    + """local ttl = tonumber(ARGV[1])
for i = 2, #ARGV do
  redis.call('ZADD', KEYS[1], 'XX', now + ttl, ARGV[i])
  redis.call('PEXPIRE', KEYS[i + 1], ttl)
end
redis.call('PEXPIRE', KEYS[1], ttl * 2)
redis.call('PEXPIRE', KEYS[2], ttl * 2)
return redis.call('HGETALL', KEYS[2])
"""
)
