"""CWL parsing and command lines (no database): what runs, and what is refused and why."""

from __future__ import annotations

from pathlib import Path

import pytest

from dpps.core.errors import InvalidInput, NotFound
from dpps.wms import cwl
from dpps.wms.expressions import escape, evaluate, expand_argv, file_object
from dpps.wms.spec import command_line
from tests.wms.conftest import write

TOOL = """\
    cwlVersion: v1.2
    class: CommandLineTool
    baseCommand: [calib]
    arguments:
      - --out
      - valueFrom: $(runtime.outdir)/x.h5
        position: 5
    inputs:
      raws:
        type: File[]
        inputBinding: {position: 2, prefix: --in}
      ids:
        type: int[]
        inputBinding: {position: 3, prefix: --ids=, separate: false, itemSeparator: ","}
      verbose:
        type: boolean
        inputBinding: {position: 1, prefix: -v}
      label:
        type: string?
        inputBinding: {position: 4}
    outputs:
      out:
        type: File
        outputBinding: {glob: x.h5}
"""


def test_command_line_follows_cwl_bindings(tmp_path: Path) -> None:
    spec = cwl.load(write(tmp_path / "tool.cwl", TOOL))
    tool = spec.steps[0].tool
    files = [
        {**file_object("lfn:/a.fits", "a.fits"), "did_id": 1},
        {**file_object("lfn:/b.fits", "b.fits"), "did_id": 2},
    ]
    argv = command_line(tool, {"raws": files, "ids": [1, 2], "verbose": True, "label": None})
    assert argv == [
        "calib",
        "--out",
        "-v",
        "--in",
        "$(inputs.raws[0].path)",
        "$(inputs.raws[1].path)",
        "--ids=1,2",
        "$(runtime.outdir)/x.h5",
    ]
    staged = [{**f, "path": f"/sandbox/{f['basename']}"} for f in files]
    context = {"inputs": {"raws": staged}, "runtime": {"outdir": "/sandbox/out"}}
    assert expand_argv(argv, context)[4:6] == ["/sandbox/a.fits", "/sandbox/b.fits"]
    assert command_line(tool, {"raws": [], "ids": [3], "verbose": False, "label": "x"}) == [
        "calib",
        "--out",
        "--in",
        "--ids=3",
        "x",
        "$(runtime.outdir)/x.h5",
    ]


def test_references_expand_and_escape() -> None:
    files = [{"class": "File", "path": "/p/a"}, {"class": "File", "path": "/p/b"}]
    context = {"inputs": {"files": files, "n": 3, "f": files[0]}, "runtime": {"cores": 2}}
    assert expand_argv(["$(inputs.files)", "n=$(inputs.n)", "$(inputs.f.path)"], context) == [
        "/p/a",
        "/p/b",
        "n=3",
        "/p/a",
    ]
    assert evaluate("$(inputs.files.length)", context) == 2
    assert evaluate("$(inputs.files[1].path)", context) == "/p/b"
    assert expand_argv([escape("$(inputs.n) is literal")], context) == ["$(inputs.n) is literal"]
    with pytest.raises(InvalidInput, match="no JavaScript"):
        evaluate("$(inputs.n + 1)", context)
    with pytest.raises(InvalidInput, match="no 'nope' here"):
        evaluate("$(inputs.nope)", context)


