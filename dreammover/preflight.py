"""Checks before any work: is the output writable, how many frames, how much memory and UNet work a run needs.

The memory estimate is a rough upper bound from the model's widths (read from the loaded configs) and
per-stage constants calibrated on CPU with the tiny model (peak RSS at 256 and 512 px); it exists to refuse
runs that cannot fit (e.g. 8192 px) before minutes of work, not to predict a peak to the megabyte.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI imports this module for its constants: keep torch out of `--help`
    import torch

    from .config import InterpolationConfig

GiB = 1024 ** 3
# Above this many in-between frames a run needs an explicit --max-frames: a typo guard (10000 frames is
# ~1000x the UNet work of the paper's 32-frame clip and tens of GB of frames in memory).
MAX_FRAMES = 256
# Stored activations of one LoRA training step per latent pixel, in units of the UNet's first width
# (tiny model: 943 MB measured at 512 px, batch 2, fp32).
LORA_ACTIVATIONS = 900
# The same for a no-grad UNet pass (inversion, denoising).
UNET_ACTIVATIONS = 40


class PreflightError(ValueError):
    """A run that cannot work as asked; the message says what to change."""


def check_output_path(path: str | Path, formats: tuple[str, ...] | None = None) -> Path:
    """Refuse an output the encoder cannot write (unknown format, unwritable place) before computing a clip.

    A path without suffix is a folder of PNG frames (formats=(): always a folder, e.g. a report).
    Writes nothing but a probe file it deletes again.
    """
    path = Path(path)
    if formats is None:
        from .video import FORMATS

        formats = tuple(FORMATS)
    suffix = path.suffix.lower() if formats else ""   # no formats: `path` is a folder whatever its name
    if suffix and suffix not in formats:
        raise PreflightError(f"{path}: unsupported output format {path.suffix!r}: use "
                             f"{', '.join(formats)} or a folder (no suffix) for PNG frames")
    if suffix and path.is_dir():
        raise PreflightError(f"{path}: is a folder, expected a {suffix} file name")
    if not suffix and path.exists() and not path.is_dir():
        raise PreflightError(f"{path}: exists and is not a folder (PNG frames need a folder)")
    place = path if not suffix and path.is_dir() else path.parent
    while not place.exists():           # the encoder creates missing folders: the first existing one decides
        place = place.parent
    if not place.is_dir():
        raise PreflightError(f"{path}: cannot be written ({place} is not a folder)")
    try:
        with tempfile.NamedTemporaryFile(dir=place, prefix=".dreammover-probe-"):
            pass
    except OSError as err:
        raise PreflightError(f"{path}: cannot create files in {place} ({err.strerror or err}): "
                             "choose another -o") from err
    return path


def _batch(config: "InterpolationConfig") -> int:
    """In-between frames per denoising chunk; a non-number (an automatic choice) is bounded by all frames."""
    fpb = config.frames_per_batch
    return min(fpb, config.num_frames) if isinstance(fpb, int) else config.num_frames


def unet_passes(config: "InterpolationConfig") -> dict[str, int]:
    """UNet image-evaluations per stage (a LoRA step counts as one per image; forward+backward cost ~3x)."""
    steps, n, fpb = config.inversion_steps, config.num_frames, _batch(config)
    chunks = [min(fpb, n - i) for i in range(0, n, fpb)]
    out = {"lora": 2 * config.lora_steps if config.lora else 0,
           "inversion": 2 * steps + (2 if config.flow == "diffusion" else 0),
           # each chunk denoises its frames and both endpoints; two-level fusion adds a second pass at T
           "denoise": sum((c + 2) * (steps + (1 if config.fusion == "two_level" else 0)) for c in chunks)}
    return out


@dataclass
class Plan:
    """What a run will cost: working size, UNet passes, peak memory per stage, and what is available."""

    size_hw: tuple[int, int]
    passes: dict[str, int]
    stage_bytes: dict[str, int]
    frames_bytes: int
    available_bytes: int | None
    notes: list[str] = field(default_factory=list)

    @property
    def peak_bytes(self) -> int:
        return max(self.stage_bytes.values()) + self.frames_bytes

    @property
    def peak_stage(self) -> str:
        return max(self.stage_bytes, key=self.stage_bytes.get)

    @property
    def fits(self) -> bool:
        return self.available_bytes is None or self.peak_bytes <= 0.9 * self.available_bytes

    def summary(self) -> str:
        h, w = self.size_hw
        mem = f"~{self.peak_bytes / GiB:.1f} GiB peak ({self.peak_stage})"
        if self.available_bytes is not None:
            mem += f" of {self.available_bytes / GiB:.1f} GiB available"
        stages = ", ".join(f"{k} {v}" for k, v in self.passes.items() if v)
        return f"{w}x{h}, {sum(self.passes.values())} UNet passes ({stages}), {mem}"


def available_memory(device: "torch.device") -> int | None:
    """Free bytes where the tensors live: the GPU's free memory, else the host's MemAvailable."""
    import torch

    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _widths(components) -> tuple[int, int, int, int]:
    """(UNet first width, feature-block width, VAE first width, VAE second width); SD1.5's when unknown."""
    unet = getattr(getattr(components, "unet", None), "config", None)
    vae = getattr(getattr(components, "vae", None), "config", None)
    u = tuple(getattr(unet, "block_out_channels", (320, 640, 1280, 1280)))
    v = tuple(getattr(vae, "block_out_channels", (128, 256, 512, 512)))
    return u[0], u[-1], v[0], v[1] if len(v) > 1 else v[0]


