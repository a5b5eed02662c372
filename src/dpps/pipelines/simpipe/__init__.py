"""SimPipe: simulation runs (run cards -> simulated DL0 and truth) and productions (grids of runs
submitted as WMS jobs). Importing the package registers its tools."""

from dpps.pipelines.simpipe import simulate as simulate  # registers simpipe-simulate
