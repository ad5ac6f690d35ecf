/* sock.c - endpoint parsing and socket setup for both transports. */
#define _GNU_SOURCE
#include "sock.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "caudal.h"

uint64_t cdl_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int cdl_poll_timeout(uint64_t deadline_ns)
{
    if (deadline_ns == UINT64_MAX)
        return -1;
    uint64_t now = cdl_now_ns();
    if (now >= deadline_ns)
        return 0;
    uint64_t ms = (deadline_ns - now + 999999u) / 1000000u;
    return ms > 600000u ? 600000 : (int)ms;
}

int cdl_set_nonblocking(int fd)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
        return CAUDAL_ERR_SYSTEM;
    return CAUDAL_OK;
}

int cdl_endpoint_parse(const char *text, cdl_endpoint *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (!text || !*text) {
        snprintf(err, errlen, "no endpoint given (set CAUDAL_ENDPOINT)");
        return CAUDAL_ERR_INVALID;
    }
    if (strncmp(text, "unix:", 5) == 0) {
        const char *path = text + 5;
        if (!*path || strlen(path) >= CDL_MAX_PATH) {
            snprintf(err, errlen,
                     "endpoint '%s': a unix socket path must be 1 to %d bytes", text,
                     CDL_MAX_PATH - 1);
            return CAUDAL_ERR_INVALID;
        }
        strcpy(out->path, path);
        return CAUDAL_OK;
    }
    if (strncmp(text, "tcp:", 4) == 0) {
        const char *host = text + 4, *colon;
        size_t hl;
        if (*host == '[') {
            const char *close = strchr(host, ']');
            if (!close || close[1] != ':')
                goto bad_tcp;
            host++;
            hl = (size_t)(close - host);
            colon = close + 1;
        } else {
            colon = strrchr(host, ':');
            if (!colon)
                goto bad_tcp;
            hl = (size_t)(colon - host);
        }
        const char *port = colon + 1;
        size_t pl = strlen(port);
        if (hl == 0 || hl >= sizeof out->host || pl == 0 || pl >= sizeof out->port ||
            strspn(port, "0123456789") != pl)
            goto bad_tcp;
        memcpy(out->host, host, hl);
        memcpy(out->port, port, pl);
        out->is_tcp = 1;
        return CAUDAL_OK;
    bad_tcp:
        snprintf(err, errlen, "endpoint '%s': expected tcp:HOST:PORT", text);
        return CAUDAL_ERR_INVALID;
    }
    snprintf(err, errlen, "endpoint '%s': expected unix:PATH or tcp:HOST:PORT", text);
    return CAUDAL_ERR_INVALID;
}

static int wait_connected(int fd, int timeout_ms)
{
    struct pollfd p = {fd, POLLOUT, 0};
    int n;
    do
        n = poll(&p, 1, timeout_ms);
    while (n < 0 && errno == EINTR);
    if (n == 0)
        return ETIMEDOUT;
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (n < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0)
        return errno;
    return soerr;
}

static int connect_one(int family, const struct sockaddr *addr, socklen_t alen,
                       int timeout_ms, int *fd_out)
{
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return errno;
    int e = 0;
    if (connect(fd, addr, alen) < 0) {
        e = errno;
        if (e == EINPROGRESS)
            e = wait_connected(fd, timeout_ms);
    }
    if (e) {
        close(fd);
        return e;
    }
    if (family != AF_UNIX) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    *fd_out = fd;
    return 0;
}

int cdl_connect(const cdl_endpoint *ep, int timeout_ms, int *fd, char *err,
                size_t errlen)
{
    int e;
    if (!ep->is_tcp) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        strcpy(sa.sun_path, ep->path);
        e = connect_one(AF_UNIX, (struct sockaddr *)&sa, sizeof sa, timeout_ms, fd);
        if (e) {
            snprintf(err, errlen, "cannot connect to unix:%s: %s", ep->path, strerror(e));
            return e == ETIMEDOUT ? CAUDAL_ERR_TIMEOUT : CAUDAL_ERR_CONNECT;
        }
        return CAUDAL_OK;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int g = getaddrinfo(ep->host, ep->port, &hints, &res);
    if (g) {
        snprintf(err, errlen, "cannot resolve tcp:%s:%s: %s", ep->host, ep->port,
                 gai_strerror(g));
        return CAUDAL_ERR_CONNECT;
    }
    e = EHOSTUNREACH;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        e = connect_one(ai->ai_family, ai->ai_addr, ai->ai_addrlen, timeout_ms, fd);
        if (!e)
            break;
    }
    freeaddrinfo(res);
    if (e) {
        snprintf(err, errlen, "cannot connect to tcp:%s:%s: %s", ep->host, ep->port,
                 strerror(e));
        return e == ETIMEDOUT ? CAUDAL_ERR_TIMEOUT : CAUDAL_ERR_CONNECT;
    }
    return CAUDAL_OK;
}

