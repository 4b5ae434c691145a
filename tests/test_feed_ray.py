"""The Ray runner with a product feed on a real local Ray cluster: it waits for every download (slow ones
included) and gives the local runner's vectors, views too; a refresh re-embeds nothing."""

from __future__ import annotations

import numpy as np
import pytest
from feedserver import FeedServer
from test_feeds import LOCAL, merchant_row, write_tsv
from test_fetch import jpeg
from test_ray import lite0, ray_cluster, vectors_by_id  # noqa: F401  (fixtures)

from stylelens.build import build_index
from stylelens.index.catalog_db import VIEW_MARK

pytestmark = pytest.mark.scale
ray = pytest.importorskip("ray")


def test_ray_runner_waits_for_every_download_of_a_feed(ray_cluster, lite0, tmp_path):  # noqa: F811
    with FeedServer() as server:
        # Slow answers: most downloads are still in flight when the local images would be embedded.
        rows = [merchant_row(f"R{i}", server.route(f"/r{i}.jpg", jpeg(300 + i), delay_s=0.3),
                             more=server.route(f"/r{i}-back.jpg", jpeg(400 + i), delay_s=0.3) if i % 2 else "")
                for i in range(12)]
        rows.append(merchant_row("GONE", server.url("/missing.jpg")))
        feed = server.route("/feed.tsv", write_tsv(tmp_path / "feed.tsv", rows).read_bytes(), content_type="text/plain")
        options = dict(LOCAL, fetch_concurrency=4)
        local = build_index(feed, tmp_path / "local", embedder=lite0, **options)
        ray_report = build_index(feed, tmp_path / "ray", embedder=lite0, runner="ray", actors=1, **options)
        assert (ray_report.indexed, ray_report.skipped) == (local.indexed, local.skipped) == (18, 1)
        assert [e[:3] for e in ray_report.errors] == [("GONE", server.url("/missing.jpg"), "http_status")]
        expected, got = vectors_by_id(tmp_path / "local"), vectors_by_id(tmp_path / "ray")
        assert sorted(got) == sorted(expected) and sum(VIEW_MARK in pid for pid in got) == 6
        for pid in expected:  # the same pixels; batches made in another order round a little differently
            np.testing.assert_allclose(got[pid], expected[pid], atol=1e-5)
        mark = len(server.log)
        again = build_index(feed, tmp_path / "ray", embedder=lite0, runner="ray", actors=1, **options)
        assert (again.indexed, again.unchanged) == (0, 18)
        assert not [path for _, path, status, _ in server.log[mark:] if status == 200 and path.endswith(".jpg")
                    and path != "/missing.jpg"]  # conditional requests only
