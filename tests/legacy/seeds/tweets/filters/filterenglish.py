###START-CONF
##{
##"object_name": "filterenglish",
##"object_poi": "test-filterenglish",
##"auto-load": true,
##"parameters": [ {"name": "tweet", "type": "TweetString", "state": "RAW"} ],
##"return": [ {"name": "tweet", "type": "TweetString", "state": "ENGLISH|NONENGLISH"} ]
##}
##END-CONF

import re
import sys

from pumpkin import PmkSeed


class filterenglish(PmkSeed.Seed):
    """English or not, by stop words from the taskdir's stopwords/ folder (the tweeter nltk_data pattern)."""

    def __init__(self, context, poi=None):
        PmkSeed.Seed.__init__(self, context, poi)

    def on_load(self):
        wd = self.context.getWorkingDir()
        self.words = {}
        for lang in ("english", "dutch", "french"):
            with open(wd + "stopwords/" + lang) as f:
                self.words[lang] = set(f.read().split())

    def run(self, pkt, data):
        try:
            tweet = data
            m = re.search(r"W(\s+)(.*)(\n)", tweet, re.S)
            if m:
                words = set(m.group(2).lower().split())
                best = max(self.words, key=lambda lang: len(words & self.words[lang]))
                self.dispatch(pkt, tweet, "ENGLISH" if best == "english" else "NONENGLISH")
        except PmkSeed.UndeclaredState:
            raise
        except:  # noqa: E722 - as the original's filters did
            self.logger.error("Unexpected error:" + str(sys.exc_info()[0]))
