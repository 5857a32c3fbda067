"""Workers' stdout and stderr on the driver: Ray's prefix, dedup, log_to_driver=False, the
node's log files, and output from a task on another node (`, ip=...`)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from target_ray import TESTING_RAY, ray, redray_only, wait_for_path, wait_until
from test_cli import CliCluster, cli  # noqa: F401  (cli is a fixture)

from redray.client.worker_logs import LogBatch, LogDeduplicator

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class DriverOutput:
    """Everything the driver printed so far on stdout and stderr, colour codes removed
    (the printer runs on a background thread: callers poll)."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self._capsys = capsys
        self.out = ""
        self.err = ""

    def read(self) -> DriverOutput:
        captured = self._capsys.readouterr()
        self.out += _ANSI.sub("", captured.out)
        self.err += _ANSI.sub("", captured.err)
        return self

    def wait_for(self, text: str, stream: str = "out") -> str:
        found = wait_until(lambda: text in getattr(self.read(), stream))
        assert found, f"{text!r} never reached the driver's {stream}: {getattr(self, stream)!r}"
        return getattr(self, stream)


@pytest.fixture
def output(capsys: pytest.CaptureFixture[str]) -> Iterator[DriverOutput]:
    yield DriverOutput(capsys)


@ray.remote
def say(text: str) -> int:
    print(text)
    return os.getpid()


@ray.remote
def complain(text: str) -> int:
    print(text, file=sys.stderr)
    return os.getpid()


@ray.remote
class Speaker:
    def say(self, text: str) -> int:
        print(text)
        return os.getpid()


@ray.remote
class Named:
    def __init__(self, label: str) -> None:
        self.label = label

    def __repr__(self) -> str:
        return f"Named({self.label})"

    def say(self, text: str) -> int:
        print(text)
        return os.getpid()


@pytest.mark.timeout(120)
def test_task_stdout_reaches_the_driver_with_its_prefix(ray_start: Any, output: DriverOutput):
    pid = ray.get(say.remote("hello from a task"))
    assert f"(say pid={pid}) hello from a task" in output.wait_for("hello from a task")


@redray_only
@pytest.mark.timeout(120)
def test_task_output_is_printed_before_get_returns(ray_start: Any, output: DriverOutput):
    """redray sends a task's lines with its result, ahead of it: no wait after get()."""
    pid = ray.get(say.remote("printed before the result"))
    assert f"(say pid={pid}) printed before the result" in output.read().out


@pytest.mark.timeout(120)
def test_task_stderr_reaches_the_driver_stderr(ray_start: Any, output: DriverOutput):
    pid = ray.get(complain.remote("something went wrong"))
    err = output.wait_for("something went wrong", "err")
    assert f"(complain pid={pid}) something went wrong" in err
    assert "something went wrong" not in output.out


@pytest.mark.timeout(120)
def test_task_name_option_names_the_prefix(ray_start: Any, output: DriverOutput):
    pid = ray.get(say.options(name="greeter").remote("named task line"))
    assert f"(greeter pid={pid}) named task line" in output.wait_for("named task line")


@pytest.mark.timeout(120)
def test_actor_output_is_prefixed_with_its_class(ray_start: Any, output: DriverOutput):
    speaker = Speaker.remote()
    pid = ray.get(speaker.say.remote("an actor speaks"))
    assert f"(Speaker pid={pid}) an actor speaks" in output.wait_for("an actor speaks")


@pytest.mark.timeout(120)
def test_actor_with_repr_is_prefixed_with_it(ray_start: Any, output: DriverOutput):
    named = Named.remote("blue")
    pid = ray.get(named.say.remote("repr actor line"))
    assert f"(Named(blue) pid={pid}) repr actor line" in output.wait_for("repr actor line")


@ray.remote
def print_then_wait(text: str, gate: str) -> None:
    print(text)
    wait_for_path(gate)


