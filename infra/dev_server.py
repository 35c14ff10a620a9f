"""``restate-lambda dev``: ingress, admin API, engine and timer loop in one process."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import importlib.util
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backends.api import Backend
from backends.registry import open_backend
from infra.identity_keys import dev_signer
from infra.settings import AdminSettings, ingress_limits_from_env
from ingress.admin_app import create_admin_app
from ingress.admin_security import AdminSecurity
from ingress.ingress_app import create_ingress_app
from invoker.config import EngineConfig
from invoker.engine import RuntimeEngine
from invoker.transport import Transports
from restate_lambda.clock import SystemClock

log = logging.getLogger("restate_lambda.dev")


@dataclass(frozen=True, slots=True)
class DevOptions:
    """Options of the dev server."""

    ingress_port: int = 8080
    admin_port: int = 9070
    data_dir: Path = Path(".restate-lambda")
    storage: str | None = None
    host: str = "127.0.0.1"
    apps: tuple[str, ...] = ()
    #: bearer token of the admin API (default: ``RESTATE_LAMBDA_ADMIN_TOKEN``); required when
    #: ``host`` is not a loopback address
    admin_token: str | None = None
    #: ``Host`` names the admin API accepts besides loopback ones (default:
    #: ``RESTATE_LAMBDA_ADMIN_ALLOWED_HOSTS``)
    admin_allowed_hosts: tuple[str, ...] = ()


def admin_security(options: DevOptions) -> AdminSecurity:
    """The admin API's policy for ``options``; ValueError (a one-line reason) if it would be
    reachable from other machines without a token."""
    env = AdminSettings.from_env()
    return AdminSecurity.for_bind(
        options.host,
        options.admin_token or env.token,
        options.admin_allowed_hosts or env.allowed_hosts,
    )


class DataDirLockedError(RuntimeError):
    """Another dev server uses the data directory."""


@contextlib.contextmanager
def _data_dir_lock(data_dir: Path) -> Any:
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise DataDirLockedError(
                f"another restate-lambda dev server is using {data_dir}"
            ) from exc
        yield
    finally:
        os.close(fd)


def load_app(spec: str) -> tuple[str, Any]:
    """Load ``path/to/module.py[:attr]`` and return (name, ASGI app of its services)."""
    path_text, _, attr = spec.partition(":")
    path = Path(path_text).resolve()
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    name = path.stem
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    sys.path.insert(0, str(path.parent))
    module_spec.loader.exec_module(module)
    candidates = [attr] if attr else ["app", "application", "endpoint"]
    for candidate in candidates:
        app = getattr(module, candidate, None)
        if app is not None and callable(app):
            return name, app
    raise AttributeError(f"{path} defines no ASGI app; name it 'app' or pass {path_text}:ATTRIBUTE")


@contextlib.asynccontextmanager
async def running_engine(options: DevOptions) -> AsyncIterator[RuntimeEngine]:
    """An engine on the configured storage, with orphaned work recovered and timers running."""
    storage = options.storage or os.environ.get("RESTATE_LAMBDA_STORAGE")
    backend: Backend = open_backend(
        storage or f"sqlite:///{(options.data_dir / 'restate-lambda.db').resolve()}",
        data_dir=options.data_dir,
    )
    clock = SystemClock()
    signer = dev_signer(options.data_dir, clock)
    engine = RuntimeEngine(backend, clock, Transports(signer=signer), EngineConfig.from_env())
    if signer is not None:
        log.info("signing requests to deployments as %s", signer.public_key)
    try:
        check = getattr(backend, "check", None)
        if check is not None:
            await check()  # an unreachable store is a clear error now, not a traceback later
        await engine.start()
        if storage is None:
            # The default store lives in the data directory this process holds locked: nobody
            # else runs its invocations, so whatever was running belongs to a dead process.
            # A store named with --storage may be shared: there leases expire instead.
            recovered = await engine.recover_orphans()
            if recovered:
                log.info("recovered %d invocation(s) left running by a previous process", recovered)
        timers = asyncio.ensure_future(engine.run_timer_loop())
        try:
            yield engine
        finally:
            timers.cancel()
            with contextlib.suppress(BaseException):
                await timers
    finally:
        await engine.close()
        await backend.close()


def _http_impl() -> str:
    """httptools when installed (several times cheaper per request than h11)."""
    try:
        import httptools  # noqa: F401
    except ImportError:  # pragma: no cover
        return "h11"
    return "httptools"


def _quiet_server_class() -> type[Any]:
    import uvicorn

    class QuietServer(uvicorn.Server):
        """A uvicorn server that leaves signal handling to the dev server."""

        @contextlib.contextmanager
        def capture_signals(self) -> Any:
            yield

    return QuietServer


async def serve(options: DevOptions) -> None:
    """Run the dev server until SIGINT/SIGTERM."""
    import uvicorn

    _QuietServer = _quiet_server_class()
    security = admin_security(options)  # refuse an open admin API before opening anything

    with _data_dir_lock(options.data_dir):
        async with running_engine(options) as engine:
            for spec in options.apps:
                name, app = load_app(spec)
                uri = engine.transports.asgi.mount(name, app)
                await engine.register_deployment(uri, force=True)
                log.info("serving %s in process as %s", spec, uri)
            ingress = create_ingress_app(
                engine,
                max_body_bytes=engine.config.max_body_bytes,
                limits=ingress_limits_from_env(),
            )
            admin = create_admin_app(
                engine,
                ingress_endpoint=f"http://{options.host}:{options.ingress_port}/",
                security=security,
            )
            servers = [
                _QuietServer(
                    uvicorn.Config(
                        app,
                        host=options.host,
                        port=port,
                        log_level="warning",
                        lifespan="off",
                        access_log=False,
                        http=_http_impl(),
                    )
                )
                for app, port in ((ingress, options.ingress_port), (admin, options.admin_port))
            ]
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            tasks = [asyncio.ensure_future(s.serve()) for s in servers]
            print(
                f"restate-lambda dev: ingress http://{options.host}:{options.ingress_port} "
                f"admin http://{options.host}:{options.admin_port} "
                f"data {options.data_dir}",
                flush=True,
            )
            waiter = asyncio.ensure_future(stop.wait())
            await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
            for s in servers:
                s.should_exit = True
            await asyncio.gather(*tasks, return_exceptions=True)
            waiter.cancel()
