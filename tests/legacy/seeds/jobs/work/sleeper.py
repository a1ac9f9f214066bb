###START-CONF
##{
##"object_name": "sleeper",
##"object_poi": "test-sleeper",
##"auto-load": true,
##"parameters": [ {"name": "job", "description": "seconds|,|label", "type": "String", "state": "JOB"} ],
##"return": [ {"name": "slept", "description": "what was done", "type": "String", "state": "SLEPT"} ]
##}
##END-CONF

from pumpkin import *


class sleeper(PmkSeed.Seed):
    """Sleeps as long as the job's first input says, then reports on the second (the mthreads pattern)."""

    def __init__(self, context, poi=None):
        PmkSeed.Seed.__init__(self, context, poi)
        self.node = context.getUuid()
        self.wd = context.getWorkingDir()

    def run(self, pkt, job):
        seconds = float(job[0])
        started = time.time()
        time.sleep(seconds)
        took = time.time() - started
        ttl = pkt[0]["ttl"]
        self.logger.info("slept %s for %s", job[0], job[1])
        line = "%s slept %.1f of %s s (ttl %s) on %s" % (job[1], took, job[0], ttl, self.node)
        sent = self.dispatch(pkt, line, "SLEPT")
        assert sent[0]["last_func"] == "sleeper" and sent[-1]["stag"].endswith(":SLEPT")
