/* sketch.c - the mergeable quantile sketch (compactor levels).
 *
 * Level h holds values of weight 2^h, unsorted. Compacting a level sorts it,
 * sends every other value (starting at the level's alternating offset) one
 * level up and drops the rest; an odd value out stays. Within any sorted
 * level at most one pair straddles a given value y, so a compaction at level
 * h moves the weight at or below y (and below y) by at most 2^h: summing
 * 2^h over all compactions bounds the rank error of every answer.
 *
 * Capacities (the levels' and the sort's scratch) are reserved before a call
 * changes anything, so add and merge either fail with nothing changed or
 * cannot fail. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "caudal_kernels.h"
#include "dtype.h"

/* Level h weighs 2^h and n < 2^63, so levels 0..62 are the most there can
 * be; the serialized count of levels is checked against this. */
enum { RUN = 1024, MAX_LEVELS = 63, MIN_K = 8, MAX_K = 1 << 20 };

/* The level sort (see "sort" below): radix digits of DIGIT_BITS bits, so
 * DIGITS passes at most over a 64-bit key; RADIX_MIN values and up go by
 * radix, fewer by introsort; at most MAX_RUNS presorted runs are merged. */
enum {
    DIGIT_BITS = 11,
    DIGITS = (64 + DIGIT_BITS - 1) / DIGIT_BITS,
    BUCKETS = 1 << DIGIT_BITS,
    RADIX_MIN = 64,
    MAX_RUNS = 8
};

/* What the level sort needs besides the level: a scratch of cap values and
 * the digit counts (uint32 is enough: a level holds fewer than 4 k <= 2^22
 * values). Kept in the sketch so that compacting allocates nothing. */
typedef struct sort_work {
    double *tmp;
    int64_t cap;
    uint32_t count[DIGITS][BUCKETS];
} sort_work;

typedef struct level {
    double *v;
    int64_t len, cap;
} level;

struct cdk_sketch {
    int64_t k, n, nan, err;
    uint64_t parity; /* bit h: the offset of level h's next compaction */
    int nlev;        /* levels 0..nlev-1 may hold values */
    level lev[MAX_LEVELS];
    sort_work work;
};

/* ------------------------------------------------------------------ sort
 *
 * Introsort of NaN-free doubles: inlined comparisons are several times
 * faster than qsort's callback on the k-value levels, and the heapsort
 * fallback keeps adversarial input O(n log n). */

static void swap(double *a, double *b)
{
    double t = *a;
    *a = *b;
    *b = t;
}

static void insertion_sort(double *a, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        double v = a[i];
        size_t j = i;
        for (; j > 0 && v < a[j - 1]; j--)
            a[j] = a[j - 1];
        a[j] = v;
    }
}

static void sift_down(double *a, size_t i, size_t n)
{
    for (size_t c; (c = 2 * i + 1) < n; i = c) {
        if (c + 1 < n && a[c] < a[c + 1])
            c++;
        if (!(a[i] < a[c]))
            return;
        swap(&a[i], &a[c]);
    }
}

static void heap_sort(double *a, size_t n)
{
    for (size_t i = n / 2; i-- > 0;)
        sift_down(a, i, n);
    for (size_t i = n; i-- > 1;) {
        swap(&a[0], &a[i]);
        sift_down(a, 0, i);
    }
}

static double median3(double a, double b, double c)
{
    if (a < b)
        return b < c ? b : (a < c ? c : a);
    return a < c ? a : (b < c ? c : b);
}

/* Hoare partition around the median of the first, middle and last values.
 * Both scans stop at a value equal to the pivot, and the pivot is one of
 * three values of which one is >= and one <= it, so the split point j
 * satisfies 0 <= j < n - 1: both parts are non-empty. */
static size_t partition(double *a, size_t n)
{
    double p = median3(a[0], a[n / 2], a[n - 1]);
    size_t i = 0, j = n - 1;
    for (;;) {
        while (a[i] < p)
            i++;
        while (p < a[j])
            j--;
        if (i >= j)
            return j;
        swap(&a[i++], &a[j--]);
    }
}

