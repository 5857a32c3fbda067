"""Utilities with Ray's names: scheduling strategies (and, later, placement groups)."""

from redray.util import scheduling_strategies

__all__ = ["scheduling_strategies"]
