"""What the kernel families (`conv_blocked`, `conv_partial_sums`, `winograd`, ...) and their schedules
share: the channel block, where a tile's accumulators live, and the core count parallel loops are split for."""

# The per-tile accumulators: "global" scope, because TVM keeps a small constant-size allocation
# on the stack (where LLVM promotes it to registers) only for global scope; a "local" one is
# a TVMBackendAllocWorkspace call per parallel iteration (measured: ~10% of ResNet-18's cycles).
ACCUMULATOR_SCOPE = "global"
BLOCK = 8  # output channels per vector block: one AVX2 register of float32/int32, two NEON registers
PARALLEL_GRAIN = 4  # the boards' core count: a parallel loop whose iterations are a multiple of it splits evenly
