/* fuzz_receiver.h - the input format of fuzz_receiver, shared with fuzz_seeds
 * (which writes valid inputs for it).
 *
 * An input is two bytes of settings, then the bytes a client writes:
 *   byte 0: FUZZ_MODE_* bits; the top four bits are the rank said in HELLO
 *   byte 1: 0 writes the stream at once, n > 0 in pieces of n bytes (at
 *           least 1/64 of the stream), with the receiver running in between
 * A rank that says HELLO (with the right token) sends it before the stream,
 * and the ring's RING frame and memfd after it: fuzzed bytes cannot carry a
 * descriptor, and without the token no stream gets past the handshake. */
#ifndef CAUDAL_FUZZ_RECEIVER_H
#define CAUDAL_FUZZ_RECEIVER_H

#define FUZZ_TOKEN "fuzz-token-5f2c9a"
#define FUZZ_SIZE 16u /* ranks in the job said in HELLO */

#define FUZZ_MODE_HELLO 0x01u /* say HELLO with FUZZ_TOKEN first */
#define FUZZ_MODE_RING 0x02u  /* then RING with a sealed memfd (needs HELLO) */
#define FUZZ_RANK(mode) ((unsigned)(mode) >> 4)

#define FUZZ_RING_DEPTH 4u
#define FUZZ_RING_SLOT 4096u

#endif
