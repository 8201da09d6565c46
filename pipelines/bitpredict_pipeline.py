"""The BitPredict pipeline: ingest → clean → indicators ┐
                                     ingest → sentiment ┴→ merge → train → evaluate → register → publish.

``register`` is one task: the policy (the best of the network and its baselines on the primary score
becomes the champion) lives in ``bitpredict.registry``, so a champion exists after every successful run.
``publish`` is the last task: it moves the run's outputs (clean bars, indicators, sentiment, features,
evaluation, candidate) into the data dir every consumer reads, atomically, with a manifest that records
the run's parameters and its champion. A run that fails before it publishes nothing.

Compile: ``python -m pipelines.bitpredict_pipeline`` (writes ``pipelines/bitpredict_pipeline.yaml``,
checked in; a test fails when it is stale).
"""

from pathlib import Path

from kfp import compiler, dsl

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


def _sized(task: dsl.PipelineTask, stage: str, cache: bool = True) -> dsl.PipelineTask:
    cpu_request, cpu_limit, memory_request, memory_limit = RESOURCES[stage]
    task.set_cpu_request(cpu_request).set_cpu_limit(cpu_limit)
    task.set_memory_request(memory_request).set_memory_limit(memory_limit)
    task.set_caching_options(cache)
    return task


@dsl.pipeline(
    name=PIPELINE_NAME,
    description="Bitcoin next-day forecast: ingest, features, LSTM with attention, walk-forward evaluation, MLflow.",
)
def bitpredict_pipeline(
    data_root: str = "gs://bitpredict-data/data",
    files_dir: str = "",
    sources: str = "binance,cryptocompare,coingecko,rss",
    since: str = "2017-01-01",
    interval: str = "1d",
    window: int = 30,
    epochs: int = 50,
    test_days: int = 365,
    min_skill: float = 0.0,
    max_dm_pvalue: float = 0.05,
    mlflow_tracking_uri: str = "http://mlflow.bitpredict.svc.cluster.local:5000",
    model_store: str = "gs://bitpredict-models/serving",
    cache_dir: str = "",
    extra_settings: str = "{}",
) -> None:
    """Parameters: where the raw store lives (``data_root``), which sources and since when, the model's
    window and epochs, the evaluation span, the promotion thresholds, MLflow and the model store."""
    fetched = _sized(
        ingest(
            data_root=data_root,
            files_dir=files_dir,
            sources=sources,
            since=since,
            interval=interval,
            window=window,
            epochs=epochs,
            test_days=test_days,
            min_skill=min_skill,
            max_dm_pvalue=max_dm_pvalue,
            mlflow_tracking_uri=mlflow_tracking_uri,
            model_store=model_store,
            extra_settings=extra_settings,
            cache_dir=cache_dir,
        ),
        "ingest",
        cache=False,  # the sources move on: never reuse an old fetch
    )
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


def compile_pipeline(path: Path = COMPILED) -> Path:
    compiler.Compiler().compile(bitpredict_pipeline, str(path))
    return path


if __name__ == "__main__":
    print(compile_pipeline())
