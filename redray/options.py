"""Validation, defaults and resource demands of `@remote(...)` / `.options(...)` options.

Mirrors Ray 2.x (`ray/_common/ray_option_utils.py`): the same option names for remote functions
and for actor classes, and the same TypeError / ValueError for bad values. Where Ray only fails
later, at submission (a "memory" key in `resources`, an unknown strategy string, an empty actor
name), we fail here, with the same exception type.

Flow: `@remote(**base)` keeps `validate_*_options(base, in_options=False)`, and `.options(**o)`
gives `merge_options(base, validate_*_options(o, in_options=True))`. `max_calls` (functions) and
`concurrency_groups` (actors) are fixed when the function or class is defined: `.options()`
cannot set them, and the merged options keep the decorator's values, which apply to every call.
Rules between options that `.options()` may split between base and overrides (get_if_exists
needs a name; no deprecated placement_group with scheduling_strategy) are checked on the merged
options by `merge_options`.
"""

from __future__ import annotations

import difflib
import math
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from redray.runtime_env import spec as runtime_env_spec
from redray.util.scheduling_strategies import (
    STRING_STRATEGIES,
    NodeAffinitySchedulingStrategy,
    NodeLabelSchedulingStrategy,
    PlacementGroupSchedulingStrategy,
)

_NoneType = type(None)

#: Resource quantities are fixed point with this many units per 1 (precision 0.0001).
RESOURCE_UNIT_SCALING = 10_000
#: Tasks need this much of "accelerator_type:<type>" when `accelerator_type` is given.
ACCELERATOR_TYPE_DEMAND = 0.001
ACCELERATOR_TYPE_PREFIX = "accelerator_type:"
#: Concurrency of an actor that has async methods when `max_concurrency` is not given.
DEFAULT_MAX_CONCURRENCY_ASYNC = 1000

# Resource names set through their own options, and names reserved for placement groups.
_RESOURCES_WITH_OPTIONS = {
    "CPU": "num_cpus",
    "GPU": "num_gpus",
    "memory": "memory",
    "object_store_memory": "object_store_memory",
}
_RESERVED_RESOURCES = ("bundle",)

# Options fixed when the function or class is defined, which `.options()` cannot set.
_DEFINITION_ONLY = ("max_calls", "concurrency_groups")


@dataclass(frozen=True)
class _Option:
    #: Accepted types; None accepts any type (the check then does the type checking).
    types: tuple[type, ...] | None
    #: Raises TypeError or ValueError for a bad value; receives the option name and value.
    check: Callable[[str, Any], None] | None = None
    default: Any = None

    def validate(self, name: str, value: Any) -> None:
        if self.types is not None and not isinstance(value, self.types):
            allowed = ", ".join("None" if t is _NoneType else t.__name__ for t in self.types)
            raise TypeError(
                f"The option {name!r} must be of type {allowed}; got {value!r} of type "
                f"{type(value).__name__}."
            )
        if self.check is not None:
            self.check(name, value)


# ---------------------------------------------------------------------------------------------
# Value checks


def _check_count(infinite: bool) -> Callable[[str, Any], None]:
    """A check for an int option that is None, >= 0, or also -1 (infinity) if `infinite`."""
    lowest = -1 if infinite else 0
    accepted = "None, 0, -1 (infinity) or a positive integer" if infinite else "None or >= 0"

    def check(name: str, value: int | None) -> None:
        if value is not None and value < lowest:
            raise ValueError(f"The option {name!r} accepts {accepted}; got {value}.")

    return check


def _check_resource_quantity(name: str, quantity: Any) -> None:
    if not isinstance(quantity, (int, float)):
        raise TypeError(
            f"The quantity of resource {name!r} must be a number; got {quantity!r} of type "
            f"{type(quantity).__name__}."
        )
    if not math.isfinite(quantity):
        raise ValueError(f"The quantity of resource {name!r} must be finite; got {quantity}.")
    if quantity < 0:
        raise ValueError(f"The quantity of resource {name!r} cannot be negative; got {quantity}.")
    if isinstance(quantity, float) and quantity != 0 and int(quantity * RESOURCE_UNIT_SCALING) == 0:
        raise ValueError(
            f"The quantity of resource {name!r} cannot be more precise than "
            f"{1 / RESOURCE_UNIT_SCALING}; got {quantity}."
        )


def _check_quantity(name: str, value: float | None) -> None:
    if value is not None:
        _check_resource_quantity(name, value)


