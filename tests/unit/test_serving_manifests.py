"""The Triton repository builder and the KServe serving manifests, checked without a cluster or the network.

Part 1 builds a Triton model repository from a fake exported version folder (the layout code only copies files,
so ``saved_model.pb`` can be any bytes) and reads back the config.pbtxt values. Part 2 parses every YAML file
under manifests/serving, checks each InferenceService field against the KServe SDK's own model classes (so a
misspelt field fails here, not at ``kubectl apply``), applies the Triton overlay's JSON patch to the base and
checks what a pod would run: resources, non-root, read-only root, pinned images, the protocol flag.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from inference import triton_layout
from tests.deploy.k8s_policy import policy_problems

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVING = REPO_ROOT / "manifests" / "serving"
BASE = SERVING / "base"
TRITON = SERVING / "overlays" / "triton"
ISVC_NAME = "bitpredict"
TRANSFORMER_IMAGE = "ghcr.io/bitpredict/bitpredict-inference:0.1.0"

W, F, Q = 30, 41, 3


# --------------------------------------------------------------------------------------------
# Part 1: inference/triton_layout.py
# --------------------------------------------------------------------------------------------


def _metadata(window: int = W, n_features: int = F, quantiles: tuple[float, ...] = (0.1, 0.5, 0.9)) -> dict:
    """The keys of bitpredict_model.json that the layout reads, shaped as ``forecast.train.metadata`` writes them."""
    return {
        "format_version": 1,
        "feature_columns": [f"f{i}" for i in range(n_features)],
        "window": window,
        "quantiles": list(quantiles),
        "signature": "serving_default",
        "input": {"name": "features", "dtype": "float32", "shape": [None, window, n_features]},
        "outputs": {"quantiles": [None, len(quantiles)], "attention": [None, window]},
    }


def _fake_export(root: Path, metadata: dict | None = None, *, nested: bool = False) -> Path:
    """An exported version folder (or, nested=True, a training candidate) with placeholder SavedModel files."""
    saved = root / "saved_model" if nested else root
    (saved / "variables").mkdir(parents=True)
    (saved / "saved_model.pb").write_bytes(b"\x08\x01not-a-real-graph")
    (saved / "fingerprint.pb").write_bytes(b"fp")
    (saved / "variables" / "variables.index").write_bytes(b"index")
    (saved / "variables" / "variables.data-00000-of-00001").write_bytes(b"data")
    (root / "bitpredict_model.json").write_text(json.dumps(_metadata() if metadata is None else metadata))
    return root


def _dims(config: str, tensor: str) -> list[int]:
    """The ``dims: [ a, b ]`` of the named tensor in a config.pbtxt."""
    match = re.search(rf'name: "{re.escape(tensor)}"\s+data_type: (\w+)\s+dims: \[([^\]]*)\]', config)
    assert match, f"no tensor {tensor!r} in:\n{config}"
    assert match.group(1) == "TYPE_FP32"
    return [int(x) for x in match.group(2).split(",")]


def _scalar(config: str, key: str) -> str:
    match = re.search(rf"^{key}: (.+)$", config, re.MULTILINE)
    assert match, f"no top-level {key} in:\n{config}"
    return match.group(1).strip()


def test_builds_the_triton_tree_and_config_from_the_metadata(tmp_path: Path) -> None:
    version_dir = _fake_export(tmp_path / "bitpredict-lstm" / "3")
    repo = tmp_path / "triton"

    config_path = triton_layout.build_repository(version_dir, repo)

    assert Path(config_path) == repo / "bitpredict" / "config.pbtxt"
    model = repo / "bitpredict" / "3" / "model.savedmodel"  # the registry version becomes the Triton version
    files = sorted(str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file())
    assert files == [
        "bitpredict/3/model.savedmodel/fingerprint.pb",
        "bitpredict/3/model.savedmodel/saved_model.pb",
        "bitpredict/3/model.savedmodel/variables/variables.data-00000-of-00001",
        "bitpredict/3/model.savedmodel/variables/variables.index",
        "bitpredict/config.pbtxt",
    ]  # the metadata json stays out of the SavedModel folder
    assert (model / "saved_model.pb").read_bytes() == (version_dir / "saved_model.pb").read_bytes()

    config = Path(config_path).read_text()
    assert _scalar(config, "name") == '"bitpredict"'
    assert _scalar(config, "platform") == '"tensorflow_savedmodel"'
    assert _scalar(config, "max_batch_size") == "64"
    assert _dims(config, "features") == [W, F]
    assert _dims(config, "quantiles") == [Q]
    assert _dims(config, "attention") == [W]
    assert "dynamic_batching {" in config
    assert re.search(r"kind: KIND_CPU", config)
    assert re.search(r'key: "TF_SIGNATURE_DEF"\s+value: \{ string_value: "serving_default" \}', config)
    assert config.count("{") == config.count("}") and config.count("[") == config.count("]")


def test_options_and_a_training_candidate(tmp_path: Path) -> None:
    candidate = _fake_export(tmp_path / "candidate", _metadata(window=10, n_features=7, quantiles=(0.5,)), nested=True)
    repo = tmp_path / "triton"

    triton_layout.build_repository(candidate, repo, model_name="btc", version=5, max_batch_size=8)

    config = (repo / "btc" / "config.pbtxt").read_text()
    assert (repo / "btc" / "5" / "model.savedmodel" / "variables" / "variables.index").is_file()
    assert _scalar(config, "name") == '"btc"' and _scalar(config, "max_batch_size") == "8"
    assert (_dims(config, "features"), _dims(config, "quantiles"), _dims(config, "attention")) == ([10, 7], [1], [10])


def test_a_model_with_the_horizon_axis_declares_horizon_quantiles(tmp_path: Path) -> None:
    """Issue 31: ``horizon_quantiles`` [B, H, Q] joins the config when the metadata has ``horizons``; a model without
    them (before the horizon axis) keeps the two-output config, and a disagreeing H is refused."""
    meta = _metadata()
    meta["horizons"] = [1, 7, 30]
    meta["outputs"]["horizon_quantiles"] = [None, 3, Q]
    triton_layout.build_repository(_fake_export(tmp_path / "new" / "1", meta), tmp_path / "triton")
    config = (tmp_path / "triton" / "bitpredict" / "config.pbtxt").read_text()
    assert _dims(config, "horizon_quantiles") == [3, Q] and _dims(config, "quantiles") == [Q]
    assert config.count("{") == config.count("}") and config.count("[") == config.count("]")
    triton_layout.build_repository(_fake_export(tmp_path / "old" / "1"), tmp_path / "old_repo")
    assert "horizon_quantiles" not in (tmp_path / "old_repo" / "bitpredict" / "config.pbtxt").read_text()
    meta["outputs"]["horizon_quantiles"] = [None, 2, Q]
    with pytest.raises(ValueError, match="H=3"):
        triton_layout.build_repository(_fake_export(tmp_path / "bad" / "1", meta), tmp_path / "bad_repo")


def test_rebuilding_a_version_replaces_it(tmp_path: Path) -> None:
    version_dir = _fake_export(tmp_path / "export" / "2")
    repo = tmp_path / "triton"
    triton_layout.build_repository(version_dir, repo)
    stale = repo / "bitpredict" / "2" / "model.savedmodel" / "stale.pb"
    stale.write_bytes(b"old")

    triton_layout.build_repository(version_dir, repo)

    assert not stale.exists()
    assert (repo / "bitpredict" / "2" / "model.savedmodel" / "saved_model.pb").is_file()


def test_every_artifact_name_is_defined_once() -> None:
    """File and tensor names of the model artifact live in bitpredict/forecast/artifact.py alone; others import them."""
    import ast

    from bitpredict.forecast import artifact

    names = {
        value: name
        for name, value in vars(artifact).items()
        if name.isupper() and isinstance(value, str) and not name.startswith("_")
    }
    assert {"bitpredict_model.json", "saved_model", "serving_default", "features", "quantiles"} <= set(names)
    definitions: dict[str, list[str]] = {}
    for path in [*REPO_ROOT.glob("bitpredict/**/*.py"), *REPO_ROOT.glob("inference/**/*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and node.value.value in names:
                targets = [t.id for t in node.targets if isinstance(t, ast.Name) and t.id.isupper()]
                for target in targets:
                    definitions.setdefault(str(node.value.value), []).append(f"{path.relative_to(REPO_ROOT)}:{target}")
    stray = {
        value: where
        for value, where in definitions.items()
        if where != [f"bitpredict/forecast/artifact.py:{names[value]}"]
    }
    assert not stray, f"artifact names defined outside bitpredict/forecast/artifact.py: {stray}"


@pytest.mark.parametrize(
    ("prepare", "message"),
    [
        (lambda d: (d / "bitpredict_model.json").unlink(), "no bitpredict_model.json"),
        (lambda d: (d / "saved_model.pb").unlink(), "no saved_model.pb"),
        (lambda d: (d / "bitpredict_model.json").write_text("{not json"), "not valid JSON"),
        (lambda d: (d / "bitpredict_model.json").write_text(json.dumps({**_metadata(), "window": 0})), "'window'"),
        (lambda d: (d / "bitpredict_model.json").write_text(json.dumps({**_metadata(), "quantiles": []})), "quantiles"),
        (
            lambda d: (d / "bitpredict_model.json").write_text(
                json.dumps({**_metadata(), "input": {"name": "features", "shape": [None, W, F + 1]}})
            ),
            "disagrees",
        ),
        (
            lambda d: (d / "bitpredict_model.json").write_text(
                json.dumps({**_metadata(), "outputs": {"quantiles": [None, 5], "attention": [None, W]}})
            ),
            "Q=3",
        ),
    ],
)
def test_refuses_a_folder_that_is_not_an_exported_model(tmp_path: Path, prepare: Any, message: str) -> None:
    version_dir = _fake_export(tmp_path / "1")
    prepare(version_dir)
    repo = tmp_path / "triton"

    with pytest.raises(ValueError, match=re.escape(message)):
        triton_layout.build_repository(version_dir, repo)
    assert not repo.exists()  # checked before anything is written


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"model_name": "bit/predict"}, "model name"),
        ({"max_batch_size": 0}, "max_batch_size"),
        ({"version": 0}, "version"),
    ],
)
def test_refuses_bad_options(tmp_path: Path, kwargs: dict, message: str) -> None:
    version_dir = _fake_export(tmp_path / "1")
    with pytest.raises(ValueError, match=message):
        triton_layout.build_repository(version_dir, tmp_path / "triton", **kwargs)


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    version_dir = _fake_export(tmp_path / "4")
    repo = tmp_path / "triton"

    assert triton_layout.main([str(version_dir), str(repo), "--max-batch-size", "16"]) == 0
    assert capsys.readouterr().out.strip() == str(repo / "bitpredict" / "config.pbtxt")
    assert _scalar((repo / "bitpredict" / "config.pbtxt").read_text(), "max_batch_size") == "16"
    assert (repo / "bitpredict" / "4" / "model.savedmodel" / "saved_model.pb").is_file()

    (version_dir / "bitpredict_model.json").unlink()
    assert triton_layout.main([str(version_dir), str(repo)]) == 2
    assert "no bitpredict_model.json" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# Part 2: manifests/serving
# --------------------------------------------------------------------------------------------


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _base_isvc() -> dict:
    (isvc,) = [d for d in _docs(BASE / "inferenceservice.yaml") if d["kind"] == "InferenceService"]
    return isvc


def _apply_json6902(document: dict, ops: list[dict]) -> dict:
    """The subset of RFC 6902 the overlay uses (add / replace / remove), enough to render it without kustomize."""
    out = copy.deepcopy(document)
    for op in ops:
        *parents, last = [p.replace("~1", "/").replace("~0", "~") for p in op["path"].lstrip("/").split("/")]
        node: Any = out
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        key: Any = int(last) if isinstance(node, list) else last
        if op["op"] == "remove":
            del node[key]
        elif op["op"] == "replace":
            assert (key < len(node)) if isinstance(node, list) else (key in node), f"replace of a missing {op['path']}"
            node[key] = copy.deepcopy(op["value"])
        elif op["op"] == "add":
            if isinstance(node, list):
                node.insert(key, copy.deepcopy(op["value"]))
            else:
                node[key] = copy.deepcopy(op["value"])
        else:
            raise AssertionError(f"unexpected op {op['op']}")
    return out


def _triton_isvc() -> dict:
    kustomization = yaml.safe_load((TRITON / "kustomization.yaml").read_text())
    isvc = _base_isvc()
    for patch in kustomization["patches"]:
        isvc = _apply_json6902(isvc, yaml.safe_load((TRITON / patch["path"]).read_text()))
    return isvc


def _containers(isvc: dict) -> dict[str, dict]:
    """Every container an InferenceService asks for: the predictor's model spec and each transformer container."""
    out = {"predictor.model": isvc["spec"]["predictor"]["model"]}
    for i, container in enumerate(isvc["spec"]["transformer"]["containers"]):
        out[f"transformer.containers[{i}]"] = container
    return out


