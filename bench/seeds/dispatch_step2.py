###START-CONF
##{
##"object_name": "Step2",
##"object_poi": "bench-step2",
##"auto-load": true,
##"parameters": [{"name": "data", "description": "a bench packet", "required": true,
##                 "type": "Bench", "state": "ONE"}],
##"return": [{"name": "data", "description": "the same, one hop more", "required": true,
##             "type": "Bench", "state": "TWO"}]
##}
##END-CONF

# Benchmark transform 2 in the original Pumpkin's format: what step2.py does, with dispatch (threaded, as every
# original-format seed).

from pumpkin import *


class Step2(PmkSeed.Seed):
    def __init__(self, context, poi=None):
        PmkSeed.Seed.__init__(self, context, poi)

    def run(self, pkt, data):
        data["hops"] = data.get("hops", 0) + 1
        self.dispatch(pkt, data, "TWO")