def plan_run(config: "InterpolationConfig", image_hw: tuple[int, int], components=None,
             device: "torch.device | None" = None, dtype: "torch.dtype | None" = None) -> Plan:
    """Estimate a run of `config` on an image 0 of `image_hw` before doing it."""
    import torch

    from .images import working_size

    device = device or getattr(components, "device", torch.device("cpu"))
    dtype = dtype or getattr(components, "dtype", torch.float32)
    b = torch.finfo(dtype).bits // 8
    h, w = working_size(image_hw[0], image_hw[1], config.size)
    hw = (h // 8) * (w // 8)
    u0, uf, v0, v1 = _widths(components)
    frames = config.num_frames + 2
    stages = {
        "encode": 2 * h * w * 4 * v0 * b,
        "inversion": 2 * hw * u0 * UNET_ACTIVATIONS * b,
        "denoise": (_batch(config) + 2) * hw * u0 * UNET_ACTIVATIONS * b,
        "decode": min(config.decode_batch, frames) * h * w * (2 * v1 + 4 * v0) * b,
    }
    if config.lora and config.lora_steps > 0:
        stages["lora"] = 2 * hw * u0 * LORA_ACTIVATIONS * b
    if config.flow == "diffusion":  # similarity rows of Eq. 5 in fp32, plus both upsampled feature maps
        stages["flow"] = min(config.flow_chunk_rows, hw) * hw * 4 + 4 * uf * hw * 4
    # decoded frames stay in host memory; the encoder stacks and serialises them (three copies)
    frames_bytes = 3 * frames * h * w * 3
    avail = available_memory(device)
    plan = Plan((h, w), unet_passes(config), stages, frames_bytes, avail)
    if device.type == "cuda":  # frames live on the host: only the device stages count against the GPU
        plan.frames_bytes = 0
        host = available_memory(torch.device("cpu"))
        if host is not None and frames_bytes > 0.9 * host:
            plan.notes.append(f"the {frames} decoded frames need ~{frames_bytes / GiB:.1f} GiB of host memory "
                              f"({host / GiB:.1f} GiB available)")
            plan.available_bytes = 0
    return plan


def largest_size_that_fits(config: "InterpolationConfig", image_hw: tuple[int, int], components=None,
                           device=None, dtype=None) -> int | None:
    """The largest --size (a multiple of 64, at most the asked one) whose plan fits; None if not even 64."""
    for size in range(config.size // 64 * 64, 63, -64):
        if plan_run(config.model_copy(update={"size": size}), image_hw, components, device, dtype).fits:
            return size
    return None
