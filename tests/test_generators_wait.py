"""wait() on streaming generators, as in Ray 2.x: an ObjectRefGenerator is ready when its
next item is available or its stream has ended.

Tasks are held back by gate files the test creates, so readiness never depends on timing.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from target_ray import ray


def _open_gate(path: Path) -> None:
    path.touch()


@ray.remote
def gated_numbers(gates: list[str]) -> Any:
    """Yields i once gate i exists."""
    for index, gate in enumerate(gates):
        while not Path(gate).exists():
            time.sleep(0.02)
        yield index


@ray.remote
def value_after(gate: str, value: int) -> int:
    while not Path(gate).exists():
        time.sleep(0.02)
    return value


@ray.remote
def fails_after_one() -> Any:
    yield 1
    raise ValueError("second item failed")


@pytest.fixture
def cluster(ray_start: Any) -> Any:
    return ray_start


@pytest.mark.timeout(120)
def test_generator_is_ready_when_its_next_item_is(cluster: Any, tmp_path: Path) -> None:
    gates = [tmp_path / f"gate{i}" for i in range(2)]
    generator = gated_numbers.remote([str(gate) for gate in gates])
    assert isinstance(generator, ray.ObjectRefGenerator)

    ready, not_ready = ray.wait([generator], timeout=0)
    assert (ready, not_ready) == ([], [generator])

    _open_gate(gates[0])
    ready, not_ready = ray.wait([generator], timeout=60)
    assert (ready, not_ready) == ([generator], [])
    assert ray.get(next(generator)) == 0
    # Item 1 is still gated: the generator is not ready again until it comes.
    assert ray.wait([generator], timeout=0) == ([], [generator])

    _open_gate(gates[1])
    assert ray.wait([generator], timeout=60) == ([generator], [])
    assert ray.get(next(generator)) == 1


@pytest.mark.timeout(120)
def test_an_ended_generator_is_ready_and_then_stops(cluster: Any, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    generator = gated_numbers.remote([str(gate)])
    _open_gate(gate)
    assert ray.get(next(generator)) == 0
    assert ray.wait([generator], timeout=60) == ([generator], [])
    with pytest.raises(StopIteration):
        next(generator)
    assert ray.wait([generator], timeout=0) == ([generator], [])


@pytest.mark.timeout(120)
def test_wait_mixes_refs_and_generators(cluster: Any, tmp_path: Path) -> None:
    ref_gate, item_gate = tmp_path / "ref", tmp_path / "item"
    ref = value_after.remote(str(ref_gate), 7)
    generator = gated_numbers.remote([str(item_gate)])

    _open_gate(item_gate)
    ready, not_ready = ray.wait([ref, generator], num_returns=1, timeout=60)
    assert (ready, not_ready) == ([generator], [ref])

    _open_gate(ref_gate)
    ready, not_ready = ray.wait([ref, generator], num_returns=2, timeout=60)
    assert (ready, not_ready) == ([ref, generator], [])
    assert ray.get(ref) == 7
    assert ray.get(next(generator)) == 0


@pytest.mark.timeout(120)
def test_wait_rejects_what_is_neither_a_ref_nor_a_generator(cluster: Any) -> None:
    with pytest.raises(TypeError, match="list of ray.ObjectRef or ray.ObjectRefGenerator"):
        ray.wait([object()])


@pytest.mark.timeout(120)
def test_a_failed_item_makes_the_generator_ready(cluster: Any) -> None:
    generator = fails_after_one.remote()
    assert ray.wait([generator], timeout=60) == ([generator], [])
    assert ray.get(next(generator)) == 1
    assert ray.wait([generator], timeout=60) == ([generator], [])
    with pytest.raises(ValueError, match="second item failed"):
        ray.get(next(generator))


@pytest.mark.timeout(120)
def test_num_returns_counts_generators(cluster: Any, tmp_path: Path) -> None:
    gates = [tmp_path / f"gate{i}" for i in range(3)]
    generators = [gated_numbers.remote([str(gate)]) for gate in gates]
    _open_gate(gates[2])
    _open_gate(gates[0])
    ready, not_ready = ray.wait(generators, num_returns=2, timeout=60)
    assert ready == [generators[0], generators[2]] and not_ready == [generators[1]]
    ready, not_ready = ray.wait(generators, num_returns=3, timeout=0)
    assert ready == [generators[0], generators[2]] and not_ready == [generators[1]]
    _open_gate(gates[1])
    assert ray.get([next(generator) for generator in generators]) == [0, 0, 0]
