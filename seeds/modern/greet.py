"""The hello-world greet step written with the modern API; a drop-in replacement for the legacy greet.py."""

from pumpkin import Seed


class Greet(Seed):
    """Turn a name into a greeting."""

    name = "greet"
    consumes = "String:UNGREETED"
    emits = "String:GREETING"

    def run(self, name: str) -> str:
        return f"Hello {name}"
