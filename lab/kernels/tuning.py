"""Performance tunables, one place for every kernel set (numbers here change speed, never results
beyond float round-off)."""

# Below this many multiply-adds a matmul runs as an inlined loop nest; above it goes to BLAS,
# whose per-call overhead (~1 us) dominates tiny layers such as the lecture's 2-wide net.
BLAS_MIN_MACS = 16384

# CUDA launch geometry: threads per block for elementwise kernels and the tile edge of the
# shared-memory matmul kernels (TILE x TILE threads per block).
CUDA_THREADS = 128
CUDA_TILE = 16
