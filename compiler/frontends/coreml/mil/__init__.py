"""ML Programs: MIL operations converted one by one (``registry.OPS``), by family."""
