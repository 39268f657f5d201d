"""A written prediction for the CUDA path on a real GPU, per shape of the bench: kernel launches
per step, bytes the kernels of one step move to and from device memory, and the time those imply
under stated assumptions — so the first GPU run can be compared with it (``backend=cuda``).

The model follows ``lab/kernels/cuda_device.py`` kernel by kernel (a step of L layers, widths
n_0..n_L, batch m, s bytes per stored element, Adam):

- ``_forward_layer`` (L launches): reads W, b and the layer's input (layer 1 gathers X's columns
  and stores them), writes Z and A;
- ``_output_layer`` (1): reads Z[L], A[L], Y, writes dZ[L] and two float64 per example;
- ``_backward_layer`` (L): reads dZ and the input for dW = dZ Aᵀ, writes dW and db; below the
  first layer also reads W, Z and A of the layer below and writes its dZ;
- ``_step_stats`` (1): per layer reads dW, db, W, dZ, Z and A twice (two-pass std);
- ``_update_step`` (1): Adam reads theta, grad, v, s and writes theta, v, s.

Each operand is counted once (tiles re-read from cache are not DRAM traffic). Matmul tiles and
accumulators are float64 for every dtype, so float32 nets compute at the float64 rate.
"""

# assumptions of the prediction (a data-centre GPU such as an A100; change them for another)
LAUNCH_US = 4.0  # one dependent kernel launch on one stream, incl. a tiny kernel's run
BANDWIDTH_GBS = 1500.0  # device memory bandwidth
TILED_FP64_GFLOPS = 1000.0  # the simple 16x16 shared-memory tiles in float64 (~10 % of peak)


def launches_per_step(depth):
    """2 L + 3: L forward, 1 output/loss, L backward, 1 statistics, 1 update."""
    return 2 * depth + 3


def bytes_per_step(sizes, m, itemsize):
    """Device-memory bytes one training step's kernels read and write (model above)."""
    L = len(sizes) - 1
    s = itemsize
    total = 0
    for l in range(L):
        n_in, n_out = sizes[l], sizes[l + 1]
        total += (n_out * n_in + n_out + n_in * m + 2 * n_out * m) * s  # forward
        if l == 0:
            total += n_in * m * s  # the gathered batch stored for the backward pass
        total += (n_out * m + n_in * m + n_out * n_in + n_out) * s  # dW, db
        if l > 0:
            total += (n_out * n_in + n_out * m + 3 * n_in * m) * s  # dZ of the layer below
        total += (2 * n_out * n_in + n_out + 4 * n_out * m) * s  # statistics
    n_y = sizes[-1]
    total += 4 * n_y * m * s + 2 * m * 8  # output and loss
    params = sum(sizes[l + 1] * sizes[l] + sizes[l + 1] for l in range(L))
    total += 7 * params * s  # Adam
    return total


def prediction(depth, width, batch, dtype, flops):
    """{launches, bytes, flops, launch_us, memory_us, compute_us, predicted_us, bound}."""
    sizes = [width] * (depth + 1)
    itemsize = 8 if dtype == "float64" else 4
    launches = launches_per_step(depth)
    moved = bytes_per_step(sizes, batch, itemsize)
    times = {"launch": launches * LAUNCH_US, "memory": moved / (BANDWIDTH_GBS * 1e3),
             "compute": flops / (TILED_FP64_GFLOPS * 1e3)}
    bound = max(times, key=times.get)
    return {"launches": launches, "bytes": moved, "flops": flops,
            "launch_us": times["launch"], "memory_us": times["memory"],
            "compute_us": times["compute"], "predicted_us": times[bound], "bound": bound}
