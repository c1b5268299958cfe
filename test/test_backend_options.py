"""Backend options are checked against each backend's typed config at construction, before any model loads.

A misspelt option used to be ignored (``--backend-option strde=4`` ran at
stride 2) or, for the learned backends, found only after the weights loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from partseg_ros.backends.base import config_from_options
from partseg_ros.backends.registry import create_backend
from partseg_ros.evaluation.cli import parse_options


def test_shapegrasp_misspelt_option_fails_at_construction_with_the_closest_name():
    with pytest.raises(ValueError, match=r"strde \(did you mean stride\?\)"):
        create_backend("shapegrasp", **parse_options(["strde=4"]))


def test_shapegrasp_misspelt_nested_option_names_its_dotted_path():
    with pytest.raises(ValueError, match=r"segmentation\.min_heigt_m \(did you mean segmentation\.min_height_m\?\)"):
        create_backend("shapegrasp", segmentation={"min_heigt_m": 0.01})
    with pytest.raises(ValueError,
                       match=r"decomposition\.split_penalt \(did you mean decomposition\.split_penalty\?\)"):
        create_backend("shapegrasp", **parse_options(["decomposition.split_penalt=3"]))


def test_shapegrasp_valid_options_reach_its_configs_without_loading():
    backend = create_backend("shapegrasp", **parse_options(["stride=3", "segmentation.min_height_m=0.01",
                                                             "use_embeddings=false", "device=cpu"]),
                             decomposition={"bins": 48})
    assert not backend.loaded
    assert backend.config.stride == 3 and backend.config.use_embeddings is False
    assert backend.segmentation_config.min_height_m == 0.01 and backend.decomposition_config.bins == 48
    # Untouched fields keep their defaults.
    assert backend.segmentation_config.max_height_m == 0.6 and backend.decomposition_config.max_parts == 4


@dataclass
class _Inner:
    threshold: float = 0.5


@dataclass
class _Outer:
    stride: int = 2
    inner: _Inner = field(default_factory=_Inner)


def test_helper_nests_dotted_names_ignores_listed_ones_and_lists_valid_names():
    config = config_from_options(_Outer, {"inner.threshold": 0.7, "name": "x"}, "demo", ignore=("name",))
    assert config == _Outer(2, _Inner(0.7))
    with pytest.raises(ValueError, match=r"unknown demo option\(s\): zzz; valid: \['inner', 'stride'\]"):
        config_from_options(_Outer, {"zzz": 1}, "demo")
    with pytest.raises(ValueError, match="given whole and field by field"):
        config_from_options(_Outer, {"inner": _Inner(), "inner.threshold": 0.1}, "demo")


def test_pisa_rgbd_uses_the_same_check():
    with pytest.raises(ValueError, match=r"unknown pisa_rgbd option\(s\): strde \(did you mean stride\?\)"):
        create_backend("pisa_rgbd", strde=4)
