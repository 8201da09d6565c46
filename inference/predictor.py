"""The one-machine predictor: the exported SavedModel behind KServe's v2 REST and gRPC endpoints.

In the cluster the predictor is TF Serving (or Triton); here neither runs, so this ``kserve.Model`` loads
the same SavedModel with TensorFlow and answers ``POST /v2/models/<name>/infer`` with the signature's
outputs. Input ``features`` FP32 [B, W, F]; outputs ``quantiles`` FP32 [B, Q] and ``attention`` FP32 [B, W].

    python -m inference.predictor --model_dir data/models/serving/bitpredict-lstm --http_port 8085 --grpc_port 8086
"""

from __future__ import annotations

import argparse
import logging
import os
import uuid
from typing import Any

import numpy as np
from kserve import InferOutput, InferRequest, InferResponse, Model
from kserve.errors import InvalidInput

from bitpredict.serving import locate_model
from inference.server import DEFAULT_HOST, serve

log = logging.getLogger(__name__)

INPUT = "features"
OUTPUTS = ("quantiles", "attention")


class SavedModelPredictor(Model):
    def __init__(self, name: str, model_dir: str) -> None:
        super().__init__(name)
        self.model_dir = model_dir
        self.signature: Any = None
        self.window = 0
        self.n_features = 0
        self.version = ""

    def load(self) -> bool:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        located = locate_model(self.model_dir)
        self.version = located.version
        self.window = int(located.metadata["window"])
        self.n_features = len(located.metadata["feature_columns"])
        loaded = tf.saved_model.load(located.saved_model_dir)
        self.signature = loaded.signatures["serving_default"]
        self._keep = loaded  # the signature needs its object alive
        spec = self.signature.structured_input_signature[1][INPUT]
        if spec.shape.as_list()[1:] != [self.window, self.n_features]:
            raise RuntimeError(
                f"SavedModel input {spec.shape} does not match the metadata [None, {self.window}, {self.n_features}]"
            )
        self.ready = True
        log.info("predictor ready", extra={"model": self.name, "version": self.version})
        return self.ready

    def predict(self, payload: InferRequest, headers: dict[str, str] | None = None) -> InferResponse:
        import tensorflow as tf

        inputs = {i.name: i for i in payload.inputs}
        if set(inputs) != {INPUT}:
            raise InvalidInput(f"expected exactly one input '{INPUT}', got {sorted(inputs)}")
        features = inputs[INPUT]
        if features.datatype != "FP32":
            raise InvalidInput(f"input '{INPUT}': datatype {features.datatype}, expected FP32")
        try:
            array = np.asarray(features.as_numpy(), dtype="float32")
        except Exception as exc:  # malformed tensor data of any kind is the client's error
            raise InvalidInput(f"input '{INPUT}': cannot decode the data ({exc})") from None
        if array.ndim != 3 or list(array.shape[1:]) != [self.window, self.n_features]:
            raise InvalidInput(
                f"input '{INPUT}': shape {list(array.shape)}, expected [B, {self.window}, {self.n_features}]"
            )
        if not np.isfinite(array).all():
            raise InvalidInput(f"input '{INPUT}': NaN or infinite values")
        result = self.signature(**{INPUT: tf.constant(array)})
        outputs = []
        for name in OUTPUTS:
            value = result[name].numpy().astype("float32")
            output = InferOutput(name=name, shape=list(value.shape), datatype="FP32")
            output.set_data_from_numpy(value, binary_data=False)
            outputs.append(output)
        return InferResponse(
            response_id=payload.id or uuid.uuid4().hex,
            model_name=self.name,
            infer_outputs=outputs,
            parameters={"model_version": self.version},
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model_name", default="bitpredict")
    parser.add_argument(
        "--model_dir", required=True, help="Exported model: <store>/<name>[/<version>] or a candidate dir."
    )
    parser.add_argument("--host", default=DEFAULT_HOST)
    parser.add_argument("--http_port", type=int, default=8080)
    parser.add_argument("--grpc_port", type=int, default=8081)
    args, _ = parser.parse_known_args(argv)
    model = SavedModelPredictor(args.model_name, args.model_dir)
    model.load()
    serve([model], http_port=args.http_port, grpc_port=args.grpc_port, host=args.host)


if __name__ == "__main__":
    main()
