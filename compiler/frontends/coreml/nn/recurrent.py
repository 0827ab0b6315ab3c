"""Recurrent NeuralNetwork layers: simpleRecurrent, gru, uniDirectionalLSTM, biDirectionalLSTM
(rank-5 sequences [Seq, Batch, C, 1, 1])."""

from __future__ import annotations
