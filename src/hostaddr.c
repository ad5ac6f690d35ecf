/* hostaddr.c - this host's own addresses (getifaddrs), compared as binary
 * addresses, so that "10.0.0.1" and an IPv6 address in any spelling match. */
#define _GNU_SOURCE
#include "hostaddr.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "caudal.h"

typedef struct {
    int family;
    unsigned char bytes[16];
} address;

static int parse(const char *text, address *a)
{
    memset(a, 0, sizeof *a);
    if (inet_pton(AF_INET, text, a->bytes) == 1)
        a->family = AF_INET;
    else if (inet_pton(AF_INET6, text, a->bytes) == 1)
        a->family = AF_INET6;
    else
        return CAUDAL_ERR_INVALID;
    return CAUDAL_OK;
}

static int of_ifaddr(const struct sockaddr *sa, address *a)
{
    memset(a, 0, sizeof *a);
    if (!sa)
        return CAUDAL_ERR_INVALID;
    if (sa->sa_family == AF_INET) {
        a->family = AF_INET;
        memcpy(a->bytes, &((const struct sockaddr_in *)(const void *)sa)->sin_addr, 4);
        return CAUDAL_OK;
    }
    if (sa->sa_family == AF_INET6) {
        a->family = AF_INET6;
        memcpy(a->bytes, &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr, 16);
        return CAUDAL_OK;
    }
    return CAUDAL_ERR_INVALID;
}

int cdl_is_address(const char *text)
{
    address a;
    return text && parse(text, &a) == CAUDAL_OK;
}

int cdl_address_is_mine(const char *text, int *mine)
{
    address want, have;
    *mine = 0;
    if (!text || parse(text, &want) != CAUDAL_OK)
        return CAUDAL_ERR_INVALID;
    struct ifaddrs *list;
    if (getifaddrs(&list) != 0)
        return CAUDAL_ERR_SYSTEM;
    for (struct ifaddrs *i = list; i && !*mine; i = i->ifa_next)
        *mine = of_ifaddr(i->ifa_addr, &have) == CAUDAL_OK && have.family == want.family &&
                memcmp(have.bytes, want.bytes, sizeof have.bytes) == 0;
    freeifaddrs(list);
    return CAUDAL_OK;
}

int cdl_my_addresses(char *buf, size_t len)
{
    if (!buf || !len)
        return CAUDAL_ERR_INVALID;
    buf[0] = 0;
    struct ifaddrs *list;
    if (getifaddrs(&list) != 0)
        return CAUDAL_ERR_SYSTEM;
    size_t used = 0;
    for (struct ifaddrs *i = list; i; i = i->ifa_next) {
        address a;
        char text[INET6_ADDRSTRLEN];
        if (of_ifaddr(i->ifa_addr, &a) != CAUDAL_OK || (i->ifa_name && !strcmp(i->ifa_name, "lo")) ||
            !inet_ntop(a.family, a.bytes, text, sizeof text))
            continue;
        int n = snprintf(buf + used, len - used, "%s%s", used ? ", " : "", text);
        if (n < 0 || (size_t)n >= len - used)
            break;
        used += (size_t)n;
    }
    freeifaddrs(list);
    if (!used)
        snprintf(buf, len, "none but loopback");
    return CAUDAL_OK;
}
