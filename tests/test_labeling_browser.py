"""A real browser (Debian's headless Chromium driven by Playwright) annotates the pairwise project with
the hotkeys; the pull must find exactly those choices in the preference store. Two annotator accounts
(the admin and one who signs up through the organisation's invite link) answer the same pair of a
project that asks for two answers per task.

Set DRIFTSKETCH_SCREENSHOT_DIR to keep screenshots of both project UIs (docs/img/ was made this way).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest

from driftsketch.data import load_dataset
from dpo.store import PreferenceStore
from labeling.config import ProjectsConfig
from labeling.projects import set_overlap, setup_projects
from labeling.pull import pull_annotations
from labeling.push import PairBatch, RatingBatch, push_tasks

pytestmark = pytest.mark.slow
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
KEYS = [("1", False), ("2", True), ("3", False), ("2", False)]  # (choice hotkey, also press 4 = both bad)


@pytest.fixture
def browser_page():
    if not CHROMIUM.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} missing: scripts/install_labelstudio.sh installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser.new_page(viewport={"width": 1280, "height": 860})
        finally:
            browser.close()


def _login(page, server) -> None:
    page.goto(f"{server.info.url}/user/login/")
    page.fill("input[name=email]", server.email)
    page.fill("input[name=password]", server.password)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/(projects/?)?$"), timeout=30_000)


def _annotate_with_hotkeys(page, url: str, project_id: int, shots: Path | None) -> dict[int, tuple[str, bool]]:
    """Open the labeling stream, press the hotkeys on each task, submit with Ctrl+Enter."""
    page.goto(f"{url}/projects/{project_id}/data?labeling=1")
    pressed = {}
    for i, (key, both_bad) in enumerate(KEYS):
        page.get_by_text("Which is the better").wait_for(timeout=60_000)
        page.wait_for_timeout(300)  # let the task's hotkeys bind
        page.keyboard.press(key)
        if both_bad:
            page.keyboard.press("4")
        if shots and i == 1:
            page.screenshot(path=str(shots / "labelstudio-pairwise.png"))
        with page.expect_response(lambda r: "/annotations" in r.url and r.request.method == "POST") as resp:
            page.keyboard.press("Control+Enter")
        assert resp.value.status == 201, resp.value.text()
        task_id = int(re.search(r"/api/tasks/(\d+)/annotations", resp.value.url).group(1))
        pressed[task_id] = (key, both_bad)
    return pressed


def _rating_screenshot(page, url: str, project_id: int, shots: Path) -> None:
    page.goto(f"{url}/projects/{project_id}/data?labeling=1")
    page.get_by_text("How good is this").wait_for(timeout=60_000)
    page.locator(".ant-rate-star").nth(3).click()
    page.wait_for_timeout(300)
    page.screenshot(path=str(shots / "labelstudio-rating.png"))


def test_hotkeys_in_a_real_browser_reach_the_preference_store(labelstudio, browser_page, tmp_path):
    ls, store = labelstudio.client(), PreferenceStore(tmp_path / "prefs")
    ids = setup_projects(ls, ProjectsConfig(pairwise_title="DriftSketch pairwise (browser test)",
                                           rating_title="DriftSketch rating (browser test)"))
    data = load_dataset("builtin")
    a = np.arange(len(KEYS)) * 400  # one sketch each of different classes
    push_tasks(ls, ids["pairwise"], PairBatch(data.beziers[a], data.beziers[a + 1], data.labels[a], data.class_names),
               store=store, checkpoint="ck-browser", svg_dir=tmp_path / "svg", progress=False, seed=1)
    push_tasks(ls, ids["rating"], RatingBatch(data.beziers[a[:1]], data.labels[a[:1]], data.class_names),
               store=store, checkpoint="ck-browser", svg_dir=tmp_path / "svg", progress=False)
    shots = Path(os.environ["DRIFTSKETCH_SCREENSHOT_DIR"]) if os.environ.get("DRIFTSKETCH_SCREENSHOT_DIR") else None
    _login(browser_page, labelstudio)
    pressed = _annotate_with_hotkeys(browser_page, labelstudio.info.url, ids["pairwise"], shots)
    if shots:
        _rating_screenshot(browser_page, labelstudio.info.url, ids["rating"], shots)
    report = pull_annotations(ls, [ids["pairwise"]], store, cursor_path=tmp_path / "cursor.json")
    assert report.new_records == len(KEYS) and len(pressed) == len(KEYS)
    tasks = {t.id: t for t in ls.tasks.list(project=ids["pairwise"])}
    for rec in store.records():
        key, both_bad = pressed[rec.source["task"]]
        left = tasks[rec.source["task"]].data["left"]
        screen = {"1": "A", "2": "B", "3": "tie"}[key]
        want = "tie" if screen == "tie" else (left if screen == "A" else {"a": "b", "b": "a"}[left])
        assert (rec.preference, rec.both_bad, rec.left) == (want, both_bad, left)
        assert rec.annotator == labelstudio.email and rec.lead_time and rec.lead_time > 0


def _shown_images(page, url: str, project_id: int) -> list[bytes]:
    """Open the project's labeling stream: screenshots of the two sketches as the annotator sees them."""
    page.goto(f"{url}/projects/{project_id}/data?labeling=1")
    page.get_by_text("Which is the better").wait_for(timeout=60_000)
    sketch = ("i => i.complete && i.naturalWidth > 0 && (i.src.startsWith('blob:') || i.src.includes('local-files')"
              " || i.src.startsWith('data:image/png'))")  # Label Studio shows fetched images as blob: URLs
    page.wait_for_function(f"() => [...document.images].filter({sketch}).length >= 2", timeout=30_000)
    page.evaluate(f"() => [...document.images].filter({sketch}).forEach((i, n) => i.setAttribute('data-sketch', n))")
    return [page.locator(f'[data-sketch="{n}"]').screenshot() for n in range(2)]


