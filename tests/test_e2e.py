"""The studio in a real browser (Debian Chromium via Playwright) on the real default model."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.real_model]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]  # fmt: skip
ROOT = Path(__file__).resolve().parent.parent
SHOTS = os.environ.get("ALIGNEZ_SCREENSHOTS")  # a folder: save before/after screenshots there


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    port = free_port()
    env = dict(os.environ, GRADIO_SERVER_PORT=str(port), GRADIO_ANALYTICS_ENABLED="False",
               HF_HUB_OFFLINE="1")  # fmt: skip
    log = (tmp_path_factory.mktemp("app") / "app.log").open("w")
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the app exited early; see {log.name}")
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        pytest.fail("the app did not serve a page within 180 s")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(
            "Debian chromium is missing: `make test` installs it (apt-get install chromium)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield browser
        browser.close()


def set_number(page, elem_id: str, value: str, enter: bool = True) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(value)
    if enter:
        box.press("Enter")


def answer(page, column: str) -> str:
    return page.inner_text(f"#{column}-answer .answer-text").strip()


def generate(page, prompt: str) -> dict[str, str]:
    """Generate and wait for *this* run's 'Done' (the last run's line is still there at first)."""
    status = "#gen-status [data-testid=markdown]"  # the line itself, not the progress overlay
    before = page.inner_text(status)
    page.fill("#prompt textarea", prompt)
    page.click("#generate")
    page.wait_for_function(
        "([sel, before]) => { const t = document.querySelector(sel).innerText;"
        " return t.includes('Done in') && t !== before; }",
        arg=[status, before],
        timeout=240_000,
    )
    return {c: answer(page, c) for c in ("base", "edited", "prompted")}


def test_fit_steer_down_compare_with_prompting_and_a_second_session_stays_separate(
    app_url, browser
):
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    vader = SentimentIntensityAnalyzer()
    first = browser.new_context(viewport={"width": 1500, "height": 1900})
    page = first.new_page()
    page.goto(app_url)
    page.wait_for_selector("#fit")

    # Bad input first: nothing is lost and the page keeps working.
    page.click("#generate")
    page.wait_for_selector("#gen-status:has-text('Type a prompt first')")
    page.fill("#positive textarea, #positive input", " ")
    page.click("#fit")
    page.wait_for_selector("#fit-status:has-text('positive must be a non-empty')")

    page.fill("#positive textarea, #positive input", "cheerful")
    page.fill("#axis-name textarea, #axis-name input", "cheerful")
    set_number(page, "n-queries", "8")
    page.click("#fit")
    page.wait_for_selector("#fit-status:has-text('Fitted cheerful')", timeout=300_000)
    assert page.locator("#slider-0").is_visible()
    assert "calibrated clean edge" in page.inner_text("#slider-0")

    # A second browser session at the same time sees none of the first one's axes.
    second = browser.new_context()
    other = second.new_page()
    other.goto(app_url)
    other.wait_for_selector("#fit")
    assert not other.locator("#slider-0").is_visible()
    other.fill("#prompt textarea", "Say hello.")
    other.click("#generate")
    other.wait_for_selector("#gen-status:has-text('base only')", timeout=120_000)

    # Regression: a value typed into the slider's box and Generate clicked at once is used.
    set_number(page, "slider-0", "1", enter=False)
    up = generate(page, "Describe your morning commute.")
    assert "cheerful +1.0" in page.inner_text("#edited-answer .answer-label")
    assert up["prompted"] and "Prompted: cheerful" in page.inner_text("#prompted-answer")
    if SHOTS:
        page.screenshot(path=f"{SHOTS}/studio-plus-1.png", full_page=True)

    # The direction: at −1 the edited answers read gloomier than the base answers (VADER).
    set_number(page, "slider-0", "-1", enter=False)
    answers = [generate(page, p) for p in ("What should I do this weekend?",
                                           "Describe your morning commute.")]  # fmt: skip
    assert "cheerful -1.0" in page.inner_text("#edited-answer .answer-label").replace("−", "-")
    tone = {c: sum(vader.polarity_scores(a[c])["compound"] for a in answers) / 2
            for c in ("base", "edited", "prompted")}  # fmt: skip
    assert tone["edited"] < tone["base"] - 0.2, (tone, answers)
    assert all(a["prompted"] for a in answers)
    assert "Prompted: gloomy" in page.inner_text("#prompted-answer")
    page.wait_for_selector("#projection .js-plotly-plot .scatterlayer .trace")
    assert page.locator("#projection .scatterlayer .trace").count() >= 7  # 2 clouds, 2 poles, 3
    assert page.locator("#spectrum .js-plotly-plot").count() == 1
    if SHOTS:
        page.screenshot(path=f"{SHOTS}/studio-minus-1.png", full_page=True)

    # The other session still has no axis after the first one generated.
    other.reload()
    other.wait_for_selector("#fit")
    assert not other.locator("#slider-0").is_visible()
    first.close()
    second.close()


def test_uploading_a_non_pack_shows_a_message(app_url, browser, tmp_path):
    page = browser.new_page()
    page.goto(app_url)
    page.wait_for_selector("#fit")
    bogus = tmp_path / "bogus.safetensors"
    bogus.write_bytes(b"\x80\x04not a pack at all")
    page.get_by_text("Manage axes").click()
    with page.expect_file_chooser() as chooser:
        page.click("#upload-pack")
    chooser.value.set_files(str(bogus))
    page.wait_for_selector("#axes-status:has-text('pickle')", timeout=60_000)
    page.close()


def test_a_pre_fitted_preset_steers_at_once_and_custom_poles_hide_it(app_url, browser):
    """The demo path: no fit, the preset's shipped pack, slider −1 reads gloomier at once."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    vader = SentimentIntensityAnalyzer()
    context = browser.new_context(viewport={"width": 1500, "height": 1900})
    page = context.new_page()
    page.goto(app_url)
    page.click("#use-prefitted")  # the cheerful preset is chosen when the page opens
    page.wait_for_selector("#fit-status:has-text('Loaded the pre-fitted cheerful')")
    assert "calibrated clean edge" in page.inner_text("#slider-0")
    set_number(page, "slider-0", "-1", enter=False)
    answers = [generate(page, p) for p in ("What should I do this weekend?",
                                           "Describe your morning commute.")]  # fmt: skip
    tone = {c: sum(vader.polarity_scores(a[c])["compound"] for a in answers) / 2
            for c in ("base", "edited")}  # fmt: skip
    assert tone["edited"] < tone["base"] - 0.2, (tone, answers)
    # Typed poles (keystrokes, as a user types) make a custom axis: no pre-fitted pack, and the
    # name follows the last keystroke, not the first.
    pole = page.locator("#positive textarea, #positive input")
    pole.fill("")
    pole.press_sequentially("pirate")
    page.wait_for_selector("#use-prefitted", state="hidden")
    name = "#axis-name textarea, #axis-name input"
    page.wait_for_function(
        "sel => document.querySelector(sel).value === 'pirate-gloomy'", arg=name, timeout=10_000
    )
    context.close()


