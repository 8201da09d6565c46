"""The KServe transformer: raw recent market rows in, a next-day forecast out, over the v2 protocol.

``POST /v2/models/bitpredict/infer`` (REST) or ``ModelInfer`` (gRPC) with inputs ``timestamp`` (INT64 unix
seconds or BYTES ISO-8601 dates), ``open``, ``high``, ``low``, ``close``, ``volume`` (FP64/FP32), all of
length N, oldest first, and optionally ``is_imputed`` (0/1: a filled bar) and ``sentiment_<column>`` daily
aggregates. The rows become the model's [1, W, F] input through ``bitpredict.serving`` — the training code —
and the predictor's quantiles become ``predicted_log_return``, ``predicted_close``, ``direction``, ``lower``,
``upper``, ``as_of`` and ``model_version``.

The predictor is reached by ``--predictor_protocol``: ``v2`` (REST, KServe's client: the local predictor,
Triton), ``grpc-v2`` (KServe's gRPC client), or ``tfserving`` (TF Serving's gRPC ``PredictionService.Predict``
through ``tensorflow-serving-api``: KServe's TensorFlow runtime).

    python -m inference.transformer --model_uri data/models/serving/bitpredict-lstm \\
        --predictor_host 127.0.0.1:8085 --predictor_protocol v2 --http_port 8080 --grpc_port 8081
"""

from __future__ import annotations

import argparse
import contextvars
import logging
import sys
import time
import uuid
from typing import Any


def _kserve_view(argv: list[str]) -> list[str]:
    """kserve parses ``sys.argv`` when imported and knows only v1/v2/grpc-v2 as ``--predictor_protocol``;
    it sees ``v2`` where we say ``tfserving`` (our own parser reads the real value)."""
    out = list(argv)
    for i, arg in enumerate(out):
        if arg == "--predictor_protocol=tfserving":
            out[i] = "--predictor_protocol=v2"
        elif arg == "tfserving" and i > 0 and out[i - 1] == "--predictor_protocol":
            out[i] = "v2"
    return out


ARGV = sys.argv[1:]
sys.argv = [sys.argv[0], *_kserve_view(ARGV)]

import numpy as np
import pandas as pd
from kserve import InferOutput, InferRequest, InferResponse, Model
from kserve.errors import InvalidInput, ServerNotReady
from kserve.predictor_config import PredictorConfig
from prometheus_client import Counter, Gauge, Histogram

from bitpredict.config import load_settings
from bitpredict.request_log import RequestLog
from bitpredict.serving import (
    ModelSpec,
    RequestError,
    feature_window,
    forecast,
    locate_model,
    optional_inputs,
    parse_request,
    sentiment_source,
)
from inference.server import DEFAULT_HOST, serve

log = logging.getLogger(__name__)

PREDICTIONS = Counter("bitpredict_predictions_total", "Forecasts served, by predicted direction", ["direction"])
REJECTED = Counter("bitpredict_rejected_requests_total", "Requests refused with a 4xx, by reason", ["reason"])
MODEL_INFO = Gauge("bitpredict_model_info", "The model version being served (value 1)", ["model", "version"])
PREDICTED_CLOSE = Gauge("bitpredict_predicted_close", "The latest forecast of the next-day close (USD)")
LAST_CLOSE = Gauge("bitpredict_last_close", "The latest close a client sent (USD)")
PREDICTOR_ERRORS = Counter("bitpredict_predictor_errors_total", "Predictor calls that failed (answered 503)")
REQUEST_SECONDS = Histogram(
    "bitpredict_request_seconds",
    "Whole forecast latency in the transformer: validation, features, predictor call, response",
    buckets=(0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5),
)

PROTOCOLS = ("v2", "grpc-v2", "tfserving")
DIRECTIONS = {1: "up", -1: "down", 0: "flat"}  # flat: the median is exactly today's close (a baseline's)
_request: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("bitpredict_request")


def _decode(payload: InferRequest) -> dict[str, tuple[str, np.ndarray]]:
    decoded: dict[str, tuple[str, np.ndarray]] = {}
    for tensor in payload.inputs:
        if tensor.name in decoded:
            raise RequestError(f"input '{tensor.name}' is given twice", "duplicate_input")
        try:
            values = np.asarray(tensor.as_numpy())
        except Exception as exc:  # any undecodable tensor is the client's error, not ours
            raise RequestError(f"input '{tensor.name}': cannot decode its data ({exc})", "bad_data") from None
        if tensor.shape is not None and list(values.shape) != [int(s) for s in tensor.shape]:
            raise RequestError(f"input '{tensor.name}': data does not fit shape {tensor.shape}", "bad_shape")
        decoded[tensor.name] = (tensor.datatype, values)
    return decoded


