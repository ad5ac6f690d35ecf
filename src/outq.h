/* outq.h - a bounded FIFO of bytes waiting for a non-blocking socket.
 *
 * Both ends queue frames here and push them out as the socket takes them, so
 * that no call waits on a slow peer unless it chooses to. A piece is either
 * copied in (small frames), owned (a heap buffer freed once sent) or borrowed
 * (slot memory that stays valid until the piece is sent; `tag` then tells the
 * owner when it is).
 */
#ifndef CAUDAL_OUTQ_H
#define CAUDAL_OUTQ_H

#include <stddef.h>
#include <stdint.h>

#define CDL_PIECE_INLINE 96

typedef struct cdl_piece {
    const uint8_t *ptr;
    size_t len, off;
    uint8_t *owned;   /* freed when sent */
    int fd;           /* passed with SCM_RIGHTS on the first byte; -1 none */
    uint32_t tag;     /* reported by on_sent when fully sent; 0 none */
    uint8_t small[CDL_PIECE_INLINE];
} cdl_piece;

typedef struct cdl_outq {
    cdl_piece *pieces;
    size_t head, count, cap; /* ring of pieces */
    size_t bytes;            /* bytes not yet sent */
    void (*on_sent)(void *ctx, uint32_t tag);
    void *ctx;
} cdl_outq;

void cdl_outq_init(cdl_outq *q, void (*on_sent)(void *, uint32_t), void *ctx);
void cdl_outq_free(cdl_outq *q);

/* Copy a small frame in. */
int cdl_outq_copy(cdl_outq *q, const void *data, size_t len, uint32_t tag);
/* Take ownership of heap memory (freed with free()). */
int cdl_outq_own(cdl_outq *q, uint8_t *data, size_t len, uint32_t tag);
/* Borrow memory that outlives the piece. */
int cdl_outq_borrow(cdl_outq *q, const void *data, size_t len, uint32_t tag);
/* Copy a small frame in, with a file descriptor to pass along (unix only). */
int cdl_outq_copy_fd(cdl_outq *q, const void *data, size_t len, int fd);

/* Send what the socket takes now. CAUDAL_OK (maybe with bytes left) or
 * CAUDAL_ERR_IO with errno in *err_no. */
int cdl_outq_flush(cdl_outq *q, int sock, int *err_no);

/* Flush until empty or until deadline_ns (UINT64_MAX: none): CAUDAL_OK,
 * CAUDAL_ERR_TIMEOUT or CAUDAL_ERR_IO. */
int cdl_outq_drain(cdl_outq *q, int sock, uint64_t deadline_ns, int *err_no);

#endif
