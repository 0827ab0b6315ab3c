"""Windowed NeuralNetwork layers: convolution (and deconvolution), pooling, padding, up- and down-
sampling, crops, their 3-D forms."""

from __future__ import annotations
