"""Test-wide settings: DDS on loopback before anything can start a participant."""

import os
import random

from partseg_ros.ros.dds_env import apply_loopback_environment

# scripts/test.sh sets these already; this keeps a bare `pytest` on loopback too.
apply_loopback_environment(int(os.environ.get("ROS_DOMAIN_ID", random.randint(100, 199))))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Tests check correctness, not speed: one intra-op thread per process avoids
# oversubscribing the cores when a test runs the node in a second process.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
