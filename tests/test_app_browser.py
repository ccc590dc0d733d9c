"""The app in a real browser (Playwright driving Debian's chromium, nothing downloaded): upload a clip, move
the token slider, resample, and check that the videos really play, the plotly chart renders and a bad file
shows its message; type a prompt on the Generate tab and check that the clip and its ladder play.
Screenshots go to $FLEXVID_ARTIFACTS or tests/artifacts/."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from test_app_client import running_app

CHROMIUM = "/usr/bin/chromium"
if not os.path.exists(CHROMIUM):
    pytest.skip(f"{CHROMIUM} is missing (CI installs Debian's chromium: apt-get install -y chromium)",
                allow_module_level=True)
from playwright import sync_api  # noqa: E402

pytestmark = pytest.mark.timeout(600)

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "assets" / "examples" / "shapes_two_objects.mp4"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--autoplay-policy=no-user-gesture-required"]

# readyState >= 2 (a current frame), a duration, and a decoded frame that is not one flat colour
PLAYS = """(sel) => {
    const v = document.querySelector(sel);
    if (!v || v.readyState < 2 || !(v.duration > 0) || !v.videoWidth) return null;
    const c = document.createElement('canvas');
    c.width = v.videoWidth; c.height = v.videoHeight;
    const ctx = c.getContext('2d');
    ctx.drawImage(v, 0, 0);
    const d = ctx.getImageData(0, 0, c.width, c.height).data;
    let lo = 255, hi = 0;
    for (let i = 0; i < d.length; i += 4) { lo = Math.min(lo, d[i + 1]); hi = Math.max(hi, d[i + 1]); }
    return {readyState: v.readyState, duration: v.duration, width: v.videoWidth, spread: hi - lo, src: v.src};
}"""


@pytest.fixture(scope="module")
def artifacts():
    folder = Path(os.environ.get("FLEXVID_ARTIFACTS") or REPO / "tests" / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def page(tmp_path_factory, browser):
    with running_app(tmp_path_factory.mktemp("app")) as (url, proc, log):
        pg = browser.new_page(viewport={"width": 1400, "height": 1800})
        pg.outside = []  # requests that left the loopback server
        pg.on("request", lambda r: None if r.url.startswith(("http://127.0.0.1", "blob:", "data:"))
              else pg.outside.append(r.url))
        pg.goto(url, wait_until="networkidle")
        yield pg
        pg.close()


def wait_playing(pg, selector, not_src=None, timeout=60_000):
    """Wait until the <video> under selector plays a new source and return what PLAYS measured."""
    pg.wait_for_function(f"""() => {{ const r = ({PLAYS})({selector!r});
        return r && r.spread > 10 && r.src !== {not_src or ''!r} }}""", timeout=timeout)
    return pg.evaluate(PLAYS, selector)


def test_upload_slider_resample(page, artifacts):
    pg = page
    pg.set_input_files("#clip-in input[type=file]", str(EXAMPLE))
    first = wait_playing(pg, "#compare video", timeout=120_000)
    assert first["duration"] > 0 and first["width"] >= 512 and "compare_k" in first["src"]
    for sel in ("#heatmap video", "#ladder video"):
        assert wait_playing(pg, sel)["readyState"] >= 2
    pg.wait_for_selector("#metrics-plot .main-svg", timeout=30_000)
    assert pg.locator("#metrics-plot .main-svg").count() >= 1
    assert len(pg.input_value("#clip-id textarea, #clip-id input")) == 16
    K = int(pg.get_attribute("#k-slider input[type=range]", "max"))
    assert f"{K} of {K}" in pg.inner_text("#token-caption")
    pg.screenshot(path=str(artifacts / "app_uploaded.png"), full_page=True)

    box = pg.locator("#k-slider input[type=range]").bounding_box()  # drag the slider to its left end
    pg.mouse.click(box["x"] + 2, box["y"] + box["height"] / 2)
    moved = wait_playing(pg, "#compare video", not_src=first["src"])
    assert "compare_k1_" in moved["src"]
    pg.wait_for_function(f"document.querySelector('#token-caption').innerText.includes('1 of {K}')")
    pg.screenshot(path=str(artifacts / "app_k1.png"), full_page=True)

    pg.get_by_text("decoder", exact=True).click()  # closed at first: the results come before settings
    seed_before = pg.input_value("#seed input")
    pg.click("#resample")
    resampled = wait_playing(pg, "#compare video", not_src=moved["src"])
    assert "compare_k1_" in resampled["src"] and pg.input_value("#seed input") != seed_before
    pg.wait_for_selector("#metrics-plot .main-svg")
    pg.screenshot(path=str(artifacts / "app_resampled.png"), full_page=True)
    pg.focus("#k-slider input[type=range]")  # a keyboard's focus on a slider is seen (it showed nothing)
    pg.keyboard.press("Shift+Tab")
    pg.keyboard.press("Tab")
    outline = pg.evaluate("() => { const e = document.activeElement; return [e.type, getComputedStyle(e).outlineStyle] }")
    assert outline == ["range", "solid"], outline
    # a screen reader hears what each video, download link and the token grid are (Gradio named a link by its size)
    assert pg.get_attribute("#compare video", "aria-label") == "original | reconstruction"
    links = pg.eval_on_selector_all("#downloads a", "as => as.map(a => [a.getAttribute('aria-label'), "
                                    "a.getAttribute('download')])")
    assert links and all(said == f"download {name}" for said, name in links), links
    assert {name.rsplit(".", 1)[1] for _, name in links} == {"mp4", "csv", "npz"}
    assert pg.get_attribute("#token-grid img", "alt").startswith("token grid: a row per latent time step")
    grid = pg.get_attribute("#token-grid img", "src")  # the token grid is a file named for its clip and k
    assert "/tokens_k" in grid and grid.endswith(".png"), grid
    # a typo in k's number box: a warning, and the outputs keep what they show (gradio marked each "Error")
    summary = pg.inner_text("#summary")
    pg.fill("#k-slider input[type=number]", "99")
    pg.press("#k-slider input[type=number]", "Enter")
    pg.wait_for_selector(f"text=tokens per time step (k): value 99 is greater than maximum value {K}",
                         timeout=30_000)
    pg.wait_for_timeout(1000)
    assert pg.evaluate(PLAYS, "#compare video")["src"] == resampled["src"] and pg.inner_text("#summary") == summary
    for sel in ("#compare", "#summary", "#metrics-plot", "#downloads"):
        assert "Error" not in pg.inner_text(sel), sel
    pg.screenshot(path=str(artifacts / "app_k_typo.png"), full_page=True)
    # a seed typed and then resample: the page ends on the resampled seed, the one its box shows
    before = wait_playing(pg, "#compare video")["src"]
    pg.fill("#seed input", "777")
    pg.click("#resample")
    wait_playing(pg, "#compare video", not_src=before)
    pg.wait_for_function("() => document.querySelector('#seed input').value !== '777'", timeout=60_000)
    pg.wait_for_timeout(3000)  # (a decode with 777 would land after it)
    box = pg.input_value("#seed input")
    assert f"seed {box})" in pg.inner_text("#summary"), (box, pg.inner_text("#summary"))
    assert not pg.outside, f"the page fetched from outside the server: {pg.outside[:5]}"


def test_bad_file_shows_its_message(page, artifacts, tmp_path):
    pg = page
    bad = tmp_path / "corrupt.mp4"  # the page itself only offers video files for upload
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(5000))
    pg.reload(wait_until="networkidle")  # a fresh page: the upload box is empty again
    pg.get_by_text("decoder", exact=True).click()
    pg.fill("#seed input", "5")  # a seed set before any clip: kept for the clip, no "no clip" message
    pg.press("#seed input", "Enter")
    pg.wait_for_timeout(1500)
    assert "no clip" not in pg.inner_text("body")
    pg.set_input_files("#clip-in input[type=file]", str(bad))
    pg.wait_for_selector("text=not a video or is corrupt", timeout=60_000)
    assert "corrupt.mp4" in pg.inner_text("body")
    # and it stays up to be read: the browser's "Video not playable" notice shares its toast, and closing that
    # notice (as once a playable copy takes an upload's place) used to close the message within 0.2 s
    pg.wait_for_timeout(3000)
    assert "not a video or is corrupt" in pg.inner_text("body")
    pg.screenshot(path=str(artifacts / "app_bad_file.png"), full_page=True)
    assert "Traceback" not in pg.content()


def test_an_unplayable_upload_is_shown_playable(page, artifacts, tmp_path):
    import cv2
    from flexvid import shapes
    pg = page
    pg.reload(wait_until="networkidle")
    src = tmp_path / "opencv_mp4v.mp4"  # OpenCV's default codec, which Chromium cannot play
    w = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"mp4v"), 8, (128, 96))
    for f in shapes.make_clip(3, 1, 17).video:
        w.write(cv2.resize(cv2.cvtColor(f, cv2.COLOR_RGB2BGR), (128, 96)))
    w.release()
    pg.set_input_files("#clip-in input[type=file]", str(src))
    shown = wait_playing(pg, "#clip-in video", timeout=120_000)  # the playable copy took its place
    assert shown["width"] == 128 and shown["duration"] > 0
    assert wait_playing(pg, "#compare video", timeout=120_000)["readyState"] >= 2
    assert len(pg.input_value("#clip-id textarea, #clip-id input")) == 16
    pg.screenshot(path=str(artifacts / "app_mp4v_upload.png"), full_page=True)
    # the browser's notice about the mp4v it could not play is gone with it
    pg.wait_for_function("() => !document.body.innerText.includes('Video not playable')", timeout=10_000)
    assert "Traceback" not in pg.content() and "Error" not in pg.inner_text("body")


def test_generate_from_a_prompt(page, artifacts):
    pg = page
    pg.reload(wait_until="networkidle")
    pg.get_by_role("tab", name="Generate").click()
    pg.get_by_text("sampling", exact=True).click()  # closed at first
    # the prompt's and the class's guidance sliders start at their own model's default (4 and 2.5 here)
    assert float(pg.input_value("#gen-guidance input[type=range]")) == 4.0
    assert float(pg.input_value("#gen-class-guidance input[type=range]")) == 2.5
    pg.fill("#gen-prompt input", "a large red circle moving left")
    pg.fill("#gen-seed input", "7")
    pg.press("#gen-prompt input", "Enter")  # Enter generates
    # both buttons wait while the request and its ladder run, so two requests never mix on the page
    pg.wait_for_function("() => document.querySelector('#gen-button').disabled", timeout=10_000)
    assert pg.is_disabled("#gen-class-button")
    assert pg.is_disabled("#gen-prompt input")  # nor can Enter start one: it once mixed two on the page
    pg.click("#gen-new-seed")  # a control changed while the clip is made: the ladder is still the clip's request
    pg.wait_for_function("() => document.querySelector('#gen-seed input').value !== '7'", timeout=10_000)
    clip = wait_playing(pg, "#gen-video video", timeout=120_000)
    assert clip["readyState"] >= 2 and clip["duration"] > 0 and clip["width"] == 256 and "text_k" in clip["src"]
    K = int(pg.get_attribute("#gen-k input[type=range]", "max"))
    pg.wait_for_function(f"document.querySelector('#gen-summary').innerText.includes('of {K}')")
    ladder = wait_playing(pg, "#gen-ladder video", timeout=120_000)
    assert ladder["readyState"] >= 2 and "text_ladder" in ladder["src"]
    assert "| k | tokens | bits |" not in pg.inner_text("#gen-ladder-summary")  # rendered as a table
    assert pg.locator("#gen-ladder-summary table").count() == 1
    assert "seed 7," in pg.inner_text("#gen-summary") and "seed 7," in pg.inner_text("#gen-ladder-summary")
    pg.wait_for_function("() => !document.querySelector('#gen-button').disabled", timeout=30_000)
    assert pg.is_enabled("#gen-class-button") and pg.is_enabled("#gen-prompt input")
    pg.screenshot(path=str(artifacts / "app_generate.png"), full_page=True)

    pg.uncheck("#gen-with-ladder input")  # the clip alone: the ladder leaves the page, and no message
    pg.wait_for_selector("#gen-ladder", state="hidden", timeout=10_000)
    pg.fill("#gen-prompt input", "a small blue square moving up")
    pg.click("#gen-button")
    clip = wait_playing(pg, "#gen-video video", not_src=clip["src"], timeout=120_000)
    pg.wait_for_function("document.querySelector('#gen-summary').innerText.includes('blue square')")
    pg.wait_for_function("() => !document.querySelector('#gen-button').disabled", timeout=30_000)
    assert pg.evaluate("() => document.querySelector('#gen-ladder video')?.getAttribute('src') || ''") == ""
    assert "Error" not in pg.inner_text("body")
    pg.check("#gen-with-ladder input")
    pg.wait_for_selector("#gen-ladder", state="visible", timeout=10_000)

    pg.fill("#gen-prompt input", "   ")  # an empty prompt: the page says so, the server keeps serving
    pg.click("#gen-button")
    pg.wait_for_selector("text=the prompt is empty", timeout=30_000)
    assert "Traceback" not in pg.content()
    pg.wait_for_function("() => !document.querySelector('#gen-button').disabled", timeout=10_000)  # usable again
    pg.wait_for_timeout(1000)  # the refused prompt stays in sight to be corrected: no "Error" mark over it
    assert pg.evaluate("""() => { const i = document.querySelector('#gen-prompt input'), r = i.getBoundingClientRect();
        return document.elementFromPoint(r.x + r.width / 2, r.y + r.height / 2) === i }""")
    pg.fill("#gen-prompt input", "a red circle")  # and it takes the correction
    assert pg.input_value("#gen-prompt input") == "a red circle"
    # the last clip and its ladder are gone, not left to pass for this request's answer
    assert f"of {K}" not in pg.inner_text("#gen-summary") and not pg.inner_text("#gen-ladder-summary").strip()
    assert pg.evaluate("() => [...document.querySelectorAll('#gen-video video, #gen-ladder video')]"
                       ".filter(v => v.getAttribute('src')).length") == 0
    # a small random tokenizer here: no note about the embedded default models' shapes world
    assert pg.locator("#embedded-note").count() == 0
    assert not pg.outside, f"the page fetched from outside the server: {pg.outside[:5]}"


def test_on_a_phone_the_results_follow_the_upload(page, artifacts):
    """At 390 x 844 the upload box shows on the first screen, it shows the work in progress, and the
    comparison video is less than a screen below it (the settings are folded away)."""
    pg = page
    pg.set_viewport_size({"width": 390, "height": 844})
    try:
        pg.reload(wait_until="networkidle")
        box = pg.locator("#clip-in").bounding_box()
        assert box["y"] < 844 - 200, box  # most of the upload box on the first screen
        pg.set_input_files("#clip-in input[type=file]", str(EXAMPLE))
        wait_playing(pg, "#compare video", timeout=120_000)
        upload, compare = pg.locator("#clip-in").bounding_box(), pg.locator("#compare").bounding_box()
        gap = compare["y"] - (upload["y"] + upload["height"])
        print(f"phone: upload box at y = {upload['y']:.0f}, comparison {gap:.0f} px below it")
        assert 0 < gap < 844 - 100, gap
        assert pg.locator("#k-slider").bounding_box()["y"] > compare["y"]  # k sits under what it moves
        pg.screenshot(path=str(artifacts / "app_phone.png"), full_page=True)
    finally:
        pg.set_viewport_size({"width": 1400, "height": 1800})


def test_on_a_phone_generate_shows_its_progress_beside_the_button(page, artifacts):
    """At 390 x 844 the generated clip is screens below the button: the progress shows beside it too, within
    a screen of the button."""
    pg = page
    pg.set_viewport_size({"width": 390, "height": 844})
    try:
        pg.reload(wait_until="networkidle")
        pg.get_by_role("tab", name="Generate").click()
        pg.fill("#gen-prompt input", "a small green square moving up")
        pg.click("#gen-button")
        shown = pg.wait_for_selector("#gen-status .progress-text", timeout=60_000)
        shown.scroll_into_view_if_needed()
        progress = shown.bounding_box()
        seen = pg.evaluate("""([x, y]) => !!document.elementFromPoint(x, y)?.closest('#gen-status')""",
                           [progress["x"] + progress["width"] / 2, progress["y"] + progress["height"] / 2])
        assert seen, "the progress is clipped away"  # (a box of height 0 hid it, its bounding box still there)
        button = pg.locator("#gen-button").bounding_box()
        assert abs(progress["y"] - button["y"]) < 844 / 2, (progress, button)
        pg.wait_for_function("() => !document.querySelector('#gen-button').disabled", timeout=120_000)
        pg.screenshot(path=str(artifacts / "app_phone_generate.png"), full_page=True)
    finally:
        pg.set_viewport_size({"width": 1400, "height": 1800})


GATED_PREVIEW = """import os, time
from flexvid import runtime
_made = runtime.Runtime.playable_preview
def _gated(self, path):
    for _ in range(1200):  # until the test opens the gate (2 minutes at most)
        if os.path.exists({gate!r}):
            os.remove({gate!r})
            break
        time.sleep(0.1)
    out = _made(self, path)
    open({done!r}, "a").close()
    return out
