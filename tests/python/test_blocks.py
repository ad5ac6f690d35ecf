"""caudal.blocks without a Ray cluster: work is pinned strictly to a
block's node, and each kind of input has its backend."""

import numpy as np

from caudal.blocks import LOCAL, as_grid, on_node


def test_work_is_pinned_strictly_to_a_node():
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    assert on_node(None) == {}
    assert on_node(None, num_cpus=0) == {"num_cpus": 0}
    node = "ab" * 28  # a node id is 28 bytes in hex
    opts = on_node(node, num_returns=2)
    s = opts["scheduling_strategy"]
    assert isinstance(s, NodeAffinitySchedulingStrategy)
    # Soft would let Ray run a task elsewhere and pull the block across.
    assert s.node_id == node and s.soft is False and opts["num_returns"] == 2


def test_numpy_input_runs_here():
    grid = as_grid(np.ones((3, 2)))
    assert grid.backend is LOCAL and LOCAL.blocks_here(grid) == []
    assert grid.map(lambda b: b.sum())[(0, 0)] == 6.0
