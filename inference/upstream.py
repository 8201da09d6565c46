"""The transformer's calls to its predictor: one pooled, kept-alive connection per worker, three wire formats.

``v2`` — KServe v2 REST (the local predictor, Triton's HTTP port), through one ``httpx.AsyncClient`` whose
connections are kept alive between requests. ``grpc-v2`` — KServe v2 gRPC ``ModelInfer`` (the local predictor's
or Triton's gRPC port) on one HTTP/2 channel, the window sent as raw little-endian FP32 bytes (no per-number
protobuf fields). ``tfserving`` — TF Serving's ``PredictionService.Predict`` on one channel (KServe's TensorFlow
runtime speaks only that on gRPC). The gRPC channels send keepalive pings and retry a lost connection after at
most ``MAX_RECONNECT_BACKOFF_MS``, so a predictor that comes back is used again within a second instead of after
gRPC's default two-minute backoff; the connection stays open between requests (HTTP/2, one per worker).

Failures are told apart by whose fault they are: refused, reset, timed out, a 5xx or another non-OK status raise
``PredictorUnavailable`` (the client gets 503); the predictor's own ``400`` / ``INVALID_ARGUMENT`` raises
``PredictorRefused`` (the request's input, so a 400 for the client); a reply that is not a forecast (not JSON, no
quantiles, a shape that does not fit) raises ``PredictorBadReply`` (502). Each carries ``http_status``; the
transformer stays up. Channels are opened on first use, inside the worker's event loop.

A reply is the next-day ``quantiles`` [B, Q] and, from a model exported with the horizon axis, its
``horizon_quantiles`` [B, H, Q] (the log-return quantiles for each of the metadata's ``horizons``); a model from
before has none (``PredictorReply.horizon_quantiles`` is None: the transformer serves it as H = 1). A
``horizon_quantiles`` whose batch or level axis does not fit ``quantiles`` is a bad reply like any other.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from bitpredict.errors import BitPredictError
from bitpredict.forecast.artifact import HORIZON_QUANTILES_OUTPUT, INPUT_NAME, QUANTILES_OUTPUT, SIGNATURE

PROTOCOLS = ("v2", "grpc-v2", "tfserving")
MAX_RECONNECT_BACKOFF_MS = 1000
# Keepalive pings only while calls are open (a server refuses pings on an idle connection more often than every
# 5 minutes by default, answering with GOAWAY); a dead peer mid-call is noticed within 30 + 5 s.
GRPC_OPTIONS = [
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 0),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", MAX_RECONNECT_BACKOFF_MS),
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.max_send_message_length", 64 * 1024 * 1024),
]


class PredictorUnavailable(BitPredictError, RuntimeError):
    """The predictor did not answer with a forecast; the message says why (the client gets a 503)."""

    http_status = 503


class PredictorRefused(PredictorUnavailable):
    """The predictor refused the window as invalid (its 400 / INVALID_ARGUMENT): the client's input, a 400."""

    http_status = 400


class PredictorBadReply(PredictorUnavailable):
    """The predictor answered, but not with the quantiles a forecast needs: a bad gateway, 502."""

    http_status = 502


def _shaped(values: Any, shape: Any, name: str = QUANTILES_OUTPUT) -> np.ndarray:
    """A reply tensor as float64 in its declared shape, or ``PredictorBadReply``."""
    try:
        return np.asarray(values, dtype="float64").reshape([int(d) for d in shape])
    except (TypeError, ValueError) as exc:
        raise PredictorBadReply(f"the reply's '{name}' does not fit its shape ({exc})") from None


@dataclass(frozen=True)
class PredictorReply:
    """What the transformer needs from a reply: ``quantiles`` [B, Q]; ``horizon_quantiles`` [B, H, Q] or None (a
    model exported before the horizon axis)."""

    quantiles: np.ndarray
    horizon_quantiles: np.ndarray | None = None


