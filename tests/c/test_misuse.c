/* Every misuse gives the right status and a message naming rank, step and
 * array; a dead receiver gives CAUDAL_ERR_IO (never SIGPIPE); misbehaving
 * peers are cut off by the receiver, which keeps serving the others. */
#include "harness.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "protocol.h"
#include "raw_peer.h"

#define TOKEN "tok-misuse"

static char big_name[CAUDAL_MAX_NAME + 2]; /* 256 bytes: one too many */

/* ---- a receiver in a child process that serves until told to stop ---------- */

typedef struct server {
    char endpoint[128];
    int ready[2], stop[2];
    pid_t pid;
} server;

/* Exit status: 0 if the only connection cut was the one with a wrong token,
 * given as REFUSED (it never was a rank). */
static int serve(void *arg)
{
    server *sv = arg;
    close(sv->ready[0]);
    close(sv->stop[1]); /* so that the parent's exit stops it too */
    caudal_receiver *r = open_receiver(sv->endpoint, TOKEN);
    char ep[128];
    snprintf(ep, sizeof ep, "%s", caudal_receiver_endpoint(r));
    CHECK(write(sv->ready[1], ep, sizeof ep) == (ssize_t)sizeof ep);
    int auth = 0, other = 0, stopping = 0;
    for (;;) {
        caudal_event ev;
        int rc = caudal_receiver_next(r, &ev, stopping ? 0 : 20);
        if (rc == CAUDAL_ERR_TIMEOUT) {
            if (stopping)
                break;
            struct pollfd p = {sv->stop[0], POLLIN, 0};
            if (poll(&p, 1, 0) == 1)
                stopping = 1; /* hand out what is left, then stop */
            continue;
        }
        CHECK_RC(rc, CAUDAL_OK);
        if (ev.type == CAUDAL_EVENT_BLOCK)
            CHECK_RC(caudal_block_release(ev.block), CAUDAL_OK);
        if (ev.type == CAUDAL_EVENT_REFUSED && ev.status == CAUDAL_ERR_AUTH &&
            strstr(ev.message, "wrong job token")) {
            auth++;
        } else if (ev.type == CAUDAL_EVENT_DISCONNECT || ev.type == CAUDAL_EVENT_REFUSED) {
            fprintf(stderr, "server: unexpected disconnect or refusal: %s\n", ev.message);
            other++;
        }
    }
    CHECK_RC(caudal_receiver_close(&r), CAUDAL_OK);
    return auth == 1 && other == 0 ? 0 : 1;
}

static void server_start(server *sv, const char *endpoint)
{
    snprintf(sv->endpoint, sizeof sv->endpoint, "%s", endpoint);
    CHECK(pipe(sv->ready) == 0 && pipe(sv->stop) == 0);
    sv->pid = spawn(serve, sv);
    close(sv->ready[1]);
    close(sv->stop[0]);
    char ep[128];
    CHECK(read(sv->ready[0], ep, sizeof ep) == (ssize_t)sizeof ep);
    snprintf(sv->endpoint, sizeof sv->endpoint, "%s", ep);
    close(sv->ready[0]);
}

static void server_stop(server *sv)
{
    CHECK(write(sv->stop[1], "q", 1) == 1);
    CHECK(wait_exit(sv->pid) == 0);
    close(sv->stop[1]);
}

/* ---- NULL handles, status strings ------------------------------------------ */

static void check_null_client(void)
{
    caudal_client *c = NULL;
    uint64_t one = 1;
    double d;
    int64_t i;
    char buf[8];
    caudal_counters k;
    CHECK_RC(caudal_declare(c, "a", CAUDAL_INT8, 1, &one, &one, &one, CAUDAL_ORDER_C),
             CAUDAL_ERR_CLOSED);
    CHECK_RC(caudal_declare_var(c, "a", CAUDAL_INT8, 1), CAUDAL_ERR_CLOSED);
    CHECK_RC(caudal_begin_step(c, 0), CAUDAL_ERR_CLOSED);
    CHECK_RC(caudal_put(c, "a", CAUDAL_INT8, buf), CAUDAL_ERR_CLOSED);
    CHECK_RC(caudal_put_var(c, "a", CAUDAL_INT8, buf, 1), CAUDAL_ERR_CLOSED);
    CHECK_RC(caudal_end_step(c), CAUDAL_ERR_CLOSED);
    CHECK_RC(caudal_steer_get_double(c, "k", &d), CAUDAL_ERR_CLOSED);
    CHECK_RC(caudal_steer_get_int64(c, "k", &i), CAUDAL_ERR_CLOSED);
    CHECK_RC(caudal_steer_get_string(c, "k", buf, sizeof buf), CAUDAL_ERR_CLOSED);
    CHECK_RC(caudal_steer_set_double(c, "k", 1), CAUDAL_ERR_CLOSED);
    CHECK_RC(caudal_steer_set_int64(c, "k", 1), CAUDAL_ERR_CLOSED);
    CHECK_RC(caudal_steer_set_string(c, "k", "v"), CAUDAL_ERR_CLOSED);
    CHECK_RC(caudal_get_counters(c, &k), CAUDAL_ERR_CLOSED);
    CHECK(strlen(caudal_last_error(c)) > 0);
    CHECK_RC(caudal_close(&c), CAUDAL_ERR_CLOSED);
    CHECK_RC(caudal_close(NULL), CAUDAL_ERR_CLOSED);
    CHECK_RC(caudal_options_init(NULL), CAUDAL_ERR_INVALID);

    /* The receiving end's NULL handles. */
    caudal_receiver *r = NULL;
    caudal_event ev;
    CHECK_RC(caudal_receiver_next(r, &ev, 0), CAUDAL_ERR_CLOSED);
    CHECK_RC(caudal_receiver_steer_double(r, -1, "k", 1), CAUDAL_ERR_CLOSED);
    CHECK_RC(caudal_receiver_steer_int64(r, -1, "k", 1), CAUDAL_ERR_CLOSED);
    CHECK_RC(caudal_receiver_steer_string(r, -1, "k", "v"), CAUDAL_ERR_CLOSED);
    CHECK_RC(caudal_receiver_connections(r), CAUDAL_ERR_CLOSED);
    CHECK(caudal_receiver_endpoint(r) != NULL);
    CHECK(strlen(caudal_receiver_last_error(r)) > 0);
    CHECK_RC(caudal_receiver_close(&r), CAUDAL_ERR_CLOSED);
    CHECK_RC(caudal_receiver_close(NULL), CAUDAL_ERR_CLOSED);
    CHECK_RC(caudal_block_release(NULL), CAUDAL_ERR_INVALID);
    CHECK_RC(caudal_receiver_options_init(NULL), CAUDAL_ERR_INVALID);
}

static void check_strings(void)
{
    const char *unknown = caudal_strerror(12345);
    CHECK(unknown && *unknown);
    for (int s = CAUDAL_ERR_SYSTEM; s <= CAUDAL_NO_VALUE; s++) {
        const char *m = caudal_strerror(s);
        CHECK(m && *m && strcmp(m, unknown) != 0);
        for (int t = CAUDAL_ERR_SYSTEM; t < s; t++)
            CHECK(strcmp(caudal_strerror(t), m) != 0); /* each its own */
    }
    CHECK(*caudal_strerror(CAUDAL_ERR_SYSTEM - 1) && *caudal_strerror(2));
    for (int t = CAUDAL_INT8; t <= CAUDAL_COMPLEX128; t++)
        CHECK(caudal_dtype_size(t) > 0 && strcmp(caudal_dtype_name(t), "invalid") != 0);
    CHECK(caudal_dtype_size(0) == 0 && caudal_dtype_size(13) == 0 && caudal_dtype_size(-1) == 0);
    CHECK(!strcmp(caudal_dtype_name(0), "invalid") && !strcmp(caudal_dtype_name(99), "invalid"));
}

