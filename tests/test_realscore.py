"""The scoring of real-photo searches (quality.realscore) on inputs small enough to count by hand."""

import pytest

from stylelens.quality import realscore as rs

SHIRTS, SHOES = {"Shirts"}, {"Casual Shoes", "Sports Shoes"}


def test_type_p_at_5_counts_the_first_five_and_missing_rows_as_wrong():
    assert rs.type_p_at_k(["Shirts", "Tshirts", "Shirts", "Shirts", "Jeans", "Shirts"], SHIRTS) == pytest.approx(0.6)
    assert rs.type_p_at_k(["Shirts", "Shirts"], SHIRTS) == pytest.approx(0.4)
    assert rs.type_p_at_k([], SHIRTS) == 0.0
    with pytest.raises(ValueError):
        rs.type_p_at_k(["Shirts"], SHIRTS, k=0)


def test_result_types_reads_the_type_of_each_product_in_order():
    assert rs.result_types([{"type": "Shirts"}, {"type": None}, {"id": "1"}]) == ["Shirts", "", ""]


def test_chance_is_the_catalog_share_of_the_wanted_types():
    assert rs.chance({"Shirts": 30, "Casual Shoes": 10, "Sports Shoes": 10, "Jeans": 50}, SHOES) == pytest.approx(0.2)
    assert rs.chance({}, SHOES) == 0.0


def test_overlap_by_iou_or_by_the_centre_inside_the_garment():
    garment = (100, 100, 100, 200)
    assert rs.overlaps((100, 100, 100, 200), garment)
    assert rs.overlaps((120, 150, 20, 20), garment)  # tiny box, centre inside
    assert rs.overlaps((60, 100, 100, 200), garment)  # centre (110, 200) inside
    assert not rs.overlaps((0, 0, 90, 90), garment)
    assert not rs.overlaps((0, 0, 400, 1000), garment)  # the whole frame: centre (200, 500) outside, IoU 0.05


def test_frame_share_and_cut():
    assert rs.frame_share((0, 0, 400, 300), (400, 300)) == pytest.approx(1.0)
    assert rs.frame_share((-50, 0, 100, 300), (400, 300)) == pytest.approx(50 / 400)
    assert not rs.is_cut((0, 0, 400, 300), (400, 300))
    assert rs.is_cut((0, 0, 200, 300), (400, 300))


def test_best_iou_picks_the_best_fitting_box():
    assert rs.best_iou([(0, 0, 10, 10), (100, 100, 100, 200)], (100, 100, 100, 200)) == pytest.approx(1.0)
    assert rs.best_iou([], (0, 0, 1, 1)) == 0.0


def test_one_to_one_matching_reassigns_to_reach_the_most_pairs():
    # Row 0 could take garment 0 or 1, row 1 only garment 0: both are found only if row 0 yields garment 0.
    assert rs.match_one_to_one([{0, 1}, {0}], 2) == [1, 0]
    assert rs.match_one_to_one([{0}, {0}], 2) == [0, None]
    assert rs.match_one_to_one([], 3) == [None, None, None]


def test_a_garment_is_found_by_an_overlapping_row_of_its_type_and_one_row_finds_one_garment():
    top, feet = (100, 100, 200, 200), (100, 700, 200, 80)
    shirts = ["Shirts"] * 4 + ["Jeans"]
    shoes = ["Casual Shoes", "Sports Shoes", "Sports Shoes", "Shirts", "Jeans"]
    garments = [(top, SHIRTS), (feet, SHOES)]
    assert rs.garments_found([(top, shirts), (feet, shoes)], garments) == [True, True]
    assert rs.garments_found([(feet, shirts), (top, shoes)], garments) == [False, False]  # right types, wrong places
    assert rs.garments_found([(top, shoes)], garments) == [False, False]
    assert rs.garments_found([(top, ["Shirts", "Shirts", "Jeans", "Jeans", "Jeans"])], garments) == [False, False]  # 0.4
    # One row over both garments' boxes (centre inside the top) cannot find both, even if its types fit both.
    assert rs.garments_found([(top, shirts)], [(top, SHIRTS), (top, SHIRTS)]) == [True, False]


def test_garments_typed_ignores_where_the_row_is_and_lets_one_row_serve_several():
    shirts = ["Shirts"] * 4 + ["Jeans"]
    assert rs.garments_typed([shirts], [SHIRTS, SHIRTS, SHOES]) == [True, True, False]
    assert rs.garments_typed([], [SHIRTS]) == [False]


def test_main_result_right_and_top1():
    worn = [SHIRTS, SHOES]
    assert rs.main_result_right(["Shirts", "Shirts", "Shirts", "Jeans", "Jeans"], worn)
    assert not rs.main_result_right(["Shirts", "Shirts", "Casual Shoes", "Jeans", "Jeans"], worn)  # 0.4 and 0.2
    assert rs.top1_right(["Sports Shoes", "Jeans"], worn)
    assert not rs.top1_right(["Jeans", "Shirts"], worn)
    assert not rs.top1_right([], worn)


def test_row_for_a_target_box_is_the_best_overlapping_row():
    rows = [(0, 0, 320, 240), (10, 10, 100, 100), (200, 10, 100, 100)]
    assert rs.row_for((205, 15, 90, 90), rows) == 2
    assert rs.row_for((0, 0, 320, 240), rows) == 0
    assert rs.row_for((0, 300, 10, 10), rows) is None


def test_mean_of_nothing_is_none():
    assert rs.mean([]) is None
    assert rs.mean([1, 2]) == 1.5
