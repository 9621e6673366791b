"""The pack root imports without ComfyUI and points ComfyUI at its web folder."""

from erasure_core.frontend import PROGRESS_EVENT
from tests.pack import ROOT, load_pack


def test_pack_root_imports_without_comfyui_and_points_at_its_web_folder():
    pack = load_pack()
    assert callable(pack.comfy_entrypoint)
    web = ROOT / pack.WEB_DIRECTORY
    assert web.is_dir() and list(web.glob("*.js"))


def test_the_browser_script_listens_for_the_event_the_nodes_send():
    script = (ROOT / load_pack().WEB_DIRECTORY / "erasure.js").read_text()
    assert f'const EVENT = "{PROGRESS_EVENT}";' in script