def _check_resources(name: str, resources: dict[str, float] | None) -> None:
    for resource, quantity in (resources or {}).items():
        if not isinstance(resource, str):
            raise TypeError(
                f"Resource names in {name!r} must be str; got {resource!r} of type "
                f"{type(resource).__name__}."
            )
        if resource in _RESOURCES_WITH_OPTIONS:
            option = _RESOURCES_WITH_OPTIONS[resource]
            raise ValueError(
                f"Use the {option!r} option instead of the key {resource!r} in {name!r}, e.g. "
                f"@remote({option}=...)."
            )
        if resource in _RESERVED_RESOURCES:
            raise ValueError(f"The resource name {resource!r} is reserved for placement groups.")
        _check_resource_quantity(resource, quantity)


def _check_num_returns(name: str, value: int | str | None) -> None:
    if isinstance(value, str) and value not in ("streaming", "dynamic"):
        raise ValueError(
            f"The option {name!r} accepts None, a non-negative integer, 'streaming' (for "
            f"generators) or 'dynamic' (deprecated, use 'streaming'); got {value!r}."
        )
    if isinstance(value, int) and value < 0:
        raise ValueError(f"The option {name!r} must be >= 0; got {value}.")


def _check_retry_exceptions(name: str, value: bool | list[Any] | tuple[Any, ...]) -> None:
    if isinstance(value, bool):
        return
    for item in value:
        if not (isinstance(item, type) and issubclass(item, Exception)):
            raise ValueError(
                f"The option {name!r} must be a bool or a list of exception classes; got the "
                f"item {item!r}."
            )


def _check_scheduling_strategy(name: str, value: Any) -> None:
    if isinstance(value, str) and value not in STRING_STRATEGIES:
        raise ValueError(
            f"Invalid {name} {value!r}: the accepted strings are {list(STRING_STRATEGIES)}; "
            "for placement groups or node affinity pass a strategy object from "
            "redray.util.scheduling_strategies."
        )


def _check_placement_group(name: str, value: Any) -> None:
    """The deprecated `placement_group` option: "default", None, or a placement group."""
    if isinstance(value, str):
        if value != "default":
            raise ValueError(
                f"The option {name!r} accepts 'default', None or a placement group; got {value!r}."
            )
    elif value is not None and not hasattr(value, "id"):
        raise TypeError(
            f"The option {name!r} must be a placement group, 'default' or None; got "
            f"{type(value).__name__}."
        )


def _check_bundle_index(name: str, value: int) -> None:
    if value < -1:
        raise ValueError(f"The option {name!r} must be -1 (any bundle) or >= 0; got {value}.")


def _check_positive_or_none(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"The option {name!r} must be None or >= 1; got {value}.")


def _check_backpressure(name: str, value: int | None) -> None:
    if value == 0:
        raise ValueError(
            f"{name}=0 is not allowed: use a value > 0 to bound the unconsumed objects of a "
            "generator, or -1 to disable the bound."
        )


def _check_actor_backpressure(name: str, value: int | None) -> None:
    if value is not None and value != -1 and value <= 0:
        raise ValueError(f"The option {name!r} must be > 0, or -1 to disable it; got {value}.")


def _check_object_store_memory_for_task(name: str, value: int | None) -> None:
    if value is not None:
        raise ValueError(f"Setting {name!r} is not implemented for tasks.")


def _check_lifetime(name: str, value: str | None) -> None:
    if value not in (None, "detached", "non_detached"):
        raise ValueError(
            f"The actor {name!r} option must be one of 'detached', 'non_detached' and None; "
            f"got {value!r}."
        )


def _check_non_empty(name: str, value: str | None) -> None:
    if value == "":
        raise ValueError(f"The actor {name} cannot be an empty string; pass None for none.")


def _check_concurrency_groups(name: str, value: list[Any] | dict[str, int] | None) -> None:
    if not isinstance(value, dict):
        return
    for group, limit in value.items():
        if not isinstance(group, str):
            raise TypeError(f"The group names in {name!r} must be str; got {group!r}.")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(
                f"The max concurrency of group {group!r} in {name!r} must be an int >= 1; got "
                f"{limit!r}."
            )


# Label syntax as in Kubernetes: names are up to 63 characters [A-Za-z0-9_.-], beginning and
# ending alphanumeric; keys may have a DNS-subdomain prefix ("example.com/name"); a selector
# value is a value, "!value", "in(v1, v2)" or "!in(v1, v2)".
_LABEL_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?"
_LABEL_NAME_RE = re.compile(_LABEL_NAME)
_LABEL_PREFIX_RE = re.compile(rf"{_LABEL_NAME}(?:\.{_LABEL_NAME})*")
_LABEL_SELECTOR_RE = re.compile(rf"!?(?:in)?\({_LABEL_NAME}(?:, ?{_LABEL_NAME})*\)|!?{_LABEL_NAME}")


