"""Packing the executable's VM code and weights into the shared library without LLVM.

TVM's default packer (``ModulePackImportsToLLVM``) builds an LLVM module holding the
serialized imports as one constant array and emits it as an object: the weights exist three
or four times in the compiling process at once (for ResNet-50 export peaked 390 MB above
the build's resident size). Here the serialized bytes go straight to a file, and an
assembler ``.incbin`` puts them into the library under the same symbol: one copy, briefly.
"""

from __future__ import annotations

import os
import platform
from typing import Any

import numpy as np
import tvm_ffi

SYMBOL = "__tvm_ffi__library_bin"
"""Where TVM's module loader looks for the packed imports (``ModulePackImportsToC`` names the
same array)."""


def incbin_available() -> bool:
    """GNU assembler syntax for ELF: Linux hosts (the default C compiler there assembles)."""
    return platform.system() == "Linux"


def pack_imports(module: Any, is_system_lib: bool, prefix: str, workspace_dir: str) -> str:
    """``export_library``'s ``fpack_imports``: an assembly file whose data is the module's
    serialized imports, the same bytes ``ModulePackImportsToC`` would spell out in C."""
    if is_system_lib or prefix:
        raise ValueError("nnxc packs imports for shared libraries only, not system libraries")
    blob = tvm_ffi.get_global_func("runtime.ModulePackImportsToTensor")(module)
    data = os.path.join(workspace_dir, "devc.bin")
    np.from_dlpack(blob).tofile(data)  # a view of TVM's buffer: no copy in this process
    del blob
    asm = os.path.join(workspace_dir, "devc.S")
    with open(asm, "w") as f:
        f.write(
            f'\t.section .rodata.{SYMBOL},"a"\n'
            f"\t.globl {SYMBOL}\n"
            f"\t.type {SYMBOL}, %object\n"
            "\t.p2align 4\n"
            f"{SYMBOL}:\n"
            f'\t.incbin "{data}"\n'
            f"\t.size {SYMBOL}, .-{SYMBOL}\n"
            '\t.section .note.GNU-stack,"",%progbits\n'
        )
    return asm
