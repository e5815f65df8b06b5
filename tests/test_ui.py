"""The web studio: generation with files for every output, and a real browser test."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
import soundfile as sf

from conftest import SAO1_TINY
from longplay.checkpoints import load_diffusion_model
from longplay.pipelines import DRAWN_SEED_BOUND, TextToMusicPipeline
from longplay.ui import Studio

CHROMIUM = "/usr/bin/chromium"
DOCS_SCREENSHOT = Path(__file__).parents[1] / "docs" / "studio.png"


@pytest.fixture(scope="module")
def studio(tmp_path_factory) -> Studio:
    return Studio(TextToMusicPipeline.from_pretrained(SAO1_TINY), "sao1_tiny",
                  tmp_path_factory.mktemp("ui"))


def test_generate_writes_playable_and_downloadable_files(studio: Studio) -> None:
    results, settings = studio.generate("a calm piano", "", 1.5, 4, 3.0, "dpmpp-3m-sde", 7,
                                        False, 2, None, 1.0)
    assert [r.settings["seed"] for r in results] == [7, 8] and settings["seeds"] == (7, 8)
    for r in results:
        info = sf.info(str(r.audio_path))
        assert info.samplerate == 44100 and info.frames == round(1.5 * 44100)
        assert {p.suffix for p in r.downloads} >= {".wav", ".flac"}
        assert r.spectrogram.ndim == 3 and r.spectrogram.shape[1] >= 600


def test_random_seed_is_drawn_and_reported(studio: Studio) -> None:
    a, _ = studio.generate("x", "", 1.0, 2, 3.0, "dpmpp-2m", 0, True, 1, None, 1.0)
    b, _ = studio.generate("x", "", 1.0, 2, 3.0, "dpmpp-2m", 0, True, 1, None, 1.0)
    assert a[0].settings["seed"] != b[0].settings["seed"]


def test_bad_input_is_refused(studio: Studio) -> None:
    with pytest.raises(ValueError, match="write a prompt"):
        studio.generate("  ", "", 1.0, 2, 3.0, "dpmpp-2m", 0, False, 1, None, 1.0)
    with pytest.raises(ValueError, match="duration_s"):
        studio.generate("x", "", 99.0, 2, 3.0, "dpmpp-2m", 0, False, 1, None, 1.0)


def test_the_page_shows_the_models_own_defaults(tmp_path: Path) -> None:
    """A model's own number of steps (the demo model's 50) reaches the page, as it
    reaches the pipeline; the samplers offered are the model's."""
    model = load_diffusion_model(SAO1_TINY)
    model.config = replace(model.config, steps=7)
    studio = Studio(TextToMusicPipeline(model), "tiny", tmp_path)
    assert studio.defaults.num_inference_steps == 7
    components = {getattr(c, "label", None): c for c in studio.build().blocks.values()}
    assert components["Steps"].value == 7
    assert components["Sampler"].value == "dpmpp-3m-sde"
    assert "pingpong" not in [c[0] if isinstance(c, tuple) else c
                              for c in components["Sampler"].choices]


def test_outputs_of_one_seed_within_a_second_keep_their_own_files(studio: Studio) -> None:
    args = ("a calm piano", "", 1.0, 2, 3.0, "dpmpp-2m", 11, False, 1, None, 1.0)
    first, _ = studio.generate(*args)
    second, _ = studio.generate(*args[:2], 1.5, *args[3:])  # another duration, same seed
    assert first[0].audio_path != second[0].audio_path
    assert sf.info(str(first[0].audio_path)).duration == pytest.approx(1.0, abs=1e-3)
    assert sf.info(str(second[0].audio_path)).duration == pytest.approx(1.5, abs=1e-3)


