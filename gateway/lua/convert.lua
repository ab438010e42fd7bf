-- A verification was approved: count a conversion in its prefix's and country's windows,
-- and remember that the number (and the user with it) has converted.
-- ARGV[1]: {keys: {converted, window_prefix, window_country}, user, window, buckets, memory}
-- (MessagePack; after abuse_lib.lua and conversion_lib.lua)
count_conversion(K.converted, K.window_prefix, K.window_country, p, SEC)
return 'ok'
