"""Lua scripts, one constant each, every key passed in KEYS (never built in Lua).

They make each state change atomic and *fenced*: a write happens only while
the writer's lease token is still the one in Redis, so a slow sweep whose
lease expired and was taken over cannot overwrite the new owner's work.

The write scripts (PROGRESS, FINISH, RELEASE, COUNT_ATTEMPT) are written for
one call and run through :func:`batched`, which wraps them in a loop so that
many calls of the same script go to Redis as one EVALSHA.
"""

from __future__ import annotations

from dataclasses import dataclass

# Read a window of records without pulling huge ones over the wire, and note
# when each id was first seen (the default ``timestamp``).
# KEYS: first_seen_hash, record_1 .. record_n
# ARGV: now_ms, inline_limit_bytes, id_1 .. id_n
# Returns per id: {kind, payload, first_seen_ms}; kind 0 missing, 1 record
# (payload = JSON), 2 large (payload = byte length; fetched at claim), 3 wrong
# Redis type (payload = type name).
PEEK_RECORDS = """
local out = {}
for i = 2, #KEYS do
  local id = ARGV[i + 1]
  redis.call('HSETNX', KEYS[1], id, ARGV[1])
  local seen = redis.call('HGET', KEYS[1], id)
  local kind = redis.call('TYPE', KEYS[i]).ok
  if kind == 'none' then
    out[#out + 1] = {0, '', seen}
  elseif kind ~= 'string' then
    out[#out + 1] = {3, kind, seen}
  else
    local len = redis.call('STRLEN', KEYS[i])
    if len > tonumber(ARGV[2]) then
      out[#out + 1] = {2, tostring(len), seen}
    else
      out[#out + 1] = {1, redis.call('GET', KEYS[i]), seen}
    end
  end
end
return out
"""

# Claim jobs that are still pending and not leased, count the start of a sweep
# on each (attempts field ``job``), and return what resuming needs.
# KEYS: pending_set, then per job: lease, result, attempts, record
# ARGV: token, lease_ms, then per job: id, fetch_record (1 or 0)
# Returns per job: {claimed (1/0), result JSON or false, attempts hash, record or false}
CLAIM = """
local out = {}
local n = 0
for i = 2, #KEYS, 4 do
  local id = ARGV[3 + n * 2]
  local fetch = ARGV[4 + n * 2]
  n = n + 1
  if redis.call('SISMEMBER', KEYS[1], id) == 1
      and redis.call('SET', KEYS[i], ARGV[1], 'NX', 'PX', ARGV[2]) then
    -- counted here, in the same step as the lease: 'job' counts sweeps that
    -- worked on the job (RELEASE gives it back if the sweep never started),
    -- 'unclean' counts claims not yet ended by RELEASE or FINISH, i.e. sweeps
    -- that died holding the job
    redis.call('HINCRBY', KEYS[i + 2], 'job', 1)
    redis.call('HINCRBY', KEYS[i + 2], 'unclean', 1)
    local record = false
    if fetch == '1' and redis.call('TYPE', KEYS[i + 3]).ok == 'string' then
      record = redis.call('GET', KEYS[i + 3])
    end
    out[#out + 1] = {1, redis.call('GET', KEYS[i + 1]) or false,
                     redis.call('HGETALL', KEYS[i + 2]), record}
  else
    out[#out + 1] = {0, false, {}, false}
  end
end
return out
"""

# Write the result record while still owning the job, and renew the lease.
# KEYS: lease, result
# ARGV: token, result_json, lease_ms
PROGRESS = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
"""

# Take up to ARGV[2] deliveries due by ARGV[1] and hide them until ARGV[3]
# (a sweep that dies while delivering leaves them to come due again).
# KEYS: deliveries (zset)
# ARGV: now_ms, limit, hidden_until_ms
TAKE_DUE = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], ARGV[3], id) end
return ids
"""

