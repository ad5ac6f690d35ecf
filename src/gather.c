/* gather.c - the receiver's gathering mode: a node's steps as one event.
 *
 * Work per event is linear in the ranks and the blocks held (a scan for the
 * floor, a sort of the blocks handed out): a few microseconds for a node of
 * 128 ranks, against the one Python event per rank and frame it replaces. */
#include "gather.h"

#include <stdlib.h>
#include <string.h>

enum { /* in rising order */
    FLOOR_NONE, /* a connected rank has finished no step: nothing is complete */
    FLOOR_AT,   /* every step up to `floor` is complete */
    FLOOR_ALL   /* no rank connected: everything held is complete */
};

void cdl_gather_init(cdl_gather *g)
{
    memset(g, 0, sizeof *g);
    g->floor_kind = FLOOR_ALL;
}

void cdl_gather_free(cdl_gather *g)
{
    free(g->members);
    free(g->held);
    free(g->sorted);
    free(g->out);
    free(g->progress);
    free(g->drops);
    free(g->drops_out);
    memset(g, 0, sizeof *g);
}

static int grow(void **p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap : 16;
    while (ncap < need)
        ncap *= 2;
    void *np = realloc(*p, ncap * size);
    if (!np)
        return -1;
    *p = np;
    *cap = ncap;
    return 0;
}

static cdl_member *member(cdl_gather *g, uint64_t conn)
{
    for (size_t i = 0; i < g->nmembers; i++)
        if (g->members[i].conn == conn)
            return &g->members[i];
    return NULL;
}

int cdl_gather_join(cdl_gather *g, uint64_t conn, int rank)
{
    /* progress has an entry per member: grown alongside. */
    if (grow((void **)&g->members, &g->members_cap, g->nmembers + 1, sizeof *g->members) ||
        grow((void **)&g->progress, &g->progress_cap, g->nmembers + 1, sizeof *g->progress))
        return CAUDAL_ERR_NOMEM;
    g->members[g->nmembers++] = (cdl_member){.conn = conn, .rank = rank};
    return CAUDAL_OK;
}

void cdl_gather_leave(cdl_gather *g, uint64_t conn)
{
    cdl_member *m = member(g, conn);
    if (m)
        *m = g->members[--g->nmembers];
}

int cdl_gather_block(cdl_gather *g, uint64_t conn, const caudal_step_block *b)
{
    /* The scratch and output arrays can take every held block, so that
     * making an event never allocates. */
    size_t need = g->nheld + 1;
    if (grow((void **)&g->held, &g->held_cap, need, sizeof *g->held) ||
        grow((void **)&g->sorted, &g->sorted_cap, need, sizeof *g->sorted) ||
        grow((void **)&g->out, &g->out_cap, need, sizeof *g->out))
        return CAUDAL_ERR_NOMEM;
    g->held[g->nheld++] = (cdl_held){.b = *b, .conn = conn, .seq = g->seq++};
    return CAUDAL_OK;
}

void cdl_gather_finished(cdl_gather *g, uint64_t conn, uint64_t step)
{
    cdl_member *m = member(g, conn);
    if (m) {
        m->has_high = 1;
        m->high = step;
    }
}

int cdl_gather_dropped(cdl_gather *g, uint64_t conn, uint64_t first, uint64_t last,
                       uint64_t count)
{
    cdl_member *m = member(g, conn);
    if (!m)
        return CAUDAL_OK;
    m->has_high = 1;
    m->high = last;
    /* A rank that keeps dropping while the floor stays put sends a DROP
     * frame per run of steps: adjacent runs become one entry. */
    for (size_t i = g->ndrops; i-- > 0;)
        if (g->drops[i].rank == m->rank) {
            if (g->drops[i].last_step + 1 == first) {
                g->drops[i].last_step = last;
                g->drops[i].count += count;
                return CAUDAL_OK;
            }
            break;
        }
    if (grow((void **)&g->drops, &g->drops_cap, g->ndrops + 1, sizeof *g->drops))
        return CAUDAL_ERR_NOMEM;
    g->drops[g->ndrops++] = (caudal_rank_drop){m->rank, first, last, count};
    return CAUDAL_OK;
}

int cdl_gather_holds_only(const cdl_gather *g, uint64_t conn, uint64_t step)
{
    int any = 0;
    for (size_t i = 0; i < g->nheld; i++)
        if (g->held[i].conn == conn) {
            if (g->held[i].b.step != step)
                return 0;
            any = 1;
        }
    return any;
}

