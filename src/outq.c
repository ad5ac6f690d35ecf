/* outq.c - non-blocking gathered sends of queued frames. */
#define _GNU_SOURCE
#include "outq.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "caudal.h"
#include "sock.h"

#define IOV_BATCH 64

void cdl_outq_init(cdl_outq *q, void (*on_sent)(void *, uint32_t), void *ctx)
{
    memset(q, 0, sizeof *q);
    q->on_sent = on_sent;
    q->ctx = ctx;
}

void cdl_outq_free(cdl_outq *q)
{
    for (size_t i = 0; i < q->count; i++) {
        cdl_piece *p = &q->pieces[(q->head + i) % q->cap];
        free(p->owned);
    }
    free(q->pieces);
    memset(q, 0, sizeof *q);
}

static cdl_piece *push(cdl_outq *q)
{
    if (q->count == q->cap) {
        size_t ncap = q->cap ? 2 * q->cap : 16;
        cdl_piece *np = malloc(ncap * sizeof *np);
        if (!np)
            return NULL;
        for (size_t i = 0; i < q->count; i++)
            np[i] = q->pieces[(q->head + i) % q->cap];
        /* Copied-in pieces point into their own `small`: re-aim them. */
        for (size_t i = 0; i < q->count; i++)
            if (np[i].ptr == q->pieces[(q->head + i) % q->cap].small)
                np[i].ptr = np[i].small;
        free(q->pieces);
        q->pieces = np;
        q->head = 0;
        q->cap = ncap;
    }
    cdl_piece *p = &q->pieces[(q->head + q->count) % q->cap];
    memset(p, 0, offsetof(cdl_piece, small));
    p->fd = -1;
    q->count++;
    return p;
}

int cdl_outq_copy(cdl_outq *q, const void *data, size_t len, uint32_t tag)
{
    if (len > CDL_PIECE_INLINE) {
        uint8_t *heap = malloc(len);
        if (!heap)
            return CAUDAL_ERR_NOMEM;
        memcpy(heap, data, len);
        int rc = cdl_outq_own(q, heap, len, tag);
        if (rc != CAUDAL_OK)
            free(heap);
        return rc;
    }
    cdl_piece *p = push(q);
    if (!p)
        return CAUDAL_ERR_NOMEM;
    memcpy(p->small, data, len);
    p->ptr = p->small;
    p->len = len;
    p->tag = tag;
    q->bytes += len;
    return CAUDAL_OK;
}

int cdl_outq_copy_fd(cdl_outq *q, const void *data, size_t len, int fd)
{
    int rc = cdl_outq_copy(q, data, len, 0);
    if (rc == CAUDAL_OK)
        q->pieces[(q->head + q->count - 1) % q->cap].fd = fd;
    return rc;
}

int cdl_outq_own(cdl_outq *q, uint8_t *data, size_t len, uint32_t tag)
{
    cdl_piece *p = push(q);
    if (!p)
        return CAUDAL_ERR_NOMEM;
    p->ptr = data;
    p->owned = data;
    p->len = len;
    p->tag = tag;
    q->bytes += len;
    return CAUDAL_OK;
}

int cdl_outq_borrow(cdl_outq *q, const void *data, size_t len, uint32_t tag)
{
    cdl_piece *p = push(q);
    if (!p)
        return CAUDAL_ERR_NOMEM;
    p->ptr = data;
    p->len = len;
    p->tag = tag;
    q->bytes += len;
    return CAUDAL_OK;
}

/* Drop fully sent pieces from the head, telling the owner of tagged ones. */
static void advance(cdl_outq *q, size_t sent)
{
    q->bytes -= sent;
    while (q->count) {
        cdl_piece *p = &q->pieces[q->head];
        size_t left = p->len - p->off;
        if (sent < left) {
            p->off += sent;
            return;
        }
        sent -= left;
        free(p->owned);
        uint32_t tag = p->tag;
        q->head = (q->head + 1) % q->cap;
        q->count--;
        if (tag && q->on_sent)
            q->on_sent(q->ctx, tag);
    }
}

int cdl_outq_flush(cdl_outq *q, int sock, int *err_no)
{
    while (q->count) {
        struct iovec iov[IOV_BATCH];
        struct msghdr mh = {0};
        union {
            char buf[CMSG_SPACE(sizeof(int))];
            struct cmsghdr align;
        } ctl;
        size_t n = 0;
        for (size_t i = 0; i < q->count && n < IOV_BATCH; i++) {
            cdl_piece *p = &q->pieces[(q->head + i) % q->cap];
            /* A descriptor rides on its piece's first byte: send that piece
             * first in a message of its own. */
            if (p->fd >= 0 && p->off == 0) {
                if (n > 0)
                    break;
                memset(&ctl, 0, sizeof ctl);
                mh.msg_control = ctl.buf;
                mh.msg_controllen = sizeof ctl.buf;
                struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
                cm->cmsg_level = SOL_SOCKET;
                cm->cmsg_type = SCM_RIGHTS;
                cm->cmsg_len = CMSG_LEN(sizeof(int));
                memcpy(CMSG_DATA(cm), &p->fd, sizeof(int));
                iov[n].iov_base = (void *)(p->ptr + p->off);
                iov[n].iov_len = p->len - p->off;
                n++;
                break;
            }
            iov[n].iov_base = (void *)(p->ptr + p->off);
            iov[n].iov_len = p->len - p->off;
            n++;
        }
        mh.msg_iov = iov;
        mh.msg_iovlen = n;
        ssize_t s = sendmsg(sock, &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (s < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return CAUDAL_OK;
            if (err_no)
                *err_no = errno;
            return CAUDAL_ERR_IO;
        }
        /* The descriptor went with the first byte: never send it again. */
        if (s > 0 && q->pieces[q->head].fd >= 0)
            q->pieces[q->head].fd = -1;
        advance(q, (size_t)s);
    }
    return CAUDAL_OK;
}

int cdl_outq_drain(cdl_outq *q, int sock, uint64_t deadline_ns, int *err_no)
{
    for (;;) {
        int rc = cdl_outq_flush(q, sock, err_no);
        if (rc != CAUDAL_OK || q->count == 0)
            return rc;
        struct pollfd p = {sock, POLLOUT, 0};
        int n = poll(&p, 1, cdl_poll_timeout(deadline_ns));
        if (n < 0 && errno != EINTR) {
            if (err_no)
                *err_no = errno;
            return CAUDAL_ERR_IO;
        }
        if (n == 0)
            return CAUDAL_ERR_TIMEOUT;
    }
}