def _transformer(isvc: dict) -> dict:
    (container,) = isvc["spec"]["transformer"]["containers"]
    return container


def _flag(args: list[str], name: str) -> str:
    values = [a.split("=", 1)[1] for a in args if a.startswith(f"--{name}=")]
    assert len(values) == 1, f"--{name} given {len(values)} times in {args}"
    return values[0]


ISVCS = {"base": _base_isvc, "triton": _triton_isvc}


def test_every_yaml_file_parses() -> None:
    files = sorted(SERVING.rglob("*.yaml")) + sorted(SERVING.rglob("*.yml"))
    assert {p.relative_to(SERVING).as_posix() for p in files} >= {
        "base/kustomization.yaml",
        "base/inferenceservice.yaml",
        "base/serviceaccount.yaml",
        "overlays/triton/kustomization.yaml",
        "overlays/triton/predictor-triton.yaml",
    }
    for path in files:
        assert list(yaml.safe_load_all(path.read_text())), f"{path} is empty"


def test_kustomizations_name_files_that_exist() -> None:
    for kustomization in SERVING.rglob("kustomization.yaml"):
        spec = yaml.safe_load(kustomization.read_text())
        for entry in [*spec.get("resources", []), *(p["path"] for p in spec.get("patches", []) if "path" in p)]:
            assert (kustomization.parent / entry).exists(), f"{kustomization}: {entry} not found"


