"""MIL recurrent ops: lstm, gru, rnn."""

from __future__ import annotations
