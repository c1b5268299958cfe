"""The live evaluator sends the node the bag's own messages (issue 13, item 4).

A bag is written as a real recording would be: 16UC1 depth in millimetres
stamped 4 ms after colour, and a plumb_bob camera with non-zero distortion.
The evaluator's DDS client answers its task against a stand-in for the node:
an rclpy node named ``partseg`` in this process, on the node's topics, offering
``~/get_state`` (active) and ``~/ask``, over real DDS on loopback. What reaches
it must be the recording itself, restamped only: the old client decoded the
frame and sent rgb8, 32FC1 depth in metres and a distortion-free camera_info,
so the node's 16UC1 and distortion code was never exercised by the live path.
"""

from __future__ import annotations

import dataclasses
import threading
import time

import numpy as np
import pytest
import rclpy
from lifecycle_msgs.msg import State
from lifecycle_msgs.srv import GetState
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import MultiThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image

from partseg.msg import PartSegmentation
from partseg.srv import AskParts
from partseg_ros.bags.writer import BenchmarkFrame, TaskAnnotation, write_benchmark
from partseg_ros.codec import camera_from_info, depth_to_metres
from partseg_ros.evaluation.answering import AnsweringError, TaskAnswerer
from partseg_ros.evaluation.records import PROTOCOL_FULL, PROTOCOL_ORACLE_OBJECT
from partseg_ros.evaluation.tasks import iter_tasks
from partseg_ros.ros.evaluation_client import LiveClient, LiveTopics
from partseg_ros.ros.sync import stamp_to_ns
from partseg_ros.types import CameraIntrinsics

H, W = 48, 64
K = CameraIntrinsics(60.0, 60.0, 31.5, 23.5, W, H)
DISTORTION = (0.12, -0.2, 0.001, -0.002, 0.04)
FIRST_NS = 1_712_345_678_123_456_789
DEPTH_OFFSET_NS = 4_000_000


def _frame() -> BenchmarkFrame:
    object_ids = np.zeros((H, W), np.uint16)
    part_ids = np.zeros((H, W), np.uint16)
    object_ids[10:30, 10:40], part_ids[10:30, 10:34], part_ids[10:30, 34:40] = 1, 1, 2
    depth = np.full((H, W), 0.75, np.float32)
    depth[10:30, 10:40] = 0.6
    depth[0, :3] = np.nan  # holes: 0 in 16UC1
    rgb = np.random.default_rng(2).integers(0, 256, (H, W, 3), dtype=np.uint8)
    return BenchmarkFrame(
        scene="mugs", rgb=rgb, object_ids=object_ids, part_ids=part_ids, object_names=["background", "mug"],
        part_names=["background", "mug/body", "mug/handle"], depth_m=depth, intrinsics=K,
        tasks=[TaskAnnotation("mug", "pick up the mug", ("mug",), ("handle",), (2,))],
        stamp_ns=FIRST_NS, depth_stamp_ns=FIRST_NS + DEPTH_OFFSET_NS,
        distortion_model="plumb_bob", distortion=DISTORTION,
    )


class StandInNode:
    """What the live client talks to, recording what reaches it; answers every ask with "no target"."""

    def __init__(self, topics: LiveTopics) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("partseg", context=self.context)
        self.received: dict[str, list] = {"color": [], "depth": [], "camera_info": []}
        self.asked: list[AskParts.Request] = []
        self._arrived = threading.Condition()
        group = ReentrantCallbackGroup()  # ~/ask waits for its frame while the subscriptions deliver it
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        for stream, kind, topic in (("color", Image, topics.color), ("depth", Image, topics.depth),
                                    ("camera_info", CameraInfo, topics.camera_info)):
            self.node.create_subscription(kind, topic, lambda msg, s=stream: self._on_message(s, msg), qos,
                                          callback_group=group)
        self.node.create_service(GetState, "~/get_state", self._on_get_state, callback_group=group)
        self.node.create_service(AskParts, "~/ask", self._on_ask, callback_group=group)
        self.executor = MultiThreadedExecutor(num_threads=4, context=self.context)
        self.executor.add_node(self.node)
        self._spinner = threading.Thread(target=self.executor.spin, daemon=True)
        self._spinner.start()

    def _on_message(self, stream: str, msg) -> None:
        with self._arrived:
            self.received[stream].append(msg)
            self._arrived.notify_all()

    @staticmethod
    def _on_get_state(_request: GetState.Request, response: GetState.Response) -> GetState.Response:
        response.current_state = State(id=State.PRIMARY_STATE_ACTIVE, label="active")
        return response

    def _on_ask(self, request: AskParts.Request, response: AskParts.Response) -> AskParts.Response:
        self.asked.append(request)
        with self._arrived:
            # The three streams travel separately; a node answers a frame once it has all of them, and so does
            # this stand-in (answering on colour alone let a loaded machine ask before the depth had arrived).
            arrived = self._arrived.wait_for(lambda: all(self.received.values()) and any(
                stamp_to_ns(m.header.stamp) >= request.min_stamp_ns for m in self.received["color"]), timeout=20)
        if not arrived:
            response.success, response.message = False, "ask_timeout: no frame"
            return response
        frame = next(m for m in self.received["color"] if stamp_to_ns(m.header.stamp) >= request.min_stamp_ns)
        response.success, response.message = True, "no target"
        response.segmentation = PartSegmentation(header=frame.header, instruction=request.instruction,
                                                 status=PartSegmentation.STATUS_NO_TARGET)
        response.grasp_regions.header = frame.header
        return response

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        rclpy.shutdown(context=self.context)
        self._spinner.join(timeout=2.0)


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    bag = tmp_path_factory.mktemp("recording") / "bag"
    write_benchmark(bag, [_frame()])
    (only,) = iter_tasks(bag)
    return only


