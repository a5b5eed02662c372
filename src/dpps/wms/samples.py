"""Small, real pipeline tools for examples, tests and benchmarks.

``summarize`` reads FITS (astropy) or HDF5 (h5py) data products and writes one JSON summary
per input; ``merge`` combines summaries. Both run as Python tools (``dpps.wms.samples:summarize``)
or from a command line (``python -m dpps.wms.samples summarize OUTDIR FILE...``), which is how
the CWL examples in docs/wms.md call them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


def _summary(path: Path) -> dict[str, Any]:
    head = path.read_bytes()[:8]
    info: dict[str, Any] = {"file": path.name, "bytes": path.stat().st_size}
    if head.startswith(b"SIMPLE"):
        from astropy.io import fits

        with fits.open(path) as hdus:
            header = hdus[0].header
            info.update(
                format="fits",
                hdus=len(hdus),
                obs_id=header.get("OBS_ID"),
                tel_id=header.get("TEL_ID"),
                rows=sum(
                    int(
                        (
                            getattr(h, "data", None) is not None
                            and getattr(h.data, "shape", (0,))[0]
                        )
                        or 0
                    )
                    for h in hdus[1:]
                ),
            )
    elif head.startswith(b"\x89HDF"):
        import h5py

        with h5py.File(path, "r") as h5:
            info.update(
                format="hdf5",
                obs_id=_plain(h5.attrs.get("obs_id")),
                tel_id=_plain(h5.attrs.get("tel_id")),
                datasets=len(h5.keys()),
            )
    else:
        info.update(format="other")
    return info


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def summarize(inputs: Mapping[str, Any], parameters: Mapping[str, Any], outdir: Path) -> int:
    files = inputs.get("files") or inputs.get("infile") or []
    for path in files if isinstance(files, list) else [files]:
        summary = {**_summary(Path(path)), "label": parameters.get("label")}
        (outdir / f"{Path(path).stem}.summary.json").write_text(json.dumps(summary) + "\n")
    return 0


def merge(paths: Sequence[Path], out: Path) -> None:
    parts = [json.loads(p.read_text()) for p in paths]
    out.write_text(json.dumps({"parts": parts, "n": len(parts)}, indent=1) + "\n")


def main(argv: Sequence[str]) -> int:
    if len(argv) >= 3 and argv[0] == "summarize":
        outdir = Path(argv[1])
        for name in argv[2:]:
            path = Path(name)
            (outdir / f"{path.stem}.summary.json").write_text(json.dumps(_summary(path)) + "\n")
        return 0
    if len(argv) >= 2 and argv[0] == "merge":
        merge([Path(a) for a in argv[2:]], Path(argv[1]))
        return 0
    print(
        "usage: python -m dpps.wms.samples (summarize OUTDIR FILE... | merge OUT FILE...)",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
