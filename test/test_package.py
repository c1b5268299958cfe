"""The package itself: manifest, interface list and the generated interfaces."""

import re
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_manifest_parses_and_names_the_package():
    from catkin_pkg.package import parse_package

    package = parse_package(str(ROOT / "package.xml"))
    package.validate()
    assert package.name == "partseg"
    assert package.get_build_type() == "ament_cmake"
    depends = {d.name for d in package.build_depends + package.exec_depends}
    assert {"sensor_msgs", "geometry_msgs", "std_msgs", "rclpy"} <= depends


def test_cmake_generates_every_interface_file():
    cmake = (ROOT / "CMakeLists.txt").read_text()
    listed = set(re.findall(r'"((?:msg|srv)/\w+\.(?:msg|srv))"', cmake))
    on_disk = {str(p.relative_to(ROOT)) for p in (ROOT / "msg").glob("*.msg")}
    on_disk |= {str(p.relative_to(ROOT)) for p in (ROOT / "srv").glob("*.srv")}
    assert listed == on_disk


def test_cmake_installs_every_declared_executable():
    cmake = (ROOT / "CMakeLists.txt").read_text()
    programs = set(re.findall(r"scripts/(partseg_\w+)", cmake))
    setup = (ROOT / "setup.py").read_text()
    console = set(re.findall(r'"(partseg_\w+) = ', setup))
    assert programs == console
    for name in programs:
        script = ROOT / "scripts" / name
        assert script.is_file(), f"{script} is installed by CMake but missing"
        assert script.stat().st_mode & 0o111, f"{script} is not executable"


def test_generated_messages_round_trip_through_cdr():
    from rclpy.serialization import deserialize_message, serialize_message

    from partseg.msg import GraspRegion, GraspRegionArray, PartInstance, PartSegmentation

    seg = PartSegmentation()
    seg.instruction = "pick up the blue mug"
    seg.status = PartSegmentation.STATUS_OK
    inst = PartInstance(object_label="mug", part_label="handle", score=0.75)
    inst.mask.height, inst.mask.width, inst.mask.encoding, inst.mask.step = 2, 3, "mono8", 3
    inst.mask.data = np.array([0, 255, 0, 255, 255, 0], dtype=np.uint8).tobytes()
    seg.instances = [inst]
    back = deserialize_message(serialize_message(seg), PartSegmentation)
    assert back.instruction == seg.instruction
    assert back.instances[0].part_label == "handle"
    assert bytes(back.instances[0].mask.data) == bytes(inst.mask.data)

    regions = GraspRegionArray(regions=[GraspRegion(status=GraspRegion.STATUS_TOO_FEW_POINTS, grasp_width=0.02)])
    back = deserialize_message(serialize_message(regions), GraspRegionArray)
    assert back.regions[0].status == GraspRegion.STATUS_TOO_FEW_POINTS
    assert back.regions[0].grasp_width == pytest.approx(0.02)


def test_service_type_is_generated():
    from partseg.srv import SegmentParts

    request = SegmentParts.Request(instruction="uncork the wine")
    assert request.instruction == "uncork the wine"
    assert hasattr(SegmentParts.Response(), "grasp_regions")
