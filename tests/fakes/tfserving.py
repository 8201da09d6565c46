"""A TensorFlow Serving stand-in: ``PredictionService.Predict`` and ``ModelService.GetModelStatus`` over gRPC,
on 127.0.0.1, from a SavedModel.

No TF Serving binary exists for this machine, so the transformer's TF Serving path is exercised against
this server, built from the real ``tensorflow-serving-api`` stubs and protos: requests and replies are
exactly TF Serving's wire format (model_spec, signature_name, TensorProto inputs and outputs), and the
model is the same SavedModel, called through its ``serving_default`` signature.
"""

from __future__ import annotations

from concurrent import futures

import grpc
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)


class _PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, model_name: str, saved_model_dir: str) -> None:
        self.model_name = model_name
        self.loaded = tf.saved_model.load(saved_model_dir)
        self.requests = 0

    def Predict(
        self, request: predict_pb2.PredictRequest, context: grpc.ServicerContext
    ) -> predict_pb2.PredictResponse:
        self.requests += 1
        if request.model_spec.name != self.model_name:
            context.abort(
                grpc.StatusCode.NOT_FOUND, f"Servable not found for request: Latest({request.model_spec.name})"
            )
        signature_name = request.model_spec.signature_name or "serving_default"
        if signature_name not in self.loaded.signatures:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f'Serving signature name: "{signature_name}" not found')
        signature = self.loaded.signatures[signature_name]
        inputs = {name: tf.constant(tf.make_ndarray(proto)) for name, proto in request.inputs.items()}
        try:
            outputs = signature(**inputs)
        except (TypeError, ValueError, tf.errors.InvalidArgumentError) as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        reply = predict_pb2.PredictResponse()
        reply.model_spec.CopyFrom(request.model_spec)
        for name, value in outputs.items():
            reply.outputs[name].CopyFrom(tf.make_tensor_proto(value.numpy()))
        return reply


class _ModelService(model_service_pb2_grpc.ModelServiceServicer):
    """``GetModelStatus``: the one version is AVAILABLE (what the transformer's readiness asks)."""

    def __init__(self, model_name: str) -> None:
        self.model_name = model_name

    def GetModelStatus(
        self, request: get_model_status_pb2.GetModelStatusRequest, context: grpc.ServicerContext
    ) -> get_model_status_pb2.GetModelStatusResponse:
        if request.model_spec.name != self.model_name:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {request.model_spec.name}")
        reply = get_model_status_pb2.GetModelStatusResponse()
        status = reply.model_version_status.add()
        status.version = 1
        status.state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
        return reply


class FakeTFServing:
    def __init__(self, model_name: str, saved_model_dir: str) -> None:
        self.service = _PredictionService(model_name, saved_model_dir)
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(self.service, self.server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(_ModelService(model_name), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> FakeTFServing:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop(grace=None)
