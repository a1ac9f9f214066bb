"""A seed in the original Pumpkin's format that splits text into characters, as the original's echo does:
fragments run on any replica, and merge (counting itself, as echo's does) dispatches the whole again."""

###START-CONF
##{
##"object_name": "splitter",
##"object_poi": "splitter-0001",
##"auto-load": true,
##"parameters": [{"name": "text", "description": "text", "required": true, "type": "Text", "state": "RAW"}],
##"return": [{"name": "text", "description": "text", "required": true, "type": "Text", "state": "PROCESSED"}]
##}
##END-CONF

from pumpkin import *


class splitter(PmkSeed.Seed):
    def __init__(self, context, poi=None):
        PmkSeed.Seed.__init__(self, context, poi)
        self.parts = {}
        self.expected = None

    def split(self, pkt, data):
        n = 0
        for n, ch in enumerate(data, 1):
            self.dispatch(self.fragment_pkt(pkt, n), ch, "RAW")
        self.dispatch(self.last_fragment_pkt(pkt, n + 1), str(n), "RAW")
        return True

    def run(self, pkt, data):
        if self.is_last_fragment(pkt):
            self.dispatch(pkt, data, "PROCESSED")
            return
        print("RUN " + self.context.getUuid() + " " + str(self.get_fragment_id(pkt)) + " " + data, flush=True)
        self.dispatch(pkt, data.upper(), "PROCESSED")

    def merge(self, pkt, data):
        if self.is_last_fragment(pkt):
            self.expected = int(data)
        else:
            self.parts[self.get_pkt_fragment_no(pkt)] = self.get_pkt_data(pkt)
        if self.expected is not None and len(self.parts) == self.expected:
            merged = "".join(self.parts[k] for k in sorted(self.parts))
            self.parts, self.expected = {}, None
            self.dispatch(self.clean_header(pkt), merged, "PROCESSED")
