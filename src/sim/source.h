/*
 * The simulator's packet source: the fleet's devices take turns; each turn
 * builds that device's next packet (sim/packet.c), gzips it if asked, and
 * hands it to the load loop with the device's request headers. The same
 * source writes packets to a file for wrk (--emit).
 */
#ifndef IOT_SIM_SOURCE_H
#define IOT_SIM_SOURCE_H

#include "core/buf.h"
#include "sim/fleet.h"
#include "sim/loadgen.h"
#include "sim/packet.h"
#include "sim/rng.h"

#include <stdint.h>
#include <stdio.h>

struct sim_source {
    struct sim_fleet *fleet;             /* borrowed */
    const struct sim_packet_opts *popts; /* borrowed */
    struct sim_rng rng;
    struct sim_packet_stats st; /* what was generated so far */
    size_t next_dev;
    uint64_t seq; /* packets built, for packet ids */
    int gzip;
    struct buf plain;      /* the JSON before gzip */
    struct sim_gzipper gz; /* one encoder for every packet */
};

/*
 * Builds every device's request headers (fleet->dev[i].headers, a curl_slist):
 * JSON content type, no "Expect: 100-continue", the device key (or api_key
 * for devices without one), and Content-Encoding when gzip is on.
 * IOT_ENOMEM on failure; sim_source_fini frees whatever was built.
 */
int sim_source_headers(struct sim_source *s, const char *api_key);

/* The load loop's fill callback (loadgen_fill_fn); ud is the source. */
int sim_source_fill(void *ud, struct loadgen_request *req);

/*
 * Writes n packets, one line each: HEADER<TAB>KEY<TAB>BODY (bodies are not
 * gzipped). 0, IOT_ENOMEM or IOT_EIO.
 */
int sim_source_emit(struct sim_source *s, FILE *fp, uint64_t n, const char *api_key);

/* Frees the headers, buffers and encoder (not the fleet). Accepts a zeroed source. */
void sim_source_fini(struct sim_source *s);

#endif