def _reply(quantiles: np.ndarray, horizon: np.ndarray | None) -> PredictorReply:
    """The reply, with ``horizon_quantiles`` checked against ``quantiles``: [B, H, Q] with the same B and Q."""
    if horizon is not None and (
        horizon.ndim != 3
        or quantiles.ndim != 2
        or horizon.shape[0] != quantiles.shape[0]
        or horizon.shape[2] != quantiles.shape[1]
        or horizon.shape[1] < 1
    ):
        raise PredictorBadReply(
            f"the reply's '{HORIZON_QUANTILES_OUTPUT}' has shape {list(horizon.shape)}, expected "
            f"[B, H, Q] beside '{QUANTILES_OUTPUT}' {list(quantiles.shape)}"
        )
    return PredictorReply(quantiles, horizon)


class PredictorClient(Protocol):
    host: str

    async def infer(self, window: np.ndarray, request_id: str) -> PredictorReply:
        """The model's quantiles [B, Q] (and [B, H, Q] when it has the horizon axis) for the FP32 window [B, W, F]."""
        ...

    async def close(self) -> None: ...


class RestV2Client:
    def __init__(self, host: str, model: str, timeout_s: float) -> None:
        self.host, self.model, self.timeout_s = host, model, timeout_s
        self._client: Any = None

    async def infer(self, window: np.ndarray, request_id: str) -> PredictorReply:
        import httpx

        if self._client is None:
            limits = httpx.Limits(max_connections=64, max_keepalive_connections=64, keepalive_expiry=60)
            self._client = httpx.AsyncClient(base_url=f"http://{self.host}", timeout=self.timeout_s, limits=limits)
        tensor = {"name": INPUT_NAME, "shape": list(window.shape), "datatype": "FP32", "data": window.ravel().tolist()}
        try:
            reply = await self._client.post(
                f"/v2/models/{self.model}/infer", json={"id": request_id, "inputs": [tensor]}
            )
        except httpx.HTTPError as exc:
            raise PredictorUnavailable(f"{type(exc).__name__}: {exc}") from exc
        if reply.status_code == 400:
            raise PredictorRefused(f"answered 400: {reply.text[:200]}")
        if reply.status_code != 200:
            raise PredictorUnavailable(f"answered {reply.status_code}: {reply.text[:200]}")
        try:
            outputs = {o.get("name"): o for o in reply.json().get("outputs", [])}
        except (ValueError, AttributeError, TypeError) as exc:
            raise PredictorBadReply(f"the reply is not a v2 response ({type(exc).__name__})") from None
        if QUANTILES_OUTPUT not in outputs:
            raise PredictorBadReply(f"the reply has no '{QUANTILES_OUTPUT}' output")
        found = outputs[QUANTILES_OUTPUT]
        horizon = outputs.get(HORIZON_QUANTILES_OUTPUT)
        return _reply(
            _shaped(found.get("data"), found.get("shape")),
            None if horizon is None else _shaped(horizon.get("data"), horizon.get("shape"), HORIZON_QUANTILES_OUTPUT),
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()


class GrpcV2Client:
    def __init__(self, host: str, model: str, timeout_s: float) -> None:
        self.host, self.model, self.timeout_s = host, model, timeout_s
        self._channel: Any = None
        self._stub: Any = None

    def _open(self) -> None:
        import grpc
        from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as stubs

        self._channel = grpc.aio.insecure_channel(self.host, options=GRPC_OPTIONS)
        self._stub = stubs.GRPCInferenceServiceStub(self._channel)

    async def infer(self, window: np.ndarray, request_id: str) -> PredictorReply:
        import grpc
        from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

        if self._stub is None:
            self._open()
        request = pb.ModelInferRequest(model_name=self.model, id=request_id)
        request.inputs.add(name=INPUT_NAME, datatype="FP32", shape=list(window.shape))
        request.raw_input_contents.append(np.ascontiguousarray(window, dtype="<f4").tobytes())
        try:
            reply = await self._stub.ModelInfer(request, timeout=self.timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise _grpc_error(exc) from exc
        tensors: dict[str, np.ndarray] = {}
        for index, output in enumerate(reply.outputs):
            if output.name not in (QUANTILES_OUTPUT, HORIZON_QUANTILES_OUTPUT):
                continue
            try:
                if reply.raw_output_contents:
                    values = np.frombuffer(reply.raw_output_contents[index], dtype=_RAW[output.datatype])
                else:
                    values = np.asarray(output.contents.fp32_contents or output.contents.fp64_contents)
            except (IndexError, KeyError, ValueError) as exc:
                raise PredictorBadReply(f"the reply's '{output.name}' cannot be read ({exc!r})") from None
            tensors[output.name] = _shaped(values, output.shape, output.name)
        if QUANTILES_OUTPUT not in tensors:
            raise PredictorBadReply(f"the reply has no '{QUANTILES_OUTPUT}' output")
        return _reply(tensors[QUANTILES_OUTPUT], tensors.get(HORIZON_QUANTILES_OUTPUT))

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()


_RAW = {"FP32": "<f4", "FP64": "<f8"}


def _grpc_error(exc: Any) -> PredictorUnavailable:
    """INVALID_ARGUMENT is the predictor refusing the input (400); every other status: unavailable (503)."""
    import grpc

    kind = PredictorRefused if exc.code() == grpc.StatusCode.INVALID_ARGUMENT else PredictorUnavailable
    return kind(f"gRPC {exc.code().name}: {exc.details()}")


class TFServingClient:
    """TF Serving's ``PredictionService.Predict`` with the SavedModel's ``serving_default`` signature."""

    def __init__(self, host: str, model: str, timeout_s: float) -> None:
        self.host, self.model, self.timeout_s = host, model, timeout_s
        self._channel: Any = None
        self._stub: Any = None

    async def infer(self, window: np.ndarray, request_id: str) -> PredictorReply:
        import grpc
        from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2, types_pb2
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

        if self._stub is None:
            self._channel = grpc.aio.insecure_channel(self.host, options=GRPC_OPTIONS)
            self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = self.model
        request.model_spec.signature_name = SIGNATURE
        shape = tensor_shape_pb2.TensorShapeProto(dim=[{"size": int(d)} for d in window.shape])
        request.inputs[INPUT_NAME].CopyFrom(
            tensor_pb2.TensorProto(
                dtype=types_pb2.DT_FLOAT,
                tensor_shape=shape,
                tensor_content=np.ascontiguousarray(window, dtype="<f4").tobytes(),
            )
        )
        try:
            reply = await self._stub.Predict(request, timeout=self.timeout_s)
        except grpc.aio.AioRpcError as exc:
            raise _grpc_error(exc) from exc
        if QUANTILES_OUTPUT not in reply.outputs:
            raise PredictorBadReply(f"the reply has no '{QUANTILES_OUTPUT}' output")
        horizon = reply.outputs.get(HORIZON_QUANTILES_OUTPUT)
        return _reply(
            _tensor(reply.outputs[QUANTILES_OUTPUT], QUANTILES_OUTPUT),
            None if horizon is None else _tensor(horizon, HORIZON_QUANTILES_OUTPUT),
        )

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()


def _tensor(proto: Any, name: str) -> np.ndarray:
    """A TF Serving ``TensorProto`` as float64 in its shape, or ``PredictorBadReply``."""
    from tensorflow.core.framework import types_pb2

    dims = [d.size for d in proto.tensor_shape.dim]
    try:
        if proto.tensor_content:
            kind = "<f4" if proto.dtype == types_pb2.DT_FLOAT else "<f8"
            values = np.frombuffer(proto.tensor_content, dtype=kind)
        else:
            values = np.asarray(proto.float_val or proto.double_val)
    except ValueError as exc:
        raise PredictorBadReply(f"the reply's '{name}' cannot be read ({exc})") from None
    return _shaped(values, dims, name)


def client_for(protocol: str, host: str, model: str, timeout_s: float) -> PredictorClient:
    """The client for ``--predictor_protocol`` (``v2``/``grpc-v2``) or ``--predictor_runtime tfserving``."""
    if protocol == "v2":
        return RestV2Client(host, model, timeout_s)
    if protocol == "grpc-v2":
        return GrpcV2Client(host, model, timeout_s)
    if protocol == "tfserving":
        return TFServingClient(host, model, timeout_s)
    raise ValueError(f"predictor protocol {protocol!r}; choose one of {PROTOCOLS}")