/* ---- caudal_open ------------------------------------------------------------ */

/* Open with these options; on failure the message must contain `part`. */
static void open_fails(const caudal_options *o, int want, const char *part)
{
    caudal_client *c = (caudal_client *)&c; /* not NULL: open must clear it */
    char err[512];
    memset(err, 'X', sizeof err);
    int rc = caudal_open(&c, o, err, sizeof err);
    if (rc != want || c != NULL || !strstr(err, part)) {
        fprintf(stderr, "open (endpoint %s, rank %d of %d): %d (%s) '%s', wanted %d and '%s'\n",
                o->endpoint ? o->endpoint : "NULL", o->rank, o->size, rc, caudal_strerror(rc),
                err, want, part);
        exit(1);
    }
}

static caudal_options opts_for(const char *endpoint)
{
    caudal_options o;
    CHECK_RC(caudal_options_init(&o), CAUDAL_OK);
    o.rank = 0;
    o.size = 1;
    o.endpoint = endpoint;
    o.token = TOKEN;
    return o;
}

static void check_open(const char *good)
{
    caudal_client *c = (caudal_client *)&c;
    char err[256];
    caudal_options o = opts_for(good);

    CHECK_RC(caudal_open(&c, NULL, err, sizeof err), CAUDAL_ERR_INVALID);
    CHECK(c == NULL && strlen(err) > 0);
    CHECK_RC(caudal_open(NULL, &o, err, sizeof err), CAUDAL_ERR_INVALID);
    CHECK_RC(caudal_open(NULL, NULL, NULL, 0), CAUDAL_ERR_INVALID);

    /* Ranks. */
    o.rank = 3, o.size = 3;
    open_fails(&o, CAUDAL_ERR_INVALID, "rank 3 of size 3");
    o.rank = 4;
    open_fails(&o, CAUDAL_ERR_INVALID, "rank 4 of size 3");
    o.rank = -1;
    open_fails(&o, CAUDAL_ERR_INVALID, "rank -1");
    o.rank = 0, o.size = 0;
    open_fails(&o, CAUDAL_ERR_INVALID, "size 0");
    o.size = -2;
    open_fails(&o, CAUDAL_ERR_INVALID, "size -2");

    /* Option ranges. */
    o = opts_for(good);
    o.policy = (caudal_policy)7;
    open_fails(&o, CAUDAL_ERR_INVALID, "policy 7");
    o = opts_for(good);
    o.block_timeout_ms = -1;
    open_fails(&o, CAUDAL_ERR_INVALID, "negative");
    o = opts_for(good);
    o.connect_timeout_ms = -5;
    open_fails(&o, CAUDAL_ERR_INVALID, "negative");
    o = opts_for(good);
    o.ring_depth = 4097;
    open_fails(&o, CAUDAL_ERR_INVALID, "4097");
    o = opts_for(good);
    static char long_token[CDL_MAX_TOKEN + 2];
    memset(long_token, 't', CDL_MAX_TOKEN + 1);
    o.token = long_token;
    open_fails(&o, CAUDAL_ERR_INVALID, "token");

    /* Endpoints that do not parse. */
    unsetenv("CAUDAL_ENDPOINT");
    o = opts_for(NULL);
    open_fails(&o, CAUDAL_ERR_INVALID, "CAUDAL_ENDPOINT");
    static char long_path[200];
    snprintf(long_path, sizeof long_path, "unix:/tmp/%0150d", 7);
    const char *bad[] = {"",          "nonsense",     "udp:1.2.3.4:5", "unix:",
                         "tcp:",      "tcp:host",     "tcp::80",       "tcp:host:",
                         "tcp:host:8a", "tcp:host:-1", "tcp:[::1",      "tcp:[::1]80",
                         "tcp:host:123456789012345678901234567890", "UNIX:/tmp/x", long_path};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        o = opts_for(bad[i]);
        open_fails(&o, CAUDAL_ERR_INVALID, "endpoint");
    }

    /* Nobody listening. */
    char missing[128];
    snprintf(missing, sizeof missing, "unix:/tmp/caudal-test-missing-%d.sock", (int)getpid());
    o = opts_for(missing);
    open_fails(&o, CAUDAL_ERR_CONNECT, missing);
    {
        /* A tcp port that was free a moment ago: bound, never listened. */
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET,
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t sl = sizeof sa;
        CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
              getsockname(fd, (struct sockaddr *)&sa, &sl) == 0);
        char ep[64];
        snprintf(ep, sizeof ep, "tcp:127.0.0.1:%d", ntohs(sa.sin_port));
        o = opts_for(ep);
        open_fails(&o, CAUDAL_ERR_CONNECT, ep);
        close(fd);
    }

    /* The receiver refuses a wrong job token. */
    o = opts_for(good);
    o.token = "not-the-job";
    open_fails(&o, CAUDAL_ERR_AUTH, "token");

    /* A small error buffer gets a terminated prefix. */
    o = opts_for(missing);
    char tiny[8];
    memset(tiny, 'X', sizeof tiny);
    CHECK_RC(caudal_open(&c, &o, tiny, sizeof tiny), CAUDAL_ERR_CONNECT);
    CHECK(strlen(tiny) == sizeof tiny - 1);
    CHECK_RC(caudal_open(&c, &o, NULL, 0), CAUDAL_ERR_CONNECT);

    /* Environment: bad values are named; explicit options take precedence. */
    const char *bad_policy[] = {"sometimes", "BLOCK", "drop ", "1"};
    for (size_t i = 0; i < sizeof bad_policy / sizeof bad_policy[0]; i++) {
        setenv("CAUDAL_POLICY", bad_policy[i], 1);
        o = opts_for(good);
        open_fails(&o, CAUDAL_ERR_INVALID, "CAUDAL_POLICY");
        open_fails(&o, CAUDAL_ERR_INVALID, bad_policy[i]);
        o.policy = CAUDAL_POLICY_DROP; /* the option wins over the environment */
        c = open_client(good, TOKEN, 0, 1, &o);
        CHECK_RC(caudal_close(&c), CAUDAL_OK);
    }
    unsetenv("CAUDAL_POLICY");
    const char *bad_depth[] = {"0", "abc", "4097", "12x", "-1", "0x10", "99999999999999999999",
                               " 3", "+3", "-18446744073709551615"};
    for (size_t i = 0; i < sizeof bad_depth / sizeof bad_depth[0]; i++) {
        setenv("CAUDAL_RING_DEPTH", bad_depth[i], 1);
        o = opts_for(good);
        open_fails(&o, CAUDAL_ERR_INVALID, "CAUDAL_RING_DEPTH");
        o.ring_depth = 2;
        c = open_client(good, TOKEN, 0, 1, &o);
        CHECK_RC(caudal_close(&c), CAUDAL_OK);
    }
    /* Good values from the environment, endpoint and token included. */
    setenv("CAUDAL_RING_DEPTH", "1", 1);
    setenv("CAUDAL_POLICY", "drop", 1);
    setenv("CAUDAL_ENDPOINT", good, 1);
    setenv("CAUDAL_TOKEN", TOKEN, 1);
    caudal_options_init(&o);
    o.rank = 0;
    o.size = 1;
    CHECK_RC(caudal_open(&c, &o, err, sizeof err), CAUDAL_OK);
    CHECK_RC(caudal_close(&c), CAUDAL_OK);
    unsetenv("CAUDAL_RING_DEPTH");
    unsetenv("CAUDAL_POLICY");
    unsetenv("CAUDAL_ENDPOINT");
    unsetenv("CAUDAL_TOKEN");
}

