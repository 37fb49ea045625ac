"""Pipeline pieces that need no Prefect server: cache keys, pair discovery, local storage, CLI wiring."""
from __future__ import annotations

import json

import numpy as np
import pytest

from dreammover import InterpolationConfig

BASE = InterpolationConfig(size=64, num_frames=4, lora_steps=2)


@pytest.fixture(autouse=True)
def _local_prefect_home(tmp_path, monkeypatch):
    # Nothing here talks to a Prefect API, but Prefect must not touch the user's ~/.prefect either.
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def test_lora_key_ignores_fps_frames_and_batching_but_not_rank():
    from dreammover_tasks.artifacts import inversion_key, lora_key

    key = lora_key("pairhash", "tiny", BASE, "/cache")
    # Clip-level knobs must not refit the LoRA or redo the inversion.
    for change in (dict(num_frames=8), dict(frames_per_batch=1), dict(decode_batch=2), dict(keep_inputs=True),
                   dict(reference_attention=False), dict(splat_alpha=5.0)):
        other = BASE.model_copy(update=change)
        assert lora_key("pairhash", "tiny", other, "/cache") == key, change
        assert inversion_key("pairhash", "tiny", other, "/cache") == inversion_key("pairhash", "tiny", BASE, "/cache")
    for change in (dict(lora_rank=4), dict(lora_steps=3), dict(prompt="a dog"), dict(size=128), dict(seed=1)):
        assert lora_key("pairhash", "tiny", BASE.model_copy(update=change), "/cache") != key, change
    assert lora_key("otherpair", "tiny", BASE, "/cache") != key
    assert lora_key("pairhash", "sd15|float16", BASE, "/cache") != key
    assert lora_key("pairhash", "tiny", BASE, "s3://b/cache") != key
    # Inversion depends on the schedule; the LoRA does not.
    steps = BASE.model_copy(update=dict(inversion_steps=20))
    assert lora_key("pairhash", "tiny", steps, "/cache") == key
    assert inversion_key("pairhash", "tiny", steps, "/cache") != inversion_key("pairhash", "tiny", BASE, "/cache")


def test_chunk_key_depends_on_deltas_and_render_fields_only():
    from dreammover_tasks.artifacts import chunk_key, frames_key

    k = chunk_key("state", [0.2, 0.4], BASE)
    assert chunk_key("state", [0.2, 0.4], BASE.model_copy(update=dict(num_frames=9, frames_per_batch=3))) == k
    assert chunk_key("state", [0.6, 0.8], BASE) != k
    assert chunk_key("state2", [0.2, 0.4], BASE) != k
    assert chunk_key("state", [0.2, 0.4], BASE.model_copy(update=dict(wta_mode="splat"))) != k
    assert frames_key([k], BASE) != frames_key([k], BASE.model_copy(update=dict(keep_inputs=True)))


def test_images_hash_is_content_hash():
    from dreammover_tasks.artifacts import images_hash

    a = np.zeros((64, 64, 3), np.uint8)
    b = a.copy()
    assert images_hash([a, b]) == images_hash([a.copy(), b.copy()])
    b[3, 3, 0] = 1
    assert images_hash([a, b]) != images_hash([a, a])
    assert images_hash([np.zeros((32, 128, 3), np.uint8)]) != images_hash([np.zeros((64, 64, 3), np.uint8)])


def test_local_storage_roundtrip_list_and_escape(tmp_path):
    from dreammover_tasks.storage import LocalStorage, StorageError, open_storage, read_uri, uri_exists, write_uri

    store = open_storage(tmp_path / "root")
    assert isinstance(store, LocalStorage)
    uri = store.write_bytes("a/b/c.bin", b"xyz")
    assert read_uri(uri) == b"xyz" and uri_exists(uri) and not store.exists("a/b/d.bin")
    write_uri(str(tmp_path / "root" / "top.txt"), b"1")
    assert store.list() == ["a/b/c.bin", "top.txt"]
    assert store.list("a") == ["a/b/c.bin"] and store.list("nothing") == []
    assert open_storage(f"file://{tmp_path}/root").read_bytes("top.txt") == b"1"
    with pytest.raises(StorageError):
        store.read_bytes("../outside")
    with pytest.raises(StorageError, match="cannot read"):
        store.read_bytes("missing.bin")
    with pytest.raises(StorageError, match="unsupported"):
        open_storage("gs://bucket/x")


