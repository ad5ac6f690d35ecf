/* reader.h - buffered frame input from a non-blocking socket, for both ends.
 *
 * Bytes are read in large chunks and frames are cut out of the buffer. A big
 * inline payload does not go through the buffer: the caller takes the frame's
 * head (header and meta) and then reads the payload straight to its own
 * memory. Descriptors passed with SCM_RIGHTS are kept in arrival order.
 */
#ifndef CAUDAL_READER_H
#define CAUDAL_READER_H

#include <stddef.h>
#include <stdint.h>

#include "protocol.h"

#define CDL_READER_MAX_FDS 8

typedef struct cdl_reader {
    uint8_t *buf;
    size_t start, end, cap;
    uint64_t total; /* bytes read so far */
    int fds[CDL_READER_MAX_FDS];
    int nfds;
} cdl_reader;

int cdl_reader_init(cdl_reader *r, size_t cap);
void cdl_reader_free(cdl_reader *r); /* closes descriptors not taken */

/* Grow the buffer to at least cap bytes (a connection starts small until its
 * peer has authenticated). */
int cdl_reader_reserve(cdl_reader *r, size_t cap);

/* Read what the socket has. Returns CAUDAL_OK (maybe nothing read),
 * CAUDAL_ERR_IO on end of stream or error (errno in *err_no, 0 for EOF). */
int cdl_reader_fill(cdl_reader *r, int sock, int *err_no);

/* Look for a frame. Returns 1 with *h and *body set when the first `need`
 * body bytes are buffered (need = whole body, or the meta of an inline
 * BLOCK), 0 if more bytes are needed, or a negative status for a bad header. */
int cdl_reader_peek(cdl_reader *r, cdl_header *h, const uint8_t **body,
                    uint64_t *need);

/* Drop n bytes from the buffer (after a peek). */
void cdl_reader_consume(cdl_reader *r, size_t n);

/* Move up to n buffered bytes to dst; returns how many. */
size_t cdl_reader_take(cdl_reader *r, void *dst, size_t n);

/* Oldest received descriptor, or -1. The caller owns it. */
int cdl_reader_pop_fd(cdl_reader *r);

#endif
