"""Pair names as people type them (issue #15 item 7): NFD folders from macOS, curly quotes and dashes,
odd characters named in the error, and artifact keys that keep accents and never collide across archives.
Real folders on disk, named byte for byte as macOS and Linux write them.
"""
from __future__ import annotations

import json
import re
import unicodedata

NFC_NAME = "Été à la plage 2024"
NFD_NAME = unicodedata.normalize("NFD", NFC_NAME)


def _pair(root, name):
    folder = root / name
    folder.mkdir(parents=True)
    for side in ("0", "1"):
        (folder / f"{side}.png").write_bytes(b"x")
    return folder


def test_an_nfd_folder_is_the_same_pair_as_its_nfc_spelling(tmp_path):
    from dreammover_tasks.ingest import discover_pairs

    assert NFD_NAME != NFC_NAME and len(NFD_NAME) > len(NFC_NAME)
    folder = _pair(tmp_path / "src", NFD_NAME)
    (pair,) = discover_pairs(str(tmp_path / "src"))
    assert pair.problem is None, pair.problem
    assert pair.id == NFC_NAME  # one spelling: the clip is <NFC name>.mp4 whichever machine typed it
    assert pair.image0 == str(folder / "0.png")  # the photo is still read where it really is


def test_everyday_punctuation_is_accepted(tmp_path):
    from dreammover_tasks.ingest import discover_pairs

    names = ["Mum\u2019s birthday \u2013 2024", "\u201cBest\u201d day \u2014 ever", "l\u2018été, (vacances) & co!"]
    for name in names:
        _pair(tmp_path / "src", name)
    pairs = {p.id: p.problem for p in discover_pairs(str(tmp_path / "src"))}
    assert pairs == {name: None for name in names}


def test_an_odd_character_is_named_by_code_point(tmp_path):
    """A zero-width space makes a name that prints like an accepted one: the error must show it."""
    from dreammover_tasks.ingest import discover_pairs

    _pair(tmp_path / "src", "dog\u200b")
    _pair(tmp_path / "src", "a\\b")
    problems = {p.id: p.problem for p in discover_pairs(str(tmp_path / "src"))}
    assert "U+200B ZERO WIDTH SPACE" in problems["dog\u200b"]
    assert "U+005C REVERSE SOLIDUS" in problems["a\\b"]


def test_nfc_and_nfd_spellings_side_by_side_are_both_reported(tmp_path):
    """Both would write one clip (<NFC name>.mp4): neither is rendered, both say why."""
    from dreammover_tasks.ingest import discover_pairs

    _pair(tmp_path / "src", NFC_NAME)
    _pair(tmp_path / "src", NFD_NAME)
    pairs = discover_pairs(str(tmp_path / "src"))
    assert [p.id for p in pairs] == [NFC_NAME, NFC_NAME]
    assert all(p.problem and "two spellings" in p.problem for p in pairs)


def test_manifest_ids_are_normalised(tmp_path):
    from dreammover_tasks.ingest import discover_pairs

    _pair(tmp_path / "src", "photos")
    (tmp_path / "m.json").write_text(json.dumps([{"id": NFD_NAME, "image0": "photos/0.png",
                                                 "image1": "photos/1.png"}]))
    (pair,) = discover_pairs(str(tmp_path / "src"), str(tmp_path / "m.json"))
    assert (pair.id, pair.problem) == (NFC_NAME, None)


def test_artifact_keys_keep_accents_and_are_unique_per_name_and_output():
    from dreammover_tasks.names import artifact_key

    cafe = artifact_key("clip", "cafe", "s3://out/a/cafe.mp4")
    accented = artifact_key("clip", "café", "s3://out/a/café.mp4")
    assert cafe.startswith("clip-cafe-") and accented.startswith("clip-cafe-") and cafe != accented
    assert artifact_key("clip", NFC_NAME, "o").startswith("clip-ete-a-la-plage-2024-")
    # One spelling, one key: NFD and NFC of one name and output agree.
    assert artifact_key("clip", NFD_NAME, "o") == artifact_key("clip", NFC_NAME, "o")
    # The `dog` pair of two archives: two keys (it was one shared `clip-dog`).
    assert artifact_key("clip", "dog", "s3://out/a/dog.mp4") != artifact_key("clip", "dog", "s3://out/b/dog.mp4")
    for key in (cafe, accented, artifact_key("clip", "\u65e5\u672c", "o"), artifact_key("clip", "x" * 300, "o")):
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", key) and len(key) <= 100, key
