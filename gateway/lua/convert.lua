-- A verification was approved: count a conversion in its prefix's and country's windows,
-- and remember that the number (and the user with it) has converted.
-- ARGV[1]: {keys: {converted}, pump_keys: {prefix, country: the current bucket}, user, window,
-- buckets, memory} (JSON; after abuse_lib.lua and conversion_lib.lua)
if clock_disagrees() then return CLOCK end
count_conversion(K.converted, PUMP.prefix[#PUMP.prefix], PUMP.country[#PUMP.country], p, SEC)
return 'ok'