def test_base_is_an_inferenceservice_with_predictor_and_transformer() -> None:
    isvc = _base_isvc()
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert (isvc["metadata"]["name"], isvc["metadata"]["namespace"]) == (ISVC_NAME, "bitpredict")
    spec = isvc["spec"]
    assert set(spec) == {"predictor", "transformer"}
    model = spec["predictor"]["model"]
    assert model["modelFormat"]["name"] == "tensorflow"
    assert model["runtime"] == "kserve-tensorflow-serving"
    assert model["storageUri"] == "gs://bitpredict-models/serving/bitpredict-lstm"
    assert {"name": "h2c", "containerPort": 9000, "protocol": "TCP"} in model["ports"]  # TF Serving's gRPC port
    for component in (spec["predictor"], spec["transformer"]):
        assert (component["minReplicas"], component["maxReplicas"]) == (1, 3)
        assert component["scaleMetric"] in ("concurrency", "rps")
        assert isinstance(component["scaleTarget"], int) and component["scaleTarget"] > 0
        assert component["serviceAccountName"] == "bitpredict-serving"
    assert isvc["metadata"]["annotations"]["serving.kserve.io/enable-prometheus-scraping"] == "true"
    annotations = spec["transformer"]["annotations"]
    assert (annotations["prometheus.io/port"], annotations["prometheus.io/path"]) == ("8080", "/metrics")


