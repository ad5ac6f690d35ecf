/* steer.h - the latest steering value per (rank, key), for both ends. */
#ifndef CAUDAL_STEER_H
#define CAUDAL_STEER_H

#include <stddef.h>
#include <stdint.h>

typedef struct cdl_value {
    int rank; /* receiver: target rank or -1 for all; client: unused (0) */
    char *key;
    uint8_t type; /* caudal_value_type */
    double d;
    int64_t i;
    char *s;
} cdl_value;

typedef struct cdl_store {
    cdl_value *v;
    size_t n, cap;
} cdl_store;

/* Replace or add. Key and string are copied (lengths given, need no NUL). */
int cdl_store_set(cdl_store *st, int rank, const void *key, size_t key_len,
                  uint8_t type, double d, int64_t i, const void *s, size_t s_len);
const cdl_value *cdl_store_get(const cdl_store *st, int rank, const char *key);
void cdl_store_free(cdl_store *st);

#endif
