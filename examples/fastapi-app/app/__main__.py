"""``python -m app``: validate the configuration, set up telemetry, then serve on ``$PORT``."""

from __future__ import annotations

import errno
import gc
import importlib.util
import logging
import signal
import socket
import sys

from app.settings import ConfigurationError, Settings, load_settings

_log = logging.getLogger("app")

# uvicorn's standard stack, as `uvicorn[standard]` installs it: a bare FastAPI request costs
# about 169 µs of CPU on uvloop and httptools against 257 µs on asyncio and h11 (issue #21).
# uvicorn's default ("auto") falls back to the slower pair without a word when these are
# missing, so they are named in the server's config and checked before anything starts.
_SERVER_STACK = ("uvloop", "httptools")


def main() -> int:
    try:
        settings = load_settings()
    except ConfigurationError as exc:
        print(f"fastapi-app: {exc}", file=sys.stderr)
        return 2
    # Looked up, not imported: the serving process loads only the loop and parser it runs on.
    missing = [name for name in _SERVER_STACK if importlib.util.find_spec(name) is None]
    if missing:
        print(
            f"fastapi-app: {', '.join(missing)} not installed (install requirements.txt)",
            file=sys.stderr,
        )
        return 2

    # The socket before anything else: a port in use or a bad HOST stops start-up at once,
    # in one line that names the variable.
    try:
        sock = _listen(settings)
    except OSError as exc:
        print(f"fastapi-app: {_listen_problem(settings, exc)}", file=sys.stderr)
        return 2

    # Telemetry first: the framework and HTTP client are imported after instrumentation is set.
    from app import telemetry

    active = telemetry.setup(settings)

    import uvicorn

    from app.main import create_app

    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, active),
            loop="uvloop",  # not "auto": see _SERVER_STACK
            http="httptools",
            log_config=None,  # keep the JSON logging set up by telemetry
            access_log=False,  # RequestTelemetryMiddleware writes one line per request
            server_header=False,
            timeout_graceful_shutdown=10,
        )
    )
    tune_garbage_collector()
    # On SIGTERM or SIGINT uvicorn stops gracefully: it stops accepting, lets the requests in
    # flight finish (up to timeout_graceful_shutdown), then runs the lifespan's shutdown, which
    # flushes telemetry. Then it raises the signal again, for the handler that was installed
    # before it started. The default one would kill the process (exit 143, or a traceback for
    # SIGINT) before the last log lines were written; uvicorn's own handler, installed here
    # first, only notes that a stop was asked, so a stop ends like any run: exit 0.
    # (It also covers a signal that arrives before uvicorn has installed its handlers.)
    for stop_signal in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop_signal, server.handle_exit)
    bound = sock.getsockname()
    _log.info("listening on [%s]:%d", bound[0], bound[1])
    server.run(sockets=[sock])
    return 0


def tune_garbage_collector() -> None:
    """Call once start-up has loaded everything that lives as long as the process.

    ``gc.freeze()`` moves those objects out of the collector's reach, so full collections
    stop re-walking every module, class and function; a higher first-generation threshold
    collects the short-lived cycles of requests in fewer, cheaper passes (objects without
    cycles are freed by reference counting at once, whatever the threshold). Together they
    took ~20% off the CPU of an instrumented request (bench/, issue #7).
    https://docs.python.org/3/library/gc.html#gc.freeze
    """
    gc.collect()
    gc.freeze()
    _, second, third = gc.get_threshold()
    gc.set_threshold(10_000, second, third)


def _listen(settings: Settings) -> socket.socket:
    """One socket for IPv4 and IPv6 when the host allows it (Railway's private network is
    IPv6; compose networks are IPv4). uvicorn's own ``--host ::`` would be IPv6-only."""
    wildcard = settings.host in ("::", "")
    if wildcard and socket.has_dualstack_ipv6():
        family, address = socket.AF_INET6, "::"
    else:
        address = "0.0.0.0" if wildcard else settings.host
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
    # Accepted connections need TCP_NODELAY, or every keep-alive response waits ~40 ms (Nagle
    # against delayed ACKs). uvloop sets it on every TCP connection it accepts; asyncio only
    # when the listening socket's proto is IPPROTO_TCP, not the 0 of socket.create_server().
    # So the proto is given, and the socket stays right on either loop.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if wildcard else 1)
    try:
        sock.bind((address, settings.port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _listen_problem(settings: Settings, exc: OSError) -> str:
    """What is wrong, named by the variable that sets it."""
    where = f"[{settings.host}]:{settings.port}"
    if isinstance(exc, socket.gaierror):
        return f"HOST: {settings.host!r} is neither an address nor a name that resolves here"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"PORT: {settings.port} is already in use ({where}); stop the other server or set PORT"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"HOST: {settings.host!r} is not an address of this machine"
    if exc.errno == errno.EACCES:
        return f"PORT: {settings.port} needs privileges this process does not have"
    return f"HOST/PORT: cannot listen on {where}: {exc.strerror or exc}"


if __name__ == "__main__":
    sys.exit(main())
