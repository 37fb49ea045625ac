"""Step 1 as a task: fit the pair's LoRA once per (pair, model, LoRA fields) and keep it as safetensors."""
from __future__ import annotations

import time

from prefect import get_run_logger, task

from dreammover.config import InterpolationConfig

from .artifacts import cached, get_images, lora_key, put_tensors
from .models import MODELS, ModelSpec, placement
from .retry import retry_options
from .storage import open_storage


def _key(p: dict) -> str:
    return lora_key(p["prepared"]["hash"], p["identity"], p["config"], p["cache"])


@task(name="fit-lora", **cached("lora", _key), **retry_options())
def fit_pair_lora(prepared: dict, model: ModelSpec, identity: str, config: InterpolationConfig, cache: str,
                  recompute: bool = False) -> dict:
    """LoRA weights URI (None when LoRA is off); reuses an artifact already in the cache storage."""
    key = lora_key(prepared["hash"], identity, config, cache)
    out = {"key": key, "rank": config.lora_rank, "uri": None, "computed": False, "unet_evals": 0, "seconds": 0.0}
    if not (config.lora and config.lora_steps > 0):
        return out
    name, store = f"lora/{key}.safetensors", open_storage(cache)
    # The artifact may exist without a Prefect record (results wiped, another machine's run).
    if store.exists(name) and not recompute:
        get_run_logger().info("reusing LoRA %s", key[:12])
        return {**out, "uri": store.uri(name)}
    images = get_images(prepared["uri"])  # read before taking the model: a storage error then costs no reload
    with MODELS.use(model) as m:
        _check_identity(m.identity, identity)
        start = time.perf_counter()
        emb = m.dm.encode_prompt(config.prompt)
        posterior = m.dm.encode_posterior(images)  # one VAE pass for z0 and the fit's sampled views
        z0 = posterior[0] * m.dm.components.vae_scale
        try:
            state, losses = m.dm.fit_lora(z0, emb, config, images=images, posterior=posterior)
        finally:
            # fit_lora leaves its adapter attached, also when it raised (an OOM mid-fit): never let the
            # previous pair's name stand for it (MODELS.use drops the whole model on a raise as well).
            m.forget_lora()
        meta = {"rank": config.lora_rank, "adapter": "dreammover", "pair": prepared["hash"]}
        # Identical photos in two folders fit one key at once: the first writer wins and both use its
        # weights. Ours stay active only if they are what the URI holds (a recompute overwrites).
        uri = put_tensors(cache, name, state, meta, overwrite=recompute)
        if recompute:
            m.active_lora = uri
        seconds = time.perf_counter() - start
    get_run_logger().info("fitted LoRA rank %d in %.1fs (loss %.4f -> %.4f)", config.lora_rank, seconds,
                          losses[0], losses[-1])
    return {**out, **placement(), "uri": uri, "computed": True,
            "unet_evals": int(z0.shape[0] * config.lora_steps), "seconds": seconds, "final_loss": losses[-1]}


def _check_identity(loaded: str, expected: str) -> None:
    # Keys were computed from `expected`; running another model under them would poison the cache.
    if loaded != expected:
        raise RuntimeError(f"model identity changed under a cache key: loaded {loaded!r}, key has {expected!r}")