static void intro_sort(double *a, size_t n, int depth)
{
    while (n > 16) {
        if (depth-- == 0) {
            heap_sort(a, n);
            return;
        }
        size_t j = partition(a, n) + 1;
        /* Recurse into the smaller part: the stack stays O(log n). */
        if (j < n - j) {
            intro_sort(a, j, depth);
            a += j;
            n -= j;
        } else {
            intro_sort(a + j, n - j, depth);
            n = j;
        }
    }
    insertion_sort(a, n);
}

static void sort_values(double *a, int64_t n)
{
    int depth = 0;
    for (int64_t m = n; m > 1; m >>= 1)
        depth += 2;
    intro_sort(a, (size_t)n, depth);
}

/* Radix sort and run merging work on the values' bits, which go through
 * memcpy so that the double storage can hold keys without type punning. */
static uint64_t bits_at(const double *p)
{
    uint64_t u;
    memcpy(&u, p, sizeof u);
    return u;
}

static void set_bits(double *p, uint64_t u)
{
    memcpy(p, &u, sizeof u);
}

/* An order-preserving key of a value's bits: 2^63 plus the magnitude for a
 * positive value, 2^63 minus it for a negative one (magnitudes are below
 * 2^63, inf included; NaN never reaches a level). Adding or negating keeps
 * the magnitude's low zero bits zero whatever the sign, so the low digits
 * of integers or float32 converted to double stay constant and their radix
 * passes are skipped (flipping the bits of negatives would set them). -0
 * and +0 share the key 2^63; radix_sort puts the -0 back. */
static const uint64_t TOP = UINT64_C(1) << 63;

static uint64_t to_key(uint64_t b)
{
    return b & TOP ? TOP - (b & ~TOP) : TOP + b;
}

/* The bits of a key's value, +0 for 2^63. */
static uint64_t from_key(uint64_t k)
{
    return k >= TOP ? k - TOP : (TOP - k) | TOP;
}

/* LSD radix sort of n <= w->cap values: one pass turns the values into keys
 * (in place) and counts every digit at once; a digit that is the same in
 * every key is skipped (common: clustered data shares its sign and
 * exponent, converted integers have all-zero low bits); the other digits
 * scatter stably between a and the scratch; a last pass turns keys back
 * into values, in a, with the -0 (counted on the way in) first among the
 * zeros, where the key order of the bits puts it. O(n) with small
 * constants, against the introsort's O(n log n) mispredicted comparisons. */
static void radix_sort(double *a, int64_t n, sort_work *w)
{
    uint32_t(*count)[BUCKETS] = w->count;
    memset(w->count, 0, sizeof w->count);
    int64_t below = 0, negzero = 0; /* keys below 2^63: negative values */
    for (int64_t i = 0; i < n; i++) {
        uint64_t b = bits_at(a + i), k = to_key(b);
        below += k < TOP;
        negzero += b == TOP;
        set_bits(a + i, k);
        for (int d = 0; d < DIGITS; d++)
            count[d][k >> (d * DIGIT_BITS) & (BUCKETS - 1)]++;
    }
    double *src = a, *dst = w->tmp;
    for (int d = 0; d < DIGITS; d++) {
        int shift = d * DIGIT_BITS;
        uint32_t *c = count[d];
        if (c[bits_at(src) >> shift & (BUCKETS - 1)] == (uint64_t)n)
            continue;
        uint32_t sum = 0;
        for (int b = 0; b < BUCKETS; b++) {
            uint32_t m = c[b];
            c[b] = sum;
            sum += m;
        }
        for (int64_t i = 0; i < n; i++) {
            uint64_t k = bits_at(src + i);
            set_bits(dst + c[k >> shift & (BUCKETS - 1)]++, k);
        }
        double *t = src;
        src = dst;
        dst = t;
    }
    for (int64_t i = 0; i < n; i++)
        set_bits(a + i, from_key(bits_at(src + i)));
    for (int64_t i = below; i < below + negzero; i++)
        set_bits(a + i, TOP);
}

