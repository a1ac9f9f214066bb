###START-CONF
##{
##"object_name": "inject",
##"object_poi": "my-inject-1234",
##"auto-load": true,
##"parameters": [ ],
##"return": [
##              {
##                      "name": "name",
##                      "description": "a name to greet",
##                      "required": true,
##                      "type": "String",
##                      "state" : "UNGREETED"
##              }
##          ] }
##END-CONF

# A seed in the original Pumpkin's format: an injector (no parameters) that puts "World" into the network.

from pumpkin import *


class inject(PmkSeed.Seed):
    def __init__(self, context, poi=None):
        PmkSeed.Seed.__init__(self, context, poi)

    def run(self, pkt):
        self.dispatch(pkt, "World", "UNGREETED")
