/*
 * Token-bucket rate limiter keyed by an opaque byte string (a client IP, a
 * device id). Memory is bounded: at most max_buckets keys are kept; when the
 * table is full the least recently used bucket is evicted (an evicted key
 * starts again with a full bucket, which only ever errs towards allowing).
 * Thread-safe (one internal mutex; the critical section is O(1)).
 */
#ifndef IOT_RATE_LIMIT_H
#define IOT_RATE_LIMIT_H

#include <stddef.h>
#include <stdint.h>

struct rate_limiter;

/*
 * rate: tokens added per second (0 disables the limiter: rl_take always
 * allows); burst: bucket capacity (>= 1); max_buckets: cap on keys kept.
 * Returns 0 and *out, or IOT_ENOMEM / IOT_EINVAL / IOT_EIO (no random secret).
 */
int rl_create(double rate, double burst, size_t max_buckets, struct rate_limiter **out);
void rl_destroy(struct rate_limiter *rl); /* accepts NULL */

/*
 * Takes one token for key at monotonic time now_ms. Returns 1 when allowed,
 * 0 when limited; when limited, *retry_after_s (if not NULL) is set to the
 * whole seconds (>= 1) until a token is available.
 */
int rl_take(struct rate_limiter *rl, const void *key, size_t keylen, int64_t now_ms,
            int *retry_after_s);

/*
 * Like rl_take, but the request costs cost tokens (> 0; anything else counts
 * as 1). A cost of 1/n makes the key's bucket hold n times the burst and
 * refill n times as fast: one limiter, one table, a looser budget for some
 * keys (the failed-authentication budget of a whole address, src/http/auth.c).
 * When refused, nothing is taken.
 */
int rl_take_cost(struct rate_limiter *rl, const void *key, size_t keylen, double cost,
                 int64_t now_ms, int *retry_after_s);

/*
 * Empties key's bucket (creating it if absent), so that its next token comes
 * 1/rate seconds after now_ms. No effect on a disabled limiter.
 */
void rl_drain(struct rate_limiter *rl, const void *key, size_t keylen, int64_t now_ms);

/*
 * Like rl_take, but takes nothing and creates no bucket: 1 if a token is
 * available now (an unknown key has a full bucket), else 0 and *retry_after_s.
 */
int rl_peek(struct rate_limiter *rl, const void *key, size_t keylen, int64_t now_ms,
            int *retry_after_s);

/* Number of buckets currently held (for tests and metrics). */
size_t rl_size(struct rate_limiter *rl);

#endif