static void reverse(double *a, int64_t n)
{
    for (int64_t i = 0, j = n - 1; i < j; i++, j--)
        swap(&a[i], &a[j]);
}

/* Splits a into ascending runs (reversing strictly descending ones, which
 * keeps it a permutation) and returns how many, with their ends in end[];
 * 0 once there are more than MAX_RUNS, which random data shows within a
 * few dozen values. Presorted runs are the common case above level 0: such
 * a level is an odd value out followed by the sorted halves that
 * compactions below sent up; smooth data makes them at level 0 too. */
static int find_runs(double *a, int64_t n, int64_t *end)
{
    int runs = 0;
    for (int64_t i = 0; i < n; i = end[runs++]) {
        if (runs == MAX_RUNS)
            return 0;
        int64_t j = i + 1;
        if (j < n && a[j] < a[i]) {
            while (j + 1 < n && a[j + 1] < a[j])
                j++;
            reverse(a + i, ++j - i);
        } else {
            while (j < n && !(a[j] < a[j - 1]))
                j++;
        }
        end[runs] = j;
    }
    return runs;
}

/* Merges src[lo, mid) and src[mid, hi) into dst[lo, hi), stably. Each step
 * depends on the last one's comparison (branch-free, since for random data
 * it is a coin toss the predictor would lose), so the merge runs from both
 * ends at once: the front takes the smallest (the left value on a tie),
 * the back the largest (the right value on a tie), two independent chains
 * that together take 2 s <= hi - lo distinct values. Neither end exhausts
 * a run before its s-th step, as each took at most s - 1 values from it
 * before, so their s steps read only inside the runs. */
static void merge_two(const double *src, int64_t lo, int64_t mid, int64_t hi, double *dst)
{
    int64_t s = mid - lo < hi - mid ? mid - lo : hi - mid; /* the shorter run */
    int64_t i = lo, j = mid, o = lo, ib = mid - 1, jb = hi - 1, ob = hi - 1;
    for (int64_t t = 0; t < s; t++) {
        double x = src[i], y = src[j];
        int right = y < x;
        dst[o++] = right ? y : x;
        j += right;
        i += !right;
        double xb = src[ib], yb = src[jb];
        int left = yb < xb;
        dst[ob--] = left ? xb : yb;
        ib -= left;
        jb -= !left;
    }
    /* What the two ends left: the middle of both runs, merged as usual. */
    while (i <= ib && j <= jb) {
        double x = src[i], y = src[j];
        int right = y < x;
        dst[o++] = right ? y : x;
        j += right;
        i += !right;
    }
    if (i <= ib)
        memcpy(dst + o, src + i, (size_t)(ib + 1 - i) * sizeof *dst);
    else if (j <= jb)
        memcpy(dst + o, src + j, (size_t)(jb + 1 - j) * sizeof *dst);
}

/* Merges the runs pairwise, back and forth between a and the scratch,
 * ceil(log2(runs)) passes; the result ends in a. */
static void merge_runs(double *a, int64_t n, int64_t *end, int runs, double *tmp)
{
    double *src = a, *dst = tmp;
    while (runs > 1) {
        int out = 0;
        int64_t lo = 0;
        for (int r = 0; r < runs; r += 2) {
            int64_t mid = end[r], hi = r + 1 < runs ? end[r + 1] : mid;
            merge_two(src, lo, mid, hi, dst);
            end[out++] = hi; /* out <= r: no end[] still to be read */
            lo = hi;
        }
        runs = out;
        double *t = src;
        src = dst;
        dst = t;
    }
    if (src != a)
        memcpy(a, src, (size_t)n * sizeof *a);
}

/* Sorts a level: presorted runs are merged, other large levels go by radix,
 * small ones by introsort. Every path is a correct sort, so the values a
 * compaction sends up are the same whichever runs. A level beyond the
 * scratch (not expected: add and merge reserve it) still sorts, in place. */
