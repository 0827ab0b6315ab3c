"""The ND layers (spec >= 4) that move data: gather/scatter families, concatND/splitND/slices,
reshape families, getShape, loadConstantND, fill/broadcastTo/range, tile, stack, transpose."""

from __future__ import annotations