/* ---- misuse of a connected client ------------------------------------------- */

static void check_declare(caudal_client *c)
{
    uint64_t shape[9] = {8, 6, 1, 1, 1, 1, 1, 1, 1}, start[9] = {0},
             count[9] = {4, 6, 1, 1, 1, 1, 1, 1, 1};
    CHECK_RC(caudal_declare(c, NULL, CAUDAL_FLOAT64, 2, shape, start, count, CAUDAL_ORDER_C),
             CAUDAL_ERR_INVALID);
    CHECK_MSG(c, "rank 0");
    CHECK_RC(caudal_declare(c, "", CAUDAL_FLOAT64, 2, shape, start, count, CAUDAL_ORDER_C),
             CAUDAL_ERR_INVALID);
    CHECK_RC(caudal_declare(c, big_name, CAUDAL_FLOAT64, 2, shape, start, count, CAUDAL_ORDER_C),
             CAUDAL_ERR_INVALID);
    CHECK_RC(caudal_declare(c, "t", (caudal_dtype)0, 2, shape, start, count, CAUDAL_ORDER_C),
             CAUDAL_ERR_INVALID);
    CHECK_MSG(c, "'t'");
    CHECK_RC(caudal_declare(c, "t", (caudal_dtype)13, 2, shape, start, count, CAUDAL_ORDER_C),
             CAUDAL_ERR_INVALID);
    CHECK_RC(caudal_declare(c, "t", CAUDAL_FLOAT64, 0, shape, start, count, CAUDAL_ORDER_C),
             CAUDAL_ERR_SHAPE);
    CHECK_MSG(c, "rank 0, before the first step, array 't'");
    CHECK_MSG(c, "ndim 0");
    CHECK_RC(caudal_declare(c, "t", CAUDAL_FLOAT64, 9, shape, start, count, CAUDAL_ORDER_C),
             CAUDAL_ERR_SHAPE);
    CHECK_MSG(c, "ndim 9");
    CHECK_RC(caudal_declare(c, "t", CAUDAL_FLOAT64, -1, shape, start, count, CAUDAL_ORDER_C),
             CAUDAL_ERR_SHAPE);
    CHECK_RC(caudal_declare(c, "t", CAUDAL_FLOAT64, 2, NULL, start, count, CAUDAL_ORDER_C),
             CAUDAL_ERR_INVALID);
    CHECK_RC(caudal_declare(c, "t", CAUDAL_FLOAT64, 2, shape, NULL, count, CAUDAL_ORDER_C),
             CAUDAL_ERR_INVALID);
    CHECK_RC(caudal_declare(c, "t", CAUDAL_FLOAT64, 2, shape, start, NULL, CAUDAL_ORDER_C),
             CAUDAL_ERR_INVALID);
    CHECK_RC(caudal_declare(c, "t", CAUDAL_FLOAT64, 2, shape, start, count, (caudal_order)2),
             CAUDAL_ERR_INVALID);
    /* Blocks outside the global shape. */
    uint64_t s2[2] = {0, 1}, c2[2] = {4, 6};
    CHECK_RC(caudal_declare(c, "t", CAUDAL_FLOAT64, 2, shape, s2, c2, CAUDAL_ORDER_C),
             CAUDAL_ERR_SHAPE);
    CHECK_MSG(c, "array 't'");
    CHECK_MSG(c, "dimension 1");
    uint64_t s3[2] = {9, 0}, c3[2] = {0, 6};
    CHECK_RC(caudal_declare(c, "t", CAUDAL_FLOAT64, 2, shape, s3, c3, CAUDAL_ORDER_C),
             CAUDAL_ERR_SHAPE);
    CHECK_MSG(c, "dimension 0");
    uint64_t hs[2] = {UINT64_MAX, UINT64_MAX}, hz[2] = {0, 0};
    CHECK_RC(caudal_declare(c, "t", CAUDAL_FLOAT64, 2, hs, hz, hs, CAUDAL_ORDER_C),
             CAUDAL_ERR_SHAPE);
    CHECK_MSG(c, "beyond 2^62");
    /* Extents that each fit but whose block size would wrap 64 bits. */
    uint64_t big[2] = {1ull << 40, 1ull << 40};
    CHECK_RC(caudal_declare(c, "t", CAUDAL_FLOAT64, 2, big, hz, big, CAUDAL_ORDER_C),
             CAUDAL_ERR_SHAPE);
    CHECK_MSG(c, "2^62 bytes or more");
    /* An empty dimension makes the block empty, whatever the others are. */
    uint64_t empty_count[2] = {1ull << 40, 0};
    CHECK_RC(caudal_declare(c, "e", CAUDAL_FLOAT64, 2, big, hz, empty_count, CAUDAL_ORDER_C),
             CAUDAL_OK);
    uint64_t wrap_s[1] = {UINT64_MAX - 1}, wrap_c[1] = {4}, wrap_g[1] = {UINT64_MAX};
    CHECK_RC(caudal_declare(c, "t", CAUDAL_FLOAT64, 1, wrap_g, wrap_s, wrap_c, CAUDAL_ORDER_C),
             CAUDAL_ERR_SHAPE);
    /* Variable arrays. */
    CHECK_RC(caudal_declare_var(c, NULL, CAUDAL_INT32, 10), CAUDAL_ERR_INVALID);
    CHECK_RC(caudal_declare_var(c, "v", (caudal_dtype)0, 10), CAUDAL_ERR_INVALID);
    CHECK_RC(caudal_declare_var(c, "v", CAUDAL_INT32, UINT64_MAX / 2), CAUDAL_ERR_SHAPE);
    CHECK_MSG(c, "array 'v'");

    /* The good ones, then twice. */
    CHECK_RC(caudal_declare(c, "temp", CAUDAL_FLOAT64, 2, shape, start, count, CAUDAL_ORDER_C),
             CAUDAL_OK);
    CHECK_RC(caudal_declare_var(c, "parts", CAUDAL_INT32, 10), CAUDAL_OK);
    CHECK_RC(caudal_declare(c, "temp", CAUDAL_FLOAT64, 2, shape, start, count, CAUDAL_ORDER_C),
             CAUDAL_ERR_DUPLICATE);
    CHECK_MSG(c, "array 'temp'");
    CHECK_MSG(c, "twice");
    CHECK_RC(caudal_declare_var(c, "temp", CAUDAL_INT32, 10), CAUDAL_ERR_DUPLICATE);
    CHECK_RC(caudal_declare(c, "parts", CAUDAL_INT32, 1, shape, start, count, CAUDAL_ORDER_C),
             CAUDAL_ERR_DUPLICATE);
    CHECK_MSG(c, "array 'parts'");
    /* A failed declaration declared nothing. */
    CHECK_RC(caudal_declare(c, "t", CAUDAL_FLOAT64, 1, shape, start, count, CAUDAL_ORDER_C),
             CAUDAL_OK);
}

