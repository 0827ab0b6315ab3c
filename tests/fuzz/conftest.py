import os
import sys

# The fuzzing modules (fuzz_harness, fuzz_mutators, fuzz_seeds) import by module name, as the
# campaign script (tests/fuzz/campaign.py) imports them.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
