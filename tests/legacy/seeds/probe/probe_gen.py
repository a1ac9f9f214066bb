"""Makes a probe packet file from probe.pkt: a script for people, not a seed (it must never be run by pmk)."""

import os
import uuid

with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "probe_gen.ran"), "w") as marker:
    marker.write("this script was run\n")

with open("probe.pkt") as f:
    data = f.read().replace("CONT_ID", str(uuid.uuid1()).split("-")[0])
