"""Bench report and progress without a model: a missing metric draws nothing, the ETA follows the timed runs."""
from __future__ import annotations

import math

import pytest
from PIL import Image

from dreammover import InterpolationConfig


def _row(method, we, lpips):
    return {"pair": "p", "method": method, "frames": 4, "size": "64x64", "we": we, "we_mid": we, "lpips": lpips,
            "hf_ratio": 1.0, "seconds_total": 1.0, "seconds": {"blend": 1.0}, "unet_evals": {}, "clip": "c.mp4"}


def test_missing_metric_draws_no_bar_and_says_not_computed(tmp_path, monkeypatch):
    import matplotlib.figure

    from dreammover.evaluation import report
    from dreammover.evaluation.runner import BenchResult

    drawn = []
    save = matplotlib.figure.Figure.savefig
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, *a, **k: (drawn.append(fig),
                                                                                   save(fig, *a, **k)))
    result = BenchResult(rows=[_row("a", 0.5, 0.2), _row("b", 0.7, None), _row("c", 0.9, float("nan"))])
    report.plot_metrics(result, tmp_path / "m.png")
    axes = {ax.get_title(): ax for ax in drawn[0].axes}
    lp = next(ax for t, ax in axes.items() if t.startswith("LPIPS"))
    heights = [p.get_height() for p in lp.patches]
    assert heights == [pytest.approx(0.2)]             # one bar: b and c have no LPIPS, so no (0-height) bar
    notes = [t.get_text() for t in lp.texts]
    assert notes.count("not computed") == 2
    we = next(ax for t, ax in axes.items() if t.startswith("WE "))
    assert [round(p.get_height(), 3) for p in we.patches] == [0.5, 0.7, 0.9] and not we.texts
    assert Image.open(tmp_path / "m.png").size[0] > 100


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_progress_lines_count_runs_and_estimate_what_is_left():
    from dreammover.evaluation.progress import BenchProgress

    lines, clock = [], FakeClock()
    plan = [(p, label, kind) for p in ("dog", "lion") for label, kind in
            (("dreammover", "dreammover"), ("crossfade", "crossfade"), ("dreammover-no_lora", "dreammover"))]
    prog = BenchProgress(plan, lines.append, clock)
    durations = {"dreammover": 60.0, "crossfade": 1.0, "dreammover-no_lora": 40.0}
    for pair, label, _ in plan[:3]:
        prog.start(pair, label)
        clock.now += durations[label]
        prog.done(pair, label, "ok")
    assert lines[0] == "[1/6] dog / dreammover ..."
    assert "ETA after the first run of each kind" in lines[1]          # crossfade not timed yet: no guess
    assert lines[-1].startswith("[3/6] dog / dreammover-no_lora: ok; 40 s")
    assert prog.eta() == pytest.approx(60 + 1 + 40)                    # the same labels again on lion
    assert "3 left, ETA 1m41s" in lines[-1]
    prog.drop("lion")
    assert prog.total == 3 and prog.eta() == 0


def test_bench_says_up_front_what_runs_and_shows_progress(tmp_path):
    """A real bench over two generated pairs with the weight-free methods: plan line, one line per run, ETA."""
    from dreammover.evaluation.runner import BenchSettings, run_bench
    from dreammover.sample import sample_pair

    for name in ("a", "b"):
        (tmp_path / "pairs" / name).mkdir(parents=True)
        for i, im in enumerate(sample_pair(64)):
            Image.fromarray(im).save(tmp_path / "pairs" / name / f"{i}.png")
    lines = []
    s = BenchSettings(pairs_dir=tmp_path / "pairs", out_dir=tmp_path / "out", methods=("crossfade", "classic"),
                      config=InterpolationConfig(size=64, num_frames=2))
    result = run_bench(s, log=lines.append)
    assert len(result.rows) == 4
    assert lines[0].startswith("bench: 2 pairs x (crossfade, classic): 4 runs")
    finished = [line for line in lines if ": WE " in line]
    assert [line.split("]")[0] for line in finished] == ["[1/4", "[2/4", "[3/4", "[4/4"]
    assert "ETA" in finished[1] and finished[-1].endswith("(done)")
    assert not math.isnan(result.rows[0]["we"])
