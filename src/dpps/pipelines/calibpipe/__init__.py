"""CalibPipe: camera calibration (UC-120-2.20) and atmospheric model selection (UC-120-1.3).

Importing the package registers its tools (``calibpipe-camera``, ``calibpipe-atmosphere``).
"""

from dpps.pipelines.calibpipe import atmosphere_tool, camera_tool

__all__ = ["atmosphere_tool", "camera_tool"]
