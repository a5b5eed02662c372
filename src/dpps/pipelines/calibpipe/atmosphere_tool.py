"""``calibpipe-atmosphere``: select the reference atmospheric model of an observation.

UC-120-1.3. Input ``weather``: the ACADA weather monitoring tables (plain FITS, HDU
``WEATHER`` with TIME, TEMPERATURE, PRESSURE, HUMIDITY, as ACADA writes them) of one site.
Output: a small FITS product (``DATATYPE = 'atmospheric model selection'``) naming the chosen
model in its primary header (``ATMMODEL``, ``ATMMODID``) with the candidates and their
distances in a ``SELECTION`` table.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
from astropy.io import fits
from pydantic import Field

from dpps.bdms.metadata import extract_metadata
from dpps.core.errors import IntegrityFailure, InvalidInput
from dpps.pipelines.calibpipe.atmosphere import (
    REFERENCE_MODELS,
    AtmosphereSelection,
    select_model,
    site_key,
    summarize,
)
from dpps.pipelines.calibpipe.product import iso, product_cards, write_fits
from dpps.pipelines.tool import Tool, ToolConfig, register_tool

DATA_TYPE = "atmospheric model selection"
_COLUMNS = ("TIME", "TEMPERATURE", "PRESSURE", "HUMIDITY")


class AtmosphereConfig(ToolConfig):
    """Options of the atmospheric model selection."""

    site: Literal["north", "south"] | None = Field(
        None, description="site of the reference models; default: the inputs' SITE keyword"
    )
    min_samples: int = Field(1, ge=1, description="fewer valid weather samples is an error")
    validity_before_s: float = Field(
        0.0, ge=0.0, description="validity starts this long before the first weather sample"
    )
    validity_after_s: float = Field(
        0.0, ge=0.0, description="validity ends this long after the last weather sample"
    )
    category: Literal["A", "B", "C", "SIM"] | None = Field(
        None, description="processing category of the product; default: the inputs' one"
    )


def read_weather(paths: list[Path]) -> tuple[dict[str, np.ndarray], dict[str, object]]:
    """Concatenate the WEATHER tables of ``paths``; also return the shared header values."""
    columns: dict[str, list[np.ndarray]] = {c: [] for c in _COLUMNS}
    sites: set[str] = set()
    obs_ids: set[int] = set()
    categories: set[str] = set()
    for path in paths:
        if not Path(path).is_file():
            raise InvalidInput(f"weather input {path} does not exist or is not a file")
        extracted = extract_metadata(Path(path))  # IntegrityFailure if corrupt or truncated
        if extracted.format != "fits":
            raise InvalidInput(f"{Path(path).name} is not a FITS weather table")
        try:
            with fits.open(path, memmap=False) as hdul:
                if "WEATHER" not in hdul:
                    raise InvalidInput(f"{Path(path).name}: no WEATHER table")
                data = hdul["WEATHER"].data
                missing = [c for c in _COLUMNS if c not in data.columns.names]
                if missing:
                    raise InvalidInput(f"{Path(path).name}: WEATHER lacks columns {missing}")
                for c in _COLUMNS:
                    columns[c].append(np.asarray(data[c], dtype=np.float64))
        except OSError as exc:
            raise IntegrityFailure(f"{Path(path).name}: cannot read FITS: {exc}") from None
        if extracted.meta.get("site"):
            sites.add(str(extracted.meta["site"]))
        if extracted.columns.get("obs_id") is not None:
            obs_ids.add(int(extracted.columns["obs_id"]))
        if extracted.columns.get("category"):
            categories.add(str(extracted.columns["category"]))
    if len({site_key(s) for s in sites}) > 1:
        raise InvalidInput(f"weather inputs come from several sites: {sorted(sites)}")
    header: dict[str, object] = {
        "site": next(iter(sites)) if sites else None,
        "obs_id": next(iter(obs_ids)) if len(obs_ids) == 1 else None,
        "category": next(iter(categories)) if len(categories) == 1 else None,
    }
    return {c: np.concatenate(v) for c, v in columns.items()}, header


def write_selection(
    path: Path,
    selection: AtmosphereSelection,
    *,
    obs_id: int | None,
    valid_from: str,
    valid_to: str,
    category: str | None,
) -> Path:
    w = selection.weather
    models = REFERENCE_MODELS[selection.site]
    table = fits.BinTableHDU.from_columns(
        [
            fits.Column(name="name", format="16A", array=[m.name for m in models]),
            fits.Column(name="model_id", format="40A", array=[m.model_id for m in models]),
            fits.Column(
                name="temperature",
                format="D",
                unit="deg_C",
                array=[m.temperature_c for m in models],
            ),
            fits.Column(
                name="pressure", format="D", unit="hPa", array=[m.pressure_hpa for m in models]
            ),
            fits.Column(
                name="humidity", format="D", unit="%", array=[m.humidity_pct for m in models]
            ),
            fits.Column(
                name="distance", format="D", array=[selection.distances[m.name] for m in models]
            ),
            fits.Column(
                name="selected", format="L", array=[m.name == selection.model.name for m in models]
            ),
        ],
        name="SELECTION",
    )
    cards = product_cards(
        data_type=DATA_TYPE,
        tel_id=None,
        obs_id=obs_id,
        time_first=w.time_first,
        time_last=w.time_last,
        valid_from=valid_from,
        valid_to=valid_to,
        category=category,
        extra={
            "DATAASSO": ("Site", "what the product is associated with"),
            "SITE": (f"CTAO-{selection.site.capitalize()}", "telescope site"),
            "ATMMODEL": (selection.model.name, "selected reference atmosphere"),
            "ATMMODID": (selection.model.model_id, "its id in the simulation production"),
            "MEAN_T": (round(w.temperature_c, 3), "mean temperature, deg C"),
            "MEAN_P": (round(w.pressure_hpa, 3), "mean pressure, hPa"),
            "MEAN_H": (round(w.humidity_pct, 3), "mean relative humidity, %"),
            "N_SAMPL": (w.n_samples, "weather samples used"),
            "ATMDIST": (
                round(selection.distances[selection.model.name], 4),
                "distance to the selected model",
            ),
        },
    )
    return write_fits(path, cards, table)


@register_tool
class AtmosphereTool(Tool[AtmosphereConfig]):
    name: ClassVar[str] = "calibpipe-atmosphere"
    description: ClassVar[str] = (
        "Select the seasonal reference atmospheric model from weather monitoring tables; "
        "input 'weather'"
    )
    config_class: ClassVar[type[ToolConfig]] = AtmosphereConfig

    def start(self) -> None:
        cfg = self.config
        data, header = read_weather(self.input("weather"))
        site = cfg.site or header["site"]
        if not site:
            raise InvalidInput("the weather inputs name no SITE: set 'site' in the config")
        weather = summarize(
            data["TIME"],
            data["TEMPERATURE"],
            data["PRESSURE"],
            data["HUMIDITY"],
            min_samples=cfg.min_samples,
        )
        selection = select_model(str(site), weather)
        obs_id = header["obs_id"]
        valid_from = iso(weather.time_first - cfg.validity_before_s)
        valid_to = iso(weather.time_last + cfg.validity_after_s, up=True)
        stem = f"OBSID{obs_id:010d}" if isinstance(obs_id, int) else f"{valid_from:.10}"
        path = write_selection(
            self.output_dir / f"{stem}_ATMOSPHERE_SELECTION.fits",
            selection,
            obs_id=obs_id if isinstance(obs_id, int) else None,
            valid_from=valid_from,
            valid_to=valid_to,
            category=cfg.category or (str(header["category"]) if header["category"] else None),
        )
        self.add_output(
            path,
            "CAL",
            DATA_TYPE,
            obs_id=obs_id,
            site=selection.site,
            model=selection.model.name,
            model_id=selection.model.model_id,
            valid_from=valid_from,
            valid_to=valid_to,
        )
