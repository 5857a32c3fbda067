"""Worker processes: the main loop, task execution and (later) the actor runtime."""
