/* test_endpoints.c - a list of endpoints (in transit: M ranks to N ingest
 * endpoints), through the shared library as a program links it. Rank r of
 * `size` must connect to entry r * N / size, whether the list comes from the
 * options or from CAUDAL_ENDPOINT, and a malformed list must fail on every
 * rank with a message naming the rank and the entry. A node-local list
 * ("unix:PATH@ADDR,...", in situ on several nodes) sends every rank to the
 * entry of its own host, whatever its rank. */
#include "harness.h"

#define TOKEN "tok-endpoints"
#define MAXN 4
#define MAXR 8

static char list[1024];
static int use_env;

static int open_and_close(void *arg)
{
    int rank = (int)(intptr_t)arg >> 8, size = (int)(intptr_t)arg & 0xff;
    caudal_options o;
    caudal_options_init(&o);
    o.rank = rank;
    o.size = size;
    o.token = TOKEN;
    if (use_env)
        CHECK(setenv("CAUDAL_ENDPOINT", list, 1) == 0);
    else
        o.endpoint = list;
    caudal_client *c;
    char err[512];
    int rc = caudal_open(&c, &o, err, sizeof err);
    if (rc != CAUDAL_OK) {
        fprintf(stderr, "rank %d: %s\n", rank, err);
        return 1;
    }
    return caudal_close(&c) == CAUDAL_OK ? 0 : 1;
}

/* Open `size` ranks on a list of the n receivers' endpoints; returns in
 * owner[rank] the receiver each rank connected to. */
static void connect_all(caudal_receiver **r, int n, int size, int owner[MAXR])
{
    list[0] = 0;
    for (int i = 0; i < n; i++) {
        strcat(list, i ? "," : "");
        strcat(list, caudal_receiver_endpoint(r[i]));
    }
    pid_t pids[MAXR];
    for (int rank = 0; rank < size; rank++) {
        owner[rank] = -1;
        pids[rank] = spawn(open_and_close, (void *)(intptr_t)(rank << 8 | size));
    }
    int byes = 0;
    while (byes < size) {
        for (int i = 0; i < n; i++) {
            caudal_event ev;
            int rc = caudal_receiver_next(r[i], &ev, 5);
            if (rc == CAUDAL_ERR_TIMEOUT)
                continue;
            CHECK_RC(rc, CAUDAL_OK);
            CHECK(ev.type != CAUDAL_EVENT_REFUSED && ev.type != CAUDAL_EVENT_DISCONNECT);
            if (ev.type == CAUDAL_EVENT_CONNECT) {
                CHECK(ev.rank >= 0 && ev.rank < size && owner[ev.rank] == -1);
                owner[ev.rank] = i;
            }
            byes += ev.type == CAUDAL_EVENT_BYE;
        }
    }
    for (int rank = 0; rank < size; rank++)
        CHECK(wait_exit(pids[rank]) == 0);
}

static void ranks_take_contiguous_blocks(void)
{
    caudal_receiver *r[MAXN];
    int owner[MAXR];

    /* 4 ranks on 2 tcp endpoints, the list in the options. */
    for (int i = 0; i < 2; i++)
        r[i] = open_receiver("tcp:127.0.0.1:0", TOKEN);
    use_env = 0;
    connect_all(r, 2, 4, owner);
    int want4[] = {0, 0, 1, 1};
    for (int rank = 0; rank < 4; rank++)
        CHECK(owner[rank] == want4[rank]);
    for (int i = 0; i < 2; i++)
        CHECK_RC(caudal_receiver_close(&r[i]), CAUDAL_OK);

    /* 7 ranks on 3 endpoints that do not divide them, a unix one among the
     * tcp ones, the list in CAUDAL_ENDPOINT: rank * 3 / 7. */
    char ep[128];
    unix_endpoint(ep, sizeof ep, "endpoints");
    r[0] = open_receiver("tcp:127.0.0.1:0", TOKEN);
    r[1] = open_receiver(ep, TOKEN);
    r[2] = open_receiver("tcp:127.0.0.1:0", TOKEN);
    use_env = 1;
    connect_all(r, 3, 7, owner);
    int want7[] = {0, 0, 0, 1, 1, 2, 2};
    for (int rank = 0; rank < 7; rank++)
        CHECK(owner[rank] == want7[rank]);
    for (int i = 0; i < 3; i++)
        CHECK_RC(caudal_receiver_close(&r[i]), CAUDAL_OK);
}

/* Every rank of 5 takes the entry whose address is this host's (127.0.0.1),
 * wherever it is in the list; an address on no interface here (TEST-NET-3)
 * takes none. A unix path holding an '@' not followed by an address is a
 * path as before. */
