#include "core/clock.h"

#include <errno.h>
#include <time.h>

static int64_t real_wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t clock_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void clock_sleep_us(int64_t us)
{
    if (us <= 0) return;
    struct timespec ts = {(time_t)(us / 1000000), (long)(us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) /* a signal: sleep the rest */
        ;
}

static int64_t real_mono(void)
{
    return clock_mono_us() / 1000;
}

static clock_fn wall_src = real_wall;
static clock_fn mono_src = real_mono;

int64_t clock_now_ms(void)
{
    return wall_src();
}
int64_t clock_mono_ms(void)
{
    return mono_src();
}

void clock_set_source(clock_fn wall, clock_fn mono)
{
    wall_src = wall ? wall : real_wall;
    mono_src = mono ? mono : real_mono;
}
