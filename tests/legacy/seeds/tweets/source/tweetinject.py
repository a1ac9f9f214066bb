###START-CONF
##{
##"object_name": "tweetinject",
##"object_poi": "test-tweetinject",
##"auto-load": true,
##"parameters": [],
##"return": [ {"name": "tweet", "type": "TweetString", "state": "RAW"} ]
##}
##END-CONF

from os import listdir
from os.path import isfile, join

from pumpkin import *


class tweetinject(PmkSeed.Seed):
    """Sends every tweet of the .txt files in the working directory (T/U/W lines), each in a new lineage."""

    def __init__(self, context, poi=None):
        PmkSeed.Seed.__init__(self, context, poi)

    def run(self, pkt):
        wd = self.context.getWorkingDir()
        for fl in sorted(f for f in listdir(wd) if isfile(join(wd, f)) and f.endswith(".txt")):
            tweet = ""
            with open(wd + fl) as f:
                for line in f:
                    if line.startswith("T"):
                        tweet = line
                    if line.startswith("U"):
                        tweet = tweet + line
                    if line.startswith("W"):
                        self.fork_dispatch(pkt, tweet + line, "RAW")
