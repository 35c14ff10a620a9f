"""``restate-lambda dev``: ingress, admin API, engine and timer loop in one process."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import errno
import fcntl
import importlib.util
import logging
import math
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backends.api import Backend
from backends.registry import open_backend
from infra.identity_keys import dev_signer
from infra.pollers import dev_pollers
from infra.settings import AdminSettings, ingress_limits_from_env
from infra.shutdown_grace import AnswerOnShutdown
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
    #: seconds in-flight requests get after the first SIGINT/SIGTERM
    shutdown_timeout: float = 5.0


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


class AppLoadError(Exception):
    """A served module cannot be loaded; the message is one line: ``file:line: what``."""


def _user_frame(exc: BaseException, path: Path) -> tuple[str, int] | None:
    """The innermost traceback frame in ``path``'s directory tree (the user's code)."""
    import traceback

    root = str(path.parent)
    found = None
    for frame in traceback.extract_tb(exc.__traceback__):
        name = frame.filename
        if name.startswith(root) and "site-packages" not in name and frame.lineno is not None:
            found = (name, frame.lineno)
    return found


def _shorten(filename: str) -> str:
    """``filename`` relative to the working directory when it is under it."""
    path = Path(filename).resolve()
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return filename


def _describe_load_error(exc: BaseException, path: Path) -> str:
    if isinstance(exc, SyntaxError):
        where = f"{_shorten(exc.filename or str(path))}:{exc.lineno}"
        return f"{where}: {type(exc).__name__}: {exc.msg}"
    frame = _user_frame(exc, path)
    where = f"{_shorten(frame[0])}:{frame[1]}" if frame else _shorten(str(path))
    message = str(exc) or type(exc).__name__
    return f"{where}: {type(exc).__name__}: {message}"


def load_app(spec: str) -> tuple[str, Any]:
    """Load ``path/to/module.py[:attr]`` and return (name, ASGI app of its services).

    Raises:
        AppLoadError: the file is missing, does not import (syntax error, import error, any
            exception at import: the message names the file and line), defines no app, or
            has handlers that can never run (plain ``def``).
    """
    from infra.app_check import module_problems

    path_text, _, attr = spec.partition(":")
    path = Path(path_text).resolve()
    if not path.exists():
        raise AppLoadError(f"no such file: {path_text}")
    name = path.stem
    module_spec = importlib.util.spec_from_file_location(name, path)
    if module_spec is None or module_spec.loader is None:
        raise AppLoadError(f"{path_text}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    try:
        module_spec.loader.exec_module(module)
    except Exception as exc:  # whatever the module raises, the user needs file, line, message
        sys.modules.pop(name, None)
        raise AppLoadError(_describe_load_error(exc, path)) from None
    problems = module_problems(module)
    if problems:
        raise AppLoadError("; ".join(_shorten_problem(p) for p in problems))
    candidates = [attr] if attr else ["app", "application", "endpoint"]
    for candidate in candidates:
        app = getattr(module, candidate, None)
        if app is not None and callable(app):
            return name, app
    raise AppLoadError(
        f"{path_text} defines no ASGI app: name it 'app' (app = restate.app([...])) or pass "
        f"{path_text}:ATTRIBUTE"
    )


def _shorten_problem(problem: str) -> str:
    head, sep, rest = problem.partition(": ")
    file, _, line = head.rpartition(":")
    return f"{_shorten(file)}:{line}{sep}{rest}" if file and line.isdigit() else problem


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
    config = EngineConfig.from_env()
    if config.checkpoint_url is None:
        # Handlers served over HTTP checkpoint their steps at this process's ingress.
        host = "127.0.0.1" if options.host in ("0.0.0.0", "::", "") else options.host
        url = f"http://{host}:{options.ingress_port}/restate-lambda/checkpoint"
        config = dataclasses.replace(config, checkpoint_url=url)
    # The default store lives in the data directory this process holds locked: no other
    # engine uses it (see the recovery below).
    engine = RuntimeEngine(backend, clock, Transports(signer=signer), config, sole=storage is None)
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
        pollers = dev_pollers(engine)  # RESTATE_LAMBDA_EVENTS_{SQS,DYNAMODB}_ENDPOINT_URL
        polling = asyncio.ensure_future(pollers.run()) if pollers is not None else None
        try:
            yield engine
        finally:
            for task in (timers, polling):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(BaseException):
                        await task
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


class PortInUseError(Exception):
    """A port the dev server needs is taken; the message is one line."""


def bind_socket(host: str, port: int, flag: str) -> socket.socket:
    """A listening TCP socket on ``host:port``, bound before anything is announced.

    Raises:
        PortInUseError: the port is taken (``flag`` names the option that changes it).
        OSError: any other reason the address cannot be bound (e.g. not an address of this
            machine).
    """
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise PortInUseError(
                f"port {port} on {host} is already in use (another restate-lambda dev or "
                f"restate-server?): stop it, or pick another port with {flag}"
            ) from None
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


async def stale_in_process_deployments(engine: RuntimeEngine, served: set[str]) -> list[str]:
    """Warnings for in-process deployments registered by earlier runs that this run does not
    serve: their invocations can never run (``no in-process app named ...``)."""
    warnings = []
    for dep in await engine.list_deployments():
        uri = dep.get("uri") or ""
        if not uri.startswith("asgi://") or uri in served:
            continue
        services = ", ".join(s["name"] for s in dep.get("services", [])) or "no services"
        warnings.append(
            f"deployment {dep['id']} ({uri}: {services}) was served in process by an earlier "
            f"run and is not served now, so its invocations cannot run: serve that module "
            f"again, or remove it with `restate-lambda deployments remove {dep['id']}`"
        )
    return warnings


def _say(text: str) -> None:
    print(f"restate-lambda dev: {text}", file=sys.stderr, flush=True)


async def serve(options: DevOptions) -> None:
    """Run the dev server until SIGINT or SIGTERM.

    Shutdown: the first signal stops accepting requests and gives in-flight ones
    ``options.shutdown_timeout`` seconds (clients waiting for an invocation then get their
    connection closed; the invocation itself is durable and goes on at the next start); a
    second signal, or a shutdown that overruns its deadline by 5 s, exits at once.

    Raises:
        AppLoadError, PortInUseError, DataDirLockedError, ValueError, OSError: one-line
            reasons the server cannot start.
    """
    import uvicorn

    quiet_server = _quiet_server_class()
    security = admin_security(options)  # refuse an open admin API before opening anything
    apps = [(spec, *load_app(spec)) for spec in options.apps]  # import errors first
    sockets = [
        bind_socket(options.host, options.ingress_port, "--ingress-port"),
        bind_socket(options.host, options.admin_port, "--admin-port"),
    ]
    try:
        with _data_dir_lock(options.data_dir):
            async with running_engine(options) as engine:
                served: set[str] = set()
                for spec, name, app in apps:
                    uri = engine.transports.asgi.mount(name, app)
                    await engine.register_deployment(uri, force=True)
                    served.add(uri)
                    log.info("serving %s in process as %s", spec, uri)
                for warning in await stale_in_process_deployments(engine, served):
                    log.warning("%s", warning)
                await _run_servers(options, engine, security, sockets, quiet_server, uvicorn)
    finally:
        for sock in sockets:
            sock.close()


async def _run_servers(
    options: DevOptions,
    engine: RuntimeEngine,
    security: AdminSecurity,
    sockets: list[socket.socket],
    quiet_server: type[Any],
    uvicorn: Any,
) -> None:
    ingress = create_ingress_app(
        engine, max_body_bytes=engine.config.max_body_bytes, limits=ingress_limits_from_env()
    )
    admin = create_admin_app(
        engine,
        ingress_endpoint=f"http://{options.host}:{options.ingress_port}/",
        security=security,
    )
    stop = asyncio.Event()
    servers = [
        quiet_server(
            uvicorn.Config(
                AnswerOnShutdown(app, stop, options.shutdown_timeout),
                log_level="warning",
                log_config=None,  # uvicorn's loggers propagate: one format (--log-format)
                lifespan="off",
                access_log=False,
                http=_http_impl(),
                # The ingress reads neither the client address nor the scheme; the admin API
                # builds its UI's links from the scheme a TLS proxy in front of it forwards.
                proxy_headers=app is admin,
                # after our own grace period (the wrapper answers 503), not before it
                timeout_graceful_shutdown=math.ceil(options.shutdown_timeout) + 2,
            )
        )
        for app in (ingress, admin)
    ]
    loop = asyncio.get_running_loop()
    received = 0

    def on_signal() -> None:
        nonlocal received
        received += 1
        if received == 1:
            _say(
                f"stopping (waiting up to {options.shutdown_timeout:g} s for requests in "
                "flight; press Ctrl-C again to exit at once)"
            )
            stop.set()
            loop.call_later(options.shutdown_timeout + 8, _force_exit, "shutdown overran")
        else:
            _force_exit("second signal")

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        tasks = [
            asyncio.ensure_future(s.serve(sockets=[sock]))
            for s, sock in zip(servers, sockets, strict=True)
        ]
        while not all(s.started for s in servers):
            done = [t for t in tasks if t.done()]
            if done:
                for s in servers:
                    s.should_exit = True
                await asyncio.gather(*tasks, return_exceptions=True)
                raise OSError("the HTTP servers did not start")
            await asyncio.sleep(0.01)
        print(
            f"restate-lambda dev: ingress http://{options.host}:{options.ingress_port} "
            f"admin http://{options.host}:{options.admin_port} "
            f"data {options.data_dir} (ready)",
            flush=True,
        )
        waiter = asyncio.ensure_future(stop.wait())
        await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for s in servers:
            s.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)
        waiter.cancel()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _force_exit(why: str) -> None:
    """Leave now: everything acknowledged is already durable in the store."""
    _say(f"exiting at once ({why})")
    sys.stdout.flush()
    os._exit(130)
