"""Step 0: working size, resize policies, EXIF orientation, clear errors for bad files, warnings for changes."""
import warnings

import numpy as np
import pytest
from PIL import Image

from dreammover import images
from dreammover.images import ImageInputError, load_image, prepare_pair, working_size


def test_working_size_long_side_and_multiples_of_64():
    assert working_size(512, 512, 512) == (512, 512)
    assert working_size(720, 1280, 512) == (320, 512)  # 288 rounds to 320
    assert working_size(100, 1000, 512) == (64, 512)
    h, w = working_size(333, 777, 256)
    assert h % 64 == 0 and w % 64 == 0 and max(h, w) == 256


def test_cover_policy_crops_second_image_to_first_frame():
    a = np.zeros((200, 400, 3), np.uint8)
    b = np.zeros((400, 400, 3), np.uint8)
    b[:100] = 255  # top quarter white: cropped away by a centre crop to 2:1
    out0, out1 = prepare_pair(a, b, 256, "cover")
    assert out0.shape == out1.shape == (128, 256, 3)
    assert out1.max() == 0
    _, stretched = prepare_pair(a, b, 256, "stretch")
    assert stretched[:20].mean() > 200


def test_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((20, 40, 3), np.uint8)
    arr[:, :20] = 255
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    im.save(tmp_path / "r.jpg", exif=exif)
    loaded = load_image(tmp_path / "r.jpg")
    assert loaded.shape == (40, 20, 3)


def test_grayscale_and_rgba_become_rgb(tmp_path):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "g.png")
    Image.fromarray(np.zeros((8, 8, 4), np.uint8)).save(tmp_path / "a.png")
    assert load_image(tmp_path / "g.png").shape == (8, 8, 3)
    with pytest.warns(images.ImageInputWarning):
        assert load_image(tmp_path / "a.png").shape == (8, 8, 3)


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(ImageInputError, match="file not found"):
        load_image(tmp_path / "nope.png")
    (tmp_path / "bad.png").write_text("this is not a png")
    with pytest.raises(ImageInputError, match="not a readable image"):
        load_image(tmp_path / "bad.png")
    with pytest.raises(ImageInputError, match="is a folder"):
        load_image(tmp_path)


@pytest.mark.parametrize("policy", ["cover", "stretch"])
@pytest.mark.parametrize("hw", [(720, 1280), (1280, 720), (512, 512), (333, 777), (100, 1000), (48, 50)])
def test_identical_inputs_give_identical_prepared_images(policy, hw):
    """Both photos get one geometry: a pair of identical photos is a still clip, not a fake zoom."""
    img = np.random.default_rng(hw[0]).integers(0, 256, (*hw, 3), dtype=np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (48, 50) is upscaled on purpose
        out0, out1 = prepare_pair(img, img.copy(), 512, policy)
    assert out0.shape == out1.shape == (*working_size(*hw, 512), 3)
    assert np.array_equal(out0, out1)


def test_cover_crops_image0_to_the_frame_instead_of_stretching_it():
    """1280x720 -> a 512x320 frame (1.6:1): cover cuts 64 source columns per side, keeps the aspect."""
    img = np.zeros((720, 1280, 3), np.uint8)
    img[:, :60] = img[:, -60:] = (255, 0, 0)           # red bands inside the cut-away margins
    img[300:420, 580:700] = (0, 0, 255)                 # a 120x120 square stays square
    out0, _ = prepare_pair(img, img, 512, "cover")
    assert out0.shape == (320, 512, 3)
    assert out0[..., 0].max() < 40                      # no red left: the margins were cropped, not squeezed in
    blue = np.argwhere(out0[..., 2] > 128)
    height, width = np.ptp(blue, axis=0) + 1
    assert abs(height - width) <= 1, (height, width)    # scale 320/720 both ways: ~53x53
    _, stretched = prepare_pair(img, img, 512, "stretch")
    assert stretched[:, :10, 0].min() > 200             # stretch keeps everything


def test_16_bit_grey_png_keeps_its_brightness(tmp_path):
    arr = np.full((6, 6), 30000, np.uint16)
    arr[0, 0] = 65535
    Image.fromarray(arr).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    loaded = load_image(tmp_path / "g16.png")
    assert loaded.shape == (6, 6, 3) and loaded.dtype == np.uint8
    assert loaded[1, 1].tolist() == [117, 117, 117]     # 30000 / 65535 * 255 = 116.7
    assert loaded[0, 0].tolist() == [255, 255, 255]


def test_transparency_is_flattened_onto_white_and_said(tmp_path):
    arr = np.zeros((4, 4, 4), np.uint8)
    arr[..., 0] = 200                                   # red everywhere...
    arr[:2, :, 3] = 255                                 # ...opaque on the top half only
    Image.fromarray(arr, "RGBA").save(tmp_path / "t.png")
    with pytest.warns(images.ImageInputWarning, match="transparent pixels flattened onto white"):
        loaded = load_image(tmp_path / "t.png")
    assert loaded[0, 0].tolist() == [200, 0, 0] and loaded[3, 3].tolist() == [255, 255, 255]
    arr[..., 3] = 255
    Image.fromarray(arr, "RGBA").save(tmp_path / "opaque.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")                  # an opaque RGBA photo is not worth a warning
        assert load_image(tmp_path / "opaque.png")[3, 3].tolist() == [200, 0, 0]


def test_animated_gif_uses_its_first_frame_and_says_so(tmp_path):
    frames = [Image.new("RGB", (8, 8), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:], duration=100)
    with pytest.warns(images.ImageInputWarning, match="animated image with 3 frames, using the first one"):
        loaded = load_image(tmp_path / "a.gif")
    assert loaded[4, 4, 0] > 200 and loaded[4, 4, 2] < 50


@pytest.mark.parametrize("hw", [(1, 1), (1, 4000)])
def test_tiny_and_thin_images_warn_when_blown_up(hw):
    img = np.full((*hw, 3), 128, np.uint8)
    with pytest.warns(images.ImageInputWarning) as said:
        out0, out1 = prepare_pair(img, img, 512, "cover")
    assert any("upscaled" in str(w.message) for w in said)
    assert out0.shape == out1.shape and out0.shape[0] % 64 == 0


def test_ordinary_pairs_prepare_without_warnings():
    a = np.zeros((512, 512, 3), np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepare_pair(a, a, 512, "cover")
        prepare_pair(np.zeros((720, 1280, 3), np.uint8), a[:400], 256, "cover")
