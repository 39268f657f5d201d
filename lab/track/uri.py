"""Tracking URIs: which store, where its artifacts go, and masking passwords wherever a URI
may be printed or saved."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SQLITE_PREFIX = "sqlite:///"


def is_sqlite(uri: str) -> bool:
    return uri.startswith(SQLITE_PREFIX)


def is_http(uri: str) -> bool:
    return uri.startswith(("http://", "https://"))


def sqlite_path(uri: str) -> Path | None:
    """Database file of a ``sqlite:///`` URI (None for in-memory ``sqlite://``)."""
    if not is_sqlite(uri):
        return None
    rest = uri[len(SQLITE_PREFIX) :].split("?", 1)[0]
    if not rest or rest == ":memory:":
        return None
    return Path(rest)


def resolve_tracking_uri(configured: str | None, repo_root: Path) -> str:
    """``configured``, else ``$MLFLOW_TRACKING_URI``, else ``sqlite:///<repo_root>/mlruns.db``.

    A relative ``sqlite:///x.db`` is made absolute against ``repo_root`` so every job,
    whatever its working directory, writes to the same store.
    """
    repo_root = Path(repo_root).expanduser().resolve()
    uri = (configured or "").strip() or os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if not uri:
        return SQLITE_PREFIX + str(repo_root / "mlruns.db")
    path = sqlite_path(uri)
    if path is not None and not path.is_absolute():
        query = uri[len(SQLITE_PREFIX) :].partition("?")[2]
        uri = SQLITE_PREFIX + str((repo_root / path.expanduser()).resolve())
        if query:
            uri += "?" + query
    return uri


def default_artifact_root(repo_root: Path) -> str:
    """File URI of ``<repo_root>/mlartifacts`` (artifact root for sqlite stores)."""
    return (Path(repo_root).expanduser().resolve() / "mlartifacts").as_uri()


def artifact_root_for(uri: str) -> str | None:
    """Artifact root to give new experiments in store ``uri``.

    For a sqlite store: ``mlartifacts/`` next to the database file (the repo root for
    the default store), so artifacts never land in the current directory. For any other
    store: None (a tracking server decides where artifacts go).
    """
    path = sqlite_path(uri)
    if path is None:
        return None
    return default_artifact_root(path.parent)


# the password runs to the last "@" before the host (an unencoded "@" in it is still masked)
# (Hydra's logs escape ":" in override values as "\:")
_USERINFO_RE = re.compile(r"(?P<pre>[A-Za-z][A-Za-z0-9+.\-]*\\?://[^:/@\s\\]*\\?:)[^/\s]*@")
_SECRET_QUERY_RE = re.compile(
    r"(?P<pre>[?&;](?:password|passwd|pwd|token|secret|access_token|api_key)=)[^&;\s]*",
    re.IGNORECASE,
)


def mask_uri(uri: str) -> str:
    """Replace the password in ``scheme://user:pass@host/...`` (and ``?password=``) by ***."""
    if not isinstance(uri, str) or "://" not in uri:
        return uri
    uri = _USERINFO_RE.sub(r"\g<pre>***@", uri)
    return _SECRET_QUERY_RE.sub(r"\g<pre>***", uri)


def mask_log_records() -> None:
    """Mask URI passwords in every log record of this process (Hydra's, MLflow's, ours).

    A log record factory outlives the handlers Hydra reconfigures for each job. Idempotent.
    """
    base = logging.getLogRecordFactory()
    if getattr(base, "_gradlab_masks_uris", False):
        return

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = base(*args, **kwargs)
        try:
            text = record.getMessage()
        except Exception:  # a broken format string is logging's to report
            return record
        if "://" in text and "@" in text:
            masked = mask_uri(text)
            if masked != text:
                record.msg, record.args = masked, None
        return record

    factory._gradlab_masks_uris = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(factory)


def mask_config(cfg: Any) -> Any:
    """A copy of a nested dict/list config with every string passed through :func:`mask_uri`
    (what is written to ``config.yaml`` artifacts)."""
    if isinstance(cfg, Mapping):
        return {k: mask_config(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return [mask_config(v) for v in cfg]
    return mask_uri(cfg) if isinstance(cfg, str) else cfg


def truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - 3] + "..."


def one_line(exc: BaseException | str, limit: int = 500) -> str:
    """First non-empty line of an error (or text), passwords masked, at most ``limit`` chars."""
    text = exc if isinstance(exc, str) else (str(exc) or type(exc).__name__)
    text = text.split("[SQL:", 1)[0].split("(Background on this error", 1)[0]  # SQLAlchemy's
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return truncate(mask_uri(lines[0]) if lines else "", limit)