static void ranks_take_their_hosts_entry(void)
{
    caudal_receiver *r[MAXN];
    int owner[MAXR];
    char mine[128], other[128], at_path[128];
    unix_endpoint(mine, sizeof mine, "node-local");
    unix_endpoint(other, sizeof other, "elsewhere");
    r[0] = open_receiver(other, TOKEN);
    r[1] = open_receiver(mine, TOKEN);
    r[2] = open_receiver("tcp:127.0.0.1:0", TOKEN);
    snprintf(list, sizeof list, "%s@203.0.113.77,%s@127.0.0.1,%s@203.0.113.78", other, mine,
             caudal_receiver_endpoint(r[2]));
    for (use_env = 0; use_env < 2; use_env++) {
        for (int rank = 0; rank < 5; rank++)
            owner[rank] = -1;
        pid_t pids[MAXR];
        for (int rank = 0; rank < 5; rank++)
            pids[rank] = spawn(open_and_close, (void *)(intptr_t)(rank << 8 | 5));
        int byes = 0;
        while (byes < 5) {
            caudal_event ev;
            int rc = caudal_receiver_next(r[1], &ev, 5000);
            CHECK_RC(rc, CAUDAL_OK);
            CHECK(ev.type != CAUDAL_EVENT_REFUSED && ev.type != CAUDAL_EVENT_DISCONNECT);
            if (ev.type == CAUDAL_EVENT_CONNECT) {
                CHECK(owner[ev.rank] == -1);
                owner[ev.rank] = 1;
            }
            byes += ev.type == CAUDAL_EVENT_BYE;
        }
        for (int rank = 0; rank < 5; rank++) {
            CHECK(wait_exit(pids[rank]) == 0);
            CHECK(owner[rank] == 1);
        }
    }
    for (int i = 0; i < 3; i++) {
        caudal_event ev;
        if (i != 1) /* nobody came to the other hosts' entries */
            CHECK_RC(caudal_receiver_next(r[i], &ev, 50), CAUDAL_ERR_TIMEOUT);
        CHECK_RC(caudal_receiver_close(&r[i]), CAUDAL_OK);
    }

    snprintf(at_path, sizeof at_path, "unix:/tmp/caudal-test-a@b-%d.sock", (int)getpid());
    r[0] = open_receiver(at_path, TOKEN);
    strcpy(list, at_path);
    use_env = 0;
    connect_all(r, 1, 1, owner);
    CHECK(owner[0] == 0);
    CHECK_RC(caudal_receiver_close(&r[0]), CAUDAL_OK);
}

/* caudal_open of `rank` of 4 on `text` fails with ERR_INVALID and a message
 * holding each of the parts. */
static void refused(const char *text, int env, int rank, const char *part1, const char *part2)
{
    caudal_options o;
    caudal_options_init(&o);
    o.rank = rank;
    o.size = 4;
    o.token = TOKEN;
    o.connect_timeout_ms = 2000;
    if (env)
        CHECK(setenv("CAUDAL_ENDPOINT", text, 1) == 0);
    else
        o.endpoint = text;
    caudal_client *c = (caudal_client *)1;
    char err[512];
    CHECK_RC(caudal_open(&c, &o, err, sizeof err), CAUDAL_ERR_INVALID);
    CHECK(c == NULL);
    char who[32];
    snprintf(who, sizeof who, "rank %d", rank);
    if (!strstr(err, who) || !strstr(err, part1) || !strstr(err, part2)) {
        fprintf(stderr, "'%s': message \"%s\" lacks \"%s\", \"%s\" or \"%s\"\n", text, err,
                who, part1, part2);
        exit(1);
    }
    if (env)
        CHECK(unsetenv("CAUDAL_ENDPOINT") == 0);
}

static void malformed_lists_name_the_rank_and_the_entry(void)
{
    /* Nothing listens on these ports: a malformed list must fail before any
     * connection is tried, also on a rank whose own entry is fine. */
    refused("tcp:127.0.0.1:1,,tcp:127.0.0.1:2", 1, 3, "CAUDAL_ENDPOINT: entry 2 of 3 is empty",
            "tcp:HOST:PORT,tcp:HOST:PORT");
    refused("tcp:127.0.0.1:1,", 0, 0, "the endpoint option: entry 2 of 2 is empty", "");
    refused(",tcp:127.0.0.1:1", 1, 2, "entry 1 of 2 is empty", "");
    refused("tcp:127.0.0.1:1,tcp:nowhere", 1, 0, "CAUDAL_ENDPOINT: entry 2 of 2 is malformed",
            "endpoint 'tcp:nowhere': expected tcp:HOST:PORT");
    refused("tcp:127.0.0.1:1,udp:127.0.0.1:2", 0, 1, "entry 2 of 2 is malformed",
            "expected unix:PATH or tcp:HOST:PORT");
    refused("tcp:127.0.0.1:1,tcp:127.0.0.1:port", 0, 2, "entry 2 of 2 is malformed", "");
    char longest[700] = "tcp:127.0.0.1:1,tcp:";
    memset(longest + strlen(longest), 'h', 600);
    strcat(longest, ":1");
    refused(longest, 0, 1, "entry 2 of 2 is 606 bytes long", "at most");
    /* Node-local lists: all entries or none carry an address, exactly one
     * of them is this host's. */
    refused("unix:/tmp/a@127.0.0.1,unix:/tmp/b", 1, 2,
            "entry 2 of 2 has no '@ADDR' while others have one", "unix:PATH@ADDR");
    refused("unix:/tmp/a@203.0.113.77,unix:/tmp/b@203.0.113.78", 0, 3,
            "none of the 2 entries is for this rank's host", "its addresses:");
    refused("unix:/tmp/a@203.0.113.77", 0, 0, "none of the 1 entries", "without an ingest");
    refused("unix:/tmp/a@127.0.0.1,unix:/tmp/b@127.0.0.1", 1, 1,
            "entries 1 and 2 are both for this host (127.0.0.1)", "one entry per host");
    refused("unix:/tmp/a@127.0.0.1,tcp:nowhere@127.0.0.2", 0, 0, "entry 2 of 2 is malformed",
            "expected tcp:HOST:PORT");
    /* One endpoint, no comma: the message it always had. */
    refused("tcp:127.0.0.1", 1, 1, "endpoint 'tcp:127.0.0.1': expected tcp:HOST:PORT", "");
}

int main(void)
{
    CHECK(unsetenv("CAUDAL_ENDPOINT") == 0);
    malformed_lists_name_the_rank_and_the_entry();
    ranks_take_contiguous_blocks();
    ranks_take_their_hosts_entry();
    printf("endpoints: lists of endpoints, rank * N / size, node-local lists, malformed "
           "lists\n");
    return 0;
}
