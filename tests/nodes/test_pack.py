"""The pack root imports without ComfyUI and points ComfyUI at its web folder."""

from tests.pack import ROOT, load_pack


def test_pack_root_imports_without_comfyui_and_points_at_its_web_folder():
    pack = load_pack()
    assert callable(pack.comfy_entrypoint)
    web = ROOT / pack.WEB_DIRECTORY
    assert web.is_dir() and list(web.glob("*.js"))