def _check_label_selector(name: str, selector: dict[str, str | None] | None) -> None:
    for key, value in (selector or {}).items():
        if not isinstance(key, str):
            raise TypeError(f"Label keys in {name!r} must be str; got {key!r}.")
        prefix, _, label = key.rpartition("/")
        if "/" in key and (len(prefix) > 253 or not _LABEL_PREFIX_RE.fullmatch(prefix)):
            raise ValueError(
                f"Invalid label key prefix {prefix!r} in {name!r}: it must be DNS labels "
                "separated by dots, at most 253 characters in total."
            )
        if not _LABEL_NAME_RE.fullmatch(label):
            raise ValueError(
                f"Invalid label key {label!r} in {name!r}: it must be at most 63 characters of "
                "letters, digits, '-', '_' and '.', beginning and ending with a letter or digit."
            )
        if value is None or value == "":
            continue
        if not isinstance(value, str):
            raise TypeError(f"Label values in {name!r} must be str; got {value!r}.")
        if not _LABEL_SELECTOR_RE.fullmatch(value):
            raise ValueError(
                f"Invalid label selector {value!r} for key {key!r} in {name!r}: use a value, "
                "'!value', 'in(v1, v2)' or '!in(v1, v2)', where each value is at most 63 "
                "characters of letters, digits, '-', '_' and '.'."
            )


def _check_fallback_strategy(name: str, strategies: list[dict[str, Any]] | None) -> None:
    for strategy in strategies or []:
        if not isinstance(strategy, dict) or not strategy:
            raise ValueError(f"Each element of {name!r} must be a non-empty dict.")
        for option in strategy:
            if option != "label_selector":
                raise ValueError(
                    f"Unsupported option {option!r} in {name!r}: only 'label_selector' is "
                    "supported."
                )
        selector = strategy["label_selector"]
        if selector and not isinstance(selector, dict):
            raise ValueError(f"The 'label_selector' of each element of {name!r} must be a dict.")
        _check_label_selector("label_selector", selector)


# ---------------------------------------------------------------------------------------------
# Option tables


def _count(infinite: bool, default: Any = None) -> _Option:
    return _Option((int, _NoneType), _check_count(infinite), default)


def _quantity(default: Any = None) -> _Option:
    return _Option((int, float, _NoneType), _check_quantity, default)


_COMMON_OPTIONS: dict[str, _Option] = {
    "label_selector": _Option((dict, _NoneType), _check_label_selector),
    "fallback_strategy": _Option((list, _NoneType), _check_fallback_strategy),
    "accelerator_type": _Option((str, _NoneType)),
    "memory": _quantity(),
    "name": _Option((str, _NoneType)),
    "num_cpus": _quantity(),
    "num_gpus": _quantity(),
    "object_store_memory": _count(infinite=False),
    # Deprecated in favour of scheduling_strategy=PlacementGroupSchedulingStrategy(...).
    "placement_group": _Option(None, _check_placement_group, "default"),
    "placement_group_bundle_index": _Option((int,), _check_bundle_index, -1),
    "placement_group_capture_child_tasks": _Option((bool, _NoneType)),
    "resources": _Option((dict, _NoneType), _check_resources),
    "runtime_env": _Option((dict, _NoneType), runtime_env_spec.check),
    "scheduling_strategy": _Option(
        (
            _NoneType,
            str,
            PlacementGroupSchedulingStrategy,
            NodeAffinitySchedulingStrategy,
            NodeLabelSchedulingStrategy,
        ),
        _check_scheduling_strategy,
    ),
    "enable_task_events": _Option((bool,), None, True),
    "_labels": _Option((dict, _NoneType)),
}

_TASK_ONLY_OPTIONS: dict[str, _Option] = {
    "max_calls": _count(infinite=False, default=0),
    "max_retries": _count(infinite=True, default=3),
    "num_cpus": _quantity(default=1),
    "num_gpus": _quantity(default=0),
    "num_returns": _Option((int, str, _NoneType), _check_num_returns),
    "object_store_memory": _Option((int, _NoneType), _check_object_store_memory_for_task),
    "retry_exceptions": _Option((bool, list, tuple), _check_retry_exceptions, False),
    "_generator_backpressure_num_objects": _Option((int, _NoneType), _check_backpressure),
    "_num_objects_per_yield": _Option((int, _NoneType), _check_positive_or_none, 1),
}