@pytest.mark.parametrize(
    ("body", "match"),
    [
        (
            "cwlVersion: v1.0\nclass: CommandLineTool\nbaseCommand: x\ninputs: {}\noutputs: {}\n",
            "cwlVersion v1.0 is not supported",
        ),
        (
            "cwlVersion: v1.2\nclass: CommandLineTool\nbaseCommand: x\ninputs: {a: Flie}\n"
            "outputs: {}\n",
            "type 'Flie' is not supported",
        ),
        (
            "cwlVersion: v1.2\nclass: CommandLineTool\nbaseCommand: x\nbogus: 1\ninputs: {}\n"
            "outputs: {}\n",
            "invalid field `bogus`",
        ),
        (
            "cwlVersion: v1.2\nclass: CommandLineTool\nbaseCommand: [echo, '${return 1}']\n"
            "inputs: {}\noutputs: {}\n",
            "JavaScript",
        ),
        (
            "cwlVersion: v1.2\nclass: CommandLineTool\n"
            "requirements: {InlineJavascriptRequirement: {}}\nbaseCommand: x\ninputs: {}\n"
            "outputs: {}\n",
            "InlineJavascriptRequirement",
        ),
        (
            "cwlVersion: v1.2\nclass: CommandLineTool\nbaseCommand: x\ninputs:\n  a:\n"
            "    type: File\n    inputBinding: {valueFrom: $(self.path)}\noutputs: {}\n",
            "valueFrom",
        ),
        (
            "cwlVersion: v1.2\nclass: CommandLineTool\nbaseCommand: x\ninputs: {}\n"
            "outputs:\n  o:\n    type: File\n",
            "needs outputBinding.glob",
        ),
        (
            "cwlVersion: v1.2\nclass: CommandLineTool\n$namespaces: {dpps: https://ctao.org/dpps/cwl#}"
            "\nbaseCommand: x\ninputs: {}\noutputs:\n  o:\n    type: File\n    outputBinding: "
            "{glob: o}\n    dpps:colour: red\n",
            "unknown dpps field",
        ),
        (
            "cwlVersion: v1.2\nclass: CommandLineTool\nbaseCommand: [cat, $(inputs.b.path)]\n"
            "inputs: {a: File}\noutputs: {}\n",
            "names no input",
        ),
    ],
    ids=[
        "v1.0",
        "type",
        "field",
        "js",
        "js-requirement",
        "valuefrom",
        "glob",
        "extension",
        "reference",
    ],
)
def test_bad_tools_are_refused_clearly(tmp_path: Path, body: str, match: str) -> None:
    path = tmp_path / "bad.cwl"
    path.write_text(body)
    with pytest.raises(InvalidInput, match=match):
        cwl.load(path)


WF = """\
    cwlVersion: v1.2
    class: Workflow
    requirements: {{ScatterFeatureRequirement: {{}}}}
    inputs: {{files: "File[]"}}
    outputs: {{}}
    steps:
      one:
        run: {run}
        in: {{{inputs}}}
        {extra}
        out: [o]
"""

LEAF = """\
    cwlVersion: v1.2
    class: CommandLineTool
    baseCommand: [cp]
    inputs: {f: File, g: File?}
    outputs:
      o: {type: File, outputBinding: {glob: x}}
"""


@pytest.mark.parametrize(
    ("run", "inputs", "extra", "match"),
    [
        ("leaf.cwl", "f: nothing", "scatter: f", "no workflow input"),
        ("leaf.cwl", "g: files", "", "required input 'f' is not connected"),
        ("leaf.cwl", "f: files", "scatter: g", "not a connected input"),
        (
            "leaf.cwl",
            "f: files",
            "scatter: f\n        scatterMethod: nested_crossproduct",
            "nested_crossproduct is not supported",
        ),
        ("inner.cwl", "f: files", "", "nested workflows are not supported"),
    ],
    ids=["source", "unconnected", "scatter", "method", "nested"],
)
def test_bad_workflows_are_refused_clearly(
    tmp_path: Path, run: str, inputs: str, extra: str, match: str
) -> None:
    write(tmp_path / "leaf.cwl", LEAF)
    write(tmp_path / "inner.cwl", WF.format(run="leaf.cwl", inputs="f: files", extra=""))
    path = write(tmp_path / "wf.cwl", WF.format(run=run, inputs=inputs, extra=extra))
    with pytest.raises(InvalidInput, match=match):
        cwl.load(path)
    with pytest.raises(NotFound):
        cwl.load(tmp_path / "absent.cwl")
