###START-CONF
##{
##"object_name": "Step1",
##"object_poi": "bench-step1",
##"auto-load": true,
##"parameters": [{"name": "data", "description": "a bench packet", "required": true,
##                 "type": "Bench", "state": "RAW"}],
##"return": [{"name": "data", "description": "the same, one hop more", "required": true,
##             "type": "Bench", "state": "ONE"}]
##}
##END-CONF

# Benchmark transform 1 in the original Pumpkin's format: what step1.py does, with dispatch (threaded, as every
# original-format seed).

from pumpkin import *


class Step1(PmkSeed.Seed):
    def __init__(self, context, poi=None):
        PmkSeed.Seed.__init__(self, context, poi)

    def run(self, pkt, data):
        data["hops"] = data.get("hops", 0) + 1
        self.dispatch(pkt, data, "ONE")