static void check_steps(caudal_client *c)
{
    double t[24] = {0};
    int32_t p[32] = {0};
    char want[128];

    /* Nothing is allowed outside a step but begin. */
    CHECK_RC(caudal_put(c, "temp", CAUDAL_FLOAT64, t), CAUDAL_ERR_STATE);
    CHECK_MSG(c, "rank 0, before the first step, array 'temp'");
    CHECK_RC(caudal_put_var(c, "parts", CAUDAL_INT32, p, 3), CAUDAL_ERR_STATE);
    CHECK_MSG(c, "array 'parts'");
    CHECK_RC(caudal_end_step(c), CAUDAL_ERR_STATE);
    CHECK_MSG(c, "rank 0");

    CHECK_RC(caudal_begin_step(c, 5), CAUDAL_OK);
    CHECK_RC(caudal_begin_step(c, 6), CAUDAL_ERR_STATE);
    CHECK_MSG(c, "rank 0, step 5");
    CHECK_RC(caudal_begin_step(c, 5), CAUDAL_ERR_STATE);
    CHECK_RC(caudal_put(c, "nope", CAUDAL_FLOAT64, t), CAUDAL_ERR_UNKNOWN_ARRAY);
    CHECK_MSG(c, "rank 0, step 5, array 'nope'");
    CHECK_RC(caudal_put_var(c, "nope", CAUDAL_FLOAT64, t, 1), CAUDAL_ERR_UNKNOWN_ARRAY);
    CHECK_MSG(c, "array 'nope'");
    CHECK_RC(caudal_put(c, "temp", CAUDAL_FLOAT32, t), CAUDAL_ERR_DTYPE);
    CHECK_MSG(c, "rank 0, step 5, array 'temp'");
    CHECK_MSG(c, "float64");
    CHECK_MSG(c, "float32");
    CHECK_RC(caudal_put(c, "temp", (caudal_dtype)77, t), CAUDAL_ERR_DTYPE);
    CHECK_RC(caudal_put_var(c, "parts", CAUDAL_INT64, p, 3), CAUDAL_ERR_DTYPE);
    CHECK_MSG(c, "array 'parts'");
    /* The wrong put for the kind of array. */
    CHECK_RC(caudal_put(c, "parts", CAUDAL_INT32, p), CAUDAL_ERR_INVALID);
    CHECK_MSG(c, "rank 0, step 5, array 'parts'");
    CHECK_MSG(c, "caudal_put_var");
    CHECK_RC(caudal_put_var(c, "temp", CAUDAL_FLOAT64, t, 24), CAUDAL_ERR_INVALID);
    CHECK_MSG(c, "array 'temp'");
    /* NULL arguments. */
    CHECK_RC(caudal_put(c, NULL, CAUDAL_FLOAT64, t), CAUDAL_ERR_INVALID);
    CHECK_RC(caudal_put(c, "temp", CAUDAL_FLOAT64, NULL), CAUDAL_ERR_INVALID);
    CHECK_MSG(c, "array 'temp'");
    CHECK_RC(caudal_put_var(c, NULL, CAUDAL_INT32, p, 1), CAUDAL_ERR_INVALID);
    CHECK_RC(caudal_put_var(c, "parts", CAUDAL_INT32, NULL, 3), CAUDAL_ERR_INVALID);
    CHECK_RC(caudal_put_var(c, "parts", CAUDAL_INT32, p, UINT64_MAX / 2), CAUDAL_ERR_SHAPE);
    /* None of these counted as a put. */
    CHECK_RC(caudal_put(c, "temp", CAUDAL_FLOAT64, t), CAUDAL_OK);
    CHECK_RC(caudal_put(c, "temp", CAUDAL_FLOAT64, t), CAUDAL_ERR_DUPLICATE);
    CHECK_MSG(c, "rank 0, step 5, array 'temp'");
    CHECK_RC(caudal_put_var(c, "parts", CAUDAL_INT32, NULL, 0), CAUDAL_OK); /* empty is fine */
    CHECK_RC(caudal_put_var(c, "parts", CAUDAL_INT32, p, 1), CAUDAL_ERR_DUPLICATE);
    CHECK_MSG(c, "array 'parts'");
    CHECK_RC(caudal_put(c, "t", CAUDAL_FLOAT64, t), CAUDAL_OK);
    CHECK_RC(caudal_end_step(c), CAUDAL_OK);
    CHECK_RC(caudal_end_step(c), CAUDAL_ERR_STATE);
    CHECK_MSG(c, "rank 0, after step 5");

    /* Steps go forward only. */
    CHECK_RC(caudal_begin_step(c, 5), CAUDAL_ERR_STEP_ORDER);
    CHECK_MSG(c, "rank 0, after step 5");
    CHECK_MSG(c, "step 5 does not come after step 5");
    CHECK_RC(caudal_begin_step(c, 3), CAUDAL_ERR_STEP_ORDER);
    CHECK_MSG(c, "step 3");
    CHECK_RC(caudal_begin_step(c, 0), CAUDAL_ERR_STEP_ORDER);
    CHECK_RC(caudal_begin_step(c, 7), CAUDAL_OK); /* gaps are fine */
    CHECK_RC(caudal_end_step(c), CAUDAL_OK);      /* an empty step too */
    CHECK_RC(caudal_begin_step(c, 8), CAUDAL_OK);
    /* Declaring inside a step is allowed; the new array is put right away. */
    uint64_t one = 1, zero = 0;
    CHECK_RC(caudal_declare(c, "late", CAUDAL_UINT8, 1, &one, &zero, &one, CAUDAL_ORDER_F),
             CAUDAL_OK);
    CHECK_RC(caudal_put(c, "late", CAUDAL_UINT8, "x"), CAUDAL_OK);
    CHECK_RC(caudal_put_var(c, "parts", CAUDAL_INT32, p, 32), CAUDAL_OK); /* past capacity */
    CHECK_RC(caudal_end_step(c), CAUDAL_OK);
    CHECK_RC(caudal_begin_step(c, 8), CAUDAL_ERR_STEP_ORDER);
    snprintf(want, sizeof want, "step %d does not come after step %d", 8, 8);
    CHECK_MSG(c, want);
    CHECK_RC(caudal_begin_step(c, UINT64_MAX), CAUDAL_OK);
    CHECK_RC(caudal_end_step(c), CAUDAL_OK);
    CHECK_RC(caudal_begin_step(c, UINT64_MAX), CAUDAL_ERR_STEP_ORDER);
}

static void check_steering_args(caudal_client *c)
{
    double d;
    int64_t i;
    char buf[8];
    static char huge[CDL_MAX_STRING_VALUE + 2];
    memset(huge, 'h', CDL_MAX_STRING_VALUE + 1);
    CHECK_RC(caudal_steer_get_double(c, NULL, &d), CAUDAL_ERR_INVALID);
    CHECK_RC(caudal_steer_get_double(c, "k", NULL), CAUDAL_ERR_INVALID);
    CHECK_RC(caudal_steer_get_double(c, "", &d), CAUDAL_ERR_INVALID);
    CHECK_RC(caudal_steer_get_double(c, big_name, &d), CAUDAL_ERR_INVALID);
    CHECK_RC(caudal_steer_get_int64(c, NULL, &i), CAUDAL_ERR_INVALID);
    CHECK_RC(caudal_steer_get_int64(c, "k", NULL), CAUDAL_ERR_INVALID);
    CHECK_RC(caudal_steer_get_string(c, NULL, buf, sizeof buf), CAUDAL_ERR_INVALID);
    CHECK_RC(caudal_steer_get_string(c, "k", NULL, sizeof buf), CAUDAL_ERR_INVALID);
    CHECK_RC(caudal_steer_get_string(c, "k", buf, 0), CAUDAL_ERR_INVALID);
    CHECK_RC(caudal_steer_set_double(c, NULL, 1), CAUDAL_ERR_INVALID);
    CHECK_RC(caudal_steer_set_double(c, "", 1), CAUDAL_ERR_INVALID);
    CHECK_RC(caudal_steer_set_int64(c, NULL, 1), CAUDAL_ERR_INVALID);
    CHECK_RC(caudal_steer_set_int64(c, big_name, 1), CAUDAL_ERR_INVALID);
    CHECK_RC(caudal_steer_set_string(c, NULL, "v"), CAUDAL_ERR_INVALID);
    CHECK_RC(caudal_steer_set_string(c, "k", NULL), CAUDAL_ERR_INVALID);
    CHECK_MSG(c, "'k'");
    CHECK_RC(caudal_steer_set_string(c, "k", huge), CAUDAL_ERR_INVALID);
    CHECK_MSG(c, "'k'");
    CHECK_RC(caudal_steer_get_double(c, "k", &d), CAUDAL_NO_VALUE);
    caudal_counters k;
    CHECK_RC(caudal_get_counters(c, NULL), CAUDAL_ERR_INVALID);
    CHECK_RC(caudal_get_counters(c, &k), CAUDAL_OK);
}

