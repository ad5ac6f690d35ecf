/* steer.c - a small table: simulations hold a handful of steering keys. */
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

static cdl_value *find(const cdl_store *st, int rank, const void *key, size_t key_len)
{
    for (size_t k = 0; k < st->n; k++)
        if (st->v[k].rank == rank && strlen(st->v[k].key) == key_len &&
            memcmp(st->v[k].key, key, key_len) == 0)
            return &st->v[k];
    return NULL;
}

int cdl_store_set(cdl_store *st, int rank, const void *key, size_t key_len,
                  uint8_t type, double d, int64_t i, const void *s, size_t s_len)
{
    char *news = NULL;
    if (type == CAUDAL_VALUE_STRING && !(news = dup_n(s, s_len)))
        return CAUDAL_ERR_NOMEM;
    cdl_value *v = find(st, rank, key, key_len);
    if (!v) {
        if (st->n == st->cap) {
            size_t ncap = st->cap ? 2 * st->cap : 8;
            cdl_value *nv = realloc(st->v, ncap * sizeof *nv);
            if (!nv) {
                free(news);
                return CAUDAL_ERR_NOMEM;
            }
            st->v = nv;
            st->cap = ncap;
        }
        char *k = dup_n(key, key_len);
        if (!k) {
            free(news);
            return CAUDAL_ERR_NOMEM;
        }
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
    memset(st, 0, sizeof *st);
}
