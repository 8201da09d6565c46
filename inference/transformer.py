"""The KServe transformer: raw recent market rows in, a next-day forecast out, over the v2 protocol.

``POST /v2/models/bitpredict/infer`` (REST) or ``ModelInfer`` (gRPC) with inputs ``timestamp`` (INT64 unix
seconds or BYTES ISO-8601 dates), ``open``, ``high``, ``low``, ``close``, ``volume`` (FP64/FP32), all of
length N, oldest first, and optionally ``is_imputed`` (0/1: a filled bar) and ``sentiment_<column>`` daily
aggregates. The rows become the model's [1, W, F] input through ``bitpredict.forecast.serving`` — the training code —
and the predictor's quantiles become ``predicted_log_return``, ``predicted_close``, ``direction``, ``lower``,
``upper``, ``as_of`` and ``model_version`` (shape [1] each, as ever), and — for every horizon of the model's
``horizons`` (1, 7, 30 days; [1] for a model exported before the horizon axis) — the quantiles, their USD closes and
the risk figures (``HORIZON_OUTPUTS``; ``bitpredict.forecast.risk``). Horizon 1 is the 1-day forecast itself.

The predictor is reached over one pooled, kept-alive connection per worker (``inference.upstream``):
``--predictor_protocol v2`` (REST) or ``grpc-v2`` (gRPC) to a v2 server (the local predictor, Triton), or
``--predictor_runtime tfserving`` for TF Serving's gRPC ``PredictionService.Predict`` (KServe's TensorFlow
runtime). A predictor that is down, slow past ``--predictor_request_timeout_seconds`` or failing costs that
request a 503, never the transformer; the predictor refusing the window as invalid is the client's 400, and a
reply that is not a forecast a 502. A client sees a generic message and a request id, the log the detail.

    python -m inference.transformer --model_uri data/models/serving/bitpredict-lstm \\
        --predictor_host 127.0.0.1:8086 --predictor_protocol grpc-v2 --http_port 8080 --grpc_port 8081

Every KServe model-server flag works (``--workers``, ``--max_threads``, ...), plus ``inference.server``'s
``--host``, ``--max_in_flight`` and ``--retry_after_s``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
from kserve import InferOutput, InferRequest, InferResponse, Model
from kserve.errors import InvalidInput, ServerNotReady
from prometheus_client import Counter, Gauge, Histogram

from bitpredict import storage
from bitpredict.config import load_settings
from bitpredict.evaluation.calibration import AciState, apply_levels
from bitpredict.features.online import DailyBars
from bitpredict.forecast.artifact import locate
from bitpredict.forecast.serving import (
    HORIZON_OUTPUTS,
    ModelSpec,
    RequestError,
    feature_window,
    forecast,
    horizon_forecast,
    horizon_rows,
    optional_inputs,
    parse_bars,
    sentiment_source,
)
from bitpredict.operations.request_log import DEFAULT_MAX_BYTES as DEFAULT_LOG_BYTES
from bitpredict.operations.request_log import RequestLog
from inference.server import parser, serve
from inference.upstream import (
    PredictorBadReply,
    PredictorClient,
    PredictorRefused,
    PredictorReply,
    PredictorUnavailable,
    client_for,
)

log = logging.getLogger(__name__)

PREDICTIONS = Counter("bitpredict_predictions_total", "Forecasts served, by predicted direction", ["direction"])
REJECTED = Counter("bitpredict_rejected_requests_total", "Requests refused with a 4xx, by reason", ["reason"])
MODEL_INFO = Gauge("bitpredict_model_info", "The model version being served (value 1)", ["model", "version"])
PREDICTED_CLOSE = Gauge("bitpredict_predicted_close", "The latest forecast of the next-day close (USD)")
LAST_CLOSE = Gauge("bitpredict_last_close", "The latest close a client sent (USD)")
LOG_DROPPED = Counter(
    "bitpredict_request_log_dropped_total", "Request-log records dropped (queue full or write failed)"
)
PREDICTOR_ERRORS = Counter("bitpredict_predictor_errors_total", "Predictor calls that failed (answered 503)")
REQUEST_SECONDS = Histogram(
    "bitpredict_request_seconds",
    "Whole forecast latency in the transformer: validation, features, predictor call, response",
    buckets=(0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5),
)

RUNTIMES = ("v2", "tfserving")  # a v2 server (local predictor, Triton) or TF Serving's own gRPC API
DIRECTIONS = {1: "up", -1: "down", 0: "flat"}  # flat: the median is exactly today's close (a baseline's)
# The forecast's outputs, declared once: the metadata route lists them, postprocess fills them in this order.
OUTPUTS = (
    ("predicted_log_return", "FP64"),
    ("predicted_close", "FP64"),
    ("direction", "INT64"),
    ("lower", "FP64"),
    ("upper", "FP64"),
    ("as_of", "BYTES"),
    ("model_version", "BYTES"),
    # models with the levels 0.05 … 0.95 (every model since the champion-on-evidence change) add these:
    ("predicted_volatility", "FP64"),  # next-day σ of the log return: (q90 − q10) / 2.563
    ("lower_90", "FP64"),
    ("upper_90", "FP64"),
)


class BadGateway(ServerNotReady):
    """The predictor answered something that is not a forecast: 502 over REST (UNAVAILABLE over gRPC)."""

    http_status = 502


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
    """A v2 output: a scalar as shape [1] (the 1-day outputs, as before), an array in its own shape."""
    kind = object if datatype == "BYTES" else {"FP64": "float64", "INT64": "int64"}.get(datatype)
    array = np.asarray(value, dtype=kind)
    if array.ndim == 0:
        array = array.reshape(1)
    output = InferOutput(name=name, shape=list(array.shape), datatype=datatype)
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
        timeout_s: float = 5.0,
        calibration: AciState | None = None,
    ) -> None:
        super().__init__(name)
        self.spec = spec
        self.calibration = calibration  # live ACI levels for this model version (the monitor's), or None
        self.protocol = protocol  # the wire protocol to the predictor: v2, grpc-v2 or tfserving
        self.predictor_host = predictor_host
        self.request_log = request_log
        self.tfserving_model = tfserving_model or name
        remote = self.tfserving_model if protocol == "tfserving" else name
        self.client: PredictorClient = client_for(protocol, predictor_host, remote, timeout_s)
        self.settings = load_settings()
        self._feature_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="features")
        MODEL_INFO.labels(model=name, version=spec.version).set(1)
        self.ready = True  # the metadata was loaded and checked before this object existed

    def stop(self) -> None:
        """KServe's teardown hook (run when the server unloads the model): the request log's last batch is written."""
        if self.request_log is not None:
            self.request_log.close()
            self.request_log = None
        super().stop()

    # -- metadata (GET /v2/models/<name>) ----------------------------------------------------------
    def get_input_types(self) -> list[dict[str, Any]]:
        n = [-1]
        market = [{"name": c, "datatype": "FP64", "shape": n} for c in ("open", "high", "low", "close", "volume")]
        optional = [{"name": c, "datatype": "FP64", "shape": n, "optional": True} for c in optional_inputs()]
        return [{"name": "timestamp", "datatype": "INT64|BYTES", "shape": n}, *market, *optional]

    def get_output_types(self) -> list[dict[str, Any]]:
        sizes = {"H": len(self.spec.horizons), "Q": len(self.spec.quantiles)}
        horizon = [
            {"name": name, "datatype": datatype, "shape": [sizes[axis] for axis in axes]}
            for name, datatype, axes in HORIZON_OUTPUTS
        ]
        return [{"name": name, "datatype": datatype, "shape": [1]} for name, datatype in OUTPUTS] + horizon

    # -- v2 request → the model's window ----------------------------------------------------------
    async def preprocess(self, payload: InferRequest | dict, headers: dict[str, str] | None = None) -> dict:
        """The window [1, W, F] and what postprocess needs, as a plain dict (KServe passes it on untouched).

        The feature code runs in one thread of its own, so the event loop stays free to read, shed and answer
        other requests meanwhile: the in-flight bound (``inference.server``) then counts real work, not requests
        waiting in front of a busy loop. One thread: the code holds the GIL, more threads would only take turns
        with each other and starve the loop.
        """
        started = time.perf_counter()
        if not isinstance(payload, InferRequest):
            self._reject("v1_request", "use the v2 protocol: POST /v2/models/<name>/infer")
        bars, window = await asyncio.get_running_loop().run_in_executor(self._feature_thread, self._features, payload)
        request_id = payload.id or uuid.uuid4().hex
        return {"window": window, "bars": bars, "started": started, "id": request_id}

    def _features(self, payload: InferRequest) -> tuple[DailyBars, np.ndarray]:
        try:
            bars = parse_bars(_decode(payload), self.spec)  # arrays end to end: no DataFrame per request
            window = feature_window(bars, self.spec, self.settings.clean)
        except RequestError as exc:
            self._reject(exc.reason, str(exc))
        return bars, np.asarray(window, dtype="float32")

    def _reject(self, reason: str, message: str) -> None:
        REJECTED.labels(reason=reason).inc()
        raise InvalidInput(message)

    # -- the predictor call ---------------------------------------------------------------------
    async def predict(
        self, payload: dict, headers: dict[str, str] | None = None, response_headers: dict | None = None
    ) -> dict:
        try:
            reply = await self.client.infer(payload["window"], payload["id"])
        except PredictorRefused as exc:  # the window (the client's rows) refused: a 400 that names nothing of ours
            REJECTED.labels(reason="predictor_refused").inc()
            log.warning("predictor refused the input", extra={"request_id": payload["id"], "error": str(exc)})
            raise InvalidInput(f"the model refused this request's input (request id {payload['id']})") from exc
        except PredictorUnavailable as exc:  # down, timed out, failing or a bad reply: the cause in the log only
            PREDICTOR_ERRORS.inc()
            log.error("predictor call failed", extra={"request_id": payload["id"], "predictor": self.predictor_host,
                                                      "error": str(exc)})  # fmt: skip
            error = BadGateway if isinstance(exc, PredictorBadReply) else ServerNotReady
            raise error(f"the model is not available (request id {payload['id']})") from exc
        return {**payload, "reply": reply}

    # -- quantiles → forecast -----------------------------------------------------------------------
    async def postprocess(
        self, result: dict, headers: dict[str, str] | None = None, response_headers: dict | None = None
    ) -> InferResponse:
        bars: DailyBars = result["bars"]
        started = result["started"]
        reply: PredictorReply = result["reply"]
        try:
            quantiles = np.asarray(reply.quantiles, dtype="float64").reshape(1, -1)
            if self.calibration is not None and quantiles.shape[1] == len(self.spec.quantiles):
                quantiles = apply_levels(quantiles, self.spec.quantiles, self.calibration)
            outcome = forecast(quantiles[0], bars, self.spec)
            horizons = horizon_forecast(horizon_rows(reply.horizon_quantiles, quantiles[0]), bars, self.spec)
        except (RuntimeError, ValueError) as exc:  # a reply that is not a forecast
            PREDICTOR_ERRORS.inc()
            log.error("predictor reply unusable", extra={"request_id": result["id"], "error": str(exc)})
            raise BadGateway(f"the model is not available (request id {result['id']})") from exc
        PREDICTIONS.labels(direction=DIRECTIONS[outcome["direction"]]).inc()
        PREDICTED_CLOSE.set(outcome["predicted_close"])
        last_close = float(bars.close[-1])
        LAST_CLOSE.set(last_close)
        source = sentiment_source(bars)
        REQUEST_SECONDS.observe(time.perf_counter() - started)
        if self.request_log is not None:
            frame = bars.to_frame()  # the logged rows keep parse_request's columns (the drift job reads them)
            self.request_log.append(
                {
                    "request_id": result["id"],
                    "model_version": self.spec.version,
                    "rows": len(bars),
                    "first_day": str(frame["timestamp"].iloc[0].date()),
                    "last_day": str(frame["timestamp"].iloc[-1].date()),
                    "last_close": last_close,
                    "sentiment": source,
                    "latency_ms": (time.perf_counter() - started) * 1000,
                    **outcome,
                    "bars": frame.assign(timestamp=frame["timestamp"].astype("int64") // 10**9).to_dict("list"),
                }
            )
        return InferResponse(
            response_id=result["id"],
            model_name=self.name,
            model_version=self.spec.label,
            infer_outputs=[
                *(_output(name, outcome[name], datatype) for name, datatype in OUTPUTS if name in outcome),
                *(_output(name, horizons[name], datatype) for name, datatype, _ in HORIZON_OUTPUTS),
            ],
            parameters={
                "sentiment": source,
                "rows": len(bars),
                "interval": "80 % (q10-q90); lower_90/upper_90: 90 % (q05-q95)",
                "levels": ",".join(f"{q:g}" for q in self.spec.quantiles),
                "model_kind": self.spec.kind,
                "levels_applied": _applied(self.calibration),
                "horizons": ",".join(str(h) for h in self.spec.horizons),
                "horizons_calibrated": "none" if self.calibration is None else str(self.spec.horizons[0]),
            },
        )


def _applied(calibration: AciState | None) -> str:
    """What the response says of the calibration: the nominal tail levels and the levels actually served."""
    if calibration is None:
        return "nominal (no live calibration)"
    pairs = zip(calibration.targets, calibration.levels, strict=True)
    return "ACI: " + ", ".join(f"{t:g}→{level:.4f}" for t, level in pairs)


def load_calibration(uri: str | None, spec: ModelSpec) -> AciState | None:
    """The monitor's ACI state (``aci.json``) when it belongs to this model version; else None (nominal levels)."""
    if not uri or not storage.exists(uri):
        return None
    record = json.loads(storage.read_text(uri))
    if str(record.get("model_version")) != spec.version:
        log.warning(
            "calibration is for another model version: serving nominal levels",
            extra={"calibration_version": record.get("model_version"), "model_version": spec.version},
        )
        return None
    state = AciState.from_json(json.dumps(record["aci"]))
    apply_levels(np.zeros((1, len(spec.quantiles))), spec.quantiles, state)  # refuses a state for other levels
    return state


