"""Pathological client input, REST and gRPC: every answer is a clear client error (4xx / INVALID_ARGUMENT), never a 5xx.

The real predictor and transformer run on 127.0.0.1 with a HAR baseline exported from the embedded sample (no
training, so the scenario starts in seconds). Two kinds of bodies are sent to the transformer:

* a fixed catalogue (``PATHOLOGICAL``): the documents that broke v2 servers before — nesting 100,000 deep,
  numbers beyond the float range, duplicate keys, invalid UTF-8, a 1 MB BYTES string, 5,000 inputs, shapes
  that disagree with the data;
* structure-aware generated ones (``rest_bodies``, ``grpc_requests``; hypothesis, derandomised so the table is
  reproducible): a valid request from the sample with one pathology of a drawn kind and size — a JSON tree of
  any depth (up to 5,000) and width (up to 20,000 leaves) placed anywhere in the document, raw number tokens,
  duplicated keys, invalid UTF-8 bytes, very long strings, thousands of inputs, disagreeing shapes; over gRPC the
  same ideas on ``ModelInferRequest`` (wrong contents for the datatype, raw contents of the wrong length, …).

Bulk content is produced by a ``random.Random`` seeded from one drawn integer, so a 20,000-leaf body costs
hypothesis one choice, not 20,000.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.bench_serving import free_port
from benchmarks.chaos import ScenarioResult

REPO = Path(__file__).resolve().parents[2]
SAMPLE_FILE = REPO / "data" / "sample" / "btc_usd_hourly.parquet"
MODEL_NAME = "bitpredict"
# gRPC codes that mean "your request was wrong" — the 4xx of gRPC. INTERNAL, UNKNOWN, DATA_LOSS (and UNAVAILABLE
# while the server should be up) are server failures: the 5xx.
GRPC_CLIENT_CODES = {"INVALID_ARGUMENT", "NOT_FOUND", "FAILED_PRECONDITION", "OUT_OF_RANGE", "RESOURCE_EXHAUSTED"}


def _tensor(data: object, name: str = "close", datatype: str = "FP64", shape: list | None = None) -> dict:
    return {"name": name, "datatype": datatype, "shape": shape or [len(data) if isinstance(data, list) else 1],
            "data": data}  # fmt: skip


PATHOLOGICAL: dict[str, bytes] = {
    "array nested 100,000 deep": b"[" * 100_000 + b"]" * 100_000,
    "object nested 5,000 deep": b'{"a":' * 5_000 + b"1" + b"}" * 5_000,
    "inputs nested 3,000 deep": b'{"inputs":' + b"[" * 3_000 + b"]" * 3_000 + b"}",
    "data nested 2,000 deep": json.dumps({"inputs": [_tensor([0])]})
    .replace("[0]", "[" * 2_000 + "0" + "]" * 2_000)
    .encode(),
    "number beyond the float range": json.dumps({"inputs": [_tensor([1.0])]}).replace("1.0", "1e400").encode(),
    "integer of 5,000 digits": json.dumps({"inputs": [_tensor([1])]}).replace("[1]", "[" + "9" * 5_000 + "]").encode(),
    "duplicate keys": b'{"inputs": [], "inputs": [{"name": "close"}]}',
    "invalid UTF-8": b'{"inputs": [{"name": "\xff\xfe"}]}',
    "a 1 MB string in a BYTES input": json.dumps(
        {"inputs": [_tensor(["x" * 1_000_000], "timestamp", "BYTES")]}
    ).encode(),
    "5,000 inputs": json.dumps({"inputs": [_tensor([1.0], f"in{i}") for i in range(5_000)]}).encode(),
    "shape that disagrees with data": json.dumps({"inputs": [_tensor([1.0, 2.0], shape=[7, 3])]}).encode(),
    "shape of 2**62": json.dumps({"inputs": [_tensor([1.0], shape=[2**62, 2**62])]}).encode(),
}


# --------------------------------------------------------------------------------------------
# the served model and the servers
# --------------------------------------------------------------------------------------------


def sample_bars(workdir: Path) -> Any:
    """The embedded sample's clean daily bars, through the real ingest (files source) and clean stages."""
    from bitpredict import storage
    from bitpredict.config import load_settings
    from bitpredict.data.clean import clean_path, run_clean
    from bitpredict.data.ingest import run_ingest

    settings = load_settings(data_dir=str(workdir / "data"))
    if not Path(clean_path(settings, "1d")).exists():
        summaries = run_ingest(settings, ["files"], files=[str(SAMPLE_FILE)])
        if not summaries or not all(s.ok for s in summaries):
            raise RuntimeError(f"importing the sample failed: {[s.error for s in summaries]}")
        run_clean(settings, "1d")
    return storage.read_parquet(clean_path(settings, "1d"))


