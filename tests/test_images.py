"""Step 0: working size, resize policies, EXIF orientation, clear errors for bad files."""
import numpy as np
import pytest
from PIL import Image

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
    assert load_image(tmp_path / "a.png").shape == (8, 8, 3)


def test_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(ImageInputError, match="file not found"):
        load_image(tmp_path / "nope.png")
    (tmp_path / "bad.png").write_text("this is not a png")
    with pytest.raises(ImageInputError, match="not a readable image"):
        load_image(tmp_path / "bad.png")
    with pytest.raises(ImageInputError, match="is a folder"):
        load_image(tmp_path)
