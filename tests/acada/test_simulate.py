"""The ACADA simulator writes DL0 files as a telescope site does (UC-110-1.1.1 input data)."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from protozfits import File
from typer.testing import CliRunner

from dpps.acada.simulate import SimulationConfig, simulate
from dpps.bdms.metadata import extract_metadata
from dpps.cli.main import app
from dpps.core.errors import Conflict, InvalidInput
from dpps.instrument.camera import CAMERAS
from dpps.instrument.clock import TAI_UTC_S

UC = "UC-110-1.1.1"
EVENTS_RE = re.compile(
    r"^dl0/TEL(?P<tel>\d{3})/events/(?P<night>\d{4}/\d{2}/\d{2})/TEL(?P=tel)_SDH(?P<sdh>\d{3})_"
    r"(?P<start>\d{8}T\d{6})_SBID(?P<sb>\d{10})_OBSID(?P<obs>\d{10})_TEL_"
    r"(?P<stream>SHOWER|CAL|MUON)_CHUNK(?P<chunk>\d{3})\.fits\.fz$"
)
PRODUCT_KEYS = (
    "CTAOMETA",
    "DATALEVL",
    "DATADIV",
    "DATAASSO",
    "DATATYPE",
    "DATAID",
    "OBS_ID",
    "OBSNIGHT",
    "SB_ID",
    "CREATED",
    "ORIGIN",
    "DATE-OBS",
    "DATE-END",
)
CONFIG = SimulationConfig(
    telescopes=(1, 2),
    duration_s=2.0,
    event_rate_hz=8.0,
    events_per_chunk=4,
    sdh_per_telescope=2,
    muon_fraction=0.15,
    calibration_fraction=0.15,
    first_sb_id=7,
    first_obs_id=70,
)


@pytest.fixture(scope="module")
def landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("landing")
    simulate(root, CONFIG)
    return root


def _data_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def _rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


@pytest.mark.verifies_usecase(UC)
def test_layout_and_names_follow_the_acada_convention(landing: Path) -> None:
    rels = [_rel(landing, p) for p in _data_files(landing)]
    events = [m for r in rels if (m := EVENTS_RE.match(r))]
    assert {m["tel"] for m in events} == {"001", "002"}
    assert {m["sdh"] for m in events} == {"001", "002"}
    assert {m["stream"] for m in events} == {"SHOWER", "CAL", "MUON"}
    assert {(m["sb"], m["obs"], m["start"], m["night"]) for m in events} == {
        ("0000000007", "0000000070", "20261121T220000", "2026/11/21")
    }
    others = sorted(r for r in rels if not EVENTS_RE.match(r))
    assert others == [
        "dl0/AUX001/monitoring/2026/11/21/"
        "AUX001_ACADA_20261121T220000_SBID0000000007_OBSID0000000070_WEATHER.fits",
        "dl0/SUB001/events/2026/11/21/"
        "SUB001_SWAT001_20261121T220000_SBID0000000007_OBSID0000000070_SUBARRAY_CHUNK000.fits.fz",
        "dl0/TEL001/monitoring/2026/11/21/"
        "TEL001_ACADA_20261121T220000_SBID0000000007_OBSID0000000070_POINTING.fits",
        "dl0/TEL002/monitoring/2026/11/21/"
        "TEL002_ACADA_20261121T220000_SBID0000000007_OBSID0000000070_POINTING.fits",
    ]
    # Chunks are numbered from 0 without gaps per telescope, SDH and stream.
    chunks: dict[tuple[str, str, str], list[int]] = {}
    for m in events:
        chunks.setdefault((m["tel"], m["sdh"], m["stream"]), []).append(int(m["chunk"]))
    assert all(sorted(c) == list(range(len(c))) for c in chunks.values())


@pytest.mark.verifies_usecase(UC)
def test_every_file_has_a_trigger_symlink_to_its_name(landing: Path) -> None:
    files = _data_files(landing)
    triggers = sorted(landing.rglob("*.trigger"))
    assert len(triggers) == len(files)
    for path in files:
        trigger = path.with_name(path.name + ".trigger")
        assert trigger.is_symlink()
        assert os.readlink(trigger) == path.name
        assert os.lstat(trigger).st_mtime >= path.stat().st_mtime  # written after closing


@pytest.mark.verifies_usecase(UC)
def test_headers_carry_ctao_keywords_and_every_hdu_its_checksums(landing: Path) -> None:
    for path in _data_files(landing):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # astropy only warns on a checksum mismatch
            with fits.open(path, checksum=True, disable_image_compression=True) as hdul:
                for hdu in hdul:
                    assert "CHECKSUM" in hdu.header, (path.name, hdu.name)
                    assert "DATASUM" in hdu.header, (path.name, hdu.name)
                    hdu.data  # noqa: B018 - reading the data verifies DATASUM
                primary = hdul[0].header
        missing = [k for k in PRODUCT_KEYS if k not in primary]
        assert not missing, (path.name, missing)
        assert primary["DATALEVL"] == "DL0"
        assert primary["OBS_ID"] == 70
        assert primary["SB_ID"] == 7
        assert primary["OBSNIGHT"] == "2026-11-21"
        if path.name.startswith("TEL"):
            assert primary["AE_ID"] == int(path.name[3:6])
        if path.name.endswith(".fits.fz"):
            assert "CHUNK_ID" in primary


@pytest.mark.verifies_usecase(UC)
def test_archive_metadata_extraction_reads_the_files(landing: Path) -> None:
    for path in _data_files(landing):
        extracted = extract_metadata(path)
        assert extracted.warnings == ()
        cols = extracted.columns
        assert cols["data_level"] == "DL0"
        assert cols["obs_id"] == 70
        assert cols["observing_night"] == dt.date(2026, 11, 21)
        assert cols["time_start"] <= cols["time_end"]
        assert cols["product_type"] in ("EVENTS", "MONITORING")
        assert extracted.meta["sb_id"] == 7
        if path.name.startswith("TEL"):
            assert cols["tel_id"] == int(path.name[3:6])
        else:
            assert "tel_id" not in cols


def test_zfits_content_is_dl0v1_with_waveforms(landing: Path) -> None:
    camera = CAMERAS["LSTCam"]
    subarray = next(landing.rglob("SUB001_*.fits.fz"))
    with File(str(subarray)) as f:
        array_events = {
            int(e.event_id): (int(e.trigger_type), e.tel_ids_with_trigger.tolist())
            for e in f.SubarrayEvents
        }
        assert f.DataStream[0].obs_id == 70
    assert array_events
    seen = 0
    for path in sorted(landing.rglob("TEL001_SDH*_SHOWER_*.fits.fz")):
        header = fits.getheader(path)
        with File(str(path)) as f:
            stream = f.DataStream[0]
            assert (stream.tel_id, stream.obs_id, stream.sb_id) == (1, 70, 7)
            assert f.CameraConfiguration[0].num_pixels == camera.n_pixels
            for event in f.Events:
                seen += 1
                assert array_events[int(event.event_id)][0] == 32  # a shower trigger
                assert 1 in array_events[int(event.event_id)][1]  # the subarray saw it too
                assert event.event_type == 32
                wave = event.waveform.reshape(1, event.num_pixels_survived, event.num_samples)
                assert wave.shape == (1, camera.n_pixels, camera.n_samples)
                assert wave.dtype == np.uint16
                pe = wave[0].astype(np.float32) / stream.waveform_scale - stream.waveform_offset
                assert -3 < float(np.median(pe)) < 3  # baseline at zero photo-electrons
                utc = dt.datetime.fromtimestamp(event.event_time_s - TAI_UTC_S, dt.UTC)
                start = dt.datetime.fromisoformat(header["DATE-OBS"]).replace(tzinfo=dt.UTC)
                assert start <= utc <= start + dt.timedelta(seconds=3)
    assert seen == sum(1 for kind, tels in array_events.values() if kind == 32 and 1 in tels)


def test_same_seed_gives_the_same_data(tmp_path: Path) -> None:
    small = SimulationConfig(telescopes=(3,), duration_s=0.5, event_rate_hz=4.0, monitoring=False)

    def waveforms(root: Path) -> list[bytes]:
        simulate(root, small)
        out = []
        for path in sorted(root.rglob("TEL003_*.fits.fz")):
            with File(str(path)) as f:
                out += [e.waveform.tobytes() for e in f.Events]
        return out

    assert waveforms(tmp_path / "a") == waveforms(tmp_path / "b")


def test_observing_night_changes_at_noon_utc(tmp_path: Path) -> None:
    late = SimulationConfig(
        telescopes=(1,),
        duration_s=0.5,
        event_rate_hz=2.0,
        monitoring=False,
        start=dt.datetime(2026, 11, 22, 5, 30),
    )
    files = simulate(tmp_path, late)
    assert all("/2026/11/21/" in p.as_posix() for p in files)
    assert {fits.getheader(p)["OBSNIGHT"] for p in files} == {"2026-11-21"}


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"site": "moon"}, "unknown site"),
        ({"telescopes": (101,)}, "not at site north"),
        ({"events_per_chunk": 0}, "events_per_chunk"),
        ({"streams": ("SHOWER", "PEDESTAL")}, "streams"),
        ({"compression": "gzip"}, "unknown compression"),
    ],
)
def test_bad_configuration_is_refused_before_writing(
    tmp_path: Path, changes: dict[str, object], words: str
) -> None:
    bad = SimulationConfig(**{"telescopes": (1,), "duration_s": 0.5, **changes})  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match=words):
        simulate(tmp_path, bad)
    assert not any(tmp_path.rglob("*.fits*"))


def test_an_existing_file_is_never_overwritten(tmp_path: Path) -> None:
    small = SimulationConfig(telescopes=(1,), duration_s=0.5, event_rate_hz=2.0)
    simulate(tmp_path, small)
    before = {p: p.stat().st_mtime_ns for p in _data_files(tmp_path)}
    with pytest.raises(Conflict, match="never overwrites"):
        simulate(tmp_path, small)
    assert {p: p.stat().st_mtime_ns for p in _data_files(tmp_path)} == before


def test_monitoring_tables(landing: Path) -> None:
    weather = next(landing.rglob("*_WEATHER.fits"))
    with fits.open(weather) as hdul:
        table = hdul["WEATHER"].data
        assert {"TIME", "TEMPERATURE", "HUMIDITY", "PRESSURE", "WIND_SPEED"} <= set(table.names)
        assert np.all(np.diff(table["TIME"]) > 0)
        assert hdul[0].header["DATADIV"] == "WEATHER"
    pointing = next(landing.rglob("TEL002_*_POINTING.fits"))
    with fits.open(pointing) as hdul:
        table = hdul["POINTING"].data
        assert len(table) == 3  # 2 s at 1 Hz, both ends
        assert np.allclose(table["ALT"], 70.0, atol=0.01)


def test_cli_simulate_json(tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "acada",
            "simulate",
            "--landing",
            str(tmp_path),
            "--telescopes",
            "2",
            "--duration",
            "0.5",
            "--event-rate",
            "4",
            "--no-monitoring",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert len(out["files"]) == len(_data_files(tmp_path)) >= 2
    assert all(Path(f).with_name(Path(f).name + ".trigger").is_symlink() for f in out["files"])
    bad = runner.invoke(
        app, ["acada", "simulate", "--landing", str(tmp_path), "--telescopes", "x"]
    )
    assert bad.exit_code == 3
    assert "telescope ids" in bad.stderr
