"""The numpy interpreter over the core op definitions: the oracle of the tests."""

from .interpreter import run_graph

__all__ = ["run_graph"]
