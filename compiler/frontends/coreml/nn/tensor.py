"""The legacy (spec <= 3) tensor and arithmetic layers on the trailing [C, H, W] axes: concat,
softmax, reshape, flatten, permute, add/multiply/average/max/min, unary, loadConstant, reduce,
split, slice, reorganizeData, sequenceRepeat, dot."""

from __future__ import annotations
