"""The pack's node list for ComfyUI's V3 registration (`comfy_entrypoint` in the root `__init__.py`)."""

from __future__ import annotations

from comfy_api.latest import ComfyExtension, io

from .erase_nodes import ConceptListNode, EraseConceptNode
from .lora_nodes import LoadErasureLoraNode, SaveErasureLoraNode
from .review_nodes import BeforeAfterPreviewNode, ErasureAttackAuditNode, ErasureAuditNode


class ConceptErasureExtension(ComfyExtension):
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return [
            ConceptListNode,
            EraseConceptNode,
            SaveErasureLoraNode,
            LoadErasureLoraNode,
            BeforeAfterPreviewNode,
            ErasureAuditNode,
            ErasureAttackAuditNode,
        ]
