"""Jobs: `redray.job_submission.JobSubmissionClient` and `redray job ...` against a head
started with the CLI (its job manager runs the drivers), as in Ray's job submission docs.

Ray's client speaks HTTP to its dashboard and redray's speaks to the cluster's Redis, so
these tests are redray's own.
"""

from __future__ import annotations

import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from test_cli import CliCluster, cli  # noqa: F401  (cli is a fixture)

import redray
from redray.job_submission import JobStatus, JobSubmissionClient

DRIVER = textwrap.dedent(
    """
    import redray
    from helper_module import GREETING

    redray.init()

    @redray.remote
    def shout(word):
        from helper_module import GREETING  # the job's working_dir reaches its tasks too
        return f"{GREETING} {word}".upper()

    print(redray.get(shout.remote(open("word.txt").read().strip())))
    """
)


def wait_for_end(client: JobSubmissionClient, job_id: str, timeout: float = 120) -> JobStatus:
    deadline = time.monotonic() + timeout
    while not (status := client.get_job_status(job_id)).is_terminal():
        assert time.monotonic() < deadline, f"job {job_id} still {status} after {timeout} s"
        time.sleep(0.1)
    return status


@pytest.fixture
def head(cli: CliCluster) -> Iterator[tuple[CliCluster, JobSubmissionClient]]:  # noqa: F811
    state = cli.start_head()
    yield cli, JobSubmissionClient(state["address"])


def start_sleeping_job(client: JobSubmissionClient, tmp_path: Path) -> tuple[str, int]:
    """A job that runs until stopped; returns (its id, its driver's pid) once it runs."""
    marker = tmp_path / "started"
    script = f"import pathlib, time; pathlib.Path({str(marker)!r}).touch(); time.sleep(600)"
    job_id = client.submit_job(entrypoint=f'{sys.executable} -c "{script}"')
    deadline = time.monotonic() + 60
    while not marker.exists():
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.05)
    return job_id, client.get_job_info(job_id).driver_pid


def make_project(root: Path) -> Path:
    root.mkdir()
    (root / "driver.py").write_text(DRIVER)
    (root / "helper_module.py").write_text("GREETING = 'hello'\n")
    (root / "word.txt").write_text("world\n")
    return root


@pytest.mark.timeout(300)
def test_job_runs_its_driver_in_the_shipped_working_dir(head, tmp_path):
    _, client = head
    project = make_project(tmp_path / "project")
    job_id = client.submit_job(
        entrypoint=f"{sys.executable} driver.py",
        runtime_env={"working_dir": str(project)},
        metadata={"owner": "tests"},
    )
    assert job_id.startswith("raysubmit_")
    assert wait_for_end(client, job_id) == JobStatus.SUCCEEDED, client.get_job_logs(job_id)
    assert "HELLO WORLD" in client.get_job_logs(job_id)
    info = client.get_job_info(job_id)
    assert info.driver_exit_code == 0 and info.metadata == {"owner": "tests"}
    assert info.end_time >= info.start_time
    assert job_id in [job.submission_id for job in client.list_jobs()]


@pytest.mark.timeout(300)
def test_failing_job_reports_its_exit_code(head):
    _, client = head
    job_id = client.submit_job(
        entrypoint=f"{sys.executable} -c \"print('about to fail'); raise SystemExit(3)\""
    )
    assert wait_for_end(client, job_id) == JobStatus.FAILED
    info = client.get_job_info(job_id)
    assert info.driver_exit_code == 3
    assert "exit code 3" in info.message
    assert "about to fail" in client.get_job_logs(job_id)


@pytest.mark.timeout(300)
def test_stop_job_ends_its_process_group(head, tmp_path):
    _, client = head
    job_id, pid = start_sleeping_job(client, tmp_path)
    assert client.stop_job(job_id)
    assert wait_for_end(client, job_id) == JobStatus.STOPPED
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert not client.stop_job(job_id)  # already ended
    assert client.delete_job(job_id)
    with pytest.raises(RuntimeError, match="does not exist"):
        client.get_job_status(job_id)


@pytest.mark.timeout(300)
def test_duplicate_submission_id_is_refused(head):
    _, client = head
    client.submit_job(entrypoint="true", submission_id="my-job")
    with pytest.raises(RuntimeError, match="my-job already exists"):
        client.submit_job(entrypoint="true", submission_id="my-job")


@pytest.mark.timeout(300)
def test_cli_submit_follows_the_output_and_exits_with_the_jobs_outcome(head, tmp_path):
    cli_cluster, client = head
    project = make_project(tmp_path / "project")
    done = cli_cluster.run(
        "job", "submit", "--working-dir", str(project), "--", sys.executable, "driver.py"
    )
    assert "HELLO WORLD" in done.stdout
    assert "succeeded" in done.stdout
    failed = cli_cluster.run("job", "submit", "--", "sh", "-c", "exit 4", check=False)
    assert failed.returncode == 1 and "failed" in failed.stdout
    listed = cli_cluster.run("job", "list").stdout
    assert "SUCCEEDED" in listed and "FAILED" in listed

    started = cli_cluster.run(
        "job", "submit", "--no-wait", "--submission-id", "quick", "--", "echo", "from-cli"
    )
    assert "quick" in started.stdout
    assert "from-cli" in cli_cluster.run("job", "logs", "--follow", "quick").stdout
    assert "SUCCEEDED" in cli_cluster.run("job", "status", "quick").stdout


@pytest.mark.timeout(300)
def test_redray_stop_stops_running_jobs(head, tmp_path):
    cli_cluster, client = head
    job_id, pid = start_sleeping_job(client, tmp_path)
    cli_cluster.run("stop")
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


@pytest.mark.timeout(120)
def test_submit_without_a_job_manager_says_so(ray_fresh):
    context = ray_fresh()
    client = JobSubmissionClient(context.address_info["address"])
    with pytest.raises(RuntimeError, match="No job manager"):
        client.submit_job(entrypoint="true")
    redray.shutdown()


def test_dashboard_url_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="Redis address"):
        JobSubmissionClient("http://127.0.0.1:8265")
