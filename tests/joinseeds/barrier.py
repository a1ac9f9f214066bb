"""An AND-join written as for the original Pumpkin, which called ``run`` once per packet and left the waiting to
the seed: ``run(self, pkt, data)`` keeps each part by ship until both states are there (as tracula did)."""

###START-CONF
##{
##"object_name": "barrier",
##"object_poi": "barrier-0001",
##"auto-load": true,
##"parameters": [{"name": "pair", "description": "one half at a time", "required": true, "type": "Text",
##                "state": "LEFT&RIGHT"}],
##"return": []
##}
##END-CONF

from pumpkin import *


class barrier(PmkSeed.Seed):
    def __init__(self, context, poi=None):
        PmkSeed.Seed.__init__(self, context, poi)
        self.halves = {}

    def run(self, pkt, data):
        ship = self.get_ship_id(pkt)
        print("HALF: " + ship + " " + self.get_last_stag(pkt) + " " + data, flush=True)
        halves = self.halves.setdefault(ship, {})
        halves[self.get_last_stag(pkt)] = data
        if len(halves) == 2:
            del self.halves[ship]
            print("BARRIER: " + ship + " " + halves["LEFT"] + "+" + halves["RIGHT"], flush=True)
            self.finalize(pkt, msg=ship)
