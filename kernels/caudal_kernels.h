/* caudal_kernels.h - analysis kernels over one block of a global array.
 *
 * Every kernel has the same shape: a per-block call computes a small partial
 * state straight from the block's memory (a zero-copy view of the object the
 * ingest put in Ray's store, so nothing is copied), and a merge combines two
 * partial states. The Python layer (python/caudal/) runs the per-block call
 * as a Ray task on the node holding the block and the merges as a tree of
 * tasks; this library knows nothing of Ray, Python or MPI.
 *
 * Conventions:
 * - Blocks are contiguous in C order (last index fastest); `count` lists the
 *   block's extent per dimension, `start` its offset in the global array.
 * - `dtype` is a caudal_dtype (caudal.h). Every real dtype is accepted and
 *   read as double; complex dtypes give CDK_ERR_DTYPE.
 * - Every function returns a cdk_status; outputs are written only on CDK_OK.
 * - No global state and no threads: concurrent calls on different states
 *   are safe.
 */
#ifndef CAUDAL_KERNELS_H
#define CAUDAL_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "caudal.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum cdk_status {
    CDK_OK = 0,
    CDK_ERR_DTYPE = -1, /* complex or unknown dtype */
    CDK_ERR_ARG = -2,   /* an argument out of its range (named in the docs) */
    CDK_ERR_SHAPE = -3, /* dimensions or face shapes that do not fit */
    CDK_ERR_NOMEM = -4,
    CDK_ERR_FORMAT = -5 /* a serialized state that is not one */
} cdk_status;

#define CDK_MAX_DIMS 8

/* A static English description of a status; never NULL. */
const char *cdk_strerror(int status);

/* ----------------------------------------------------------------- moments
 *
 * Count, mean, central moment sums M2..M4, min and max, merged with Pébay's
 * pairwise formulas (Sandia report SAND2008-6212), which stay accurate where
 * sums of powers cancel. Within a block, values are taken in runs of 1024:
 * two passes over a run (its mean, then its central sums), then the run is
 * merged into the block's state, so the cost is two reads of the cache line.
 *
 * NaN values are not included; they are counted in `nan` (so a caller that
 * wants NumPy's propagating behaviour sees them). Infinities are included and
 * make the moments inf or NaN as in NumPy. min and max are doubles: integers
 * beyond 2^53 are rounded. */
typedef struct cdk_moments {
    int64_t n;   /* values included */
    int64_t nan; /* NaN values left out */
    double mean;
    double m2, m3, m4; /* sums of (x - mean)^k */
    double min, max;   /* +inf / -inf while n == 0 */
} cdk_moments;

/* The state of no values. */
int cdk_moments_init(cdk_moments *m);

/* Add `n` elements of `dtype` at `data` to *m. */
int cdk_moments_add(cdk_moments *m, const void *data, int dtype, int64_t n);

/* *a becomes the state of the union of *a's and *b's values. */
int cdk_moments_merge(cdk_moments *a, const cdk_moments *b);

/* Add the n rates (now[i] - before[i]) / dt, each difference taken in
 * double, to *m: the same state, to the last bit, as cdk_moments_add of
 * those values in a float64 array, without the array (two blocks of one
 * array at two steps, read once each). dt: nonzero and not NaN. */
int cdk_moments_add_change(cdk_moments *m, const void *now, const void *before, int dtype,
                           int64_t n, double dt);

/* -------------------------------------------------------------- histograms
 *
 * `counts` holds nbins + 3 int64 and is added to, so blocks accumulate into
 * one array and two partial histograms merge by element-wise addition:
 * counts[0..nbins-1] are the bins, then values below the first edge, values
 * above the last edge, and NaN values. Bins are NumPy's: [e_i, e_i+1) except
 * the last, which includes its right edge. Values are compared as doubles. */

/* nbins equal bins over [lo, hi]; edges are lo + i * (hi - lo) / nbins
 * computed as numpy.linspace does, and bin search corrects the rounding of
 * the direct index exactly as numpy.histogram does, so the counts are
 * NumPy's. CDK_ERR_ARG unless lo < hi, both finite, and nbins >= 1. */
int cdk_histogram_uniform(const void *data, int dtype, int64_t n, double lo, double hi,
                          int64_t nbins, int64_t *counts);

/* Given edges (nedges >= 2, strictly increasing, finite, else CDK_ERR_ARG):
 * nbins = nedges - 1; bins found by binary search. */
int cdk_histogram_edges(const void *data, int dtype, int64_t n, const double *edges,
                        int64_t nedges, int64_t *counts);

