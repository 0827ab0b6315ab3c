"""Code generators for the nnxc IR: ``tvm`` (LLVM, CUDA) and ``reference`` (numpy)."""
