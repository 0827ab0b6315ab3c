"""CUDA code generation: the toolkit and TVM's CUDA runtime (``toolchain``), the multi-arch
fatbin build (``codegen``), and reading what CUDA code a library holds (``fatbin``)."""
