###START-CONF
##{
##"object_name": "collect",
##"object_poi": "test-collect",
##"group": "public",
##"parameters": [ {"name": "result", "type": "String", "state": "RESULT"} ],
##"return": []
##}
##END-CONF

from pumpkin import *


class collect(PmkSeed.Seed):
    def run(self, pkt, result):
        print("sweep: " + result)
