"""The runtime of ``caudal run``: what moves a simulation's blocks to the analyses.

    launcher.py    ``caudal run``: Ray, the actors, the simulation, the run folder, the end
    private.py     the run's private directory (socket, Ray's files) and what removes it
    simulation.py  the simulation's processes (mpiexec in a session of its own)
    ingest.py      the ingest actor, one per node: the receiver's blocks into Ray's store
    placement.py   where ingest actors listen, which ranks go to which, where ranks run
    slurm.py       inside a Slurm allocation: which nodes do what, Ray on them through srun
    report.py      what an ingest reports (a Part) and how, and the driver's side of it
    relay.py       relays: the head's stand-ins for groups of nodes, in a tree
    head.py        the head actor: declarations, step completeness, run counters
    receipt.py     reductions the ingests compute on blocks as they arrive, learned by the driver
    driver.py      the analyses called on windows of complete steps

It sits above the rest of the package and imports it, never the other way
round: the data model (``caudal.catalog``: declarations, layouts, the block
descriptor; ``caudal.blocks``: grids of blocks and where work on them runs)
and the user API (``caudal.analytics`` and the kernels) work without it, on
Dask and NumPy arrays as on the arrays of a run.
"""
