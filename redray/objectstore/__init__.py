"""Objects: serialization, the per-node shared-memory store and the object directory."""