def _output(name: str, value: Any, datatype: str) -> InferOutput:
    array = np.asarray([value], dtype=object if datatype == "BYTES" else None)
    output = InferOutput(name=name, shape=[1], datatype=datatype)
    output.set_data_from_numpy(array, binary_data=False)
    return output


class BitPredictTransformer(Model):
    def __init__(
        self,
        name: str,
        spec: ModelSpec,
        protocol: str,
        predictor_host: str,
        request_log: RequestLog | None = None,
        tfserving_model: str | None = None,
    ) -> None:
        super().__init__(name)
        if protocol not in PROTOCOLS:
            raise ValueError(f"predictor protocol {protocol!r}; choose one of {PROTOCOLS}")
        self.spec = spec
        self.protocol = protocol
        self.predictor_host = predictor_host
        self.request_log = request_log
        self.tfserving_model = tfserving_model or name
        self._tfserving_stub: Any = None
        self.settings = load_settings()
        MODEL_INFO.labels(model=name, version=spec.version).set(1)
        self.ready = True  # the metadata was loaded and checked before this object existed

    # -- metadata (GET /v2/models/<name>) ----------------------------------------------------------
    def get_input_types(self) -> list[dict[str, Any]]:
        n = [-1]
        market = [{"name": c, "datatype": "FP64", "shape": n} for c in ("open", "high", "low", "close", "volume")]
        optional = [{"name": c, "datatype": "FP64", "shape": n, "optional": True} for c in optional_inputs()]
        return [{"name": "timestamp", "datatype": "INT64|BYTES", "shape": n}, *market, *optional]

    def get_output_types(self) -> list[dict[str, Any]]:
        one = [1]
        return [
            {"name": "predicted_log_return", "datatype": "FP64", "shape": one},
            {"name": "predicted_close", "datatype": "FP64", "shape": one},
            {"name": "direction", "datatype": "INT64", "shape": one},
            {"name": "lower", "datatype": "FP64", "shape": one},
            {"name": "upper", "datatype": "FP64", "shape": one},
            {"name": "as_of", "datatype": "BYTES", "shape": one},
            {"name": "model_version", "datatype": "BYTES", "shape": one},
        ]

    # -- v2 request → predictor request -------------------------------------------------------
    async def preprocess(self, payload: InferRequest | dict, headers: dict[str, str] | None = None) -> InferRequest:
        started = time.perf_counter()
        if not isinstance(payload, InferRequest):
            self._reject("v1_request", "use the v2 protocol: POST /v2/models/<name>/infer")
        try:
            bars = parse_request(_decode(payload), self.spec)
            window = feature_window(bars, self.spec, self.settings.clean)
        except RequestError as exc:
            self._reject(exc.reason, str(exc))
        request_id = payload.id or uuid.uuid4().hex
        _request.set({"bars": bars, "started": started, "id": request_id})
        tensor = _infer_input(window)
        return InferRequest(model_name=self.name, infer_inputs=[tensor], request_id=request_id)

    def _reject(self, reason: str, message: str) -> None:
        REJECTED.labels(reason=reason).inc()
        raise InvalidInput(message)

    # -- the predictor call ---------------------------------------------------------------------
    async def predict(
        self, payload: InferRequest, headers: dict[str, str] | None = None, response_headers: dict | None = None
    ) -> InferResponse:
        try:
            if self.protocol != "tfserving":
                return await super().predict(payload, headers, response_headers)
            return await self._tfserving_predict(payload)
        except InvalidInput:
            raise
        except Exception as exc:  # the predictor is down or failing: a 503 for the client, the cause in the log
            PREDICTOR_ERRORS.inc()
            log.error("predictor call failed", extra={"predictor": self.predictor_host, "error": repr(exc)})
            reason = f"the predictor at {self.predictor_host} is unavailable: {type(exc).__name__}"
            raise ServerNotReady(reason) from exc

    async def _tfserving_predict(self, payload: InferRequest) -> InferResponse:
        """TF Serving's gRPC ``PredictionService.Predict`` with the SavedModel's ``serving_default`` signature."""
        import grpc
        import tensorflow as tf
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

        if self._tfserving_stub is None:
            channel = grpc.aio.insecure_channel(self.predictor_host)
            self._tfserving_stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = predict_pb2.PredictRequest()
        request.model_spec.name = self.tfserving_model
        request.model_spec.signature_name = "serving_default"
        request.inputs["features"].CopyFrom(tf.make_tensor_proto(payload.inputs[0].as_numpy(), dtype=tf.float32))
        reply = await self._tfserving_stub.Predict(request, timeout=10.0)
        outputs = []
        for name in ("quantiles", "attention"):
            value = tf.make_ndarray(reply.outputs[name]).astype("float32")
            output = InferOutput(name=name, shape=list(value.shape), datatype="FP32")
            output.set_data_from_numpy(value, binary_data=False)
            outputs.append(output)
        return InferResponse(response_id=payload.id, model_name=self.name, infer_outputs=outputs)

    # -- predictor response → forecast ----------------------------------------------------------
    async def postprocess(
        self, result: InferResponse | dict, headers: dict[str, str] | None = None, response_headers: dict | None = None
    ) -> InferResponse:
        context = _request.get()
        bars: pd.DataFrame = context["bars"]
        if isinstance(result, dict):
            result = InferResponse.from_rest(result)
        quantiles = next(o for o in result.outputs if o.name == "quantiles").as_numpy()
        outcome = forecast(quantiles, bars, self.spec)
        PREDICTIONS.labels(direction=DIRECTIONS[outcome["direction"]]).inc()
        PREDICTED_CLOSE.set(outcome["predicted_close"])
        LAST_CLOSE.set(float(bars["close"].iloc[-1]))
        source = sentiment_source(bars)
        REQUEST_SECONDS.observe(time.perf_counter() - context["started"])
        if self.request_log is not None:
            self.request_log.append(
                {
                    "request_id": context["id"],
                    "model_version": self.spec.version,
                    "rows": len(bars),
                    "first_day": str(bars["timestamp"].iloc[0].date()),
                    "last_day": str(bars["timestamp"].iloc[-1].date()),
                    "last_close": float(bars["close"].iloc[-1]),
                    "sentiment": source,
                    "latency_ms": (time.perf_counter() - context["started"]) * 1000,
                    **outcome,
                    "bars": bars.assign(timestamp=bars["timestamp"].astype("int64") // 10**9).to_dict("list"),
                }
            )
        outputs = [
            _output("predicted_log_return", outcome["predicted_log_return"], "FP64"),
            _output("predicted_close", outcome["predicted_close"], "FP64"),
            _output("direction", outcome["direction"], "INT64"),
            _output("lower", outcome["lower"], "FP64"),
            _output("upper", outcome["upper"], "FP64"),
            _output("as_of", outcome["as_of"], "BYTES"),
            _output("model_version", outcome["model_version"], "BYTES"),
        ]
        return InferResponse(
            response_id=context["id"],
            model_name=self.name,
            model_version=self.spec.label,
            infer_outputs=outputs,
            parameters={
                "sentiment": source,
                "rows": len(bars),
                "interval": f"{self.spec.quantiles}",
                "model_kind": self.spec.kind,
            },
        )


def _infer_input(window: np.ndarray) -> Any:
    from kserve import InferInput

    tensor = InferInput(name="features", shape=list(window.shape), datatype="FP32")
    tensor.set_data_from_numpy(window.astype("float32"), binary_data=False)
    return tensor


def build(args: argparse.Namespace) -> BitPredictTransformer:
    """Load and check the model's metadata (a mismatch stops the start-up), then the transformer."""
    located = locate_model(args.model_uri)
    spec = ModelSpec.from_metadata(located.metadata, located.version, max_rows=args.max_rows)
    request_log = RequestLog(args.request_log, flush_s=args.request_log_flush_s) if args.request_log else None
    return BitPredictTransformer(
        args.model_name, spec, args.predictor_protocol, args.predictor_host, request_log, args.tfserving_model
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_name", default="bitpredict")
    parser.add_argument("--model_uri", required=True, help="Model store folder, version folder or candidate dir.")
    parser.add_argument("--predictor_host", required=True, help="host:port of the predictor.")
    parser.add_argument("--predictor_protocol", choices=PROTOCOLS, default="v2")
    parser.add_argument("--tfserving_model", default=None, help="TF Serving model name (default: --model_name).")
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--http_port", type=int, default=8080)
    parser.add_argument("--grpc_port", type=int, default=8081)
    parser.add_argument("--max_rows", type=int, default=1000, help="Most rows one request may send (>= 365).")
    parser.add_argument("--request_log", default=None, help="Folder (or gs://) for the request log; off if unset.")
    parser.add_argument(
        "--request_log_flush_s", type=float, default=5.0, help="Longest wait before a batch is written."
    )
    args, _ = parser.parse_known_args(ARGV if argv is None else argv)
    transformer = build(args)
    kserve_protocol = {"v2": "v2", "grpc-v2": "grpc-v2", "tfserving": "v2"}[args.predictor_protocol]
    config = PredictorConfig(predictor_host=args.predictor_host, predictor_protocol=kserve_protocol)
    try:
        serve(
            [transformer],
            http_port=args.http_port,
            grpc_port=args.grpc_port,
            host=args.host,
            predictor_config=config,
            on_reject=lambda reason: REJECTED.labels(reason=reason).inc(),
        )
    finally:
        if transformer.request_log is not None:
            transformer.request_log.close()


if __name__ == "__main__":
    main()
