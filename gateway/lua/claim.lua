-- KEYS: a schedule (sorted set, member -> due time by Redis's clock): the outbox or the timers.
-- ARGV[5..]: how many members at most, lease (s)
-- Takes up to that many due members and pushes each one's due time to now + lease: the taker
-- works on it meanwhile, and should it die, the member is due again when the lease ends (that
-- is the whole crash recovery: no registry of running work, no heartbeat). Answers Redis's
-- time, the earliest due time left ('' when the schedule is empty), the due time the members
-- taken now hold (reschedule.lua compares it), then those members.
local schedule, most, lease = KEYS[1], tonumber(ARGV[5]), tonumber(ARGV[6])
local due = redis.call('ZRANGEBYSCORE', schedule, '-inf', NOW_S, 'LIMIT', 0, most)
local held = after(lease)
if #due > 0 then  -- one ZADD for all of them (a redis.call costs as much as ~10 k instructions of Lua)
  local pairs_ = {}
  for i, member in ipairs(due) do pairs_[2 * i - 1], pairs_[2 * i] = held, member end
  redis.call('ZADD', schedule, unpack(pairs_))
end
local head = redis.call('ZRANGE', schedule, 0, 0, 'WITHSCORES')
return {NOW_S, head[2] or '', held, unpack(due)}
