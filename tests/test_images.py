import os
import re
import stat
import subprocess
import sys
import threading
import time
import warnings

import numpy as np
import pytest
from PIL import Image, ImageFile

import imagegen
from stylelens.errors import ImageError
from stylelens.intake import images as images_module
from stylelens.intake.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    OVERSAMPLE,
    SUPPORTED_FORMATS,
    DecodeGate,
    check_file,
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


def test_every_image_extension_saves_and_loads(tmp_path):
    """Each extension the catalog scanner collects is a format load_image decodes, by its contents."""
    for ext in sorted(IMAGE_EXTENSIONS):
        path = tmp_path / f"a{ext}"
        imagegen.on_white(imagegen.product_picture()).save(path)  # PIL picks the format from the name
        with Image.open(path) as raw:
            assert raw.format in SUPPORTED_FORMATS, ext
        im = load_image(path)
        assert im.mode == "RGB" and im.size == imagegen.GOOD_SIZE, ext
        assert pixels(im)[40, 30, 0] > 150 and pixels(im)[40, 30, 2] < 100, ext  # the red garment


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
    for source, code in [(tmp_path / "missing.jpg", "not_found"), (str(tmp_path / "missing.jpg"), "not_found"),
                         (tmp_path / "missing" / "a.jpg", "not_found"), (tmp_path, "not_a_file")]:
        for call in (load_image, read_bytes, check_file):
            with pytest.raises(ImageError) as info:
                call(source)
            assert info.value.code == code, source
            assert str(tmp_path) in info.value.message
            assert_helpful(info.value)
    assert "folder" in info.value.message


