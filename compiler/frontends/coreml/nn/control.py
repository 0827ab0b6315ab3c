"""NeuralNetwork control flow through IR regions: branch, loop (with loopBreak/loopContinue), copy."""

from __future__ import annotations