def build(args: argparse.Namespace) -> BitPredictTransformer:
    """Load and check the model's metadata (a mismatch stops the start-up), then the transformer."""
    located = locate(args.model_uri)
    spec = ModelSpec.from_metadata(located.metadata, located.version, max_rows=args.max_rows)
    request_log = (
        RequestLog(args.request_log, flush_s=args.request_log_flush_s, max_bytes=args.request_log_max_bytes,
                   on_drop=LOG_DROPPED.inc)
        if args.request_log
        else None
    )  # fmt: skip
    protocol = "tfserving" if args.predictor_runtime == "tfserving" else args.predictor_protocol
    return BitPredictTransformer(
        args.model_name,
        spec,
        protocol,
        args.predictor_host,
        request_log,
        args.tfserving_model,
        timeout_s=float(args.predictor_request_timeout_seconds),
        calibration=load_calibration(args.calibration, spec),
    )


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    """KServe's model-server flags (``inference.server.parser``) and the transformer's own."""
    cli = parser(__doc__)
    cli.add_argument("--model_uri", required=True, help="Model store folder, version folder or candidate dir.")
    cli.add_argument(
        "--predictor_runtime",
        choices=RUNTIMES,
        default="v2",
        help="v2: a v2 server spoken as --predictor_protocol; tfserving: TF Serving's gRPC PredictionService.",
    )
    cli.add_argument("--tfserving_model", default=None, help="TF Serving model name (default: --model_name).")
    cli.add_argument("--max_rows", type=int, default=1000, help="Most rows one request may send (>= 365).")
    cli.add_argument("--request_log", default=None, help="Folder (or gs://) for the request log; off if unset.")
    cli.add_argument("--request_log_flush_s", type=float, default=5.0, help="Longest wait before a batch is written.")
    cli.add_argument(
        "--request_log_max_bytes",
        type=int,
        default=DEFAULT_LOG_BYTES,
        help="Most bytes of records waiting to be written per worker; past it records are dropped and counted.",
    )
    cli.add_argument(
        "--calibration",
        default=None,
        help="The forecast monitor's aci.json (reports/drift/aci.json): serve the quantiles at its live levels.",
    )
    cli.set_defaults(predictor_protocol="v2", predictor_request_timeout_seconds=5)
    args, _ = cli.parse_known_args(argv)
    if not args.predictor_host:
        cli.error("--predictor_host is required (host:port of the predictor)")
    if args.predictor_runtime == "v2" and args.predictor_protocol not in ("v2", "grpc-v2"):
        cli.error(f"--predictor_protocol {args.predictor_protocol}: the transformer speaks v2 or grpc-v2")
    return args


def main(argv: list[str] | None = None) -> None:
    args = arguments(argv)
    # build runs in each worker: its own request-log writer and predictor connection
    serve(lambda: [build(args)], args, on_reject=lambda reason: REJECTED.labels(reason=reason).inc())


if __name__ == "__main__":
    main()
