"""One module per system measured by bench/bench_peers.py (see common.py)."""
