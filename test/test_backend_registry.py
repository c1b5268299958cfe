"""Backend names: a registry name or ``package.module:Class``, resolved in one place with one-line errors."""

from __future__ import annotations

import sys

import pytest

from partseg_ros.backends.base import PartGroundingBackend
from partseg_ros.backends.registry import available_backends, backend_class, create_backend
from partseg_ros.types import GroundingRequest, GroundingResult

SHAPEGRASP_PATH = "partseg_ros.backends.shapegrasp.backend:ShapeGraspBackend"


class EchoBackend(PartGroundingBackend):
    """Keeps its options; answers no target."""

    name = "echo"

    def _ground(self, request: GroundingRequest) -> GroundingResult:
        return GroundingResult([], self.name, explanation=request.instruction)


NOT_A_BACKEND = 42


def test_a_module_path_resolves_to_the_same_class_as_its_registry_name():
    assert backend_class(SHAPEGRASP_PATH) is backend_class("shapegrasp")


def test_a_module_path_outside_the_package_builds_with_its_options():
    backend = create_backend(f"{__name__}:EchoBackend", colour="red")
    assert isinstance(backend, EchoBackend) and backend.options == {"colour": "red"} and not backend.loaded


def test_a_module_path_gets_the_same_option_check_as_a_registry_name():
    with pytest.raises(ValueError, match=r"strde \(did you mean stride\?\)"):
        create_backend(SHAPEGRASP_PATH, strde=4)


@pytest.mark.parametrize("name, message", [
    ("no_such_package_zz.backend:Thing", "backend 'no_such_package_zz.backend:Thing': no module named "
                                         "'no_such_package_zz.backend' on the Python path"),
    ("partseg_ros.no_such_module:Thing", "no module named 'partseg_ros.no_such_module' on the Python path"),
    (f"{__name__}:MissingBackend", f"module '{__name__}' has no 'MissingBackend'"),
    (f"{__name__}:NOT_A_BACKEND", f"{__name__}.NOT_A_BACKEND is not a PartGroundingBackend subclass"),
    ("partseg_ros.types:CameraIntrinsics", "partseg_ros.types.CameraIntrinsics is not a PartGroundingBackend"),
    ("partseg_ros.types:", "expected package.module:Class"),
    (":EchoBackend", "expected package.module:Class"),
    ("shapegrap", "unknown backend 'shapegrap'; choose one of"),
])
def test_a_wrong_name_fails_in_one_line(name, message):
    with pytest.raises(ValueError) as caught:
        create_backend(name)
    text = str(caught.value)
    assert message in text and "\n" not in text


def test_the_unknown_name_message_lists_every_choice():
    with pytest.raises(ValueError) as caught:
        backend_class("shapegrap")
    assert all(name in str(caught.value) for name in available_backends())
    assert "package.module:Class" in str(caught.value)


def test_a_backend_module_missing_its_own_dependency_is_a_real_failure(tmp_path, monkeypatch):
    # The user named an existing module correctly; its broken import must surface as itself.
    (tmp_path / "broken_backend_zz.py").write_text("import dependency_nobody_installed_zz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "broken_backend_zz", raising=False)
    with pytest.raises(ModuleNotFoundError, match="dependency_nobody_installed_zz"):
        backend_class("broken_backend_zz:Backend")