static void check_connected(const char *endpoint)
{
    for (int i = 0; i < CAUDAL_MAX_NAME + 1; i++)
        big_name[i] = 'n';
    caudal_client *c = open_client(endpoint, TOKEN, 0, 1, NULL);
    CHECK(strcmp(caudal_last_error(c), "") == 0); /* no error yet */
    check_declare(c);
    check_steps(c);
    check_steering_args(c);
    caudal_counters k;
    CHECK_RC(caudal_get_counters(c, &k), CAUDAL_OK);
    CHECK(k.steps_sent == 4 && k.steps_dropped == 0);
    CHECK(k.blocks_sent == 3 + 2);

    CHECK_RC(caudal_close(&c), CAUDAL_OK);
    CHECK(c == NULL);
    CHECK_RC(caudal_close(&c), CAUDAL_ERR_CLOSED);
    check_null_client(); /* every call on the closed handle */
    /* Closing inside a step publishes the step. */
    c = open_client(endpoint, TOKEN, 0, 1, NULL);
    uint64_t one = 1, zero = 0;
    CHECK_RC(caudal_declare(c, "a", CAUDAL_INT8, 1, &one, &zero, &one, CAUDAL_ORDER_C),
             CAUDAL_OK);
    CHECK_RC(caudal_begin_step(c, 0), CAUDAL_OK);
    CHECK_RC(caudal_put(c, "a", CAUDAL_INT8, "z"), CAUDAL_OK);
    CHECK_RC(caudal_close(&c), CAUDAL_OK);
    CHECK(c == NULL);
}

/* ---- the receiver dies --------------------------------------------------- */

typedef struct doomed {
    char endpoint[128];
    int ready[2];
} doomed;

static int serve_forever(void *arg)
{
    doomed *dm = arg;
    close(dm->ready[0]);
    caudal_receiver *r = open_receiver(dm->endpoint, TOKEN);
    char ep[128];
    snprintf(ep, sizeof ep, "%s", caudal_receiver_endpoint(r));
    CHECK(write(dm->ready[1], ep, sizeof ep) == (ssize_t)sizeof ep);
    for (;;) {
        caudal_event ev;
        if (caudal_receiver_next(r, &ev, -1) == CAUDAL_OK && ev.type == CAUDAL_EVENT_BLOCK)
            caudal_block_release(ev.block);
    }
}

