#!/usr/bin/env python3
"""
Turns the JSON packet bodies of bench/gen_bodies.sh into InfluxDB line
protocol bodies for the InfluxDB and VictoriaMetrics peers: one packet, one
request, one line per reading, the same values in the same order.

Usage: lineproto.py IN.tsv OUT.tsv
  IN   HEADER<TAB>KEY<TAB>JSON_BODY per line (iot-ingest sim --emit)
  OUT  -<TAB>-<TAB>BODY per line, where BODY's lines are joined by the two
       characters backslash and n (bench/packets.lua with BENCH_BODY_NL=1
       turns them back into newlines; the header column "-" sends no key)

A line: readings,device=<device_uuid>,sensor=<sensor_uuid> value=<float>
No timestamp, like the JSON bodies: the server stamps each write.
"""

import json
import sys


def main():
    src, dst = sys.argv[1], sys.argv[2]
    n = 0
    with open(src) as f, open(dst, "w") as out:
        for line in f:
            parts = line.rstrip("\n").split("\t", 2)
            if len(parts) != 3:
                continue
            p = json.loads(parts[2])
            lines = [f"readings,device={p['device_uuid']},sensor={r['sensor_uuid']} "
                     f"value={float(r['value'])!r}" for r in p["readings"]]
            out.write("-\t-\t" + "\\n".join(lines) + "\n")
            n += 1
    if n == 0:
        sys.exit(f"lineproto: no body in {src}")


if __name__ == "__main__":
    main()
