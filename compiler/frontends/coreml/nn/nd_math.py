"""The ND layers (spec >= 4) that compute: broadcastable binaries, unary math, comparisons and
logic, reductions, softmaxND, batchedMatmul, topK/argMax/argMin/argSort, cumSum, oneHot, band
ops, non-maximum suppression."""

from __future__ import annotations
