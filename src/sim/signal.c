#include "sim/signal.h"

#include <math.h>

/* Bands are wide enough that noise + drift + cycle stay normal almost always. */
static const struct sim_profile profiles[] = {
    {"temperature", "C", 21.0, 2.0, 0.15, 0.02, 1.5, 10, 30, 0, 40, 8, 2},
    {"humidity", "%", 50.0, 8.0, 0.8, 0.1, 5, 25, 75, 10, 90, 20, 1},
    {"co2", "ppm", 600.0, 80.0, 12, 2, 60, 350, 1200, 300, 2000, 400, 0},
    {"pressure", "hPa", 1013.0, 4.0, 0.3, 0.05, 2, 985, 1040, 960, 1060, 15, 1},
    {"voltage", "V", 3.6, 0.05, 0.005, 0.0005, 0.02, 3.3, 4.2, 3.0, 4.4, 0.3, 3},
};
#define NPROFILES (sizeof profiles / sizeof profiles[0])

size_t sim_profile_count(void)
{
    return NPROFILES;
}

const struct sim_profile *sim_profile_at(size_t i)
{
    return &profiles[i % NPROFILES];
}

void sim_signal_init(struct sim_signal *s, const struct sim_profile *p, struct sim_rng *r)
{
    s->p = p;
    s->level = p->base + sim_rng_range(r, -p->spread, p->spread);
    s->phase = sim_rng_range(r, 0, 6.283185307179586);
    s->exc_offset = 0;
    s->exc_len = 0;
    s->exc_pos = 0;
}

static double round_to(double v, int decimals)
{
    double f = pow(10.0, decimals);
    return round(v * f) / f;
}

/*
 * Picks the peak of a new excursion: 70% of them end inside the warning
 * range (between a warning and a critical bound), 30% past a critical bound;
 * up or down with equal odds. The offset is relative to the current level.
 */
static void start_excursion(struct sim_signal *s, struct sim_rng *r)
{
    const struct sim_profile *p = s->p;
    int up = sim_rng_uniform(r) < 0.5, critical = sim_rng_uniform(r) < 0.3;
    double target;
    if (up)
        target = critical ? p->crit_max + sim_rng_range(r, 0.05, 0.3) * (p->crit_max - p->warn_max)
                          : p->warn_max + sim_rng_range(r, 0.2, 0.8) * (p->crit_max - p->warn_max);
    else
        target = critical ? p->crit_min - sim_rng_range(r, 0.05, 0.3) * (p->warn_min - p->crit_min)
                          : p->warn_min - sim_rng_range(r, 0.2, 0.8) * (p->warn_min - p->crit_min);
    s->exc_offset = target - s->level;
    /* Ramp slowly enough that no step of the ramp exceeds delta_max. */
    int min_len = (int)ceil(fabs(s->exc_offset) / (0.5 * p->delta_max));
    s->exc_len = min_len + (int)sim_rng_below(r, 10) + 3;
    s->exc_pos = 0;
}

/* The excursion's offset for this reading: ramp up, hold, ramp down. */
static double excursion_now(struct sim_signal *s)
{
    if (s->exc_pos >= 3 * s->exc_len) return 0;
    int k = s->exc_pos++, n = s->exc_len;
    double f = k < n ? (double)(k + 1) / n : k < 2 * n ? 1.0 : (double)(3 * n - k - 1) / n;
    return f * s->exc_offset;
}

double sim_signal_next(struct sim_signal *s, const struct sim_signal_opts *o, struct sim_rng *r,
                       enum sim_event *ev)
{
    const struct sim_profile *p = s->p;
    /* Mean-reverting random walk: drifts, never wanders off for good. */
    s->level += p->drift * sim_rng_normal(r) - 0.01 * (s->level - p->base);
    s->phase += 6.283185307179586 / 720.0;
    if (s->phase > 6.283185307179586) s->phase -= 6.283185307179586;
    if (s->exc_pos >= 3 * s->exc_len && o->excursion_prob > 0 &&
        sim_rng_uniform(r) < o->excursion_prob)
        start_excursion(s, r);
    double v =
        s->level + p->cycle * sin(s->phase) + excursion_now(s) + p->noise * sim_rng_normal(r);
    *ev = SIM_EV_NONE;
    if (v > p->crit_max || v < p->crit_min)
        *ev = SIM_EV_CRITICAL;
    else if (v > p->warn_max || v < p->warn_min)
        *ev = SIM_EV_WARNING;
    if (o->spike_prob > 0 && sim_rng_uniform(r) < o->spike_prob) {
        double jump = p->delta_max * sim_rng_range(r, 1.3, 2.0);
        v += sim_rng_uniform(r) < 0.5 ? jump : -jump;
        *ev = SIM_EV_SPIKE;
    }
    return round_to(v, p->decimals);
}
