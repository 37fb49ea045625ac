"""Step 0 as a task: both photos to one working size, stored once under their content hash."""
from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from dreammover.config import InterpolationConfig
from dreammover.images import ImageInputError, load_image, prepare_pair

from .artifacts import images_hash, put_images
from .results import Prepared
from .retry import retry_options
from .storage import open_storage


def store_prepared(fit, image0: str, image1: str, cache: str, sources: tuple[str, str] | None = None,
                   what: str = "pair") -> Prepared:
    """Load both photos, bring them to one frame with `fit(im0, im1)`, store them once under their hash."""
    try:
        im0, im1 = fit(load_image(image0), load_image(image1))
    except ImageInputError as err:
        # Name the photo as the user knows it (its URI), not the download's temporary path.
        message = str(err)
        for local, source in zip((image0, image1), sources or (image0, image1)):
            message = message.replace(local, source)
        raise ImageInputError(message) from err
    h = images_hash([im0, im1])
    key, store = f"prepared/{h}.safetensors", open_storage(cache)
    uri = store.uri(key)
    if not store.exists(key):
        uri = put_images(cache, key, [im0, im1])
    get_run_logger().info("prepared %dx%d %s %s", im0.shape[1], im0.shape[0], what, h[:12])
    return Prepared(uri=uri, hash=h, height=int(im0.shape[0]), width=int(im0.shape[1]))


@task(name="prepare-images", cache_policy=NO_CACHE, **retry_options())
def prepare_images(image0: str, image1: str, config: InterpolationConfig, cache: str,
                   sources: tuple[str, str] | None = None) -> Prepared:
    """Load (EXIF-aware) and prepare both photos; their hash is the pair's identity in every cache key.

    Not cached by Prefect on purpose: it is cheap, and it is what notices a photo that changed.
    """
    return store_prepared(lambda a, b: prepare_pair(a, b, config.size, config.resize_policy),
                          image0, image1, cache, sources)
