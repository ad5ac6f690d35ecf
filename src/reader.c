/* reader.c - see reader.h. */
#define _GNU_SOURCE
#include "reader.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int cdl_reader_init(cdl_reader *r, size_t cap)
{
    memset(r, 0, sizeof *r);
    r->buf = malloc(cap);
    if (!r->buf)
        return CAUDAL_ERR_NOMEM;
    r->cap = cap;
    return CAUDAL_OK;
}

void cdl_reader_free(cdl_reader *r)
{
    for (int i = 0; i < r->nfds; i++)
        close(r->fds[i]);
    free(r->buf);
    memset(r, 0, sizeof *r);
}

int cdl_reader_reserve(cdl_reader *r, size_t cap)
{
    if (cap <= r->cap)
        return CAUDAL_OK;
    uint8_t *nb = realloc(r->buf, cap);
    if (!nb)
        return CAUDAL_ERR_NOMEM;
    r->buf = nb;
    r->cap = cap;
    return CAUDAL_OK;
}

int cdl_reader_fill(cdl_reader *r, int sock, int *err_no)
{
    if (r->start == r->end)
        r->start = r->end = 0;
    if (r->end == r->cap && r->start > 0) {
        memmove(r->buf, r->buf + r->start, r->end - r->start);
        r->end -= r->start;
        r->start = 0;
    }
    if (r->end == r->cap)
        return CAUDAL_OK; /* full: the caller must consume first */
    struct iovec iov = {r->buf + r->end, r->cap - r->end};
    union {
        char buf[CMSG_SPACE(CDL_READER_MAX_FDS * sizeof(int))];
        struct cmsghdr align;
    } ctl;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
                        .msg_controllen = sizeof ctl.buf};
    ssize_t n;
    do
        n = recvmsg(sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return CAUDAL_OK;
        if (err_no)
            *err_no = errno;
        return CAUDAL_ERR_IO;
    }
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        size_t k = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < k; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof fd);
            if (r->nfds < CDL_READER_MAX_FDS)
                r->fds[r->nfds++] = fd;
            else
                close(fd); /* a peer flooding descriptors gets none kept */
        }
    }
    if (n == 0) {
        if (err_no)
            *err_no = 0;
        return CAUDAL_ERR_IO;
    }
    r->end += (size_t)n;
    r->total += (uint64_t)n;
    return CAUDAL_OK;
}

int cdl_reader_peek(cdl_reader *r, cdl_header *h, const uint8_t **body, uint64_t *need)
{
    size_t have = r->end - r->start;
    if (have < CDL_HEADER_LEN)
        return 0;
    int rc = cdl_parse_header(r->buf + r->start, h);
    if (rc != CAUDAL_OK)
        return rc;
    uint64_t want = h->body_len;
    if (h->type == CDL_BLOCK && want > CDL_BLOCK_META_LEN)
        want = CDL_BLOCK_META_LEN; /* the payload is read separately */
    *need = want;
    if (have - CDL_HEADER_LEN < want) {
        /* Grow for a large control frame (bounded by CDL_MAX_CONTROL_BODY). */
        size_t total = CDL_HEADER_LEN + (size_t)want;
        if (total > r->cap) {
            memmove(r->buf, r->buf + r->start, have);
            r->end = have;
            r->start = 0;
            uint8_t *nb = realloc(r->buf, total);
            if (!nb)
                return CAUDAL_ERR_NOMEM;
            r->buf = nb;
            r->cap = total;
        }
        return 0;
    }
    *body = r->buf + r->start + CDL_HEADER_LEN;
    return 1;
}

void cdl_reader_consume(cdl_reader *r, size_t n)
{
    r->start += n;
    if (r->start == r->end)
        r->start = r->end = 0;
}

size_t cdl_reader_take(cdl_reader *r, void *dst, size_t n)
{
    size_t have = r->end - r->start;
    if (n > have)
        n = have;
    if (n)
        memcpy(dst, r->buf + r->start, n);
    cdl_reader_consume(r, n);
    return n;
}

int cdl_reader_pop_fd(cdl_reader *r)
{
    if (r->nfds == 0)
        return -1;
    int fd = r->fds[0];
    memmove(r->fds, r->fds + 1, (size_t)(r->nfds - 1) * sizeof(int));
    r->nfds--;
    return fd;
}
