import os
import sys

# passcheck.py (the golden-test helper of the pass tests) is imported by its basename.
sys.path.insert(0, os.path.dirname(__file__))
