"""Performance tunables, one place for every kernel set (numbers here change speed, never results
beyond float round-off)."""

# Below this many multiply-adds a matmul runs as an inlined loop nest; above it goes to BLAS,
# whose per-call overhead (~1 us) dominates tiny layers such as the lecture's 2-wide net.
BLAS_MIN_MACS = 16384

# CUDA launch geometry: threads per block for elementwise kernels and the tile edge of the
# shared-memory matmul kernels (TILE x TILE threads per block).
CUDA_THREADS = 128
CUDA_TILE = 16
# Parameters each thread of the fused optimizer kernel updates (sets its grid: more blocks for
# wide layers, one block for tiny ones).
CUDA_PARAMS_PER_THREAD = 4
# The CUDA simulator (NUMBA_ENABLE_CUDASIM=1) runs every GPU thread as a Python thread, and a
# block's cost grows faster than its thread count: small blocks keep simulator tests fast.
# Threads per block must be >= 1 (any count; reductions do not assume a power of two).
CUDA_SIM_THREADS = 8
CUDA_SIM_TILE = 4
