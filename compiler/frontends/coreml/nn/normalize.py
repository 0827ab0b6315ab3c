"""NeuralNetwork layers with weights or statistics: innerProduct, batchnorm, scale, bias,
embedding, lrn, l2normalize, mvn, layer and instance normalization."""

from __future__ import annotations
