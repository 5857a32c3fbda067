"""Option validation, merging, defaults and resource demands (no cluster needed)."""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from redray.options import (
    ACTOR_OPTION_NAMES,
    TASK_OPTION_NAMES,
    actor_defaults,
    actor_resource_demand,
    merge_options,
    resolve_actor_options,
    resolve_task_options,
    task_defaults,
    task_resource_demand,
    validate_actor_options,
    validate_task_options,
)
from redray.util.scheduling_strategies import (
    Exists,
    In,
    NodeAffinitySchedulingStrategy,
    NodeLabelSchedulingStrategy,
    PlacementGroupSchedulingStrategy,
)


class _FakePlacementGroup:
    id = "pg-1"


@pytest.fixture(autouse=True)
def _quiet_deprecations() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        yield


# Bad options that Ray's validators also refuse, with the exception type both raise.
BAD_TASK_OPTIONS: list[tuple[dict[str, Any], type[Exception]]] = [
    ({"num_cpus": -1}, ValueError),
    ({"num_cpus": "1"}, TypeError),
    ({"num_gpus": -0.5}, ValueError),
    ({"num_cpus": 0.00001}, ValueError),
    ({"memory": -1}, ValueError),
    ({"resources": {"CPU": 1}}, ValueError),
    ({"resources": {"GPU": 1}}, ValueError),
    ({"resources": [("a", 1)]}, TypeError),
    ({"resources": {"a": -1}}, ValueError),
    ({"resources": {"a": None}}, TypeError),
    ({"num_returns": -1}, ValueError),
    ({"num_returns": 1.5}, TypeError),
    ({"max_retries": -2}, ValueError),
    ({"max_retries": 1.5}, TypeError),
    ({"max_calls": -1}, ValueError),
    ({"retry_exceptions": "yes"}, TypeError),
    ({"retry_exceptions": [ValueError, 3]}, ValueError),
    ({"retry_exceptions": [int]}, ValueError),
    ({"scheduling_strategy": 3}, TypeError),
    ({"name": 3}, TypeError),
    ({"accelerator_type": 1}, TypeError),
    ({"runtime_env": "env"}, TypeError),
    ({"object_store_memory": 1}, ValueError),
    ({"placement_group_bundle_index": "0"}, TypeError),
    ({"placement_group_capture_child_tasks": "yes"}, TypeError),
    ({"enable_task_events": None}, TypeError),
    ({"label_selector": {"-bad": "x"}}, ValueError),
    ({"label_selector": {"zone": "a b"}}, ValueError),
    ({"label_selector": "zone=a"}, TypeError),
    ({"fallback_strategy": [{}]}, ValueError),
    ({"fallback_strategy": [{"num_cpus": 1}]}, ValueError),
    ({"_generator_backpressure_num_objects": 0}, ValueError),
    ({"_num_objects_per_yield": 0}, ValueError),
    ({"_labels": []}, TypeError),
    ({"max_restarts": 1}, ValueError),
    ({"lifetime": "detached"}, ValueError),
    ({"concurrency_groups": {"io": 1}}, ValueError),
    ({"num_cpu": 1}, ValueError),
]

BAD_ACTOR_OPTIONS: list[tuple[dict[str, Any], type[Exception]]] = [
    ({"num_cpus": -1}, ValueError),
    ({"resources": {"GPU": 1}}, ValueError),
    ({"max_restarts": -2}, ValueError),
    ({"max_task_retries": "1"}, TypeError),
    ({"max_pending_calls": -2}, ValueError),
    ({"lifetime": "forever"}, ValueError),
    ({"lifetime": 1}, TypeError),
    ({"namespace": 1}, TypeError),
    ({"get_if_exists": True}, ValueError),
    ({"get_if_exists": None}, TypeError),
    ({"concurrency_groups": "io"}, TypeError),
    ({"max_concurrency": -1}, ValueError),
    ({"max_concurrency": 1.0}, TypeError),
    ({"name": 1}, TypeError),
    ({"allow_out_of_order_execution": "y"}, TypeError),
    ({"_actor_generator_backpressure_num_objects": 0}, ValueError),
    ({"enable_tensor_transport": 1}, TypeError),
    ({"max_retries": 1}, ValueError),
    ({"num_returns": 1}, ValueError),
    ({"max_calls": 1}, ValueError),
    ({"retry_exceptions": True}, ValueError),
    ({"foo": 1}, ValueError),
]

