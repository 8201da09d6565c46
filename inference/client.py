"""A v2 client for the BitPredict transformer: bars in, forecast out (REST with httpx, or gRPC).

Used by ``make serve``'s example, the UI, the benchmark and the tests; any KServe v2 client works as well.

A request carries what the model was trained with for those days (the served-input contract): the daily bars,
their ``is_imputed`` flag when they come from the clean table (it has that column), and the day's sentiment
aggregates (``bitpredict.features.columns.request_sentiment`` turns the published ``sentiment_daily`` table into them).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

MARKET = ("open", "high", "low", "close", "volume")
IMPUTED = "is_imputed"


def with_sentiment(bars: pd.DataFrame, daily: pd.DataFrame | None) -> pd.DataFrame | None:
    """The sentiment inputs for these bars' days from a daily sentiment table (None when there is none)."""
    if daily is None:
        return None
    from bitpredict.features.columns import request_sentiment

    sentiment = request_sentiment(daily, bars["timestamp"])
    return sentiment if len(sentiment.columns) else None


def v2_request(bars: pd.DataFrame, sentiment: pd.DataFrame | None = None, request_id: str | None = None) -> dict:
    """The JSON body of ``POST /v2/models/bitpredict/infer`` for these daily bars (oldest first).

    ``bars`` may carry ``is_imputed`` (rows of the clean table do): it is sent, so a filled day is served as it
    was trained. ``sentiment``: one row per bar, columns without the ``sentiment_`` prefix (``with_sentiment``).
    """
    n = len(bars)
    stamps = pd.to_datetime(bars["timestamp"], utc=True).astype("int64") // 10**9
    inputs: list[dict[str, Any]] = [{"name": "timestamp", "shape": [n], "datatype": "INT64", "data": stamps.tolist()}]
    for name in MARKET:
        inputs.append({"name": name, "shape": [n], "datatype": "FP64", "data": bars[name].astype(float).tolist()})
    if IMPUTED in bars.columns:
        flags = bars[IMPUTED].astype(float).tolist()
        inputs.append({"name": IMPUTED, "shape": [n], "datatype": "FP64", "data": flags})
    if sentiment is not None:
        for column in sentiment.columns:
            values = sentiment[column].astype(float).tolist()
            inputs.append({"name": f"sentiment_{column}", "shape": [n], "datatype": "FP64", "data": values})
    body: dict[str, Any] = {"inputs": inputs}
    if request_id:
        body["id"] = request_id
    return body


def _value(name: str, data: list[Any], shape: list[int]) -> Any:
    """A 1-day output as its scalar (shape [1], as ever); a per-horizon output (``HORIZON_OUTPUTS``) as lists [H],
    [Q] or [H][Q] — a list even for a model with one horizon, so a caller never has to guess."""
    from bitpredict.forecast.serving import HORIZON_OUTPUTS

    if list(shape) == [1] and name not in {n for n, _, _ in HORIZON_OUTPUTS}:
        return data[0]
    return np.asarray(data, dtype=object).reshape([int(d) for d in shape]).tolist()


def parse_response(document: dict) -> dict[str, Any]:
    """``outputs`` → {name: scalar, or a list [H] / [Q] / [H][Q] for the per-horizon outputs}, plus ``parameters``."""
    out = {o["name"]: _value(o["name"], o["data"], o.get("shape") or [1]) for o in document["outputs"]}
    out["parameters"] = document.get("parameters") or {}
    return out


def predict_rest(
    url: str,
    bars: pd.DataFrame,
    model: str = "bitpredict",
    timeout: float = 10.0,
    sentiment: pd.DataFrame | None = None,
) -> dict[str, Any]:
    import httpx

    body = v2_request(bars, sentiment)
    response = httpx.post(f"{url.rstrip('/')}/v2/models/{model}/infer", json=body, timeout=timeout)
    if response.status_code != 200:
        raise RuntimeError(f"{response.status_code}: {response.text}")
    return parse_response(response.json())


def predict_grpc(
    target: str,
    bars: pd.DataFrame,
    model: str = "bitpredict",
    timeout: float = 10.0,
    sentiment: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """The same request over KServe's v2 gRPC ``ModelInfer``."""
    import grpc
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

    body = v2_request(bars, sentiment)
    request = pb.ModelInferRequest(model_name=model)
    for tensor in body["inputs"]:
        contents = (
            pb.InferTensorContents(int64_contents=tensor["data"])
            if tensor["datatype"] == "INT64"
            else pb.InferTensorContents(fp64_contents=tensor["data"])
        )
        request.inputs.append(
            pb.ModelInferRequest.InferInputTensor(
                name=tensor["name"], datatype=tensor["datatype"], shape=tensor["shape"], contents=contents
            )
        )
    with grpc.insecure_channel(target) as channel:
        reply = pb_grpc.GRPCInferenceServiceStub(channel).ModelInfer(request, timeout=timeout)
    out: dict[str, Any] = {}
    for i, tensor in enumerate(reply.outputs):
        raw = reply.raw_output_contents[i] if reply.raw_output_contents else None
        if raw is not None:
            dtype = {"FP64": "<f8", "INT64": "<i8", "FP32": "<f4"}.get(tensor.datatype)
            values = np.frombuffer(raw, dtype=dtype).tolist() if dtype else _bytes(raw)
        else:
            c = tensor.contents
            values = list(c.fp64_contents) or list(c.int64_contents) or [b.decode() for b in c.bytes_contents]
        out[tensor.name] = _value(tensor.name, values, list(tensor.shape))
    out["parameters"] = {k: getattr(v, v.WhichOneof("parameter_choice")) for k, v in reply.parameters.items()}
    return out


def _bytes(raw: bytes) -> list[str]:
    """A raw BYTES tensor: each element a 4-byte little-endian length, then the bytes."""
    values, at = [], 0
    while at < len(raw):
        length = int.from_bytes(raw[at : at + 4], "little")
        values.append(raw[at + 4 : at + 4 + length].decode())
        at += 4 + length
    return values


def main(argv: list[str] | None = None) -> None:
    """Print the v2 request body for the last ``--rows`` bars of a parquet/CSV file of daily bars (with the day's
    sentiment from ``--sentiment``, e.g. data/interim/sentiment_daily.parquet)."""
    import argparse
    import json
    import sys

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("bars", help="parquet or CSV with timestamp, open, high, low, close, volume")
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument("--sentiment", default=None, help="daily sentiment parquet (the sentiment stage's output)")
    args = parser.parse_args(argv)
    table = pd.read_parquet(args.bars) if args.bars.endswith(".parquet") else pd.read_csv(args.bars)
    bars = table.tail(args.rows).reset_index(drop=True)
    bars["timestamp"] = pd.to_datetime(bars["timestamp"], utc=True)
    daily = pd.read_parquet(args.sentiment) if args.sentiment else None
    json.dump(v2_request(bars, with_sentiment(bars, daily)), sys.stdout)


if __name__ == "__main__":
    main()
