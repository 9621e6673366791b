"""Batch erasure: many concept sets × many checkpoints from one job file (`python -m erasure_core batch`), on this
machine or a Ray cluster. See docs/batch.md."""

from .jobfile import BatchPlan, Checkpoint, ConceptSet, Job, Outputs, load_job_file
from .runner import Progress, run_batch
from .summary import Row

__all__ = ["BatchPlan", "Checkpoint", "ConceptSet", "Job", "Outputs", "Progress", "Row", "load_job_file", "run_batch"]
