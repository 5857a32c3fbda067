"""Objects whose owner died: their borrowers get OwnerDiedError, as in Ray.

The owner of an object is the process that created its ref (`put`, or submitting the task).
Runs against redray, or against Ray 2.x with REDRAY_TEST_AGAINST=ray.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from target_ray import ray, wait_until

pytestmark = pytest.mark.timeout(120)


@ray.remote
class Maker:
    def make(self, size: int) -> list:
        """A ref this actor owns, inside a list so that the caller borrows it."""
        return [ray.put(np.ones(size, dtype=np.uint8))]

    def pid(self) -> int:
        return os.getpid()


@ray.remote
class Holder:
    def hold(self, box: list) -> bool:
        self.box = box
        return True

    def read(self) -> str:
        try:
            return f"value {int(ray.get(self.box[0]).sum())}"
        except ray.exceptions.OwnerDiedError:
            return "OwnerDiedError"


def _owner_died(ref: ray.ObjectRef) -> bool:
    try:
        ray.get(ref, timeout=30)
    except ray.exceptions.OwnerDiedError:
        return True
    return False


@pytest.mark.parametrize("size", [10, 4 * 2**20], ids=["small", "large"])
def test_get_raises_owner_died_once_the_owning_actor_is_killed(ray_start, size: int) -> None:
    maker = Maker.remote()
    [ref] = ray.get(maker.make.remote(size))
    assert ray.get(ref).sum() == size
    ray.kill(maker)
    assert wait_until(lambda: _owner_died(ref))
    with pytest.raises(ray.exceptions.ObjectLostError):  # OwnerDiedError is one
        ray.get(ref)


def test_objects_of_a_driver_that_exited_raise_owner_died(ray_start) -> None:
    holder = Holder.options(name="ownership-holder", lifetime="detached").remote()
    address = ray.get_runtime_context().gcs_address
    script = textwrap.dedent(
        f"""
        import numpy as np
        from target_ray import ray
        ray.init(address={address!r}, namespace="ownership")
        holder = ray.get_actor("ownership-holder", namespace={_namespace()!r})
        ref = ray.put(np.ones(1000, dtype=np.uint8))
        assert ray.get(holder.hold.remote([ref]))
        print("HELD", ray.get(holder.read.remote()), flush=True)
        ray.shutdown()
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=os.path.dirname(__file__),
    )
    assert "HELD value 1000" in result.stdout, result.stderr
    assert wait_until(lambda: ray.get(holder.read.remote()) == "OwnerDiedError")
    ray.kill(holder)


def _namespace() -> str:
    return ray.get_runtime_context().namespace
