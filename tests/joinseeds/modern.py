"""The same in the modern API: split/merge (word lengths) and an AND-join (consumes="A&B")."""

from pumpkin import Seed


class Lengths(Seed):
    """Split a sentence into words, count each word's letters on any replica, merge the counts."""

    consumes = "Text:SENTENCE"
    emits = "Text:LENGTHS"

    def split(self, sentence):
        return sentence.split()

    def run(self, word):
        return len(word)

    def merge(self, lengths):
        return lengths


class Pair(Seed):
    """Join a question and its answer of one lineage."""

    consumes = "Text:QUESTION&ANSWER"
    emits = "Text:PAIRED"

    def run(self, both):
        return f"{both['QUESTION']} {both['ANSWER']}"


class Show(Seed):
    consumes = "Text:LENGTHS|PAIRED"

    def run(self, data):
        print(f"SHOW: {data}", flush=True)
