"""Infrastructure: configuration from the environment, the Redis connection, the RQ queues
by purpose, socket presence, and the Lua script behind every location ping."""
