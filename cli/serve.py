"""`kesheng serve`: the HTTP API under uvicorn."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from kesheng.cli.options import MODEL_OPTION, fail


def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (0.0.0.0 for all)."),
    port: int = typer.Option(8000, help="TCP port."),
    workers: Optional[int] = typer.Option(None, help="Worker processes, one model copy each ($KESHENG_WORKERS, default 1)."),
    model_dir: Optional[Path] = MODEL_OPTION,
    feedback_db: Optional[Path] = typer.Option(None, help="SQLite label store for /v1/feedback ($KESHENG_FEEDBACK_DB)."),
):
    """Run the HTTP API (POST /v1/tag, /v1/feedback; GET /v1/model, /v1/health, /v1/ready, /metrics)."""
    import os
    import shutil
    import tempfile

    from kesheng.serve.api.settings import Settings, SettingsError

    # Workers are separate processes that build their settings from the environment.
    if model_dir is not None:
        os.environ["KESHENG_MODEL"] = str(model_dir.resolve())
    if feedback_db is not None:
        os.environ["KESHENG_FEEDBACK_DB"] = str(feedback_db.resolve())
    if workers is not None:
        os.environ["KESHENG_WORKERS"] = str(workers)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        fail(str(exc))
    from kesheng.models import ModelLoadError
    from kesheng.serve.api.model_holder import ModelHolder
    from kesheng.stores.feedback import FeedbackStore, FeedbackStoreError

    holder = ModelHolder(settings.model_dir, settings.escalate_threshold)
    try:
        # Loaded and self-checked here, so that broken weights or params give one line, not a
        # traceback per worker. One worker serves this copy; with several, each loads its own
        # and this one is dropped before they start.
        holder.load()
    except ModelLoadError as exc:
        fail(str(exc))
    except Exception as exc:  # noqa: BLE001 - whatever breaks the self-check, say it in one line
        fail(f"the model in {holder.model_dir} fails its self-check ({type(exc).__name__}: {exc})")
    if settings.workers > 1:
        holder = None  # each worker loads its own copy
    try:
        FeedbackStore(settings.feedback_db).close()
    except FeedbackStoreError as exc:
        fail(f"label store: {exc}")
    metrics_dir = None
    if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Workers share counters through files here; a fresh directory per run, so no stale counts.
        metrics_dir = tempfile.mkdtemp(prefix="kesheng-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        _run_uvicorn(host, port, settings, holder)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _run_uvicorn(host: str, port: int, settings, holder) -> None:
    import signal

    import uvicorn

    from kesheng.serve.api.app import create_app
    from kesheng.serve.api.observability import configure_logging

    configure_logging(settings.log_level)
    stop_signals: list[int] = []
    # uvicorn re-raises the stopping signal after a graceful stop of a single process (exit 143)
    # but not after stopping several workers (exit 0). A handler of ours receives that re-raise,
    # so a graceful stop exits 0 either way; a second signal during the stop still forces it.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda number, frame: stop_signals.append(number))
    uvicorn.run(
        create_app(settings, holder) if holder is not None else "kesheng.serve.api.app:create_app",
        factory=holder is None,
        host=host,
        port=port,
        workers=settings.workers,
        log_level=settings.log_level.lower(),
        log_config=None,  # the app's JSON logging, configured above and by each worker
        access_log=False,  # the app writes one JSON line per request instead
        # The access log names the client from X-Forwarded-For only for KESHENG_TRUSTED_PROXIES.
        proxy_headers=False,
        timeout_keep_alive=30,
        # Above the request deadline: a stop lets every admitted request finish with its answer.
        timeout_graceful_shutdown=settings.graceful_timeout_seconds,
    )
    if stop_signals:
        typer.echo(f"stopped on {signal.Signals(stop_signals[0]).name} after the requests in flight were answered", err=True)
