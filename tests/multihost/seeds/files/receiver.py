###START-CONF
##{
##"object_name": "receiver",
##"object_poi": "files-receiver-1",
##"auto-load": true,
##"parameters": [
##                  {
##                      "name": "data",
##                      "description": "file data",
##                      "required": true,
##                      "type": "DataFile",
##                      "state" : "PRE_PROC"
##                  }
## ],
##"return": [ ] }
##END-CONF

# A receiver in the original Pumpkin's format: data is a file:// URL on this host; prints what the file holds.

from pumpkin import *


class receiver(PmkSeed.Seed):
    def __init__(self, context, poi=None):
        PmkSeed.Seed.__init__(self, context, poi)

    def run(self, pkt, data):
        if data.startswith("file://"):
            apath = data[len("file://") :]
            with open(apath) as f:
                s = f.read()
            print("FILE DATA FROM: " + data + ": " + s, flush=True)
        else:
            print("NON FILE DATA: " + str(data), flush=True)
