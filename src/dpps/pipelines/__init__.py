"""Pipelines: SimPipe, CalibPipe, DataPipe and QualPipe tools (install with ``dpps[pipelines]``).

Each tool is a :class:`dpps.pipelines.tool.Tool` with a typed configuration and a provenance
record; it runs alone (``dpps pipeline run NAME``) and as a WMS job (``module:function`` Python
tools, see :func:`dpps.pipelines.tool.wms_entry`). Tools read and write local files; the WMS
moves data between them and the archive, so no pipeline touches the catalog.
"""
