"""MIL ops of networks: convolution, linear algebra (linear, matmul, einsum), normalizations,
pooling, up- and re-sampling, pixel shuffles."""

from __future__ import annotations
