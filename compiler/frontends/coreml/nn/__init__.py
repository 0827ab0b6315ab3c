"""NeuralNetwork models: layers converted one by one (``registry.LAYERS``), by family."""
