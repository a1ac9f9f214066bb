###START-CONF
##{
##"object_name": "probe",
##"object_poi": "test-probe",
##"auto-load": true,
##"group": "LAB",
##"parameters": [ {"name": "", "type": "Internal", "state": "PROBE"} ],
##"return": [ {"name": "", "type": "Internal", "state": "PROBE_OUT"} ]
##}
##END-CONF

from pumpkin import *


class probe(PmkSeed.Seed):
    """Answers a probe packet with this node's statistics, in a new lineage (the system/tracer pattern)."""

    def __init__(self, context, poi=None):
        PmkSeed.Seed.__init__(self, context, poi)
        self.context = context
        self.group = context.get_group()

    def run(self, pkt, data):
        aux = int(pkt[0]["aux"])
        if aux & TRACER_BIT:
            stat = self.context.get_stat()
            self.fork_dispatch(pkt, stat, "PROBE_OUT")
