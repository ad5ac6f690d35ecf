"""Analytics for examples/lammps: run with

    caudal run -n 2 --mpiexec mpirun.openmpi --analytics examples/lammps/md_analysis.py \\
        -- build/release/examples/lammps_caudal examples/lammps/in.lj 1000 --every 100

Per published step, computed where each rank's atoms lie (caudal.md, the C
kernels in kernels/md.c):

- temperature: the temperature and kinetic energy of all atoms, and how many
  atoms they cover;
- diffusion: the mean square displacement from the first published step,
  each atom followed by its id across ranks, positions unwrapped with the
  image flags;
- structure: g(r) to the potential's cutoff, each rank's atoms against a
  halo of its neighbours' (and periodic images), and at the end its average
  over the steps in rdf_mean.txt (r, g, coordination number);
- speeds: the distribution of the atoms' speeds.

LAMMPS writes its own temperature, MSD and g(r) for the same steps into
thermo.txt, msd.txt and rdf.txt (in.lj), to compare.
"""

import numpy as np

import caudal

CUTOFF, BINS = 2.5, 100  # in.lj's pair cutoff, and LAMMPS's compute rdf bins

msd = caudal.md.MSD()
rdfs = []


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


@caudal.analysis("x", "type", "id", "box")
def structure(x, types, ids, box, ctx):
    r = caudal.md.rdf(x[-1], types[-1], ids[-1], box[-1].data.compute(), CUTOFF, BINS)
    rdfs.append(r)
    ctx.record("g_peak_r", float(r.r[np.argmax(r.g())]))
    ctx.record("coordination", float(r.coord()[-1]))


@caudal.analysis("v")
def speeds(v, ctx):
    h = caudal.md.speeds(v[-1], bins=40, range=(0.0, 4.0))
    ctx.record("speeds", h.counts.tolist())


@caudal.at_end
def average_structure(ctx):
    if rdfs:
        mean = caudal.md.Rdf.mean(rdfs)
        np.savetxt(ctx.run_dir / "rdf_mean.txt", np.column_stack([mean.r, mean.g(), mean.coord()]),
                   header="r g coord (g(r) averaged over %d steps)" % mean.steps)
