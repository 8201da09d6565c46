"""The BitPredict pipeline: ingest → clean → indicators ┐
                                     ingest → sentiment ┴→ merge → train → evaluate → register → publish.

``register`` is one task: the evaluation names the best of the network and its baselines on the primary score
(``bitpredict.evaluation.backtest.decide``) and ``bitpredict.operations.registry`` registers it and applies the
promotion rule, so a champion exists after every successful run.
``publish`` is the last task: it moves the run's outputs (clean bars, indicators, sentiment, features,
evaluation, candidate) into the data dir every consumer reads, atomically, with a manifest that records
the run's parameters and its champion. A run that fails before it publishes nothing.

The parameters are ``bitpredict.orchestration.parameters.PARAMETERS`` (names, types, defaults), turned into
the pipeline function's signature here.

Compile: ``python -m pipelines.bitpredict_pipeline`` (writes ``pipelines/bitpredict_pipeline.yaml``,
checked in; a test fails when it is stale).
"""

import inspect
from pathlib import Path
from typing import Any

from kfp import compiler, dsl, kubernetes

from bitpredict.config import DEFAULT_SECRETS_DIR
from bitpredict.orchestration.parameters import PARAMETERS
from components.clean import clean
from components.evaluate import evaluate
from components.indicators import indicators
from components.ingest import ingest
from components.merge import merge
from components.publish import publish
from components.register import register
from components.sentiment import sentiment
from components.train import train

PIPELINE_NAME = "bitpredict"
COMPILED = Path(__file__).with_name("bitpredict_pipeline.yaml")

# (cpu request, cpu limit, memory request, memory limit) per task: training and FinBERT need the most.
RESOURCES = {
    "ingest": ("250m", "1", "512Mi", "1Gi"),
    "clean": ("250m", "1", "1Gi", "2Gi"),
    "indicators": ("250m", "1", "1Gi", "2Gi"),
    "sentiment": ("1", "2", "3Gi", "6Gi"),
    "merge": ("250m", "1", "1Gi", "2Gi"),
    "train": ("2", "4", "4Gi", "8Gi"),
    "evaluate": ("2", "4", "4Gi", "8Gi"),
    "register": ("250m", "1", "1Gi", "2Gi"),
    "publish": ("250m", "1", "1Gi", "2Gi"),
}


# Wall-clock limit per task (the pod's activeDeadlineSeconds, through kfp-kubernetes): a task that hangs — a source
# that never answers, a stuck upload — fails the run instead of holding it, and its resources, forever. Sized at
# several times what each takes on the full history; publish's bound is what makes a gs:// prefix no manifest
# names, older than ``bitpredict.operations.publish.ORPHAN_AFTER_S`` (3 h), safe to prune.
TIMEOUTS_S = {
    "ingest": 3600,
    "clean": 1800,
    "indicators": 1800,
    "sentiment": 3 * 3600,
    "merge": 1800,
    "train": 4 * 3600,
    "evaluate": 4 * 3600,
    "register": 1800,
    "publish": 1800,
}
# The API keys reach the ingest task as files of a mounted Secret (optional: the keyless sources still run), read
# from there by the settings (``bitpredict.config.DEFAULT_SECRETS_DIR``) — never as environment variables.
API_KEYS_SECRET = "bitpredict-api-keys"


def _sized(task: dsl.PipelineTask, stage: str, cache: bool = True) -> dsl.PipelineTask:
    cpu_request, cpu_limit, memory_request, memory_limit = RESOURCES[stage]
    task.set_cpu_request(cpu_request).set_cpu_limit(cpu_limit)
    task.set_memory_request(memory_request).set_memory_limit(memory_limit)
    task.set_caching_options(cache)
    kubernetes.set_timeout(task, TIMEOUTS_S[stage])
    return task


def _signature() -> inspect.Signature:
    """The pipeline's parameters as a Python signature, from the one table (KFP reads the signature)."""
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    return inspect.Signature(
        [inspect.Parameter(p.name, kind, default=p.default, annotation=p.type) for p in PARAMETERS],
        return_annotation=None,
    )


SIGNATURE = _signature()


def _pipeline(*args: Any, **kwargs: Any) -> None:
    """Parameters: ``bitpredict.orchestration.parameters.PARAMETERS`` — where the raw store lives (``data_root``),
    which sources and since when, the model's window and epochs, the evaluation span, the promotion
    thresholds, MLflow and the model store."""
    bound = SIGNATURE.bind(*args, **kwargs)
    bound.apply_defaults()
    values = bound.arguments
    data_root, cache_dir = values["data_root"], values["cache_dir"]
    fetched = _sized(
        ingest(**values),
        "ingest",
        cache=False,  # the sources move on: never reuse an old fetch
    )
    kubernetes.use_secret_as_volume(fetched, secret_name=API_KEYS_SECRET, mount_path=DEFAULT_SECRETS_DIR, optional=True)
    settings = fetched.outputs["settings"]
    cleaned = _sized(clean(raw=fetched.outputs["raw"], settings_json=settings, cache_dir=cache_dir), "clean")
    tech = _sized(indicators(bars=cleaned.outputs["bars"], settings_json=settings, cache_dir=cache_dir), "indicators")
    mood = _sized(sentiment(raw=fetched.outputs["raw"], settings_json=settings, cache_dir=cache_dir), "sentiment")
    features = _sized(
        merge(
            indicators=tech.outputs["table"],
            sentiment=mood.outputs["daily"],
            settings_json=settings,
            cache_dir=cache_dir,
        ),
        "merge",
    )
    model = _sized(train(features=features.outputs["features"], settings_json=settings, cache_dir=cache_dir), "train")
    verdict = _sized(
        evaluate(
            features=features.outputs["features"],
            model=model.outputs["model"],
            settings_json=settings,
            cache_dir=cache_dir,
        ),
        "evaluate",
    )
    registered = _sized(
        register(
            model=model.outputs["model"],
            evaluation=verdict.outputs["evaluation"],
            allow_promotion=True,
            settings_json=settings,
        ),
        "register",
        cache=False,  # writes to the registry
    )
    _sized(
        publish(
            bars=cleaned.outputs["bars"],
            clean_report=cleaned.outputs["report"],
            indicators=tech.outputs["table"],
            sentiment=mood.outputs["daily"],
            sentiment_meta=mood.outputs["meta"],
            sentiment_scores=mood.outputs["scores"],
            features=features.outputs["features"],
            evaluation=verdict.outputs["evaluation"],
            model=model.outputs["model"],
            registered=registered.output,
            parameters=fetched.outputs["parameters"],
            data_root=data_root,
            run_id=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
            settings_json=settings,
        ),
        "publish",
        cache=False,  # the data dir is the world outside the run: always write it
    )


_pipeline.__signature__ = SIGNATURE  # type: ignore[attr-defined]
bitpredict_pipeline = dsl.pipeline(
    name=PIPELINE_NAME,
    description="Bitcoin next-day forecast: ingest, features, LSTM with attention, walk-forward evaluation, MLflow.",
)(_pipeline)


def compile_pipeline(path: Path = COMPILED) -> Path:
    compiler.Compiler().compile(bitpredict_pipeline, str(path))
    return path


if __name__ == "__main__":
    print(compile_pipeline())