@pytest.mark.timeout(120)
def test_output_of_a_running_task_shows_before_it_ends(
    ray_start: Any, output: DriverOutput, workdir: Path
):
    gate = str(workdir / "gate")
    ref = print_then_wait.remote("still running", gate)
    output.wait_for("still running")  # the task is blocked on the gate until now
    Path(gate).touch()
    ray.get(ref)


@pytest.mark.timeout(120)
def test_lines_repeated_across_workers_are_collapsed(ray_start: Any, output: DriverOutput):
    speakers = [Speaker.options(num_cpus=0).remote() for _ in range(2)]
    pids = ray.get([s.say.remote("warming up") for s in speakers])
    assert len(set(pids)) == 2
    for _ in range(4):
        ray.get([s.say.remote("the same line again") for s in speakers])
    # Ray prints the summary with the next output after the window: keep some coming.
    summarised = wait_until(
        lambda: ray.get(speakers[0].say.remote("poll")) and "across cluster]" in output.read().out
    )
    out = output.out
    assert summarised, out
    assert re.search(r"the same line again \[repeated \d+x across cluster\]", out)
    plain = [line for line in out.splitlines() if line.endswith(") the same line again")]
    assert len(plain) < 8


@redray_only  # Ray reads RAY_DEDUP_LOGS once, when it is imported
@pytest.mark.timeout(120)
def test_dedup_off_prints_every_line(
    ray_fresh: Any, output: DriverOutput, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("RAY_DEDUP_LOGS", "0")
    ray_fresh()
    speakers = [Speaker.options(num_cpus=0).remote() for _ in range(2)]
    for _ in range(3):
        ray.get([s.say.remote("never collapsed") for s in speakers])
    ray.shutdown()
    out = output.read().out
    assert out.count(") never collapsed") == 6
    assert "repeated" not in out


@redray_only  # where worker output is kept on the node
@pytest.mark.timeout(120)
def test_log_to_driver_false_prints_nothing_but_keeps_the_files(
    ray_fresh: Any, output: DriverOutput
):
    context = ray_fresh(log_to_driver=False)
    ray.get(say.remote("kept on the node only"))
    ray.get(complain.remote("an error kept on the node"))
    logs = Path(context["session_dir"]) / "logs"
    found = wait_until(
        lambda: (
            "kept on the node only" in "".join(p.read_text() for p in logs.glob("*.out"))
            and "an error kept" in "".join(p.read_text() for p in logs.glob("*.err"))
        )
    )
    assert found
    read = output.read()
    assert "kept on the node only" not in read.out
    assert "an error kept" not in read.err


@ray.remote
def partial() -> int:
    print("no newline here", end="")
    return os.getpid()


@pytest.mark.timeout(120)
def test_print_without_a_newline_at_the_end_of_a_task_is_shown(
    ray_start: Any, output: DriverOutput
):
    pid = ray.get(partial.remote())
    assert f"(partial pid={pid}) no newline here" in output.wait_for("no newline here")


# ---- the deduplicator alone (pure logic, a fake clock) ------------------------------------


def _batch(pid: str, *lines: str) -> LogBatch:
    return LogBatch(pid=pid, ip="10.0.0.1", name="f", is_actor=False, is_err=False,
                    lines=list(lines))  # fmt: skip


def _lines(batches: list[LogBatch]) -> list[str]:
    return [_ANSI.sub("", line) for batch in batches for line in batch.lines]


@pytest.mark.skipif(TESTING_RAY, reason="unit test of redray's deduplicator")
def test_deduplicator_counts_other_workers_repeats_until_the_window_ends() -> None:
    now = [0.0]
    dedup = LogDeduplicator(5, None, None, clock=lambda: now[0])
    assert _lines(dedup.deduplicate(_batch("1", "loading shard 7"))) == ["loading shard 7"]
    assert _lines(dedup.deduplicate(_batch("1", "loading shard 8"))) == ["loading shard 8"]
    for pid in ("2", "3", "4"):  # other workers: counted, not printed
        assert _lines(dedup.deduplicate(_batch(pid, f"loading shard {pid}"))) == []
    now[0] = 6.0
    (summary,) = _lines(dedup.expired())
    assert summary.startswith("loading shard 4 [repeated 3x across cluster]")
    assert _lines(dedup.flush()) == []


@pytest.mark.skipif(TESTING_RAY, reason="unit test of redray's deduplicator")
def test_deduplicator_prints_a_single_repeat_plainly_and_never_dedups_empty_keys() -> None:
    now = [0.0]
    dedup = LogDeduplicator(5, None, None, clock=lambda: now[0])
    dedup.deduplicate(_batch("1", "done"))
    assert _lines(dedup.deduplicate(_batch("2", "done"))) == []
    assert _lines(dedup.deduplicate(_batch("2", "42", "42"))) == ["42", "42"]
    now[0] = 5.0
    assert _lines(dedup.expired()) == ["done"]


# ---- a task on another node --------------------------------------------------------------


@ray.remote(resources={"second": 1})
def say_on_second(text: str) -> tuple[int, str]:
    print(text)
    print("and a warning", file=sys.stderr)
    return os.getpid(), ray.get_runtime_context().get_task_id()


@redray_only  # starts its nodes with the redray CLI
@pytest.mark.timeout(300)
def test_output_of_a_task_on_another_node_reaches_the_driver_with_its_ip(
    cli: CliCluster,  # noqa: F811
    output: DriverOutput,
    ray_fresh: Any,  # stops the module's cluster first: this driver joins the CLI's
):
    """The second node has another address (as on another machine): its lines carry it."""
    state = cli.start_head()
    cli.run(
        "start", "--address", state["address"], "--num-cpus", "1",
        "--resources", '{"second": 1}', REDRAY_NODE_IP="127.0.0.2",
    )  # fmt: skip
    ray.init(address="auto")
    pid, task_id = ray.get(say_on_second.remote("from the second node"))
    out = output.wait_for("from the second node")
    assert f"(say_on_second pid={pid}, ip=127.0.0.2) from the second node" in out
    local = ray.get(say.remote("from the head node"))
    assert f"(say pid={local}) from the head node" in output.wait_for("from the head node")

    # `redray logs`: by task (from Redis), by worker (its node's files), stderr only.
    assert cli.run("logs", "task", "--id", task_id).stdout.splitlines() == [
        "from the second node", "and a warning"
    ]  # fmt: skip
    assert cli.run("logs", "task", "--id", task_id, "--err").stdout == "and a warning\n"
    assert "from the head node" in cli.run("logs", "worker", "--pid", str(local)).stdout
    assert "No output recorded" in cli.run("logs", "task", "--id", "f00", check=False).stderr
    listing = cli.run("logs").stdout
    assert "worker-" in listing and ray.get_runtime_context().get_job_id() in listing


@redray_only  # the redray CLI
@pytest.mark.timeout(120)
def test_logs_follow_prints_new_output(
    cli: CliCluster,  # noqa: F811
    output: DriverOutput,
    ray_fresh: Any,  # stops the module's cluster first: this driver joins the CLI's
):
    cli.start_head()
    ray.init(address="auto")
    job_id = ray.get_runtime_context().get_job_id()
    follower = subprocess.Popen(
        [sys.executable, "-m", "redray.cli", "logs", "job", "--id", job_id, "--follow"],
        env=cli.env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        pid = ray.get(say.remote("followed line"))
        line = follower.stdout.readline()  # blocks until the follower prints
        assert line.endswith(f"(say pid={pid}, ip={_node_ip()}) followed line\n")
    finally:
        follower.kill()
        follower.wait()


def _node_ip() -> str:
    from redray.node.daemon import node_ip

    return node_ip()


# ---- in a notebook ------------------------------------------------------------------------

_NOTEBOOK_CELL = """
import redray as ray
ray.init(num_cpus=1)

@ray.remote
def hello():
    print("hello from a notebook task")
    return 1

ray.get(hello.remote())
"""


@redray_only  # a real Jupyter kernel runs a redray driver
@pytest.mark.timeout(180)
def test_worker_output_shows_in_the_jupyter_cell_that_ran_the_task() -> None:
    manager_module = pytest.importorskip("jupyter_client.manager")
    pytest.importorskip("ipykernel")
    manager, client = manager_module.start_new_kernel(kernel_name="python3", startup_timeout=60)
    try:
        shown = _run_cell(client, _NOTEBOOK_CELL)
        lines = [line for line in _ANSI.sub("", shown).splitlines() if line]
        assert any(
            re.fullmatch(r"\(hello pid=\d+\) hello from a notebook task", line) for line in lines
        ), shown
        assert "hello from a notebook task" not in [line.strip() for line in lines]  # no raw
        _run_cell(client, "ray.shutdown()")
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def _run_cell(client: Any, code: str) -> str:
    """Run a cell; what it printed (its stream messages) once the kernel is idle."""
    message_id = client.execute(code)
    shown = []
    while True:
        message = client.get_iopub_msg(timeout=60)
        if message["parent_header"].get("msg_id") != message_id:
            continue
        if message["msg_type"] == "stream":
            shown.append(message["content"]["text"])
        elif message["msg_type"] == "error":
            raise AssertionError("\n".join(message["content"]["traceback"]))
        elif message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
            return "".join(shown)


def _child_says(text: str) -> None:
    print(text)


@ray.remote
def fork_a_child(text: str) -> int:
    import multiprocessing

    child = multiprocessing.get_context("fork").Process(target=_child_says, args=(text,))
    child.start()
    child.join()
    return child.pid


@redray_only  # Ray forwards it too, prefixed with the worker's pid (it reads the log file)
@pytest.mark.timeout(120)
def test_output_of_a_process_a_task_forked_reaches_the_driver(ray_start: Any, output: DriverOutput):
    child = ray.get(fork_a_child.remote("from a forked child"))
    assert f"(fork_a_child pid={child}) from a forked child" in output.wait_for(
        "from a forked child"
    )


@ray.remote
def print_many(count: int) -> int:
    for index in range(count):
        print(f"many lines {index:05d} " + "x" * 40)
    return os.getpid()


@pytest.mark.timeout(120)
def test_a_task_printing_many_lines_shows_all_in_order(ray_start: Any, output: DriverOutput):
    """5,000 lines (over 250 KB) from one task arrive whole and in order."""
    ray.get(print_many.remote(5000))
    out = output.wait_for("many lines 04999")
    numbers = [int(m) for m in re.findall(r"many lines (\d{5}) x", out)]
    assert numbers == list(range(5000))


@redray_only  # redray's stream layout
@pytest.mark.timeout(120)
def test_output_entries_in_redis_are_bounded_in_size(ray_start: Any) -> None:
    from redray.api import current_client
    from redray.control import keys
    from redray.worker.output import ENTRY_BYTES

    ray.get(print_many.remote(3000))
    client = current_client()
    entries = client.redis.xrange(keys.logs(client.job_id))
    sizes = [len(fields[b"l"]) for _, fields in entries]
    assert sum(sizes) > 3000 * 50
    assert max(sizes) < ENTRY_BYTES + 100


@redray_only  # Ray reads RAY_DISABLE_WORKER_LOG_PREFIX once, when it is imported
@pytest.mark.timeout(120)
def test_prefix_can_be_turned_off(
    ray_start: Any, output: DriverOutput, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("RAY_DISABLE_WORKER_LOG_PREFIX", "1")
    ray.get(say.remote("a bare line"))
    assert "\na bare line\n" in "\n" + output.wait_for("a bare line")
