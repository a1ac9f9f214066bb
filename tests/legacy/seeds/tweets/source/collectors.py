###START-CONF
##{
##"object_name": "collectenglish",
##"object_poi": "test-collect",
##"auto-load": true,
##"parameters": [ {"name": "tweet", "type": "TweetString", "state": "ENGLISH|QUESTION"} ],
##"return": []
##}
##END-CONF

import re

from pumpkin import PmkSeed


class collectenglish(PmkSeed.Seed):
    def __init__(self, context, poi=None):
        PmkSeed.Seed.__init__(self, context, poi)
        self.count = 0

    def run(self, pkt, tweet):
        self.count += 1
        text = re.search(r"W(\s+)(.*)(\n)", tweet, re.S).group(2)
        print("collected %s: %s" % (self.get_last_stag(pkt), text.strip()))