def test_adapters_are_listed_with_strengths_and_applied(tmp_path: Path) -> None:
    from test_adapters import random_adapter

    folder = tmp_path / "adapters"
    random_adapter(folder / "organ", 1)
    (folder / "broken").mkdir()
    (folder / "broken" / "adapter_config.json").write_text("{}")
    studio = Studio(TextToMusicPipeline.from_pretrained(SAO1_TINY), "tiny", tmp_path / "out",
                    adapters_dir=folder)
    assert studio.adapter_names() == ["organ"]  # the broken one is left out
    components = {c.elem_id: c for c in studio.build().blocks.values()
                  if getattr(c, "elem_id", None)}
    assert [c[0] if isinstance(c, tuple) else c for c in components["adapter0"].choices] == [
        "(none)", "organ"]
    assert components["adapter_strength0"].value == 1.0
    args = ("a calm piano", "", 1.0, 3, 3.0, "dpmpp-2m", 5, False, 1, None, 1.0)
    base, _ = studio.generate(*args)
    styled, settings = studio.generate(*args, adapters=[("organ", 0.5), ("(none)", 1.0)])
    assert settings["adapters"][0]["name"] == "organ" and settings["adapters"][0]["scale"] == 0.5
    audio = [sf.read(r[0].audio_path)[0] for r in (base, styled)]
    assert abs(audio[0] - audio[1]).max() > 1e-3
    again, _ = studio.generate(*args)  # the base model again
    assert (sf.read(again[0].audio_path)[0] == audio[0]).all()


def test_the_page_values_become_the_pipeline_record(studio: Studio) -> None:
    settings = studio.settings("a calm piano", "", 1.0, 3, 2.0, "dpmpp-2m", 5, False, 2)
    assert settings.seeds == (5, 6) and settings.num_inference_steps == 3
    drawn = studio.settings("a calm piano", "", 1.0, 3, 2.0, "dpmpp-2m", 5, True, 1)
    assert drawn.seeds != (5,) and 0 <= drawn.seeds[0] < DRAWN_SEED_BOUND


