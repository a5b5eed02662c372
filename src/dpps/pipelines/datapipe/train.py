"""The DataPipe tool ``datapipe-train``: SimPipe DL1 of gammas and protons -> trained models.

Inputs ``gammas`` and ``protons`` (simulated DL1 with truth). Outputs ``models.joblib`` (the
energy regressor and gamma/hadron classifier, for ``datapipe-dl2``) and ``model_card.json``
(features, training files with checksums, event counts, hyper-parameters, held-out scores).
"""

from __future__ import annotations

import json
from typing import ClassVar

import numpy as np
from pydantic import Field

from dpps.core.errors import InvalidInput
from dpps.pipelines.datapipe import models
from dpps.pipelines.datapipe.dl1_io import read_dl1
from dpps.pipelines.datapipe.dl2 import QualityConfig, prepare, truth_for
from dpps.pipelines.tool import Tool, ToolConfig, register_tool
from dpps.storage.checksums import checksum_file


class TrainConfig(ToolConfig):
    n_estimators: int = Field(100, ge=1, le=2000, description="Trees per forest.")
    max_depth: int | None = Field(16, ge=1, description="Tree depth limit (None: unlimited).")
    min_samples_leaf: int = Field(3, ge=1, description="Images per leaf, at least.")
    test_fraction: float = Field(0.25, gt=0, lt=1, description="Events held out for scores.")
    seed: int = Field(0, ge=0, description="Random seed of the split and the forests.")
    n_jobs: int = Field(1, ge=1, description="Processes per forest (scikit-learn n_jobs).")
    quality: QualityConfig = Field(default_factory=QualityConfig)  # type: ignore[arg-type]


@register_tool
class TrainTool(Tool[TrainConfig]):
    """Train the energy regressor and the gamma/hadron classifier."""

    name: ClassVar[str] = "datapipe-train"
    description: ClassVar[str] = "train energy and gamma/hadron random forests on SimPipe DL1"
    config_class: ClassVar[type[TrainConfig]] = TrainConfig

    def setup(self) -> None:
        super().setup()
        self.gammas = [read_dl1(p) for p in self.input("gammas")]
        self.protons = [read_dl1(p) for p in self.input("protons")]
        for data in (*self.gammas, *self.protons):
            if not data.is_simulation or data.truth is None:
                raise InvalidInput(f"{data.path.name}: training needs simulated DL1 with truth")
        for data, want in [
            *((g, "gamma") for g in self.gammas),
            *((p, "proton") for p in self.protons),
        ]:
            particle = str(data.header.get("PARTICLE", ""))
            if particle != want:
                raise InvalidInput(f"{data.path.name}: given as {want}s but holds {particle!r}")

    def start(self) -> None:
        cfg = self.config
        quality = cfg.quality.quality()
        parts: list[models.TrainingSet] = []
        offset = 0
        for data in (*self.gammas, *self.protons):
            prep = prepare(data, quality)
            truth = truth_for(data, prep.events)
            log_e = np.log10(truth["true_energy"])[prep.event_index]
            gamma = np.full(prep.event_index.size, data.header.get("PARTICLE") == "gamma")
            parts.append(
                models.TrainingSet(
                    prep.features, prep.event_index + offset, prep.intensity, log_e, gamma
                )
            )
            offset += max(len(prep.events), 1)
        data_set = models.TrainingSet(
            np.concatenate([p.features for p in parts]),
            np.concatenate([p.event_key for p in parts]),
            np.concatenate([p.intensity for p in parts]),
            np.concatenate([p.log_energy for p in parts]),
            np.concatenate([p.is_gamma for p in parts]),
        )
        settings = models.ForestSettings(
            cfg.n_estimators, cfg.max_depth, cfg.min_samples_leaf, cfg.seed, cfg.n_jobs
        )
        trained = models.train(data_set, settings, cfg.test_fraction)
        trained.card["training_files"] = [
            {
                "name": d.path.name,
                "particle": d.header.get("PARTICLE"),
                "adler32": checksum_file(d.path, ("adler32",))[1]["adler32"],
            }
            for d in (*self.gammas, *self.protons)
        ]
        trained.card["quality"] = cfg.quality.model_dump()
        path = models.save(trained, self.output_dir / "models.joblib")
        card = self.output_dir / "model_card.json"
        card.write_text(json.dumps(trained.card, indent=2, default=str), encoding="utf-8")
        self.add_output(path, "OTHER", "reconstruction models", category="SIM")
        self.add_output(card, "OTHER", "model card", category="SIM")
