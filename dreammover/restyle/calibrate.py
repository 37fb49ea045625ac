"""Calibrate λ_s, λ_t (not published): ratio of the DDS gradient norm to each SSM gradient norm at λ = 1.

Measured where the SSM terms act: after `warmup` DDS-only iterations have moved z away from ẑ (at
z = ẑ both SSM gradients are 0), averaged over the timesteps an edit samples. Run:
`python -m dreammover.restyle.calibrate --model tiny-t2v` (docs/restyle.md "## Settings" has the figures).
"""
from __future__ import annotations

import argparse

import torch

from .attention import key_layers
from .config import RestyleConfig
from .edit import frozen, optimise
from .method import forward_noise, guided_eps, masked_dds_gradient, ssm_gradient, unet_autocast


def gradient_norms(model, z_src: torch.Tensor, source: str, target: str, config: RestyleConfig,
                   warmup: int = 10, samples: int = 8) -> dict[str, float]:
    """Mean ‖∇DDS‖, ‖∇L_S‖, ‖∇L_T‖ (λ = 1) at a z moved by `warmup` DDS-only iterations."""
    with frozen(model.unet):
        dds_only = config.model_copy(update=dict(steps=warmup, spatial_ssm=False, temporal_ssm=False))
        z, _ = optimise(model, z_src, source, target, None, dds_only)
        gen = torch.Generator().manual_seed(config.seed + 1)
        layers = key_layers(model.unet, config.ssm_blocks)
        alphas = model.alphas_cumprod.to(z.device)
        embs = [model.embed(p) for p in ("", source, target)]
        autocast = lambda: unet_autocast(model.device, model.dtype, config.autocast)  # noqa: E731
        sums = dict(dds=0.0, ssm_s=0.0, ssm_t=0.0)
        for _ in range(samples):
            t = int(torch.randint(config.t_min, config.t_max, (1,), generator=gen))
            eps = torch.randn(z.shape, generator=gen).to(z.device)
            z_t, zs_t = forward_noise(z, z_src, t, eps, alphas)
            with autocast():
                e_s, e_t = guided_eps(model.unet, zs_t, z_t, t, *embs, config.guidance_scale)
            sums["dds"] += float(masked_dds_gradient(e_t, e_s, None, config.dds_scale).norm())
            for key, (ls, lt) in (("ssm_s", (1.0, 0.0)), ("ssm_t", (0.0, 1.0))):
                g, _, _ = ssm_gradient(model.unet, z, zs_t, t, eps, alphas, embs[1], embs[2], layers, ls, lt, autocast)
                sums[key] += float(g.norm())
    return {k: v / samples for k, v in sums.items()}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny-t2v")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--latent", type=int, nargs=2, default=(8, 8), metavar=("H", "W"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--samples", type=int, default=8)
    args = ap.parse_args(argv)
    from .model import load_t2v

    model = load_t2v(args.model)
    gen = torch.Generator().manual_seed(args.seed)
    z_src = torch.randn(1, 4, args.frames, *args.latent, generator=gen).to(model.device)  # ~ unit-variance latents
    cfg = RestyleConfig(seed=args.seed)
    n = gradient_norms(model, z_src, "a photo of a dog running on grass", "an oil painting of a tiger running on grass",
                       cfg, warmup=args.warmup, samples=args.samples)
    print(f"|grad DDS| {n['dds']:.4g}  |grad L_S| {n['ssm_s']:.4g}  |grad L_T| {n['ssm_t']:.4g}  ->  "
          f"lambda_s ~ {n['dds'] / max(n['ssm_s'], 1e-12):.4g}, lambda_t ~ {n['dds'] / max(n['ssm_t'], 1e-12):.4g}")


if __name__ == "__main__":
    main()