def test_edit_regenerates_a_region_or_extends(studio: Studio, tmp_path: Path) -> None:
    results, _ = studio.generate("a calm piano", "", 1.5, 3, 3.0, "dpmpp-2m", 3, False, 1,
                                 None, 1.0)
    source = str(results[0].audio_path)
    region, settings = studio.edit(source, "region", 0.5, 1.0, 0, "fast drums", "", 3, 3.0, 4,
                                   False, 0.1, 1)
    assert settings["inpaint_regions"] == ((0.5, 1.0),) and region[0].settings["seed"] == 4
    assert region[0].settings["joins_s"] == [0.5, 1.0]
    assert sf.info(str(region[0].audio_path)).frames == round(1.5 * 44100)
    longer, settings = studio.edit(source, "extend", 0, 0, 2.0, "fast drums", "", 3, 3.0, 4,
                                   False, 0.2, 1)
    assert sf.info(str(longer[0].audio_path)).frames == round(3.5 * 44100)
    assert settings["inpaint_regions"] == ((1.5, 3.5),)
    picture = studio.waveform(source, "region", 0.5, 1.0)
    assert picture.shape[2] == 3 and picture.dtype.name == "uint8"
    shaded = (picture == [70, 40, 50]).all(axis=2).any(axis=0)  # the region's background
    assert 0.3 < shaded.mean() < 0.37  # a third of the width: 0.5 s of 1.5 s
    for args, message in (((None, "region", 0, 1), "load the audio"),
                          ((source, "region", 1.2, 2.0), "within the piece"),
                          ((source, "extend", 0, 0), "positive number")):
        with pytest.raises(ValueError, match=message):
            studio.edit(*args, 0.0 if args[1] == "extend" else 1.0, "x", "", 2, 3.0, 0, False,
                        0.1, 1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_studio_in_a_real_browser(tmp_path: Path) -> None:
    """Headless Debian Chromium driven by Playwright: fill the prompt, generate, and find
    an audio element with a source and a spectrogram picture. The screenshot goes to
    docs/studio.png when LONGPLAY_UPDATE_SCREENSHOT=1, else to a temporary folder."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run must install Debian's chromium")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    port = free_port()
    exe = shutil.which("longplay", path=str(Path(sys.executable).parent))
    server = subprocess.Popen([exe, "ui", "--model", str(SAO1_TINY), "--port", str(port)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + 90
        while True:
            try:
                if urllib.request.urlopen(url, timeout=2).status == 200:
                    break
            except OSError:
                pass
            assert server.poll() is None, server.stdout.read().decode()[-2000:]
            assert time.time() < deadline, "the studio did not start within 90 s"
            time.sleep(0.5)
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM, headless=True,
                args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                      "--disable-background-networking", "--disable-component-update",
                      "--disable-sync"])
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(url, timeout=60000)
            page.locator("#prompt textarea").fill("a calm piano")
            page.locator("#generate").click()
            page.wait_for_selector("#audio0 audio[src]", state="attached", timeout=90000)
            assert page.locator("#audio0 audio[src]").first.get_attribute("src")
            image = page.wait_for_selector("#spectrogram0 img[src]", timeout=60000)
            assert image.get_attribute("src")
            assert "Done: seed" in page.locator("#status").inner_text()
            shot = (DOCS_SCREENSHOT if os.environ.get("LONGPLAY_UPDATE_SCREENSHOT")
                    else tmp_path / "studio.png")
            page.screenshot(path=str(shot), full_page=True)
            # The Edit tab: take the generation, regenerate a region of it.
            page.get_by_role("tab", name="Edit").click()
            page.get_by_role("button", name="Load generation").click()
            page.wait_for_selector("#edit_waveform img[src]", timeout=60000)
            page.get_by_role("button", name="Regenerate").click()
            page.wait_for_selector("#edit_result audio[src]", state="attached", timeout=90000)
            assert "joins at 0.00" not in page.locator("#edit_status").inner_text()
            assert "Done: seed" in page.locator("#edit_status").inner_text()
            browser.close()
        assert shot.stat().st_size > 10_000
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.slow
def test_http_api_docs_render_offline_in_a_real_browser() -> None:
    """The HTTP API's /docs in headless Chromium with every request that leaves the test
    server refused: the page renders the operations from the server's own files, and its
    Authorize button gives the key to the calls tried there."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run must install Debian's chromium")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    import threading

    import uvicorn
    from playwright.sync_api import sync_playwright

    from longplay.server import ServerSettings, create_app

    key = "browser-key"
    app = create_app(TextToMusicPipeline.from_pretrained(SAO1_TINY),
                     ServerSettings(model_name="tiny", api_key=key))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    refused: list[str] = []

    def only_the_server(route) -> None:
        if route.request.url.startswith(base + "/"):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    try:
        deadline = time.time() + 30
        while not server.started:
            assert thread.is_alive() and time.time() < deadline, "uvicorn did not start"
            time.sleep(0.05)
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM, headless=True,
                args=["--no-sandbox", "--disable-gpu", "--no-first-run",
                      "--disable-background-networking", "--disable-component-update"])
            page = browser.new_page()
            page.route("**/*", only_the_server)
            page.goto(f"{base}/docs", timeout=60000)
            for path in ("/v1/generations", "/v1/generations/{job_id}", "/v1/adapters"):
                page.wait_for_selector(f'.opblock-summary-path[data-path="{path}"]',
                                       timeout=30000)
            # The key, given once, goes with the calls the page makes.
            page.locator("button.authorize").first.click()
            bearer = page.locator(".auth-container", has=page.locator("#auth-bearer-value"))
            bearer.locator("#auth-bearer-value").fill(key)
            bearer.locator("button.authorize").click()
            page.locator(".modal-ux button.close-modal").click()
            operation = page.locator("#operations-adapters-list_adapters_v1_adapters_get")
            operation.locator(".opblock-summary").click()
            operation.get_by_role("button", name="Try it out").click()
            operation.get_by_role("button", name="Execute").click()
            status = operation.locator(".live-responses-table tr.response .response-col_status")
            status.wait_for(timeout=30000)
            assert status.inner_text().strip() == "200"
            browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
    assert refused == []


def test_a_drafting_studio_refines_in_fewer_steps_and_edits_with_its_own(tmp_path: Path) -> None:
    from longplay.pipelines.drafts import DRAFT_REFINEMENT, DraftedPipeline

    tiny = TextToMusicPipeline.from_pretrained(SAO1_TINY)
    studio = Studio(DraftedPipeline(tiny, tiny), "sao1_tiny", tmp_path)
    assert studio.draft_name == SAO1_TINY.name
    assert studio.generate_steps == DRAFT_REFINEMENT.num_inference_steps
    assert studio.defaults.num_inference_steps == tiny.defaults.num_inference_steps
    results, settings = studio.generate("a calm piano", "", 1.5, 3, 3.0, "dpmpp-3m-sde", 7,
                                        False, 1, None, 1.0)
    assert settings["draft"]["model"] == SAO1_TINY.name and settings["seeds"] == (7,)
    assert settings["num_inference_steps"] == 3 and settings["has_init_latents"]
    edited, record = studio.edit(str(results[0].audio_path), "region", 0.5, 1.0, 0.0, "drums",
                                 "", 2, 3.0, 1, False, 0.2, 1)
    assert record["draft"] is None and record["has_inpaint_audio"] and edited
