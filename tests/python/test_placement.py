"""The kernels run next to the blocks: a real Ray cluster of two nodes (two
raylets with their own object stores on this machine), blocks put by actors
pinned to each node as the ingest actors do."""

import os
import shutil
import tempfile

import numpy as np
import pytest

import caudal
from kernel_arrays import distribute, values


@pytest.fixture(scope="module")
def two_nodes():
    import ray
    from ray.cluster_utils import Cluster
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    os.makedirs("/tmp/ray", exist_ok=True)  # where cluster_utils notes the address
    tmp = tempfile.mkdtemp(prefix="cdl2n-", dir="/tmp")
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "temp_dir": tmp, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
    cluster.wait_for_nodes()

    @ray.remote(num_cpus=0)
    class Holder:
        """Owns the blocks it puts, in its node's store, like an ingest actor."""

        def put(self, block):
            return [ray.put(block)]  # in a list: the reference, not the value

    nodes = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"])
    holders = [Holder.options(scheduling_strategy=NodeAffinitySchedulingStrategy(
        n, soft=False)).remote() for n in nodes]
    try:
        yield ray, nodes, holders
    finally:
        ray.shutdown()
        cluster.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


def spread(ray, nodes, holders, g, cuts, name="f", step=1):
    """Even ranks' blocks on the first node, odd ranks' on the second."""
    return distribute(ray, g, cuts, seed=3, name=name, step=step,
                      node_of=lambda r: nodes[r % 2],
                      put=lambda r, b: ray.get(holders[r % 2].put.remote(b))[0])


def test_each_block_is_processed_on_its_node_and_never_copied(two_nodes):
    ray, nodes, holders = two_nodes
    from ray.experimental import get_object_locations

    # Blocks of 192 KiB: objects under 100 KiB would travel inline with
    # the tasks instead of living in a node's store.
    g = values((512, 384), "float64", 1)
    sa = spread(ray, nodes, holders, g, ((128, 256, 384), (192,)))
    blocks = sa.blocks.blocks
    assert {b.node for b in blocks.values()} == set(nodes)

    ran_on = caudal.blocks.map_blocks(lambda b: ray.get_runtime_context().get_node_id(), sa)
    assert ran_on == [blocks[p].node for p in sorted(blocks)]

    # Every kernel, on blocks of both nodes, gives NumPy's answer ...
    m = caudal.stats.moments(sa)
    assert np.isclose(m.mean, g.mean()) and np.isclose(m.var, g.var())
    lap = caudal.stencil.laplacian(sa)
    assert {b.node for b in lap.blocks.blocks.values()} == set(nodes)
    from ray.util.dask import ray_dask_get

    dx = caudal.stencil.gradient(sa, axis=0)
    assert np.allclose(dx.data.compute(scheduler=ray_dask_get), np.gradient(g, axis=0))
    c = caudal.features.components(sa, 0.0)
    assert c.count > 1 and c.sizes.sum() == (g > 0).sum()
    assert np.allclose(caudal.extract.coarsen(sa, 8), g.reshape(64, 8, 48, 8).mean(axis=(1, 3)))
    p = caudal.temporal.PointStats()
    p.update(sa)
    assert np.array_equal(p.result()["mean"], g)

    # ... and no block was pulled to the other node to get it: each object
    # is still in its own node's store only.
    locations = get_object_locations([b.stored.ref for b in blocks.values()])
    for b in blocks.values():
        assert locations[b.stored.ref]["node_ids"] == [b.node], (b.rank, locations[b.stored.ref])
    # The derived arrays' blocks were made where their input blocks are.
    out = get_object_locations([b.stored.ref for b in lap.blocks.blocks.values()])
    for pos, b in lap.blocks.blocks.items():
        assert out[b.stored.ref]["node_ids"] == [blocks[pos].node]