static void sort_level(double *a, int64_t n, sort_work *w)
{
    if (n < 2)
        return;
    if (n > w->cap) {
        sort_values(a, n);
        return;
    }
    int64_t end[MAX_RUNS];
    int runs = find_runs(a, n, end);
    if (runs > 1)
        merge_runs(a, n, end, runs, w->tmp);
    else if (runs == 0 && n >= RADIX_MIN)
        radix_sort(a, n, w);
    else if (runs == 0)
        sort_values(a, n);
}

/* ---------------------------------------------------------------- levels */

static int reserve(level *l, int64_t cap)
{
    if (l->cap >= cap)
        return CDK_OK;
    double *v = realloc(l->v, (size_t)cap * sizeof *v);
    if (!v)
        return CDK_ERR_NOMEM;
    l->v = v;
    l->cap = cap;
    return CDK_OK;
}

/* The sort's scratch for levels of up to cap values. */
static int reserve_work(sort_work *w, int64_t cap)
{
    if (w->cap >= cap)
        return CDK_OK;
    double *t = realloc(w->tmp, (size_t)cap * sizeof *t);
    if (!t)
        return CDK_ERR_NOMEM;
    w->tmp = t;
    w->cap = cap;
    return CDK_OK;
}

/* Levels that can hold values once the sketch holds weight w: level h + 1
 * receives values only from a compaction of k values of weight 2^h. */
static int levels_for(int64_t k, int64_t w)
{
    int top = 0;
    while (top < MAX_LEVELS - 1 && (w >> top) >= k)
        top++;
    return top + 1;
}

/* Level h's values, sorted, go half up; the sketch's bound grows by 2^h. */
static void compact(cdk_sketch *s, int h)
{
    level *l = &s->lev[h], *up = &s->lev[h + 1];
    sort_level(l->v, l->len, &s->work);
    int64_t pairs = l->len / 2, off = (int64_t)(s->parity >> h & 1);
    for (int64_t p = 0; p < pairs; p++)
        up->v[up->len + p] = l->v[2 * p + off];
    up->len += pairs;
    if (l->len & 1)
        l->v[0] = l->v[l->len - 1];
    l->len &= 1;
    s->parity ^= UINT64_C(1) << h;
    s->err += INT64_C(1) << h;
}

/* Compact every full level, bottom up (a compaction can fill the next). */
static void cascade(cdk_sketch *s)
{
    for (int h = 0; h < s->nlev - 1; h++)
        if (s->lev[h].len >= s->k)
            compact(s, h);
}

/* ------------------------------------------------------------ public API */

int cdk_sketch_new(int64_t k, cdk_sketch **out)
{
    if (!out || k < MIN_K || k > MAX_K || k % 2)
        return CDK_ERR_ARG;
    cdk_sketch *s = calloc(1, sizeof *s);
    if (!s)
        return CDK_ERR_NOMEM;
    s->k = k;
    s->nlev = 1;
    *out = s;
    return CDK_OK;
}

void cdk_sketch_free(cdk_sketch *s)
{
    if (!s)
        return;
    for (int h = 0; h < MAX_LEVELS; h++)
        free(s->lev[h].v);
    free(s->work.tmp);
    free(s);
}

/* Adds the run's values to level 0, compacting whenever it reaches k. */
static void add_run(cdk_sketch *s, const double *x, int len)
{
    level *l0 = &s->lev[0];
    for (int i = 0; i < len;) {
        int take = len - i < s->k - l0->len ? len - i : (int)(s->k - l0->len);
        double *dst = l0->v + l0->len;
        int kept = 0;
        for (int j = 0; j < take; j++) {
            dst[kept] = x[i + j];
            kept += x[i + j] == x[i + j]; /* NaN is written over */
        }
        l0->len += kept;
        s->n += kept;
        s->nan += take - kept;
        i += take;
        if (l0->len == s->k)
            cascade(s);
    }
}