def test_the_pad_sets_both_sliders_and_shades_where_the_pair_stays_fluent(app_url, browser):
    """Two pre-fitted axes: the pad appears, its region is mapped, and a click on a cell sets
    both sliders, which the next answer's label shows."""
    context = browser.new_context(viewport={"width": 1500, "height": 1900})
    page = context.new_page()
    page.goto(app_url)
    page.click("#use-prefitted")  # cheerful, the preset chosen when the page opens
    page.wait_for_selector("#fit-status:has-text('Loaded the pre-fitted cheerful')")
    assert not page.locator("#pad").is_visible()  # one axis: no pad
    page.click("#preset input")
    page.get_by_role("option", name="simple", exact=True).click()
    page.click("#use-prefitted")
    page.wait_for_selector("#fit-status:has-text('Loaded the pre-fitted simple')")
    page.wait_for_selector("#pad", state="visible")

    page.click("#pad-map")
    page.wait_for_selector("#pad-status:has-text('slider pairs stay fluent')", timeout=300_000)
    shaded = page.locator("#pad .pad-clean, #pad .pad-loops")
    assert shaded.count() == 25
    assert "pad-clean" in (page.get_attribute("#pad-12", "class") or "")  # both at 0: base
    assert "●" in page.inner_text("#pad-12")  # the sliders are at 0, 0

    page.click("#pad-18")  # fourth column from the left (cheerful +1), fourth row (simple −1)
    page.wait_for_selector("#pad-status:has-text('cheerful +1, simple -1')")
    page.wait_for_function(
        "() => Number(document.querySelector('#slider-0 input[type=number]').value) === 1"
        " && Number(document.querySelector('#slider-1 input[type=number]').value) === -1",
        timeout=20_000,
    )
    assert "●" in page.inner_text("#pad-18")
    if SHOTS:
        page.locator("#pad").screenshot(path=f"{SHOTS}/studio-pad.png")
    generate(page, "Describe your morning commute.")
    label = page.inner_text("#edited-answer .answer-label").replace("−", "-")
    assert "cheerful +1.0" in label and "simple -1.0" in label
    context.close()
