"""Performance tunables, one place for every kernel set (numbers here change speed, never results
beyond float round-off).

The compiled kernels read these when they are compiled, and numba's cache tracks only the file
of the function it compiled: after editing a number here, delete ``lab/kernels/__pycache__``."""

# --- CPU (lab/kernels/cpu.py); measured with `python -m lab.bench` ------------------------------
# Below this many multiply-adds a matmul runs as an inlined loop nest; above it goes to BLAS,
# whose per-call overhead (~1 us) dominates tiny layers such as the lecture's 2-wide net.
BLAS_MIN_MACS = 16384

# Data-parallel steps (threads.py): a step whose matrix products total at least PARALLEL_MIN_MACS
# multiply-adds is cut into min(PARTS_MAX, m // PART_MIN_COLUMNS) column blocks (at least two),
# more parts than cores, which threads claim one at a time (a descheduled thread holds back one
# small part, not half the step) and run forward/backward with single-threaded BLAS. The parts'
# gradients are added in part order, so results depend on these numbers only through float
# round-off, and never on the number of threads or on timing.
PARALLEL_MIN_MACS = 4_000_000
PART_MIN_COLUMNS = 32
PARTS_MAX = 4
# A team thread waiting for the next step to open (cpu_chunk._team) yields its core this many
# times (~0.3-0.6 us each: long enough for the other thread to finish a 10x64 step, ~100 us),
# then sleeps TEAM_SLEEP_US at a time (usleep: ~100 us with the kernel's timer slack). A
# sleeping thread leaves its core idle, so the scheduler moves a thread that another process
# had descheduled (holding a part) onto it, where yielding would keep that core busy doing
# nothing while the part waits a whole time slice.
TEAM_SPIN_YIELDS = 1000
TEAM_SLEEP_US = 20
# ... and with at least this many parameters ("big"), the gradient sum, norms and update run
# layer by layer on all threads too, in parallel regions of their own each step. Below it the
# thread that finishes a step's last part does them alone: waking the other threads three times
# a step costs more than it saves, and on a busy machine much more (50x64: 208k parameters).
PARALLEL_MIN_PARAMS = 1_000_000
# Big nets' parts have at least this many columns: each part packs every W for BLAS and writes
# a whole gradient that is summed afterwards, costs that grow with the parameters, so fewer,
# wider parts (10x512 at batch 1024: 2 parts, 3-4 % less CPU per step than 4 parts).
BIG_PART_MIN_COLUMNS = 512
# Big nets' update goes through W in blocks of this many parameters, measuring |W|^2 and
# |step|^2 while a block is in cache (cpu_chunk._update_layer): one pass over memory.
UPDATE_BLOCK = 1024
# A chunk that runs as one part keeps BLAS multi-threaded only if some matrix product reaches
# this many multiply-adds: on smaller ones (64-wide layers) BLAS threads lose more to
# synchronization than they gain, and on a busy machine they stall each other.
BLAS_THREADS_MIN_MACS = 16_000_000

# --- CUDA (lab/kernels/cuda.py) -------------------------------------------------------------------
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
