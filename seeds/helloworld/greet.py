###START-CONF
##{
##"object_name": "greet",
##"object_poi": "my-greet-1234",
##"auto-load" : true,
##"parameters": [ {
##                  "name": "name",
##                  "description": "name to greet",
##                  "required": true,
##                  "type": "String",
##                  "state" : "UNGREETED"
##              } ],
##"return": [
##              {
##                  "name": "greeting",
##                  "description": "a greeting",
##                  "required": true,
##                  "type": "String",
##                  "state" : "GREETING"
##              }
##          ] }
##END-CONF

# A transformer: adds "Hello" to a name. Set "auto-load" to false above to keep it back, and run it on
# another host with `pmk --seed greet.py`.

from pumpkin import *


class greet(PmkSeed.Seed):
    def __init__(self, context, poi=None):
        PmkSeed.Seed.__init__(self, context, poi)

    def run(self, pkt, name):
        greeting = "Hello " + str(name)
        self.dispatch(pkt, greeting, "GREETING")
