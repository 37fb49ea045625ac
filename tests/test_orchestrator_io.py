"""The orchestrator's I/O (issue #19): list once, reuse the listing's versions, write each clip once.

Requests are counted on the wire: the code under test talks to a real S3 server (moto_server) through
an HTTP proxy (fault_harness.FaultyProxy, no faults) whose handler records each request's method, key
and kind. Summaries written the way the pair flow wrote them before (versions read by HEAD / stat)
must still make an archive run skip their pairs.
"""
from __future__ import annotations

import json
import urllib.parse

import pytest

from fault_harness import FAST, FaultyProxy, distinct_pair, faulty_s3_env


class CountingProxy(FaultyProxy):
    """A FaultyProxy that forwards everything and records (kind, bucket/key) of every request it serves."""

    def __init__(self, upstream: str):
        super().__init__(upstream)
        self.requests: list[tuple[str, str]] = []
        base, record = self._server.RequestHandlerClass, self.requests.append

        class Counting(base):
            def _count_then_proxy(self):
                path, _, query = self.path.partition("?")
                key = urllib.parse.unquote(path.lstrip("/"))
                if self.command == "GET" and "list-type" in query:
                    kind = "LIST"
                elif self.command == "PUT" and self.headers.get("x-amz-copy-source"):
                    kind = "COPY"
                else:
                    kind = self.command
                record((kind, key))
                return self._proxy()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _count_then_proxy

        self._server.RequestHandlerClass = Counting

    def count(self, kind: str, where: str = "") -> int:
        return sum(k == kind and key.startswith(where) for k, key in self.requests)


@pytest.fixture
def counted_s3(monkeypatch, tmp_path):
    """(proxy, direct client): the code under test reaches moto through the counting proxy (AWS_* env)."""
    with faulty_s3_env(monkeypatch, tmp_path, buckets=("inputs", "outputs"), proxy_type=CountingProxy) as both:
        yield both


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    from dreammover_tasks.models import ModelSpec

    return ModelSpec(model=str(tiny_model_dir), device="cpu", dtype="fp32")


def _upload_pairs(direct, tmp_path, ids) -> None:
    for i, pid in enumerate(ids):
        for path in distinct_pair(tmp_path / "photos" / pid, i):
            direct.put_object(Bucket="inputs", Key=f"pairs/{pid}/{path.name}", Body=path.read_bytes())


def _report(state) -> dict:
    return state.result() if state.is_completed() else state.result(raise_on_failure=False).report


# -- the listing's versions are the versions the pair flow reads -------------------------------------


def test_listed_versions_equal_the_probed_ones_locally_and_on_s3(counted_s3, tmp_path):
    """PairSpec.inputs() (from one listing) must equal photo_inputs (HEAD / stat), or every summary written
    before would stop matching and a re-run would render everything again; and known inputs cost nothing."""
    from dreammover_tasks.ingest import discover_pairs, photo_inputs

    proxy, direct = counted_s3
    _upload_pairs(direct, tmp_path, ["a", "b"])
    for source in ("s3://inputs/pairs", str(tmp_path / "photos")):
        before = len(proxy.requests)
        pairs = discover_pairs(source)
        assert [p.id for p in pairs] == ["a", "b"] and all(p.problem is None for p in pairs)
        for p in pairs:
            assert p.inputs() == photo_inputs(p.image0, p.image1) and all(p.inputs()["versions"])
            assert p.sizes == [len(open(f"{tmp_path}/photos/{p.id}/{s}.png", "rb").read()) for s in "01"]
        if source.startswith("s3://"):
            assert proxy.count("LIST") == 1 and len(proxy.requests) - before == 1 + 4  # 1 list + 2x2 HEADs
        before = len(proxy.requests)
        assert photo_inputs(pairs[0].image0, pairs[0].image1, known=pairs[0].inputs()) == pairs[0].inputs()
        assert len(proxy.requests) == before  # known inputs: no request
    # Inputs that name other photos are not taken on trust: they are read.
    other = discover_pairs("s3://inputs/pairs")
    before = len(proxy.requests)
    got = photo_inputs(other[1].image0, other[1].image1, known=other[0].inputs())
    assert got == other[1].inputs() and proxy.count("HEAD") > 0 and len(proxy.requests) - before == 2


# -- planning: O(1) listings, no HEAD, only the summaries read ---------------------------------------


def _finished_before(direct, ids, model, config) -> None:
    """Clips and summaries as the pair flow wrote them before #19: the fingerprint from HEADed versions."""
    from dreammover_flows.pair import fingerprint

    for pid in ids:
        image0, image1 = f"s3://inputs/pairs/{pid}/0.png", f"s3://inputs/pairs/{pid}/1.png"
        summary = {"pair": pid, "fingerprint": fingerprint(image0, image1, model, config, 10.0, "mp4")}
        direct.put_object(Bucket="outputs", Key=f"run/{pid}.mp4", Body=b"clip")
        direct.put_object(Bucket="outputs", Key=f"run/{pid}.json", Body=json.dumps(summary).encode())


