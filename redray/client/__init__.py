"""The per-process client: what a driver or a worker uses to talk to the cluster."""
