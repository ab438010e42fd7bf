-- KEYS: vf, outbox. ARGV[5..]: verification id, attempt, back-off (s) of a throttled send ('' = a failed try
-- that counts), then the seconds to wait after each counted try (DELIVERY_RETRY_INTERVALS)
-- A send failed for now (Twilio 429/20429, a 5xx, the network): its outbox entry is due again
-- later. Tries are counted in the record (a<n>:tries) so any sender continues the count; a
-- throttled send (the carrier asked us to slow down) does not use a try up. 'spent': no try
-- left, the channel is given up (the entry stays until the next attempt replaces it).
local vf, outbox = KEYS[1], KEYS[2]
local attempt, backoff = ARGV[6], tonumber(ARGV[7])
local entry = ARGV[5] .. ':' .. attempt
if redis.call('EXISTS', vf) == 0 or not is_pending(vf) or hget(vf, 'n') ~= attempt then
  redis.call('ZREM', outbox, entry)
  return reply(vf, 'stale', '')
end
if not backoff then
  local tries = redis.call('HINCRBY', vf, 'a' .. attempt .. ':tries', '1')
  backoff = tonumber(ARGV[7 + tries])
  if not backoff then return reply(vf, 'spent', tostring(tries)) end
end
redis.call('ZADD', outbox, after(backoff), entry)
return reply(vf, 'later', tostring(backoff))
