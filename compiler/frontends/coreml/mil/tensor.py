"""MIL ops that move data: reshapes, transposes, concat/split/stack/tile, slices, pads, gather and
scatter families, select, band_part, shape/fill/range."""

from __future__ import annotations