def test_transformer_flags_and_probe() -> None:
    container = _transformer(_base_isvc())
    assert container["name"] == "kserve-container"
    assert container["image"] == TRANSFORMER_IMAGE
    args = container["args"]
    assert _flag(args, "model_name") == ISVC_NAME
    assert _flag(args, "predictor_runtime") == "tfserving"
    # KServe appends its own --predictor_host (no port) unless an arg starts with it: this one must carry a port.
    assert _flag(args, "predictor_host") == f"{ISVC_NAME}-predictor.bitpredict.svc.cluster.local:80"
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["BITPREDICT_MODEL_STORE"] == "gs://bitpredict-models/serving"
    # The storage-initializer downloads STORAGE_URI to /mnt/models, where --model_uri reads the metadata.
    assert (
        env["STORAGE_URI"] == "gs://bitpredict-models/serving/bitpredict-lstm"
        and _flag(args, "model_uri") == "/mnt/models"
    )
    probe = container["readinessProbe"]["httpGet"]
    assert (probe["path"], probe["port"]) == ("/v2/health/ready", 8080)


@pytest.mark.parametrize("variant", ISVCS)
def test_workers_cpu_and_the_autoscaling_target_agree(variant: str) -> None:
    """One server process per requested core, and Knative's concurrency target = what one pod admits
    (workers x max_in_flight), so replicas are added before a pod starts answering 503."""
    from inference.server import parser

    isvc = ISVCS[variant]()
    transformer = isvc["spec"]["transformer"]
    container = _transformer(isvc)
    args, _ = parser().parse_known_args(container["args"])  # the transformer's own parser reads the flags
    assert args.workers == int(_flag(container["args"], "workers")) >= 2
    cpu = container["resources"]["requests"]["cpu"]
    assert float(cpu) == args.workers, f"CPU request {cpu} for {args.workers} workers"
    assert float(container["resources"]["limits"]["cpu"]) >= args.workers
    assert transformer["scaleMetric"] == "concurrency"
    assert transformer["scaleTarget"] == args.workers * args.max_in_flight


