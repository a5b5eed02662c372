"""DataPipe: DL0 -> DL1 (calibration, cleaning, image parameters) -> DL2 (direction, energy,
gamma/hadron score with trained models) -> DL3 (IRFs and event lists). Importing the package
registers its tools; each tool module is one line below."""

from dpps.pipelines.datapipe import dl1 as dl1  # registers datapipe-dl1
from dpps.pipelines.datapipe import dl2 as dl2  # registers datapipe-dl2
from dpps.pipelines.datapipe import dl3 as dl3  # registers datapipe-dl3
from dpps.pipelines.datapipe import irf_tool as irf_tool  # registers datapipe-irf
from dpps.pipelines.datapipe import train as train  # registers datapipe-train
