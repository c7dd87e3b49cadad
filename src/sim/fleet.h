/*
 * The simulated fleet: devices, their sensors, keys and signal generators.
 * Two ways to get one:
 *  - sim_fleet_provision: new devices and sensors written through the store
 *    interface (like `db demo`), with random keys and, optionally, the
 *    warning/critical thresholds of each sensor's signal profile;
 *  - sim_fleet_from_api: existing devices named by the caller; their sensors
 *    are listed with GET /ingest/devices/{uuid}/status and X-API-Key.
 */
#ifndef IOT_SIM_FLEET_H
#define IOT_SIM_FLEET_H

#include "sim/rng.h"
#include "sim/signal.h"
#include "store/store.h"

#include <stddef.h>
#include <stdint.h>

#define SIM_KEY_MAX    256
#define SIM_PREFIX_MAX 40 /* leaves room for "-d000000-s000" within STORE_UUID_MAX */

struct sim_sensor {
    char uuid[STORE_UUID_MAX + 1];
    struct sim_signal sig;
    double last_value; /* last value sent (late readings repeat it, with noise) */
    int64_t last_ts;   /* time of the newest reading sent; 0 = none yet */
};

struct sim_device {
    char uuid[STORE_UUID_MAX + 1];
    char key[SIM_KEY_MAX + 1]; /* device key; empty when the fleet uses the API key */
    struct sim_sensor *sensors;
    size_t nsensors;
    size_t next_sensor; /* round robin over the sensors */
    void *headers;      /* the caller's per-device request headers (opaque here) */
};

struct sim_fleet {
    struct sim_device *dev;
    size_t ndev;
    size_t provisioned; /* dev[0..provisioned) were created by sim_fleet_provision */
};

/*
 * Allocates ndev devices of nsensors sensors each (nsensors may be 0 when
 * the sensors are filled in later). The caller owns *out: sim_fleet_destroy.
 */
int sim_fleet_create(size_t ndev, size_t nsensors, struct sim_fleet **out);
/* Frees the fleet; accepts NULL. Does not touch dev[i].headers. */
void sim_fleet_destroy(struct sim_fleet *f);

/*
 * Creates the devices "<prefix>-dNNNNNN" and sensors "<prefix>-dNNNNNN-sNNN"
 * (one transaction per device), each device with a new random key, and, if
 * thresholds, each sensor's warning and critical thresholds from its
 * profile. Signals are initialised from r. IOT_EEXIST if a device of that
 * prefix already exists (keys cannot be recovered: choose another prefix).
 * Other store errors as returned; a one-line reason in err. Also on failure,
 * f->provisioned counts the devices it created (the first ones of f->dev).
 */
int sim_fleet_provision(struct sim_fleet *f, struct store *s, const char *prefix, int thresholds,
                        struct sim_rng *r, char *err, size_t errlen);

/*
 * Builds a fleet from existing device uuids (uuids[0..n)): for each, lists
 * its sensors through the status endpoint at base_url with the API key,
 * keeping at most max_sensors of them (0 = all). Sensor i gets profile i.
 * IOT_ENOTFOUND if a device is unknown or has no sensor, IOT_EUNAVAIL if
 * the gateway cannot be reached, IOT_EINVAL for any other answer; err says
 * which device. The caller owns *out.
 */
int sim_fleet_from_api(const char *base_url, const char *api_key, const char *const *uuids,
                       size_t n, size_t max_sensors, long timeout_ms, struct sim_rng *r,
                       struct sim_fleet **out, char *err, size_t errlen);

#endif