_ACTOR_ONLY_OPTIONS: dict[str, _Option] = {
    "concurrency_groups": _Option((list, dict, _NoneType), _check_concurrency_groups),
    "enable_tensor_transport": _Option((bool, _NoneType)),
    "lifetime": _Option((str, _NoneType), _check_lifetime),
    "max_concurrency": _Option((int, _NoneType), _check_positive_or_none),
    "max_restarts": _count(infinite=True, default=0),
    "max_task_retries": _count(infinite=True, default=0),
    "max_pending_calls": _count(infinite=True, default=-1),
    "name": _Option((str, _NoneType), _check_non_empty),
    "namespace": _Option((str, _NoneType), _check_non_empty),
    "get_if_exists": _Option((bool,), None, False),
    "allow_out_of_order_execution": _Option((bool, _NoneType)),
    "_actor_generator_backpressure_num_objects": _Option(
        (int, _NoneType), _check_actor_backpressure
    ),
}

_TASK_OPTIONS = {**_COMMON_OPTIONS, **_TASK_ONLY_OPTIONS}
_ACTOR_OPTIONS = {**_COMMON_OPTIONS, **_ACTOR_ONLY_OPTIONS}

#: The option names accepted for remote functions and for actor classes.
TASK_OPTION_NAMES: frozenset[str] = frozenset(_TASK_OPTIONS)
ACTOR_OPTION_NAMES: frozenset[str] = frozenset(_ACTOR_OPTIONS)

#: Legacy option names and their current names.
_ALIASES = {"num_return_vals": "num_returns"}


# ---------------------------------------------------------------------------------------------
# Validation


def validate_task_options(
    options: Mapping[str, Any], *, in_options: bool, is_generator: bool | None = None
) -> dict[str, Any]:
    """Check the options of a remote function and return them normalized, in a new dict.

    `in_options` is True for `.options()`, which cannot set `max_calls`. When `is_generator`
    is given, `num_returns="streaming"` or `"dynamic"` is refused for a non-generator function.
    Normalizing maps `num_return_vals` to `num_returns` and makes a `retry_exceptions` list a
    tuple. Raises TypeError for a value of the wrong type and ValueError otherwise.
    """
    normalized = _with_current_names(options)
    _check_all(normalized, _TASK_OPTIONS, _ACTOR_OPTIONS, "remote functions", "actors")
    if in_options:
        _refuse_in_options(normalized, "max_calls")
    _check_placement_group_forms(normalized)
    _warn_if_deprecated_placement_group(normalized)
    num_returns = normalized.get("num_returns")
    if num_returns == "dynamic":
        warnings.warn(
            "num_returns='dynamic' is deprecated; use num_returns='streaming' instead.",
            DeprecationWarning,
            stacklevel=2,
        )
    if is_generator is False and num_returns in ("streaming", "dynamic"):
        raise ValueError(
            f"num_returns={num_returns!r} can only be used with generator functions (functions "
            "that use 'yield'), and this function is not one."
        )
    if isinstance(normalized.get("retry_exceptions"), list):
        normalized["retry_exceptions"] = tuple(normalized["retry_exceptions"])
    return normalized


def validate_actor_options(options: Mapping[str, Any], *, in_options: bool) -> dict[str, Any]:
    """Check the options of an actor class and return them, in a new dict.

    `in_options` is True for `.options()`, which cannot set `concurrency_groups`; the name that
    `get_if_exists` needs may then come from the decorator, so `merge_options` checks it. Raises
    TypeError for a value of the wrong type and ValueError otherwise.
    """
    normalized = _with_current_names(options)
    _check_all(normalized, _ACTOR_OPTIONS, _TASK_OPTIONS, "actors", "remote functions")
    if in_options:
        _refuse_in_options(normalized, "concurrency_groups")
    else:
        _check_get_if_exists(normalized)
    if "object_store_memory" in normalized:
        warnings.warn(
            "Setting 'object_store_memory' for actors is deprecated: it does not reserve "
            "object store memory, and redray ignores it.",
            DeprecationWarning,
            stacklevel=2,
        )
    _check_placement_group_forms(normalized)
    _warn_if_deprecated_placement_group(normalized)
    return normalized


