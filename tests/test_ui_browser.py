"""The web UI in a real browser: Playwright driving Debian's Chromium against a live
``dps server`` (real executor, supervisors, builds, git repository, HTTP input server).

One scenario walks through what a DPS user does: register through the form, wait for the
build, submit a job with a file input and watch it finish on the jobs page without a
reload, read its stdout, see its memory chart, download an output; submit a CSV batch of 20
and watch it reach 20/20; see a failure explained in words; cancel a running job; add a
secret and never see its value again. Every page is screenshotted (``OPENDPS_UI_SCREENSHOTS``
names the folder; default: the test's tmp dir) at 1280 px, and a few at phone width.

Skipped locally without Chromium or Playwright; under ``CI=true`` their absence fails.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.live_server import LiveServer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
WAIT = 120_000
# Elements that stick out of the screen (the page must not scroll sideways on a phone;
# wide tables scroll inside their own box instead).
WIDER_THAN_SCREEN = """() => {
  const limit = document.documentElement.clientWidth;
  if (document.documentElement.scrollWidth <= limit) return [];
  return [...document.querySelectorAll("body *")]
    .filter((e) => e.getBoundingClientRect().right > limit + 1 && !e.closest(".table-wrap"))
    .slice(0, 5).map((e) => e.tagName + "." + e.className + "#" + e.id)
    .concat(["scrollWidth " + document.documentElement.scrollWidth]);
}"""  # ms: builds and jobs run for real on a shared machine

RUN = f"""#!{sys.executable}
import os, sys, time
from pathlib import Path
seconds = float(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1] else 0.0
files = sorted(Path("input").iterdir())
data = files[0].read_bytes() if files else b""
print(f"read {{len(data)}} bytes from {{files[0].name if files else 'nothing'}}", flush=True)
hold = b"x" * (120 * 1024 * 1024) if seconds else b""  # written, so resident: a curve
deadline = time.time() + seconds
while time.time() < deadline:
    sum(range(20000))
(Path("output") / "result.txt").write_text(f"checksum {{sum(data) % 9973}}\\n")
(Path("output") / "plot.svg").write_text(
    '<svg xmlns="http://www.w3.org/2000/svg" width="120" height="40">'
    '<rect width="120" height="40" fill="#1f4e79"/></svg>'
)
print("done", flush=True)
"""

CONFIG = """\
queues:
  - {name: dps-worker-512mb, memory: 512MB, cpus: 1, slots: 4, default: true}
  - {name: dps-worker-2gb, memory: 2GB, cpus: 1, slots: 1}
"""


def need_browser() -> Any:
    """Playwright's sync API, or a skip (a failure under CI=true) naming what is missing."""
    in_ci = os.environ.get("CI", "").lower() == "true"
    missing = None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing = "playwright is not installed (pip install playwright)"
        sync_playwright = None
    if missing is None and not Path(CHROMIUM).exists():
        missing = f"{CHROMIUM} is missing (apt-get install -y chromium)"
    if missing:
        if in_ci:
            pytest.fail(missing)
        pytest.skip(missing)
    return sync_playwright


def expect(locator: Any) -> Any:
    """Playwright's retrying assertions (no in-page eval, which the pages' CSP forbids)."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


@pytest.fixture
def server(start_live_server: Callable[..., LiveServer], tmp_path: Path) -> LiveServer:
    config = tmp_path / "dps.yml"
    config.write_text(CONFIG)
    return start_live_server(config=config)


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[Any]:
    sync_playwright = need_browser()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(
            viewport={"width": 1280, "height": 900}, accept_downloads=True
        )
        page = context.new_page()
        page.set_default_timeout(WAIT)
        page.on("dialog", lambda dialog: dialog.accept())  # "Cancel this job?" etc.
        try:
            yield page
        finally:
            context.close()
            browser.close()


class Shots:
    """Screenshots of every page, for people to look at (docs/screenshots/)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.taken: list[Path] = []

    def take(self, page: Any, name: str, *, narrow: bool = False) -> None:
        path = self.folder / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        self.taken.append(path)
        if narrow:
            size = page.viewport_size
            page.set_viewport_size({"width": 390, "height": 844})
            wide = page.evaluate(WIDER_THAN_SCREEN)
            assert wide == [], f"{name}: wider than a phone's screen: {wide}"
            phone = self.folder / f"{name}-narrow.png"
            page.screenshot(path=str(phone), full_page=True)
            self.taken.append(phone)
            page.set_viewport_size(size)


