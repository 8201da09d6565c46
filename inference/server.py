"""Start KServe model servers the way KServe's samples do, plus three things a forecast service needs.

``parser()`` extends ``kserve.model_server.parser`` (argparse parents, as KServe's custom-model samples do), so
every KServe flag works as documented, and adds ours:

* ``--host``: the address to listen on (``0.0.0.0`` in a pod; ``make serve`` and the tests pass 127.0.0.1).
  The REST socket is bound here and handed to uvicorn as a file descriptor (a uvicorn setting); the gRPC server
  is KServe's ``GRPCServer`` with the host in its listen address. Nothing in KServe is patched.
* ``--workers N``: N server processes on one node, each with its own copy of the model, its own event loop and
  its own gRPC server; they share the REST socket (the kernel hands each connection to one) and the gRPC port
  (``SO_REUSEPORT``, gRPC's default on Linux). KServe's own multi-worker mode re-imports its app in spawned
  children, which would drop the request guard, the readiness gate and the load shedding below, so the workers
  are forked here instead, before the model is loaded. The parent only forwards signals and, when a worker dies,
  stops the rest and exits non-zero so that Kubernetes restarts the pod.
* ``--max_in_flight`` / ``--retry_after_s``: load shedding. Each worker admits at most ``max_in_flight``
  inference requests at once (REST and gRPC together); one more gets ``503`` with ``Retry-After`` (gRPC:
  ``UNAVAILABLE`` with a ``retry-after`` trailer) at once instead of queueing behind the others. A CPU-bound
  worker serves requests one at a time anyway, so a queue only adds waiting: with the bound, an accepted request
  waits for at most ``max_in_flight - 1`` others, and a client or the autoscaler sees the overload immediately.

* ``--max_body_bytes`` / ``--body_timeout_s``: every POST body is read whole before the request takes an
  in-flight slot, within the deadline (else 408) and the size (else 413, at once from ``Content-Length``):
  ``inference.body``. A slow client holds a connection, never a slot.

In front of every worker, outermost first: ``ClosedRoutes`` (the repository API and v1 closed,
``inference.surface``), readiness (``ModelsLoaded``, and for a transformer ``PredictorReadiness``), ``BodyLimit``,
``ShedLoad``, then ``V2Infer`` (the one parse of the body, off the event loop, into KServe's data plane;
``inference.v2_rest``). The gRPC server refuses the repository methods (``inference.surface.grpc_closer``) and
sheds ``ModelInfer`` past the bound.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import signal
import socket
import sys
from collections.abc import Callable
from concurrent import futures
from typing import Any

from kserve import Model, ModelServer
from kserve import model_server as kserve_model_server
from kserve.protocol.grpc.server import GRPCServer

log = logging.getLogger(__name__)

DEFAULT_HOST = "0.0.0.0"
DEFAULT_MAX_IN_FLIGHT = 4
DEFAULT_RETRY_AFTER_S = 1.0
INFER_SUFFIXES = ("/infer", ":predict")  # v2 and v1 inference routes; health, metadata and metrics always pass
SHED_GRPC_METHODS = ("/inference.GRPCInferenceService/ModelInfer",)
BACKLOG = 2048
DEFAULT_MAX_BODY_BYTES = 1 << 20
DEFAULT_BODY_TIMEOUT_S = 5.0
# A transformer row is at most 21 numbers (OHLCV, the timestamp, is_imputed, 14 sentiment aggregates) of at most
# ~25 JSON characters each: 1 KiB a row is twice that, so --max_rows 1000 allows a body of 1 MiB.
BYTES_PER_ROW = 1024


def parser(description: str | None = None) -> argparse.ArgumentParser:
    """KServe's model-server parser with BitPredict's serving flags added (``parents=[model_server.parser]``)."""
    result = argparse.ArgumentParser(
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        parents=[kserve_model_server.parser],
    )
    result.add_argument("--host", default=DEFAULT_HOST, help="Address to listen on (REST and gRPC).")
    result.add_argument(
        "--max_in_flight",
        type=int,
        default=DEFAULT_MAX_IN_FLIGHT,
        help="Inference requests one worker handles at once; more are answered 503 + Retry-After at once.",
    )
    result.add_argument(
        "--retry_after_s", type=float, default=DEFAULT_RETRY_AFTER_S, help="Retry-After of a shed request."
    )
    result.add_argument(
        "--max_body_bytes",
        type=int,
        default=None,
        help=f"Largest POST body (413 past it); default {DEFAULT_MAX_BODY_BYTES}, or --max_rows x {BYTES_PER_ROW}.",
    )
    result.add_argument(
        "--body_timeout_s",
        type=float,
        default=DEFAULT_BODY_TIMEOUT_S,
        help="A POST body not received within this many seconds is answered 408.",
    )
    result.set_defaults(model_name="bitpredict", enable_latency_logging=False)
    return result


def body_cap(args: argparse.Namespace) -> int:
    """``--max_body_bytes``, else derived from ``--max_rows`` (a transformer), else the default."""
    if args.max_body_bytes is not None:
        return int(args.max_body_bytes)
    rows = getattr(args, "max_rows", None)
    return int(rows) * BYTES_PER_ROW if rows else DEFAULT_MAX_BODY_BYTES


def check_args(args: argparse.Namespace) -> None:
    """Refuse settings that cannot work, with the flag named (the parser has no bounds)."""
    if args.workers < 1:
        raise SystemExit(f"--workers must be >= 1, got {args.workers}")
    if args.max_in_flight < 1:
        raise SystemExit(f"--max_in_flight must be >= 1, got {args.max_in_flight}")
    if not args.retry_after_s > 0:
        raise SystemExit(f"--retry_after_s must be > 0, got {args.retry_after_s}")
    if args.max_body_bytes is not None and args.max_body_bytes < 1024:
        raise SystemExit(f"--max_body_bytes must be >= 1024, got {args.max_body_bytes}")
    if not args.body_timeout_s > 0:
        raise SystemExit(f"--body_timeout_s must be > 0, got {args.body_timeout_s}")


# --------------------------------------------------------------------------------------------
# load shedding
# --------------------------------------------------------------------------------------------


class Admission:
    """Requests in flight in this worker, REST and gRPC together (one event loop: no lock needed)."""

    def __init__(self, limit: int, retry_after_s: float) -> None:
        if limit < 1:
            raise ValueError(f"the in-flight limit must be >= 1, got {limit}")
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.in_flight = 0
        self.shed = 0

    def enter(self) -> bool:
        if self.in_flight >= self.limit:
            self.shed += 1
            return False
        self.in_flight += 1
        return True

    def leave(self) -> None:
        self.in_flight -= 1

    @property
    def retry_after(self) -> str:
        return str(max(1, math.ceil(self.retry_after_s)))  # HTTP's Retry-After is whole seconds

    def message(self) -> str:
        return f"overloaded: {self.limit} requests already in flight in this worker; retry after {self.retry_after} s"


class ShedLoad:
    """ASGI middleware: an inference request past the worker's bound gets 503 + ``Retry-After`` without waiting."""

    def __init__(self, app: Any, admission: Admission, on_shed: Callable[[], None] | None = None) -> None:
        self.app = app
        self.admission = admission
        self.on_shed = on_shed

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("method") != "POST" or not scope["path"].endswith(INFER_SUFFIXES):
            await self.app(scope, receive, send)
            return
        if not self.admission.enter():
            if self.on_shed:
                self.on_shed()
            body = json.dumps({"error": self.admission.message()}).encode()
            headers = [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", self.admission.retry_after.encode()),
            ]
            await send({"type": "http.response.start", "status": 503, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.admission.leave()


def grpc_shedder(admission: Admission, on_shed: Callable[[], None] | None = None) -> Any:
    """A gRPC server interceptor doing the same for ``ModelInfer`` (``UNAVAILABLE`` + ``retry-after`` trailer)."""
    import grpc

    class ShedLoadInterceptor(grpc.aio.ServerInterceptor):
        async def intercept_service(self, continuation: Any, details: Any) -> Any:
            handler = await continuation(details)
            if handler is None or details.method not in SHED_GRPC_METHODS or handler.unary_unary is None:
                return handler
            inner = handler.unary_unary

            async def limited(request: Any, context: Any) -> Any:
                if not admission.enter():
                    if on_shed:
                        on_shed()
                    context.set_trailing_metadata((("retry-after", admission.retry_after),))
                    await context.abort(grpc.StatusCode.UNAVAILABLE, admission.message())
                try:
                    return await inner(request, context)
                finally:
                    admission.leave()

            return grpc.unary_unary_rpc_method_handler(
                limited,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )

    return ShedLoadInterceptor()


# --------------------------------------------------------------------------------------------
# one worker: KServe's ModelServer on a given socket and host
# --------------------------------------------------------------------------------------------


class HostGRPCServer(GRPCServer):
    """KServe's gRPC server listening on ``host`` (KServe's own listens on [::]) with the shedding interceptor."""

    def __init__(self, host: str, interceptors: tuple[Any, ...], max_receive: int, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._host = "[::]" if host == DEFAULT_HOST else host
        self._extra_interceptors = interceptors
        self._max_receive = max_receive  # the REST body cap holds for a gRPC message too

    async def start(self, max_workers: int) -> None:
        from grpc import aio
        from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc
        from kserve.protocol.grpc.interceptors import ExceptionToStatusInterceptor, LoggingInterceptor
        from kserve.protocol.grpc.servicer import InferenceServicer

        self._server = aio.server(
            futures.ThreadPoolExecutor(max_workers=max_workers),
            interceptors=(*self._extra_interceptors, LoggingInterceptor(), ExceptionToStatusInterceptor()),
            options=[
                ("grpc.max_send_message_length", self._kwargs.get("grpc_max_send_message_length")),
                ("grpc.max_receive_message_length", self._max_receive),
            ],
        )
        servicer = InferenceServicer(self._data_plane, self._model_repository_extension)
        grpc_predict_v2_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, self._server)
        self._server.add_insecure_port(f"{self._host}:{self._port}")
        await self._server.start()
        await self._server.wait_for_termination()


class WorkerModelServer(ModelServer):
    """One worker: KServe's ``ModelServer`` serving REST on an already-bound socket and gRPC on ``host``."""

    def __init__(
        self,
        rest_socket: socket.socket,
        host: str,
        grpc_interceptors: tuple[Any, ...],
        max_message_bytes: int,
        **kwargs: Any,
    ):
        self._serve_grpc = kwargs.pop("enable_grpc", True)
        super().__init__(enable_grpc=False, workers=1, **kwargs)  # gRPC: our HostGRPCServer, started below
        self.rest_socket = rest_socket
        self.host = host
        self.grpc_interceptors = grpc_interceptors
        self.max_message_bytes = max_message_bytes

    async def _serve(self) -> None:
        if self._rest_server is not None:
            self._rest_server.config.fd = self.rest_socket.fileno()  # uvicorn serves the socket bound by serve()
        if self._serve_grpc:
            self._grpc_server = HostGRPCServer(
                self.host,
                self.grpc_interceptors,
                self.max_message_bytes,
                self.grpc_port,
                self.dataplane,
                self.model_repository_extension,
                kwargs=vars(kserve_model_server.args),
                grace_period=self.grace_period,
            )
            self.servers.append(self._grpc_server.start(self.max_threads))
        await super()._serve()


def _install_middlewares(
    server: ModelServer,
    models: list[Model],
    admission: Admission,
    args: argparse.Namespace,
    on_reject: Callable[[str], None] | None,
) -> None:
    """KServe's app behind, outermost first: closed routes, readiness, the body limit, shedding, the v2 route.
    (Starlette runs the middleware added last first.)"""
    from inference.body import BodyLimit
    from inference.readiness import PredictorReadiness, upstreams_of
    from inference.surface import ClosedRoutes, ModelsLoaded
    from inference.v2_rest import V2Infer

    app = kserve_model_server.app
    cap = body_cap(args)
    app.add_middleware(
        V2Infer, dataplane=server.dataplane, max_elements=cap // 2, retry_after_s=args.retry_after_s,
        on_reject=on_reject,
    )  # fmt: skip  # a JSON element takes at least 2 bytes: a larger shape cannot be the body's data
    on_shed = (lambda: on_reject("overloaded")) if on_reject else None
    app.add_middleware(ShedLoad, admission=admission, on_shed=on_shed)
    app.add_middleware(BodyLimit, max_bytes=cap, deadline_s=args.body_timeout_s, on_reject=on_reject)
    upstreams = upstreams_of(models)
    if upstreams:
        app.add_middleware(PredictorReadiness, upstreams=upstreams, ttl_s=2.0)
    app.add_middleware(ModelsLoaded, repository=server.registered_models, names=[m.name for m in models])
    app.add_middleware(ClosedRoutes, on_reject=on_reject)


def _run_worker(
    build: Callable[[], list[Model]],
    args: argparse.Namespace,
    rest_socket: socket.socket,
    on_reject: Callable[[str], None] | None,
) -> None:
    from inference.surface import grpc_closer

    models = build()
    admission = Admission(args.max_in_flight, args.retry_after_s)
    on_shed = (lambda: on_reject("overloaded")) if on_reject else None
    server = WorkerModelServer(
        rest_socket,
        args.host,
        (grpc_closer(), grpc_shedder(admission, on_shed)),
        body_cap(args),
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        enable_grpc=args.enable_grpc,
        max_threads=args.max_threads,
        max_asyncio_workers=args.max_asyncio_workers,
        enable_latency_logging=args.enable_latency_logging,
        event_loop=args.event_loop,
        timeout_keep_alive=args.timeout_keep_alive,
    )
    _install_middlewares(server, models, admission, args, on_reject)
    try:
        server.start(models)
    finally:
        for model in models:  # KServe's teardown hook, also when the server ended without unloading them
            model.stop()


def bind_rest(host: str, port: int) -> socket.socket:
    """The listening REST socket every worker serves (SO_REUSEADDR: a restart does not wait for TIME_WAIT)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # uvicorn wraps an fd as an AF_UNIX socket object, so asyncio skips its TCP_NODELAY on the connections; set
    # on the listener, Linux gives it to every accepted connection (without it, Nagle + delayed ACK add ~40 ms).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    sock.set_inheritable(True)
    return sock


def serve(
    build: Callable[[], list[Model]],
    args: argparse.Namespace,
    on_reject: Callable[[str], None] | None = None,
) -> None:
    """Serve the models ``build()`` returns with ``args.workers`` processes; blocks until a signal stops them.

    ``build`` runs in each worker (after the fork), so every worker loads its own model and opens its own
    connections; a model loaded before forking would share TensorFlow's and gRPC's threads across processes.
    """
    check_args(args)
    rest_socket = bind_rest(args.host, args.http_port)
    if args.workers == 1:
        _run_worker(build, args, rest_socket, on_reject)
        return
    children: list[int] = []
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:  # a worker: serve until a signal, then leave without running the parent's cleanup
            code = 0
            try:
                _run_worker(build, args, rest_socket, on_reject)
            except BaseException:  # a worker's crash is logged and becomes its exit code
                log.exception("worker failed")
                code = 1
            finally:
                os._exit(code)
        children.append(pid)
    rest_socket.close()
    sys.exit(_supervise(children))


def _supervise(children: list[int]) -> int:
    """Forward SIGTERM/SIGINT to the workers; when one exits on its own, stop the others. Returns the exit code."""
    stopping = False

    def forward(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            _signal(pid, signal.SIGTERM)

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, forward)
    log.info("serving with workers", extra={"workers": children})
    code = 0
    alive = set(children)
    while alive:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        alive.discard(pid)
        if not stopping:
            log.error("a worker exited; stopping the others", extra={"pid": pid, "status": status})
            code = 1
            stopping = True
            for other in alive:
                _signal(other, signal.SIGTERM)
    return code


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it exited already
        os.kill(pid, signum)
