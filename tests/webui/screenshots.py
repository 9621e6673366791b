"""Screenshots of the Erase Concept tab during and after a real run, for the README (not a test).

    A1111_ROOT=... A1111_PYTHON=... HF_HOME=... python -m tests.webui.screenshots --host a1111 --out docs/images

Starts the WebUI as the real-host tests do (random full-size SD1.5, CPU), drives the tab in headless Chromium
(Debian's chromium and chromium-driver, through selenium) as a user would, and saves PNGs.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ready
from selenium.webdriver.support.ui import WebDriverWait

from .checkpoint import write_random_sd15
from .server import WebUIServer, host_from_env

ADVANCED = "resolution = 64\nddim_steps = 4\naudit_samples = 1\naudit_ddim_steps = 4\nvocabulary_limit = 300\n"
ADVANCED += "k_closest = 20\nnum_centers = 5\nlr = 0.002"


def browser() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"):
        options.add_argument(flag)
    options.add_argument("--window-size=1500,1300")
    options.binary_location = "/usr/bin/chromium"
    return webdriver.Chrome(service=webdriver.ChromeService("/usr/bin/chromedriver"), options=options)


def fill(driver: webdriver.Chrome, elem_id: str, text: str) -> None:
    box = driver.find_element(By.CSS_SELECTOR, f"#{elem_id} textarea, #{elem_id} input")
    box.clear()
    box.send_keys(text)


def save(driver: webdriver.Chrome, path: Path) -> None:
    """A screenshot as a 256-colour PNG: a third of the size, and the page's flat colours survive."""
    from PIL import Image

    driver.save_screenshot(str(path))
    Image.open(path).convert("RGB").quantize(256).save(path, optimize=True)


def capture(server: WebUIServer, out: Path, steps: int) -> None:
    driver = browser()
    wait = WebDriverWait(driver, 900)
    try:
        _run(driver, wait, server, out, steps)
    except Exception:
        driver.save_screenshot(str(out / "failed.png"))
        print(driver.find_element(By.ID, "concept_erasure_results").text[-2000:])
        print(server.log_text()[-3000:])
        raise
    finally:
        driver.quit()


def _run(driver: webdriver.Chrome, wait: WebDriverWait, server: WebUIServer, out: Path, steps: int) -> None:
    driver.get(server.url)
    tab = wait.until(ready.element_to_be_clickable((By.XPATH, "//button[normalize-space()='Erase Concept']")))
    tab.click()
    fill(driver, "concept_erasure_erase", "cat")
    fill(driver, "concept_erasure_keep", "dog")
    fill(driver, "concept_erasure_steps", str(steps))
    fill(driver, "concept_erasure_name", "no-cat")
    fill(driver, "concept_erasure_preview_size", "64")
    header = driver.find_element(
        By.CSS_SELECTOR, "#concept_erasure_advanced .label-wrap, #concept_erasure_advanced > button"
    )
    driver.execute_script("arguments[0].click()", header)
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#concept_erasure_settings textarea").is_displayed())
    fill(driver, "concept_erasure_settings", ADVANCED)
    driver.find_element(By.ID, "concept_erasure_start").click()
    wait.until(lambda d: "Erasing: step 3/" in d.find_element(By.ID, "concept_erasure_results").text)
    time.sleep(2)  # a few steps into training: the loss curve is drawn
    save(driver, out / f"{server.host.kind}-tab-running.png")
    wait.until(lambda d: "Saved" in d.find_element(By.ID, "concept_erasure_status").text)
    driver.set_window_size(1500, 2100)  # the whole result: grid, charts and the audit table
    time.sleep(2)
    save(driver, out / f"{server.host.kind}-tab-done.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", choices=["a1111", "forge"], default="a1111")
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args()
    host = host_from_env(args.host)
    if host is None:
        raise SystemExit(f"set {args.host.upper()}_ROOT (and {args.host.upper()}_PYTHON)")
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        server = WebUIServer(host, Path(work) / "data")
        server.prepare(write_random_sd15(Path(work) / "random_sd15.safetensors"))
        server.run_installers()
        server.start()
        try:
            capture(server, args.out.resolve(), args.steps)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
