/* test_api.c - what a binding builds on, through the shared library as a
 * program links it: the version, the lists the enums come from, the layout
 * of the structs a caller allocates, and the calls that let a binding check
 * its arrays and read steering values without copies of the library's
 * state. */
#include <stddef.h>

#include "harness.h"

/* The structs a caller allocates keep their size and the offsets of their
 * fields from one version to the next (new fields come out of `reserved`):
 * a change here breaks programs built against an older header. LP64. */
#if UINTPTR_MAX == UINT64_MAX
_Static_assert(sizeof(caudal_options) == 120, "caudal_options changed size");
_Static_assert(offsetof(caudal_options, connect_timeout_ms) == 48, "caudal_options moved");
_Static_assert(sizeof(caudal_counters) == 120, "caudal_counters changed size");
_Static_assert(sizeof(caudal_value) == 72, "caudal_value changed size");
_Static_assert(sizeof(caudal_array_info) == 248, "caudal_array_info changed size");
_Static_assert(sizeof(caudal_state) == 80, "caudal_state changed size");
_Static_assert(sizeof(caudal_receiver_options) == 104, "caudal_receiver_options changed size");
_Static_assert(sizeof(caudal_event) == 344, "caudal_event changed size");
_Static_assert(offsetof(caudal_event, message) == 272, "caudal_event moved");
/* Fields taken from the reserved space, and the arrays of a STEPS event. */
_Static_assert(offsetof(caudal_receiver_options, gather) == 40, "receiver options moved");
_Static_assert(offsetof(caudal_receiver_options, spin_us) == 48, "receiver options moved");
_Static_assert(offsetof(caudal_event, blocks) == 280, "caudal_event moved");
_Static_assert(offsetof(caudal_event, reserved) == 320, "caudal_event moved");
_Static_assert(sizeof(caudal_step_block) == 56, "caudal_step_block changed size");
_Static_assert(sizeof(caudal_rank_progress) == 16, "caudal_rank_progress changed size");
_Static_assert(sizeof(caudal_rank_drop) == 32, "caudal_rank_drop changed size");
#endif

