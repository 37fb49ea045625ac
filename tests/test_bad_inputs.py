"""What a new user feeds `dreammover interpolate`: every bad input is one clear line before any work (exit 2),
every odd-but-valid photo renders, and whatever was changed on the way is said. All files are generated here.
"""
from __future__ import annotations

import io
import json
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner


def _png(path: Path, width: int, height: int, bit_depth: int, colour_type: int, row: bytes) -> Path:
    """A valid PNG whose every row is `row` (filter byte included), compressed as a stream: no big array."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z, parts = zlib.compressobj(1), []
    block = row * max(1, (1 << 20) // len(row))
    rows_per_block = len(block) // len(row)
    for start in range(0, height, rows_per_block):
        parts.append(z.compress(block[:len(row) * min(rows_per_block, height - start)]))
    parts.append(z.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(parts))
                     + chunk(b"IEND", b""))
    return path


def _photo(size=(48, 64), seed=0) -> Image.Image:
    """A smooth colour photo stand-in (h, w)."""
    h, w = size
    y, x = np.mgrid[0:h, 0:w]
    arr = np.stack([x * 255 // max(w - 1, 1), y * 255 // max(h - 1, 1), (x + y + seed * 40) % 256], -1)
    return Image.fromarray(arr.astype(np.uint8))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("corpus")
    good = _photo()
    buf = io.BytesIO()
    good.save(buf, "PNG")
    png = buf.getvalue()
    buf = io.BytesIO()
    good.save(buf, "JPEG")
    jpg = buf.getvalue()
    c = {"good": d / "good.png", "other": d / "other.png"}
    good.save(c["good"])
    _photo(seed=1).save(c["other"])
    # bad: one clear line each
    (c.setdefault("zero-byte", d / "empty.png")).write_bytes(b"")
    (c.setdefault("truncated png", d / "cut.png")).write_bytes(png[: len(png) // 2])
    (c.setdefault("truncated jpeg", d / "cut.jpg")).write_bytes(jpg[: len(jpg) // 2])
    (c.setdefault("text as png", d / "notes.png")).write_text("this is not an image\n")
    (c.setdefault("svg", d / "drawing.svg")).write_text(
        '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>')
    (c.setdefault("folder", d / "a-folder.png")).mkdir()
    c["missing"] = d / "missing.png"
    # 30000 x 30000 1-bit grey: ~100 KB on disk, 2.7 GB as RGB
    c["decompression bomb"] = _png(d / "bomb.png", 30000, 30000, 1, 0, b"\x00" + bytes(3750))
    # odd but valid: rendered
    good.convert("CMYK").save(c.setdefault("cmyk", d / "cmyk.jpg"))
    Image.fromarray((np.asarray(good.convert("L")).astype(np.uint16) * 257)).save(c.setdefault("16-bit grey",
                                                                                               d / "g16.png"))
    rgb16 = b"\x00" + np.tile(np.array([50000, 20000, 1000], ">u2"), 64).tobytes()
    c["16-bit rgb"] = _png(d / "rgb16.png", 64, 48, 16, 2, rgb16)
    rgba = np.dstack([np.asarray(good), np.full((48, 64), 255, np.uint8)])
    rgba[:, :16, 3] = 0
    Image.fromarray(rgba, "RGBA").save(c.setdefault("rgba", d / "rgba.png"))
    good.convert("L").save(c.setdefault("grayscale", d / "grey.png"))
    good.convert("P", palette=Image.Palette.ADAPTIVE).save(c.setdefault("palette", d / "palette.png"))
    Image.new("RGB", (1, 1), (10, 200, 30)).save(c.setdefault("1x1", d / "dot.png"))
    frames = [_photo(seed=i) for i in range(3)]
    frames[0].save(c.setdefault("animated gif", d / "anim.gif"), save_all=True, append_images=frames[1:])
    good.save(c.setdefault("webp", d / "photo.webp"))
    rot = _photo((64, 48))                                   # stored portrait, displayed landscape
    exif = rot.getexif()
    exif[0x0112] = 6
    rot.save(c.setdefault("exif rotated", d / "rotated.jpg"), exif=exif)
    _photo((128, 40)).save(c.setdefault("mixed aspect", d / "tall.png"))
    good.save(c.setdefault("unicode name", d / "čaj 照片 ☕.png"))
    return c


@pytest.fixture
def app(monkeypatch):
    """The CLI, with model loading and computing forbidden: validation must finish before either."""
    from dreammover import pipeline
    from dreammover.cli import app

    def no_model(*a, **k):
        raise AssertionError("the model was loaded before the input was validated")

    monkeypatch.setattr(pipeline.DreamMover, "from_pretrained", classmethod(no_model))
    return app


def _one_clear_line(result, *expected: str) -> str:
    out = result.output
    assert result.exit_code == 2, (result.exit_code, out, result.exception)
    assert "Traceback" not in out and isinstance(result.exception, SystemExit), out
    errors = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, out
    for text in expected:
        assert text in errors[0], errors[0]
    return errors[0]


BAD_IMAGES = {
    "zero-byte": "not a readable image", "truncated png": "not a readable image",
    "truncated jpeg": "not a readable image", "text as png": "not a readable image", "svg": "not a readable image",
    "folder": "is a folder", "missing": "file not found", "decompression bomb": "900 megapixel",
}


@pytest.mark.parametrize("case", list(BAD_IMAGES))
def test_bad_image_is_one_line_before_the_model_loads(app, corpus, case, tmp_path):
    r = CliRunner().invoke(app, ["interpolate", str(corpus[case]), str(corpus["good"]), "-o",
                                 str(tmp_path / "x.mp4"), "--model", "tiny", "-q"])
    _one_clear_line(r, corpus[case].name, BAD_IMAGES[case])
    assert not (tmp_path / "x.mp4").exists()


def test_decompression_bomb_is_refused_without_decoding(corpus):
    from dreammover.images import ImageInputError, load_image

    with pytest.raises(ImageInputError, match="decompression bomb"):
        load_image(corpus["decompression bomb"])


@pytest.mark.parametrize("output, expected", [
    ("/proc/x.mp4", "cannot create files in /proc"), ("clip.avi", "unsupported output format '.avi'"),
    ("adir.mp4", "is a folder")])
def test_unusable_output_is_refused_before_any_work(app, corpus, tmp_path, monkeypatch, output, expected):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "adir.mp4").mkdir()
    r = CliRunner().invoke(app, ["interpolate", str(corpus["good"]), str(corpus["other"]), "-o", output,
                                 "--model", "tiny", "-q"])
    _one_clear_line(r, expected)


def test_huge_frame_count_needs_an_explicit_max_frames(app, corpus, tmp_path):
    args = ["interpolate", str(corpus["good"]), str(corpus["other"]), "-o", str(tmp_path / "x.mp4"), "--model",
            "tiny", "--frames", "10000", "-q"]
    _one_clear_line(CliRunner().invoke(app, args), "--frames 10000", "UNet passes", "--max-frames 10000")
    r = CliRunner().invoke(app, [*args, "--max-frames", "10000"])
    assert "loaded before the input was validated" in str(r.exception)   # allowed past the guard


def test_bad_config_is_one_line(app, corpus, tmp_path, monkeypatch):
    base = ["interpolate", str(corpus["good"]), str(corpus["other"]), "-o", str(tmp_path / "x.mp4"), "-q"]
    f = tmp_path / "c.json"
    f.write_text(json.dumps({"num_frames": "many"}))
    _one_clear_line(CliRunner().invoke(app, [*base, "--config", str(f)]), "bad configuration", "num_frames")
    monkeypatch.setenv("DREAMMOVER_CFG_FRAMES", "8")
    _one_clear_line(CliRunner().invoke(app, base), "DREAMMOVER_CFG_FRAMES")


def test_size_too_large_for_memory_is_refused_with_a_size_that_fits(corpus, tmp_path, tiny_model_dir,
                                                                     monkeypatch):
    from dreammover import pipeline
    from dreammover.cli import app

    def no_work(*a, **k):
        raise AssertionError("computing started")

    monkeypatch.setattr(pipeline.DreamMover, "interpolate", no_work)
    r = CliRunner().invoke(app, ["interpolate", str(corpus["good"]), str(corpus["other"]), "-o",
                                 str(tmp_path / "x.mp4"), "--model", "tiny", "--size", "8192", "-q"])
    line = _one_clear_line(r, "--size 8192", "will not fit in memory", "GiB")
    suggested = int(line.split("use --size ")[1].split()[0])
    assert 64 <= suggested < 8192


def test_unknown_model_offline_is_one_line(corpus, tmp_path, dreammover_home):
    from dreammover.cli import app

    r = CliRunner().invoke(app, ["interpolate", str(corpus["good"]), str(corpus["other"]), "-o",
                                 str(tmp_path / "x.mp4"), "--model", "nobody/none", "-q"])
    _one_clear_line(r, "could not load model 'nobody/none'")


RENDERED = ["cmyk", "16-bit grey", "16-bit rgb", "rgba", "grayscale", "palette", "1x1", "animated gif", "webp",
            "exif rotated", "mixed aspect", "unicode name"]


@pytest.mark.parametrize("case", RENDERED)
def test_odd_but_valid_photos_are_prepared(corpus, case):
    from dreammover.images import load_and_prepare, load_image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")         # what is said is checked below and in test_images.py
        a, b = load_and_prepare(corpus[case], corpus["good"], 64)
        raw = load_image(corpus[case])
    assert a.shape == b.shape and a.dtype == b.dtype == np.uint8 and a.shape[0] % 64 == a.shape[1] % 64 == 0
    assert 5 < raw.mean() < 250 or case == "1x1", raw.mean()   # not blank: 16-bit is scaled, not clipped
    if case == "exif rotated":
        assert raw.shape[:2] == (48, 64)
    if case == "16-bit rgb":
        # 50000, 20000, 1000 of 65535 -> 195, 78, 4 (Pillow keeps the high byte: within 1)
        assert np.abs(raw[0, 0].astype(int) - [195, 78, 4]).max() <= 1, raw[0, 0]


SAID = {"rgba": "transparent pixels flattened onto white", "animated gif": "animated image with 3 frames",
        "1x1": "upscaled"}


def test_cli_renders_odd_photos_and_says_what_it_changed(corpus, tmp_path, tiny_model_dir):
    """End to end on the tiny model with a short schedule: a unicode-named RGBA photo and an animated GIF."""
    from dreammover.cli import app
    from dreammover.video import read_video

    cfg = tmp_path / "fast.json"
    cfg.write_text(json.dumps({"lora_steps": 0, "num_inference_steps": 4, "inversion_steps": 2, "feature_step": 1}))
    rgba_unicode = corpus["rgba"].with_name("ä 透明.png")
    rgba_unicode.write_bytes(corpus["rgba"].read_bytes())
    out = tmp_path / "clip.mp4"
    r = CliRunner().invoke(app, ["interpolate", str(rgba_unicode), str(corpus["animated gif"]), "-o", str(out),
                                 "--model", "tiny", "--size", "64", "--frames", "1", "--config", str(cfg), "-q"])
    assert r.exit_code == 0, (r.output, r.exception)
    warned = [line for line in r.output.splitlines() if line.startswith("warning:")]
    assert any(SAID["rgba"] in w and "透明" in w for w in warned), r.output
    assert any(SAID["animated gif"] in w for w in warned), r.output
    assert len(read_video(out)) == 3


def test_help_shows_flags_as_flags_and_every_option_has_help():
    import click
    import typer

    from dreammover.cli import _register_plugins, app

    _register_plugins()
    group = typer.main.get_command(app)
    for name in ("interpolate", "bench", "make-sample"):
        cmd = group.commands[name]
        for p in cmd.params:
            assert p.help, f"{name} {p.name} has no help text"
        text = cmd.get_help(click.Context(cmd, info_name=name))
        assert "<bool>" not in text, text
    r = CliRunner().invoke(app, ["interpolate", "--help"])
    assert "--keep-inputs / --no-keep-inputs" in r.output


def test_bench_refuses_an_unwritable_report_folder_before_running(tmp_path):
    from dreammover.cli import _register_plugins, app

    _register_plugins()
    (tmp_path / "pairs").mkdir()
    r = CliRunner().invoke(app, ["bench", str(tmp_path / "pairs"), "-o", "/proc/report", "--methods", "crossfade"])
    _one_clear_line(r, "/proc/report", "cannot create files in /proc")


def test_memory_plan_on_a_gpu_counts_decoded_frames_against_the_host(monkeypatch):
    import torch

    from dreammover import InterpolationConfig, preflight

    gib = preflight.GiB
    monkeypatch.setattr(preflight, "available_memory", lambda d: 80 * gib if d.type == "cuda" else 1 * gib)
    cuda = dict(device=torch.device("cuda"), dtype=torch.float16)
    ok = preflight.plan_run(InterpolationConfig(size=512), (512, 512), None, **cuda)
    assert ok.fits and ok.frames_bytes == 0
    many = preflight.plan_run(InterpolationConfig(size=512, num_frames=2000), (512, 512), None, **cuda)
    assert not many.fits and "host memory" in many.notes[0]          # 2002 x 512^2 x 3 bytes, three copies
    big = preflight.plan_run(InterpolationConfig(size=8192), (512, 512), None, **cuda)
    assert not big.fits and big.peak_bytes > 4 * ok.peak_bytes * 16  # memory grows with the pixel count