def _within(seconds, call):
    """Run call() in a thread; (finished in time, its ImageError or None)."""
    result = {}

    def run():
        try:
            call()
        except ImageError as exc:
            result["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    return not thread.is_alive(), result.get("error")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_and_devices_are_refused_at_once(tmp_path):
    fifo = tmp_path / "upload.jpg"
    os.mkfifo(fifo)
    try:
        for call in (lambda: read_bytes(fifo), lambda: load_image(fifo), lambda: read_bytes(fifo, max_bytes=None)):
            done, error = _within(5, call)
            assert done, "reading a FIFO blocked"
            assert error is not None and error.code == "not_a_file"
            assert "FIFO" in error.message and str(fifo) in error.message and "\n" not in error.message
            assert_helpful(error)
    finally:  # a reader stuck in open() by a regression is released by a writer
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
    if os.path.exists("/dev/zero"):
        for call in (lambda: read_bytes("/dev/zero", max_bytes=None), lambda: load_image("/dev/zero")):
            started = time.perf_counter()
            done, error = _within(5, call)
            assert done and error is not None and error.code == "not_a_file" and "device" in error.message
            assert time.perf_counter() - started < 1


def test_broken_link_is_named(tmp_path):
    link = tmp_path / "a.jpg"
    link.symlink_to(tmp_path / "gone.jpg")
    for call in (read_bytes, load_image):
        with pytest.raises(ImageError) as info:
            call(link)
        assert info.value.code == "broken_link" and "gone.jpg" in info.value.message
        assert_helpful(info.value)
    real = imagegen.make_image(tmp_path / "real.jpg")
    (tmp_path / "b.jpg").symlink_to(real)
    assert read_bytes(tmp_path / "b.jpg") == real.read_bytes()  # links to files are followed


def test_read_bytes_reads_at_most_max_bytes_plus_one(tmp_path, monkeypatch):
    path = tmp_path / "a.jpg"
    path.write_bytes(bytes(range(256)) * 40)  # 10,240 bytes
    assert read_bytes(path, max_bytes=10_240) == path.read_bytes()
    assert read_bytes(path, max_bytes=None) == path.read_bytes()
    with pytest.raises(ImageError) as info:
        read_bytes(path, max_bytes=10_239)
    assert info.value.code == "too_large"
    assert images_module.DEFAULT_MAX_FILE_BYTES >= 64 * 1024 * 1024  # a default cap that no photo reaches

    # A file that grows after its size was read: the read itself stops at max_bytes + 1.
    real_fstat, asked = os.fstat, []
    monkeypatch.setattr(images_module.os, "fstat", lambda fd: os.stat_result(
        (stat.S_IFREG | 0o644, *real_fstat(fd)[1:6], 10, *real_fstat(fd)[7:10])))
    real_fdopen = os.fdopen

    def spying_fdopen(fd, *args, **kwargs):
        f = real_fdopen(fd, *args, **kwargs)
        read = f.read

        class Spy:
            def __enter__(self):
                return self

            def __exit__(self, *exc):
                f.close()

            def read(self, n=-1):
                data = read(n)
                asked.append((n, len(data)))
                return data

        return Spy()

    monkeypatch.setattr(images_module.os, "fdopen", spying_fdopen)
    with pytest.raises(ImageError) as info:
        read_bytes(path, max_bytes=100)
    assert info.value.code == "too_large"
    assert asked == [(101, 101)]


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


def _photo(path, size, fmt="JPEG", seed=0, **save_kwargs):
    """A large photo-like picture: smooth gradients, a dark diagonal band and seeded noise."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    a = np.stack([255 * x / w, 255 * y / h, 128 + 100 * np.sin((x + y) / 40)], -1)
    a[np.abs(x / w - y / h) < 0.05] = 20
    a += rng.normal(0, 3, a.shape).astype(np.float32)
    Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save(path, fmt, **save_kwargs)
    return path


class _DecodeSpy:
    """Counts decoders running at once (each call to ImageFile.load takes a little while) and their sizes."""

    def __init__(self, monkeypatch, pause=0.0):
        self.running = self.most = 0
        self.sizes = []
        self.lock = threading.Lock()
        real = ImageFile.ImageFile.load

        def load(im):
            with self.lock:
                self.running += 1
                self.most = max(self.most, self.running)
                self.sizes.append(im.size)
            try:
                time.sleep(pause)
                return real(im)
            finally:
                with self.lock:
                    self.running -= 1

        monkeypatch.setattr(ImageFile.ImageFile, "load", load)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("target", [100, (150, 50)])
def test_target_decodes_no_more_than_needed(tmp_path, monkeypatch, fmt, target):
    W, H = 2000, 1500
    path = _photo(tmp_path / f"big.{fmt.lower()}", (W, H), fmt, **({"quality": 90} if fmt == "JPEG" else {"compress_level": 1}))
    full = load_image(path)
    assert full.size == (W, H)  # without a target, every pixel
    spy = _DecodeSpy(monkeypatch)
    im = load_image(path, target=target)
    tw, th = (target, target) if isinstance(target, int) else target
    fit = min(tw / W, th / H)  # the scale the caller will shrink by
    assert im.mode == "RGB"
    assert OVERSAMPLE * fit * W <= im.width < 2 * OVERSAMPLE * fit * W + 1, im.size
    assert OVERSAMPLE * fit * H <= im.height < 2 * OVERSAMPLE * fit * H + 1, im.size
    decoded = max(w * h for w, h in spy.sizes)
    if fmt == "JPEG":  # draft mode: the decoder itself worked at 1/8 scale
        assert decoded * 32 <= W * H, spy.sizes
    else:  # PNG cannot decode less, but what comes back is small
        assert decoded == W * H
    assert im.width * im.height * 32 <= W * H
    # The same picture: shrunk to the caller's size it matches the fully decoded one.
    small = (round(W * fit), round(H * fit))
    diff = np.abs(pixels(im.resize(small, Image.Resampling.BILINEAR)) - pixels(full.resize(small, Image.Resampling.BILINEAR)))
    assert diff.mean() < 4, diff.mean()  # box filter vs bilinear; a wrong crop or turn is far above


def test_target_on_every_variant_keeps_the_upright_picture(good):
    for path in good:
        full = load_image(path)
        im = load_image(path, target=(8, 10))  # 60x80 pictures: 4x smaller still keeps 2x the target
        assert im.mode == "RGB" and im.size == (15, 20), (path.name, im.size)
        expected = pixels(full.reduce(4))
        assert np.abs(pixels(im) - expected).mean() < 8, path.name
        if path.name.startswith("exif_rotated"):  # turned the wrong way, it would be far off
            assert np.abs(pixels(im) - np.rot90(expected, 2)).mean() > 20, path.name
    small = load_image(good[0], target=1000)  # never enlarged, never reduced below the target
    assert small.size == imagegen.GOOD_SIZE


def test_target_leaves_a_pil_image_as_it_was(good):
    path = next(p for p in good if p.name == "plain.jpg")
    with Image.open(path) as opened:
        im = load_image(opened, target=(8, 10))
        assert opened.size == imagegen.GOOD_SIZE and im.size == (15, 20)
    with pytest.raises(ValueError):
        load_image(path, target=0)


_PEAK_RSS = """
import sys
from stylelens.intake.images import load_image

def high_water_kb():  # VmHWM: this process's peak resident memory (ru_maxrss would count the parent's)
    return int(next(line for line in open("/proc/self/status") if line.startswith("VmHWM")).split()[1])

data = open(sys.argv[1], "rb").read()
base = high_water_kb()
im = load_image(data, target=int(sys.argv[2]) or None)
print((high_water_kb() - base) // 1024, im.size)
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux's /proc")
def test_jpeg_draft_keeps_peak_memory_small(tmp_path):
    path = _photo(tmp_path / "big.jpg", (4000, 3000), quality=90)  # 12 MP: 36 MB once decoded
    peaks = {}
    for target in (0, 224):
        out = subprocess.run([sys.executable, "-c", _PEAK_RSS, str(path), str(target)], capture_output=True,
                             text=True, check=True).stdout.split()
        peaks[target] = int(out[0])
    assert peaks[0] >= 30, peaks  # MB: the full decode really shows up in this measure
    assert peaks[224] * 5 <= peaks[0], peaks


def test_gate_bounds_concurrent_large_decodes(tmp_path, monkeypatch):
    path = _photo(tmp_path / "a.png", (400, 300), "PNG", compress_level=1)
    data = path.read_bytes()

    def burst(**kwargs):
        spy = _DecodeSpy(monkeypatch, pause=0.03)
        errors = []

        def work():
            try:
                assert load_image(data, **kwargs).size == (400, 300)
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors, errors
        return spy.most

    gate = DecodeGate(slots=2, min_pixels=100_000)  # 120,000 pixels: large
    assert burst(gate=gate) == 2
    assert gate.peak == 2 and gate.active == 0
    assert burst(gate=None) > 2  # without the gate the same burst runs wider
    assert burst(gate=DecodeGate(slots=2, min_pixels=200_000)) > 2  # small images pass freely
    gate.configure(slots=1)
    assert burst(gate=gate) == 1
    with pytest.raises(ValueError):
        gate.configure(slots=0)


def test_default_gate_lets_a_target_jpeg_pass_without_a_slot(tmp_path, monkeypatch):
    path = _photo(tmp_path / "big.jpg", (1600, 1200), quality=85)
    gate = DecodeGate(slots=1, min_pixels=1_000_000)  # 1.9 MP is large here, drafted to 1/2 it is not
    with gate.hold(10**9):  # the only slot is taken
        done, error = _within(10, lambda: load_image(path, target=224, gate=gate))
        assert done and error is None  # drafted to 1/4 it is small: no slot needed
        done, _ = _within(0.5, lambda: load_image(path, gate=gate))
        assert not done  # the full decode waits for the slot
    assert gate.active == 0