@pytest.mark.slow
def test_a_user_does_their_dps_work_in_the_browser(
    server: LiveServer,
    browser_page: Any,
    make_algorithm_repo: Callable[..., Path],
    http_files: Any,
    tmp_path: Path,
) -> None:
    page = browser_page
    base = server.url
    shots = Shots(Path(os.environ.get("OPENDPS_UI_SCREENSHOTS") or tmp_path / "screenshots"))
    repo = make_algorithm_repo({"run.py": RUN}, executable=["run.py"], name="granule_stats")
    granule = tmp_path / "granule.bin"
    granule.write_bytes(bytes(range(256)) * 64)

    # -- register through the form, see the YAML, wait for the build --------------------------
    page.goto(f"{base}/ui/processes")
    page.fill("#reg-algorithm_name", "granule_stats")
    page.fill("#reg-algorithm_version", "main")
    page.fill("#reg-repository_url", str(repo))
    page.fill("#reg-run_command", "granule_stats/run.py")
    page.fill("#reg-algorithm_description", "Reads a granule, reports a checksum")
    page.fill("#reg-disk_space", "1GB")
    page.select_option("#in-0-kind", "file")
    page.fill("#in-0-name", "granule")
    page.fill("#in-0-description", "the file to read")
    page.check("#in-0-required")
    page.fill("#in-1-name", "seconds")
    page.fill("#in-1-default", "0")
    page.select_option("#in-1-data_type", "number")
    expect(page.locator("#yaml-preview")).to_contain_text("name: seconds")  # follows typing
    yaml_text = page.inner_text("#yaml-preview")
    assert "repository_url:" in yaml_text and "- name: granule" in yaml_text
    shots.take(page, "processes-register", narrow=True)
    page.click(".register-form .actions button[value=register]")
    page.wait_for_url(f"{base}/ui/processes/granule_stats:main")
    page.wait_for_selector("#build .badge.build-ready")  # the page follows the build
    shots.take(page, "process")

    # -- submit a job with a file input; it finishes on the jobs page, no reload -------------
    page.fill("[name='input:granule']", granule.as_uri())
    page.fill("[name='input:seconds']", "4")
    page.fill("#tag", "first-run")
    page.click("#submit button[type=submit]")
    page.wait_for_url("**/ui/jobs/*?done=submitted")
    job_id = page.url.split("/ui/jobs/")[1].split("?")[0]
    page.goto(f"{base}/ui/jobs")
    loads: list[str] = []
    page.on("load", lambda _: loads.append(page.url))
    row = page.locator(f"tr[data-job='{job_id}']")
    row.locator(".badge-successful").wait_for()
    assert loads == []  # the row changed in place, the page was not reloaded

    # -- its page: stdout, the memory chart with the limit, outputs --------------------------
    row.locator(f"a[href='/ui/jobs/{job_id}']").click()
    page.wait_for_url(f"{base}/ui/jobs/{job_id}")
    assert "read 16384 bytes from granule.bin" in page.inner_text("#log-stdout")
    assert page.locator("svg.series polyline.mem-line").count() == 1
    assert "queue limit 512 MiB" in page.inner_text("#chart")
    assert "peak" in page.inner_text("#hint")
    assert page.locator("#timeline tr.span-attempt").count() == 1
    assert "dps run-local algorithm.yml" in page.inner_text("#snippet-run-local")
    assert page.locator("#outputs img[alt='Preview of plot.svg']").count() == 1
    with page.expect_download() as download:
        page.click("#outputs a[download][aria-label='Download result.txt']")
    saved = Path(download.value.path())
    assert saved.read_text().startswith("checksum ")
    page.fill("#log-q", "bytes")  # the live search keeps only matching lines
    expect(page.locator("#log-stdout")).not_to_contain_text("done")
    page.fill("#log-q", "")
    shots.take(page, "job", narrow=True)

    # -- a CSV batch of 20 from the process page, followed to 20/20 --------------------------
    page.goto(f"{base}/ui/processes/granule_stats:main")
    rows = "\n".join(f"{granule.as_uri()},0,row-{n}" for n in range(20))
    page.fill("#batch-table", f"granule,seconds,tag\n{rows}\n")
    page.click("#batch-form button[type=submit]")
    page.wait_for_url("**/ui/batches/*")
    expect(page.locator("[data-progress]")).to_have_text("20/20", timeout=WAIT)
    expect(page.locator("#batch")).not_to_have_attribute("data-live", "")  # reloaded, final
    assert "20 successful" in page.inner_text("#progress")
    shots.take(page, "batch", narrow=True)
    page.goto(f"{base}/ui/batches")
    shots.take(page, "batches")

    # -- a failure explained in words ---------------------------------------------------------
    page.goto(f"{base}/ui/processes/granule_stats:main")
    page.fill("[name='input:granule']", http_files.url("missing.tif"))
    page.click("#submit button[type=submit]")
    page.wait_for_url("**/ui/jobs/*?done=submitted")
    page.wait_for_selector("#why")  # the page reloads itself when the job ends
    expect(page.locator("#job")).not_to_have_attribute("data-live", "")
    why = page.inner_text("#why")
    assert f"the input {http_files.url('missing.tif')} answered 404" in why, why
    assert "while downloading" in why
    shots.take(page, "job-failed")

    # -- cancel a running job from its page ---------------------------------------------------
    page.goto(f"{base}/ui/processes/granule_stats:main")
    page.fill("[name='input:granule']", granule.as_uri())
    page.fill("[name='input:seconds']", "120")
    page.click("#submit button[type=submit]")
    page.wait_for_url("**/ui/jobs/*?done=submitted")
    running_id = page.url.split("/ui/jobs/")[1].split("?")[0]
    expect(page.locator("[data-field=status]")).to_have_text("running", timeout=WAIT)
    # The chart grows live (attached, not "visible": a flat stretch has no height to show).
    page.locator("#chart svg.series polyline.mem-line").wait_for(state="attached")
    shots.take(page, "job-running")
    page.click("button:has-text('Cancel')")
    page.wait_for_url(f"**/ui/jobs/{running_id}?done=cancel")
    page.locator("h1 .badge-dismissed").wait_for()
    expect(page.locator("#job")).not_to_have_attribute("data-live", "")  # reloaded, final
    assert "cancelled" in page.inner_text("#why")
    assert server.client.status(running_id)["status"] == "dismissed"

    # -- queues, dashboard -----------------------------------------------------------------------
    page.goto(f"{base}/ui/queues")
    assert "dps-worker-512mb" in page.inner_text("table.queues")
    shots.take(page, "queues", narrow=True)
    page.goto(f"{base}/ui/")
    shots.take(page, "dashboard", narrow=True)
    page.goto(f"{base}/ui/jobs")
    shots.take(page, "jobs", narrow=True)

    # -- a secret whose value is never shown again -------------------------------------------------
    value = "s3cr3t-value-never-shown"
    page.goto(f"{base}/ui/secrets")
    page.fill("#secret-name", "EARTHDATA_TOKEN")
    page.fill("#secret-value", value)
    page.click("#add-secret button[type=submit]")
    page.wait_for_url("**/ui/secrets?done=added")
    assert "EARTHDATA_TOKEN" in page.inner_text("#secret-list")
    for html in (page.content(), page.goto(f"{base}/ui/secrets").text()):
        assert value not in html
    assert all(box.input_value() == "" for box in page.locator("input[type=password]").all())
    shots.take(page, "secrets")

    for path in shots.taken:
        data = path.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000, path
