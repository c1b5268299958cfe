"""The test harness's own service calls: a query whose first request goes unanswered is asked again.

A node an earlier test killed can stay in this process's discovery until its
lease runs out, so ``wait_for_service`` may be satisfied by a server that will
never answer, and the request sent then never reaches the new node (CI, stop 23:
the teardown test's first ``get_state`` waited its whole 60 s). The stand-in
server here holds its first request unanswered, the way the ghost does.
"""

import threading

import rclpy
from lifecycle_msgs.srv import GetState
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import MultiThreadedExecutor

from node_harness import Probe


def test_a_state_query_whose_first_request_is_held_is_answered_by_its_resend():
    release = threading.Event()
    calls = []

    def answer(request, response):
        calls.append(len(calls))
        if len(calls) == 1:
            release.wait(timeout=30.0)  # the ghost: this request is answered only when the test ends
            response.current_state.label = "stale"
        else:
            response.current_state.label = "unconfigured"
        return response

    context = rclpy.Context()
    rclpy.init(context=context)
    server = rclpy.create_node("harness_ghost_server", context=context)
    server.create_service(GetState, "/harness_check/get_state", answer, callback_group=ReentrantCallbackGroup())
    executor = MultiThreadedExecutor(num_threads=2, context=context)
    executor.add_node(server)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    probe = Probe(node_name="harness_check")
    try:
        assert probe.lifecycle_state() == "unconfigured"
        assert len(calls) >= 2
    finally:
        release.set()
        probe.close()
        executor.shutdown()
        spinner.join(timeout=5.0)
        server.destroy_node()
        rclpy.shutdown(context=context)
