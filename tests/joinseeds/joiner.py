"""An AND-join in the original Pumpkin's format (as tracula's MRI_RAW&DTI_RAW): runs once per lineage, when
data of that lineage has arrived in both LEFT and RIGHT, with one argument per state."""

###START-CONF
##{
##"object_name": "joiner",
##"object_poi": "joiner-0001",
##"auto-load": true,
##"parameters": [{"name": "pair", "description": "both halves", "required": true, "type": "Text",
##                "state": "LEFT&RIGHT"}],
##"return": []
##}
##END-CONF

from pumpkin import *


class joiner(PmkSeed.Seed):
    def run(self, pkt, left, right):
        print("JOINED: " + left + "+" + right + " on " + self.context.getUuid(), flush=True)
