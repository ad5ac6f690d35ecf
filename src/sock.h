/* sock.h - endpoints, sockets and time, shared by the client and receiver. */
#ifndef CAUDAL_SOCK_H
#define CAUDAL_SOCK_H

#include <stddef.h>
#include <stdint.h>

#define CDL_MAX_PATH 108 /* sizeof sun_path */

typedef struct cdl_endpoint {
    int is_tcp;
    char path[CDL_MAX_PATH]; /* unix */
    char host[256];          /* tcp */
    char port[16];
} cdl_endpoint;

/* Parse "unix:/path" or "tcp:host:port" (host may be [v6]). */
int cdl_endpoint_parse(const char *text, cdl_endpoint *out, char *err, size_t errlen);

/* Connect within timeout_ms; *fd is non-blocking and close-on-exec. */
int cdl_connect(const cdl_endpoint *ep, int timeout_ms, int *fd, char *err,
                size_t errlen);

/* Listen; fills `actual` with the endpoint clients should use. */
int cdl_listen(const cdl_endpoint *ep, int *fd, char *actual, size_t actual_len,
               char *err, size_t errlen);

int cdl_set_nonblocking(int fd);

uint64_t cdl_now_ns(void);

/* Milliseconds left until deadline_ns (-1: no deadline), for poll(). */
int cdl_poll_timeout(uint64_t deadline_ns);

#endif
