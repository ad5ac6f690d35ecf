/* Publish one block from a child process to a receiver in the parent, using
 * only the installed headers and library. */
#define _GNU_SOURCE
#include <caudal.h>
#include <caudal_receiver.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
    char ep[96];
    snprintf(ep, sizeof ep, "unix:/tmp/caudal-consumer-%d.sock", (int)getpid());
    caudal_receiver_options ro;
    caudal_receiver_options_init(&ro);
    ro.endpoint = ep;
    caudal_receiver *r;
    char err[256];
    if (caudal_receiver_open(&r, &ro, err, sizeof err) != CAUDAL_OK) {
        fprintf(stderr, "receiver: %s\n", err);
        return 1;
    }
    double data[6] = {1, 2, 3, 4, 5, 6};
    pid_t pid = fork();
    if (pid == 0) {
        caudal_options o;
        caudal_options_init(&o);
        o.rank = 0;
        o.size = 1;
        o.endpoint = ep;
        caudal_client *c;
        uint64_t shape[2] = {2, 3}, start[2] = {0, 0};
        if (caudal_open(&c, &o, err, sizeof err) != CAUDAL_OK ||
            caudal_declare(c, "x", CAUDAL_FLOAT64, 2, shape, start, shape, CAUDAL_ORDER_C) ||
            caudal_begin_step(c, 7) || caudal_put(c, "x", CAUDAL_FLOAT64, data) ||
            caudal_end_step(c) || caudal_close(&c))
            _exit(1);
        _exit(0);
    }
    int got = 0, done = 0;
    while (!done) {
        caudal_event ev;
        if (caudal_receiver_next(r, &ev, 10000) != CAUDAL_OK)
            break;
        if (ev.type == CAUDAL_EVENT_BLOCK) {
            got = ev.step == 7 && ev.nbytes == sizeof data &&
                  memcmp(ev.data, data, sizeof data) == 0 && strcmp(ev.array->name, "x") == 0;
            caudal_block_release(ev.block);
        }
        done = ev.type == CAUDAL_EVENT_BYE || ev.type == CAUDAL_EVENT_DISCONNECT;
    }
    int st;
    waitpid(pid, &st, 0);
    caudal_receiver_close(&r);
    if (!got || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "consumer: the block did not arrive intact\n");
        return 1;
    }
    printf("consumer: block received intact\n");
    return 0;
}
