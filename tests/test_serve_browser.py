"""The page of `cyclegan serve` in a real browser: Debian's Chromium driven by Playwright, against a real server.

The browser is the system's (/usr/bin/chromium), never one Playwright downloads. What the page shows is checked
against the API itself: the output image's pixels, read back from the <img> through a canvas, must equal the
PNG that POST /v1/translate returns for the same image, model and direction.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from PIL import Image

from cyclegan.data.synthetic import render_scene

from .serve_helpers import RunningServer, running_server, tiny_run

CHROMIUM = Path(os.environ.get("CYCLEGAN_CHROMIUM", "/usr/bin/chromium"))  # Debian's; another Chromium elsewhere
INSTALL = ("the browser tests need Debian's Chromium and Playwright for Python: `apt-get install -y chromium` and "
           "`pip install playwright` (the tests use /usr/bin/chromium; do not run `playwright install`)")
LAUNCH_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run"]
TOKEN = "page-test-token-4f1c"
WAIT_MS = 30_000  # a tiny model on a busy 2-core machine answers in well under a second; this only bounds a hang

# The shown <img>'s pixels at its natural size, drawn into a canvas.
PIXELS_JS = """(selector) => {
  const image = document.querySelector(selector);
  const canvas = document.createElement("canvas");
  canvas.width = image.naturalWidth;
  canvas.height = image.naturalHeight;
  const context = canvas.getContext("2d");
  context.drawImage(image, 0, 0);
  return {width: canvas.width, height: canvas.height,
          rgba: Array.from(context.getImageData(0, 0, canvas.width, canvas.height).data)};
}"""
# A new output has been shown: visible, decoded, and not the one shown before (blob URLs are never reused).
SHOWN_JS = """(previous) => {
  const image = document.querySelector("#output-image");
  return !image.hidden && image.complete && image.naturalWidth > 0 && image.src !== previous;
}"""
# Whether a blob URL still loads as an image (a revoked one does not).
LOADS_JS = """(url) => new Promise((resolve) => {
  const probe = new Image();
  probe.onload = () => resolve(true);
  probe.onerror = () => resolve(false);
  probe.src = url;
})"""

# Drop an image on the drop zone, or paste it, as a person would (the same events, with a File in them).
GIVE_FILE_JS = """({event, name, bytes}) => {
  const data = new DataTransfer();
  data.items.add(new File([new Uint8Array(bytes)], name, {type: "image/png"}));
  const target = document.querySelector("#drop");
  target.dispatchEvent(event === "drop"
    ? new DragEvent("drop", {dataTransfer: data, bubbles: true, cancelable: true})
    : new ClipboardEvent("paste", {clipboardData: data, bubbles: true, cancelable: true}));
}"""
# Record every text #status shows and each time the <progress> bar appears, in order.
RECORD_STATUS_JS = """() => {
  window.shownStatus = [];
  new MutationObserver((records) => {
    for (const record of records) {
      if (record.type === "attributes") {
        if (!record.target.hidden) window.shownStatus.push("progress shown");
      } else {
        for (const node of record.addedNodes) window.shownStatus.push(node.textContent);
      }
    }
  }).observe(document.querySelector(".state"), {childList: true, subtree: true, attributes: true,
                                                attributeFilter: ["hidden"]});
}"""


def scene_png(index: int, size: int, box: tuple[int, int, int, int]) -> bytes:
    """A street scene of the built-in data set, cropped to `box` (so not square), as PNG bytes."""
    photo = render_scene(7, index, size)[1].crop(box)
    buffer = io.BytesIO()
    photo.save(buffer, "png")
    return buffer.getvalue()


LANDSCAPE = scene_png(0, 96, (0, 16, 96, 80))  # 96 x 64
PORTRAIT = scene_png(1, 96, (16, 0, 64, 96))  # 48 x 96


def png_file(name: str, data: bytes) -> dict[str, object]:
    return {"name": name, "mimeType": "image/png", "buffer": data}


def api_rgba(server: RunningServer, data: bytes, model: str, direction: str, token: str | None = None
             ) -> np.ndarray:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = httpx.post(server.url + "v1/translate", params={"model": model, "direction": direction},
                          content=data, headers=headers, timeout=60)
    assert response.status_code == 200, response.text
    return np.asarray(Image.open(io.BytesIO(response.content)).convert("RGBA"))


def shown_rgba(page, selector: str = "#output-image") -> np.ndarray:
    shown = page.evaluate(PIXELS_JS, selector)
    return np.array(shown["rgba"], dtype=np.uint8).reshape(shown["height"], shown["width"], 4)


def wait_for_output(page, previous: str = "") -> str:
    """Wait until a new output image is shown; its blob URL."""
    page.wait_for_function(SHOWN_JS, arg=previous, timeout=WAIT_MS)
    return page.get_attribute("#output-image", "src")


# ---- Fixtures: one model, two servers (open and with a token), one browser ----------------------------------

@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return tiny_run(tmp_path_factory.mktemp("page_model"))


@pytest.fixture(scope="module")
def server(model) -> Iterator[RunningServer]:
    with running_server(str(model)) as started:
        yield started


@pytest.fixture(scope="module")
def token_server(model) -> Iterator[RunningServer]:
    with running_server(str(model), "--token", TOKEN) as started:
        yield started


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} is missing: {INSTALL}")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail(f"Playwright for Python is missing: {INSTALL}")
    profile = tempfile.mkdtemp(prefix="cyclegan-chromium-")
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                user_data_dir=profile, executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS)
            yield context
            context.close()
    finally:
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def requests() -> list[str]:
    """Every URL the test's pages requested."""
    return []


