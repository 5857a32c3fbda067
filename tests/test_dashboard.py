"""The dashboard: its JSON API (shapes, 400/404/503, the token beyond loopback) and its page
in a real headless Chromium driven by Playwright (Debian's `chromium`, which .ci/run
installs). Screenshots go to test-artifacts/ (one is in the README).
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from test_cli import cli  # noqa: F401  (a fixture)

import redray
from redray.dashboard.launcher import start_dashboard
from redray.node.redis_launcher import free_port, start_redis, wait_until_up

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
#: How long the page may take to show a change (it refreshes itself each second).
LIVE_TIMEOUT_MS = 10_000


def get_json(url: str, token: str | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture
def dashboard_cluster() -> Any:
    port = free_port()
    context = redray.init(num_cpus=2, include_dashboard=True, dashboard_port=port)
    yield f"http://{context.dashboard_url}", context
    redray.shutdown()


@redray.remote
def fails_loudly():
    raise ValueError("dashboard-visible failure")


def test_init_serves_the_dashboard_and_returns_its_url(dashboard_cluster):
    url, context = dashboard_cluster
    assert context.dashboard_url.startswith("127.0.0.1:")
    status, overview = get_json(f"{url}/api/overview")
    assert status == 200
    assert overview["nodes"] == {"alive": 1, "dead": 0}
    assert overview["resources"]["CPU"]["total"] == 2
    status, nodes = get_json(f"{url}/api/nodes")
    assert status == 200 and nodes[0]["node_id"] == context["node_id"]
    assert nodes[0]["state"] == "ALIVE" and nodes[0]["is_head_node"]


def test_api_errors_are_json_with_a_reason(dashboard_cluster):
    url, _ = dashboard_cluster
    status, body = get_json(f"{url}/api/nodes/not-a-node")
    assert status == 404 and "not-a-node" in body["error"]
    status, body = get_json(f"{url}/api/errors?limit=many")
    assert status == 400 and "limit must be an integer" in body["error"]
    status, body = get_json(f"{url}/api/errors?limit=0")
    assert status == 400 and "between 1 and" in body["error"]
    status, body = get_json(f"{url}/api/no-such-view")
    assert status == 404 and body["error"]
    status, body = get_json(f"{url}/api/jobs/nope")
    assert status == 404


def test_errors_view_lists_failed_tasks(dashboard_cluster):
    url, _ = dashboard_cluster
    with pytest.raises(ValueError):
        redray.get(fails_loudly.remote(), timeout=60)
    status, errors = get_json(f"{url}/api/errors")
    assert status == 200
    assert any("dashboard-visible failure" in e["message"] for e in errors)


@pytest.fixture
def standalone_redis(tmp_path: Path) -> Any:
    servers = []

    def start(port: int | None = None) -> Any:
        server = start_redis(port=port)
        wait_until_up(server.client_kwargs(local=False))
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def test_beyond_loopback_it_requires_the_token(standalone_redis, tmp_path):
    server = standalone_redis()
    port = free_port()
    process, url, token = start_dashboard(
        server.client_kwargs(local=False), None, "0.0.0.0", port, tmp_path / "dashboard.log"
    )
    try:
        assert token
        status, body = get_json(f"http://127.0.0.1:{port}/api/overview")
        assert status == 401 and "token" in body["error"]
        status, _ = get_json(f"http://127.0.0.1:{port}/api/overview", token="wrong")
        assert status == 401
        status, body = get_json(f"http://127.0.0.1:{port}/api/overview", token=token)
        assert status == 200 and body["nodes"] == {"alive": 0, "dead": 0}
    finally:
        process.terminate()
        process.wait(timeout=30)


# ---- in a real browser ----------------------------------------------------------------

browser_test = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium (.ci/run installs it with apt-get)"
)


@pytest.fixture
def page() -> Any:
    sync_api = pytest.importorskip("playwright.sync_api")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        try:
            yield browser.new_page(viewport={"width": 1200, "height": 700})
        finally:
            browser.close()


@browser_test
@pytest.mark.timeout(180)
def test_page_shows_the_cluster_and_follows_it_live(dashboard_cluster, page):
    url, context = dashboard_cluster
    page.goto(url)
    page.wait_for_selector("text=nodes alive", timeout=LIVE_TIMEOUT_MS)
    page.click("text=Nodes")
    page.wait_for_selector(f"text={context['node_id']}", timeout=LIVE_TIMEOUT_MS)
    assert page.locator("span.ALIVE").count() == 1
    page.screenshot(path=str(ARTIFACTS / "dashboard-nodes.png"))

    page.click("text=Errors")
    page.wait_for_selector("text=No errors recorded.", timeout=LIVE_TIMEOUT_MS)
    with pytest.raises(ValueError):
        redray.get(fails_loudly.remote(), timeout=60)
    # No reload: the page shows the new failure by itself.
    page.wait_for_selector("text=dashboard-visible failure", timeout=LIVE_TIMEOUT_MS)
    page.screenshot(path=str(ARTIFACTS / "dashboard-errors.png"))

    page.click("text=Overview")
    page.wait_for_selector("text=errors", timeout=LIVE_TIMEOUT_MS)
    page.screenshot(path=str(ARTIFACTS / "dashboard-overview.png"))


@browser_test
@pytest.mark.timeout(180)
def test_page_says_when_the_control_store_is_unreachable_and_recovers(
    standalone_redis, page, tmp_path
):
    server = standalone_redis()
    port = free_port()
    process, url, _ = start_dashboard(
        server.client_kwargs(local=False), None, "127.0.0.1", port, tmp_path / "dashboard.log"
    )
    try:
        page.goto(f"http://{url}")
        page.wait_for_selector("text=nodes alive", timeout=LIVE_TIMEOUT_MS)
        server.stop()
        page.wait_for_selector("text=control store unreachable", timeout=LIVE_TIMEOUT_MS)
        assert page.locator("#banner").is_visible()
        standalone_redis(port=server.port)  # Redis back on the same port
        deadline = time.monotonic() + LIVE_TIMEOUT_MS / 1000
        while page.locator("#banner").is_visible():
            assert time.monotonic() < deadline, "the page never recovered"
            page.wait_for_timeout(100)
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.timeout(180)
def test_cli_head_serves_the_dashboard_and_stop_ends_it(cli):  # noqa: F811
    port = free_port()
    state = cli.start_head("--dashboard-port", str(port))
    assert state["dashboard_url"] == f"127.0.0.1:{port}"
    status, overview = get_json(f"http://127.0.0.1:{port}/api/overview")
    assert status == 200 and overview["nodes"]["alive"] == 1
    assert f"Dashboard: http://127.0.0.1:{port}" in cli.run("status").stdout
    cli.run("stop")
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/api/overview", timeout=5)


@redray.remote
def finishes(x):
    return x


@redray.remote
class Pinger:
    def ping(self):
        return "pong"


def test_lists_filter_before_the_limit_and_refuse_bad_keys(dashboard_cluster):
    url, _ = dashboard_cluster
    redray.get([finishes.remote(i) for i in range(5)], timeout=60)
    deadline = time.monotonic() + 30
    while True:  # task events reach Redis in batches, within about a second
        status, rows = get_json(f"{url}/api/list/tasks?name=finishes&state=FINISHED&limit=10")
        if status == 200 and len(rows) == 5 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert status == 200 and len(rows) == 5
    assert {row["state"] for row in rows} == {"FINISHED"}
    status, body = get_json(f"{url}/api/list/tasks?colour=red")
    assert status == 400 and "colour" in body["error"]
    status, body = get_json(f"{url}/api/list/nothing")
    assert status == 404
    status, body = get_json(f"{url}/api/tasks/{'0' * 32}")
    assert status == 404
    status, trace = get_json(f"{url}/api/timeline")
    assert status == 200 and any(event.get("ph") == "X" for event in trace)


@browser_test
@pytest.mark.timeout(180)
def test_page_follows_tasks_and_actors(dashboard_cluster, page):
    url, _ = dashboard_cluster
    page.goto(url)
    page.click("text=Tasks")
    redray.get(finishes.remote(1), timeout=60)
    page.wait_for_selector("span.FINISHED", timeout=LIVE_TIMEOUT_MS)
    with pytest.raises(ValueError):
        redray.get(fails_loudly.remote(), timeout=60)
    page.wait_for_selector("td >> text=fails_loudly", timeout=LIVE_TIMEOUT_MS)
    page.click("tr:has-text('fails_loudly') a.link")
    page.wait_for_selector("text=raise ValueError(\"dashboard-visible failure\")",
                           timeout=LIVE_TIMEOUT_MS)  # fmt: skip
    page.screenshot(path=str(ARTIFACTS / "dashboard-task.png"))

    actor = Pinger.remote()
    redray.get(actor.ping.remote(), timeout=60)
    page.click("text=Actors")
    page.wait_for_selector("span.ALIVE", timeout=LIVE_TIMEOUT_MS)
    redray.kill(actor)
    page.wait_for_selector("span.DEAD", timeout=LIVE_TIMEOUT_MS)
    page.screenshot(path=str(ARTIFACTS / "dashboard-actors.png"))
