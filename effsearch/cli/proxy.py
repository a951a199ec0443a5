"""`effsearch storage-proxy`: serve a study storage to many workers through Optuna's gRPC storage proxy."""

from __future__ import annotations

import socket
from typing import Annotated

import typer

from effsearch.cli.app import app, err

_LOOPBACK = ("127.0.0.1", "localhost", "::1")


@app.command("storage-proxy")
def storage_proxy(
    storage: Annotated[str, typer.Option("--storage", help="The database the workers share: postgresql://... (or sqlite:///...).")],
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on; workers use --storage grpc://HOST:PORT.")] = 13000,
    host: Annotated[str, typer.Option("--host", help="Address to bind; 0.0.0.0 for every interface.")] = "127.0.0.1",
) -> None:
    """Serve a study database to workers on --storage grpc://HOST:PORT: one process holds its connections."""
    import optuna

    from effsearch.errors import StudyError
    from effsearch.storage import display_url, proxied_storage

    try:
        import grpc  # noqa: F401
    except ImportError as exc:
        raise StudyError("effsearch storage-proxy needs grpcio: pip install 'effsearch[grpc]'") from exc
    # A port in use would only show as a gRPC log line and a server that never answers: refused here.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise StudyError(f"--host {host} --port {port}: cannot listen there ({exc.strerror or exc}); choose another --port") from exc
    backend = proxied_storage(storage)
    if host not in _LOOPBACK:
        err.print(f"warning: the proxy on {host}:{port} has no authentication or TLS: anyone who reaches the port can read and change every study")
    err.print(f"serving {display_url(storage)} on grpc://{host}:{port} (Ctrl-C stops)")
    optuna.storages.run_grpc_proxy_server(backend, host=host, port=port)
