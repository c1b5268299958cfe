"""Lifecycle over real DDS: configure loads, activate processes, deactivate stops, cleanup resets, shutdown exits."""

import time

import pytest
from lifecycle_msgs.msg import Transition

from node_harness import BACKEND, NodeProcess, Probe, rendered_frame
from partseg_ros.scene.render import render_study_view

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def view():
    return render_study_view("kitchen", view_index=1, seed=0)


@pytest.fixture
def system():
    """One node per test: two /partseg nodes alive at once would answer each other's probes."""
    node = NodeProcess.node("-p", f"backend:={BACKEND}", "-p", "device:=cpu", "-p", "diagnostics.period_s:=0.2")
    probe = Probe()
    try:
        yield node, probe
    finally:
        probe.close()
        assert node.stop() == 0, node.output()[-3000:]


def frame_is_processed(probe, view, timeout):
    probe.send_frame(*rendered_frame(view))  # fresh camera_info
    time.sleep(0.3)
    header = probe.send_frame(*rendered_frame(view))
    try:
        probe.wait_results(header, timeout=timeout)
        return True
    except TimeoutError:
        return False


def test_lifecycle_walk(system, view):
    node, probe = system
    assert probe.lifecycle_state() == "unconfigured"
    assert probe.fresh_diagnostics(timeout=30)["state"] == "unconfigured"

    assert probe.transition(Transition.TRANSITION_CONFIGURE)
    assert probe.lifecycle_state() == "inactive"
    probe.wait_connected(timeout=60)
    probe.send_instruction(view.tasks[0].instruction)
    time.sleep(0.5)
    assert not frame_is_processed(probe, view, timeout=3), "an inactive node published results"
    assert probe.fresh_diagnostics()["state"] == "inactive"

    assert probe.transition(Transition.TRANSITION_ACTIVATE)
    assert probe.lifecycle_state() == "active"
    assert frame_is_processed(probe, view, timeout=120)

    assert probe.transition(Transition.TRANSITION_DEACTIVATE)
    assert probe.lifecycle_state() == "inactive"
    assert not frame_is_processed(probe, view, timeout=3), "a deactivated node published results"

    assert probe.transition(Transition.TRANSITION_ACTIVATE)
    assert frame_is_processed(probe, view, timeout=120), "processing did not resume after re-activation"

    assert probe.transition(Transition.TRANSITION_DEACTIVATE)
    assert probe.transition(Transition.TRANSITION_CLEANUP)
    assert probe.lifecycle_state() == "unconfigured"
    # Subscriptions stay for the node's life (destroying them under the executor can kill it,
    # issue 15); unconfigured, the node ignores what arrives.
    probe.send_instruction(view.tasks[0].instruction)
    assert not frame_is_processed(probe, view, timeout=3), "an unconfigured node published results"
    assert probe.fresh_diagnostics()["state"] == "unconfigured"

    # Configure again after cleanup: the backend is rebuilt and processing works.
    assert probe.transition(Transition.TRANSITION_CONFIGURE)
    assert probe.transition(Transition.TRANSITION_ACTIVATE)
    probe.wait_connected(timeout=60)
    assert frame_is_processed(probe, view, timeout=120)

    assert probe.transition(Transition.TRANSITION_ACTIVE_SHUTDOWN)
    # The shutdown transition ends the process, with exit code 0 (checked by the fixture).
    probe.wait_for(lambda: not node.alive(), 20, "the node process to exit after the shutdown transition")


def test_configure_fails_cleanly_for_an_unknown_backend():
    node = NodeProcess.node("-p", "backend:=no_such_backend", "-p", "diagnostics.period_s:=0.2")
    probe = Probe()
    try:
        assert "no_such_backend" in probe.refused_configure(node)
    finally:
        probe.close()
        assert node.stop() == 0, node.output()[-3000:]