static void check_receiver_gone(int tcp)
{
    doomed dm;
    if (tcp)
        snprintf(dm.endpoint, sizeof dm.endpoint, "tcp:127.0.0.1:0");
    else
        unix_endpoint(dm.endpoint, sizeof dm.endpoint, "gone");
    CHECK(pipe(dm.ready) == 0);
    pid_t pid = spawn(serve_forever, &dm);
    close(dm.ready[1]);
    char ep[128];
    CHECK(read(dm.ready[0], ep, sizeof ep) == (ssize_t)sizeof ep);
    close(dm.ready[0]);

    caudal_client *c = open_client(ep, TOKEN, 0, 1, NULL);
    uint64_t n = 1000, zero = 0;
    double data[1000] = {0};
    CHECK_RC(caudal_declare(c, "a", CAUDAL_FLOAT64, 1, &n, &zero, &n, CAUDAL_ORDER_C),
             CAUDAL_OK);
    CHECK_RC(caudal_begin_step(c, 0), CAUDAL_OK);
    CHECK_RC(caudal_put(c, "a", CAUDAL_FLOAT64, data), CAUDAL_OK);
    CHECK_RC(caudal_end_step(c), CAUDAL_OK);

    CHECK(kill(pid, SIGKILL) == 0);
    int st;
    CHECK(waitpid(pid, &st, 0) == pid && WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    if (!tcp)
        unlink(ep + 5); /* a killed receiver leaves its socket file */

    /* Publishing goes on until the loss shows: at once over unix; over tcp
     * the kernel may take the first step after the peer closed, and the
     * next write meets its reset. SIGPIPE is not ignored here: the library
     * must not raise it. */
    int rc = CAUDAL_OK;
    uint64_t s = 1;
    for (; rc == CAUDAL_OK; s++) {
        CHECK(s < 2000);
        rc = caudal_begin_step(c, s);
        if (rc == CAUDAL_OK)
            rc = caudal_put(c, "a", CAUDAL_FLOAT64, data);
        if (rc == CAUDAL_OK)
            rc = caudal_end_step(c);
        if (rc == CAUDAL_OK)
            usleep(1000);
    }
    CHECK_RC(rc, CAUDAL_ERR_IO);
    CHECK_MSG(c, "rank 0");
    CHECK_MSG(c, "receiver");
    if (!tcp)
        CHECK(s == 2); /* the first step after the loss failed */
    /* From now on every call that needs the receiver says so. */
    CHECK_RC(caudal_begin_step(c, 5000), CAUDAL_ERR_IO);
    CHECK_MSG(c, "receiver");
    CHECK_RC(caudal_end_step(c), CAUDAL_ERR_IO);
    CHECK_RC(caudal_put(c, "a", CAUDAL_FLOAT64, data), CAUDAL_ERR_IO);
    CHECK_RC(caudal_declare_var(c, "later", CAUDAL_INT8, 0), CAUDAL_ERR_IO);
    CHECK_RC(caudal_steer_set_int64(c, "k", 1), CAUDAL_ERR_IO);
    int64_t v;
    CHECK_RC(caudal_steer_get_int64(c, "k", &v), CAUDAL_NO_VALUE); /* last values stay */
    caudal_counters k;
    CHECK_RC(caudal_get_counters(c, &k), CAUDAL_OK);
    CHECK(k.steps_dropped == 0);
    rc = caudal_close(&c);
    CHECK(rc == CAUDAL_ERR_IO);
    CHECK(c == NULL);
    printf("misuse: receiver killed (%s): error at step %llu\n", tcp ? "tcp" : "unix",
           (unsigned long long)(s - 1));
}

/* ---- a misbehaving receiver against the client ------------------------------- */

enum fake { FAKE_VERSION, FAKE_TOKEN, FAKE_HANGUP, FAKE_SILENT, FAKE_BAD_RELEASE };

typedef struct fake_arg {
    int lfd;
    enum fake kind;
    int go[2]; /* the parent says when the fake may go on (or end) */
} fake_arg;

/* Read one whole frame (header and body) from a blocking socket. */
static void fake_read_frame(int fd, uint8_t *buf, size_t cap)
{
    size_t got = 0;
    while (got < CDL_HEADER_LEN) {
        ssize_t k = recv(fd, buf + got, CDL_HEADER_LEN - got, 0);
        CHECK(k > 0);
        got += (size_t)k;
    }
    cdl_header h;
    CHECK_RC(cdl_parse_header(buf, &h), CAUDAL_OK);
    CHECK(h.body_len <= cap - CDL_HEADER_LEN);
    while (got < CDL_HEADER_LEN + h.body_len) {
        ssize_t k = recv(fd, buf + got, CDL_HEADER_LEN + h.body_len - got, 0);
        CHECK(k > 0);
        got += (size_t)k;
    }
}

static int fake_receiver(void *arg)
{
    fake_arg *f = arg;
    close(f->go[1]);
    int fd = accept(f->lfd, NULL, NULL);
    CHECK(fd >= 0);
    close(f->lfd);
    uint8_t buf[4096], out[256];
    char c;
    if (f->kind == FAKE_HANGUP) {
        close(fd);
        CHECK(read(f->go[0], &c, 1) >= 0); /* exit only once the parent is done */
        return 0;
    }
    fake_read_frame(fd, buf, sizeof buf); /* the hello */
    size_t n = 0;
    switch (f->kind) {
    case FAKE_VERSION:
        n = cdl_encode_welcome(out, sizeof out, 1, TOKEN);
        out[2] = CDL_VERSION + 1;
        break;
    case FAKE_TOKEN:
        n = cdl_encode_welcome(out, sizeof out, 1, "another-job");
        break;
    case FAKE_SILENT:
        break;
    case FAKE_BAD_RELEASE:
        n = cdl_encode_welcome(out, sizeof out, 1, TOKEN);
        CHECK(send(fd, out, n, MSG_NOSIGNAL) == (ssize_t)n);
        CHECK(read(f->go[0], &c, 1) == 1); /* the client is open */
        n = cdl_encode_release(out, sizeof out, 3);
        break;
    default:
        break;
    }
    if (n)
        CHECK(send(fd, out, n, MSG_NOSIGNAL) == (ssize_t)n);
    /* Stay until the parent is done with this connection. */
    CHECK(read(f->go[0], &c, 1) >= 0);
    close(fd);
    return 0;
}

static void check_fake_receiver(enum fake kind, int want, const char *part)
{
    char ep[128];
    snprintf(ep, sizeof ep, "unix:/tmp/caudal-test-fake-%d-%d.sock", (int)kind, (int)getpid());
    fake_arg f = {.kind = kind};
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    memcpy(sa.sun_path, ep + 5, strlen(ep + 5) + 1);
    f.lfd = socket(AF_UNIX, SOCK_STREAM, 0);
    CHECK(f.lfd >= 0 && bind(f.lfd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
          listen(f.lfd, 4) == 0);
    CHECK(pipe(f.go) == 0);
    pid_t pid = spawn(fake_receiver, &f);
    close(f.lfd);
    close(f.go[0]);

    caudal_options o = opts_for(ep);
    o.connect_timeout_ms = 200; /* FAKE_SILENT: nobody answers, the wait ends */
    caudal_client *c = NULL;
    char err[512];
    int rc = caudal_open(&c, &o, err, sizeof err);
    if (kind == FAKE_BAD_RELEASE) {
        /* Open succeeds; the bad frame is met when the socket is next read,
         * and every call after that reports it. */
        CHECK_RC(rc, CAUDAL_OK);
        CHECK(write(f.go[1], "g", 1) == 1);
        double d;
        for (int k = 0;; k++) {
            CHECK(k < 20000);
            CHECK(caudal_steer_get_double(c, "k", &d) == CAUDAL_NO_VALUE); /* reads */
            rc = caudal_steer_set_int64(c, "x", k);
            if (rc != CAUDAL_OK)
                break;
            usleep(1000);
        }
        CHECK_RC(rc, want);
        CHECK_MSG(c, part);
        CHECK_RC(caudal_begin_step(c, 0), want);
        CHECK_RC(caudal_close(&c), want);
        CHECK(c == NULL);
    } else if (rc != want || c != NULL || !strstr(err, part)) {
        fprintf(stderr, "fake receiver %d: open gave %d (%s) '%s', wanted %d and '%s'\n",
                (int)kind, rc, caudal_strerror(rc), err, want, part);
        exit(1);
    }
    CHECK(write(f.go[1], "q", 1) == 1);
    close(f.go[1]);
    CHECK(wait_exit(pid) == 0);
    unlink(ep + 5);
}

static void check_fake_receivers(void)
{
    check_fake_receiver(FAKE_VERSION, CAUDAL_ERR_VERSION, "from the receiver");
    check_fake_receiver(FAKE_TOKEN, CAUDAL_ERR_AUTH, "another job token");
    check_fake_receiver(FAKE_HANGUP, CAUDAL_ERR_IO, "rank 0");
    check_fake_receiver(FAKE_SILENT, CAUDAL_ERR_TIMEOUT, "no answer to hello within 200 ms");
    check_fake_receiver(FAKE_BAD_RELEASE, CAUDAL_ERR_PROTOCOL, "released slot 3");
}

/* ---- misbehaving peers against the receiver ------------------------------------ */

/* Frames a misbehaving peer sends. */
typedef struct bad_case {
    const char *what;
    int status;          /* of the DISCONNECT (or REFUSED) event */
    const char *message; /* part of its message */
    int error_frame;     /* the receiver tells the peer why */
    int hangs_up;        /* the peer closes its end after sending */
    int unix_only;       /* passes a descriptor with its last frame */
    int refused;         /* fails before authenticating: REFUSED, not DISCONNECT */
} bad_case;

static size_t hello(uint8_t *p, int tcp, const char *token)
{
    return cdl_encode_hello(p, 2048, 1, 2, 1, tcp ? CDL_TRANSPORT_TCP : CDL_TRANSPORT_SHM,
                            token);
}

static size_t declare_id(uint8_t *p, uint32_t id)
{
    uint64_t one = 1, zero = 0;
    return cdl_encode_declare(p, 2048, id, "x", CAUDAL_INT64, 1, 0, 0, &one, &zero, &one);
}

static size_t declare_x(uint8_t *p) { return declare_id(p, 0); }

/* An inline block of array id `id` with `nbytes` payload bytes. */
static size_t block_inline(uint8_t *p, uint32_t id, uint64_t step, uint64_t nbytes,
                           uint64_t count)
{
    size_t n = cdl_encode_block(p, 2048, id, CDL_NO_SLOT, step, 0, nbytes, count);
    memset(p + n, 0xAB, nbytes);
    return n + nbytes;
}

static size_t build_bad(int k, uint8_t *p, int tcp)
{
    size_t n = 0;
    switch (k) {
    case 0: /* another protocol version */
        n = hello(p, tcp, TOKEN);
        p[2] = CDL_VERSION + 1;
        return n;
    case 1: { /* garbage */
        uint64_t s = 0xBAD;
        for (n = 0; n < 64; n++)
            p[n] = (uint8_t)splitmix64(&s);
        p[0] = 0x00; /* not the magic */
        return n;
    }
    case 2: /* a frame before hello */
        return declare_x(p);
    case 3: /* a block of an undeclared array */
        n = hello(p, tcp, TOKEN);
        return n + block_inline(p + n, 5, 0, 8, 1);
    case 4: /* the end of a step with more blocks than sent */
        n = hello(p, tcp, TOKEN);
        n += declare_x(p + n);
        n += block_inline(p + n, 0, 0, 8, 1);
        return n + cdl_encode_step_end(p + n, 64, 0, 2, CDL_NO_SLOT);
    case 5: /* a wrong job token */
        return hello(p, tcp, "guess");
    case 6: /* hello twice */
        n = hello(p, tcp, TOKEN);
        return n + hello(p + n, tcp, TOKEN);
    case 7: /* a frame only the receiver sends */
        n = hello(p, tcp, TOKEN);
        return n + cdl_encode_welcome(p + n, 2048, 1, TOKEN);
    case 8: /* a block whose size does not match its declaration */
        n = hello(p, tcp, TOKEN);
        n += declare_x(p + n);
        return n + block_inline(p + n, 0, 0, 16, 2);
    case 9: /* a block in a slot of a ring never sent */
        n = hello(p, tcp, TOKEN);
        n += declare_x(p + n);
        return n + cdl_encode_block(p + n, 64, 0, 0, 0, 0, 8, 1);
    case 10: /* steps going backwards */
        n = hello(p, tcp, TOKEN);
        n += declare_x(p + n);
        n += block_inline(p + n, 0, 7, 8, 1);
        n += cdl_encode_step_end(p + n, 64, 7, 1, CDL_NO_SLOT);
        return n + block_inline(p + n, 0, 3, 8, 1);
    case 11: /* a malformed body (DROP of zero steps) */
        n = hello(p, tcp, TOKEN);
        return n + cdl_encode_drop(p + n, 64, 4, 5, 0);
    case 12: /* a control frame longer than allowed */
        n = cdl_encode_release(p, 64, 0);
        for (int i = 0; i < 8; i++)
            p[8 + i] = (uint8_t)((CDL_MAX_CONTROL_BODY + 1ull) >> (8 * i));
        return n;
    case 13: /* the same array declared twice (under the next id) */
        n = hello(p, tcp, TOKEN);
        n += declare_id(p + n, 0);
        return n + declare_id(p + n, 1);
    case 14: /* hangs up in the middle of a step */
        n = hello(p, tcp, TOKEN);
        n += declare_x(p + n);
        return n + block_inline(p + n, 0, 0, 8, 1);
    case 15: /* hangs up in the middle of a frame */
        n = hello(p, tcp, TOKEN);
        n += declare_x(p + n);
        return n - 3;
    case 16: { /* a block of 2^32 x 2^32 bytes: the size wraps to 0 in 64 bits */
        uint64_t big[2] = {1ull << 32, 1ull << 32}, zero[2] = {0, 0};
        n = hello(p, tcp, TOKEN);
        n += cdl_encode_declare(p + n, 2048, 0, "x", CAUDAL_UINT8, 2, 0, 0, big, zero, big);
        return n + block_inline(p + n, 0, 0, 0, 0);
    }
    case 17: /* a ring frame without its descriptor (over tcp: none can come) */
        n = hello(p, tcp, TOKEN);
        return n + cdl_encode_ring(p + n, 64, 2, 64);
    case 18: /* a ring in a memfd that could still shrink (sent with the fd) */
        n = hello(p, tcp, TOKEN);
        return n + cdl_encode_ring(p + n, 64, 2, 64);
    }
    CHECK(!"no such case");
    return 0;
}

static const bad_case bad_cases[] = {
    {"another version", CAUDAL_ERR_VERSION, "version", 1, 0, 0, 1},
    {"garbage", CAUDAL_ERR_PROTOCOL, "bad frame header", 1, 0, 0, 1},
    {"frame before hello", CAUDAL_ERR_PROTOCOL, "before hello", 1, 0, 0, 1},
    {"undeclared array", CAUDAL_ERR_UNKNOWN_ARRAY, "undeclared array id 5", 1, 0, 0, 0},
    {"step end count", CAUDAL_ERR_PROTOCOL, "rank 1: end of step 0 with 2 blocks", 1, 0, 0, 0},
    {"wrong token", CAUDAL_ERR_AUTH, "token", 1, 0, 0, 1},
    {"hello twice", CAUDAL_ERR_PROTOCOL, "second hello", 1, 0, 0, 0},
    {"receiver's frame", CAUDAL_ERR_PROTOCOL, "only a receiver sends", 1, 0, 0, 0},
    {"block size", CAUDAL_ERR_SHAPE, "array 'x'", 1, 0, 0, 0},
    {"slot without ring", CAUDAL_ERR_PROTOCOL, "outside the ring", 1, 0, 0, 0},
    {"step backwards", CAUDAL_ERR_STEP_ORDER, "block of step 3 after step 7", 1, 0, 0, 0},
    {"malformed body", CAUDAL_ERR_PROTOCOL, "malformed frame of type 7", 1, 0, 0, 0},
    {"oversized frame", CAUDAL_ERR_PROTOCOL, "bad frame header", 1, 0, 0, 1},
    {"declared twice", CAUDAL_ERR_DUPLICATE, "'x' twice", 1, 0, 0, 0},
    {"hang up in a step", CAUDAL_ERR_IO, "in the middle of a step", 0, 1, 0, 0},
    {"hang up in a frame", CAUDAL_ERR_IO, "without goodbye", 0, 1, 0, 0},
    {"block size overflow", CAUDAL_ERR_SHAPE, "array 'x': block of 2^62 bytes or more", 1, 0, 0, 0},
    {"ring without descriptor", CAUDAL_ERR_PROTOCOL, "without a shared-memory descriptor", 1, 0,
     0, 0},
    {"unsealed ring", CAUDAL_ERR_PROTOCOL, "not a sealed memfd of 128 bytes", 1, 0, 1, 0},
};
#define NBAD ((int)(sizeof bad_cases / sizeof bad_cases[0]))

typedef struct good_arg {
    char endpoint[128];
    int go[2];
} good_arg;

/* A well-behaved rank: one step now, one more each time it is told to. */
static int good_rank(void *arg)
{
    good_arg *g = arg;
    close(g->go[1]); /* a parent that fails ends this rank too */
    caudal_client *c = open_client(g->endpoint, TOKEN, 0, 2, NULL);
    uint64_t shape = 2, start = 0, count = 1;
    CHECK_RC(caudal_declare(c, "x", CAUDAL_INT64, 1, &shape, &start, &count, CAUDAL_ORDER_C),
             CAUDAL_OK);
    for (uint64_t s = 0;; s++) {
        int64_t v = (int64_t)s * 10;
        CHECK_RC(caudal_begin_step(c, s), CAUDAL_OK);
        CHECK_RC(caudal_put(c, "x", CAUDAL_INT64, &v), CAUDAL_OK);
        CHECK_RC(caudal_end_step(c), CAUDAL_OK);
        char cmd;
        CHECK(read(g->go[0], &cmd, 1) == 1);
        if (cmd == 'q')
            break;
    }
    CHECK_RC(caudal_close(&c), CAUDAL_OK);
    return 0;
}

typedef struct good_state {
    uint64_t id;
    uint64_t steps;
    int bye;
} good_state;

/* One event; the good rank's are checked here, the others returned. */
static int next_event(caudal_receiver *r, good_state *gs, caudal_event *ev)
{
    CHECK_RC(caudal_receiver_next(r, ev, 20000), CAUDAL_OK);
    if (ev->type == CAUDAL_EVENT_BLOCK)
        CHECK_RC(caudal_block_release(ev->block), CAUDAL_OK);
    if (ev->connection != gs->id)
        return 1;
    switch (ev->type) {
    case CAUDAL_EVENT_BLOCK:
        CHECK(ev->step == gs->steps && ev->nbytes == 8);
        CHECK(*(const int64_t *)ev->data == (int64_t)ev->step * 10);
        break;
    case CAUDAL_EVENT_STEP_END:
        CHECK(ev->step == gs->steps && ev->nblocks == 1);
        gs->steps++;
        break;
    case CAUDAL_EVENT_BYE:
        gs->bye = 1;
        break;
    case CAUDAL_EVENT_DISCONNECT:
        fprintf(stderr, "the good rank was cut off: %s\n", ev->message);
        exit(1);
    default:
        break;
    }
    return 0;
}

static void check_bad_peers(int tcp)
{
    caudal_receiver *r;
    char ep[128];
    if (tcp) {
        r = open_receiver("tcp:127.0.0.1:0", TOKEN);
    } else {
        unix_endpoint(ep, sizeof ep, "bad");
        r = open_receiver(ep, TOKEN);
    }
    good_arg g;
    snprintf(g.endpoint, sizeof g.endpoint, "%s", caudal_receiver_endpoint(r));
    CHECK(pipe(g.go) == 0);
    pid_t pid = spawn(good_rank, &g);
    close(g.go[0]);

    /* The good rank is connected and has published a step. */
    good_state gs = {0, 0, 0};
    caudal_event ev;
    CHECK_RC(caudal_receiver_next(r, &ev, 20000), CAUDAL_OK);
    CHECK(ev.type == CAUDAL_EVENT_CONNECT && ev.rank == 0);
    gs.id = ev.connection;
    while (gs.steps < 1)
        next_event(r, &gs, &ev);

    static uint8_t frame[1 << 14];
    int ran = 0;
    for (int k = 0; k < NBAD; k++) {
        const bad_case *bc = &bad_cases[k];
        if (bc->unix_only && tcp)
            continue;
        ran++;
        size_t n = build_bad(k, frame, tcp);
        int fd = raw_connect(g.endpoint);
        if (bc->unix_only) {
            /* The ring's memfd has the right size but no seals. */
            int mfd = memfd_create("unsealed", MFD_CLOEXEC);
            CHECK(mfd >= 0 && ftruncate(mfd, 128) == 0);
            size_t last = CDL_HEADER_LEN + 16;
            raw_send(fd, frame, n - last);
            raw_send_fd(fd, frame + n - last, last, mfd);
            close(mfd);
        } else {
            raw_send(fd, frame, n);
        }
        if (bc->hangs_up)
            shutdown(fd, SHUT_WR);
        int got = 0;
        uint64_t bad_id = 0;
        while (!got) {
            if (!next_event(r, &gs, &ev))
                continue;
            if (bad_id == 0)
                bad_id = ev.connection;
            CHECK(ev.connection == bad_id);
            CHECK(ev.rank == -1 || ev.rank == 1);
            CHECK(ev.type != (bc->refused ? CAUDAL_EVENT_DISCONNECT : CAUDAL_EVENT_REFUSED));
            if (bc->refused)
                CHECK(ev.type == CAUDAL_EVENT_REFUSED); /* nothing about a rank first */
            if (ev.type == CAUDAL_EVENT_DISCONNECT || ev.type == CAUDAL_EVENT_REFUSED) {
                if (ev.status != bc->status || !ev.message || !strstr(ev.message, bc->message)) {
                    fprintf(stderr, "%s (%s): disconnect %d (%s) '%s', wanted %d and '%s'\n",
                            bc->what, tcp ? "tcp" : "unix", ev.status,
                            caudal_strerror(ev.status), ev.message ? ev.message : "(null)",
                            bc->status, bc->message);
                    exit(1);
                }
                got = 1;
            }
        }
        /* Read before the receiver reaps the connection (its next call). */
        int st = raw_error_status(fd);
        if (bc->error_frame && st != bc->status) {
            fprintf(stderr, "%s: ERROR frame status %d, wanted %d\n", bc->what, st, bc->status);
            exit(1);
        }
        close(fd);
        /* The good rank publishes another step, which arrives. */
        uint64_t before = gs.steps;
        CHECK(write(g.go[1], "g", 1) == 1);
        while (gs.steps == before)
            next_event(r, &gs, &ev);
        CHECK(caudal_receiver_connections(r) == 1);
    }
    CHECK(write(g.go[1], "q", 1) == 1);
    while (!gs.bye)
        next_event(r, &gs, &ev);
    CHECK(gs.steps == (uint64_t)ran + 1);
    CHECK(wait_exit(pid) == 0);
    close(g.go[1]);
    CHECK_RC(caudal_receiver_close(&r), CAUDAL_OK);
    printf("misuse: %d misbehaving peers cut off over %s, the good rank served\n", ran,
           tcp ? "tcp" : "unix");
}

/* ---- receiver arguments ------------------------------------------------------ */

static void check_receiver_args(void)
{
    caudal_receiver *r = (caudal_receiver *)&r;
    caudal_receiver_options ro;
    char err[256];
    CHECK_RC(caudal_receiver_options_init(&ro), CAUDAL_OK);
    CHECK_RC(caudal_receiver_open(&r, NULL, err, sizeof err), CAUDAL_ERR_INVALID);
    CHECK(r == NULL && strlen(err) > 0);
    CHECK_RC(caudal_receiver_open(NULL, &ro, err, sizeof err), CAUDAL_ERR_INVALID);
    ro.endpoint = NULL;
    CHECK_RC(caudal_receiver_open(&r, &ro, err, sizeof err), CAUDAL_ERR_INVALID);
    ro.endpoint = "tcp:nohost";
    CHECK_RC(caudal_receiver_open(&r, &ro, err, sizeof err), CAUDAL_ERR_INVALID);
    CHECK(strstr(err, "tcp:nohost") != NULL);
    ro.endpoint = "unix:/nonexistent-dir-caudal/x.sock";
    CHECK_RC(caudal_receiver_open(&r, &ro, err, sizeof err), CAUDAL_ERR_SYSTEM);
    CHECK(strstr(err, "/nonexistent-dir-caudal/x.sock") != NULL);
    CHECK_RC(caudal_receiver_open(&r, &ro, NULL, 0), CAUDAL_ERR_SYSTEM);
    static char long_token[CDL_MAX_TOKEN + 2];
    memset(long_token, 't', CDL_MAX_TOKEN + 1);
    ro.endpoint = "tcp:127.0.0.1:0";
    ro.token = long_token;
    CHECK_RC(caudal_receiver_open(&r, &ro, err, sizeof err), CAUDAL_ERR_INVALID);
    CHECK(r == NULL);

    /* A unix path in use. */
    char ep[128];
    unix_endpoint(ep, sizeof ep, "busy");
    caudal_receiver *a = open_receiver(ep, TOKEN);
    ro.endpoint = ep;
    ro.token = TOKEN;
    CHECK_RC(caudal_receiver_open(&r, &ro, err, sizeof err), CAUDAL_ERR_SYSTEM);
    CHECK(strstr(err, ep + 5) != NULL);
    caudal_event ev;
    CHECK_RC(caudal_receiver_next(a, NULL, 0), CAUDAL_ERR_INVALID);
    CHECK(strlen(caudal_receiver_last_error(a)) > 0);
    CHECK(strstr(err, "another receiver is listening") != NULL);
    /* The second open probed whether the socket is live (a stale one is
     * reused): a connection that came and went without a byte, which gives
     * no event at all. */
    CHECK_RC(caudal_receiver_next(a, &ev, 0), CAUDAL_ERR_TIMEOUT);
    CHECK_RC(caudal_receiver_next(a, &ev, 50), CAUDAL_ERR_TIMEOUT);
    CHECK(caudal_receiver_connections(a) == 0);
    CHECK_RC(caudal_receiver_close(&a), CAUDAL_OK);
    CHECK(a == NULL);
    CHECK_RC(caudal_receiver_close(&a), CAUDAL_ERR_CLOSED);
    CHECK(access(ep + 5, F_OK) != 0); /* the socket file is removed at close */
}

int main(void)
{
    check_strings();
    check_null_client();
    check_receiver_args();

    char ep[128];
    unix_endpoint(ep, sizeof ep, "srv");
    server sv;
    server_start(&sv, ep);
    check_open(sv.endpoint);
    check_connected(sv.endpoint);
    server_stop(&sv);

    check_fake_receivers();
    check_receiver_gone(0);
    check_receiver_gone(1);
    check_bad_peers(0);
    check_bad_peers(1);
    printf("misuse: all misuse reported\n");
    return 0;
}
