"""The one-machine predictor: the exported SavedModel behind KServe's v2 REST and gRPC endpoints.

In the cluster the predictor is TF Serving (or Triton); here neither runs, so this ``kserve.Model`` loads
the same SavedModel with TensorFlow and answers ``POST /v2/models/<name>/infer`` with the signature's
outputs. Input ``features`` FP32 [B, W, F]; outputs ``quantiles`` FP32 [B, Q] and ``attention`` FP32 [B, W], and
``horizon_quantiles`` FP32 [B, H, Q] from a model exported with the metadata's ``horizons`` (issue 31).
``GET /v2/models/<name>`` names them with their datatypes and shapes, read from the model's own
``bitpredict_model.json`` (``input``/``outputs``), so a client sees the contract of the model actually loaded
(the network or a baseline exported with the same contract).

    python -m inference.predictor --model_dir data/models/serving/bitpredict-lstm --http_port 8085 --grpc_port 8086

Every KServe model-server flag works (``--workers``, ``--max_threads``, ...), plus ``inference.server``'s
``--host``, ``--max_in_flight`` and ``--retry_after_s``.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import numpy as np
from kserve import InferOutput, InferRequest, InferResponse, Model
from kserve.errors import InvalidInput

from bitpredict.forecast.artifact import HORIZON_QUANTILES_OUTPUT, INPUT_NAME, OUTPUTS, SIGNATURE, locate
from inference.server import parser, serve

log = logging.getLogger(__name__)

DATATYPES = {"float32": "FP32", "float64": "FP64", "int64": "INT64", "int32": "INT32"}


def tensor_types(metadata: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The v2 metadata entries (name, datatype, shape; -1 for a free dimension) of the model's tensors.

    ``input`` is ``{"name", "dtype", "shape"}``; ``outputs`` maps each name to its shape (float32) or to
    ``{"dtype", "shape"}``.
    """

    def shape(dims: list[Any]) -> list[int]:
        return [-1 if d is None else int(d) for d in dims]

    spec = metadata.get("input") or {}
    window, n_features = metadata.get("window"), len(metadata.get("feature_columns", []))
    inputs = [
        {
            "name": spec.get("name", INPUT_NAME),
            "datatype": DATATYPES.get(str(spec.get("dtype", "float32")), "FP32"),
            "shape": shape(spec.get("shape") or [None, window, n_features]),
        }
    ]
    outputs = []
    for name, value in (metadata.get("outputs") or {}).items():
        entry = value if isinstance(value, dict) else {"shape": value}
        outputs.append(
            {
                "name": name,
                "datatype": DATATYPES.get(str(entry.get("dtype", "float32")), "FP32"),
                "shape": shape(entry.get("shape") or [None]),
            }
        )
    return inputs, outputs


class SavedModelPredictor(Model):
    def __init__(self, name: str, model_dir: str) -> None:
        super().__init__(name)
        self.model_dir = model_dir
        self.signature: Any = None
        self.window = 0
        self.n_features = 0
        self.version = ""
        self.kind = ""
        self.metadata: dict[str, Any] = {}
        self.outputs: tuple[str, ...] = OUTPUTS

    def load(self) -> bool:
        from bitpredict.runtime import quiet_tensorflow

        quiet_tensorflow()
        import tensorflow as tf

        located = locate(self.model_dir)
        self.version = located.version
        self.metadata = located.metadata
        self.kind = str(located.metadata.get("kind", "lstm"))
        self.window = int(located.metadata["window"])
        self.n_features = len(located.metadata["feature_columns"])
        loaded = tf.saved_model.load(located.saved_model_dir)
        self.signature = loaded.signatures[SIGNATURE]
        self._keep = loaded  # the signature needs its object alive
        produced = tuple(self.signature.structured_outputs)
        self.outputs = tuple(o for o in OUTPUTS if o in produced) + tuple(o for o in produced if o not in OUTPUTS)
        horizons = located.metadata.get("horizons") or [1]
        if len(horizons) > 1 and HORIZON_QUANTILES_OUTPUT not in produced:
            raise RuntimeError(f"metadata names horizons {horizons}; the SavedModel lacks {HORIZON_QUANTILES_OUTPUT}")
        spec = self.signature.structured_input_signature[1][INPUT_NAME]
        if spec.shape.as_list()[1:] != [self.window, self.n_features]:
            raise RuntimeError(
                f"SavedModel input {spec.shape} does not match the metadata [None, {self.window}, {self.n_features}]"
            )
        self.ready = True
        log.info("predictor ready", extra={"model": self.name, "version": self.version, "kind": self.kind})
        return self.ready

    # -- metadata (GET /v2/models/<name>): the loaded model's own tensors -----------------------------
    def get_input_types(self) -> list[dict[str, Any]]:
        return tensor_types(self.metadata)[0]

    def get_output_types(self) -> list[dict[str, Any]]:
        declared = tensor_types(self.metadata)[1]
        return declared or [{"name": name, "datatype": "FP32", "shape": [-1]} for name in self.outputs]

    async def predict(self, payload: InferRequest, headers: dict[str, str] | None = None) -> InferResponse:
        """The SavedModel runs in the server's thread pool (TensorFlow releases the GIL): the event loop stays free
        to shed requests past the in-flight bound at once instead of queueing them behind a running call."""
        return await asyncio.get_running_loop().run_in_executor(None, self._predict, payload)

    def _predict(self, payload: InferRequest) -> InferResponse:
        import tensorflow as tf

        inputs = {i.name: i for i in payload.inputs}
        if set(inputs) != {INPUT_NAME}:
            raise InvalidInput(f"expected exactly one input '{INPUT_NAME}', got {sorted(inputs)}")
        features = inputs[INPUT_NAME]
        if features.datatype != "FP32":
            raise InvalidInput(f"input '{INPUT_NAME}': datatype {features.datatype}, expected FP32")
        try:
            array = np.asarray(features.as_numpy(), dtype="float32")
        except Exception as exc:  # malformed tensor data of any kind is the client's error
            raise InvalidInput(f"input '{INPUT_NAME}': cannot decode the data ({exc})") from None
        if array.ndim != 3 or list(array.shape[1:]) != [self.window, self.n_features]:
            raise InvalidInput(
                f"input '{INPUT_NAME}': shape {list(array.shape)}, expected [B, {self.window}, {self.n_features}]"
            )
        if not np.isfinite(array).all():
            raise InvalidInput(f"input '{INPUT_NAME}': NaN or infinite values")
        result = self.signature(**{INPUT_NAME: tf.constant(array)})
        outputs = []
        for name in self.outputs:
            value = result[name].numpy().astype("float32")
            output = InferOutput(name=name, shape=list(value.shape), datatype="FP32")
            output.set_data_from_numpy(value, binary_data=False)
            outputs.append(output)
        return InferResponse(
            response_id=payload.id or uuid.uuid4().hex,
            model_name=self.name,
            infer_outputs=outputs,
            parameters={"model_version": self.version, "kind": self.kind},
        )


def main(argv: list[str] | None = None) -> None:
    cli = parser(__doc__)
    cli.add_argument(
        "--model_dir", required=True, help="Exported model: <store>/<name>[/<version>] or a candidate dir."
    )
    args, _ = cli.parse_known_args(argv)

    def build() -> list[Model]:  # in each worker: every process loads its own copy of the SavedModel
        model = SavedModelPredictor(args.model_name, args.model_dir)
        model.load()
        return [model]

    serve(build, args)


if __name__ == "__main__":
    main()
