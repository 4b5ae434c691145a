import re
import warnings

import numpy as np
import pytest
from PIL import Image, ImageFile

import imagegen
from stylelens.errors import ImageError
from stylelens.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    SUPPORTED_FORMATS,
    content_hash,
    load_image,
    read_bytes,
)

ACTION = re.compile(r"\b(Upload|Convert|Export|Resize|Check|Open|Give|Save)\b")


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return imagegen.make_good_variants(tmp_path_factory.mktemp("good"))


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    return folder, imagegen.make_bad_corpus(folder)


def pixels(im):
    return np.asarray(im, dtype=np.int16)


def assert_helpful(err: ImageError):
    assert ACTION.search(err.message), err.message
    assert "BytesIO" not in err.message and " 0x" not in err.message, err.message


def test_constants():
    assert IMAGE_EXTENSIONS == {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"}
    assert SUPPORTED_FORMATS == {"JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "MPO"}


def test_corpus_covers_every_code(bad):
    _, expected = bad
    assert set(expected.values()) == {
        "empty", "not_an_image", "unsupported_format", "truncated", "corrupt", "too_many_pixels"}


@pytest.mark.parametrize("as_bytes", [False, True], ids=["path", "bytes"])
def test_bad_files_raise_the_right_code(bad, as_bytes):
    folder, expected = bad
    for name, code in expected.items():
        source = (folder / name).read_bytes() if as_bytes else folder / name
        with pytest.raises(ImageError) as info:
            load_image(source)
        assert info.value.code == code, (name, info.value.message)
        assert info.value.http_status == 422
        assert_helpful(info.value)


def test_unsupported_names_found_and_accepted_formats(bad):
    folder, _ = bad
    for name, found in [("icon.ico", "ICO"), ("picture.ppm", "PPM"), ("photo.heic", "HEIC")]:
        with pytest.raises(ImageError) as info:
            load_image(folder / name)
        assert found in info.value.message
        assert imagegen.ACCEPTED_WORDS in info.value.message


def test_empty_message(bad):
    folder, _ = bad
    with pytest.raises(ImageError, match=r"empty \(0 bytes\)\. Upload a JPEG"):
        load_image(folder / "empty.jpg")


def test_good_variants_load_as_upright_rgb(good):
    assert len(good) >= 20
    for path in good:
        im = load_image(path)
        assert im.mode == "RGB", path.name
        assert im.size == imagegen.GOOD_SIZE, path.name
        a = pixels(im)
        assert (a[-1, -1] >= 240).all(), (path.name, a[-1, -1])  # background corner
        assert a[40, 30].sum() < 500, (path.name, a[40, 30])  # the garment at the centre


def test_good_variants_match_the_drawn_picture(good):
    """Colour files must decode to the same picture that was drawn, whatever the container."""
    expected = pixels(imagegen.on_white(imagegen.product_picture()))
    grey_modes = {"L", "LA", "1", "I;16", "I", "F"}
    for path in good:
        with Image.open(path) as raw:
            if raw.mode in grey_modes:
                continue
        diff = np.abs(pixels(load_image(path)) - expected).mean()
        assert diff < 4, (path.name, diff)


def test_exif_rotation_swaps_width_and_height_the_right_way(tmp_path):
    upright = pixels(imagegen.on_white(imagegen.product_picture()))
    for orientation in range(2, 9):
        path = imagegen.make_image(tmp_path / f"o{orientation}.png", fmt="PNG", orientation=orientation)
        with Image.open(path) as raw:
            stored = raw.size
        im = load_image(path)
        assert im.size == imagegen.GOOD_SIZE
        if orientation >= 5:
            assert stored == imagegen.GOOD_SIZE[::-1]
        assert np.array_equal(pixels(im), upright), orientation
    # Turning the other way gives the picture upside down, which is far off.
    im = load_image(tmp_path.joinpath("o6.png"))
    wrong = np.rot90(upright, 2)
    assert np.abs(pixels(im) - wrong).mean() > 20


def test_transparent_areas_become_white(good):
    for name in ["rgba.png", "la.png", "p_transparent.png", "transparent.gif", "rgba.webp"]:
        path = next(p for p in good if p.name == name)
        with Image.open(path) as raw:
            assert raw.convert("RGBA").getpixel((0, 0))[3] == 0, name  # really transparent there
            assert raw.convert("RGB").getpixel((0, 0)) != (255, 255, 255) or name == "rgba.webp"
        assert load_image(path).getpixel((0, 0)) == (255, 255, 255), name


def test_sixteen_bit_is_scaled_not_white(good):
    for name in ["gray16.png", "gray16.tif", "int32.tif", "float.tif"]:
        a = pixels(load_image(next(p for p in good if p.name == name)))
        assert a.min() < 100, name
        assert abs(int(a[40, 30, 0]) - 82) <= 1, name  # luminance of the red shape
        assert (a[0, 0] == 255).all(), name


def test_animated_gif_gives_first_frame(good):
    path = next(p for p in good if p.name == "animated.gif")
    with Image.open(path) as raw:
        assert raw.n_frames == 2
    r, g, b = load_image(path).getpixel((30, 40))
    assert r > 150 and b < 100  # the red garment, not the blue second frame


def test_mpo_is_accepted(good):
    path = next(p for p in good if p.name == "camera_mpo.jpg")
    with Image.open(path) as raw:
        assert raw.format == "MPO"
    assert load_image(path).size == imagegen.GOOD_SIZE


def test_bytes_and_path_give_identical_pixels(good):
    for path in good:
        assert np.array_equal(pixels(load_image(path)), pixels(load_image(path.read_bytes()))), path
        assert np.array_equal(
            pixels(load_image(path)), pixels(load_image(bytearray(path.read_bytes())))), path


def test_max_bytes(tmp_path):
    path = imagegen.make_image(tmp_path / "a.jpg")
    size = path.stat().st_size
    for source in (path, path.read_bytes()):
        assert load_image(source, max_bytes=size).size == imagegen.GOOD_SIZE
        with pytest.raises(ImageError) as info:
            load_image(source, max_bytes=size - 1)
        assert info.value.code == "too_large"
        assert_helpful(info.value)


def test_max_pixels_from_header_before_decoding(tmp_path, bad, monkeypatch):
    path = imagegen.make_image(tmp_path / "a.png", fmt="PNG")
    assert load_image(path, max_pixels=60 * 80).size == (60, 80)
    with pytest.raises(ImageError) as info:
        load_image(path, max_pixels=60 * 80 - 1)
    assert info.value.code == "too_many_pixels"
    assert_helpful(info.value)
    assert DEFAULT_MAX_PIXELS == 50_000_000

    # Our limit holds without PIL's global guard, and nothing is decoded.
    folder, _ = bad
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)

    def no_decoding(self):
        raise AssertionError("pixels decoded before the size check")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    for name in ["bomb.png", "bomb_64mp.png"]:
        with pytest.raises(ImageError) as info:
            load_image(folder / name)
        assert info.value.code == "too_many_pixels"
        assert "pixels" in info.value.message


def test_pil_bomb_warning_as_error_is_mapped(tmp_path, monkeypatch):
    path = imagegen.make_image(tmp_path / "a.png", fmt="PNG")  # 4800 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)  # PIL warns above 3000, errors above 6000
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(ImageError) as info:
            load_image(path)
    assert info.value.code == "too_many_pixels"


def test_not_found(tmp_path):
    for source in (tmp_path / "missing.jpg", str(tmp_path / "missing.jpg"), tmp_path):
        for call in (load_image, read_bytes):
            with pytest.raises(ImageError) as info:
                call(source)
            assert info.value.code == "not_found"
            assert str(tmp_path) in info.value.message
            assert_helpful(info.value)


def test_read_bytes_and_content_hash(tmp_path):
    path = imagegen.make_image(tmp_path / "a.jpg")
    data = read_bytes(path)
    assert data == path.read_bytes()
    assert content_hash(data) == content_hash(bytes(data))
    assert re.fullmatch(r"[0-9a-f]{64}", content_hash(data))
    assert content_hash(data) != content_hash(data + b"\0")


def test_pil_images_are_normalised_without_being_changed(good):
    rgba = imagegen.product_picture()
    out = load_image(rgba)
    assert out.mode == "RGB" and out.getpixel((0, 0)) == (255, 255, 255)
    assert rgba.mode == "RGBA"

    grey16 = Image.fromarray(np.full((8, 8), 40000, dtype=np.uint16))
    assert load_image(grey16).getpixel((0, 0)) == (156, 156, 156)

    for path in good:
        with Image.open(path) as opened:
            mode, size = opened.mode, opened.size
            out = load_image(opened)
            assert np.array_equal(pixels(out), pixels(load_image(path))), path.name
            assert (opened.mode, opened.size) == (mode, size), path.name


def test_rgb_input_is_returned_as_is():
    im = Image.new("RGB", (4, 4), (1, 2, 3))
    assert load_image(im) is im


def test_truncated_images_stay_rejected_globally(bad):
    # Detecting truncation must not rely on (or flip) PIL's global switch.
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    folder, _ = bad
    with pytest.raises(ImageError):
        load_image(folder / "truncated.jpg")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_generators_are_deterministic(tmp_path):
    a = imagegen.make_image(tmp_path / "a.png", fmt="PNG", pattern_seed=7)
    b = imagegen.make_image(tmp_path / "b.png", fmt="PNG", pattern_seed=7)
    c = imagegen.make_image(tmp_path / "c.png", fmt="PNG", pattern_seed=8)
    assert a.read_bytes() == b.read_bytes() != c.read_bytes()
    first = imagegen.make_bad_corpus(tmp_path / "x")
    second = imagegen.make_bad_corpus(tmp_path / "y")
    assert first == second
    for name in first:
        assert (tmp_path / "x" / name).read_bytes() == (tmp_path / "y" / name).read_bytes()
