"""Running the app: the listening socket, uvicorn, and a clean stop on SIGTERM or SIGINT."""

from __future__ import annotations

import contextlib
import errno
import logging
import signal
import socket
import threading

from sft.errors import ServeError, SftError

log = logging.getLogger("sft")


def listen(host: str, port: int) -> socket.socket:
    """The server's socket, bound before anything slow starts: a port in use fails in a blink."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)  # from now on clients queue, while TensorFlow and the model load
    except OSError as e:
        reason = {errno.EADDRINUSE: "the port is in use (is another server running?); choose another --port",
                  errno.EACCES: "not allowed (ports under 1024 need privileges); choose another --port",
                  errno.EADDRNOTAVAIL: "this machine has no such address; check --host"}.get(e.errno, e.strerror)
        raise ServeError(f"cannot listen on {host}:{port}: {reason}") from None
    except (socket.gaierror, OverflowError) as e:
        raise ServeError(f"cannot listen on {host}:{port}: {e}") from None
    sock.set_inheritable(True)
    return sock


def run(app, sock: socket.socket, graceful_seconds: float = 30) -> None:
    """Serve until SIGTERM or SIGINT; then stop accepting, answer what is in flight, and return.
    A model that fails to load stops the server and is raised here."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):
            # uvicorn re-raises the signal after its graceful stop, so the process would end by
            # SIGTERM (exit 143); a stop that finished its work is a success: exit 0.
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for sig, handler in previous.items():
                    signal.signal(sig, handler)

    config = uvicorn.Config(app, log_config=None, log_level="warning", access_log=False, lifespan="on",
                            timeout_graceful_shutdown=graceful_seconds, server_header=False)
    server = Server(config)
    app.state.server.on_failure = lambda error: setattr(server, "should_exit", True)
    host, port = sock.getsockname()[:2]
    log.info("listening on http://%s:%d (GET /readyz answers 200 once the model is warm)",
             f"[{host}]" if ":" in host else host, port)
    server.run(sockets=[sock])
    failure = app.state.server.failure
    if failure is not None:
        raise failure if isinstance(failure, SftError) else ServeError(f"the model failed to load: {failure}")
