"""Schedule rules, one package per target family: ``cpu/`` (LLVM) and ``gpu/`` (CUDA).

Both packages answer the same two questions for the pipeline (``pipeline.py``): which
``dlight`` rules schedule each fused PrimFunc (``cpu_rules()``, ``gpu_rules(target)``), and,
for the CPU, which ops are legalized into the forms its rules want (``cpu.conv_layout``).
``unit_reductions`` is shared: a legalization-stage pass every target runs before fusion, and
the check the rules use to refuse what it could not fold.
"""
