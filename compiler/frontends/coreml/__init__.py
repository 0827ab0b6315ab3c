"""Core ML frontend: NeuralNetwork models (``.mlmodel``, pipelines of them) and ML Programs
(``.mlpackage``), read with coremltools and converted layer by layer (``nn/``) or MIL op by MIL
op (``mil/``) into nnxc's IR."""
