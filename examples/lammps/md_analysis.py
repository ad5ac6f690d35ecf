"""Analytics for examples/lammps: run with

    caudal run -n 2 --mpiexec mpirun.openmpi --analytics examples/lammps/md_analysis.py \\
        -- build/release/examples/lammps_caudal examples/lammps/in.lj 1000 --every 100

Per published step, computed where each rank's atoms lie (caudal.md, the C
kernels in kernels/md.c):

- temperature: the temperature and kinetic energy of all atoms, and how many
  atoms they cover;
- diffusion: the mean square displacement from the first published step,
  each atom followed by its id across ranks, positions unwrapped with the
  image flags.

LAMMPS writes its own temperature and MSD for the same steps into
thermo.txt and msd.txt (in.lj), to compare.
"""

import caudal

msd = caudal.md.MSD()


@caudal.analysis("v", "type", "mass", "units")
def temperature(v, types, mass, units, ctx):
    boltz, mvv2e, _dt = units[-1].data.compute()
    k = caudal.md.kinetic(v[-1], types[-1], mass[-1].data.compute())
    ctx.record("temp", k.temperature(boltz, mvv2e))
    ctx.record("ke", k.energy(mvv2e))
    ctx.record("natoms", k.natoms)


@caudal.analysis("x", "image", "id", "box")
def diffusion(x, image, ids, box, ctx):
    mx, my, mz, m = msd.update(x[-1], image[-1], ids[-1], box[-1].data.compute())
    ctx.record("msd", [mx, my, mz, m])
