#include <criterion/criterion.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "core/err.h"
#include "core/rate_limit.h"

static struct rate_limiter *mk(double rate, double burst, size_t cap)
{
    struct rate_limiter *rl = NULL;
    cr_assert_eq(rl_create(rate, burst, cap, &rl), 0);
    cr_assert_not_null(rl);
    return rl;
}

static int take(struct rate_limiter *rl, const char *key, int64_t now_ms, int *retry)
{
    return rl_take(rl, key, strlen(key), now_ms, retry);
}

Test(rate_limit, create_rejects_bad_arguments)
{
    struct rate_limiter *rl = (struct rate_limiter *)1;
    cr_expect_eq(rl_create(-1, 10, 10, &rl), IOT_EINVAL);
    cr_expect_null(rl);
    cr_expect_eq(rl_create(10, 0.5, 10, &rl), IOT_EINVAL);
    cr_expect_eq(rl_create(10, 10, 0, &rl), IOT_EINVAL);
    cr_expect_eq(rl_create(NAN, 10, 10, &rl), IOT_EINVAL);
    cr_expect_eq(rl_create(10, INFINITY, 10, &rl), IOT_EINVAL);
    cr_expect_eq(rl_create(10, 10, 10, NULL), IOT_EINVAL);
    rl_destroy(NULL);
}

Test(rate_limit, burst_then_refusal)
{
    struct rate_limiter *rl = mk(1, 5, 16);
    for (int i = 0; i < 5; i++)
        cr_expect_eq(take(rl, "1.2.3.4", 1000, NULL), 1, "request %d", i);
    int retry = -1;
    cr_expect_eq(take(rl, "1.2.3.4", 1000, &retry), 0);
    cr_expect_eq(retry, 1);
    cr_expect_eq(take(rl, "1.2.3.4", 1000, NULL), 0, "NULL retry_after is allowed");
    rl_destroy(rl);
}

Test(rate_limit, refill_over_time)
{
    struct rate_limiter *rl = mk(10, 2, 16); /* one token per 100 ms */
    cr_assert_eq(take(rl, "k", 0, NULL), 1);
    cr_assert_eq(take(rl, "k", 0, NULL), 1);
    cr_assert_eq(take(rl, "k", 0, NULL), 0);
    cr_expect_eq(take(rl, "k", 99, NULL), 0);
    cr_expect_eq(take(rl, "k", 100, NULL), 1);
    cr_expect_eq(take(rl, "k", 100, NULL), 0);
    /* A long idle period refills to the burst, never beyond. */
    int64_t t = 100000;
    cr_expect_eq(take(rl, "k", t, NULL), 1);
    cr_expect_eq(take(rl, "k", t, NULL), 1);
    cr_expect_eq(take(rl, "k", t, NULL), 0);
    rl_destroy(rl);
}

Test(rate_limit, clock_going_backwards_gives_no_tokens)
{
    struct rate_limiter *rl = mk(1, 1, 16);
    cr_assert_eq(take(rl, "k", 10000, NULL), 1);
    cr_expect_eq(take(rl, "k", 5000, NULL), 0);
    cr_expect_eq(take(rl, "k", 10999, NULL), 0);
    cr_expect_eq(take(rl, "k", 11000, NULL), 1);
    rl_destroy(rl);
}

