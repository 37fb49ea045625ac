"""Steps 1-5 as one pool task: the pair's LoRA and its inversion + flow, the photos encoded once, on the
worker's resident model (whose identity the task reads and returns: no separate load task per pair).

Each artifact is content-keyed (tasks/artifacts.py) and reused when the cache storage already holds
it: a pair whose settings changed only in inversion fields keeps its LoRA; a refit LoRA re-inverts.
"""
from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from safetensors.torch import save

from dreammover.config import InterpolationConfig
from dreammover.profiling import StageProfile

from .artifacts import get_images, inversion_key, lora_key, publish
from .models import MODELS, ModelSpec, placement
from .results import FittedPairArtifacts, InversionArtifact, LoadedModelInfo, LoraArtifact, Prepared, TaskRun
from .retry import retry_options
from .storage import open_storage


@task(name="fit-pair", cache_policy=NO_CACHE, **retry_options())
def fit_pair(prepared: Prepared, model: ModelSpec, config: InterpolationConfig, cache: str,
             recompute: bool = False) -> FittedPairArtifacts:
    """The pair's LoRA and PairState in the cache storage; recompute: both anew, replacing what is stored.

    The worker's resident model is taken first (loaded only the first time): its identity keys both.
    """
    with MODELS.use(model) as m:
        loaded = LoadedModelInfo(identity=m.identity, run=TaskRun(computed=True, **placement()))
    identity = loaded.identity
    store, uses_lora = open_storage(cache), bool(config.lora and config.lora_steps > 0)
    lk, ik = lora_key(prepared.hash, identity, config, cache), inversion_key(prepared.hash, identity, config, cache)
    lora_name, inv_name = f"lora/{lk}.safetensors", f"inversion/{ik}.safetensors"
    lora = LoraArtifact(key=lk, uri=store.uri(lora_name) if uses_lora else None, rank=config.lora_rank)
    inversion = InversionArtifact(key=ik, uri=store.uri(inv_name))
    refit = uses_lora and (recompute or not store.exists(lora_name))
    # An inversion made under another LoRA than the stored one would be inconsistent: a refit re-inverts.
    if not refit and not recompute and store.exists(inv_name):
        get_run_logger().info("reusing LoRA and inversion/flow of pair %s", prepared.hash[:12])
        return FittedPairArtifacts(model=loaded, lora=lora, inversion=inversion)
    images = get_images(prepared.uri)  # read before taking the model: a storage error then costs no reload
    with MODELS.use(model) as m:
        check_identity(m.identity, identity)
        profile = StageProfile(m.dm.device)
        if refit:
            try:
                fitted = m.dm.fit_pair(images, config, profile)
            finally:
                # fit_pair leaves its adapter attached, also when it raised (an OOM mid-fit): never let the
                # previous pair's name stand for it (MODELS.use drops the whole model on a raise as well).
                m.forget_lora()
            lora_data = save({k: v.detach().cpu().contiguous() for k, v in fitted.lora.items()},
                             metadata={"rank": str(config.lora_rank), "adapter": "dreammover", "pair": prepared.hash})
        else:
            m.activate_lora(lora.uri, config.lora_rank)
            fitted = m.dm.fit_pair(images, config, profile, lora="active")
        state_data = fitted.state.to_bytes({"pair": prepared.hash, "lora": str(lora.uri)})
        if refit and not publish(cache, lora_name, lora_data, overwrite=recompute):
            # Identical photos fitted under one key at once and the other producer stored first: its
            # weights stand, so the inversion must be made under them, not under ours.
            m.activate_lora(lora.uri, config.lora_rank)
            fitted = m.dm.fit_pair(images, config, profile, lora="active")
            state_data = fitted.state.to_bytes({"pair": prepared.hash, "lora": str(lora.uri)})
        elif refit:
            m.active_lora = lora.uri  # what is merged now is exactly what the URI holds
    # Outside the model's block: a storage error here is no reason to drop the resident model.
    publish(cache, inv_name, state_data, overwrite=recompute)
    where, evals, seconds = placement(), dict(profile.unet_evals), dict(profile.seconds)
    fit_evals, fit_seconds = evals.pop("lora", 0), seconds.pop("lora", 0.0)
    if refit:
        lora = lora.model_copy(update={
            "run": TaskRun(computed=True, unet_evals=fit_evals, seconds=fit_seconds, **where),
            "final_loss": fitted.lora_losses[-1] if fitted.lora_losses else None})
        get_run_logger().info("fitted LoRA rank %d in %.1fs (loss %.4f)", config.lora_rank, fit_seconds,
                              lora.final_loss or float("nan"))
    inversion = inversion.model_copy(update={
        "run": TaskRun(computed=True, unet_evals=sum(evals.values()), seconds=sum(seconds.values()), **where)})
    get_run_logger().info("inverted pair and estimated flow in %.1fs", inversion.run.seconds)
    return FittedPairArtifacts(model=loaded, lora=lora, inversion=inversion)


def check_identity(loaded: str, expected: str) -> None:
    """Keys were computed from `expected`; running another model under them would poison the cache."""
    if loaded != expected:
        raise RuntimeError(f"model identity changed under a cache key: loaded {loaded!r}, key has {expected!r}")