def _with_current_names(options: Mapping[str, Any]) -> dict[str, Any]:
    normalized = dict(options)
    for legacy, current in _ALIASES.items():
        if legacy not in normalized:
            continue
        if current in normalized:
            raise ValueError(f"Pass only {current!r}; {legacy!r} is its deprecated old name.")
        warnings.warn(
            f"The option {legacy!r} is deprecated; use {current!r} instead.",
            DeprecationWarning,
            stacklevel=3,
        )
        normalized[current] = normalized.pop(legacy)
    return normalized


def _check_all(
    options: dict[str, Any],
    table: dict[str, _Option],
    other_table: dict[str, _Option],
    kind: str,
    other_kind: str,
) -> None:
    for name, value in options.items():
        option = table.get(name)
        if option is None:
            raise ValueError(_unknown_option_message(name, table, other_table, kind, other_kind))
        option.validate(name, value)


def _unknown_option_message(
    name: str,
    table: dict[str, _Option],
    other_table: dict[str, _Option],
    kind: str,
    other_kind: str,
) -> str:
    if name in other_table:
        where = "on a class" if other_kind == "actors" else "on a function"
        return (
            f"The option {name!r} is only valid for {other_kind} (@remote {where}), not for {kind}."
        )
    message = f"Invalid option {name!r} for {kind}."
    if not isinstance(name, str):
        return f"{message} Option names are str."
    close = difflib.get_close_matches(name, table, n=1)
    if close:
        message += f" Did you mean {close[0]!r}?"
    return f"{message} Valid options are {sorted(table)}."


def _refuse_in_options(options: Mapping[str, Any], name: str) -> None:
    if name in options:
        raise ValueError(
            f"Setting {name!r} is not supported in '.options()': it is fixed when the function "
            f"or class is defined. Pass it to @remote({name}=...) instead."
        )


def _check_get_if_exists(options: Mapping[str, Any]) -> None:
    if options.get("get_if_exists") and not options.get("name"):
        raise ValueError(
            "get_if_exists=True needs the actor name: pass name=... too, e.g. "
            ".options(name='counter', get_if_exists=True)."
        )


def _check_placement_group_forms(options: Mapping[str, Any]) -> None:
    """Refuse mixing the deprecated placement_group option with scheduling_strategy."""
    placement_group = options.get("placement_group", "default")
    if placement_group not in ("default", None) and options.get("scheduling_strategy") is not None:
        raise ValueError(
            "Specify the placement group through the scheduling_strategy option only: "
            "scheduling_strategy=PlacementGroupSchedulingStrategy(pg, ...). The "
            "placement_group option is deprecated."
        )


def _warn_if_deprecated_placement_group(options: Mapping[str, Any]) -> None:
    deprecated = (
        options.get("placement_group", "default") != "default"
        or options.get("placement_group_bundle_index", -1) != -1
        or options.get("placement_group_capture_child_tasks")
    )
    if deprecated:
        warnings.warn(
            "The placement_group, placement_group_bundle_index and "
            "placement_group_capture_child_tasks options are deprecated; use "
            "scheduling_strategy=PlacementGroupSchedulingStrategy(...) instead.",
            DeprecationWarning,
            stacklevel=3,
        )


# ---------------------------------------------------------------------------------------------
# Merging and defaults


