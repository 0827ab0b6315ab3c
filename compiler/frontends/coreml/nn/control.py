"""NeuralNetwork control flow through IR regions: branch, loop (loopBreak, loopContinue), copy."""

from __future__ import annotations
