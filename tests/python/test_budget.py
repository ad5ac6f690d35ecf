"""The object store budget (caudal.runtime.budget): what each node's store
must hold against what it has. The run-level checks (printed at the first
step, a run refused with exit code 3) are in test_load.py."""

from caudal.runtime import budget

MIB = 1 << 20


def test_each_array_holds_its_window_plus_the_pending_steps():
    # node a: 2 MiB of "t" (window 3) and 1 MiB of "p" (read by none)
    per_node = {"a": {"t": 2 * MIB, "p": MIB}, "b": {"t": 2 * MIB}}
    v = budget.check(per_node, {"t": 3}, pending=2, capacity={"a": 100 * MIB, "b": 100 * MIB})
    need_a = 2 * MIB * (3 + 4 + 3) + MIB * (0 + 4 + 3)
    assert "needs up to %.1f MiB of its 100.0 MiB (27%%)" % (need_a / MIB) in v.lines[1]
    assert "(a)" in v.lines[1]  # the busiest node is named
    assert "a step is 5.0 MiB over 2 node(s)" in v.lines[0]
    assert "p 7, t 10" in v.lines[0]
    assert v.warning is None and v.error is None


def test_past_the_spill_threshold_warns_past_the_capacity_refuses():
    per_node = {"n1": {"t": 10 * MIB}}
    # 10 MiB x (1 + 16 + 3) = 200 MiB
    ok = budget.check(per_node, {"t": 1}, 8, {"n1": 1000 * MIB})
    warn = budget.check(per_node, {"t": 1}, 8, {"n1": 240 * MIB})
    bad = budget.check(per_node, {"t": 1}, 8, {"n1": 150 * MIB}, names={"n1": "10.0.0.1"})
    assert ok.warning is None and ok.error is None
    assert warn.error is None and "may fill past 80% (200.0 MiB of 240.0 MiB)" in warn.warning
    assert bad.warning is None
    assert bad.error.startswith("the object store of node 10.0.0.1 holds 150.0 MiB and the "
                                "run needs up to 200.0 MiB there")
    assert "--max-pending" in bad.error and "object_store_memory" in bad.error


def test_an_unkept_array_warns_never_refuses_and_the_line_says_why():
    per_node = {"n1": {"t": 10 * MIB, "u": 10 * MIB}}
    v = budget.check(per_node, {"t": 1, "u": 1}, 8, {"n1": 150 * MIB}, unkept={"t", "u"})
    assert v.error is None and "may fill past 80%" in v.warning
    assert v.lines[1].endswith("; t, u put only until their reductions are computed as their "
                               "blocks arrive (reductions_only): far less then")
    one = budget.check(per_node, {"t": 1, "u": 1}, 8, {"n1": 150 * MIB}, unkept={"t"})
    assert one.error and "t put only until its reductions" in one.lines[1]  # u is put: 200 MiB


def test_a_node_without_a_known_store_cannot_fit_anything():
    v = budget.check({"x": {"t": 1}}, {}, 1, {})
    assert v.error and "holds 0.0 MiB" in v.error
    assert budget.check({}, {}, 1, {}) == budget.Verdict([], None, None)