def merge_options(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The options of `.options(**overrides)` on something defined with `@remote(**base)`.

    Both should already be validated (the overrides with `in_options=True`). Overrides win,
    including explicit Nones: `resources=None` drops the custom resources and `num_cpus=None`
    goes back to the default. Raises ValueError if the overrides set a definition-time option
    (`max_calls`, `concurrency_groups`, a different `_num_objects_per_yield`) or if the merged
    options break a rule between options.
    """
    overrides = _with_current_names(overrides)
    for name in _DEFINITION_ONLY:
        _refuse_in_options(overrides, name)
    if "_num_objects_per_yield" in overrides and overrides["_num_objects_per_yield"] != (
        base.get("_num_objects_per_yield") or 1
    ):
        raise ValueError(
            "_num_objects_per_yield cannot be overridden per call; pass it to "
            "@remote(_num_objects_per_yield=...) instead."
        )
    merged = {**base, **overrides}
    _check_get_if_exists(merged)
    _check_placement_group_forms(merged)
    return merged


def task_defaults() -> dict[str, Any]:
    """The value of every remote function option when it is not given (a new dict).

    num_returns is 1 (but "streaming" for generators) and max_calls is 0, meaning no limit
    (but 1 when the function uses GPUs): `resolve_task_options` applies these rules.
    """
    defaults = {name: option.default for name, option in _TASK_OPTIONS.items()}
    defaults["num_returns"] = 1
    return defaults


def actor_defaults() -> dict[str, Any]:
    """The value of every actor option when it is not given (a new dict).

    max_concurrency and allow_out_of_order_execution are None here: they depend on whether the
    class has async methods, see `resolve_actor_options`.
    """
    return {name: option.default for name, option in _ACTOR_OPTIONS.items()}


def resolve_task_options(
    options: Mapping[str, Any], *, is_generator: bool = False
) -> dict[str, Any]:
    """Every task option, from validated `options` and the defaults; None means the default."""
    given = {k: v for k, v in options.items() if v is not None}
    resolved = {**task_defaults(), **given}
    if "num_returns" not in given:
        resolved["num_returns"] = "streaming" if is_generator else 1
    # A GPU task's worker exits after each call by default, so GPU memory is always released.
    if "max_calls" not in given and resolved["num_gpus"] > 0:
        resolved["max_calls"] = 1
    return resolved


def resolve_actor_options(
    options: Mapping[str, Any], *, is_asyncio: bool = False
) -> dict[str, Any]:
    """Every actor option, from validated `options` and the defaults; None means the default.

    `is_asyncio` says whether the class has async methods. Raises ValueError, as Ray does, when
    an async or multi-threaded actor is asked to run its calls in order.
    """
    given = {k: v for k, v in options.items() if v is not None}
    resolved = {**actor_defaults(), **given}
    if resolved["max_concurrency"] is None:
        resolved["max_concurrency"] = DEFAULT_MAX_CONCURRENCY_ASYNC if is_asyncio else 1
    if resolved["allow_out_of_order_execution"] is None:
        resolved["allow_out_of_order_execution"] = is_asyncio or resolved["max_concurrency"] > 1
    if not resolved["allow_out_of_order_execution"]:
        if is_asyncio:
            raise ValueError(
                "Async actors cannot execute their calls in order; set "
                "allow_out_of_order_execution=True (the default for async actors)."
            )
        if resolved["max_concurrency"] > 1:
            raise ValueError(
                "Multi-threaded actors (max_concurrency > 1) cannot execute their calls in "
                "order; set allow_out_of_order_execution=True or max_concurrency=1."
            )
    return resolved


# ---------------------------------------------------------------------------------------------
# Resource demands


def task_resource_demand(options: Mapping[str, Any]) -> dict[str, float]:
    """The resources a task holds while it runs; zero quantities are left out.

    CPU defaults to 1. `accelerator_type="X"` adds the implicit resource "accelerator_type:X",
    which nodes with that accelerator advertise.
    """
    demand = _explicit_demand(options)
    if options.get("num_cpus") is None:
        demand["CPU"] = 1
    return _without_zeros(demand)


def actor_resource_demand(
    options: Mapping[str, Any],
) -> tuple[dict[str, float], dict[str, float]]:
    """(needed to place the actor, held while it lives); zero quantities are left out.

    As in Ray: if no resource is given except `memory`, the actor needs 1 CPU to be placed but
    holds only its memory (0 CPU) while it lives. Once any of num_cpus, num_gpus, resources
    (even `{"x": 0}`) or accelerator_type is given, the actor holds what it needs, and CPU
    defaults to 1: `num_gpus=1` alone holds {"CPU": 1, "GPU": 1}; `num_cpus=0` holds nothing.
    """
    demand = _explicit_demand(options)
    if set(demand) <= {"memory"}:
        return _without_zeros({**demand, "CPU": 1}), _without_zeros(demand)
    demand.setdefault("CPU", 1)
    return _without_zeros(demand), _without_zeros(demand)


def _explicit_demand(options: Mapping[str, Any]) -> dict[str, float]:
    """The resources named by the options; `object_store_memory` is not a resource here."""
    demand = dict(options.get("resources") or {})
    if options.get("num_cpus") is not None:
        demand["CPU"] = options["num_cpus"]
    if options.get("num_gpus") is not None:
        demand["GPU"] = options["num_gpus"]
    if options.get("memory") is not None:
        demand["memory"] = int(options["memory"])
    if options.get("accelerator_type") is not None:
        demand[f"{ACCELERATOR_TYPE_PREFIX}{options['accelerator_type']}"] = ACCELERATOR_TYPE_DEMAND
    return demand


def _without_zeros(demand: dict[str, float]) -> dict[str, float]:
    return {name: quantity for name, quantity in demand.items() if quantity}