def test_the_live_path_replays_the_recorded_depth_and_camera_info(task):
    topics = LiveTopics()
    node = StandInNode(topics)
    client = LiveClient(topics, task_timeout_s=20.0)
    try:
        assert isinstance(client, TaskAnswerer)
        client.wait_for_node(30.0)
        prediction = client.answer(task, PROTOCOL_FULL)
    finally:
        client.close()
        node.close()
    assert prediction.num_instances == 0 and not prediction.error
    (color,), (depth,), (info,) = (node.received[s] for s in ("color", "depth", "camera_info"))
    (request,) = node.asked
    assert request.instruction == "pick up the mug"

    # Depth as recorded: 16UC1 millimetres, 0 for no return; the node's depth.scale turns it into metres.
    assert (depth.encoding, depth.step, depth.width, depth.height) == ("16UC1", 2 * W, W, H)
    millimetres = np.frombuffer(depth.data, np.uint16).reshape(H, W)
    assert millimetres[0, 0] == 0 and millimetres[20, 20] == 600
    np.testing.assert_allclose(depth_to_metres(depth), task.depth_m, equal_nan=True)
    # The camera as recorded: plumb_bob with its coefficients, which the node undistorts with.
    assert info.distortion_model == "plumb_bob" and tuple(info.d) == pytest.approx(DISTORTION)
    camera = camera_from_info(info, image_shape=(H, W))
    assert camera.is_distorted and camera.intrinsics == K
    assert color.encoding == "rgb8" and np.array_equal(np.frombuffer(color.data, np.uint8).reshape(H, W, 3),
                                                       task.rgb)
    # Restamped onto the node's time line, nothing else: depth keeps its offset, camera_info goes with colour.
    color_ns = stamp_to_ns(color.header.stamp)
    assert color_ns == request.min_stamp_ns and abs(color_ns - time.time_ns()) < 60e9
    assert stamp_to_ns(depth.header.stamp) - color_ns == DEPTH_OFFSET_NS
    assert stamp_to_ns(info.header.stamp) == color_ns
    assert color.header.frame_id == depth.header.frame_id == info.header.frame_id == "camera_color_optical_frame"


def test_the_live_path_refuses_what_the_node_cannot_be_sent(task):
    client = LiveClient(LiveTopics(), task_timeout_s=1.0)
    try:
        with pytest.raises(AnsweringError, match="full only, not oracle_object"):
            client.answer(task, PROTOCOL_ORACLE_OBJECT)
        no_depth = dataclasses.replace(task, recorded=dataclasses.replace(task.recorded, depth=None))
        with pytest.raises(AnsweringError, match="no recorded camera_info or depth"):
            client.answer(no_depth, PROTOCOL_FULL)
    finally:
        client.close()


@pytest.mark.parametrize("little_endian", [True, False])
def test_restamping_changes_the_stamp_and_nothing_else(task, little_endian):
    from partseg_ros.bags.format import typestore
    from partseg_ros.ros.raw import restamp

    store = typestore()
    recorded = store.deserialize_cdr(task.recorded.depth.data, "sensor_msgs/msg/Image")
    raw = bytes(store.serialize_cdr(recorded, "sensor_msgs/msg/Image", little_endian=little_endian))
    moved = store.deserialize_cdr(restamp(raw, 1_800_000_000_123_456_789), "sensor_msgs/msg/Image")
    assert (moved.header.stamp.sec, moved.header.stamp.nanosec) == (1_800_000_000, 123_456_789)
    assert moved.header.frame_id == recorded.header.frame_id and moved.encoding == recorded.encoding
    assert (moved.height, moved.width, moved.step, moved.is_bigendian) == (
        recorded.height, recorded.width, recorded.step, recorded.is_bigendian)
    np.testing.assert_array_equal(moved.data, recorded.data)
