###START-CONF
##{
##"object_name": "model",
##"object_poi": "test-model",
##"group": "public",
##"parameters": [ {"name": "tar", "type": "StringFileTar", "state": "SAMPLE"} ],
##"return": [ {"name": "result", "type": "String", "state": "RESULT"} ]
##}
##END-CONF

from pumpkin import *


class model(PmkSeed.Seed):
    """Unpacks a sample and runs the taskdir's model.sh on it in the working directory (the sa/StubModel pattern)."""

    def __init__(self, context, poi=None):
        PmkSeed.Seed.__init__(self, context, poi)
        self.wd = self.context.getWorkingDir()
        self.script = self.wd + "model.sh"

    def run(self, pkt, tarfile):
        if not self.ifFile(tarfile):
            raise ValueError("not a file: " + tarfile)
        prot, path, name, apath, rpath = self.fileparts(tarfile)
        dest = self.wd + "runs/" + self.get_cont_id(pkt) + "/"
        self._ensure_dir(dest)
        members = self._untar_to_wd(apath, destination=dest)
        sample = [m.name for m in members if m.name.endswith("sample.txt")][0]
        with open(dest + sample) as f:
            value = f.read().strip()
        out = sp.check_output([self.script, value], cwd=self.wd, text=True).strip()
        if self.dispatch(pkt, value + " -> " + out, "RESULT") is None:
            print("model: stop_func reached for " + value)
