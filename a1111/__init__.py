"""The A1111 and Forge adapter: the Erase Concept tab, its HTTP routes, and the engine's `Backend` over the model the
WebUI loaded. `scripts/concept_erasure.py` registers it with the WebUI.

`backend` and `jobs` import nothing from the WebUI (they take its objects as arguments), so CI tests them against
fakes; `host` is the one module that reaches into the WebUI's own modules; `tab` and `api` are thin layers over
`jobs`. Imports are absolute (`erasure_core`, `a1111`): the WebUI puts this folder on `sys.path` while it loads
the script, and keeps the imported packages afterwards.
"""
