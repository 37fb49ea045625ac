"""Step 0 as a task: both photos to one working size, stored once under their content hash."""
from __future__ import annotations

import tempfile

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from dreammover.config import InterpolationConfig
from dreammover.images import ImageInputError, load_image, prepare_pair

from .artifacts import images_hash, put_images
from .ingest import fetch_photos
from .results import Prepared
from .retry import retry_options


def store_prepared(fit, image0: str, image1: str, cache: str, what: str = "pair") -> Prepared:
    """Fetch both photos (URIs), bring them to one frame with `fit(im0, im1)`, store them once under their hash."""
    with tempfile.TemporaryDirectory(prefix="dreammover-pair-") as workdir:
        local = fetch_photos(image0, image1, workdir)
        try:
            im0, im1 = fit(load_image(local[0]), load_image(local[1]))
        except ImageInputError as err:
            # Name the photo as the user knows it (its URI), not the download's temporary path.
            message = str(err)
            for path, source in zip(local, (image0, image1)):
                message = message.replace(path, source)
            raise ImageInputError(message) from err
    h = images_hash([im0, im1])
    # First writer wins: an existing object (the same photos, any run) stays; one request either way.
    uri = put_images(cache, f"prepared/{h}.safetensors", [im0, im1], overwrite=False)
    get_run_logger().debug("prepared %dx%d %s %s", im0.shape[1], im0.shape[0], what, h[:12])
    return Prepared(uri=uri, hash=h, height=int(im0.shape[0]), width=int(im0.shape[1]))


@task(name="prepare-images", cache_policy=NO_CACHE, **retry_options())
def prepare_images(image0: str, image1: str, config: InterpolationConfig, cache: str) -> Prepared:
    """Fetch (remote photos), load (EXIF-aware) and prepare both photos; their hash is the pair's identity in
    every cache key.

    Not cached by Prefect on purpose: it is cheap, and it is what notices a photo that changed.
    """
    return store_prepared(lambda a, b: prepare_pair(a, b, config.size, config.resize_policy), image0, image1, cache)
