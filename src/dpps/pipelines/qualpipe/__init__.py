"""QualPipe: data-quality metrics, criteria, reports and plots (UC-140-1.2.1).

Importing the package registers its tool (``qualpipe-report``).
"""

from dpps.pipelines.qualpipe import tool

__all__ = ["tool"]
