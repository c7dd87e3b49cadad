/*
 * The simulator's pseudo-random numbers: splitmix64, seeded by --seed, so a
 * run is reproducible. Fast and statistically fine for signals and
 * scheduling; never for secrets (device keys come from core/secret).
 */
#ifndef IOT_SIM_RNG_H
#define IOT_SIM_RNG_H

#include <math.h>
#include <stdint.h>

struct sim_rng {
    uint64_t x;
};

static inline void sim_rng_seed(struct sim_rng *r, uint64_t seed)
{
    r->x = seed;
}

static inline uint64_t sim_rng_next(struct sim_rng *r)
{
    uint64_t z = (r->x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static inline double sim_rng_uniform(struct sim_rng *r)
{
    return (double)(sim_rng_next(r) >> 11) * (1.0 / 9007199254740992.0);
}

/* Uniform in [lo, hi). */
static inline double sim_rng_range(struct sim_rng *r, double lo, double hi)
{
    return lo + (hi - lo) * sim_rng_uniform(r);
}

/* Uniform integer in [0, n); n > 0. The modulo bias is below 2^-40 for n < 2^24. */
static inline uint64_t sim_rng_below(struct sim_rng *r, uint64_t n)
{
    return sim_rng_next(r) % n;
}

/* Standard normal (Box-Muller; one of the pair is discarded, which is fine here). */
static inline double sim_rng_normal(struct sim_rng *r)
{
    double u = 1.0 - sim_rng_uniform(r); /* (0, 1]: log(u) is finite */
    double v = sim_rng_uniform(r);
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

#endif
