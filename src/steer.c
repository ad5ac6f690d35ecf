/* steer.c - see steer.h: a dense array of values with two hash indexes, one by
 * (rank, key) and one counting keys per rank for the cap. */
#include "steer.h"

#include <stdlib.h>
#include <string.h>

#include "caudal.h"

static char *dup_n(const void *p, size_t n)
{
    char *s = malloc(n + 1);
    if (s) {
        if (n)
            memcpy(s, p, n);
        s[n] = 0;
    }
    return s;
}

/* FNV-1a over the rank and the key's bytes. */
static uint64_t hash(int rank, const void *key, size_t key_len)
{
    uint64_t h = 14695981039346656037ull ^ (uint32_t)rank;
    h *= 1099511628211ull;
    const unsigned char *p = key;
    for (size_t k = 0; k < key_len; k++) {
        h ^= p[k];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

static int same(const cdl_value *v, int rank, const void *key, size_t key_len)
{
    return v->rank == rank && strncmp(v->key, key, key_len) == 0 && v->key[key_len] == 0;
}

/* The index slot holding (rank, key), or the empty slot where it would go. */
static size_t slot_of(const cdl_store *st, int rank, const void *key, size_t key_len)
{
    size_t mask = st->index_cap - 1, k = (size_t)hash(rank, key, key_len) & mask;
    while (st->index[k] && !same(&st->v[st->index[k] - 1], rank, key, key_len))
        k = (k + 1) & mask;
    return k;
}

static cdl_value *find(const cdl_store *st, int rank, const void *key, size_t key_len)
{
    if (!st->index_cap)
        return NULL;
    uint32_t at = st->index[slot_of(st, rank, key, key_len)];
    return at ? &st->v[at - 1] : NULL;
}

static int grow_index(cdl_store *st)
{
    size_t ncap = st->index_cap ? 2 * st->index_cap : 16;
    uint32_t *old = st->index;
    st->index = calloc(ncap, sizeof *st->index);
    if (!st->index) {
        st->index = old;
        return CAUDAL_ERR_NOMEM;
    }
    free(old);
    st->index_cap = ncap;
    for (size_t k = 0; k < st->n; k++) {
        cdl_value *v = &st->v[k];
        st->index[slot_of(st, v->rank, v->key, strlen(v->key))] = (uint32_t)(k + 1);
    }
    return CAUDAL_OK;
}

static cdl_rank_keys *rank_slot(const cdl_store *st, int rank)
{
    size_t mask = st->ranks_cap - 1, k = (size_t)hash(rank, "", 0) & mask;
    while (st->ranks[k].n && st->ranks[k].rank != rank)
        k = (k + 1) & mask;
    return &st->ranks[k];
}

size_t cdl_store_count(const cdl_store *st, int rank)
{
    return st->ranks_cap ? rank_slot(st, rank)->n : 0;
}

/* Count one more key for `rank` (room for it was checked). */
static int count_key(cdl_store *st, int rank)
{
    if (2 * (st->nranks + 1) > st->ranks_cap) {
        size_t ncap = st->ranks_cap ? 2 * st->ranks_cap : 8;
        cdl_rank_keys *old = st->ranks;
        size_t old_cap = st->ranks_cap;
        if (!(st->ranks = calloc(ncap, sizeof *st->ranks))) {
            st->ranks = old;
            return CAUDAL_ERR_NOMEM;
        }
        st->ranks_cap = ncap;
        for (size_t k = 0; k < old_cap; k++)
            if (old[k].n)
                *rank_slot(st, old[k].rank) = old[k];
        free(old);
    }
    cdl_rank_keys *rk = rank_slot(st, rank);
    if (!rk->n) {
        rk->rank = rank;
        st->nranks++;
    }
    rk->n++;
    if (rank >= 0 && rk->n > st->max_rank_keys)
        st->max_rank_keys = rk->n;
    return CAUDAL_OK;
}

int cdl_store_set(cdl_store *st, int rank, const void *key, size_t key_len,
                  uint8_t type, double d, int64_t i, const void *s, size_t s_len)
{
    cdl_value *v = find(st, rank, key, key_len);
    if (!v && cdl_store_count(st, rank) >= CDL_STORE_MAX_KEYS)
        return CAUDAL_ERR_INVALID;
    char *news = NULL;
    if (type == CAUDAL_VALUE_STRING && !(news = dup_n(s, s_len)))
        return CAUDAL_ERR_NOMEM;
    if (!v) {
        /* Make room everywhere first, so that a failure changes nothing. */
        if (st->n == st->cap) {
            size_t ncap = st->cap ? 2 * st->cap : 8;
            cdl_value *nv = realloc(st->v, ncap * sizeof *nv);
            if (!nv)
                goto nomem;
            st->v = nv;
            st->cap = ncap;
        }
        if (2 * (st->n + 1) > st->index_cap && grow_index(st) != CAUDAL_OK)
            goto nomem;
        char *k = dup_n(key, key_len);
        if (!k)
            goto nomem;
        if (count_key(st, rank) != CAUDAL_OK) {
            free(k);
            goto nomem;
        }
        st->index[slot_of(st, rank, key, key_len)] = (uint32_t)(st->n + 1);
        v = &st->v[st->n++];
        memset(v, 0, sizeof *v);
        v->rank = rank;
        v->key = k;
    }
    free(v->s);
    v->type = type;
    v->d = d;
    v->i = i;
    v->s = news;
    return CAUDAL_OK;
nomem:
    free(news);
    return CAUDAL_ERR_NOMEM;
}

const cdl_value *cdl_store_get(const cdl_store *st, int rank, const char *key)
{
    return find(st, rank, key, strlen(key));
}

void cdl_store_free(cdl_store *st)
{
    for (size_t k = 0; k < st->n; k++) {
        free(st->v[k].key);
        free(st->v[k].s);
    }
    free(st->v);
    free(st->index);
    free(st->ranks);
    memset(st, 0, sizeof *st);
}
