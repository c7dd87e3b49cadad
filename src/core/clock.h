/*
 * Clocks: wall clock and monotonic, in milliseconds. All stored times are
 * UTC milliseconds since the Unix epoch. Both sources can be replaced by a
 * fake clock in tests.
 */
#ifndef IOT_CLOCK_H
#define IOT_CLOCK_H

#include <stdint.h>

/* Wall clock, ms since the Unix epoch (UTC). */
int64_t clock_now_ms(void);
/* Monotonic clock, ms; only differences are meaningful. */
int64_t clock_mono_ms(void);
/* Monotonic clock in microseconds, for latency measurements (not faked). */
int64_t clock_mono_us(void);

/* Sleeps us microseconds (real time, never faked); 0 or less returns at once. */
void clock_sleep_us(int64_t us);

/* Test hook: replace both clocks (NULL restores the real ones). */
typedef int64_t (*clock_fn)(void);
void clock_set_source(clock_fn wall, clock_fn mono);

#endif