# The oldest enqueue time among some pending ids, computed where the records
# are: a record's "timestamp" when it is small enough to decode, else when a
# sweep first saw the id. Nothing large ever crosses the wire.
# KEYS: first_seen_hash, record_1 .. record_n
# ARGV: max_record_bytes_to_decode, id_1 .. id_n
# Returns the oldest time in ms, or false when none is known.
OLDEST = """
local oldest = false
for i = 2, #KEYS do
  local stamp = nil
  if redis.call('TYPE', KEYS[i]).ok == 'string'
      and redis.call('STRLEN', KEYS[i]) <= tonumber(ARGV[1]) then
    local ok, record = pcall(cjson.decode, redis.call('GET', KEYS[i]))
    if ok and type(record) == 'table' and type(record['timestamp']) == 'number' then
      stamp = record['timestamp']
    end
  end
  if stamp == nil then stamp = tonumber(redis.call('HGET', KEYS[1], ARGV[i])) end
  if stamp ~= nil and (oldest == false or stamp < oldest) then oldest = stamp end
end
if oldest == false then return false end
return tostring(oldest)
"""

# Extend the lease of a job still being worked on.
# KEYS: lease
# ARGV: token, lease_ms
RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('PEXPIRE', KEYS[1], ARGV[2])
"""

# End a job (completed, partial, failed or quarantined) in one atomic step,
# queueing its delivery (callback, Telegram) in the same step so a crash can
# never lose it.
# KEYS: lease, result, pending_set, record, failed_set, attempts, first_seen,
#       deliveries (zset), delivery (payload)
# ARGV: token, id, result_json, status, delivery_json ('' for none), due_ms
FINISH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[2], ARGV[3])
redis.call('SREM', KEYS[3], ARGV[2])
if ARGV[4] == 'completed' then
  redis.call('DEL', KEYS[4])
  redis.call('SREM', KEYS[5], ARGV[2])
else
  redis.call('SADD', KEYS[5], ARGV[2])
end
redis.call('DEL', KEYS[6])
redis.call('HDEL', KEYS[7], ARGV[2])
if ARGV[5] ~= '' then
  redis.call('SET', KEYS[9], ARGV[5])
  redis.call('ZADD', KEYS[8], ARGV[6], ARGV[2])
end
redis.call('DEL', KEYS[1])
return 1
"""

# Give a job back (the sweep ends with work left); only the owner may. The
# claim ended cleanly ('unclean' back down); a job the sweep never started
# also gets back the start CLAIM counted.
# KEYS: lease, attempts
# ARGV: token, started (1 or 0)
RELEASE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if redis.call('HINCRBY', KEYS[2], 'unclean', -1) <= 0 then
  redis.call('HDEL', KEYS[2], 'unclean')
end
if ARGV[2] == '0' and redis.call('HINCRBY', KEYS[2], 'job', -1) <= 0 then
  redis.call('HDEL', KEYS[2], 'job')
end
return redis.call('DEL', KEYS[1])
"""

# Count one attempt (field ``job`` for a sweep starting the job, ``<key>#<n>``
# for a failed call), only while owning the job.
# KEYS: lease, attempts
# ARGV: token, field
COUNT_ATTEMPT = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
return redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
"""


@dataclass(frozen=True, slots=True)
class Batched:
    """A single-call script and its looped form; ``keys``/``args`` count one call's."""

    name: str
    body: str
    keys: int
    args: int

    @property
    def source(self) -> str:
        """Lua running ``body`` once per call; ARGV starts with the per-call counts.

        KEYS: every call's keys, one call after another
        ARGV: keys_per_call, args_per_call, then every call's args in the same order
        Returns one reply per call.
        """
        return (
            "local function one(KEYS, ARGV)\n" + self.body.strip() + "\nend\n"
            "local nk, na = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
            "local out = {}\n"
            "for c = 0, #KEYS / nk - 1 do\n"
            "  local k, a = {}, {}\n"
            "  for i = 1, nk do k[i] = KEYS[c * nk + i] end\n"
            "  for i = 1, na do a[i] = ARGV[2 + c * na + i] end\n"
            "  out[#out + 1] = one(k, a)\n"
            "end\n"
            "return out\n"
        )


BATCHED_PROGRESS = Batched("progress", PROGRESS, keys=2, args=3)
BATCHED_FINISH = Batched("finish", FINISH, keys=9, args=6)
BATCHED_RENEW = Batched("renew", RENEW, keys=1, args=2)
BATCHED_RELEASE = Batched("release", RELEASE, keys=2, args=2)
BATCHED_COUNT_ATTEMPT = Batched("count_attempt", COUNT_ATTEMPT, keys=2, args=2)
