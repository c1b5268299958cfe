"""Where the package's non-Python files (msg/, config/) are, in a source tree or an install."""

from __future__ import annotations

from pathlib import Path


def package_share_subdir(subdir: str, marker: str) -> Path:
    """``<source tree>/<subdir>`` when it holds ``marker``, else ``share/partseg/<subdir>`` of the install."""
    source = Path(__file__).resolve().parents[1] / subdir
    if (source / marker).is_file():
        return source
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("partseg")) / subdir
    except Exception as exc:  # noqa: BLE001 - any failure means "not installed"
        raise FileNotFoundError(
            f"cannot find partseg's {subdir}/ folder: run from the source tree or source a ROS workspace "
            "where partseg is installed (AMENT_PREFIX_PATH)"
        ) from exc


def config_dir() -> Path:
    """The package's config/ folder (node parameters, the loopback DDS profile): the source tree, or
    share/partseg/config when installed. Here, not in the DDS code, because the evaluator reads the
    node's parameters from it without any ROS."""
    return package_share_subdir("config", "fastdds_localhost.xml")