GOOD_TASK_OPTIONS: list[dict[str, Any]] = [
    {},
    {"num_cpus": 0.5, "num_gpus": 1, "memory": 10**9, "resources": {"custom": 2}},
    {"num_cpus": 0},
    {"num_returns": 2},
    {"num_returns": "streaming"},
    {"num_returns": None},
    {"max_retries": -1, "retry_exceptions": [ValueError, KeyError]},
    {"retry_exceptions": (OSError,)},
    {"scheduling_strategy": "SPREAD"},
    {"scheduling_strategy": "DEFAULT"},
    {"scheduling_strategy": None, "name": "step"},
    {"accelerator_type": "A100", "max_calls": 2},
    {"label_selector": {"region": "in(us-east, us-west)", "gpu": "!A100"}},
    {"label_selector": {"example.com/tier": "gold"}},
    {"fallback_strategy": [{"label_selector": {"zone": "a"}}]},
    {"enable_task_events": False, "runtime_env": {"env_vars": {"A": "1"}}, "_labels": {"a": "b"}},
    {"_generator_backpressure_num_objects": -1, "_num_objects_per_yield": 2},
]

GOOD_ACTOR_OPTIONS: list[dict[str, Any]] = [
    {},
    {"max_restarts": -1, "max_task_retries": 3, "max_pending_calls": 10},
    {"max_concurrency": 10, "allow_out_of_order_execution": True},
    {"lifetime": "detached", "name": "a", "namespace": "ns", "get_if_exists": True},
    {"lifetime": "non_detached"},
    {"concurrency_groups": {"io": 2, "compute": 4}},
    {"num_cpus": 2, "num_gpus": 0.25, "resources": {"custom": 1}, "memory": 100},
    {"object_store_memory": 100},
    {"enable_tensor_transport": True, "_actor_generator_backpressure_num_objects": -1},
]


def _ray_option_utils() -> Any:
    pytest.importorskip("ray")
    from ray._common import ray_option_utils

    return ray_option_utils


# --- unknown and misplaced options ------------------------------------------------------------


def test_unknown_option_is_named_and_valid_options_are_listed() -> None:
    with pytest.raises(ValueError, match="'colour'") as info:
        validate_task_options({"colour": "red"}, in_options=False)
    assert "num_cpus" in str(info.value)
    assert "max_retries" in str(info.value)


def test_unknown_option_suggests_the_closest_name() -> None:
    with pytest.raises(ValueError, match="Did you mean 'num_cpus'"):
        validate_actor_options({"num_cpu": 1}, in_options=False)


@pytest.mark.parametrize("name", ["max_restarts", "lifetime", "max_concurrency", "namespace"])
def test_actor_only_option_on_a_function_says_it_is_for_actors(name: str) -> None:
    with pytest.raises(ValueError, match=f"'{name}' is only valid for actors"):
        validate_task_options({name: None}, in_options=False)


@pytest.mark.parametrize("name", ["max_retries", "num_returns", "max_calls", "retry_exceptions"])
def test_task_only_option_on_an_actor_says_it_is_for_functions(name: str) -> None:
    with pytest.raises(ValueError, match=f"'{name}' is only valid for remote functions"):
        validate_actor_options({name: None}, in_options=False)


