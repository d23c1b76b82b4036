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
    from kesheng.models import ModelLoadError, model_class
    from kesheng.stores.registry import resolve_model

    try:
        # A clear message here rather than a traceback per worker; the weights are loaded only
        # by the workers, so the supervisor does not hold a model copy of its own.
        model_class(resolve_model(settings.model_dir))
    except ModelLoadError as exc:
        fail(str(exc))
    metrics_dir = None
    if settings.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Workers share counters through files here; a fresh directory per run, so no stale counts.
        metrics_dir = tempfile.mkdtemp(prefix="kesheng-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        _run_uvicorn(host, port, settings)
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _run_uvicorn(host: str, port: int, settings) -> None:
    import uvicorn

    uvicorn.run(
        "kesheng.serve.api.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=settings.workers,
        log_level=settings.log_level.lower(),
        access_log=False,  # the app writes one JSON line per request instead
        timeout_keep_alive=30,
        timeout_graceful_shutdown=10,
    )


