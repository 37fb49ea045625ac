"""`dreammover discover` on a generated archive (tests/discover_archive.py): exactly the bursts are paired, every
rejected candidate and unusable file has a one-line reason, chaining, incremental state, EXIF and thumbnails."""
from __future__ import annotations

import io
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from discover_archive import T0, make_archive, scene, subject, view, write_photo
from dreammover.discover import DiscoverConfig, discover, load_state, save_state, write_manifest
from dreammover.discover.source import PhotoSource


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return make_archive(tmp_path_factory.mktemp("archive"), bad_inputs=True)


def _pairs(result) -> set[tuple[str, str]]:
    return {(p["image0"], p["image1"]) for p in result.pairs}


def _notes(result) -> dict[str, str]:
    return {n["key"]: n["note"] for n in result.photos_report}


def test_discover_pairs_exactly_the_bursts(archive):
    result = discover(str(archive.root))
    assert _pairs(result) == archive.pairs
    rejected = {(r["image0"], r["image1"]): r["reason"] for r in result.rejected}
    assert set(rejected) == set(archive.rejected)
    for candidate, why in archive.rejected.items():
        assert rejected[candidate].startswith(why), rejected[candidate]
    # Two cameras at the same moment are two bursts; an id names the camera and its pair's first capture time
    # (10:15:02.000, 02.500 for the Canon, 02.200 for the Nikon; milliseconds only when not 0).
    ids = {p["id"] for p in result.pairs}
    assert {"20240501-101502-canon-eos-r5", "20240501-101502.500-canon-eos-r5", "20240501-101502.200-nikon-z-6"} <= ids
    multi = [[p.key for p in b.photos] for b in result.bursts if len(b.photos) > 1]
    assert sorted(multi) == sorted(archive.bursts)
    for p in result.pairs:
        assert p["gap_s"] <= DiscoverConfig().burst_gap_s and p["motion"] >= DiscoverConfig().min_motion
        assert 0 < p["score"] <= 1


def test_every_bad_or_exif_less_file_gets_one_line_and_discovery_goes_on(archive):
    (archive.root / "README.txt").write_text("an archive")
    notes = _notes(discover(str(archive.root)))
    for key, why in archive.bad.items():
        assert key in notes and why in notes[key] and "\n" not in notes[key], (key, notes.get(key))
    for key in archive.no_exif:
        assert notes[key] == "no EXIF capture time: file time and name order used"
    assert notes["README.txt"].startswith("skipped: not a photo")
    (archive.root / "README.txt").unlink()


def test_capture_time_reads_subseconds_and_offset_and_names_the_camera(tmp_path):
    img = np.zeros((48, 64, 3), np.uint8)
    taken = datetime(2024, 5, 1, 10, 15, 2, 250000)
    write_photo(tmp_path / "a.jpg", img, taken, "Canon", "Canon EOS R5", orientation=6, offset="+02:00")
    write_photo(tmp_path / "b.jpg", img, taken, "FUJIFILM", "X-T4")
    src = PhotoSource(str(tmp_path), 10**8)
    a = src.capture("a.jpg", "v", (tmp_path / "a.jpg").stat().st_size)
    b = src.capture("b.jpg", "v", (tmp_path / "b.jpg").stat().st_size)
    assert a.taken == taken.replace(tzinfo=timezone(timedelta(hours=2))) and a.time_source == "exif"
    assert a.camera == "Canon EOS R5" and a.orientation == 6  # the make repeated in the model is not doubled
    assert b.camera == "FUJIFILM X-T4" and b.taken.tzinfo is None
    # With an offset the order uses the UTC instant: 10:15 at +02:00 comes two hours before 10:15 local-as-UTC.
    assert b.when - a.when == pytest.approx(7200)


def test_thumbnails_decode_reduced_and_upright(tmp_path):
    from dreammover.discover.photos import thumbnail

    rng = np.random.default_rng(0)
    big = rng.integers(0, 255, (1500, 2000, 3), dtype=np.uint8)
    write_photo(tmp_path / "big.jpg", big, T0, "X", "Y", quality=60)
    data = (tmp_path / "big.jpg").read_bytes()
    with Image.open(io.BytesIO(data)) as im:
        im.draft("RGB", (320, 320))
        assert im.size == (500, 375)  # what thumbnail() decodes: 1/4 scale DCT, never the full 2000x1500
    assert thumbnail(data, "big.jpg", 320, 10**8).shape == (240, 320, 3)
    write_photo(tmp_path / "turned.jpg", big[:300, :400], T0, "X", "Y", orientation=6)
    with Image.open(tmp_path / "turned.jpg") as im:
        assert im.size == (300, 400)  # stored portrait ...
    assert thumbnail((tmp_path / "turned.jpg").read_bytes(), "t.jpg", 320, 10**8).shape == (240, 320, 3)  # ... shown landscape