static int floor_of(const cdl_gather *g, uint64_t *floor)
{
    if (!g->nmembers)
        return FLOOR_ALL;
    uint64_t f = UINT64_MAX;
    for (size_t i = 0; i < g->nmembers; i++) {
        if (!g->members[i].has_high)
            return FLOOR_NONE;
        if (g->members[i].high < f)
            f = g->members[i].high;
    }
    *floor = f;
    return FLOOR_AT;
}

static int by_step_rank(const void *pa, const void *pb)
{
    const cdl_held *a = pa, *b = pb;
    if (a->b.step != b->b.step)
        return a->b.step < b->b.step ? -1 : 1;
    if (a->b.rank != b->b.rank)
        return a->b.rank < b->b.rank ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

static int by_rank(const void *pa, const void *pb)
{
    const caudal_rank_progress *a = pa, *b = pb;
    return a->rank < b->rank ? -1 : a->rank > b->rank;
}

int cdl_gather_event(cdl_gather *g, caudal_event *ev, int forced, uint64_t early)
{
    uint64_t floor = 0;
    int kind = floor_of(g, &floor);
    /* Only a floor that rose says something new: one that fell (a rank
     * connected) makes nothing complete, and the caller knows the rank. */
    int rose = kind != g->floor_kind ? kind > g->floor_kind
                                     : kind == FLOOR_AT && floor > g->floor;
    if (kind < g->floor_kind || (kind == FLOOR_AT && g->floor_kind == FLOOR_AT &&
                                 floor < g->floor)) {
        g->floor_kind = kind;
        g->floor = floor;
    }
    /* Complete blocks first, then the early ones, then what stays held. */
    size_t ncomplete = 0, nearly = 0, kept = 0;
    for (size_t i = 0; i < g->nheld; i++) {
        const cdl_held *h = &g->held[i];
        if (kind == FLOOR_ALL || (kind == FLOOR_AT && h->b.step <= floor))
            g->sorted[ncomplete++] = *h;
    }
    for (size_t i = 0; i < g->nheld; i++) {
        const cdl_held *h = &g->held[i];
        int complete = kind == FLOOR_ALL || (kind == FLOOR_AT && h->b.step <= floor);
        if (!complete && early && h->conn == early)
            g->sorted[ncomplete + nearly++] = *h;
    }
    if (!rose && !ncomplete && !nearly && !(forced && g->ndrops))
        return 0;
    for (size_t i = 0; i < g->nheld; i++) {
        const cdl_held *h = &g->held[i];
        int complete = kind == FLOOR_ALL || (kind == FLOOR_AT && h->b.step <= floor);
        if (!complete && !(early && h->conn == early))
            g->held[kept++] = *h;
    }
    g->nheld = kept;
    /* qsort wants a valid pointer even for none: sorted is NULL until a
     * block was ever held (a node whose ranks all leave before publishing). */
    if (ncomplete)
        qsort(g->sorted, ncomplete, sizeof *g->sorted, by_step_rank);
    if (nearly)
        qsort(g->sorted + ncomplete, nearly, sizeof *g->sorted, by_step_rank);
    for (size_t i = 0; i < ncomplete + nearly; i++)
        g->out[i] = g->sorted[i].b;
    for (size_t i = 0; i < g->nmembers; i++)
        g->progress[i] = (caudal_rank_progress){
            g->members[i].rank, g->members[i].has_high ? (int64_t)g->members[i].high : -1};
    if (g->nmembers)
        qsort(g->progress, g->nmembers, sizeof *g->progress, by_rank);
    /* The drops handed out live in their own buffer until the next event. */
    caudal_rank_drop *d = g->drops_out;
    size_t dcap = g->drops_out_cap;
    g->drops_out = g->drops;
    g->drops_out_cap = g->drops_cap;
    g->drops = d;
    g->drops_cap = dcap;
    size_t ndrops = g->ndrops;
    g->ndrops = 0;
    g->floor_kind = kind;
    g->floor = floor;

    memset(ev, 0, sizeof *ev);
    ev->type = CAUDAL_EVENT_STEPS;
    ev->rank = -1;
    ev->blocks = g->out;
    ev->nblocks = (uint32_t)(ncomplete + nearly);
    ev->ncomplete = (uint32_t)ncomplete;
    ev->progress = g->progress;
    ev->nprogress = (uint32_t)g->nmembers;
    ev->drops = g->drops_out;
    ev->ndrops = (uint32_t)ndrops;
    return 1;
}

caudal_block *cdl_gather_pop(cdl_gather *g)
{
    return g->nheld ? g->held[--g->nheld].b.block : NULL;
}