@pytest.fixture
def choosers() -> list[object]:
    """Every file chooser the test's pages opened (Playwright answers them instead of a dialog)."""
    return []


@pytest.fixture
def open_page(browser, requests, choosers):
    """open_page(server, path="", width=1280, height=800): a fresh tab (fresh sessionStorage) at the server."""
    pages = []

    def open_(at: RunningServer, path: str = "", width: int = 1280, height: int = 800):
        page = browser.new_page()
        pages.append(page)
        page.set_default_timeout(WAIT_MS)
        page.set_viewport_size({"width": width, "height": height})
        page.on("request", lambda request: requests.append(request.url))
        # Listening from the start: a listener added just before a key press may miss the chooser it opens.
        page.on("filechooser", lambda chooser: choosers.append(chooser))
        page.goto(at.url + path)
        return page

    yield open_
    for page in pages:
        page.close()


def models_listed(page) -> list[str]:
    page.wait_for_function("() => document.querySelector('#model').options.length > 0", timeout=WAIT_MS)
    return page.eval_on_selector_all("#model option", "options => options.map(option => option.value)")


# ---- The tests ----------------------------------------------------------------------------------------------

def test_page_shows_the_apis_translation_with_timings_and_a_download(open_page, server):
    listed = httpx.get(server.url + "v1/models").json()["models"]
    page = open_page(server)
    assert models_listed(page) == [entry["name"] for entry in listed]
    directions = page.eval_on_selector_all("#direction option", "options => options.map(option => option.value)")
    assert directions == listed[0]["directions"]

    page.set_input_files("#file", png_file("street.png", LANDSCAPE))
    wait_for_output(page)
    model, direction = page.input_value("#model"), page.input_value("#direction")
    np.testing.assert_array_equal(shown_rgba(page), api_rgba(server, LANDSCAPE, model, direction))
    np.testing.assert_array_equal(shown_rgba(page, "#input-image")[..., :3],
                                  np.asarray(Image.open(io.BytesIO(LANDSCAPE))))
    assert page.get_attribute("#download", "download") == f"street_{direction}.png"
    assert page.get_attribute("#download", "href") == page.get_attribute("#output-image", "src")
    assert page.get_attribute("#download", "href").startswith("blob:")
    status = page.inner_text("#status")
    assert "s on the server" in status and "s round trip" in status, status
    assert page.is_hidden("#progress")
    for selector in ("#input-image", "#output-image"):  # shown at the image's own aspect ratio (96 x 64)
        box = page.locator(selector).bounding_box()
        assert abs(box["width"] / box["height"] - 96 / 64) < 0.05, box


def test_second_image_and_translate_button_replace_the_output(open_page, server):
    page = open_page(server)
    model = models_listed(page)[0]
    page.set_input_files("#file", png_file("first.png", LANDSCAPE))
    first_url = wait_for_output(page)
    first = shown_rgba(page)

    page.set_input_files("#file", png_file("second.png", PORTRAIT))
    second_url = wait_for_output(page, first_url)
    second = shown_rgba(page)
    assert second.shape != first.shape
    np.testing.assert_array_equal(second, api_rgba(server, PORTRAIT, model, "AtoB"))
    assert page.evaluate(LOADS_JS, second_url) and not page.evaluate(LOADS_JS, first_url)  # the old one revoked
    assert page.get_attribute("#download", "download") == "second_AtoB.png"

    # Another direction, run again with the button: same image, the other generator.
    page.select_option("#direction", "BtoA")
    page.click("#translate")
    wait_for_output(page, second_url)
    np.testing.assert_array_equal(shown_rgba(page), api_rgba(server, PORTRAIT, model, "BtoA"))
    assert page.get_attribute("#download", "download") == "second_BtoA.png"