/* A socket file at this path that refuses connections: its listener is gone. */
static int stale_socket(const struct sockaddr_un *sa)
{
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe < 0)
        return 0;
    int refused = connect(probe, (const struct sockaddr *)sa, sizeof *sa) < 0 &&
                  errno == ECONNREFUSED;
    close(probe);
    return refused;
}

/* Something is at the path: reuse it only if it is a socket nobody listens
 * on. Anything else (a user's file, a directory, a link, a live receiver) is
 * left alone and named in the error. */
static int clear_stale(const struct sockaddr_un *sa, const char *path, char *err,
                       size_t errlen)
{
    struct stat st, again;
    if (lstat(path, &st) < 0) {
        snprintf(err, errlen, "cannot listen on unix:%s: %s", path, strerror(errno));
        return CAUDAL_ERR_SYSTEM;
    }
    if (!S_ISSOCK(st.st_mode)) {
        snprintf(err, errlen, "cannot listen on unix:%s: the path exists and is not a "
                 "socket (left as it is)", path);
        return CAUDAL_ERR_SYSTEM;
    }
    if (!stale_socket(sa)) {
        snprintf(err, errlen, "cannot listen on unix:%s: another receiver is listening "
                 "there", path);
        return CAUDAL_ERR_SYSTEM;
    }
    /* Unlink only the socket we looked at: if the path changed since, leave it.
     * (A replacement between this lstat and the unlink could still go; only
     * the path's owner can do that in a sticky directory like /tmp.) */
    if (lstat(path, &again) < 0 || again.st_dev != st.st_dev || again.st_ino != st.st_ino ||
        unlink(path) < 0) {
        snprintf(err, errlen, "cannot listen on unix:%s: the stale socket there could not "
                 "be removed", path);
        return CAUDAL_ERR_SYSTEM;
    }
    return CAUDAL_OK;
}

int cdl_listen(const cdl_endpoint *ep, int *fd_out, char *actual, size_t actual_len,
               char *err, size_t errlen)
{
    int fd;
    if (!ep->is_tcp) {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        strcpy(sa.sun_path, ep->path);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
            snprintf(err, errlen, "cannot listen on unix:%s: %s", ep->path, strerror(errno));
            return CAUDAL_ERR_SYSTEM;
        }
        if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
            int rc = CAUDAL_ERR_SYSTEM;
            if (errno != EADDRINUSE)
                snprintf(err, errlen, "cannot listen on unix:%s: %s", ep->path,
                         strerror(errno));
            else if ((rc = clear_stale(&sa, ep->path, err, errlen)) == CAUDAL_OK &&
                     bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
                snprintf(err, errlen, "cannot listen on unix:%s: %s", ep->path,
                         strerror(errno));
                rc = CAUDAL_ERR_SYSTEM;
            }
            if (rc != CAUDAL_OK) {
                close(fd);
                return rc;
            }
        }
        /* Private whatever the umask. Until listen() below every connect is
         * refused, so the moment between bind and chmod lets nobody in; the
         * job token guards the socket in any case. */
        if (chmod(ep->path, 0600) < 0 || listen(fd, 1024) < 0) {
            snprintf(err, errlen, "cannot listen on unix:%s: %s", ep->path, strerror(errno));
            unlink(ep->path);
            close(fd);
            return CAUDAL_ERR_SYSTEM;
        }
        snprintf(actual, actual_len, "unix:%s", ep->path);
        *fd_out = fd;
        return CAUDAL_OK;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    int g = getaddrinfo(ep->host, ep->port, &hints, &res);
    if (g) {
        snprintf(err, errlen, "cannot resolve tcp:%s:%s: %s", ep->host, ep->port,
                 gai_strerror(g));
        return CAUDAL_ERR_INVALID;
    }
    int e = EADDRNOTAVAIL;
    fd = -1;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0) {
            e = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 1024) == 0)
            break;
        e = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        snprintf(err, errlen, "cannot listen on tcp:%s:%s: %s", ep->host, ep->port,
                 strerror(e));
        return CAUDAL_ERR_SYSTEM;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char host[NI_MAXHOST], port[NI_MAXSERV];
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) < 0 ||
        getnameinfo((struct sockaddr *)&ss, sl, host, sizeof host, port, sizeof port,
                    NI_NUMERICHOST | NI_NUMERICSERV)) {
        snprintf(err, errlen, "cannot read the address of tcp:%s:%s", ep->host, ep->port);
        close(fd);
        return CAUDAL_ERR_SYSTEM;
    }
    if (strchr(host, ':'))
        snprintf(actual, actual_len, "tcp:[%s]:%s", host, port);
    else
        snprintf(actual, actual_len, "tcp:%s:%s", host, port);
    *fd_out = fd;
    return CAUDAL_OK;
}
