"""The slow tier: chosen from a timed run, applied by conftest."""

import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tool():
    path = os.path.join(ROOT, "tools", "slow_tests.py")
    spec = importlib.util.spec_from_file_location("slow_tests", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_durations_are_summed_per_test_and_the_slowest_leave_first():
    tool = _tool()
    lines = [
        "============ slowest durations ============",
        "30.00s call     tests/test_a.py::test_big",
        "5.00s setup    tests/test_a.py::test_big",
        "20.00s call     tests/test_b.py::test_mid[x]",
        "4.00s call     tests/test_b.py::test_small",
        "1.50s teardown tests/test_b.py::test_small",
        "(3 durations < 0.005s hidden.)",
    ]
    times = tool.seconds_per_test(lines)
    assert times == {
        "tests/test_a.py::test_big": 35.0,
        "tests/test_b.py::test_mid[x]": 20.0,
        "tests/test_b.py::test_small": 5.5,
    }
    assert tool.choose(times, budget=30.0) == (
        ["tests/test_a.py::test_big"],
        25.5,
    )
    assert tool.choose(times, budget=5.5)[0] == [
        "tests/test_a.py::test_big",
        "tests/test_b.py::test_mid[x]",
    ]
    assert tool.choose(times, budget=100.0) == ([], 60.5)


def test_listed_tests_are_marked_slow(request):
    listed = os.path.join(ROOT, "tests", "slow_tests.txt")
    if not os.path.exists(listed):
        pytest.skip("no slow tier chosen yet")
    with open(listed) as f:
        ids = [line.strip() for line in f if line.strip()[:1] not in ("", "#")]
    collected = {item.nodeid: item for item in request.session.items}
    for test in ids:
        if test in collected:
            assert collected[test].get_closest_marker("slow") is not None
