###START-CONF
##{
##"object_name": "probe_collector",
##"object_poi": "test-probe-collector",
##"auto-load": true,
##"group": "LAB",
##"parameters": [ {"name": "", "type": "Internal", "state": "PROBE_OUT"} ],
##"return": [ {"name": "", "type": "Internal", "state": "PROBE"} ]
##}
##END-CONF

from pumpkin import *


class probe_collector(PmkSeed.Seed):
    def __init__(self, context, poi=None):
        PmkSeed.Seed.__init__(self, context, poi)

    def run(self, pkt, data):
        stat = json.loads(data[0])
        host = stat[0]["host_id"]
        self.logger.info("Received trace: " + data[0])
        seeds = len(stat[1])
        print("probe answered by %s in group %s: %d seed(s), ttl %s" % (host, self.get_group(), seeds, pkt[0]["ttl"]))