def test_grey_thumbnails_are_the_luma_of_the_colour_ones(tmp_path):
    """Features use the "L" thumbnail (JPEG luma at reduced scale): same size and orientation, same brightness."""
    import cv2

    from dreammover.discover.photos import thumbnail

    write_photo(tmp_path / "p.jpg", scene(3, (2000, 1500)), T0, "X", "Y", orientation=6, quality=80)
    data = (tmp_path / "p.jpg").read_bytes()
    grey, rgb = thumbnail(data, "p.jpg", 320, 10**8, "L"), thumbnail(data, "p.jpg", 320, 10**8)
    assert grey.shape == (240, 320) and grey.dtype == np.uint8  # upright landscape, one channel
    luma = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(float)
    assert np.abs(grey - luma).mean() < 2 and np.corrcoef(grey.ravel(), luma.ravel())[0, 1] > 0.99


def test_singles_are_never_decoded(archive, monkeypatch):
    read = []
    original = PhotoSource.read
    monkeypatch.setattr(PhotoSource, "read", lambda self, key: read.append(key) or original(self, key))
    discover(str(archive.root))
    in_bursts = {k for burst in archive.bursts for k in burst}
    assert set(read) == in_bursts  # headers only for singles and bad files; each burst photo read once
    assert len(read) == len(in_bursts)


def test_chain_makes_one_keyframes_entry_per_burst(archive):
    result = discover(str(archive.root), DiscoverConfig(chain=True))
    chained = [p for p in result.pairs if "keyframes" in p]
    assert [p["keyframes"] for p in chained] == [archive.bursts[0]]
    (entry,) = chained
    assert entry["id"] == "20240501-101502-canon-eos-r5"  # its first keyframe's capture time and camera
    assert len(entry["scores"]) == len(entry["motions"]) == len(entry["keyframes"]) - 1
    assert len(set(entry["keyframes"])) == len(entry["keyframes"])
    singles = {(p["image0"], p["image1"]) for p in result.pairs if "image0" in p}  # bursts of two stay pairs
    assert singles == archive.pairs - {(a, b) for a, b in zip(archive.bursts[0], archive.bursts[0][1:])}


def test_thresholds_decide(archive):
    still = discover(str(archive.root), DiscoverConfig(max_motion=0.05))
    reasons = {(r["image0"], r["image1"]): r["reason"] for r in still.rejected}
    a = archive.bursts[0]
    assert reasons[(a[1], a[2])].startswith("too much motion")  # the 0.25-diagonal step
    strict = discover(str(archive.root), DiscoverConfig(min_inliers=5000))
    assert strict.pairs == [] and all(r["reason"].startswith("scene cut") for r in strict.rejected)
    apart = discover(str(archive.root), DiscoverConfig(burst_gap_s=0.3))
    assert not any(p["camera"] == "Canon EOS R5" for p in apart.pairs)  # 0.5 s steps are no burst at 0.3 s


