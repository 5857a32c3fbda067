"""Scheduling strategies accepted by the `scheduling_strategy` option, mirroring Ray's classes.

Besides instances of these classes, the option accepts None and the strings "DEFAULT" (hybrid
packing) and "SPREAD" (best-effort spreading across nodes). Attribute names match Ray's so code
that inspects a strategy works with either.
"""

from __future__ import annotations

from typing import Any

#: The string strategies understood by the scheduler.
STRING_STRATEGIES = ("DEFAULT", "SPREAD")


class PlacementGroupSchedulingStrategy:
    """Run the task or actor inside a bundle of a placement group.

    `placement_group_bundle_index=-1` means any bundle with room. When
    `placement_group_capture_child_tasks` is None, the caller's setting decides whether tasks
    launched from inside this one are placed in the same group.
    """

    def __init__(
        self,
        placement_group: Any,
        placement_group_bundle_index: int = -1,
        placement_group_capture_child_tasks: bool | None = None,
    ) -> None:
        if isinstance(placement_group_bundle_index, bool) or not isinstance(
            placement_group_bundle_index, int
        ):
            raise TypeError(
                "placement_group_bundle_index must be an int, got "
                f"{type(placement_group_bundle_index).__name__}."
            )
        if placement_group_bundle_index < -1:
            raise ValueError(
                "placement_group_bundle_index must be -1 (any bundle) or the index of a "
                f"bundle, got {placement_group_bundle_index}."
            )
        self.placement_group = placement_group
        self.placement_group_bundle_index = placement_group_bundle_index
        self.placement_group_capture_child_tasks = placement_group_capture_child_tasks

    def __repr__(self) -> str:
        return (
            f"PlacementGroupSchedulingStrategy({self.placement_group!r}, "
            f"placement_group_bundle_index={self.placement_group_bundle_index}, "
            f"placement_group_capture_child_tasks={self.placement_group_capture_child_tasks})"
        )


class NodeAffinitySchedulingStrategy:
    """Run the task or actor on one node, given by its hex id.

    With `soft=False` the task waits for that node and fails if the node is dead or can never
    fit it; with `soft=True` it runs elsewhere when the node is dead or infeasible.
    `_spill_on_unavailable` (soft only) also runs elsewhere when the node is merely busy;
    `_fail_on_unavailable` (hard only) fails instead of waiting when the node is busy.
    """

    def __init__(
        self,
        node_id: str,
        soft: bool,
        _spill_on_unavailable: bool = False,
        _fail_on_unavailable: bool = False,
    ) -> None:
        if not isinstance(node_id, str) and hasattr(node_id, "hex"):
            node_id = node_id.hex()  # bytes or an id object
        if not isinstance(node_id, str) or not _is_hex(node_id):
            raise ValueError(
                f"Invalid node_id {node_id!r}: a node id is a non-empty hex string. "
                "Use redray.nodes() to list the nodes of the cluster and their ids."
            )
        if _spill_on_unavailable and not soft:
            raise ValueError(
                "_spill_on_unavailable can only be set when soft=True; set soft=True to "
                "allow running on another node."
            )
        if _fail_on_unavailable and soft:
            raise ValueError(
                "_fail_on_unavailable can only be set when soft=False; set soft=False to "
                "pin the task to this node."
            )
        self.node_id = node_id
        self.soft = soft
        self._spill_on_unavailable = _spill_on_unavailable
        self._fail_on_unavailable = _fail_on_unavailable

    def __repr__(self) -> str:
        return f"NodeAffinitySchedulingStrategy(node_id={self.node_id!r}, soft={self.soft})"


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return bool(text)


def _check_operator_values(values: tuple[Any, ...], operator: str) -> None:
    if not values:
        raise ValueError(
            f'{operator}() needs at least one value, e.g. {operator}("value1", "value2").'
        )
    for position, value in enumerate(values):
        if not isinstance(value, str):
            raise ValueError(
                f"The value in position {position} of {operator}() must be a str, got "
                f"{value!r} of type {type(value).__name__}."
            )


class In:
    """Label operator: the node's label value is one of `values`."""

    def __init__(self, *values: str) -> None:
        _check_operator_values(values, "In")
        self.values = list(values)

    def __repr__(self) -> str:
        return f"In({', '.join(map(repr, self.values))})"


class NotIn:
    """Label operator: the node's label value is none of `values` (or the label is absent)."""

    def __init__(self, *values: str) -> None:
        _check_operator_values(values, "NotIn")
        self.values = list(values)

    def __repr__(self) -> str:
        return f"NotIn({', '.join(map(repr, self.values))})"


class Exists:
    """Label operator: the node has the label, whatever its value."""

    def __repr__(self) -> str:
        return "Exists()"


class DoesNotExist:
    """Label operator: the node does not have the label."""

    def __repr__(self) -> str:
        return "DoesNotExist()"


LabelOperator = In | NotIn | Exists | DoesNotExist
LabelMatchExpressionsT = dict[str, LabelOperator]


class _LabelMatchExpression:
    """One `key: operator` condition on a node's labels."""

    def __init__(self, key: str, operator: LabelOperator) -> None:
        self.key = key
        self.operator = operator

    def __repr__(self) -> str:
        return f"{self.key!r}: {self.operator!r}"


class NodeLabelSchedulingStrategy:
    """Run on a node whose labels satisfy every `hard` condition, preferring `soft` matches.

        NodeLabelSchedulingStrategy({"region": In("us-east"), "gpu": Exists()})

    `hard` and `soft` are stored as lists of `_LabelMatchExpression`, as in Ray.
    """

    def __init__(
        self,
        hard: LabelMatchExpressionsT | None,
        *,
        soft: LabelMatchExpressionsT | None = None,
    ) -> None:
        self.hard = _to_expressions(hard, "hard")
        self.soft = _to_expressions(soft, "soft")
        if not (self.hard or self.soft):
            raise ValueError(
                "The hard and soft conditions of NodeLabelSchedulingStrategy cannot both be "
                'empty; give at least one, e.g. {"region": In("us-east")}.'
            )

    def __repr__(self) -> str:
        return f"NodeLabelSchedulingStrategy(hard={self.hard!r}, soft={self.soft!r})"


def _to_expressions(
    conditions: LabelMatchExpressionsT | None, param: str
) -> list[_LabelMatchExpression]:
    if conditions is None:
        return []
    if not isinstance(conditions, dict):
        raise ValueError(
            f'The {param} parameter must be a dict such as {{"key1": In("value1")}}, got '
            f"{type(conditions).__name__}."
        )
    expressions = []
    for key, operator in conditions.items():
        if not isinstance(key, str):
            raise ValueError(
                f"The keys of the {param} parameter must be str, got {key!r} of type "
                f"{type(key).__name__}."
            )
        if not isinstance(operator, (In, NotIn, Exists, DoesNotExist)):
            raise ValueError(
                f"The condition for label {key!r} in the {param} parameter must be In(...), "
                f"NotIn(...), Exists() or DoesNotExist(), got {operator!r}."
            )
        expressions.append(_LabelMatchExpression(key, operator))
    return expressions


SchedulingStrategyT = (
    None
    | str
    | PlacementGroupSchedulingStrategy
    | NodeAffinitySchedulingStrategy
    | NodeLabelSchedulingStrategy
)
