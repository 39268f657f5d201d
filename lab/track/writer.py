"""The metric writer: a background thread that turns metric blocks into ``log_batch`` calls.

Training never waits for the store. Values wait in a bounded queue; transient store errors
are retried with backoff; once the retry budget is spent the store is marked down and probed
again now and then, and what could not be written is counted (``n_failed``): the run
directory holds every value anyway, and ``python -m lab.sync`` copies the missing ones later.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from .params import MAX_METRICS_PER_BATCH
from .store import RETRY_BUDGET_S, is_transient, retry
from .uri import one_line

if TYPE_CHECKING:
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

log = logging.getLogger(__name__)

#: values held for the store at most (about 100 bytes each); more are left to `lab.sync`
MAX_QUEUED_VALUES = 1_000_000
#: once the store is down, how often a batch is tried again
PROBE_INTERVAL_S = 5.0


class MetricWriter:
    """Background thread that writes metric blocks with ``log_batch``.

    ``put`` copies the arrays and returns at once. The thread turns them into
    :class:`mlflow.entities.Metric` objects, skips non-finite values, merges what is
    queued into calls of at most 1000 metrics, and retries transient store errors
    (e.g. sqlite "database is locked") with backoff for up to ``retry_budget_s``.
    If the store still fails, the error is kept, the unsent values are counted in
    ``n_failed`` and :meth:`close` re-raises it. Attributes for benchmarks:
    ``n_written`` (values stored), ``n_skipped`` (non-finite values),
    ``seconds_in_store`` (time inside ``log_batch``), ``n_calls``.
    """

    def __init__(
        self,
        client: MlflowClient,
        run_id: str,
        batch_size: int = MAX_METRICS_PER_BATCH,
        retry_budget_s: float = RETRY_BUDGET_S,
        max_queued: int = MAX_QUEUED_VALUES,
        fast=None,
    ) -> None:
        if not 1 <= batch_size <= MAX_METRICS_PER_BATCH:
            raise ValueError(f"batch_size must be in 1..{MAX_METRICS_PER_BATCH}, got {batch_size}")
        self.client = client
        self.fast = fast  # a fastsql.SqliteMetrics, or None: MlflowClient.log_batch
        self.run_id = run_id
        self.batch_size = batch_size
        self.retry_budget_s = retry_budget_s
        self.max_queued = max_queued
        self.n_written = 0
        self.n_skipped = 0
        self.n_failed = 0
        self.n_calls = 0
        self.seconds_in_store = 0.0
        self.error: BaseException | None = None
        self._down_at: float | None = None  # when the store was given up on (monotonic)
        self._permanent = False
        self._queued = 0
        self._queue: queue.Queue = queue.Queue()
        self._closed = False
        self._close_lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._loop, name=f"mlflow-writer-{run_id[:8]}", daemon=True
        )
        self._thread.start()

    # -- caller side
    def put(
        self,
        metrics: Mapping[str, np.ndarray],
        steps: np.ndarray,
        timestamp_ms: int | np.ndarray | None = None,
    ) -> None:
        """Queue one block: ``metrics[name][i]`` is the value at ``steps[i]``.

        ``timestamp_ms`` is one int for the block (default: now) or an array aligned
        with ``steps``. The arrays are copied, so callers may reuse their buffers.
        """
        steps_arr = np.array(steps, dtype=np.int64, copy=True).reshape(-1)
        n = steps_arr.shape[0]
        series = {}
        for key, values in metrics.items():
            arr = np.array(values, dtype=np.float64, copy=True).reshape(-1)
            if arr.shape[0] != n:
                raise ValueError(f"metric {key!r} has {arr.shape[0]} values, steps has {n}")
            series[str(key)] = (steps_arr, arr)
        self.put_series(series, timestamp_ms)

    def put_series(self, series: Mapping[str, tuple[np.ndarray, np.ndarray]],
                   timestamp_ms: int | np.ndarray | None = None) -> None:
        """Queue ``{name: (steps, values)}``, each name with its own steps (copied)."""
        if self._closed:
            raise RuntimeError("MetricWriter is closed")
        block = {}
        n_values = 0
        for key, (steps, values) in series.items():
            s = np.array(steps, dtype=np.int64, copy=True).reshape(-1)
            v = np.array(values, dtype=np.float64, copy=True).reshape(-1)
            if s.shape != v.shape:
                raise ValueError(f"metric {key!r} has {v.shape[0]} values, steps has "
                                 f"{s.shape[0]}")
            if v.size:
                block[str(key)] = (s, v)
                n_values += v.size
        if not n_values:
            return
        if timestamp_ms is None:
            ts: int | np.ndarray = int(time.time() * 1000)
        elif np.ndim(timestamp_ms) == 0:
            ts = int(timestamp_ms)
        else:
            ts = np.array(timestamp_ms, dtype=np.int64, copy=True).reshape(-1)
            if any(s.shape[0] != ts.shape[0] for s, _ in block.values()):
                raise ValueError(f"timestamp_ms has {ts.shape[0]} entries, steps has another "
                                 "length")
        if self._queued + n_values > self.max_queued:  # store far behind: the run dir has them
            self.n_failed += n_values
            if self.error is None:
                self.error = RuntimeError(f"more than {self.max_queued} values waiting for "
                                          "the store")
            return
        self._queued += n_values
        self._queue.put((block, ts, n_values))

    def flush(self) -> None:
        """Block until everything queued so far has been written (or has failed)."""
        self._queue.join()

    @property
    def store_down(self) -> bool:
        return self._down_at is not None

    def close(self) -> None:
        """Flush, stop the thread; re-raise a final store error. Idempotent."""
        with self._close_lock:
            if not self._closed:
                self._closed = True
                self._queue.put(None)
                self._thread.join()
                if self.fast is not None:
                    self.fast.close()
        if self.n_failed:
            raise RuntimeError(
                f"MLflow metric logging for run {self.run_id} failed; "
                f"{self.n_failed} values were not stored: {one_line(self.error or 'store down')}"
            ) from self.error

    # -- writer thread
    def _loop(self) -> None:
        pending: list[Metric] = []
        stop = False
        while not stop:
            taken = 0
            try:
                item = self._queue.get()
                taken = 1
                if item is None:
                    stop = True
                else:
                    pending.extend(self._to_metrics(*item))
                # merge whatever else is already queued into full-size calls
                while not stop and len(pending) < self.batch_size:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    taken += 1
                    if item is None:
                        stop = True
                    else:
                        pending.extend(self._to_metrics(*item))
                while len(pending) >= self.batch_size or (pending and (stop or self._idle())):
                    chunk, pending = pending[: self.batch_size], pending[self.batch_size :]
                    self._send(chunk)
            except Exception as e:  # a bug here must not leave flush()/close() hanging
                log.debug("MLflow metric writer for run %s crashed", self.run_id, exc_info=True)
                if self.error is None:
                    self.error = e
                self.n_failed += len(pending)
                pending = []
            finally:
                for _ in range(taken):
                    self._queue.task_done()

    def _idle(self) -> bool:
        return self._queue.empty()

    def _to_metrics(self, block, ts, n_values) -> list[Metric]:
        from mlflow.entities import Metric

        self._queued -= n_values
        out: list[Metric] = []
        per_step_ts = isinstance(ts, np.ndarray)
        ts_list = ts.tolist() if per_step_ts else None
        for key, (steps, values) in block.items():
            finite = np.isfinite(values)
            n_bad = int(values.size - np.count_nonzero(finite))
            self.n_skipped += n_bad
            idx = np.flatnonzero(finite).tolist() if n_bad else range(values.size)
            vals, step_list = values.tolist(), steps.tolist()
            if per_step_ts:
                out.extend(Metric(key, vals[i], ts_list[i], step_list[i]) for i in idx)
            else:
                out.extend(Metric(key, vals[i], ts, step_list[i]) for i in idx)
        return out

    def _send(self, chunk: list[Metric]) -> None:
        budget = self.retry_budget_s
        if self._down_at is not None:  # given up once: one quick try now and then
            if self._permanent or time.monotonic() - self._down_at < PROBE_INTERVAL_S:
                self.n_failed += len(chunk)
                return
            budget = 0.0

        def call() -> None:
            t0 = time.perf_counter()
            try:
                if self.fast is not None:
                    self.fast.log(self.run_id, chunk)
                else:
                    self.client.log_batch(self.run_id, metrics=chunk)
            finally:
                self.seconds_in_store += time.perf_counter() - t0
                self.n_calls += 1

        try:
            retry(call, "log_batch", budget_s=budget)
        except Exception as e:
            log.debug("MLflow metric logging failed for run %s: %s", self.run_id, one_line(e))
            if self.error is None or self._down_at is None:
                self.error = e
            self._down_at = time.monotonic()
            self._permanent = not is_transient(e)
            self.n_failed += len(chunk)
        else:
            self._down_at = None
            self.n_written += len(chunk)