/* -------------------------------------------------------- quantile sketch
 *
 * A mergeable quantile sketch with a deterministic bound (a compactor
 * hierarchy as in Manku-Rajagopalan-Lindsay and KLL, with alternating rather
 * than random offsets). Level h holds values of weight 2^h; when a level
 * holds `k` or more values it is sorted and every other value moves up one
 * level with double weight. One such compaction at level h moves the rank of
 * any value by at most 2^h, so the sketch adds up 2^h for every compaction it
 * (and every sketch merged into it) performed: `rank_error` is a guaranteed
 * bound, not an estimate, and is at most n (log2(n / k) + 1) / k.
 *
 * Semantics of cdk_sketch_quantile(q): with the n values sorted as
 * v[0] <= ... <= v[n-1] and r = q (n - 1), the value x returned is one of the
 * values added and v[floor(r) - e] <= x <= v[ceil(r) + e], e = rank_error,
 * indices clamped to 0..n-1. For e == 0 it is v[floor(r)] or v[ceil(r)],
 * so NumPy's quantile methods "lower" and "higher" bracket it. NaN values are
 * counted apart and never ranked. */
typedef struct cdk_sketch cdk_sketch;

/* k: values a level holds before it compacts, 8 <= k <= 2^20, even. */
int cdk_sketch_new(int64_t k, cdk_sketch **out);
void cdk_sketch_free(cdk_sketch *s);
int cdk_sketch_add(cdk_sketch *s, const void *data, int dtype, int64_t n);
/* *a takes in every value of *b (b is unchanged); k must be equal. */
int cdk_sketch_merge(cdk_sketch *a, const cdk_sketch *b);
/* n: values ranked; nan: NaN values seen; rank_error: the bound above. */
int cdk_sketch_info(const cdk_sketch *s, int64_t *n, int64_t *nan, int64_t *rank_error);
/* The k it was made with (a loaded sketch's k comes from its bytes). */
int cdk_sketch_k(const cdk_sketch *s, int64_t *k);
/* 0 <= q <= 1, else CDK_ERR_ARG; CDK_ERR_ARG when n == 0. */
int cdk_sketch_quantile(const cdk_sketch *s, double q, double *x);
/* Serialization (little-endian, versioned) so states travel between tasks:
 * *size receives the bytes needed; cdk_sketch_save writes at most cap. */
int cdk_sketch_size(const cdk_sketch *s, size_t *size);
int cdk_sketch_save(const cdk_sketch *s, void *buf, size_t cap);
int cdk_sketch_load(const void *buf, size_t size, cdk_sketch **out);

/* ---------------------------------------------------------------- stencils
 *
 * Halos: a block's neighbours are the blocks that share a face with it. For
 * axis d, `lo[d]` and `hi[d]` point to the neighbour's plane of values
 * adjacent to the block (shape: count with dimension d removed, C order, same
 * dtype as the block), or are NULL where the block touches the global border
 * on that side. Only faces are needed: none of these stencils reads a
 * diagonal neighbour. Outputs are double arrays of the block's shape. */

/* Derivative along `axis` with numpy.gradient's rules (edge_order=1):
 * (f[i+1] - f[i-1]) / (2 h) inside, one-sided (f[1] - f[0]) / h and
 * (f[n-1] - f[n-2]) / h at the global borders. A global extent below 2 along
 * `axis` is CDK_ERR_SHAPE (NumPy refuses it too); the caller knows the global
 * extent, so it passes `global_n`. */
int cdk_gradient(const void *data, int dtype, int ndim, const int64_t *count, int axis,
                 double h, int64_t global_n, const void *lo_face, const void *hi_face,
                 double *out);

/* Laplacian: sum over axes of (f[i+1] - 2 f[i] + f[i-1]) / h_d^2, with the
 * value beyond a global border taken equal to the border value (zero flux;
 * scipy.ndimage.laplace's mode="nearest" for h = 1). h: ndim spacings. */
int cdk_laplacian(const void *data, int dtype, int ndim, const int64_t *count,
                  const double *h, const void *const *lo, const void *const *hi,
                  double *out);

/* -------------------------------------------------------------- coarsening
 *
 * Coarse cell j along dimension d covers global indices [j f_d, (j+1) f_d),
 * cut at the global border. A block touches coarse cells first[d] ..
 * first[d] + ncells[d] - 1 with first[d] = start[d] / f_d; its partial
 * values for them are `acc` (sum for CDK_COARSEN_MEAN, max or min for the
 * others) and `num` (elements of the block in each cell), both C-order
 * arrays of shape ncells. Cells shared by neighbouring blocks merge by adding
 * sums and nums, or by max/min. NaN propagates, as in NumPy's mean and max.
 * cdk_coarsen_cells gives first and ncells so the caller can allocate. */
enum { CDK_COARSEN_MEAN = 0, CDK_COARSEN_MAX = 1, CDK_COARSEN_MIN = 2 };

int cdk_coarsen_cells(int ndim, const int64_t *start, const int64_t *count,
                      const int64_t *factor, int64_t *first, int64_t *ncells);
int cdk_coarsen(const void *data, int dtype, int ndim, const int64_t *start,
                const int64_t *count, const int64_t *factor, int op, double *acc,
                int64_t *num);

