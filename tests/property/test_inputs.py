"""The other inputs that reach the catalog, under generated input: metadata values, LFNs and
DIDs, RSE expressions and configuration files. Each is accepted as it was given or refused with
``InvalidInput`` (``ConfigError`` for configuration), never another exception."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from dpps.bdms.archive import Archive
from dpps.bdms.metadata_values import parse_user_meta, typed_value, validate_free_meta
from dpps.bdms.replication.rse_expression import parse, select
from dpps.core.config import CONFIG_NAME, config_from_dict, load_config
from dpps.core.defaults import default_config
from dpps.core.errors import ConfigError, InvalidInput
from dpps.core.identifiers import DID, parse_did, validate_lfn
from dpps.storage.rse import StorageElement
from tests.bdms.helpers import make_fits
from tests.property.common import CATALOG, PARSER, hostile_text

LFN = "/ctao/p.fits"
number_text = st.one_of(
    st.integers().map(str),
    st.floats().map(repr),
    st.floats().map(str),
    st.sampled_from(["inf", "-inf", "nan", "1e999", "007", "1.10", "00000000", "-0", "+1"]),
)
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=12,
)


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, list):
        return any(_has_non_finite(v) for v in value)
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    return False


@PARSER
@given(raw=st.one_of(hostile_text, number_text))
def test_a_meta_value_keeps_its_text_or_is_refused(raw: str, cases: Callable[[Any], None]) -> None:
    cases(raw)
    try:
        value = typed_value("k", raw)
    except InvalidInput:
        assert not math.isfinite(float(raw))
        return
    if isinstance(value, bool):
        assert raw == str(value).lower()
    elif isinstance(value, int | float):
        assert json.loads(json.dumps(value, allow_nan=False)) == value
        assert str(value) == raw or repr(value) == raw
    else:
        assert value == raw


@PARSER
@given(value=json_values)
def test_a_json_meta_value_is_kept_or_refused(value: Any, cases: Callable[[Any], None]) -> None:
    cases(value)
    try:
        kept = validate_free_meta({"k": value})
    except InvalidInput:
        return
    assert not _has_non_finite(value)
    assert json.loads(json.dumps(kept, allow_nan=False)) == {"k": value}


@pytest.fixture
def stored(archive: Archive, tmp_path: Path) -> Archive:
    archive.ingest([make_fits(tmp_path)], "CTAO-N", lfn=LFN)
    return archive


@CATALOG
@given(
    key=st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True),
    raw=st.one_of(hostile_text, number_text),
)
def test_meta_set_stores_and_reads_back_what_it_accepts(
    stored: Archive, key: str, raw: str, cases: Callable[[Any], None]
) -> None:
    cases((key, raw))
    try:
        _, meta = parse_user_meta({key: raw})
        stored.set_meta(LFN, {key: raw})
    except InvalidInput:
        return
    if meta:
        assert stored.show(LFN).file.meta[key] == meta[key]


@PARSER
@given(
    text=st.one_of(
        hostile_text,
        hostile_text.map(lambda t: "/" + t),
        st.from_regex(r"/[A-Za-z0-9._+=,\-/]{1,40}(@v[0-9]{1,12})?", fullmatch=True),
    )
)
def test_lfns_and_dids_are_valid_or_invalid_input(text: str, cases: Callable[[Any], None]) -> None:
    cases(text)
    try:
        lfn = validate_lfn(text)
    except InvalidInput:
        pass
    else:
        assert StorageElement.path_for("ctao", lfn).endswith(lfn)
    try:
        did = parse_did(text, "ctao")
    except InvalidInput:
        return
    assert parse_did(str(did)) == did
    assert isinstance(did, DID)


@PARSER
@given(
    text=st.one_of(
        hostile_text,
        st.lists(
            st.sampled_from(
                [
                    "CTAO-N",
                    "PIC",
                    "offsite",
                    "tier>=1",
                    "kind=tape",
                    "(",
                    ")",
                    "&",
                    "|",
                    "\\",
                    "*",
                    "country!=ES",
                    "available",
                ]
            ),
            max_size=8,
        ).map(" ".join),
    )
)
def test_rse_expressions_select_or_are_invalid_input(
    text: str, cases: Callable[[Any], None]
) -> None:
    cases(text)
    config = config_from_dict(default_config(), Path("/nonexistent"), environ={})
    try:
        parse(text)
        chosen = select(config, text)
    except InvalidInput:
        return
    assert set(chosen) <= set(config.rses)


yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=8))
yaml_trees = st.recursive(
    yaml_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
config_keys = st.sampled_from(
    ["catalog", "rses", "api", "default_scope", "checksums", "daemons", "links", "x"]
)


@PARSER
@given(
    data=st.one_of(
        st.dictionaries(config_keys, yaml_trees, max_size=4),
        st.builds(
            lambda base, extra: {**base, **extra},
            st.just(default_config()),
            st.dictionaries(config_keys, yaml_trees, max_size=2),
        ),
    )
)
def test_configuration_files_load_or_are_config_errors(
    tmp_path_factory: pytest.TempPathFactory, data: dict[str, Any], cases: Callable[[Any], None]
) -> None:
    cases(data)
    workspace = tmp_path_factory.mktemp("cfg")
    (workspace / CONFIG_NAME).write_text(yaml.safe_dump(data), encoding="utf-8")
    try:
        load_config(workspace, environ={})
    except ConfigError:
        return