def test_dropped_and_pasted_images_are_translated(open_page, server):
    page = open_page(server)
    model = models_listed(page)[0]
    previous = ""
    for event, name in (("drop", "dropped.png"), ("paste", "pasted.png")):
        page.evaluate(GIVE_FILE_JS, {"event": event, "name": name, "bytes": list(LANDSCAPE)})
        previous = wait_for_output(page, previous)
        np.testing.assert_array_equal(shown_rgba(page), api_rgba(server, LANDSCAPE, model, "AtoB"))
        assert page.get_attribute("#download", "download") == name.replace(".png", "_AtoB.png")


def test_progress_goes_upload_translate_download(open_page, server):
    page = open_page(server)
    models_listed(page)
    page.evaluate(RECORD_STATUS_JS)
    noise = np.random.default_rng(0).integers(0, 256, (512, 512, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noise).save(buffer, "png")
    page.set_input_files("#file", png_file("noise.png", buffer.getvalue()))
    wait_for_output(page)
    shown = page.evaluate("() => window.shownStatus")
    phases = [next((i for i, text in enumerate(shown) if text.startswith(start)), None)
              for start in ("Uploading", "Translating", "Downloading the result", "Translated in")]
    assert None not in phases and phases == sorted(phases), shown
    assert shown.count("progress shown") >= 1 and page.is_hidden("#progress")


def test_a_text_file_is_refused_in_plain_words(open_page, server, model):
    page = open_page(server)
    models_listed(page)
    page.set_input_files("#file", png_file("street.png", LANDSCAPE))
    wait_for_output(page)
    text = b"this is a shopping list, not a picture\n"
    page.set_input_files("#file", {"name": "notes.txt", "mimeType": "text/plain", "buffer": text})
    page.wait_for_function("() => document.querySelector('#error').textContent.length > 0", timeout=WAIT_MS)
    shown = page.inner_text("#error")
    api = httpx.post(server.url + "v1/translate", files={"image": ("notes.txt", text, "text/plain")},
                     timeout=60).json()
    assert api["error"] == "not_an_image"
    assert api["message"] in shown and "not an image" in shown, shown
    assert page.get_attribute("#error", "role") == "alert"
    for leak in ("Traceback", str(model), str(Path.cwd()), "File \""):
        assert leak not in shown
    assert page.is_hidden("#output-image") and page.is_hidden("#download")  # the previous output is gone


def test_stopping_server_and_lost_connection_are_explained(open_page, server):
    # A stopping server is hard to arrange on cue, so this one answer is played back as the server words it
    # (serve/app.py); the page's reading of status, message and Retry-After is what is tested.
    page = open_page(server)
    models_listed(page)
    stopping = {"status": 503, "error": "shutting_down", "message": "the server is shutting down; send the "
                "request again (to another instance, or once it is back)"}
    page.route("**/v1/translate*", lambda route: route.fulfill(
        status=503, headers={"Retry-After": "7"}, content_type="application/json", body=json.dumps(stopping)))
    page.set_input_files("#file", png_file("street.png", LANDSCAPE))
    page.wait_for_function("() => document.querySelector('#error').textContent.length > 0")
    shown = page.inner_text("#error")
    assert stopping["message"] in shown and "Try again in 7 s" in shown, shown
    page.unroute("**/v1/translate*")

    page.route("**/v1/translate*", lambda route: route.abort("connectionrefused"))
    page.click("#translate")
    page.wait_for_function("() => document.querySelector('#error').textContent.startsWith('Could not reach')")
    assert urlsplit(server.url).netloc in page.inner_text("#error")
    assert page.is_hidden("#progress") and page.is_hidden("#output-image")


def test_page_requests_nothing_but_its_server(open_page, server, requests):
    page = open_page(server)
    models_listed(page)
    page.set_input_files("#file", png_file("street.png", LANDSCAPE))
    wait_for_output(page)
    page.goto(server.url + "docs")
    page.wait_for_selector(".operation")
    origin = urlsplit(server.url)
    paths = {urlsplit(url).path for url in requests}
    assert {"/", "/static/common.js", "/static/app.js", "/static/docs.js", "/static/style.css", "/v1/models",
            "/v1/translate", "/docs", "/openapi.json"} <= paths, requests
    for url in requests:
        parts = urlsplit(url)
        if parts.scheme == "blob":
            parts = urlsplit(parts.path)  # blob:http://host:port/uuid, made by the page itself
        if parts.scheme != "data":
            assert (parts.scheme, parts.netloc) == (origin.scheme, origin.netloc), url


def test_images_sit_side_by_side_and_stack_at_phone_width(open_page, server):
    for width, height in ((1280, 800), (375, 700)):
        page = open_page(server, width=width, height=height)
        models_listed(page)
        page.set_input_files("#file", png_file("street.png", LANDSCAPE))
        wait_for_output(page)
        shown_in = page.locator("#input-image").bounding_box()
        shown_out = page.locator("#output-image").bounding_box()
        if width == 375:
            assert shown_out["y"] >= shown_in["y"] + shown_in["height"], (shown_in, shown_out)
        else:
            assert shown_out["x"] >= shown_in["x"] + shown_in["width"], (shown_in, shown_out)
            assert abs(shown_out["y"] - shown_in["y"]) < 1, (shown_in, shown_out)
        assert page.evaluate("document.documentElement.scrollWidth") <= width


def test_keyboard_alone_chooses_a_file_and_translates(open_page, server, choosers):
    page = open_page(server)
    models_listed(page)
    reached = []
    for _ in range(12):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.id"))
    for control in ("file", "drop", "model", "direction", "translate"):
        assert control in reached, reached

    def press_on(control: str, key: str) -> None:
        while page.evaluate("document.activeElement.id") != control:
            page.keyboard.press("Tab")
        assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none", control
        page.keyboard.press(key)

    page.focus("body")
    for opened, key in enumerate(("Enter", " "), start=1):  # the drop zone opens the file chooser
        press_on("drop", key)
        deadline = time.monotonic() + WAIT_MS / 1000
        while len(choosers) < opened and time.monotonic() < deadline:
            page.wait_for_timeout(50)
        assert len(choosers) == opened, f"{key!r} on the drop zone opened no file chooser"
    choosers[-1].set_files(png_file("street.png", LANDSCAPE))
    first_url = wait_for_output(page)
    press_on("translate", "Enter")
    wait_for_output(page, first_url)


def test_token_field_appears_on_401_and_the_typed_token_is_used(open_page, token_server):
    page = open_page(token_server)
    page.wait_for_selector("#token", state="visible")
    assert "token" in page.inner_text("#error")
    page.fill("#token", "not-the-token")
    page.press("#token", "Enter")
    page.wait_for_function("() => document.querySelector('#error').textContent.length > 0", timeout=WAIT_MS)
    page.wait_for_selector("#token", state="visible")

    page.fill("#token", TOKEN)
    page.press("#token", "Enter")
    model = models_listed(page)[0]
    assert page.inner_text("#error") == ""
    assert page.evaluate("sessionStorage.getItem('cyclegan-token')") == TOKEN
    page.set_input_files("#file", png_file("street.png", LANDSCAPE))
    wait_for_output(page)
    np.testing.assert_array_equal(shown_rgba(page), api_rgba(token_server, LANDSCAPE, model, "AtoB", TOKEN))

    page.goto(token_server.url + "docs")  # same tab: the docs page sends the stored token too
    page.wait_for_selector(".operation")
    assert "POST /v1/translate" in page.inner_text("#spec")
    assert page.get_attribute("#raw-spec", "href").startswith("blob:")  # the JSON as fetched with the token


def test_docs_page_lists_the_endpoints_from_openapi_json(open_page, server):
    page = open_page(server, "docs")
    page.wait_for_selector(".operation")
    spec = page.inner_text("#spec")
    for text in ("POST /v1/translate", "GET /v1/models", "GET /healthz", "model (query", "direction (query",
                 "413:", "503:"):
        assert text in spec, text
    assert page.get_attribute("#raw-spec", "href") == "/openapi.json"


def test_screenshot_of_a_translation(open_page, server, tmp_path):
    """The README's picture. $CYCLEGAN_SCREENSHOT: where to copy it; $CYCLEGAN_SCREENSHOT_MODEL: a model of the
    built-in data set (A labels, B photos; e.g. the demo's run folder) to show translating a photo to labels."""
    model = os.environ.get("CYCLEGAN_SCREENSHOT_MODEL")
    with contextlib.ExitStack() as stack:
        shown = stack.enter_context(running_server(model)) if model else server
        page = open_page(shown, width=1024, height=640)
        models_listed(page)
        if model:  # at the demo's scale: 64 px
            page.select_option("#direction", "BtoA")
        photo = scene_png(2, 64, (0, 0, 64, 64)) if model else scene_png(2, 256, (0, 48, 256, 208))
        page.set_input_files("#file", png_file("street.png", photo))
        wait_for_output(page)
        target = tmp_path / "serve_page.png"
        page.screenshot(path=str(target), full_page=True)
    assert Image.open(target).size[0] == 1024
    if os.environ.get("CYCLEGAN_SCREENSHOT"):
        shutil.copyfile(target, os.environ["CYCLEGAN_SCREENSHOT"])
