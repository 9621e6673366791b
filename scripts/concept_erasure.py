"""A1111 / Forge entry point: the Erase Concept tab and the /concept-erasure/v1 routes (the code is in `a1111/`).

The WebUI imports this file with the extension folder on `sys.path`. If the engine cannot be imported (for example
a peft release that does not work with this WebUI's transformers), the tab still appears and says how to fix it,
instead of the extension vanishing with a traceback in the console.
"""

from modules import script_callbacks

try:
    from a1111 import api, tab
except Exception as exc:  # noqa: BLE001 - any import failure must become a readable message
    import html

    import gradio as gr

    _reason = f"{type(exc).__name__}: {exc}"

    def _error_tab():
        with gr.Blocks(analytics_enabled=False) as blocks:
            gr.HTML(
                "<p class='error'>The Concept Erasure extension could not start: "
                f"{html.escape(_reason)}</p><p>Its requirements are installed by its install.py when the WebUI starts; "
                "check the console for what install.py printed, or install them by hand in the WebUI's Python "
                "(for A1111 1.10: <code>pip install peft==0.13.2</code>).</p>"
            )
        return [(blocks, "Erase Concept", "concept_erasure")]

    script_callbacks.on_ui_tabs(_error_tab)
else:
    script_callbacks.on_ui_tabs(tab.on_ui_tabs)
    script_callbacks.on_app_started(api.on_app_started)
