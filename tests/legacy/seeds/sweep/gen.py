###START-CONF
##{
##"object_name": "gen",
##"object_poi": "test-gen",
##"group": "public",
##"parameters": [ {"name": "param", "description": "file,count", "type": "StringCSV", "state": "SWEEP"} ],
##"return": [ {"name": "sample", "description": "a tarred sample", "type": "StringFileTar", "state": "SAMPLE"} ]
##}
##END-CONF

from pumpkin import PmkSeed


class gen(PmkSeed.Seed):
    """Reads a parameter file from the taskdir (found in the working directory) and sends one tarred sample
    per value (the sa/GenInput pattern)."""

    def __init__(self, context, poi=None):
        PmkSeed.Seed.__init__(self, context, poi)
        self.wd = self.context.getWorkingDir()

    def run(self, pkt, param):
        name = param.split(",")[0]
        count = int(param.split(",")[1])
        with open(self.wd + name) as f:
            values = f.read().split()[:count]
        for i, value in enumerate(values):
            folder = "/out_data/%s-%s-%d" % (self.get_ship_id(pkt), self.get_cont_id(pkt), i)
            with open(self.wd + "sample.txt", "w") as f:
                f.write(value)
            self.move_data_file("sample.txt", folder)
            tar = self._tar_to_gz(folder, suffix=self.get_name())
            self.logger.info("sample %s in %s", value, tar)
            self.fork_dispatch(pkt, "file://" + tar, "SAMPLE")
