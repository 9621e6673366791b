"""ComfyUI entry point of the concept-erasure pack (A1111 uses `scripts/` and `install.py` instead).

Nothing here imports ComfyUI at module level, so the folder can be imported (and tested) without it; ComfyUI calls
`comfy_entrypoint` and serves `WEB_DIRECTORY` to the browser.
"""

WEB_DIRECTORY = "./web"


async def comfy_entrypoint():
    from .nodes.extension import ConceptErasureExtension

    return ConceptErasureExtension()
