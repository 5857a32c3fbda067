"""Jobs: a driver script submitted to a cluster and run on its head.

- `records`: the job record and its states (Ray's JobStatus and JobInfo), as kept in Redis;
- `manager`: the process on the head (started by `redray start --head`) that runs the
  submitted entrypoints, keeps their output, and stops them on request.

The user-facing client is `redray.job_submission.JobSubmissionClient`; the CLI is
`redray job ...`.
"""