def baseline_model(workdir: Path, daily: Any) -> Path:
    """A HAR baseline fitted on the sample, in the model store's layout (``<name>/<version>/``): served in seconds."""
    import shutil

    from bitpredict.config import ModelSettings
    from bitpredict.features.columns import TARGET
    from bitpredict.features.indicators import WARMUP, compute_indicators
    from bitpredict.features.merge import build_features
    from bitpredict.forecast import baselines
    from bitpredict.forecast.artifact import METADATA_FILE, SAVED_MODEL_DIR
    from bitpredict.forecast.train import baseline_metadata

    store = workdir / "store" / "bitpredict-lstm"
    version = store / "1"
    if (version / METADATA_FILE).exists():
        return store
    frame = build_features(compute_indicators(daily), None, WARMUP)
    frame = frame[frame[TARGET].notna()].reset_index(drop=True)
    fit = baselines.fit_baseline("har", frame, len(frame), (0.1, 0.5, 0.9), 30)
    exported = baselines.export(fit, workdir / "export")
    shutil.copytree(exported / SAVED_MODEL_DIR, version)
    (version / METADATA_FILE).write_text(json.dumps(baseline_metadata(fit, ModelSettings(window=30))))
    return store


@dataclass
class Stack:
    """The running servers: transformer REST and gRPC, predictor REST, and the processes (to check they live)."""

    rest: str
    grpc: str
    predictor_rest: str
    processes: list[subprocess.Popen] = field(default_factory=list)
    predictor_grpc: str = ""

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.processes)


