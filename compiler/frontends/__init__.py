"""Frontends: model file -> nnxc IR. Each parses its format with the format's own library."""