def test_incremental_run_reads_only_the_new_photo(archive, tmp_path, monkeypatch):
    root = tmp_path / "grow"
    arc = make_archive(root)
    first = discover(str(root))
    save_state(first.state, str(tmp_path / "state.json"))
    known = load_state(str(tmp_path / "state.json"))
    assert load_state(str(tmp_path / "nothing.json")) is None

    nothing = discover(str(root), known=known)
    assert (nothing.photos, nothing.pairs) == (0, [])

    w, h = 320, 240
    ball = subject(1, h // 8)
    rgb = view(scene(10, (2 * w, 2 * h)), (3 * w // 8, 24), (w, h), ball, (w // 2, h // 2))
    write_photo(root / "DCIM/IMG_0700.JPG", rgb, T0 + timedelta(seconds=3.0), "Canon", "EOS R5", offset="+02:00")
    read = []
    original = PhotoSource.read
    monkeypatch.setattr(PhotoSource, "read", lambda self, key: read.append(key) or original(self, key))
    again = discover(str(root), known=known)
    assert again.photos == 1  # only the new photo's header is read
    burst = arc.bursts[0] + ["DCIM/IMG_0700.JPG"]
    assert sorted(read) == sorted(burst)  # the burst it extends is paired again, nothing else
    assert _pairs(again) == {(a, b) for a, b in zip(burst, burst[1:])}
    ids = [p["id"] for p in again.pairs]
    assert ids == [p["id"] for p in first.pairs if p["image0"] in burst] + ["20240501-101503.400-canon-eos-r5"]
    # The state now knows the longer burst: a run after it reads nothing; another burst gap reads everything.
    assert discover(str(root), known=again.state).photos == 0
    assert discover(str(root), DiscoverConfig(burst_gap_s=5), known=again.state).photos == len(again.state.seen)


def test_a_burst_grown_at_its_start_keeps_its_pair_ids(tmp_path):
    """Ids come from each pair's own first photo: a photo taken before a known burst adds a pair, renames none."""
    root = tmp_path / "grow"
    arc = make_archive(root)
    first = discover(str(root))
    burst = arc.bursts[0]
    old = {(p["image0"], p["image1"]): p["id"] for p in first.pairs if p["image0"] in burst}
    w, h = 320, 240
    rgb = view(scene(10, (2 * w, 2 * h)), (w // 8, 24), (w, h), subject(1, h // 8), (w // 4, h // 4))
    write_photo(root / "DCIM/IMG_0050.JPG", rgb, T0 - timedelta(seconds=1.0), "Canon", "EOS R5", offset="+02:00")
    again = discover(str(root), known=first.state)
    grown = next(b for b in again.bursts if b.photos[0].key == "DCIM/IMG_0050.JPG")
    assert grown.id != first.bursts[0].id  # the burst's own id follows its first photo ...
    new = {(p["image0"], p["image1"]): p["id"] for p in again.pairs}
    assert new == {**old, ("DCIM/IMG_0050.JPG", burst[0]): "20240501-101501-canon-eos-r5"}  # ... pair ids do not
    # A chain is one entry named after its first keyframe: grown at its start it is a new clip with a new id.
    chained = discover(str(root), DiscoverConfig(chain=True))
    assert [(p["id"], p["keyframes"]) for p in chained.pairs if "keyframes" in p] == [
        ("20240501-101501-canon-eos-r5", ["DCIM/IMG_0050.JPG", *burst])]


def test_heic_with_and_without_pillow_heif(tmp_path, monkeypatch):
    pillow_heif = pytest.importorskip("pillow_heif")
    from discover_archive import exif_bytes
    from dreammover.discover import photos

    pillow_heif.register_heif_opener()
    Image.fromarray(np.full((48, 64, 3), 90, np.uint8)).save(tmp_path / "p.heic", "HEIF",
                                                             exif=exif_bytes(T0, "Apple", "iPhone 15"))
    size = (tmp_path / "p.heic").stat().st_size
    found = PhotoSource(str(tmp_path), 10**8).capture("p.heic", "v", size)
    assert found.problem is None and found.camera == "Apple iPhone 15" and found.taken == T0
    monkeypatch.setattr(photos, "heif_support", lambda: "HEIC/HEIF photo skipped: pillow-heif is not installed")
    missing = PhotoSource(str(tmp_path), 10**8).capture("p.heic", "v", size)
    assert missing.problem == "HEIC/HEIF photo skipped: pillow-heif is not installed"


def test_write_manifest_is_read_by_run_archive_ingest(archive, tmp_path):
    ingest = pytest.importorskip("dreammover_tasks.ingest")
    result = discover(str(archive.root))
    manifest, report = write_manifest(result, str(tmp_path / "m.json"))
    assert Path(report) == tmp_path / "m.report.json"
    side = json.loads(Path(report).read_text())
    assert len(side["rejected"]) == len(archive.rejected) and side["photos"] == result.photos_report
    specs = ingest.discover_pairs(str(archive.root), manifest)
    assert [s.problem for s in specs] == [None] * len(archive.pairs)
    assert {(s.image0, s.image1) for s in specs} == {(str(archive.root / a), str(archive.root / b))
                                                      for a, b in archive.pairs}


def test_png_capture_data_come_from_the_header_alone():
    from discover_archive import exif_bytes
    from dreammover.discover.photos import read_capture

    buf = io.BytesIO()
    Image.fromarray(np.zeros((300, 400, 3), np.uint8)).save(buf, "PNG", exif=exif_bytes(T0, "A", "B"))
    data = buf.getvalue()
    photo = read_capture(data[:300], "x.png", len(data), 0.0, 10**8)  # no pixel data in these bytes
    assert (photo.taken, photo.camera, photo.time_source) == (T0, "A B", "exif")
