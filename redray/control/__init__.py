"""How processes talk: the Redis key schema and Lua commands, raw connections, channels."""