int cdk_sketch_add(cdk_sketch *s, const void *data, int dtype, int64_t n)
{
    if (!cdk_real_size(dtype))
        return CDK_ERR_DTYPE;
    if (!s || n < 0 || (n > 0 && !data) || n > INT64_MAX - s->n - s->nan)
        return CDK_ERR_ARG;
    /* While adding, a level holds fewer than 2k values: k - 1 of its own
     * and fewer than k from the level below. */
    int nlev = levels_for(s->k, s->n + n);
    for (int h = 0; h < nlev; h++)
        if (reserve(&s->lev[h], 2 * s->k) != CDK_OK)
            return CDK_ERR_NOMEM;
    if (reserve_work(&s->work, 2 * s->k) != CDK_OK)
        return CDK_ERR_NOMEM;
    if (nlev > s->nlev)
        s->nlev = nlev;
    double buf[RUN];
    for (int64_t off = 0; off < n; off += RUN) {
        int len = n - off < RUN ? (int)(n - off) : RUN;
        add_run(s, cdk_load_run(data, dtype, off, len, buf), len);
    }
    return CDK_OK;
}

int cdk_sketch_merge(cdk_sketch *a, const cdk_sketch *b)
{
    if (!a || !b || a->k != b->k || b->n > INT64_MAX - a->n - a->nan - b->nan ||
        b->err > INT64_MAX - a->err)
        return CDK_ERR_ARG;
    /* Plays the merge on the level lengths alone (they do not depend on the
     * values) to reserve each level's peak; b may be a. */
    int64_t blen[MAX_LEVELS] = {0}, carry = 0, most = 0;
    int nlev = 0, bnlev = b->nlev;
    for (int h = 0; h < bnlev; h++)
        blen[h] = b->lev[h].len;
    for (;; nlev++) {
        if (nlev == MAX_LEVELS)
            return CDK_ERR_ARG; /* beyond the weight n allows */
        int64_t len = (nlev < a->nlev ? a->lev[nlev].len : 0) + blen[nlev] + carry;
        if (len == 0 && nlev >= a->nlev && nlev >= bnlev)
            break;
        if (reserve(&a->lev[nlev], len) != CDK_OK)
            return CDK_ERR_NOMEM;
        most = len > most ? len : most;
        carry = len >= a->k ? len / 2 : 0;
    }
    if (reserve_work(&a->work, most) != CDK_OK)
        return CDK_ERR_NOMEM;
    int64_t bn = b->n, bnan = b->nan, berr = b->err;
    for (int h = 0; h < bnlev; h++) {
        if (blen[h] == 0)
            continue; /* its pointer may be NULL */
        memcpy(a->lev[h].v + a->lev[h].len, b->lev[h].v, (size_t)blen[h] * sizeof(double));
        a->lev[h].len += blen[h];
    }
    if (nlev > a->nlev)
        a->nlev = nlev;
    a->n += bn;
    a->nan += bnan;
    a->err += berr;
    cascade(a);
    return CDK_OK;
}

int cdk_sketch_info(const cdk_sketch *s, int64_t *n, int64_t *nan, int64_t *rank_error)
{
    if (!s)
        return CDK_ERR_ARG;
    if (n)
        *n = s->n;
    if (nan)
        *nan = s->nan;
    if (rank_error)
        *rank_error = s->err;
    return CDK_OK;
}

int cdk_sketch_k(const cdk_sketch *s, int64_t *k)
{
    if (!s || !k)
        return CDK_ERR_ARG;
    *k = s->k;
    return CDK_OK;
}

/* The weighted values in order: each level is sorted in a copy, then the
 * levels are walked together, taking the smallest head each step, until the
 * weight taken exceeds the target rank t. Every weight counted before the
 * value returned is at or below it and every one after at or above it, so
 * its rank is off by no more than the rank error. */
