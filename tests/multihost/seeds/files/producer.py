###START-CONF
##{
##"object_name": "producer",
##"object_poi": "files-producer-1",
##"auto-load": true,
##"parameters": [ ],
##"return": [
##              {
##                      "name": "data",
##                      "description": "file data",
##                      "required": true,
##                      "type": "DataFile",
##                      "state" : "PRE_PROC"
##                }
##          ] }
##END-CONF

# A producer in the original Pumpkin's format (as its filemessage example): writes a file and dispatches its
# file:// URL. Where it writes: FILES_LEGACY_DIR.

import os

from pumpkin import *


class producer(PmkSeed.Seed):
    def __init__(self, context, poi=None):
        PmkSeed.Seed.__init__(self, context, poi)

    def run(self, pkt):
        full_wfn = os.path.join(os.environ["FILES_LEGACY_DIR"], "testfile.txt")
        with open(full_wfn, "w") as f:
            f.write("some data for the receiver")
        self.dispatch(pkt, "file://" + full_wfn, "PRE_PROC")
