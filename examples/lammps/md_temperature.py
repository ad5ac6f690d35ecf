"""Analytics for examples/lammps: run with

    caudal run -n 2 --mpiexec mpirun.openmpi --analytics examples/lammps/md_temperature.py \\
        -- build/release/examples/lammps_caudal examples/lammps/in.lj 1000 --every 100

Per published step, the temperature and kinetic energy of every rank's
atoms, computed where each rank's velocities lie (caudal.md.kinetic, the C
kernel in kernels/md.c), and the number of atoms they cover. LAMMPS writes
its own temperature for the same steps into thermo.txt (in.lj), to compare.
"""

import caudal


@caudal.analysis("v", "type", "mass", "units")
def temperature(v, types, mass, units, ctx):
    boltz, mvv2e, _dt = units[-1].data.compute()
    k = caudal.md.kinetic(v[-1], types[-1], mass[-1].data.compute())
    ctx.record("temp", k.temperature(boltz, mvv2e))
    ctx.record("ke", k.energy(mvv2e))
    ctx.record("natoms", k.natoms)
