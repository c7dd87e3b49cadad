/*
 * Realistic sensor signals for the simulator. Each simulated sensor follows
 * a profile (temperature, humidity, CO2, pressure, battery voltage) and
 * produces: a slowly drifting, mean-reverting level; a slow cycle; Gaussian
 * noise; rare one-reading spikes (larger than the profile's delta_max, so
 * the gateway classifies them `spike`); and rare excursions that ramp into
 * the warning band, sometimes past the critical bound, hold, and come back
 * (threshold crossings that open and then resolve alerts).
 *
 * The thresholds that `sim` provisions come from the same profile, so the
 * classes the gateway assigns match what the generator intended.
 */
#ifndef IOT_SIM_SIGNAL_H
#define IOT_SIM_SIGNAL_H

#include "sim/rng.h"

#include <stddef.h>

struct sim_profile {
    const char *type, *unit;
    double base;   /* typical value */
    double spread; /* sensors start at base +- spread */
    double noise;  /* standard deviation of the per-reading noise */
    double drift;  /* standard deviation of the level's random walk, per reading */
    double cycle;  /* amplitude of the slow cycle */
    double warn_min, warn_max, crit_min, crit_max; /* critical band contains the warning band */
    double delta_max;                              /* largest normal jump */
    int decimals;                                  /* digits sent after the point */
};

/* The profiles, cycled over a device's sensors: sensor i uses sim_profile_at(i). */
size_t sim_profile_count(void);
const struct sim_profile *sim_profile_at(size_t i);

/* What the generator did to one reading (for the run's summary). */
enum sim_event { SIM_EV_NONE = 0, SIM_EV_SPIKE, SIM_EV_WARNING, SIM_EV_CRITICAL };

struct sim_signal_opts {
    double spike_prob;     /* per reading, a one-reading spike */
    double excursion_prob; /* per reading while none is running, start an excursion */
};

/* One sensor's generator state; plain data, no heap. */
struct sim_signal {
    const struct sim_profile *p;
    double level;      /* drifting baseline */
    double phase;      /* slow cycle, radians */
    double exc_offset; /* peak offset of the running excursion */
    int exc_len;       /* readings in each of its ramp-up, hold and ramp-down phases */
    int exc_pos;       /* readings done; the excursion runs while exc_pos < 3 * exc_len */
};

void sim_signal_init(struct sim_signal *s, const struct sim_profile *p, struct sim_rng *r);

/*
 * The next reading of the sensor, rounded to the profile's decimals. *ev
 * tells whether it is a spike or lies in the warning/critical range by
 * construction (noise alone may also cross a bound now and then).
 */
double sim_signal_next(struct sim_signal *s, const struct sim_signal_opts *o, struct sim_rng *r,
                       enum sim_event *ev);

#endif
