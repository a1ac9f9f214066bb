###START-CONF
##{
##"object_name": "filterquestion",
##"object_poi": "test-filterquestion",
##"auto-load": true,
##"parameters": [ {"name": "tweet", "type": "TweetString", "state": "ENGLISH"} ],
##"return": [ {"name": "tweet", "type": "TweetString", "state": "QUESTION"} ]
##}
##END-CONF

import re

from pumpkin import PmkSeed


class filterquestion(PmkSeed.Seed):
    def run(self, pkt, tweet):
        m = re.search(r"W(\s+)(.*)(\n)", tweet, re.S)
        if m and m.group(2).strip().endswith("?"):
            self.fork_dispatch(pkt, tweet, "QUESTION")
