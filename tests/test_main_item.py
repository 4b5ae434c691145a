"""An outfit's main item (query.stages.order): the garment most likely answered right goes first, only for an outfit
seen whole; every other photo keeps the parser's order."""

from __future__ import annotations

import numpy as np
import pytest

from stylelens.query.identify import Identification
from stylelens.query.request import Item
from stylelens.query.results import SearchResult
from stylelens.query.stages.order import WHOLE_OUTFIT_MAX_LARGEST_BOX, agreement, main_first

FRAME = (600, 900)


def answered(types, confidence):
    return SearchResult([{"id": str(i), "type": t} for i, t in enumerate(types)],
                        Identification(type=types[0], type_confidence=confidence))


def outfit(boxes, groups=("outerwear", "bottom", "shoes")):
    items = [Item(box=b, score=0.7, group=g) for b, g in zip(boxes, groups)]
    results = [answered(["Jackets", "Shirts", "Sweaters", "Jackets", "Tshirts"], 0.35),  # the largest, half-known
               answered(["Jeans", "Trousers", "Jeans", "Track Pants", "Jeans"], 0.45),
               answered(["Heels"] * 5, 0.95)]  # the smallest, sure: its results all of one type
    return items, results


SMALL = [(200, 150, 160, 260), (220, 420, 130, 280), (230, 720, 110, 60)]  # a person seen whole: boxes under 0.1


def test_an_outfit_seen_whole_puts_the_surest_answered_garment_first():
    items, results = outfit(SMALL)
    order = main_first(items, results, FRAME)
    assert order[0] == 2 and sorted(order) == [0, 1, 2]


def test_a_close_up_keeps_the_parsers_order():
    side = int(np.sqrt(WHOLE_OUTFIT_MAX_LARGEST_BOX * FRAME[0] * FRAME[1])) + 20  # one box over the share of a close-up
    items, results = outfit([(0, 0, side, side), *SMALL[1:]])
    assert main_first(items, results, FRAME) == [0, 1, 2]


def test_photos_that_are_not_worn_outfits_keep_their_order():
    items, results = outfit(SMALL, groups=(None, None, None))  # a flat lay's parts, or the contrast localiser's
    assert main_first(items, results, FRAME) == [0, 1, 2]
    assert main_first(items[:1], results[:1], FRAME) == [0]


def test_ties_keep_the_parsers_order_and_no_vote_counts_as_unsure():
    items = [Item(box=b, score=0.7, group="top") for b in SMALL[:2]]
    same = [SearchResult([{"type": "Tshirts"}] * 5, None), SearchResult([{"type": "Tshirts"}] * 5, None)]
    assert main_first(items, same, FRAME) == [0, 1]


@pytest.mark.parametrize("types, share", [(["Jeans"] * 5, 1.0), (["Jeans", "Jeans", "Shorts"], 0.4), ([], 0.0)])
def test_agreement_counts_missing_rows_as_disagreeing(types, share):
    assert agreement([{"type": t} for t in types]) == pytest.approx(share)
