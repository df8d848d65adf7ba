"""The service put together: database, run manager, HTTP site; ``serve`` runs it until a signal.

Start-up order: the database is opened and migrated, runs a killed service left ``planning``
or ``running`` become ``interrupted``, queued runs start, schedules whose time passed while
the service was down fire (once each, recorded as missed), then the site listens. Stopping
(SIGINT or SIGTERM) reverses it: the scheduler stops, active runs are interrupted as Ctrl-C
would (in-flight requests finish) and end ``interrupted``, event streams close, then the
database.
"""

from __future__ import annotations

import asyncio
import signal
import ssl
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

import structlog
from aiohttp import web

from bulkkm.errors import UsageError
from bulkkm.service._api import Api
from bulkkm.service._config import ServiceConfig
from bulkkm.service._db import Database, TokenRow
from bulkkm.service._metrics import Metrics
from bulkkm.service._runs import RunManager
from bulkkm.service._schedules import Scheduler
from bulkkm.service._tokens import Scope, check_name, hash_token, new_token

__all__ = ["Service", "create_token", "list_tokens", "revoke_token", "serve"]

log = structlog.get_logger("bulkkm.service")


class Service:
    """A running service, as an async context manager: ``url`` once entered."""

    def __init__(self, config: ServiceConfig) -> None:
        """Nothing opened until entered."""
        self.config = config
        self.url = ""
        self._db: Database | None = None
        self._manager: RunManager | None = None
        self._scheduler: Scheduler | None = None
        self._runner: web.AppRunner | None = None

    @property
    def manager(self) -> RunManager:
        """The run manager (once entered)."""
        assert self._manager is not None
        return self._manager

    @property
    def scheduler(self) -> Scheduler:
        """The scheduler (once entered)."""
        assert self._scheduler is not None
        return self._scheduler

    async def __aenter__(self) -> Service:
        """Open the database, recover and start runs, listen."""
        config = self.config
        tls = _tls_context(config)
        config.data.mkdir(parents=True, exist_ok=True, mode=0o700)
        config.runs_dir.mkdir(exist_ok=True, mode=0o700)
        self._db = await Database.open(config.database)
        try:
            metrics = Metrics()
            self._manager = RunManager(self._db, config, metrics)
            await self._manager.start()
            self._scheduler = Scheduler(self._db, self._manager, metrics, config.clock)
            await self._scheduler.start()
            app = web.Application()
            Api(self._manager, self._db, self._scheduler).install(app)
            self._runner = web.AppRunner(
                app, access_log=None, handle_signals=False, shutdown_timeout=5.0
            )
            await self._runner.setup()
            site = web.TCPSite(self._runner, config.host, config.port, ssl_context=tls)
            await site.start()
        except BaseException:
            await self._close()
            raise
        host, port = self._runner.addresses[0][:2]
        shown = f"[{host}]" if ":" in host else host
        self.url = f"{config.scheme}://{shown}:{port}"
        log.info("service_started", url=self.url, data=str(config.data))
        return self

    async def __aexit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        """Interrupt active runs, close the streams, the site and the database."""
        await self._close()

    async def _close(self) -> None:
        """Everything opened, closed in reverse order."""
        if self._scheduler is not None:
            await self._scheduler.close()
        if self._manager is not None:
            await self._manager.close()
        if self._runner is not None:
            await self._runner.cleanup()
        if self._db is not None:
            await self._db.close()
        log.info("service_stopped")


def _tls_context(config: ServiceConfig) -> ssl.SSLContext | None:
    """The server's TLS context, or None for plain HTTP on loopback."""
    if config.tls_cert is None or config.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(config.tls_cert, config.tls_key)
    except (OSError, ssl.SSLError) as exc:
        raise UsageError(f"--tls-cert/--tls-key: cannot load them: {exc}") from None
    return context


def serve(config: ServiceConfig) -> int:
    """``bulkkm serve``: run until SIGINT or SIGTERM; 0 after a clean stop."""
    return asyncio.run(_serve(config))


async def _serve(config: ServiceConfig) -> int:
    """The service until a signal."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        service = Service(config)
        try:
            await service.__aenter__()
        except OSError as exc:
            raise UsageError(
                f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}"
            ) from None
        try:
            print(f"bulkkm serve: listening on {service.url}", flush=True)
            print(f"  data: {config.data}", flush=True)
            print(f"  inventories: {config.inventories_dir}", flush=True)
            await stop.wait()
            log.info("service_stopping")
        finally:
            await service.__aexit__(None, None, None)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    return 0


def create_token(data: Path, name: str, scope: Scope) -> str:
    """A new token, stored as its hash in DATA's database; the token itself is returned once."""
    check_name(name)
    token = new_token()

    async def store() -> None:
        db = await Database.open(data / "bulkkm.db")
        try:
            await db.add_token(
                name=name, scope=scope, token_hash=hash_token(token), now=datetime.now(UTC)
            )
        finally:
            await db.close()

    asyncio.run(store())
    return token


def list_tokens(data: Path) -> list[TokenRow]:
    """Every token's name, scope and dates (never a token or a hash)."""

    async def read() -> list[TokenRow]:
        db = await Database.open(data / "bulkkm.db")
        try:
            return await db.tokens()
        finally:
            await db.close()

    return asyncio.run(read())


def revoke_token(data: Path, name: str) -> bool:
    """Revoke a token by name; False when no live token has that name."""

    async def revoke() -> bool:
        db = await Database.open(data / "bulkkm.db")
        try:
            return await db.revoke_token(name, datetime.now(UTC))
        finally:
            await db.close()

    return asyncio.run(revoke())
