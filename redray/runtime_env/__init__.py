"""runtime_env: what a task or actor runs with (environment variables, shipped code, pip).

- `spec`: checking a runtime_env dict, merging a job's default with a task's, and the key
  of the code it needs (pure);
- `packages`: packing directories, .zip and .whl files into content-addressed packages in
  Redis, and unpacking them into a node's cache;
- `worker_env`: what a worker does with a task's runtime_env (cwd, sys.path, pip).
"""
