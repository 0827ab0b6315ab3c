/* A stand-in for the NVIDIA driver's libcuda.so.1, for building CUDA code where no driver is
 * installed (developer machines and CI without a GPU). TVM's libtvm_runtime_cuda.so lists
 * libcuda.so.1 as a needed library, and TVM builds CUDA kernels into a binary module only
 * when that library is loaded; loading needs only these symbols to exist (the ones the
 * library imports from the driver; check with `nm -D --undefined-only libtvm_runtime_cuda.so
 * | grep ' cu'`). Nothing runs through them: each returns 34 (CUDA_ERROR_STUB_LIBRARY), so
 * an accidental call fails cleanly.
 *
 * Built on demand by backends/tvm/cuda/toolchain.py (gcc -shared -fPIC
 * -Wl,-soname,libcuda.so.1) into the per-user cache, and loaded only when the real
 * libcuda.so.1 cannot be. */

#define CUDA_ERROR_STUB_LIBRARY 34

#define STUB(name) \
    int name(void) { return CUDA_ERROR_STUB_LIBRARY; }

STUB(cuDeviceGetName)
STUB(cuFuncSetAttribute)
STUB(cuGetErrorName)
STUB(cuGetErrorString)
STUB(cuLaunchKernelEx)
STUB(cuModuleGetFunction)
STUB(cuModuleLoadData)
STUB(cuModuleUnload)
STUB(cuTensorMapEncodeTiled)
