###START-CONF
##{
##"object_name": "report",
##"object_poi": "test-report",
##"auto-load": true,
##"parameters": [ {"name": "slept", "description": "what was done", "type": "String", "state": "SLEPT"} ],
##"return": [ ]
##}
##END-CONF

from pumpkin import *


class report(PmkSeed.Seed):
    def __init__(self, context, poi=None):
        PmkSeed.Seed.__init__(self, context, poi)

    def run(self, pkt, line):
        print("report: " + line + " [" + self.get_last_stag(pkt) + "]")
