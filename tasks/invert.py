"""Steps 2-5 as a task: encode, DDIM inversion, diffusion features and flow, cached per pair."""
from __future__ import annotations

from prefect import get_run_logger, task

from dreammover.config import InterpolationConfig
from dreammover.profiling import StageProfile

from .artifacts import cached, get_images, inversion_key, publish
from .lora import _check_identity
from .models import MODELS, ModelSpec, placement
from .retry import retry_options
from .storage import open_storage


def _key(p: dict) -> str:
    return inversion_key(p["prepared"]["hash"], p["identity"], p["config"], p["cache"])


@task(name="invert-and-estimate-flow", **cached("inversion", _key), **retry_options())
def invert_pair(prepared: dict, lora: dict, model: ModelSpec, identity: str, config: InterpolationConfig,
                cache: str, recompute: bool = False) -> dict:
    """PairState (z_T, z_T->0, both flows, prompt embedding) as a safetensors URI."""
    key = inversion_key(prepared["hash"], identity, config, cache)
    name, store = f"inversion/{key}.safetensors", open_storage(cache)
    out = {"key": key, "uri": store.uri(name), "computed": False, "unet_evals": 0, "seconds": {}}
    if store.exists(name) and not recompute:
        get_run_logger().info("reusing inversion/flow %s", key[:12])
        return out
    with MODELS.use(model) as m:
        _check_identity(m.identity, identity)
        m.activate_lora(lora["uri"], lora["rank"])
        profile = StageProfile(m.dm.device)
        state = m.dm.pair_state(get_images(prepared["uri"]), config, profile)
        data = state.to_bytes({"pair": prepared["hash"], "lora": str(lora["uri"])})
    # Outside the model's block: a storage error here is no reason to drop the resident model.
    # Identical photos in two folders invert under one key at once: the first writer wins and
    # both runs read that one object back (a recompute replaces a suspect one).
    publish(cache, name, data, overwrite=recompute)
    get_run_logger().info("inverted pair and estimated flow in %.1fs", sum(profile.seconds.values()))
    return {**out, **placement(), "computed": True, "unet_evals": sum(profile.unet_evals.values()),
            "seconds": dict(profile.seconds)}
