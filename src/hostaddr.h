/* hostaddr.h - is an address one of this host's own? For node-local lists
 * of endpoints ("unix:PATH@ADDR,..."): each rank takes its own node's entry,
 * the node named by the address Ray (or Slurm) knows it by. */
#ifndef CAUDAL_HOSTADDR_H
#define CAUDAL_HOSTADDR_H

#include <stddef.h>

/* 1 if `text` is a numeric IPv4 or IPv6 address, else 0. */
int cdl_is_address(const char *text);

/* *mine = 1 if the numeric address `text` is on one of this host's
 * interfaces (up or not), else 0. CAUDAL_ERR_INVALID if `text` is not a
 * numeric address, CAUDAL_ERR_SYSTEM if the interfaces cannot be listed. */
int cdl_address_is_mine(const char *text, int *mine);

/* This host's addresses, comma-separated, loopback left out, for messages;
 * truncated to fit. */
int cdl_my_addresses(char *buf, size_t len);

#endif