def _start(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.Popen([sys.executable, *args], cwd=REPO, env=env, stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip


def stop(process: subprocess.Popen) -> None:
    """SIGTERM the process group, SIGKILL it after 20 s."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_ready(url: str, process: subprocess.Popen, log: Path, timeout_s: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return
        time.sleep(0.3)
    raise RuntimeError(f"{url} not ready after {timeout_s:.0f} s: {log.read_text()[-2000:]}")


@contextlib.contextmanager
def serving_stack(model: Path, logs: Path, transformer_args: Sequence[str] = ()) -> Iterator[Stack]:
    """The real predictor and transformer for ``model`` on 127.0.0.1 (extra transformer flags in
    ``transformer_args``, e.g. ``--calibration``); both stopped on exit."""
    logs.mkdir(parents=True, exist_ok=True)
    p_http, p_grpc, t_http, t_grpc = free_port(), free_port(), free_port(), free_port()
    predictor = _start(
        ["-m", "inference.predictor", "--model_dir", str(model), "--host", "127.0.0.1",
         "--http_port", str(p_http), "--grpc_port", str(p_grpc)], logs / "predictor.log",
    )  # fmt: skip
    transformer = _start(
        ["-m", "inference.transformer", "--model_uri", str(model), "--predictor_host", f"127.0.0.1:{p_http}",
         "--host", "127.0.0.1", "--http_port", str(t_http), "--grpc_port", str(t_grpc), *transformer_args],
        logs / "transformer.log",
    )  # fmt: skip
    try:
        wait_ready(f"http://127.0.0.1:{p_http}", predictor, logs / "predictor.log")
        wait_ready(f"http://127.0.0.1:{t_http}", transformer, logs / "transformer.log")
        yield Stack(f"http://127.0.0.1:{t_http}", f"127.0.0.1:{t_grpc}", f"http://127.0.0.1:{p_http}",
                    [predictor, transformer], f"127.0.0.1:{p_grpc}")  # fmt: skip
    finally:
        stop(transformer)
        stop(predictor)


# --------------------------------------------------------------------------------------------
# structure-aware generation
# --------------------------------------------------------------------------------------------

RAW_NUMBERS = (b"1e400", b"-1e400", b"1e-400", b"9" * 5_000, b"NaN", b"Infinity", b"-Infinity", b"1.8e308", b"-0")
BAD_UTF8 = (b"\xff", b"\xfe\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80\x80")
KEYS = ("inputs", "name", "datatype", "shape", "data", "parameters", "id", "outputs")
DATATYPES = ("FP64", "FP32", "INT64", "INT32", "BYTES", "BOOL", "UINT8", "FP16", "", "XX")


def _leaf(rng: random.Random) -> Any:
    return rng.choice([None, True, False, rng.randint(-(2**70), 2**70), rng.uniform(-1e308, 1e308),
                       "".join(chr(rng.randint(0, 0x2FFF)) for _ in range(rng.randint(0, 8))), 0, 1.5, ""])  # fmt: skip


def json_tree(rng: random.Random, depth: int, width: int) -> bytes:
    """A JSON value ``depth`` levels deep whose innermost container holds ``width`` leaves (built without
    recursion, so any depth is cheap); the levels mix arrays and objects."""
    opens, closes = [], []
    for _ in range(depth):
        if rng.random() < 0.5:
            opens.append(b"[")
            closes.append(b"]")
        else:
            opens.append(b'{"' + rng.choice(KEYS).encode() + b'":')
            closes.append(b"}")
    leaves = b",".join(json.dumps(_leaf(rng)).encode() for _ in range(max(width, 1)))
    inner = b"[" + leaves + b"]" if width != 1 else leaves
    return b"".join(opens) + inner + b"".join(reversed(closes))


def base_document(bars: Any) -> dict:
    """A valid v2 request for the last 200 sample days (what a real client sends)."""
    from inference.client import v2_request

    return v2_request(bars.tail(200).reset_index(drop=True))


def mutate_rest(document: dict, kind: str, seed: int, size: int) -> bytes:
    """``document`` with one pathology of ``kind`` and ``size`` (depth, width, count or length)."""
    rng = random.Random(seed)
    inputs = document["inputs"]
    pick = rng.randrange(len(inputs))
    if kind == "tree":  # a tree of drawn depth/width in a drawn place
        tree = json_tree(rng, depth=size % 5_001, width=rng.choice([0, 1, 3, size % 20_001]))
        place = rng.choice(["body", "inputs", "tensor", "data", "shape", "name", "datatype"])
        if place == "body":
            return tree
        if place == "inputs":
            return b'{"inputs":' + tree + b"}"
        marker = "__TREE__"
        changed = json.loads(json.dumps(document))
        if place == "tensor":
            changed["inputs"][pick] = marker
        else:
            changed["inputs"][pick][place] = marker
        return json.dumps(changed).replace(f'"{marker}"', tree.decode("latin-1")).encode("latin-1")
    text = json.dumps(document)
    if kind == "number":  # a raw token where a number goes
        return text.replace("[", "[" + rng.choice(RAW_NUMBERS).decode() + ",", 1 + size % 4).encode()
    if kind == "duplicate":  # a key given twice with different values
        key = rng.choice(KEYS[:5])
        other = json.dumps(_leaf(rng)) if rng.random() < 0.5 else json.dumps(inputs[(pick + 1) % len(inputs)])
        return text.replace(f'"{key}": ', f'"{key}": {other}, "{key}": ', 1 + size % 3).encode()
    if kind == "utf8":  # invalid UTF-8 inside a string
        raw = text.encode()
        strings = [i for i in range(len(raw)) if raw[i : i + 1] == b'"']
        at = strings[rng.randrange(len(strings))] + 1
        return raw[:at] + rng.choice(BAD_UTF8) * (1 + size % 64) + raw[at:]
    if kind == "long_string":  # a very long string in the BYTES input
        changed = json.loads(text)
        stamps = changed["inputs"][0]
        stamps["datatype"] = "BYTES"
        stamps["data"] = [*map(str, stamps["data"][:-1]), "9" * (1 + size * 97 % 3_000_000)]
        return json.dumps(changed).encode()
    if kind == "many_inputs":  # thousands of inputs
        count = 1 + size % 10_000
        extra = [_tensor([rng.random()], f"{rng.choice(['close', 'sentiment_x', 'in'])}{i}") for i in range(count)]
        return json.dumps({"inputs": [*inputs, *extra]}).encode()
    if kind == "shape":  # a shape that disagrees with the data
        changed = json.loads(text)
        shape = rng.choice([[size], [0], [2**62], [-1], [len(inputs[pick]["data"]), size % 7], [], [1] * (size % 40)])
        changed["inputs"][pick]["shape"] = shape
        return json.dumps(changed).encode()
    if kind == "datatype":  # data of one type declared as another
        changed = json.loads(text)
        changed["inputs"][pick]["datatype"] = rng.choice(DATATYPES)
        return json.dumps(changed).encode()
    raise ValueError(f"unknown mutation {kind!r}")


REST_KINDS = ("tree", "number", "duplicate", "utf8", "long_string", "many_inputs", "shape", "datatype")
GRPC_KINDS = ("shape", "datatype", "contents", "raw", "utf8", "long_string", "many_inputs", "names")


def grpc_request(document: dict, kind: str, seed: int, size: int) -> Any:
    """A ``ModelInferRequest`` built from ``document`` with one pathology of ``kind`` and ``size``."""
    from kserve.protocol.grpc import grpc_predict_v2_pb2 as pb

    rng = random.Random(seed)
    request = pb.ModelInferRequest(model_name=MODEL_NAME)
    tensors = json.loads(json.dumps(document["inputs"]))
    if kind == "many_inputs":
        tensors += [_tensor([rng.random()], f"extra{i}") for i in range(1 + size % 5_000)]
    pick = rng.randrange(len(tensors))
    raw_mode = kind == "raw"
    for index, tensor in enumerate(tensors):
        datatype, shape, data = tensor["datatype"], list(tensor["shape"]), tensor["data"]
        contents = pb.InferTensorContents()
        if index == pick and kind == "shape":
            shape = rng.choice([[size], [0], [2**62], [-1], [len(data), 1 + size % 7], [], [1] * (size % 40)])
        if index == pick and kind == "datatype":
            datatype = rng.choice(DATATYPES)
        if index == pick and kind == "names":
            tensor["name"] = rng.choice(["", "close", "\x00", "n" * (1 + size % 100_000), "sentiment_"])
        if index == pick and kind in ("utf8", "long_string"):
            datatype = "BYTES"
            tail = rng.choice(BAD_UTF8) * (1 + size % 64) if kind == "utf8" else b"9" * (1 + size * 97 % 3_000_000)
            contents.bytes_contents.extend([str(v).encode() for v in data[:-1]] + [tail])
        elif index == pick and kind == "contents":  # contents of another type than the datatype says
            field_name = rng.choice(["bool_contents", "int_contents", "int64_contents", "uint64_contents",
                                     "fp32_contents", "fp64_contents", "bytes_contents"])  # fmt: skip
            count = size % 400
            values: list[Any] = {
                "bool_contents": [rng.random() < 0.5 for _ in range(count)],
                "bytes_contents": [bytes(rng.randrange(256) for _ in range(rng.randrange(9))) for _ in range(count)],
                "fp32_contents": [rng.uniform(-1e38, 1e38) for _ in range(count)],
                "fp64_contents": [rng.choice([float("nan"), float("inf"), 1e308, -1e308]) for _ in range(count)],
            }.get(field_name, [rng.randint(0, 2**31 - 1) for _ in range(count)])
            getattr(contents, field_name).extend(values)
        elif raw_mode:
            request.raw_input_contents.append(bytes(rng.randrange(256) for _ in range(size % 4_000)))
        elif datatype == "INT64":
            contents.int64_contents.extend(int(v) for v in data)
        else:
            contents.fp64_contents.extend(float(v) for v in data)
        request.inputs.append(
            pb.ModelInferRequest.InferInputTensor(
                name=tensor["name"], datatype=datatype, shape=shape, contents=None if raw_mode else contents
            )
        )
    return request


# --------------------------------------------------------------------------------------------
# sending and counting
# --------------------------------------------------------------------------------------------


@dataclass
class Tally:
    """What came back, by code; the 5xx ones keep a sample of the body that caused them."""

    codes: Counter[str] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    slowest_s: float = 0.0

    @property
    def sent(self) -> int:
        return sum(self.codes.values())

    def add(self, code: str, seconds: float, is_server_error: bool, what: str) -> None:
        self.codes[code] += 1
        self.slowest_s = max(self.slowest_s, seconds)
        if is_server_error:
            self.server_errors.append(f"{code}: {what[:200]}")


def send_rest(client: Any, url: str, body: bytes, tally: Tally) -> None:
    import httpx

    started = time.monotonic()
    try:
        response = client.post(f"{url}/v2/models/{MODEL_NAME}/infer", content=body,
                               headers={"content-type": "application/json"}, timeout=30)  # fmt: skip
        code, bad = str(response.status_code), response.status_code >= 500
        detail = response.text[:200]
    except httpx.HTTPError as exc:  # a dropped connection is a server failure too
        code, bad, detail = f"error:{type(exc).__name__}", True, str(exc)
    tally.add(code, time.monotonic() - started, bad, f"{detail} ← {body[:120]!r}")


def send_grpc(stub: Any, request: Any, tally: Tally) -> None:
    import grpc

    started = time.monotonic()
    try:
        stub.ModelInfer(request, timeout=30)
        code, bad, detail = "grpc:OK", False, ""
    except grpc.RpcError as exc:
        name = exc.code().name
        code, bad, detail = f"grpc:{name}", name not in GRPC_CLIENT_CODES, str(exc.details())
    tally.add(code, time.monotonic() - started, bad, f"{detail} ← {str(request)[:120]}")


def generated(strategy_kinds: tuple[str, ...], examples: int, consume: Callable[[str, int, int], None]) -> None:
    """Draw ``examples`` (kind, seed, size) triples with hypothesis (derandomised: the same ones every run)."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import strategies as st

    @settings(max_examples=examples, derandomize=True, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(st.sampled_from(strategy_kinds), st.integers(0, 2**32 - 1), st.integers(0, 10**7))
    def draw(kind: str, seed: int, size: int) -> None:
        consume(kind, seed, size)

    draw()


def fuzz(stack: Stack, document: dict, examples: int) -> tuple[Tally, Tally]:
    """The catalogue and ``examples`` generated bodies per transport; returns the REST and gRPC tallies."""
    import grpc
    import httpx
    from kserve.protocol.grpc import grpc_predict_v2_pb2_grpc as pb_grpc

    rest, remote = Tally(), Tally()
    with httpx.Client() as client:
        for body in PATHOLOGICAL.values():
            send_rest(client, stack.rest, body, rest)
        generated(REST_KINDS, examples, lambda k, s, n: send_rest(client, stack.rest, mutate_rest(document, k, s, n),
                                                                    rest))  # fmt: skip
    options = [("grpc.max_send_message_length", 64 * 1024 * 1024)]
    with grpc.insecure_channel(stack.grpc, options=options) as channel:
        stub = pb_grpc.GRPCInferenceServiceStub(channel)
        generated(GRPC_KINDS, examples, lambda k, s, n: send_grpc(stub, grpc_request(document, k, s, n), remote))
    return rest, remote


def run(workdir: Path, quick: bool = False) -> ScenarioResult:
    """Fuzz the real transformer over REST and gRPC; a valid request must still be answered afterwards."""
    import httpx

    from inference.client import predict_grpc, predict_rest

    workdir.mkdir(parents=True, exist_ok=True)
    daily = sample_bars(workdir)
    model = baseline_model(workdir, daily)
    document = base_document(daily)
    bars = daily.tail(200).reset_index(drop=True)
    with serving_stack(model, workdir / "logs") as stack:
        rest, remote = fuzz(stack, document, 60 if quick else 300)
        alive = stack.alive() and httpx.get(f"{stack.rest}/v2/health/live", timeout=5).status_code == 200
        served = predict_rest(stack.rest, bars) and predict_grpc(stack.grpc, bars)  # still serving after it all
    errors = Counter({k: v for k, v in (rest.codes + remote.codes).items() if k not in ("200", "grpc:OK")})
    server_errors = rest.server_errors + remote.server_errors
    notes = f"REST {rest.sent} ({len(PATHOLOGICAL)} catalogued), gRPC {remote.sent}"
    if not (alive and served):
        notes += "; the servers did not survive"
    if server_errors:
        notes += "; first 5xx: " + server_errors[0]
    return ScenarioResult(
        scenario="pathological client input (REST + gRPC)",
        requests=rest.sent + remote.sent,
        errors=errors,
        max_latency_s=max(rest.slowest_s, remote.slowest_s),
        recovery_s=None,
        lost=0 if alive and served else 1,
        client_input_5xx=len(server_errors),
        notes=notes,
    )
