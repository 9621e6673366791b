"""ComfyUI nodes of the concept-erasure pack.

Host-free helpers (`concepts`, `cache`, `lora_files`, `charts`) import nothing from ComfyUI, so CI tests them
without a ComfyUI checkout; the adapter (`comfy_backend`) and the node classes import ComfyUI and only load
inside it. Always import this package relatively: ComfyUI has a top-level module of the same name.
"""
