"""The front end in a real browser: Debian's chromium, headless, driven by Selenium, against the real ComfyUI.

Skips without COMFYUI_ROOT, selenium, chromium/chromedriver, or ComfyUI's front-end package.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from .server import ComfyServer
from .workflows import erase_prompt

EXAMPLES = Path(__file__).resolve().parents[2] / "example_workflows"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser(server: ComfyServer, tmp_path_factory: pytest.TempPathFactory):
    webdriver = pytest.importorskip("selenium.webdriver")
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("chromium / chromedriver not installed (apt-get install chromium chromium-driver)")
    pytest.importorskip(
        "comfyui_frontend_package", reason="ComfyUI's front end (pip install comfyui-frontend-package)"
    )
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    profile = tmp_path_factory.mktemp("chromium-profile")
    for arg in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--window-size=1400,900", f"--user-data-dir={profile}",
    ):  # fmt: skip
        options.add_argument(arg)
    options.binary_location = CHROMIUM
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.get(server.url)
    deadline = time.time() + 90
    script = "return !!(window.app && app.graph && window.LiteGraph && LiteGraph.registered_node_types.KSampler)"
    while time.time() < deadline and not driver.execute_script(script):
        time.sleep(0.5)
    time.sleep(1)
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver.find_element(By.TAG_NAME, "body").send_keys(Keys.ESCAPE)  # e.g. the missing-models dialog
    driver.execute_script("app.graph.clear()")
    yield driver
    driver.quit()


def _add_node(driver, node_type: str, node_id: int) -> None:
    driver.execute_script(
        "const n = LiteGraph.createNode(arguments[0]); n.id = arguments[1]; n.pos = [100 + 40 * arguments[1], 100];"
        "app.graph.add(n); app.canvas.setDirty(true, true);",
        node_type,
        node_id,
    )


def _wait(driver, script: str, timeout: float) -> object:
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = driver.execute_script(script)
        if value:
            return value
        time.sleep(0.3)
    return None


def test_nodes_appear_in_the_node_search(browser):
    from selenium.webdriver import ActionChains
    from selenium.webdriver.common.by import By

    canvas = browser.find_element(By.CSS_SELECTOR, "canvas#graph-canvas")
    ActionChains(browser).move_to_element_with_offset(canvas, 40, 40).double_click().perform()
    box = _wait(browser, "return document.querySelector('input[placeholder^=\"Search\"]')", 10)
    assert box is not None, "the node search box did not open"
    box.send_keys("Erase Concept")
    texts = _wait(
        browser,
        "const t = [...document.querySelectorAll('li')].map(e => e.innerText);"
        "return t.some(x => x.startsWith('Erase Concept')) ? t : null",
        10,
    )
    assert texts, "Erase Concept is not offered by the node search"
    from selenium.webdriver.common.keys import Keys

    box.send_keys(Keys.ESCAPE)


def test_example_widget_values_match_the_front_end_widgets(browser):
    """Each of our nodes serialises as many widget values in the browser as our example files hold."""
    for path in sorted(EXAMPLES.glob("*.json")):
        for node in json.loads(path.read_text())["nodes"]:
            if not node["type"].startswith("ConceptErasure"):
                continue
            count = browser.execute_script(
                "const n = LiteGraph.createNode(arguments[0]); return n.serialize().widgets_values.length;",
                node["type"],
            )
            assert count == len(node["widgets_values"]), f"{path.name}: {node['type']} has {count} widgets in the UI"


def test_loss_widget_updates_during_a_run_and_the_preview_slider_shows(browser, server: ComfyServer, tmp_path: Path):
    client_id = browser.execute_script("return window.api?.clientId || sessionStorage.getItem('clientId')")
    assert client_id
    browser.execute_script("app.graph.clear()")
    _add_node(browser, "ConceptErasureErase", 2)
    _add_node(browser, "ConceptErasureBeforeAfter", 20)
    prompt = erase_prompt(steps=40, seed=31, save_name=None, latent_prefix="browser")
    prompt["20"] = {
        "class_type": "ConceptErasureBeforeAfter",
        "inputs": {
            "original": ["1", 0],
            "erased": ["2", 0],
            "clip": ["1", 1],
            "vae": ["1", 2],
            "prompts": "cat\ndog",
            "negative": "",
            "seed": 0,
            "steps": 2,
            "cfg": 7.0,
            "sampler_name": "euler",
            "scheduler": "normal",
            "width": 64,
            "height": 64,
        },  # fmt: skip
    }
    saved, server.client_id = server.client_id, client_id  # the browser gets this prompt's events
    try:
        prompt_id = server.queue(prompt)
    finally:
        server.client_id = saved
    during = _wait(
        browser,
        "const e = document.querySelector('.concept-erasure-loss');"
        "return e && Number(e.dataset.points) >= 2 ? [Number(e.dataset.points), e.innerText] : null",
        300,
    )
    browser.save_screenshot(str(tmp_path / "training.png"))
    assert during, "the loss curve never drew during the run"
    points, label = during
    assert "loss" in label and "erasing: cat" in label and "ETA" in label
    entry = server.wait(prompt_id)
    assert entry["status"]["status_str"] == "success"
    assert points < 40, "the curve only appeared after training, not during it"
    shown = _wait(
        browser,
        "const e = document.querySelector('.concept-erasure-compare');"
        "if (!e || e.dataset.ready !== '1') return null;"
        "const w = [...e.querySelectorAll('img')].map(i => i.naturalWidth); return w.every(x => x > 0) ? w : null;",
        60,
    )
    browser.save_screenshot(str(tmp_path / "preview.png"))
    assert shown, "the before/after slider did not show the two images"
