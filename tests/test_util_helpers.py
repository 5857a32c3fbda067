"""ray.util.as_completed and ray.util.map_unordered (from their documentation in Ray 2.x).

Runs against redray, or against Ray 2.x with REDRAY_TEST_AGAINST=ray.
"""

from __future__ import annotations

import pytest
from target_ray import ray, wait_for_path

pytestmark = pytest.mark.timeout(120)


@ray.remote
def after_gate(item: tuple[str, int]) -> int:
    gate, value = item
    if gate and not wait_for_path(gate):
        raise TimeoutError(f"the test never opened the gate {gate}")
    return value


@ray.remote
def double(x: int) -> int:
    return 2 * x


def test_as_completed_yields_ready_results_first(ray_start, workdir) -> None:
    gate = str(workdir / "slow")
    refs = [after_gate.remote((gate, 1)), after_gate.remote(("", 2))]
    results = ray.util.as_completed(refs, chunk_size=1)
    assert next(results) == 2
    open(gate, "w").close()
    assert next(results) == 1
    with pytest.raises(StopIteration):
        next(results)


def test_as_completed_can_yield_refs(ray_start) -> None:
    refs = [double.remote(i) for i in range(5)]
    yielded = list(ray.util.as_completed(refs, chunk_size=2, yield_obj_refs=True))
    assert sorted(ray.get(yielded)) == [0, 2, 4, 6, 8]
    assert set(yielded) == set(refs)


def test_map_unordered_returns_every_result(ray_start) -> None:
    assert sorted(ray.util.map_unordered(double, range(25), backpressure_size=4)) == [
        2 * i for i in range(25)
    ]
    assert sorted(ray.util.map_unordered(double, range(5), backpressure_size=None)) == [
        0, 2, 4, 6, 8,
    ]  # fmt: skip


def test_bad_arguments_are_refused(ray_start) -> None:
    with pytest.raises(ValueError):
        list(ray.util.as_completed([double.remote(1)], chunk_size=0))
    with pytest.raises(ValueError):
        list(ray.util.as_completed([double.remote(1)], num_returns=1))
    with pytest.raises(ValueError):
        list(ray.util.map_unordered(double, [1], backpressure_size=0))