def test_option_names_are_those_of_ray() -> None:
    ray_option_utils = _ray_option_utils()
    assert set(ray_option_utils.task_options) == TASK_OPTION_NAMES
    assert set(ray_option_utils.actor_options) == ACTOR_OPTION_NAMES


# --- values -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("options", "error"), BAD_TASK_OPTIONS)
def test_bad_task_option_raises(options: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        validate_task_options(options, in_options=False)


@pytest.mark.parametrize(("options", "error"), BAD_ACTOR_OPTIONS)
def test_bad_actor_option_raises(options: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        validate_actor_options(options, in_options=False)


@pytest.mark.parametrize(("options", "error"), BAD_TASK_OPTIONS)
def test_bad_task_option_raises_what_ray_raises(
    options: dict[str, Any], error: type[Exception]
) -> None:
    ray_option_utils = _ray_option_utils()
    with pytest.raises(error), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ray_option_utils.validate_task_options(options, in_options=False)


@pytest.mark.parametrize(("options", "error"), BAD_ACTOR_OPTIONS)
def test_bad_actor_option_raises_what_ray_raises(
    options: dict[str, Any], error: type[Exception]
) -> None:
    ray_option_utils = _ray_option_utils()
    with pytest.raises(error), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ray_option_utils.validate_actor_options(options, in_options=False)


@pytest.mark.parametrize("options", GOOD_TASK_OPTIONS)
def test_good_task_options_are_accepted_by_us_and_ray(options: dict[str, Any]) -> None:
    assert validate_task_options(options, in_options=False).keys() == options.keys()
    ray_option_utils = _ray_option_utils()
    ray_option_utils.validate_task_options(options, in_options=False)


@pytest.mark.parametrize("options", GOOD_ACTOR_OPTIONS)
def test_good_actor_options_are_accepted_by_us_and_ray(options: dict[str, Any]) -> None:
    assert validate_actor_options(options, in_options=False) == options
    ray_option_utils = _ray_option_utils()
    ray_option_utils.validate_actor_options(options, in_options=False)


@pytest.mark.parametrize("key", ["CPU", "GPU", "memory", "object_store_memory"])
def test_resources_with_a_builtin_key_point_to_the_option(key: str) -> None:
    with pytest.raises(ValueError, match="Use the '(num_cpus|num_gpus|memory|object_store_memory)"):
        validate_task_options({"resources": {key: 1}}, in_options=False)


def test_resources_must_not_use_the_reserved_bundle_name() -> None:
    with pytest.raises(ValueError, match="reserved"):
        validate_actor_options({"resources": {"bundle": 1}}, in_options=False)


def test_non_finite_resource_quantity_is_refused() -> None:
    with pytest.raises(ValueError, match="finite"):
        validate_task_options({"num_gpus": float("nan")}, in_options=False)


@pytest.mark.parametrize("value", ["x", "STREAMING"])
def test_num_returns_string_must_be_streaming_or_dynamic(value: str) -> None:
    with pytest.raises(ValueError, match="'streaming'"):
        validate_task_options({"num_returns": value}, in_options=False)


def test_streaming_num_returns_needs_a_generator_function() -> None:
    with pytest.raises(ValueError, match="generator"):
        validate_task_options({"num_returns": "streaming"}, in_options=False, is_generator=False)
    validate_task_options({"num_returns": "streaming"}, in_options=False, is_generator=True)


def test_dynamic_num_returns_warns_that_it_is_deprecated() -> None:
    with pytest.warns(DeprecationWarning, match="streaming"):
        validate_task_options({"num_returns": "dynamic"}, in_options=False)


def test_actor_name_must_not_be_empty() -> None:
    with pytest.raises(ValueError, match="empty"):
        validate_actor_options({"name": ""}, in_options=False)
    assert validate_actor_options({"name": None}, in_options=False) == {"name": None}


def test_actor_namespace_must_not_be_empty() -> None:
    with pytest.raises(ValueError, match="namespace"):
        validate_actor_options({"namespace": ""}, in_options=False)


def test_max_concurrency_must_be_at_least_one() -> None:
    with pytest.raises(ValueError, match="max_concurrency"):
        validate_actor_options({"max_concurrency": 0}, in_options=False)


@pytest.mark.parametrize("groups", [{"io": 0}, {"io": "2"}])
def test_concurrency_group_limits_must_be_positive_ints(groups: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="'io'"):
        validate_actor_options({"concurrency_groups": groups}, in_options=False)


def test_lifetime_error_lists_the_accepted_values() -> None:
    with pytest.raises(ValueError, match="'detached', 'non_detached' and None"):
        validate_actor_options({"lifetime": "forever"}, in_options=False)


# --- scheduling strategies --------------------------------------------------------------------


@pytest.mark.parametrize(
    "strategy",
    [
        None,
        "DEFAULT",
        "SPREAD",
        PlacementGroupSchedulingStrategy(_FakePlacementGroup(), 0),
        NodeAffinitySchedulingStrategy("ab" * 14, soft=True),
        NodeLabelSchedulingStrategy({"region": In("us")}, soft={"gpu": Exists()}),
    ],
)
def test_scheduling_strategy_accepts_strings_none_and_strategy_objects(strategy: Any) -> None:
    for validate in (validate_task_options, validate_actor_options):
        options = validate({"scheduling_strategy": strategy}, in_options=False)
        assert options["scheduling_strategy"] is strategy


def test_unknown_scheduling_strategy_string_is_refused() -> None:
    with pytest.raises(ValueError, match="'SPREAD'"):
        validate_task_options({"scheduling_strategy": "spread"}, in_options=False)


def test_deprecated_placement_group_option_cannot_be_mixed_with_scheduling_strategy() -> None:
    options = {"placement_group": _FakePlacementGroup(), "scheduling_strategy": "SPREAD"}
    with pytest.raises(ValueError, match="scheduling_strategy"):
        validate_task_options(options, in_options=False)


def test_deprecated_placement_group_options_warn() -> None:
    with pytest.warns(DeprecationWarning, match="PlacementGroupSchedulingStrategy"):
        validate_actor_options(
            {"placement_group": _FakePlacementGroup(), "placement_group_bundle_index": 0},
            in_options=False,
        )


def test_placement_group_option_must_be_a_placement_group() -> None:
    with pytest.raises(TypeError, match="placement group"):
        validate_task_options({"placement_group": 3}, in_options=False)
    with pytest.raises(ValueError, match="'default'"):
        validate_task_options({"placement_group": "mine"}, in_options=False)


# --- normalization ----------------------------------------------------------------------------


def test_num_return_vals_is_mapped_to_num_returns_with_a_warning() -> None:
    with pytest.warns(DeprecationWarning, match="num_returns"):
        options = validate_task_options({"num_return_vals": 2}, in_options=False)
    assert options == {"num_returns": 2}


def test_num_return_vals_together_with_num_returns_is_refused() -> None:
    with pytest.raises(ValueError, match="only 'num_returns'"):
        validate_task_options({"num_return_vals": 2, "num_returns": 2}, in_options=False)


def test_retry_exceptions_list_becomes_a_tuple() -> None:
    options = validate_task_options({"retry_exceptions": [KeyError]}, in_options=False)
    assert options["retry_exceptions"] == (KeyError,)


def test_validation_returns_a_new_dict_and_leaves_the_input_alone() -> None:
    given = {"num_return_vals": 1, "retry_exceptions": [KeyError]}
    options = validate_task_options(given, in_options=False)
    assert options is not given
    assert given == {"num_return_vals": 1, "retry_exceptions": [KeyError]}


# --- .options() -------------------------------------------------------------------------------


def test_max_calls_is_refused_in_options_but_accepted_in_the_decorator() -> None:
    validate_task_options({"max_calls": 1}, in_options=False)
    with pytest.raises(ValueError, match="max_calls"):
        validate_task_options({"max_calls": 1}, in_options=True)


def test_concurrency_groups_are_refused_in_options() -> None:
    with pytest.raises(ValueError, match="concurrency_groups"):
        validate_actor_options({"concurrency_groups": {"io": 1}}, in_options=True)


def test_options_refuse_what_ray_options_refuse() -> None:
    ray_option_utils = _ray_option_utils()
    with pytest.raises(ValueError):
        ray_option_utils.validate_task_options({"max_calls": 1}, in_options=True)
    with pytest.raises(ValueError):
        ray_option_utils.validate_actor_options({"concurrency_groups": {}}, in_options=True)


def test_merge_lets_overrides_win_including_explicit_none() -> None:
    base = {"num_cpus": 2, "resources": {"custom": 1}, "name": "f"}
    merged = merge_options(base, {"resources": None, "num_cpus": 4})
    assert merged == {"num_cpus": 4, "resources": None, "name": "f"}
    assert task_resource_demand(merged) == {"CPU": 4}
    assert base == {"num_cpus": 2, "resources": {"custom": 1}, "name": "f"}


def test_merge_keeps_the_definition_only_options_of_the_decorator() -> None:
    merged = merge_options({"max_calls": 3, "num_cpus": 2}, {"num_gpus": 1})
    assert merged == {"max_calls": 3, "num_cpus": 2, "num_gpus": 1}
    actor = merge_options({"concurrency_groups": {"io": 2}}, {"name": "a"})
    assert actor == {"concurrency_groups": {"io": 2}, "name": "a"}


@pytest.mark.parametrize("name", ["max_calls", "concurrency_groups"])
def test_merge_refuses_overriding_definition_only_options(name: str) -> None:
    with pytest.raises(ValueError, match=f"'{name}' is not supported in '.options\\(\\)'"):
        merge_options({}, {name: 1})


def test_get_if_exists_in_options_may_use_the_name_of_the_decorator() -> None:
    overrides = validate_actor_options({"get_if_exists": True}, in_options=True)
    assert merge_options({"name": "counter"}, overrides)["get_if_exists"] is True
    with pytest.raises(ValueError, match="name"):
        merge_options({}, overrides)


def test_merge_refuses_a_placement_group_mixed_with_a_scheduling_strategy() -> None:
    with pytest.raises(ValueError, match="scheduling_strategy"):
        merge_options({"placement_group": _FakePlacementGroup()}, {"scheduling_strategy": "SPREAD"})


def test_merge_maps_the_legacy_num_return_vals_override() -> None:
    assert merge_options({"num_returns": 1}, {"num_return_vals": 3}) == {"num_returns": 3}


def test_num_objects_per_yield_cannot_change_per_call() -> None:
    with pytest.raises(ValueError, match="_num_objects_per_yield"):
        merge_options({}, {"_num_objects_per_yield": 2})
    assert merge_options({"_num_objects_per_yield": 2}, {"_num_objects_per_yield": 2})


# --- defaults ---------------------------------------------------------------------------------


def test_task_defaults() -> None:
    defaults = task_defaults()
    assert defaults.keys() == TASK_OPTION_NAMES
    expected = {"num_cpus": 1, "num_gpus": 0, "max_retries": 3, "retry_exceptions": False}
    expected |= {"num_returns": 1, "max_calls": 0, "resources": None, "enable_task_events": True}
    assert expected.items() <= defaults.items()


def test_actor_defaults() -> None:
    defaults = actor_defaults()
    assert defaults.keys() == ACTOR_OPTION_NAMES
    expected = {"max_restarts": 0, "max_task_retries": 0, "max_pending_calls": -1}
    expected |= {"get_if_exists": False, "lifetime": None, "max_concurrency": None}
    assert expected.items() <= defaults.items()


def test_resolved_generator_task_streams_its_returns() -> None:
    assert resolve_task_options({}, is_generator=True)["num_returns"] == "streaming"
    assert resolve_task_options({})["num_returns"] == 1
    assert resolve_task_options({"num_returns": 0}, is_generator=True)["num_returns"] == 0


def test_gpu_task_defaults_to_one_call_per_worker() -> None:
    assert resolve_task_options({"num_gpus": 1})["max_calls"] == 1
    assert resolve_task_options({"num_gpus": 1, "max_calls": None})["max_calls"] == 1
    assert resolve_task_options({"num_gpus": 1, "max_calls": 0})["max_calls"] == 0
    assert resolve_task_options({})["max_calls"] == 0


def test_resolved_none_means_the_default() -> None:
    resolved = resolve_task_options({"num_cpus": None, "max_retries": None})
    assert (resolved["num_cpus"], resolved["max_retries"]) == (1, 3)


def test_resolved_actor_concurrency_depends_on_async_methods() -> None:
    assert resolve_actor_options({})["max_concurrency"] == 1
    assert resolve_actor_options({})["allow_out_of_order_execution"] is False
    async_actor = resolve_actor_options({}, is_asyncio=True)
    assert async_actor["max_concurrency"] == 1000
    assert async_actor["allow_out_of_order_execution"] is True
    assert resolve_actor_options({"max_concurrency": 4})["allow_out_of_order_execution"] is True


@pytest.mark.parametrize(
    ("options", "is_asyncio"),
    [
        ({"allow_out_of_order_execution": False}, True),
        ({"allow_out_of_order_execution": False, "max_concurrency": 2}, False),
    ],
)
def test_concurrent_actor_cannot_run_calls_in_order(
    options: dict[str, Any], is_asyncio: bool
) -> None:
    with pytest.raises(ValueError, match="allow_out_of_order_execution=True"):
        resolve_actor_options(options, is_asyncio=is_asyncio)


# --- resource demands -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "demand"),
    [
        ({}, {"CPU": 1}),
        ({"num_cpus": 0}, {}),
        ({"num_cpus": 0.5, "num_gpus": 2}, {"CPU": 0.5, "GPU": 2}),
        ({"memory": 1024.0}, {"CPU": 1, "memory": 1024}),
        ({"resources": {"custom": 3, "unused": 0}}, {"CPU": 1, "custom": 3}),
        ({"accelerator_type": "A100"}, {"CPU": 1, "accelerator_type:A100": 0.001}),
    ],
)
def test_task_resource_demand(options: dict[str, Any], demand: dict[str, float]) -> None:
    assert task_resource_demand(options) == demand


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"num_cpus": 2, "num_gpus": 1, "memory": 512, "resources": {"custom": 1}},
        {"accelerator_type": "T4", "num_gpus": 0.5},
    ],
)
def test_task_resource_demand_matches_ray(options: dict[str, Any]) -> None:
    pytest.importorskip("ray")
    from ray._common.utils import resources_from_ray_options

    ray_demand = resources_from_ray_options({"num_cpus": 1, **options})
    assert task_resource_demand(options) == {k: v for k, v in ray_demand.items() if v}