int cdk_sketch_quantile(const cdk_sketch *s, double q, double *x)
{
    if (!s || !x || !(q >= 0.0 && q <= 1.0) || s->n == 0)
        return CDK_ERR_ARG;
    int64_t total = 0, start[MAX_LEVELS], pos[MAX_LEVELS];
    for (int h = 0; h < s->nlev; h++) {
        start[h] = pos[h] = total;
        total += s->lev[h].len;
    }
    /* The copies, then the sort's scratch for the longest level; s is
     * const and may be shared, so its own scratch is not used. */
    int64_t most = 0;
    for (int h = 0; h < s->nlev; h++)
        most = s->lev[h].len > most ? s->lev[h].len : most;
    double *v = malloc((size_t)(total + most) * sizeof *v);
    sort_work *w = malloc(sizeof *w);
    if (!v || !w) {
        free(v);
        free(w);
        return CDK_ERR_NOMEM;
    }
    w->tmp = v + total;
    w->cap = most;
    for (int h = 0; h < s->nlev; h++) {
        if (s->lev[h].len)
            memcpy(v + start[h], s->lev[h].v, (size_t)s->lev[h].len * sizeof *v);
        sort_level(v + start[h], s->lev[h].len, w);
    }
    free(w);
    /* The nearest rank to r = q (n - 1): floor(r) or ceil(r) when exact. */
    double r = floor(q * (double)(s->n - 1) + 0.5);
    int64_t t = r < (double)(s->n - 1) ? (int64_t)r : s->n - 1, seen = 0;
    double found = 0.0;
    while (seen <= t) {
        int best = -1;
        for (int h = 0; h < s->nlev; h++)
            if (pos[h] < start[h] + s->lev[h].len && (best < 0 || v[pos[h]] < v[pos[best]]))
                best = h;
        if (best < 0)
            break; /* not reached: the weights sum to n > t */
        found = v[pos[best]++];
        seen += INT64_C(1) << best;
    }
    free(v);
    *x = found;
    return CDK_OK;
}

/* ---------------------------------------------------------- serialization
 *
 * Little-endian: magic "CDKS", u32 version, then u64 k, n, nan, rank_error,
 * parity, u32 nlev, u32 zero, nlev u64 level lengths, and the values of
 * level 0, 1, ... as IEEE doubles. Levels above the last non-empty one are
 * not written. */

enum { VERSION = 1, HEAD = 56 };
static const unsigned char MAGIC[4] = {'C', 'D', 'K', 'S'};