def test_url_and_data_uri_tasks_look_the_same_to_annotators(labelstudio, browser_page, tmp_path):
    """The same pair pushed with images by URL (served by Label Studio's local-files storage) and inlined
    as data URIs: the annotator's page shows identical pixels."""
    from labeling.config import PushConfig
    from labeling.images import TaskImages

    ls, store = labelstudio.client(), PreferenceStore(tmp_path / "prefs")
    data = load_dataset("builtin")
    batch = PairBatch(data.beziers[[5]], data.beziers[[6]], data.labels[[5]], data.class_names)
    fetched: list[str] = []  # local-files requests of the page, with their HTTP status
    browser_page.on("response", lambda r: fetched.append(f"{r.status} {r.url}") if "/data/local-files/" in r.url
                    else None)
    _login(browser_page, labelstudio)
    shown = {}
    for mode in ("url", "data_uri"):
        ids = setup_projects(ls, ProjectsConfig(pairwise_title=f"DriftSketch pairwise ({mode})",
                                               rating_title=f"DriftSketch rating ({mode})"))
        images = TaskImages.from_config(PushConfig(image_mode=mode), labelstudio.cfg)
        push_tasks(ls, ids["pairwise"], batch, store=store, checkpoint="ck-modes", images=images, progress=False)
        before = len(fetched)
        shown[mode] = (_shown_images(browser_page, labelstudio.info.url, ids["pairwise"]), fetched[before:])
    url_fetches = shown["url"][1]
    assert len(url_fetches) == 2 and all(f.startswith("200 ") and "?d=png/s" in f for f in url_fetches), url_fetches
    assert shown["data_uri"][1] == []  # inline: nothing fetched
    assert shown["url"][0] == shown["data_uri"][0]  # pixel for pixel


def _signup(page, url: str, token: str, email: str, password: str) -> None:
    """Create an annotator account through the invite link, as a person would; ends logged in."""
    page.goto(f"{url}/user/signup/?token={token}")
    page.fill("input[name=email]", email)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/(projects/?)?$"), timeout=30_000)


def _answer_next(page, url: str, project_id: int, key: str) -> int:
    """Open the labeling stream, press ``key`` on the task it shows, submit; returns the task id."""
    page.goto(f"{url}/projects/{project_id}/data?labeling=1")
    page.get_by_text("Which is the better").wait_for(timeout=60_000)
    page.wait_for_timeout(300)
    page.keyboard.press(key)
    with page.expect_response(lambda r: "/annotations" in r.url and r.request.method == "POST") as resp:
        page.keyboard.press("Control+Enter")
    assert resp.value.status == 201, resp.value.text()
    return int(re.search(r"/api/tasks/(\d+)/annotations", resp.value.url).group(1))


def test_two_annotator_accounts_answer_the_same_pair(labelstudio, browser_page, tmp_path):
    import httpx

    ls, store = labelstudio.client(), PreferenceStore(tmp_path / "prefs")
    ids = setup_projects(ls, ProjectsConfig(pairwise_title="DriftSketch pairwise (two annotators)",
                                           rating_title="DriftSketch rating (two annotators)"), ("pairwise",))
    set_overlap(ls, ids["pairwise"], 2)
    data = load_dataset("builtin")
    push_tasks(ls, ids["pairwise"], PairBatch(data.beziers[[0]], data.beziers[[1]], data.labels[[0]], data.class_names),
               store=store, checkpoint="ck-two", svg_dir=tmp_path / "svg", progress=False)
    url = labelstudio.info.url
    _login(browser_page, labelstudio)
    first = _answer_next(browser_page, url, ids["pairwise"], "1")
    (task,) = ls.tasks.list(project=ids["pairwise"])
    assert task.id == first and task.total_annotations == 1  # answered once, still wanted by a second person
    invite = httpx.get(f"{url}/api/invite", headers={"Authorization": f"Token {labelstudio.conn.api_key}"}).json()
    second_email = "second.annotator@driftsketch.test"
    context = browser_page.context.browser.new_context(viewport={"width": 1280, "height": 860})
    try:  # a separate browser profile: the second person's own cookies and session
        page2 = context.new_page()
        _signup(page2, url, invite["token"], second_email, "Annot-8472-pw")
        assert _answer_next(page2, url, ids["pairwise"], "2") == first  # the same pair, seen after the first answer
    finally:
        context.close()
    report = pull_annotations(ls, [ids["pairwise"]], store, cursor_path=tmp_path / "cursor.json")
    assert report.new_records == 2
    recs = {r.annotator: r for r in store.records()}
    assert set(recs) == {labelstudio.email, second_email}
    left = task.data["left"]
    right = "b" if left == "a" else "a"
    assert (recs[labelstudio.email].preference, recs[second_email].preference) == (left, right)
    assert {r.source["task"] for r in recs.values()} == {first}
