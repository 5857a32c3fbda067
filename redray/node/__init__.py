"""Node processes: the node daemon, its worker pool, and the embedded redis-server."""