def _touch(path, data=b"x"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_discover_pairs_layout_nested_and_malformed(tmp_path):
    from dreammover_tasks.ingest import discover_pairs

    for pid in ("dog", "2024/lion"):
        _touch(tmp_path / pid / "0.png")
        _touch(tmp_path / pid / "1.JPG")
    _touch(tmp_path / "dog" / "reference.mp4")  # other files in a pair folder are ignored
    _touch(tmp_path / "half" / "0.png")
    _touch(tmp_path / "two" / "0.png")
    _touch(tmp_path / "two" / "0.jpg")
    _touch(tmp_path / "two" / "1.png")
    pairs = {p.id: p for p in discover_pairs(str(tmp_path))}
    assert sorted(pairs) == ["2024/lion", "dog", "half", "two"]
    assert pairs["dog"].problem is None and pairs["dog"].image1.endswith("dog/1.JPG")
    assert pairs["2024/lion"].problem is None
    assert "no 1." in pairs["half"].problem
    assert "several 0." in pairs["two"].problem
    # A folder holding 0.* and 1.* itself is one pair named after it.
    (single,) = discover_pairs(str(tmp_path / "dog"))
    assert single.id == "dog" and single.problem is None


def test_discover_pairs_from_manifest(tmp_path):
    from dreammover_tasks.ingest import discover_pairs

    _touch(tmp_path / "x" / "a.png")
    _touch(tmp_path / "x" / "b.png")
    manifest = tmp_path / "pairs.json"
    manifest.write_text(json.dumps({"pairs": [
        {"id": "first", "image0": "x/a.png", "image1": "x/b.png"},
        {"id": "abs", "image0": str(tmp_path / "x" / "a.png"), "image1": "s3://bucket/b.png"},
        {"id": "../evil", "image0": "x/a.png", "image1": "x/b.png"},
        {"id": "lacking", "image0": "x/a.png"},
    ]}))
    pairs = {p.id: p for p in discover_pairs(str(tmp_path), str(manifest))}
    assert pairs["first"].image0 == str(tmp_path / "x" / "a.png") and pairs["first"].problem is None
    assert pairs["abs"].image1 == "s3://bucket/b.png"
    assert "not a safe" in pairs["../evil"].problem
    assert "lacks image1" in pairs["lacking"].problem
    csv = tmp_path / "pairs.csv"
    csv.write_text("id,image0,image1\nfirst,x/a.png,x/b.png\nfirst,x/a.png,x/b.png\n")
    dup = discover_pairs(str(tmp_path), str(csv))
    assert len(dup) == 2 and all("more than once" in p.problem for p in dup)


def test_report_status_and_exit_codes():
    from dreammover_flows.archive import EXIT_CODES, report_status
    from dreammover_flows.cli import EXIT_FAILED, EXIT_PARTIAL

    assert report_status(done=2, skipped=1, failed=0) == "ok"
    assert report_status(done=2, skipped=0, failed=1) == "partial"
    assert report_status(done=0, skipped=1, failed=1) == "partial"
    assert report_status(done=0, skipped=0, failed=2) == "failed"
    assert report_status(done=0, skipped=0, failed=0) == "empty"
    assert EXIT_CODES["partial"] == EXIT_PARTIAL != EXIT_CODES["ok"]
    assert EXIT_CODES["failed"] == EXIT_FAILED not in (EXIT_PARTIAL, 0)


def test_clip_format_and_summary_uri():
    from dreammover_flows.pair import clip_format, summary_uri

    assert clip_format("s3://b/out/dog.mp4") == "mp4" and clip_format("x.GIF") == "gif"
    with pytest.raises(ValueError, match="must end in"):
        clip_format("frames/")
    assert summary_uri("s3://b/out/2024/dog.mp4") == "s3://b/out/2024/dog.json"


def test_pool_runner_and_gpu_annotation():
    import dask
    from prefect.task_runners import ThreadPoolTaskRunner
    from prefect_dask import DaskTaskRunner

    from dreammover_flows.runners import gpu_pool, on_gpu, pool_runner

    assert isinstance(pool_runner(None), ThreadPoolTaskRunner)
    remote = pool_runner("tcp://scheduler:8786")
    assert isinstance(remote, DaskTaskRunner) and remote.address == "tcp://scheduler:8786"
    with gpu_pool(None) as none, gpu_pool("tcp://scheduler:8786") as given:
        assert none is None and given == "tcp://scheduler:8786"  # an address starts nothing
    # Model tasks are submitted under this: the scheduler's resource accounting gives each one GPU.
    with on_gpu():
        assert dask.get_annotations() == {"resources": {"GPU": 1}}
    assert dask.get_annotations() == {}


def test_cli_registers_pipeline_commands_without_importing_prefect_eagerly():
    import subprocess
    import sys

    code = ("import sys, typer; from dreammover_flows.cli import register; app = typer.Typer(); register(app); "
            "print(sorted(c.name for c in app.registered_commands)); print('prefect' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0] == "['run-archive', 'run-pair']"
    assert out[1] == "False"  # `dreammover interpolate` must not pay for importing Prefect


def test_model_cache_of_capacity_one_holds_one_model(monkeypatch):
    import dreammover_tasks.models as models

    loaded = []

    class Fake:
        def __init__(self, spec):
            self.spec, self.dm = spec, type("DM", (), {"device": __import__("torch").device("cpu")})()
            loaded.append(spec.model)

    monkeypatch.setattr(models, "LoadedModel", Fake)
    cache = models.ModelCache(capacity=1)
    a, b = models.ModelSpec(model="a"), models.ModelSpec(model="b")
    with cache.use(a) as first:
        pass
    with cache.use(models.ModelSpec(model="a")) as again:
        assert again is first  # same spec: loaded once per process
    with cache.use(b) as other:
        assert other is not first and cache.resident() == [other]  # capacity 1: another model replaces, never adds
    assert loaded == ["a", "b"]


def test_deployments_point_at_real_flows_with_valid_parameters():
    from importlib import import_module
    from pathlib import Path

    import yaml
    from prefect.cli.deploy._models import PrefectYamlModel
    from prefect.flows import Flow

    root = Path(__file__).resolve().parents[1]
    spec = PrefectYamlModel.model_validate(yaml.safe_load((root / "deploy" / "prefect.yaml").read_text()))
    deployments = {d.name: d for d in spec.deployments}
    assert {"pool", "gpu-k8s", "daily"} <= set(deployments)
    for d in deployments.values():
        # Module paths, not file paths: a script loaded by path gets a made-up module name that the
        # Dask scheduler cannot import when it unpickles the task graph.
        module, func = d.entrypoint.split(":")
        assert not module.endswith(".py")
        flow = getattr(import_module(module), func)
        assert isinstance(flow, Flow)
        params = flow.validate_parameters(dict(d.parameters, **({"image0": "a", "image1": "b"}
                                                               if flow.name == "interpolate-pair" else {})))
        assert params["model"].model == "stable-diffusion-v1-5/stable-diffusion-v1-5"
    daily = deployments["daily"]
    assert daily.schedules[0].cron == "0 2 * * *"
    # Orchestration never on the GPU: the archive and the pool's pair flow run on the CPU pool,
    # their model work goes to the Dask pool named by `dask`.
    assert daily.work_pool.name == deployments["pool"].work_pool.name == "dreammover-cpu"
    assert daily.parameters["dask"] == deployments["pool"].parameters["dask"]
    assert "prefect.variables.dreammover_workdir" in json.dumps(spec.model_dump(mode="json")["pull"])
    compose = yaml.safe_load((root / "deploy" / "compose.yaml").read_text())
    services = compose["services"]
    assert {"postgres", "prefect-server", "minio", "dask-scheduler", "prefect-worker", "gpu-worker-0"} <= set(services)
    gpu = [s for s in services.values() if "deploy" in s]
    assert [s["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"] for s in gpu] == [["0"], ["1"]]
    text = (root / "deploy" / "compose.yaml").read_text()
    assert "minioadmin" not in text and ":latest" not in text
    assert all(s.get("restart") for name, s in services.items() if name != "setup")


def test_kubernetes_template_passes_the_real_worker_validation():
    from pathlib import Path

    kubernetes = pytest.importorskip("prefect_kubernetes.worker")
    root = Path(__file__).resolve().parents[1]
    template = json.loads((root / "deploy" / "work-pools" / "gpu-kubernetes.json").read_text())
    from prefect.utilities.templating import apply_values

    # The worker's own steps, minus the API lookups (blocks/variables, none here): fill the job
    # configuration with the variables' defaults, then validate it with the worker's model.
    defaults = {k: v["default"] for k, v in template["variables"]["properties"].items() if "default" in v}
    config = kubernetes.KubernetesWorkerJobConfiguration.model_validate(
        apply_values(template["job_configuration"], defaults))
    job = config.job_manifest
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    resources = container["resources"]
    assert resources["limits"]["nvidia.com/gpu"] == 1 == resources["requests"]["nvidia.com/gpu"]
    assert job["spec"]["activeDeadlineSeconds"] > 0
    assert pod["volumes"][0]["persistentVolumeClaim"]["claimName"]  # the model cache survives the Job
    assert container["envFrom"][0]["secretRef"]["name"]  # credentials from a Secret, not the template


def test_cli_rejects_bad_input_before_starting_a_flow(tmp_path):
    import typer
    from typer.testing import CliRunner

    from dreammover_flows.cli import EXIT_BAD_INPUT, register

    app = typer.Typer()
    register(app)
    image = tmp_path / "0.png"
    image.write_bytes(b"x")
    missing = CliRunner().invoke(app, ["run-pair", str(image), str(tmp_path / "none.png"), "--model", "tiny"])
    assert missing.exit_code == EXIT_BAD_INPUT and "none.png: file not found" in missing.output
    badfmt = CliRunner().invoke(app, ["run-pair", str(image), str(image), "-o", str(tmp_path / "clip.avi")])
    assert badfmt.exit_code == EXIT_BAD_INPUT and "must end in" in badfmt.output
    nofolder = CliRunner().invoke(app, ["run-archive", str(tmp_path / "nothing"), "-o", str(tmp_path / "out")])
    assert nofolder.exit_code == EXIT_BAD_INPUT and "no such folder" in nofolder.output
    badcfg = CliRunner().invoke(app, ["run-archive", str(tmp_path), "-o", str(tmp_path / "o"), "--size", "10"])
    assert badcfg.exit_code == 2  # typer's own range check


def test_auto_batching_splits_the_deltas_only_for_distribution():
    from dreammover_flows.pair import plan_chunks

    auto = BASE.model_copy(update=dict(num_frames=7, frames_per_batch="auto"))
    # One GPU: one chunk, so the endpoints are denoised once, not once per chunk.
    assert plan_chunks(auto, spread=1) == [auto.deltas]
    # Two GPUs for this pair: two contiguous chunks, near-equal, that together are every δ in order.
    halves = plan_chunks(auto, spread=2)
    assert [len(c) for c in halves] == [4, 3] and sum(halves, []) == auto.deltas
    # More GPUs than frames: one frame each, never an empty chunk.
    assert plan_chunks(auto, spread=20) == [[d] for d in auto.deltas]
    # A fixed frames_per_batch is the chunk size, whatever the pool.
    fixed = auto.model_copy(update=dict(frames_per_batch=3))
    assert [len(c) for c in plan_chunks(fixed, spread=1)] == [3, 3, 1] == [len(c) for c in plan_chunks(fixed, 8)]