static void lists(void)
{
    int major = -1, minor = -1, patch = -1;
    CHECK_RC(caudal_version(&major, &minor, &patch), CAUDAL_OK);
    CHECK(major == CAUDAL_VERSION_MAJOR && minor == CAUDAL_VERSION_MINOR &&
          patch == CAUDAL_VERSION_PATCH);
    CHECK_RC(caudal_version(NULL, NULL, NULL), CAUDAL_OK);
    char v[32];
    snprintf(v, sizeof v, "%d.%d.%d", major, minor, patch);
    CHECK(strcmp(v, CAUDAL_VERSION_STRING) == 0);

    /* Every status has its own description; others get "unknown status". */
    const char *seen[64];
    int n = 0;
#define SEEN(name, value, text)                                  \
    CHECK(strcmp(caudal_strerror(CAUDAL_##name), text) == 0);    \
    for (int k = 0; k < n; k++)                                  \
        CHECK(strcmp(seen[k], text) != 0);                       \
    seen[n++] = text;
    CAUDAL_STATUS_LIST(SEEN)
#undef SEEN
    CHECK(n == 20);
    CHECK(strcmp(caudal_strerror(-19), "unknown status") == 0);
    CHECK(strcmp(caudal_strerror(2), "unknown status") == 0);

    /* Dtypes: sizes and names as NumPy has them, consecutive codes. */
    int expect = 1;
#define DTYPE(name, value, size, text)                          \
    CHECK(value == expect++);                                   \
    CHECK(caudal_dtype_size(CAUDAL_##name) == size);            \
    CHECK(strcmp(caudal_dtype_name(CAUDAL_##name), text) == 0);
    CAUDAL_DTYPE_LIST(DTYPE)
#undef DTYPE
    CHECK(caudal_dtype_size(CAUDAL_COMPLEX128) == 16 && caudal_dtype_size(13) == 0);
    CHECK(strcmp(caudal_dtype_name(0), "invalid") == 0);
    CHECK(strcmp(caudal_dtype_name(13), "invalid") == 0);

    /* The _init functions leave the reserved space zero. */
    caudal_options o;
    memset(&o, 0x5a, sizeof o);
    CHECK_RC(caudal_options_init(&o), CAUDAL_OK);
    for (size_t k = 0; k < sizeof o.reserved / sizeof o.reserved[0]; k++)
        CHECK(o.reserved[k] == 0);
    caudal_receiver_options ro;
    memset(&ro, 0x5a, sizeof ro);
    CHECK_RC(caudal_receiver_options_init(&ro), CAUDAL_OK);
    for (size_t k = 0; k < sizeof ro.reserved / sizeof ro.reserved[0]; k++)
        CHECK(ro.reserved[k] == 0);
}

static const char *endpoint;

static int binding_calls(void *unused)
{
    (void)unused;
    caudal_options base;
    caudal_options_init(&base);
    base.ring_depth = 3;
    caudal_client *c = open_client(endpoint, "tok-api", 1, 2, &base);
    caudal_state st;
    CHECK_RC(caudal_get_state(c, &st), CAUDAL_OK);
    CHECK(st.rank == 1 && st.size == 2 && !st.in_step && !st.any_step);
    CHECK(st.policy == CAUDAL_POLICY_BLOCK && st.ring_depth == 3 && st.slot_bytes == 0);
    CHECK_RC(caudal_get_state(c, NULL), CAUDAL_ERR_INVALID);
    CHECK_RC(caudal_get_state(NULL, &st), CAUDAL_ERR_CLOSED);

    /* A declaration comes back as it was made. */
    uint64_t shape[2] = {8, 6}, start[2] = {4, 0}, count[2] = {4, 6};
    CHECK_RC(caudal_declare(c, "t", CAUDAL_FLOAT32, 2, shape, start, count, CAUDAL_ORDER_F),
             CAUDAL_OK);
    CHECK_RC(caudal_declare_var(c, "ids", CAUDAL_INT64, 100), CAUDAL_OK);
    caudal_array_info a;
    memset(&a, 0x5a, sizeof a);
    CHECK_RC(caudal_query_array(c, "t", &a), CAUDAL_OK);
    CHECK(strcmp(a.name, "t") == 0 && a.dtype == CAUDAL_FLOAT32 && a.order == CAUDAL_ORDER_F);
    CHECK(!a.variable && a.ndim == 2 && a.shape[1] == 6 && a.start[0] == 4 && a.count[0] == 4);
    CHECK(a.shape[2] == 0 && a.reserved[0] == 0); /* unused dimensions and space zeroed */
    CHECK_RC(caudal_query_array(c, "ids", &a), CAUDAL_OK);
    CHECK(a.variable && a.ndim == 1 && a.count[0] == 100 && a.dtype == CAUDAL_INT64);
    CHECK_RC(caudal_query_array(c, "nope", &a), CAUDAL_ERR_UNKNOWN_ARRAY);
    CHECK_MSG(c, "'nope'");
    CHECK_RC(caudal_query_array(c, "t", NULL), CAUDAL_ERR_INVALID);

    /* put_check: the put's own errors, in the put's words, and then the
     * layout; nothing recorded, so the put still goes through. */
    uint64_t block[2] = {4, 6}, flat[1] = {24}, transposed[2] = {6, 4}, short_run[1] = {23};
    CHECK_RC(caudal_put_check(c, "t", CAUDAL_FLOAT32, 0, 2, block), CAUDAL_ERR_STATE);
    CHECK_MSG(c, "outside caudal_begin_step");
    CHECK_RC(caudal_begin_step(c, 7), CAUDAL_OK);
    CHECK_RC(caudal_get_state(c, &st), CAUDAL_OK);
    CHECK(st.in_step && st.any_step && st.step == 7 && !st.dropping && st.slot_bytes > 0);
    CHECK_RC(caudal_put_check(c, "u", CAUDAL_FLOAT32, 0, 2, block), CAUDAL_ERR_UNKNOWN_ARRAY);
    CHECK_RC(caudal_put_check(c, "t", CAUDAL_FLOAT64, 0, 2, block), CAUDAL_ERR_DTYPE);
    CHECK_MSG(c, "declared float32, put as float64");
    CHECK_RC(caudal_put_check(c, "t", CAUDAL_FLOAT32, 1, 1, flat), CAUDAL_ERR_INVALID);
    CHECK_MSG(c, "use caudal_put");
    CHECK_RC(caudal_put_check(c, "t", CAUDAL_FLOAT32, 0, 2, block), CAUDAL_OK);
    CHECK_RC(caudal_put_check(c, "t", CAUDAL_FLOAT32, 0, 1, flat), CAUDAL_OK);
    CHECK_RC(caudal_put_check(c, "t", CAUDAL_FLOAT32, 0, 0, NULL), CAUDAL_OK);
    CHECK_RC(caudal_put_check(c, "t", CAUDAL_FLOAT32, 0, 2, transposed), CAUDAL_ERR_SHAPE);
    CHECK_MSG(c, "rank 1, step 7, array 't': put with shape (6, 4), the declared block has "
                 "shape (4, 6) (float32, Fortran order)");
    CHECK_RC(caudal_put_check(c, "t", CAUDAL_FLOAT32, 0, 1, short_run), CAUDAL_ERR_SHAPE);
    CHECK_MSG(c, "flat run of 23 elements");
    CHECK_RC(caudal_put_check(c, "t", CAUDAL_FLOAT32, 0, 9, block), CAUDAL_ERR_INVALID);
    CHECK_RC(caudal_put_check(c, "ids", CAUDAL_INT64, 1, 2, block), CAUDAL_ERR_SHAPE);
    CHECK_MSG(c, "1-D");
    uint64_t huge[1] = {UINT64_MAX / 4};
    CHECK_RC(caudal_put_check(c, "ids", CAUDAL_INT64, 1, 1, huge), CAUDAL_ERR_SHAPE);
    CHECK_RC(caudal_put_check(c, "ids", CAUDAL_INT64, 1, 1, flat), CAUDAL_OK);
    float t[24];
    for (int k = 0; k < 24; k++)
        t[k] = (float)k;
    CHECK_RC(caudal_put(c, "t", CAUDAL_FLOAT32, t), CAUDAL_OK);
    CHECK_RC(caudal_put_check(c, "t", CAUDAL_FLOAT32, 0, 2, block), CAUDAL_ERR_DUPLICATE);

    /* A binding's own check reads as the library's. */
    CHECK_RC(caudal_set_error(c, CAUDAL_ERR_INVALID, "ids", "the buffer is not contiguous"),
             CAUDAL_ERR_INVALID);
    CHECK(strcmp(caudal_last_error(c),
                 "rank 1, step 7, array 'ids': the buffer is not contiguous") == 0);
    CHECK_RC(caudal_set_error(c, CAUDAL_ERR_STATE, NULL, "why"), CAUDAL_ERR_STATE);
    CHECK(strcmp(caudal_last_error(c), "rank 1, step 7: why") == 0);
    CHECK_RC(caudal_set_error(NULL, CAUDAL_ERR_STATE, NULL, "why"), CAUDAL_ERR_CLOSED);
    CHECK_RC(caudal_end_step(c), CAUDAL_OK);
    CHECK_RC(caudal_get_state(c, &st), CAUDAL_OK);
    CHECK(!st.in_step && st.any_step && st.step == 7);
    char msg[256] = "not written";
    CHECK_RC(caudal_close_report(&c, msg, sizeof msg), CAUDAL_OK);
    CHECK(c == NULL && msg[0] == 0);
    return 0;
}

/* The receiver goes away under the client: closing reports why, although
 * the client, and with it its last error, is freed. */
static int orphan_calls(void *unused)
{
    (void)unused;
    caudal_client *c = open_client(endpoint, "tok-api", 0, 1, NULL);
    uint64_t n[1] = {4};
    CHECK_RC(caudal_declare(c, "x", CAUDAL_INT32, 1, n, (uint64_t[]){0}, n, CAUDAL_ORDER_C),
             CAUDAL_OK);
    int32_t x[4] = {1, 2, 3, 4};
    int rc = CAUDAL_OK;
    for (uint64_t step = 0; rc == CAUDAL_OK && step < 2000; step++) {
        if ((rc = caudal_begin_step(c, step)) == CAUDAL_OK &&
            (rc = caudal_put(c, "x", CAUDAL_INT32, x)) == CAUDAL_OK)
            rc = caudal_end_step(c);
        usleep(5000);
    }
    CHECK(rc == CAUDAL_ERR_IO);
    char msg[256];
    CHECK_RC(caudal_close_report(&c, msg, sizeof msg), CAUDAL_ERR_IO);
    CHECK(c == NULL);
    if (!strstr(msg, "rank 0") || !strstr(msg, "receiver")) {
        fprintf(stderr, "close message: \"%s\"\n", msg);
        return 1;
    }
    CHECK_RC(caudal_close_report(&c, msg, sizeof msg), CAUDAL_ERR_CLOSED);
    CHECK(strstr(msg, "closed") != NULL);
    CHECK_RC(caudal_close_report(NULL, NULL, 0), CAUDAL_ERR_CLOSED);
    return 0;
}

static void orphan(void)
{
    char ep[128];
    unix_endpoint(ep, sizeof ep, "api-orphan");
    endpoint = ep;
    caudal_receiver *r = open_receiver(ep, "tok-api");
    pid_t pid = spawn(orphan_calls, NULL);
    caudal_event ev;
    do {
        CHECK_RC(caudal_receiver_next(r, &ev, 20000), CAUDAL_OK);
        if (ev.type == CAUDAL_EVENT_BLOCK)
            CHECK_RC(caudal_block_release(ev.block), CAUDAL_OK);
    } while (ev.type != CAUDAL_EVENT_STEP_END);
    CHECK_RC(caudal_receiver_close(&r), CAUDAL_OK);
    CHECK(wait_exit(pid) == 0);
}

static void binding(void)
{
    char ep[128];
    unix_endpoint(ep, sizeof ep, "api");
    endpoint = ep;
    caudal_receiver *r = open_receiver(ep, "tok-api");
    pid_t pid = spawn(binding_calls, NULL);
    caudal_event ev;
    int blocks = 0, bye = 0;
    while (!bye) {
        CHECK_RC(caudal_receiver_next(r, &ev, 20000), CAUDAL_OK);
        CHECK(ev.type != CAUDAL_EVENT_DISCONNECT && ev.type != CAUDAL_EVENT_REFUSED);
        if (ev.type == CAUDAL_EVENT_BLOCK) {
            /* The checks recorded nothing: one block, the one put. */
            CHECK(ev.step == 7 && strcmp(ev.array->name, "t") == 0 && ev.count == 24);
            CHECK(((const float *)ev.data)[23] == 23.0f);
            CHECK(ev.reserved[0] == 0);
            uint32_t slots = 99;
            CHECK_RC(caudal_block_ring_slots(ev.block, &slots), CAUDAL_OK);
            CHECK(slots == 3); /* the client's ring_depth */
            CHECK_RC(caudal_block_ring_slots(ev.block, NULL), CAUDAL_ERR_INVALID);
            CHECK_RC(caudal_block_ring_slots(NULL, &slots), CAUDAL_ERR_INVALID);
            blocks++;
            CHECK_RC(caudal_block_release(ev.block), CAUDAL_OK);
        }
        bye = ev.type == CAUDAL_EVENT_BYE;
    }
    CHECK(blocks == 1);
    CHECK(wait_exit(pid) == 0);
    CHECK_RC(caudal_receiver_close(&r), CAUDAL_OK);
}

int main(void)
{
    lists();
    binding();
    orphan();
    printf("api: version, lists, struct layout, query, state, put_check, set_error, "
           "close_report\n");
    return 0;
}