runtime.Runtime.playable_preview = _gated"""


def test_a_slow_playable_copy_never_replaces_what_was_picked_meanwhile(browser, tmp_path_factory, tmp_path,
                                                                        artifacts):
    """The playable copy of an unplayable upload takes a while (here the server makes it only when the test
    opens a gate): an example picked, or the box cleared, in the meantime stays what the page shows and
    tokenizes; left alone, the copy takes the upload's place."""
    import time

    import cv2
    from flexvid import shapes
    src = tmp_path / "opencv_mp4v.mp4"
    w = cv2.VideoWriter(str(src), cv2.VideoWriter_fourcc(*"mp4v"), 8, (128, 96))
    for f in shapes.make_clip(3, 2, 17).video:
        w.write(cv2.resize(cv2.cvtColor(f, cv2.COLOR_RGB2BGR), (128, 96)))
    w.release()
    gate, done = tmp_path / "gate", tmp_path / "done"

    def make_the_copy(pg):
        gate.touch()
        deadline = time.time() + 120
        while not done.exists():
            assert time.time() < deadline, "the server made no copy"
            time.sleep(0.1)
        done.unlink()
        pg.wait_for_timeout(2_000)  # the swap's round trip, had it put the copy in

    before = GATED_PREVIEW.format(gate=str(gate), done=str(done))
    with running_app(tmp_path_factory.mktemp("slow"), generators=False, before=before) as (url, proc, log):
        pg = browser.new_page(viewport={"width": 1400, "height": 1800})
        try:
            pg.goto(url, wait_until="networkidle", timeout=120_000)
            clip_id = "#clip-id textarea, #clip-id input"
            src_now = "() => document.querySelector('#clip-in video')?.getAttribute('src') || ''"

            pg.set_input_files("#clip-in input[type=file]", str(src))  # unplayable: a copy is on its way
            pg.wait_for_function(f"() => document.querySelector({clip_id!r}).value.length == 16", timeout=60_000)
            uploaded = pg.input_value(clip_id)
            assert "opencv_mp4v" in pg.evaluate(src_now)  # the upload itself, the copy not made yet
            pg.get_by_role("button", name="shapes: one object (4 s)").click()  # picked meanwhile
            pg.wait_for_function(f"() => !['', {uploaded!r}].includes(document.querySelector({clip_id!r}).value)",
                                 timeout=60_000)
            picked = pg.input_value(clip_id)
            assert "shapes_one_object" in wait_playing(pg, "#clip-in video")["src"]
            make_the_copy(pg)
            assert pg.input_value(clip_id) == picked and "shapes_one_object" in pg.evaluate(src_now)
            pg.screenshot(path=str(artifacts / "app_slow_copy_example.png"), full_page=True)

            pg.reload(wait_until="networkidle")  # an unplayable upload, then the box cleared (X) meanwhile
            pg.set_input_files("#clip-in input[type=file]", str(src))
            pg.wait_for_function(f"() => document.querySelector({clip_id!r}).value.length == 16", timeout=60_000)
            assert "opencv_mp4v" in pg.evaluate(src_now)
            pg.locator("#clip-in button[aria-label='Clear']").first.click()
            pg.wait_for_function(f"() => document.querySelector({clip_id!r}).value == ''", timeout=30_000)
            make_the_copy(pg)
            assert pg.input_value(clip_id) == "" and pg.locator("#clip-in video").count() == 0

            pg.set_input_files("#clip-in input[type=file]", str(src))  # left alone, the copy does take its place
            pg.wait_for_function(f"() => document.querySelector({clip_id!r}).value.length == 16", timeout=60_000)
            upload = pg.evaluate(src_now)
            make_the_copy(pg)
            shown = wait_playing(pg, "#clip-in video", timeout=60_000)
            # the copy (the upload does not play), named as the upload
            assert shown["src"] != upload and "opencv_mp4v" in shown["src"] and shown["width"] == 128
        finally:
            pg.close()
        assert "Traceback" not in log.read_text()