@pytest.mark.parametrize(
    ("options", "placement", "held"),
    [
        ({}, {"CPU": 1}, {}),
        ({"memory": 100}, {"CPU": 1, "memory": 100}, {"memory": 100}),
        ({"object_store_memory": 100}, {"CPU": 1}, {}),
        ({"num_cpus": 2}, {"CPU": 2}, {"CPU": 2}),
        ({"num_cpus": 0}, {}, {}),
        ({"num_gpus": 1}, {"CPU": 1, "GPU": 1}, {"CPU": 1, "GPU": 1}),
        ({"num_gpus": 0}, {"CPU": 1}, {"CPU": 1}),
        ({"resources": {"custom": 1}}, {"CPU": 1, "custom": 1}, {"CPU": 1, "custom": 1}),
        ({"resources": {}}, {"CPU": 1}, {}),
        ({"accelerator_type": "A100"}, {"CPU": 1, "accelerator_type:A100": 0.001}, None),
    ],
)
def test_actor_resource_demand_follows_rays_default_rule(
    options: dict[str, Any], placement: dict[str, float], held: dict[str, float] | None
) -> None:
    assert actor_resource_demand(options) == (placement, placement if held is None else held)


# --- strategy objects -------------------------------------------------------------------------


def test_strategies_have_rays_attribute_names() -> None:
    pytest.importorskip("ray")
    from ray.util import scheduling_strategies as ray_strategies

    node_id = "ab" * 28  # Ray wants a full-length node id
    pairs = [
        (
            PlacementGroupSchedulingStrategy(_FakePlacementGroup(), 1, True),
            ray_strategies.PlacementGroupSchedulingStrategy(_FakePlacementGroup(), 1, True),
        ),
        (
            NodeAffinitySchedulingStrategy(node_id, soft=False, _fail_on_unavailable=True),
            ray_strategies.NodeAffinitySchedulingStrategy(
                node_id, soft=False, _fail_on_unavailable=True
            ),
        ),
        (
            NodeLabelSchedulingStrategy({"a": In("x")}, soft={"b": Exists()}),
            ray_strategies.NodeLabelSchedulingStrategy(
                {"a": ray_strategies.In("x")}, soft={"b": ray_strategies.Exists()}
            ),
        ),
    ]
    for ours, theirs in pairs:
        assert vars(ours).keys() == vars(theirs).keys()
    assert vars(pairs[2][0].hard[0]).keys() == vars(pairs[2][1].hard[0]).keys()