@pytest.mark.parametrize("n", [3, 12])
def test_planning_an_archive_lists_a_constant_number_of_times_and_never_heads_a_photo(counted_s3, prefect_env,
                                                                                      tmp_path, n):
    """Before: ~4 serial requests per pair (summary GET, clip HEAD, 2 photo HEADs) and the source listed twice.
    Now: the same few listings for 3 or 12 pairs, no HEAD at all, one GET per existing summary."""
    from dreammover import InterpolationConfig
    from dreammover_flows.archive import interpolate_archive
    from dreammover_tasks.models import ModelSpec

    proxy, direct = counted_s3
    ids = [f"p{i:02d}" for i in range(n)]
    _upload_pairs(direct, tmp_path, ids)
    model, config = ModelSpec(model="tiny"), InterpolationConfig(**FAST)
    _finished_before(direct, ids, model, config)
    proxy.requests.clear()

    report = _report(interpolate_archive(source="s3://inputs/pairs", output="s3://outputs/run", model=model,
                                         config=config, cache=str(tmp_path / "cache"), return_state=True))
    assert report["skipped"] == n and report["done"] == report["failed"] == 0, report
    assert proxy.count("HEAD") == 0, proxy.requests
    assert proxy.count("LIST", "inputs") == 1  # the source, once
    assert proxy.count("LIST", "outputs") == 2  # the output (planning) and the leases (sweep), once each
    assert proxy.count("GET", "outputs/run/p") == n  # the summaries, nothing else per pair
    assert proxy.count("PUT", "outputs/run/_runs/.probe") == 1  # writability checked once


def test_a_manifest_reads_each_photo_once_while_planning(tmp_path):
    """Photos a manifest names are not listed: read once (concurrently), and carried to the pairs to render."""
    from dreammover import InterpolationConfig
    from dreammover_flows.archive import _plan
    from dreammover_tasks.ingest import discover_pairs
    from dreammover_tasks.models import ModelSpec
    from dreammover_tasks.storage import open_storage

    for i, pid in enumerate(["a", "b"]):
        distinct_pair(tmp_path / "src" / pid, i)
    (tmp_path / "m.json").write_text(json.dumps([{"id": p, "image0": f"{p}/0.png", "image1": f"{p}/1.png"}
                                                 for p in ("a", "b")]))
    pairs = discover_pairs(str(tmp_path / "src"), str(tmp_path / "m.json"))
    assert all(p.versions is None for p in pairs)
    todo = _plan(pairs, open_storage(tmp_path / "out"), {}, dict(model=ModelSpec(model="tiny"), config=InterpolationConfig(**FAST),
                                                                 fps=10.0, fmt="mp4", backend="dreammover"), False)
    listed = {p.id: p.inputs() for p in discover_pairs(str(tmp_path / "src"))}
    assert {p.id: p.inputs() for p, _ in todo} == listed and all(all(v["versions"]) for v in listed.values())


# -- rendering: no photo HEAD in the pair flow, each clip PUT once, re-runs skip ---------------------


def test_archive_on_s3_puts_each_clip_once_and_never_heads_a_photo(counted_s3, prefect_env, model, tmp_path):
    from dreammover import InterpolationConfig
    from dreammover_flows.archive import interpolate_archive

    proxy, direct = counted_s3
    _upload_pairs(direct, tmp_path, ["a", "b"])
    run = dict(source="s3://inputs/pairs", output="s3://outputs/run", model=model,
               config=InterpolationConfig(**FAST), cache=str(tmp_path / "cache"), return_state=True)
    proxy.requests.clear()
    report = _report(interpolate_archive(**run))
    assert report["done"] == 2 and report["failed"] == 0, report
    assert proxy.count("HEAD") == 0, [r for r in proxy.requests if r[0] == "HEAD"]
    for pid in ("a", "b"):
        assert proxy.count("PUT", f"outputs/run/{pid}.mp4") == 1  # one PUT: no .partial, no copy
        assert proxy.count("GET", f"inputs/pairs/{pid}/") == 2  # each photo downloaded once
        summary = json.loads(direct.get_object(Bucket="outputs", Key=f"run/{pid}.json")["Body"].read())
        assert summary["inputs"]["versions"] == [
            direct.head_object(Bucket="inputs", Key=f"pairs/{pid}/{s}.png")["ETag"].strip('"')
            for s in "01"]
    assert proxy.count("COPY") == 0
    keys = [o["Key"] for o in direct.list_objects_v2(Bucket="outputs")["Contents"]]
    assert not [k for k in keys if "partial" in k], keys
    assert not (tmp_path / "cache" / "clips").exists()  # no copy of the clip in the cache either

    again = _report(interpolate_archive(**run))
    assert again["skipped"] == 2 and again["done"] == 0, again


def test_a_local_clip_is_written_once_under_a_hidden_unique_name(tmp_path):
    """publish_file: the writer gets a hidden temporary beside the destination (never listed), renamed into
    place; a failed write leaves neither the clip nor a temporary."""
    from dreammover_tasks.storage import open_storage

    store, seen = open_storage(tmp_path / "out"), []

    def write(path):
        seen.append(path)
        assert path.parent == tmp_path / "out" and path.name.startswith(".") and path.suffix == ".mp4"
        assert store.list() == []  # nothing visible while it is being written
        path.write_bytes(b"clip")

    assert store.publish_file("dog.mp4", write) == str(tmp_path / "out" / "dog.mp4")
    assert (tmp_path / "out" / "dog.mp4").read_bytes() == b"clip" and not seen[0].exists()

    def broken(path):
        path.write_bytes(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(Exception, match="No space left"):
        store.publish_file("cat.mp4", broken)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["dog.mp4"]
