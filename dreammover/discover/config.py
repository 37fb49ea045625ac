"""Discovery settings: every threshold that decides a burst, a same-scene match and enough motion (docs/pipeline.md, Discovery)."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class DiscoverConfig(BaseModel):
    """What makes photos a burst and a candidate a pair; the defaults were measured on tests/discover_archive.py."""

    model_config = ConfigDict(extra="forbid")

    burst_gap_s: float = Field(3.0, gt=0, description="most seconds between consecutive photos of one camera in a burst")
    thumb_size: int = Field(320, ge=64, description="longest side of the thumbnails that are matched (pixels)")
    features: int = Field(1000, ge=50, description="ORB keypoints per thumbnail")
    ratio: float = Field(0.75, gt=0, lt=1, description="Lowe's ratio test: best / second-best descriptor distance")
    ransac_px: float = Field(0.01, gt=0, description="RANSAC reprojection threshold, fraction of the thumbnail diagonal")
    min_inliers: int = Field(20, ge=4, description="fewest homography inliers for the same scene")
    min_inlier_ratio: float = Field(0.3, ge=0, le=1, description="fewest inliers per ratio-test match for the same scene")
    subject_share: float = Field(0.15, ge=0, le=1,
                                 description="share of good matches off the camera motion that counts as a moving subject")
    min_motion: float = Field(0.01, ge=0, description="least motion (fraction of the diagonal): below is a near-duplicate")
    max_motion: float = Field(0.35, gt=0, description="most motion (fraction of the diagonal): above is too much for a clip")
    max_pixels: int = Field(200_000_000, ge=1, description="a photo claiming more pixels is a decompression bomb")
    head_bytes: int = Field(65536, ge=1024, description="bytes read for EXIF from an object store (a ranged GET)")
    chain: bool = Field(False, description="a burst of K>2 accepted photos becomes one keyframes entry")