def test_strategies_survive_pickling() -> None:
    strategy = NodeLabelSchedulingStrategy({"region": In("us", "eu")}, soft={"gpu": Exists()})
    copy = pickle.loads(pickle.dumps(strategy))
    assert (copy.hard[0].key, copy.hard[0].operator.values) == ("region", ["us", "eu"])
    affinity = pickle.loads(pickle.dumps(NodeAffinitySchedulingStrategy("0a1b", soft=True)))
    assert (affinity.node_id, affinity.soft) == ("0a1b", True)


@pytest.mark.parametrize("node_id", ["", "not-hex", 5])
def test_node_affinity_needs_a_hex_node_id(node_id: Any) -> None:
    with pytest.raises(ValueError, match="node id"):
        NodeAffinitySchedulingStrategy(node_id, soft=False)


def test_node_affinity_accepts_node_id_bytes() -> None:
    assert NodeAffinitySchedulingStrategy(b"\x0a\x1b", soft=True).node_id == "0a1b"


def test_node_affinity_private_flags_need_the_matching_softness() -> None:
    with pytest.raises(ValueError, match="soft=True"):
        NodeAffinitySchedulingStrategy("0a1b", soft=False, _spill_on_unavailable=True)
    with pytest.raises(ValueError, match="soft=False"):
        NodeAffinitySchedulingStrategy("0a1b", soft=True, _fail_on_unavailable=True)


def test_label_strategy_needs_a_condition() -> None:
    with pytest.raises(ValueError, match="cannot both be empty"):
        NodeLabelSchedulingStrategy({})
    with pytest.raises(ValueError, match="In"):
        NodeLabelSchedulingStrategy({"region": "us"})
    with pytest.raises(ValueError, match="at least one value"):
        In()


def test_placement_group_strategy_checks_the_bundle_index() -> None:
    with pytest.raises(ValueError, match="-1"):
        PlacementGroupSchedulingStrategy(_FakePlacementGroup(), -2)
    with pytest.raises(TypeError):
        PlacementGroupSchedulingStrategy(_FakePlacementGroup(), "0")  # type: ignore[arg-type]
