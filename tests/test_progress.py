"""Progress bars: `redray.util.progress` over refs on the driver, and
`redray.experimental.tqdm_ray` bars updated inside tasks and drawn by the driver."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from target_ray import TESTING_RAY, ray, wait_until

if TESTING_RAY:
    from ray.experimental import tqdm_ray
else:
    from redray.experimental import tqdm_ray

redray_progress = pytest.mark.skipif(TESTING_RAY, reason="redray.util.progress is redray's")


@ray.remote
def square(x: int) -> int:
    return x * x


@ray.remote
def fail() -> None:
    raise ValueError("this task fails")


def _bar_text(stream: io.StringIO) -> str:
    return stream.getvalue().replace("\r", "\n")


@redray_progress
@pytest.mark.timeout(120)
def test_progress_yields_every_result_as_it_completes(ray_start: Any) -> None:
    import redray.util

    refs = [square.remote(i) for i in range(20)]
    drawn = io.StringIO()
    values = list(redray.util.progress(refs, desc="squares", file=drawn))
    assert sorted(values) == [i * i for i in range(20)]
    assert re.search(r"squares: 100%.*20/20", _bar_text(drawn))


@redray_progress
@pytest.mark.timeout(120)
def test_progress_get_returns_results_in_order(ray_start: Any) -> None:
    import redray.util

    refs = [square.remote(i) for i in range(10)]
    drawn = io.StringIO()
    with redray.util.progress(refs, file=drawn) as bar:
        assert bar.get() == [i * i for i in range(10)]
    assert "10/10" in _bar_text(drawn)


@redray_progress
@pytest.mark.timeout(120)
def test_progress_raises_a_failed_tasks_error(ray_start: Any) -> None:
    import redray.util

    with pytest.raises(ValueError, match="this task fails"):
        list(redray.util.progress([square.remote(1), fail.remote()], file=io.StringIO()))


@redray_progress
def test_progress_refuses_what_is_not_an_object_ref() -> None:
    import redray.util

    with pytest.raises(TypeError, match="list of ObjectRefs; got int"):
        redray.util.progress([1, 2])


@ray.remote
def counted(n: int) -> int:
    for _ in tqdm_ray.tqdm(range(n), desc="remote work", flush_interval_s=0):
        pass
    return n


@pytest.mark.timeout(120)
def test_tqdm_ray_bar_in_a_task_is_drawn_by_the_driver(
    ray_start: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ray.get(counted.remote(7)) == 7
    seen = {"out": "", "err": ""}

    def drawn() -> bool:
        captured = capsys.readouterr()
        seen["out"] += captured.out
        seen["err"] += captured.err
        return re.search(r"remote work: 100%.*\| 7(\.00)?/7(\.00)?", seen["err"]) is not None

    assert wait_until(drawn), seen
    assert re.search(r"\(pid=\d+\) .*remote work", seen["err"])
    assert tqdm_ray.RAY_TQDM_MAGIC not in seen["out"] + seen["err"]


def test_tqdm_ray_on_the_driver_draws_directly(capsys: pytest.CaptureFixture[str]) -> None:
    bar = tqdm_ray.tqdm(total=3, desc="local bar")
    for _ in range(3):
        bar.update(1)
    bar.close()
    assert bar.n == 3
    assert "local bar" in capsys.readouterr().err