/* ------------------------------------------------------ connected components
 *
 * Threshold then label with face connectivity (scipy.ndimage.label's default
 * structure): values x with `x OP threshold` are foreground. Labels are
 * int32, 0 for background and 1..nlabels in order of first appearance in C
 * order. NaN is never foreground. */
enum { CDK_GT = 0, CDK_GE = 1, CDK_LT = 2, CDK_LE = 3 };

int cdk_label(const void *data, int dtype, int ndim, const int64_t *count,
              double threshold, int op, int32_t *labels, int64_t *nlabels);

/* For labels 1..nlabels: size[l-1] (elements) and sum[(l-1) * ndim + d], the
 * sum of global coordinates along d (start[d] + local index), from which the
 * caller forms centroids after merging components across blocks. */
int cdk_label_stats(const int32_t *labels, int ndim, const int64_t *start,
                    const int64_t *count, int64_t nlabels, int64_t *size, double *sum);

/* --------------------------------------------------- per-point time statistics
 *
 * One step of a block into per-point running state (Welford): `num` values
 * seen per point (NaN skipped), mean, m2 (sum of squared deviations), min and
 * max, each an array of n. Initialise num = 0, mean = m2 = 0, min = +inf,
 * max = -inf; variance is m2 / num (NumPy's var, ddof=0). */
int cdk_pointstats_add(const void *data, int dtype, int64_t n, int64_t *num, double *mean,
                       double *m2, double *min, double *max);

/* ---- molecular dynamics (md.c): one rank's atoms */

/* Per type t, mv2[t] += sum of mass[t] * |v_i|^2 over the atoms of type t and
 * count[t] += their number. v holds 3n velocities (x0 y0 z0 x1 ...), type n
 * types, mass/mv2/count nmass entries each (index 0 unused, as LAMMPS's
 * per-type masses). Each atom adds (vx*vx + vy*vy + vz*vz) * mass[t] in atom
 * order, LAMMPS's compute temp expression, so that a rank's sum is LAMMPS's
 * to the bit. An atom whose type is outside 1..nmass-1: CDK_ERR_ARG, its
 * index in *bad (nothing added). */
int cdk_md_kinetic(const double *v, const int32_t *type, int64_t n, const double *mass,
                   int64_t nmass, double *mv2, int64_t *count, int64_t *bad);

/* Sums of squared displacements from a reference, LAMMPS's compute msd (com
 * no) on one rank's atoms: for atom i, d = x + image * prd - its reference
 * position per component (prd: the box's lengths), sums[0..2] += d*d per
 * component and sums[3] += dx*dx + dy*dy + dz*dz, atom by atom in order. x
 * holds 3n positions, image 3n image flags, id n ids; the reference is
 * nref ids, sorted ascending (ref_id), and their 3 * nref unwrapped
 * positions in that order (ref), found by binary search: sparse or large
 * ids cost nothing. An id without a reference: CDK_ERR_ARG, its atom's
 * index in *bad (nothing added). */
int cdk_md_msd(const double *x, const int32_t *image, const int64_t *id, int64_t n,
               const double prd[3], const int64_t *ref_id, const double *ref, int64_t nref,
               double sums[4], int64_t *bad);

/* Pair distances binned for g(r), LAMMPS's compute rdf, on one rank's atoms
 * and the halo of other atoms within the cutoff of them (other ranks' atoms,
 * and periodic images, already shifted into this rank's frame: the halo's
 * x is the atom's x + image shift * box length, as LAMMPS's ghost atoms).
 * Each unordered pair within the bins is counted once over all ranks: a pair
 * of own atoms here (once), a pair of an own atom with a halo atom where the
 * own atom's id is the smaller (the other rank sees the same pair the other
 * way round and leaves it). A pair at distance r = sqrt(dx*dx + dy*dy +
 * dz*dz), dx = x_i - x_j, falls in bin (int)(r * delrinv) if below nbins
 * (LAMMPS's expression); counts[(ti * (ntypes + 1) + tj) * nbins + bin] += 1
 * with ti <= tj the pair's types. Cell lists of side `cutoff` find the pairs
 * (not all pairs), so delrinv must be at least nbins / cutoff (the bins end
 * at the cutoff, as LAMMPS's delr = cutoff / nbins makes them). x, hx: 3 per
 * atom; type, htype, id, hid: 1 per atom; ids unique; types 1..ntypes and
 * finite positions, else CDK_ERR_ARG with the atom's index in *bad (own
 * atoms first, then the halo's, n + index). */
int cdk_md_pairs(const double *x, const int32_t *type, const int64_t *id, int64_t n,
                 const double *hx, const int32_t *htype, const int64_t *hid, int64_t m,
                 double cutoff, double delrinv, int64_t nbins, int64_t ntypes, int64_t *counts,
                 int64_t *bad);

#ifdef __cplusplus
}
#endif
#endif
