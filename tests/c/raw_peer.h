/* raw_peer.h - a peer that speaks bytes, not the client library, for the
 * tests of what the receiver does with misbehaving and hostile peers. */
#ifndef CAUDAL_TEST_RAW_PEER_H
#define CAUDAL_TEST_RAW_PEER_H

#include "harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "protocol.h"

static inline int raw_connect(const char *endpoint)
{
    int fd;
    if (!strncmp(endpoint, "unix:", 5)) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        CHECK(strlen(endpoint + 5) < sizeof sa.sun_path);
        memcpy(sa.sun_path, endpoint + 5, strlen(endpoint + 5) + 1);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        CHECK(fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    } else {
        const char *port = strrchr(endpoint, ':') + 1;
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port)),
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        CHECK(fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    }
    return fd;
}

static inline void raw_send(int fd, const void *p, size_t n)
{
    CHECK(send(fd, p, n, MSG_NOSIGNAL) == (ssize_t)n);
}

/* Send n bytes with a descriptor riding on the first one. */
static inline void raw_send_fd(int fd, const void *p, size_t n, int passed)
{
    struct iovec iov = {(void *)p, n};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
                        .msg_controllen = sizeof ctl.buf};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &passed, sizeof passed);
    CHECK(sendmsg(fd, &mh, MSG_NOSIGNAL) == (ssize_t)n);
}

/* Read what the receiver sent until it hung up; the status of its ERROR frame,
 * or 0 if there was none. */
static inline int raw_error_status(int fd)
{
    static uint8_t buf[1 << 16]; /* one per test program: fine */
    size_t len = 0;
    for (;;) {
        ssize_t k = recv(fd, buf + len, sizeof buf - len, 0);
        if (k <= 0)
            break;
        len += (size_t)k;
        CHECK(len < sizeof buf);
    }
    int status = 0;
    size_t pos = 0;
    while (len - pos >= CDL_HEADER_LEN) {
        cdl_header h;
        CHECK_RC(cdl_parse_header(buf + pos, &h), CAUDAL_OK);
        CHECK(h.body_len <= len - pos - CDL_HEADER_LEN);
        cdl_msg m;
        CHECK_RC(cdl_parse_body(h.type, buf + pos + CDL_HEADER_LEN, h.body_len, &m), CAUDAL_OK);
        if (m.type == CDL_ERROR) {
            CHECK(m.u.error.len > 0);
            status = m.u.error.status;
        }
        pos += CDL_HEADER_LEN + (size_t)h.body_len;
    }
    CHECK(pos == len);
    return status;
}

#endif