Test(rate_limit, retry_after_is_ceiling_seconds)
{
    int retry = 0;
    struct rate_limiter *slow = mk(0.25, 1, 16); /* one token per 4 s */
    cr_assert_eq(take(slow, "k", 0, NULL), 1);
    cr_assert_eq(take(slow, "k", 0, &retry), 0);
    cr_expect_eq(retry, 4);
    cr_assert_eq(take(slow, "k", 1500, &retry), 0);
    cr_expect_eq(retry, 3, "2.5 s left rounds up to 3");
    cr_assert_eq(take(slow, "k", 3999, &retry), 0);
    cr_expect_eq(retry, 1, "1 ms left is still 1 s");
    cr_expect_eq(take(slow, "k", 4000, NULL), 1);
    rl_destroy(slow);

    struct rate_limiter *fast = mk(1000, 1, 16);
    cr_assert_eq(take(fast, "k", 0, NULL), 1);
    cr_assert_eq(take(fast, "k", 0, &retry), 0);
    cr_expect_eq(retry, 1, "never below 1");
    rl_destroy(fast);

    struct rate_limiter *glacial = mk(1e-12, 1, 16);
    cr_assert_eq(take(glacial, "k", 0, NULL), 1);
    cr_assert_eq(take(glacial, "k", 0, &retry), 0);
    cr_expect_eq(retry, INT_MAX, "clamped, no overflow");
    rl_destroy(glacial);
}

Test(rate_limit, rate_zero_disables)
{
    struct rate_limiter *rl = mk(0, 1, 1);
    char key[32];
    for (int i = 0; i < 10000; i++) {
        snprintf(key, sizeof key, "k%d", i % 3);
        cr_assert_eq(take(rl, key, 0, NULL), 1);
    }
    cr_expect_eq(rl_size(rl), 0);
    rl_destroy(rl);
}

Test(rate_limit, distinct_keys_are_independent)
{
    struct rate_limiter *rl = mk(1, 2, 16);
    cr_assert_eq(take(rl, "a", 0, NULL), 1);
    cr_assert_eq(take(rl, "a", 0, NULL), 1);
    cr_assert_eq(take(rl, "a", 0, NULL), 0);
    cr_expect_eq(take(rl, "b", 0, NULL), 1);
    cr_expect_eq(take(rl, "b", 0, NULL), 1);
    cr_expect_eq(take(rl, "b", 0, NULL), 0);
    /* Same bytes, different length: different keys. */
    cr_expect_eq(rl_take(rl, "ab", 1, 0, NULL), 0, "\"a\" again");
    cr_expect_eq(rl_take(rl, "ab", 2, 0, NULL), 1);
    /* Binary keys with NUL bytes. */
    unsigned char k1[4] = {0, 0, 0, 1}, k2[4] = {0, 0, 0, 2};
    cr_expect_eq(rl_take(rl, k1, 4, 0, NULL), 1);
    cr_expect_eq(rl_take(rl, k1, 4, 0, NULL), 1);
    cr_expect_eq(rl_take(rl, k1, 4, 0, NULL), 0);
    cr_expect_eq(rl_take(rl, k2, 4, 0, NULL), 1);
    cr_expect_eq(rl_size(rl), 5);
    rl_destroy(rl);
}

Test(rate_limit, long_keys_stay_distinct)
{
    struct rate_limiter *rl = mk(1, 1, 64);
    char a[300], b[300];
    memset(a, 'x', sizeof a);
    memcpy(b, a, sizeof b);
    b[sizeof b - 1] = 'y'; /* differs only after the stored prefix */
    cr_assert_eq(rl_take(rl, a, sizeof a, 0, NULL), 1);
    cr_expect_eq(rl_take(rl, a, sizeof a, 0, NULL), 0, "same long key shares a bucket");
    cr_expect_eq(rl_take(rl, b, sizeof b, 0, NULL), 1, "differs after the prefix");
    cr_expect_eq(rl_take(rl, a, sizeof a - 1, 0, NULL), 1, "a prefix of it is another key");
    cr_expect_eq(rl_take(rl, a, 64, 0, NULL), 1, "exactly 64 bytes: stored verbatim");
    cr_expect_eq(rl_take(rl, a, 65, 0, NULL), 1, "65 bytes: digested, still distinct");
    cr_expect_eq(rl_size(rl), 5);
    rl_destroy(rl);
}

Test(rate_limit, empty_and_null_key)
{
    struct rate_limiter *rl = mk(1, 1, 8);
    cr_expect_eq(rl_take(rl, "", 0, 0, NULL), 1);
    cr_expect_eq(rl_take(rl, NULL, 0, 0, NULL), 0, "NULL is the empty key");
    rl_destroy(rl);
}