def test_a_clip_the_server_forgot_is_read_again_from_the_box(browser, tmp_path_factory, tmp_path):
    """A busy Space keeps cache_clips clips: the page's clip was forgotten once that many others came, and
    moving the slider said "unknown clip ... upload it again" though the video was still in the box. Now
    the page reads it again from the box (the API's /decode still says unknown clip)."""
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    config = tmp_path / "space.yaml"
    config.write_text(f"app:\n  examples: {REPO / 'assets' / 'examples'}\n  runtime:\n    cache_clips: 1\n")
    with running_app(tmp_path_factory.mktemp("forget"), config=config, generators=False) as (url, proc, log):
        pg = browser.new_page(viewport={"width": 1400, "height": 1800})
        try:
            pg.goto(url, wait_until="networkidle", timeout=120_000)
            pg.set_input_files("#clip-in input[type=file]", str(EXAMPLE))
            first = wait_playing(pg, "#compare video", timeout=120_000)
            mine = pg.input_value("#clip-id textarea, #clip-id input")
            other = REPO / "assets" / "examples" / "shapes_one_object.mp4"
            client = Client(url, verbose=False, download_files=str(tmp_path / "downloads"))
            client.predict(handle_file(str(other)), 2, 1, 1.0, "cfg", 0, api_name="/tokenize")  # mine is forgotten
            with pytest.raises(AppError, match="unknown clip"):
                client.predict(mine, 2, 1, 1.0, "cfg", 0, api_name="/decode")
            box = pg.locator("#k-slider input[type=range]").bounding_box()
            pg.mouse.click(box["x"] + 2, box["y"] + box["height"] / 2)  # k = 1
            moved = wait_playing(pg, "#compare video", not_src=first["src"])
            assert "compare_k1_" in moved["src"] and pg.input_value("#clip-id textarea, #clip-id input") == mine
            assert "unknown clip" not in pg.inner_text("body")
        finally:
            pg.close()
        assert "Traceback" not in log.read_text()
