"""A sink in the original Pumpkin's format: prints what the splitter merged."""

###START-CONF
##{
##"object_name": "collector",
##"object_poi": "collector-0001",
##"auto-load": true,
##"parameters": [{"name": "text", "description": "text", "required": true, "type": "Text", "state": "PROCESSED"}],
##"return": []
##}
##END-CONF

from pumpkin import *


class collector(PmkSeed.Seed):
    def run(self, pkt, data):
        print("MERGED: " + data, flush=True)
