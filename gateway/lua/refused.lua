-- A refusal decided outside the admission (the send cap of a verification, which the record
-- itself shows): counted and audited at Redis's time.
-- ARGV[1]: {keys: {audit, refused}, record, audit_retention_ms} (MessagePack; after abuse_lib.lua)
local record = p.record
record.created_at, record.ended_at = NOW, NOW
redis.call('HINCRBY', K.refused, record.reason, '1')
audit(record)
return 'ok'
