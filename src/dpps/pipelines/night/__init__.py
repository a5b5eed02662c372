"""The observing night (UC-000-4): DL0 of each observation block to category-B DL3.

``workflow.build_block_workflow`` is the chain of one block (calibration, DataPipe to DL3,
QualPipe); ``transformation`` makes it a standing WMS production triggered by each block's
DL0 arriving in the archive; ``models`` finds (or first produces) the trained models and IRF.
The simulated night that uses them (``dpps night``) is a scenario: ``dpps.scenarios.night``.
"""

from dpps.pipelines.night.workflow import SOFTWARE_VERSION, Target, build_block_workflow

__all__ = ["SOFTWARE_VERSION", "Target", "build_block_workflow"]
