"""Tasks end to end, as Ray's Tasks guide and `ray.remote` / `.options()` references describe.

Runs against redray, or against Ray 2.x with REDRAY_TEST_AGAINST=ray. Concurrency is proven
by rendezvous through files (every party must be running for any to finish), and ordering
by gates (a file the test creates): never by sleeping or timing.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import uuid
import warnings
from pathlib import Path

import pytest
from target_ray import (
    CONDITION_TIMEOUT,
    TESTING_RAY,
    gated,
    ray,
    redray_only,
    rendezvous,
    wait_for_path,
)

REPO = Path(__file__).resolve().parent.parent


# ---- remote functions used by several tests (module level, as users write them) -------


@ray.remote
def add(a, b):
    return a + b


@ray.remote
def identity(value):
    return value


@ray.remote
def inc(x):
    return x + 1


@ray.remote
def get_pid():
    return os.getpid()


@ray.remote
def check_in(directory, count):
    """Rendezvous of `count` tasks: returns how many were running together."""
    return rendezvous(directory, uuid.uuid4().hex, count)


# ---- defining and calling remote functions --------------------------------------------


def test_decorator_and_call_forms(ray_start):
    @ray.remote
    def plain(x):
        return x * 2

    @ray.remote(num_cpus=1)
    def with_options(x):
        return x * 3

    def g(a, b, c):
        return a + b + c

    remote_g = ray.remote(g)
    pair = ray.remote(num_returns=2)(lambda: (1, 2))

    ref = plain.remote(21)
    assert isinstance(ref, ray.ObjectRef)
    assert ray.get(ref) == 42
    assert ray.get(with_options.remote(2)) == 6
    assert ray.get(remote_g.remote(1, 2, 3)) == 6
    first, second = pair.remote()
    assert ray.get([first, second]) == [1, 2]
    # The guide's first example: module-level functions, values and refs as arguments.
    assert ray.get(add.remote(1, 2)) == 3
    assert ray.get(add.remote(add.remote(1, 2), 4)) == 7


def test_remote_call_returns_before_the_task_finishes(ray_start, workdir):
    gate = workdir / "gate"
    ref = gated.remote(str(gate), 5)  # would never return if .remote() waited for the task
    try:
        ready, not_ready = ray.wait([ref], timeout=0)
        assert ready == [] and not_ready == [ref]
    finally:
        gate.touch()
    assert ray.get(ref) == 5


def test_options_returns_a_new_object_and_overrides(ray_start):
    @ray.remote(num_returns=1)
    def two_values():
        return 1, 2

    split = two_values.options(num_returns=2)
    assert split is not two_values
    refs = split.remote()
    assert isinstance(refs, list) and len(refs) == 2
    assert ray.get(refs) == [1, 2]
    # The original is unchanged by .options().
    single = two_values.remote()
    assert isinstance(single, ray.ObjectRef)
    assert ray.get(single) == (1, 2)


def test_options_override_the_decorator_resources(ray_start):
    @ray.remote(num_cpus=100)  # more than the cluster has: only runnable with the override
    def needs_a_lot():
        return "ran"

    assert ray.get(needs_a_lot.options(num_cpus=1).remote(), timeout=CONDITION_TIMEOUT) == "ran"


def test_calling_a_remote_function_directly_raises_type_error(ray_start):
    with pytest.raises(TypeError, match=r"\.remote\(\)"):
        add(1, 2)


@pytest.mark.parametrize(
    "args, kwargs",
    [((1,), {}), ((1, 2, 3), {}), ((1, 2), {"c": 3}), ((), {"a": 1})],
    ids=["too-few", "too-many", "unexpected-kwarg", "missing-positional"],
)
def test_wrong_arguments_raise_type_error_at_remote(ray_start, args, kwargs):
    with pytest.raises(TypeError):
        add.remote(*args, **kwargs)


@pytest.mark.parametrize(
    "make_value",
    [threading.Lock, lambda: (i for i in range(3))],
    ids=["lock", "generator"],
)
def test_unserializable_argument_raises_at_remote(ray_start, make_value):
    with pytest.raises(TypeError, match="(?i)serializ"):
        identity.remote(make_value())
    with pytest.raises(TypeError, match="(?i)serializ"):
        identity.remote(value=make_value())
    # The cluster is unaffected.
    assert ray.get(identity.remote(1)) == 1


def test_keyword_arguments(ray_start):
    @ray.remote
    def describe(a, b=10, *rest, c, d=20, **extra):
        return a, b, rest, c, d, extra

    assert ray.get(describe.remote(1, c=3)) == (1, 10, (), 3, 20, {})
    assert ray.get(describe.remote(1, 2, 5, 6, c=3, d=4, e=9)) == (1, 2, (5, 6), 3, 4, {"e": 9})
    # ObjectRefs passed as keyword arguments are resolved like positional ones.
    assert ray.get(add.remote(a=ray.put(1), b=inc.remote(1))) == 3


def test_num_returns(ray_start):
    @ray.remote(num_returns=3)
    def three():
        return 0, 1, 2

    @ray.remote
    def return_single():
        return 0, 1, 2

    refs = three.remote()
    assert isinstance(refs, list) and len(refs) == 3
    assert all(isinstance(ref, ray.ObjectRef) for ref in refs)
    assert len(set(refs)) == 3
    assert [ray.get(ref) for ref in refs] == [0, 1, 2]
    assert ray.get(return_single.remote()) == (0, 1, 2)
    # The guide's return_single, split into three refs by .options().
    a, b, c = return_single.options(num_returns=3).remote()
    assert ray.get([c, b, a]) == [2, 1, 0]


@redray_only
def test_num_return_vals_is_an_alias_of_num_returns(ray_start):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)

        @ray.remote(num_return_vals=2)
        def f():
            return 1, 2

    x_id, y_id = f.remote()
    assert ray.get(x_id) == 1
    assert ray.get(y_id) == 2


def test_num_returns_zero_returns_none(ray_start, workdir):
    marker = workdir / "ran"

    @ray.remote(num_returns=0)
    def side_effect_only(path):
        Path(path).touch()

    assert side_effect_only.remote(str(marker)) is None
    assert wait_for_path(marker)


def test_wrong_number_of_returned_values_fails_the_task(ray_start):
    @ray.remote(num_returns=3)
    def only_two():
        return 1, 2

    refs = only_two.remote()
    with pytest.raises(ray.exceptions.RayTaskError):
        ray.get(refs[0], timeout=CONDITION_TIMEOUT)


# ---- passing object refs -----------------------------------------------------------------


def test_top_level_ref_arguments_are_resolved_to_values(ray_start):
    @ray.remote
    def kind_of(value):
        return type(value).__name__, value

    assert ray.get(kind_of.remote(ray.put([1, 2]))) == ("list", [1, 2])
    assert ray.get(kind_of.remote(inc.remote(1))) == ("int", 2)


def test_refs_nested_in_a_list_are_passed_as_refs(ray_start):
    @ray.remote
    def look_inside(refs):
        assert all(isinstance(ref, ray.ObjectRef) for ref in refs)
        return [type(ref).__name__ for ref in refs], sum(ray.get(refs))

    names, total = ray.get(look_inside.remote([ray.put(1), inc.remote(1), ray.put(3)]))
    assert names == ["ObjectRef"] * 3
    assert total == 6


def test_a_task_waits_for_its_dependencies(ray_start, workdir):
    gate, done = workdir / "gate", workdir / "first-done"

    @ray.remote
    def first(gate_path, done_path):
        if not wait_for_path(gate_path):
            raise TimeoutError("gate never opened")
        Path(done_path).touch()
        return 1

    @ray.remote
    def second(value, done_path):
        return value, os.path.exists(done_path)

    a = first.remote(str(gate), str(done))
    b = second.remote(a, str(done))
    try:
        # `first` cannot finish before the gate opens, so neither can `second`.
        ready, not_ready = ray.wait([b], timeout=0.5)
        assert ready == [] and not_ready == [b]
    finally:
        gate.touch()
    assert ray.get(b) == (1, True)


def test_chain_of_dependent_tasks(ray_start):
    ref = ray.put(0)
    for _ in range(25):
        ref = inc.remote(ref)
    assert ray.get(ref) == 25


def test_fan_in_of_many_dependencies(ray_start):
    @ray.remote
    def total(*values):
        return sum(values)

    # The guide's fix for "ray.get() on task arguments": pass refs as direct arguments.
    assert ray.get(total.remote(*[inc.remote(i) for i in range(20)])) == sum(range(1, 21))


def test_nested_tasks(ray_start):
    @ray.remote
    def square(x):
        return x * x

    @ray.remote
    def sum_of_squares(n):
        return sum(ray.get([square.remote(i) for i in range(n)]))

    @ray.remote
    def outer(n):
        return ray.get(sum_of_squares.remote(n)) + ray.get(sum_of_squares.remote(n))

    assert ray.get(sum_of_squares.remote(10)) == 285
    assert ray.get(outer.remote(5)) == 60


def partition(collection):
    pivot = collection.pop()
    greater, lesser = [], []
    for element in collection:
        if element > pivot:
            greater.append(element)
        else:
            lesser.append(element)
    return lesser, pivot, greater


@ray.remote
def quick_sort_distributed(collection, threshold):
    # The Tasks guide's nested-parallelism example, with the threshold as a parameter.
    if len(collection) <= threshold:
        return sorted(collection)
    lesser, pivot, greater = partition(collection)
    lesser = quick_sort_distributed.remote(lesser, threshold)
    greater = quick_sort_distributed.remote(greater, threshold)
    return ray.get(lesser) + [pivot] + ray.get(greater)


@pytest.mark.timeout(300)
def test_nested_quick_sort_does_not_deadlock_on_two_cpus(ray_start):
    # Each level blocks in ray.get() while its children run: with 2 CPUs this only finishes
    # if a blocked task gives its CPU back. 3000 values, threshold 100: several levels deep.
    rng = random.Random(7)
    values = [rng.randint(0, 1_000_000) for _ in range(3000)]
    result = ray.get(quick_sort_distributed.remote(list(values), 100), timeout=280)
    assert result == sorted(values)


# ---- workers and resources ---------------------------------------------------------------


def test_max_calls_one_runs_each_call_in_a_new_worker(ray_start):
    @ray.remote(max_calls=1)
    def pid_once():
        return os.getpid()

    pids = [ray.get(pid_once.remote()) for _ in range(4)]  # one at a time, on purpose
    assert len(set(pids)) == 4, pids
    assert os.getpid() not in pids


def test_tasks_run_in_parallel_in_worker_processes(ray_start, workdir):
    # Two 1-CPU tasks on 2 CPUs: each waits until the other is running too.
    assert ray.get([check_in.remote(str(workdir), 2) for _ in range(2)]) == [2, 2]
    assert os.getpid() not in ray.get([get_pid.remote() for _ in range(2)])


def test_fractional_cpus_run_concurrently(ray_start, workdir):
    # Four tasks of half a CPU each fit at the same time on 2 CPUs.
    refs = [check_in.options(num_cpus=0.5).remote(str(workdir), 4) for _ in range(4)]
    assert ray.get(refs, timeout=2 * CONDITION_TIMEOUT) == [4, 4, 4, 4]


def test_gpus_are_assigned_to_tasks(ray_fresh, workdir):
    ray_fresh(num_cpus=2, num_gpus=2)
    assert ray.cluster_resources().get("GPU") == 2
    assert ray.get_gpu_ids() == []  # the driver holds no GPU

    @ray.remote(num_gpus=1)
    def one_gpu(directory):
        ids = [int(i) for i in ray.get_gpu_ids()]
        rendezvous(directory, uuid.uuid4().hex, 2)  # both tasks hold a GPU at once
        return ids, os.environ.get("CUDA_VISIBLE_DEVICES")

    @ray.remote(num_gpus=2)
    def two_gpus():
        return sorted(int(i) for i in ray.get_gpu_ids()), os.environ.get("CUDA_VISIBLE_DEVICES")

    results = ray.get([one_gpu.remote(str(workdir)) for _ in range(2)], timeout=100)
    for ids, visible in results:
        assert len(ids) == 1 and ids[0] in (0, 1)
        assert visible == str(ids[0])
    # Running at the same time, they got different GPUs.
    assert sorted(ids[0] for ids, _ in results) == [0, 1]
    ids, visible = ray.get(two_gpus.remote(), timeout=100)
    assert ids == [0, 1]
    assert sorted(int(i) for i in visible.split(",")) == [0, 1]


def test_custom_resources(ray_fresh, workdir):
    ray_fresh(num_cpus=2, resources={"Custom": 2})
    assert ray.cluster_resources().get("Custom") == 2

    @ray.remote(resources={"Custom": 1})
    def uses_custom(directory):
        assigned = ray.get_runtime_context().get_assigned_resources()
        return rendezvous(directory, uuid.uuid4().hex, 2), assigned.get("Custom")

    assert ray.get([uses_custom.remote(str(workdir)) for _ in range(2)], timeout=100) == [
        (2, 1),
        (2, 1),
    ]
    # More than the cluster has: infeasible, so it stays pending.
    ref = uses_custom.options(resources={"Custom": 3}).remote(str(workdir))
    assert ray.wait([ref], timeout=1) == ([], [ref])


def test_infeasible_task_stays_pending_and_warns(ray_fresh, recwarn, caplog, capfd):
    ray_fresh(num_cpus=2)

    @ray.remote(num_cpus=100)
    def too_big():
        return 1

    ref = too_big.remote()
    ready, not_ready = ray.wait([ref], timeout=1)
    assert ready == [] and not_ready == [ref]
    with pytest.raises(ray.exceptions.GetTimeoutError):
        ray.get(ref, timeout=0.5)
    # The cluster still runs feasible tasks meanwhile.
    assert ray.get(inc.remote(1), timeout=CONDITION_TIMEOUT) == 2
    if not TESTING_RAY:  # Ray's warning comes from its autoscaler monitor, asynchronously
        said = [str(w.message) for w in recwarn.list] + [r.getMessage() for r in caplog.records]
        said.append("".join(capfd.readouterr()))
        assert any("CPU" in text and "100" in text for text in said), said


def test_runtime_context_ids(ray_start):
    @ray.remote
    def ids():
        context = ray.get_runtime_context()
        return context.get_task_id(), context.get_node_id(), context.get_job_id()

    @ray.remote
    def parent_and_child():
        return ray.get_runtime_context().get_task_id(), ray.get(ids.remote())

    driver = ray.get_runtime_context()
    task_a, node_a, job_a = ray.get(ids.remote())
    task_b, node_b, job_b = ray.get(ids.remote())
    for value in (task_a, node_a, job_a):
        assert isinstance(value, str) and value
        int(value, 16)  # hex strings, as Ray's
    assert task_a != task_b
    assert node_a == node_b == driver.get_node_id()
    assert job_a == job_b == driver.get_job_id()
    parent_task, (child_task, child_node, child_job) = ray.get(parent_and_child.remote())
    assert parent_task not in (child_task, task_a, task_b)
    assert child_node == driver.get_node_id() and child_job == driver.get_job_id()
    assert [node["NodeID"] for node in ray.nodes() if node["Alive"]] == [driver.get_node_id()]


# ---- the Tasks guide as a script ---------------------------------------------------------


@pytest.mark.timeout(300)
def test_tasks_guide_example_runs():
    script = REPO / "examples" / "tasks_guide.py"
    if TESTING_RAY:  # the same script, with `import redray as ray` served by Ray
        command = [
            sys.executable,
            "-c",
            "import runpy, sys, ray; sys.modules['redray'] = ray; "
            f"runpy.run_path({str(script)!r}, run_name='__main__')",
        ]
    else:
        command = [sys.executable, str(script)]
    completed = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=280, stdin=subprocess.DEVNULL
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert "tasks guide: all examples passed" in completed.stdout


# ---- refs created and returned by tasks ----------------------------------------------------


def test_same_ref_passed_twice(ray_start):
    ref = inc.remote(1)
    assert ray.get(add.remote(ref, ref)) == 4


def test_task_returning_refs_of_tasks_it_submitted(ray_start):
    @ray.remote
    def submit_children():
        # Fire-and-forget inside a task: the caller gets the refs and fetches the values.
        return [inc.remote(i) for i in range(3)]

    refs = ray.get(submit_children.remote(), timeout=CONDITION_TIMEOUT)
    assert all(isinstance(ref, ray.ObjectRef) for ref in refs)
    assert ray.get(refs, timeout=CONDITION_TIMEOUT) == [1, 2, 3]
    assert ray.get(add.remote(refs[0], refs[2]), timeout=CONDITION_TIMEOUT) == 4


def test_ref_put_inside_a_task_returned_to_the_caller(ray_start):
    @ray.remote
    def put_inside(i):
        return ray.put({"made": "in a task", "i": i})

    for i in range(5):
        inner = ray.get(put_inside.remote(i), timeout=CONDITION_TIMEOUT)
        assert isinstance(inner, ray.ObjectRef)
        assert ray.get(inner, timeout=CONDITION_TIMEOUT) == {"made": "in a task", "i": i}
        # ...and the caller can pass it on to other tasks.
        assert ray.get(identity.remote(inner), timeout=CONDITION_TIMEOUT)["i"] == i


def test_get_with_timeout_inside_a_task(ray_start, workdir):
    gate = workdir / "gate"

    @ray.remote
    def impatient(ref_list):
        try:
            ray.get(ref_list[0], timeout=0.2)
        except ray.exceptions.GetTimeoutError as error:
            return isinstance(error, TimeoutError)
        return "no timeout"

    # Half a CPU each, so both fit on 2 CPUs alongside anything still finishing.
    pending = gated.options(num_cpus=0.5).remote(str(gate))
    try:
        assert ray.get(impatient.options(num_cpus=0.5).remote([pending])) is True
    finally:
        gate.touch()
    assert ray.get(pending) == 1


def test_many_small_tasks(ray_start):
    refs = [inc.remote(i) for i in range(1000)]
    assert ray.get(refs, timeout=100) == list(range(1, 1001))


def test_borrowed_ref_forwarded_to_a_nested_task(ray_start, workdir):
    gate = workdir / "gate"

    @ray.remote
    def forward(refs):
        # A ref this task did not create, passed on as a direct argument of a child task.
        return ray.get(inc.remote(refs[0]))

    ready_ref = ray.put(41)
    pending_ref = gated.options(num_cpus=0.5).remote(str(gate), 9)
    assert ray.get(forward.options(num_cpus=0.5).remote([ready_ref])) == 42
    later = forward.options(num_cpus=0.5).remote([pending_ref])
    gate.touch()
    assert ray.get(later, timeout=CONDITION_TIMEOUT) == 10


def test_submitting_from_many_driver_threads(ray_start):
    results = {}

    def work(index):
        refs = [add.remote(index, i) for i in range(50)]
        results[index] = ray.get(refs, timeout=100)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {t: [t + i for i in range(50)] for t in range(4)}


def test_zero_cpu_task_runs_while_all_cpus_are_busy(ray_start, workdir):
    gate = workdir / "gate"
    busy = [gated.remote(str(gate), i) for i in range(2)]  # both CPUs taken until the gate

    @ray.remote(num_cpus=0)
    def free_ride():
        return "ran"

    try:
        assert ray.get(free_ride.remote(), timeout=CONDITION_TIMEOUT) == "ran"
        assert ray.wait(busy, num_returns=2, timeout=0)[0] == []  # still held
    finally:
        gate.touch()
    assert ray.get(busy) == [0, 1]


# ---- fault tolerance (the guide's defaults: system failures are retried) -----------------


def _attempt(directory):
    """Counts the calls made with `directory`: 1 for the first, 2 for the next..."""
    Path(directory, uuid.uuid4().hex).touch()
    return len(os.listdir(directory))


@ray.remote
def crash_first_time(directory):
    if _attempt(directory) == 1:
        os._exit(1)  # the worker process dies mid-task: a system failure
    return "recovered"


def test_task_whose_worker_died_is_retried(ray_start, workdir):
    assert ray.get(crash_first_time.remote(str(workdir)), timeout=100) == "recovered"
    assert len(os.listdir(workdir)) == 2


def test_worker_death_without_retries_raises(ray_start, workdir):
    ref = crash_first_time.options(max_retries=0).remote(str(workdir))
    with pytest.raises(ray.exceptions.WorkerCrashedError):
        ray.get(ref, timeout=100)
    assert len(os.listdir(workdir)) == 1


def test_retry_exceptions_retries_application_errors(ray_start, workdir):
    @ray.remote(max_retries=3, retry_exceptions=[ValueError])
    def flaky(directory):
        if _attempt(directory) < 3:
            raise ValueError("not yet")
        return "third time"

    @ray.remote(max_retries=3)  # retry_exceptions defaults to False
    def not_retried(directory):
        _attempt(directory)
        raise ValueError("once")

    (workdir / "a").mkdir()
    assert ray.get(flaky.remote(str(workdir / "a")), timeout=100) == "third time"
    assert len(os.listdir(workdir / "a")) == 3
    (workdir / "b").mkdir()
    with pytest.raises(ValueError):
        ray.get(not_retried.remote(str(workdir / "b")), timeout=100)
    assert len(os.listdir(workdir / "b")) == 1
