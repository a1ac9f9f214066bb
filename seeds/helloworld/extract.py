###START-CONF
##{
##"object_name": "extract",
##"object_poi": "my-extract-1234",
##"parameters": [ {
##                  "name": "greeting",
##                  "description": "a greeting",
##                  "required": true,
##                  "type": "String",
##                  "state" : "GREETING"
##              } ],
##"return": []
##}
##END-CONF

# An extractor: prints each greeting that reaches it.

from pumpkin import *


class extract(PmkSeed.Seed):
    def __init__(self, context, poi=None):
        PmkSeed.Seed.__init__(self, context, poi)

    def run(self, pkt, greeting):
        print("Greeting: " + str(greeting))
