/* steer.h - the latest steering value per (rank, key), for both ends.
 *
 * Values are kept in the order their keys were first set and found through a
 * hash index, so a set or get costs the same with many keys as with a few.
 * A store holds at most CDL_STORE_MAX_KEYS keys per rank: steering values are
 * a handful of knobs, and a peer must not grow the other end's memory
 * without bound. Keys are never removed. */
#ifndef CAUDAL_STEER_H
#define CAUDAL_STEER_H

#include <stddef.h>
#include <stdint.h>

#define CDL_STORE_MAX_KEYS 1024

typedef struct cdl_value {
    int rank; /* receiver: target rank or -1 for all; client: unused (0) */
    char *key;
    uint8_t type; /* caudal_value_type */
    double d;
    int64_t i;
    char *s;
} cdl_value;

typedef struct cdl_rank_keys {
    int rank;
    uint32_t n; /* 0: an empty entry of the index */
} cdl_rank_keys;

typedef struct cdl_store {
    cdl_value *v; /* in the order the keys were first set */
    size_t n, cap;
    uint32_t *index; /* open addressing: 1 + position in v, 0 for empty */
    size_t index_cap; /* a power of two, more than twice n */
    cdl_rank_keys *ranks; /* keys held per rank, open addressing by rank */
    size_t nranks, ranks_cap;
    size_t max_rank_keys; /* the most keys held for one rank >= 0 */
} cdl_store;

/* Replace or add. Key and string are copied (lengths given, need no NUL).
 * CAUDAL_ERR_INVALID, and nothing changed, when the key is new and its rank
 * already holds CDL_STORE_MAX_KEYS keys (the caller says the store is full). */
int cdl_store_set(cdl_store *st, int rank, const void *key, size_t key_len,
                  uint8_t type, double d, int64_t i, const void *s, size_t s_len);
const cdl_value *cdl_store_get(const cdl_store *st, int rank, const char *key);
/* Keys held for this rank. */
size_t cdl_store_count(const cdl_store *st, int rank);
void cdl_store_free(cdl_store *st);

#endif
