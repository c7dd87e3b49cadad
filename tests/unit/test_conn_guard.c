#include <criterion/criterion.h>
#include <stdio.h>

#include "core/err.h"

#include "http/conn_count.h"
#include "http/conn_guard.h"

static const struct conn_guard_limits lim = {
    .header_timeout_ms = 20000, .body_grace_ms = 20000, .body_min_rate = 500};

Test(conn_guard, headers_have_their_timeout_from_the_first_byte)
{
    cr_expect_eq(conn_guard_verdict(&lim, CONN_HEAD, 1000, 0, 21000), CONN_KEEP);
    cr_expect_eq(conn_guard_verdict(&lim, CONN_HEAD, 1000, 0, 21001), CONN_HEADER_TIMEOUT);
    /* body bytes do not buy header time */
    cr_expect_eq(conn_guard_verdict(&lim, CONN_HEAD, 0, 1 << 30, 60000), CONN_HEADER_TIMEOUT);
}

Test(conn_guard, body_rate_is_checked_after_the_grace_only)
{
    cr_expect_eq(conn_guard_verdict(&lim, CONN_BODY, 0, 0, 20000), CONN_KEEP);
    cr_expect_eq(conn_guard_verdict(&lim, CONN_BODY, 0, 0, 20001), CONN_BODY_TOO_SLOW);
    /* averaged from the end of the headers: 500 B/s over 30 s is 15000 bytes */
    cr_expect_eq(conn_guard_verdict(&lim, CONN_BODY, 0, 15000, 30000), CONN_KEEP);
    cr_expect_eq(conn_guard_verdict(&lim, CONN_BODY, 0, 14999, 30000), CONN_BODY_TOO_SLOW);
    /* 200 KiB at 2 KiB/s stays well above it all the way */
    for (int64_t t = 0; t <= 100000; t += 500)
        cr_expect_eq(conn_guard_verdict(&lim, CONN_BODY, 0, (uint64_t)(2048 * t / 1000), t),
                     CONN_KEEP, "at %lld ms", (long long)t);
}

Test(conn_guard, other_phases_and_rate_off_never_expire)
{
    struct conn_guard_limits off = lim;
    off.body_min_rate = 0;
    cr_expect_eq(conn_guard_verdict(&off, CONN_BODY, 0, 0, 1000000), CONN_KEEP);
    cr_expect_eq(conn_guard_verdict(&lim, CONN_WAIT, 0, 0, 1000000), CONN_KEEP);
    cr_expect_eq(conn_guard_verdict(&lim, CONN_BUSY, 0, 0, 1000000), CONN_KEEP);
    cr_expect_eq(conn_guard_verdict(&lim, CONN_DEAD, 0, 0, 1000000), CONN_KEEP);
}

Test(conn_count, refuses_past_the_limit_and_counts_back_down)
{
    struct conn_count *c;
    cr_assert_eq(conn_count_create(2, 8, &c), 0);
    struct conn_count_entry *a = conn_count_take(c, "10.0.0.1", 0);
    struct conn_count_entry *b = conn_count_take(c, "10.0.0.1", 0);
    cr_assert(a && b);
    cr_expect_null(conn_count_take(c, "10.0.0.1", 0));
    cr_expect_not_null(conn_count_take(c, "2001:db8::/64", 0), "another key is not counted");
    struct conn_count_entry *f = conn_count_take(c, "10.0.0.1", 1);
    cr_expect_not_null(f, "force takes past the limit");
    cr_expect_eq(conn_count_get(c, "10.0.0.1"), 3);
    conn_count_release(c, f);
    conn_count_release(c, a);
    cr_expect_eq(conn_count_get(c, "10.0.0.1"), 1);
    cr_expect_not_null(conn_count_take(c, "10.0.0.1", 0));
    conn_count_release(c, NULL);
    conn_count_destroy(c);
}

Test(conn_count, memory_is_bounded_by_max_keys)
{
    struct conn_count *c;
    cr_assert_eq(conn_count_create(1, 3, &c), 0);
    struct conn_count_entry *e[3];
    char k[32];
    for (int i = 0; i < 3; i++) {
        snprintf(k, sizeof k, "10.0.0.%d", i);
        cr_assert_not_null(e[i] = conn_count_take(c, k, 0));
    }
    cr_expect_null(conn_count_take(c, "10.0.0.9", 1), "a fourth key does not fit");
    conn_count_release(c, e[1]);
    cr_expect_eq(conn_count_get(c, "10.0.0.1"), 0);
    cr_expect_not_null(conn_count_take(c, "10.0.0.9", 0), "a freed key makes room");
    struct conn_count *bad = (struct conn_count *)1;
    cr_expect_eq(conn_count_create(0, 3, &bad), IOT_EINVAL);
    conn_count_destroy(c);
    conn_count_destroy(NULL);
}