Test(rate_limit, size_never_exceeds_cap)
{
    const size_t cap = 1000;
    struct rate_limiter *rl = mk(1, 1, cap);
    char key[32];
    for (int i = 0; i < 100000; i++) {
        int n = snprintf(key, sizeof key, "10.%d.%d.%d", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        cr_assert_eq(rl_take(rl, key, (size_t)n, i, NULL), 1, "a new key always starts full");
        cr_assert_leq(rl_size(rl), cap, "at key %d", i);
    }
    cr_expect_eq(rl_size(rl), cap);
    rl_destroy(rl);
}

Test(rate_limit, cap_of_one)
{
    struct rate_limiter *rl = mk(1, 1, 1);
    cr_assert_eq(take(rl, "a", 0, NULL), 1);
    cr_expect_eq(take(rl, "a", 0, NULL), 0);
    cr_assert_eq(take(rl, "b", 0, NULL), 1);
    cr_expect_eq(rl_size(rl), 1);
    cr_expect_eq(take(rl, "a", 0, NULL), 1, "a was evicted and starts again full");
    rl_destroy(rl);
}

Test(rate_limit, lru_evicts_least_recently_used)
{
    struct rate_limiter *rl = mk(1, 1, 3);
    cr_assert_eq(take(rl, "a", 0, NULL), 1);
    cr_assert_eq(take(rl, "b", 0, NULL), 1);
    cr_assert_eq(take(rl, "c", 0, NULL), 1);
    /* Touch a (refused, but it is a use): b is now least recently used. */
    cr_assert_eq(take(rl, "a", 0, NULL), 0);
    cr_assert_eq(take(rl, "d", 0, NULL), 1); /* evicts b */
    cr_expect_eq(rl_size(rl), 3);
    cr_expect_eq(take(rl, "a", 0, NULL), 0, "a kept its empty bucket");
    cr_expect_eq(take(rl, "c", 0, NULL), 0, "c kept its empty bucket");
    cr_expect_eq(take(rl, "d", 0, NULL), 0, "d kept its empty bucket");
    cr_expect_eq(take(rl, "b", 0, NULL), 1, "b was evicted: fresh bucket");
    rl_destroy(rl);
}

Test(rate_limit, hot_key_survives_a_flood)
{
    struct rate_limiter *rl = mk(1, 1, 100);
    char key[32];
    cr_assert_eq(take(rl, "hot", 0, NULL), 1);
    for (int i = 0; i < 10000; i++) {
        snprintf(key, sizeof key, "flood-%d", i);
        take(rl, key, 0, NULL);
        if (i % 50 == 0) cr_assert_eq(take(rl, "hot", 0, NULL), 0, "hot stays limited at %d", i);
    }
    rl_destroy(rl);
}

struct worker_arg {
    struct rate_limiter *rl;
    int id;
    int allowed_shared;
};

static void *worker(void *p)
{
    struct worker_arg *a = p;
    char key[32];
    for (int i = 0; i < 20000; i++) {
        if (rl_take(a->rl, "shared", 6, 0, NULL)) a->allowed_shared++;
        snprintf(key, sizeof key, "t%d-%d", a->id, i);
        rl_take(a->rl, key, strlen(key), i, NULL);
    }
    return NULL;
}

Test(rate_limit, two_threads_never_exceed)
{
    const size_t cap = 64;
    struct rate_limiter *rl = mk(1, 50, cap);
    pthread_t th[2];
    struct worker_arg args[2] = {{rl, 0, 0}, {rl, 1, 0}};
    for (int i = 0; i < 2; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, worker, &args[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    /* "shared" is the most recently used key for both threads throughout, so
     * it is never evicted; time is frozen at 0 for it: exactly the burst. */
    cr_expect_eq(args[0].allowed_shared + args[1].allowed_shared, 50);
    cr_expect_leq(rl_size(rl), cap);
    rl_destroy(rl);
}

Test(rate_limit, peek_takes_nothing_and_creates_nothing)
{
    struct rate_limiter *rl = NULL;
    cr_assert_eq(rl_create(1.0, 2.0, 16, &rl), 0);
    int retry = 0;
    cr_assert_eq(rl_peek(rl, "a", 1, 0, &retry), 1, "unknown key has a full bucket");
    cr_assert_eq(rl_size(rl), 0);
    cr_assert_eq(rl_take(rl, "a", 1, 0, NULL), 1);
    cr_assert_eq(rl_take(rl, "a", 1, 0, NULL), 1);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(rl_peek(rl, "a", 1, 0, &retry), 0);
    cr_assert_geq(retry, 1);
    cr_assert_eq(rl_peek(rl, "a", 1, 1000, NULL), 1, "refilled after a second");
    cr_assert_eq(rl_size(rl), 1);
    rl_destroy(rl);
}

Test(rate_limit, fractional_cost_is_a_looser_budget_in_the_same_table)
{
    struct rate_limiter *rl = mk(1, 2, 16);
    int retry = 0;
    /* Cost 1/10: ten times the burst, refilled ten times as fast. */
    for (int i = 0; i < 20; i++)
        cr_assert_eq(rl_take_cost(rl, "addr", 4, 0.1, 0, NULL), 1, "take %d", i);
    cr_expect_eq(rl_take_cost(rl, "addr", 4, 0.1, 0, &retry), 0, "rounding must not add a 21st");
    cr_expect_eq(retry, 1);
    cr_expect_eq(rl_take_cost(rl, "addr", 4, 0.1, 99, NULL), 0);
    cr_expect_eq(rl_take_cost(rl, "addr", 4, 0.1, 100, NULL), 1, "0.1 token refilled in 100 ms");
    /* Whole-token keys beside it keep their own budget. */
    cr_expect_eq(take(rl, "pair", 0, NULL), 1);
    cr_expect_eq(take(rl, "pair", 0, NULL), 1);
    cr_expect_eq(take(rl, "pair", 0, NULL), 0);
    /* A refused take costs nothing; a nonsense cost counts as 1. */
    cr_expect_eq(rl_take_cost(rl, "big", 3, 3.0, 0, &retry), 0);
    cr_expect_eq(retry, 1);
    cr_expect_eq(rl_take_cost(rl, "big", 3, NAN, 0, NULL), 1);
    cr_expect_eq(rl_take_cost(rl, "big", 3, -1, 0, NULL), 1);
    cr_expect_eq(rl_take_cost(rl, "big", 3, INFINITY, 0, NULL), 0);
    cr_expect_eq(rl_size(rl), 3);
    rl_destroy(rl);
}

Test(rate_limit, drain_empties_one_bucket)
{
    struct rate_limiter *rl = mk(1, 5, 16);
    int retry = 0;
    rl_drain(rl, "new", 3, 0);
    cr_expect_eq(rl_size(rl), 1, "an absent key gets an empty bucket");
    cr_expect_eq(take(rl, "new", 0, &retry), 0);
    cr_expect_eq(retry, 1);
    cr_assert_eq(take(rl, "old", 0, NULL), 1);
    rl_drain(rl, "old", 3, 0);
    cr_expect_eq(take(rl, "old", 999, NULL), 0);
    cr_expect_eq(take(rl, "old", 1000, NULL), 1, "refills at the usual rate");
    cr_expect_eq(take(rl, "other", 0, NULL), 1, "other keys untouched");
    rl_destroy(rl);

    struct rate_limiter *off = mk(0, 1, 16);
    rl_drain(off, "k", 1, 0);
    cr_expect_eq(take(off, "k", 0, NULL), 1, "disabled limiter: drain does nothing");
    rl_destroy(off);
    rl_drain(NULL, "k", 1, 0);
}