static void put_u64(unsigned char *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const unsigned char *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

static int saved_levels(const cdk_sketch *s)
{
    int nlev = s->nlev;
    while (nlev > 0 && s->lev[nlev - 1].len == 0)
        nlev--;
    return nlev;
}

int cdk_sketch_size(const cdk_sketch *s, size_t *size)
{
    if (!s || !size)
        return CDK_ERR_ARG;
    int nlev = saved_levels(s);
    size_t bytes = HEAD + 8 * (size_t)nlev;
    for (int h = 0; h < nlev; h++)
        bytes += 8 * (size_t)s->lev[h].len;
    *size = bytes;
    return CDK_OK;
}

int cdk_sketch_save(const cdk_sketch *s, void *buf, size_t cap)
{
    size_t size;
    if (!buf || cdk_sketch_size(s, &size) != CDK_OK || cap < size)
        return CDK_ERR_ARG;
    unsigned char *p = buf;
    int nlev = saved_levels(s);
    memcpy(p, MAGIC, 4);
    put_u32(p + 4, VERSION);
    put_u64(p + 8, (uint64_t)s->k);
    put_u64(p + 16, (uint64_t)s->n);
    put_u64(p + 24, (uint64_t)s->nan);
    put_u64(p + 32, (uint64_t)s->err);
    put_u64(p + 40, s->parity);
    put_u32(p + 48, (uint32_t)nlev);
    put_u32(p + 52, 0);
    p += HEAD;
    for (int h = 0; h < nlev; h++, p += 8)
        put_u64(p, (uint64_t)s->lev[h].len);
    for (int h = 0; h < nlev; h++)
        for (int64_t i = 0; i < s->lev[h].len; i++, p += 8) {
            uint64_t bits;
            memcpy(&bits, &s->lev[h].v[i], 8);
            put_u64(p, bits);
        }
    return CDK_OK;
}

/* The header's counts against each other and the buffer's size: every
 * level below k values (compactions leave none full), the level weights
 * summing to n, and a rank error and parity that compactions could have
 * made. Values reach level top > 0 only by a compaction at top - 1, and a
 * level compacted is below the top one, so the error is at least
 * 2^(top-1) (0 iff top is 0) and parity bits lie below top; a compaction
 * at h takes k values of weight 2^h, so level h adds at most floor(n / k),
 * and only levels with k 2^h <= n compact. */
static int check_header(const unsigned char *p, size_t size, int64_t *len)
{
    if (size < HEAD || memcmp(p, MAGIC, 4) != 0 || get_u32(p + 4) != VERSION ||
        get_u32(p + 52) != 0)
        return CDK_ERR_FORMAT;
    uint64_t k = get_u64(p + 8), n = get_u64(p + 16), nan = get_u64(p + 24);
    uint64_t err = get_u64(p + 32), parity = get_u64(p + 40), nlev = get_u32(p + 48);
    if (k < MIN_K || k > MAX_K || k % 2 || n > INT64_MAX || nan > INT64_MAX - n ||
        err > INT64_MAX || nlev > MAX_LEVELS || (size - HEAD) / 8 < nlev)
        return CDK_ERR_FORMAT;
    uint64_t values = 0, weight = 0;
    int top = 0;
    for (uint64_t h = 0; h < nlev; h++) {
        uint64_t l = get_u64(p + HEAD + 8 * h);
        if (l >= k || l > (INT64_MAX - weight) >> h)
            return CDK_ERR_FORMAT;
        weight += l << h;
        values += l;
        len[h] = (int64_t)l;
        top = l ? (int)h : top;
    }
    int compactable = levels_for((int64_t)k, (int64_t)n) - 1;
    if (weight != n || (size - HEAD) / 8 - nlev != values || (size - HEAD) % 8)
        return CDK_ERR_FORMAT;
    if (top > compactable || (top == 0) != (err == 0) ||
        (top > 0 && err < UINT64_C(1) << (top - 1)) ||
        (compactable > 0 && err / (uint64_t)compactable > n / k) || parity >> top)
        return CDK_ERR_FORMAT;
    return CDK_OK;
}

int cdk_sketch_load(const void *buf, size_t size, cdk_sketch **out)
{
    int64_t len[MAX_LEVELS];
    if (!buf || !out)
        return CDK_ERR_ARG;
    const unsigned char *p = buf;
    if (check_header(p, size, len) != CDK_OK)
        return CDK_ERR_FORMAT;
    cdk_sketch *s;
    int rc = cdk_sketch_new((int64_t)get_u64(p + 8), &s);
    if (rc != CDK_OK)
        return rc;
    s->n = (int64_t)get_u64(p + 16);
    s->nan = (int64_t)get_u64(p + 24);
    s->err = (int64_t)get_u64(p + 32);
    s->parity = get_u64(p + 40);
    s->nlev = (int)get_u32(p + 48);
    const unsigned char *v = p + HEAD + 8 * (size_t)s->nlev;
    for (int h = 0; h < s->nlev && rc == CDK_OK; h++) {
        rc = reserve(&s->lev[h], len[h] > 0 ? len[h] : 1);
        for (int64_t i = 0; i < len[h] && rc == CDK_OK; i++, v += 8) {
            uint64_t bits = get_u64(v);
            memcpy(&s->lev[h].v[i], &bits, 8);
            if (isnan(s->lev[h].v[i]))
                rc = CDK_ERR_FORMAT;
        }
        s->lev[h].len = len[h];
    }
    if (s->nlev == 0)
        s->nlev = 1;
    if (rc != CDK_OK) {
        cdk_sketch_free(s);
        return rc;
    }
    *out = s;
    return CDK_OK;
}
