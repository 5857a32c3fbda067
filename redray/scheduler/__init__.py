"""Scheduling: resource arithmetic, node choice and the per-node local scheduler."""