def test_the_service_account_is_the_one_both_components_use() -> None:
    (account,) = _docs(BASE / "serviceaccount.yaml")
    assert account["kind"] == "ServiceAccount"
    assert (account["metadata"]["name"], account["metadata"]["namespace"]) == ("bitpredict-serving", "bitpredict")
    assert "secrets" not in account


@pytest.mark.parametrize("variant", ISVCS)
def test_both_variants_follow_the_workload_policy(variant: str) -> None:
    """Requests and limits, non-root on a read-only root, capabilities dropped, pinned images: the rules live once,
    in ``tests/deploy/k8s_policy.py``; here they are applied to both InferenceService variants as written in the
    repo (the rendered overlays get them in ``tests/deploy/test_manifests.py`` where kubectl is installed)."""
    assert policy_problems([ISVCS[variant]()]) == []


@pytest.mark.parametrize("variant", ISVCS)
def test_the_read_only_root_has_a_writable_tmp_and_the_runtime_is_pinned(variant: str) -> None:
    isvc = ISVCS[variant]()
    mounts = {m["mountPath"]: m["name"] for m in _transformer(isvc)["volumeMounts"]}
    volumes = {v["name"]: v for v in isvc["spec"]["transformer"]["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    # The predictor's image comes from its ServingRuntime; runtimeVersion pins its tag.
    version = str(isvc["spec"]["predictor"]["model"]["runtimeVersion"])
    assert version and version != "latest"
    for path in SERVING.rglob("*.yaml"):
        assert not re.search(r"^[^#]*:latest\b", path.read_text(), re.MULTILINE), f"{path} uses :latest"


def test_no_secret_values_anywhere() -> None:
    for path in SERVING.rglob("*.yaml"):
        for doc in _docs(path):
            if isinstance(doc, dict):
                assert doc.get("kind") != "Secret", f"{path} defines a Secret"
        text = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
        assert not re.search(r"(?i)(password|token|secret|private_key|api_key)\w*\s*:\s*\S", text), path
        assert "BEGIN PRIVATE KEY" not in text and '"type": "service_account"' not in text, path


def test_triton_overlay_patches_the_same_inferenceservice() -> None:
    kustomization = yaml.safe_load((TRITON / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["../../base"]
    (patch,) = kustomization["patches"]
    target = patch["target"]
    assert (target["group"], target["version"], target["kind"], target["name"]) == (
        "serving.kserve.io",
        "v1beta1",
        "InferenceService",
        _base_isvc()["metadata"]["name"],
    )


def test_triton_overlay_switches_the_predictor_and_the_protocol_flag() -> None:
    base, triton = _base_isvc(), _triton_isvc()
    model = triton["spec"]["predictor"]["model"]
    assert model["runtime"] == "kserve-tritonserver"
    assert model["protocolVersion"] == "v2"
    assert model["storageUri"] == "gs://bitpredict-models/triton"
    assert str(model["runtimeVersion"]) == "24.12-py3"  # a Triton release that still has the TensorFlow backend
    assert "ports" not in model  # Triton's HTTP port is Knative's default 8080

    base_args, triton_args = _transformer(base)["args"], _transformer(triton)["args"]
    assert (_flag(triton_args, "predictor_runtime"), _flag(triton_args, "predictor_protocol")) == ("v2", "v2")
    # Nothing else about the transformer changes.
    switched = ("--predictor_runtime=", "--predictor_protocol=")
    assert [a for a in triton_args if not a.startswith(switched)] == [
        a for a in base_args if not a.startswith(switched)
    ]
    assert _without_switched_parts(triton) == _without_switched_parts(base)


def _without_switched_parts(isvc: dict) -> dict:
    """The spec less what the Triton overlay is meant to change: predictor.model and the transformer's args."""
    spec = copy.deepcopy(isvc["spec"])
    del spec["predictor"]["model"]
    del spec["transformer"]["containers"][0]["args"]
    return spec


# --- field names, checked against the KServe SDK's InferenceService model --------------------


def _model_class(type_name: str) -> Any:
    import kserve.models as ks
    import kubernetes.client.models as k8s

    return getattr(ks, type_name, None) or getattr(k8s, type_name, None)


def _unknown_fields(value: Any, type_name: str, where: str) -> list[str]:
    """Paths of keys that the SDK's generated model class for ``type_name`` (recursively) does not define."""
    if type_name.startswith("list[") and isinstance(value, list):
        inner = type_name[5:-1]
        return [e for i, item in enumerate(value) for e in _unknown_fields(item, inner, f"{where}[{i}]")]
    cls = _model_class(type_name)
    if cls is None or not isinstance(value, dict):
        return []  # a primitive, a quantity, an int-or-string, a map of labels
    by_json = {json_name: attr for attr, json_name in cls.attribute_map.items()}
    errors = []
    for key, item in value.items():
        if key not in by_json:
            errors.append(f"{where}.{key} (not a field of {type_name})")
        else:
            errors.extend(_unknown_fields(item, cls.openapi_types[by_json[key]], f"{where}.{key}"))
    return errors


@pytest.mark.parametrize("variant", ISVCS)
def test_every_field_is_a_kserve_v1beta1_field(variant: str) -> None:
    isvc = ISVCS[variant]()
    assert _model_class("V1beta1InferenceServiceSpec") is not None
    errors = _unknown_fields(isvc["spec"], "V1beta1InferenceServiceSpec", "spec")
    errors += _unknown_fields(isvc["metadata"], "V1ObjectMeta", "metadata")
    assert not errors, "\n".join(errors)


def test_the_field_check_catches_a_typo() -> None:
    isvc = _base_isvc()
    isvc["spec"]["predictor"]["model"]["storageURI"] = "gs://x"
    isvc["spec"]["transformer"]["containers"][0]["readinesProbe"] = {}
    errors = _unknown_fields(isvc["spec"], "V1beta1InferenceServiceSpec", "spec")
    assert errors == [
        "spec.predictor.model.storageURI (not a field of V1beta1ModelSpec)",
        "spec.transformer.containers[0].readinesProbe (not a field of V1Container)",
    ]


# --- rendering with kustomize, where this machine has it ---------------------------------------


@pytest.mark.parametrize(("variant", "folder"), [("base", BASE), ("triton", TRITON)])
def test_kustomize_renders_what_the_tests_above_checked(variant: str, folder: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed: rendering checked only through the YAML and the patch above")
    rendered = subprocess.run(
        [kubectl, "kustomize", str(folder)], capture_output=True, text=True, timeout=60, check=False
    )
    assert rendered.returncode == 0, rendered.stderr
    docs = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    assert sorted(d["kind"] for d in docs) == ["InferenceService", "ServiceAccount"]
    assert all(d["metadata"]["namespace"] == "bitpredict" for d in docs)
    (isvc,) = [d for d in docs if d["kind"] == "InferenceService"]
    expected = ISVCS[variant]()
    assert isvc["spec"] == expected["spec"]
    assert isvc["metadata"]["annotations"] == expected["metadata"]["annotations"]
