"""The merge rules of maskclip.project.merge as pure functions (no project folder): one pixel per case."""
import numpy as np

from maskclip.project import merge

U = -1  # unlabelled, in uids


def a(*values, dtype=np.int32):
    return np.array(values, dtype)


def b(*values):
    return np.array(values, bool)


def test_keep_verified_is_the_confirmed_background_rule():
    # (has a class, unlabelled): a class keeps its flag, an unlabelled pixel keeps it (confirmed background),
    # a pixel whose class was dropped loses it
    out = merge.keep_verified(b(1, 1, 1, 0), b(1, 0, 0, 1), b(0, 1, 0, 0))
    assert out.tolist() == [True, True, False, False]


def test_prediction_keeps_verified_pixels_and_confirmed_background():
    latest, latest_v = a(3, U, 3, U), b(1, 1, 0, 0)
    assert merge.merge_prediction(latest, latest_v, a(5, 5, 5, 5)).tolist() == [3, U, 5, 5]


def test_view_hides_classes_unknown_to_the_reader():
    uids, verified = a(0, 7, U, 9), b(1, 1, 1, 0)
    labels, shown_v = merge.view(uids, verified, {0: 1, 9: 0})  # uid 7 unknown here
    assert labels.tolist() == [1, 255, 255, 0]
    assert shown_v.tolist() == [True, False, True, False]


def test_decode_drops_removed_classes_and_keeps_classes_added_elsewhere():
    raw = np.array([0, 1, 2, 255], np.uint8)
    stored_uids = [4, 5, 12]  # 5 removed here; 12 added by another process (>= next uid 10)
    labels, verified = merge.decode(raw, b(1, 1, 1, 1), stored_uids, {4: 0}, horizon=10)
    assert labels.tolist() == [4, U, 12, U]
    assert verified.tolist() == [True, False, True, True]


def test_encode_round_trips_through_decode():
    uids, verified = a(2, U, 8, 2), b(1, 1, 0, 0)
    labels, raw, stored_v, class_uids = merge.encode(uids, verified, [2, 3])
    assert class_uids == [2, 3, 8] and raw.tolist() == [0, 255, 2, 0]
    back, back_v = merge.decode(raw, stored_v, class_uids, {2: 0, 3: 1}, horizon=4)
    assert back.tolist() == uids.tolist() and back_v.tolist() == verified.tolist()


def test_editor_save_takes_only_its_own_changes():
    # the caller held [1, 1, 1]; another writer committed [1, 2, 1] with pixel 1 verified; the caller
    # paints pixel 2 with class 0 (uids equal indices here)
    uid_to_index = {0: 0, 1: 1, 2: 2}
    latest, latest_v = a(1, 2, 1), b(0, 1, 0)
    base, base_v = a(1, 1, 1), b(0, 0, 0)
    labels = np.array([1, 1, 0], np.uint8)
    result, result_v, new, new_v = merge.merge_save(latest, latest_v, base, base_v, True, labels, None, True,
                                                    [0, 1, 2], uid_to_index)
    assert result.tolist() == [1, 2, 0] and result_v.tolist() == [False, True, True]
    assert new.tolist() == [1, 1, 0] and new_v.tolist() == [False, False, True]
    # a caller whose copy was forgotten (base = latest) keeps every pixel verified since, unless it verifies it
    result, result_v, _, _ = merge.merge_save(latest, latest_v, latest, latest_v, False, labels, b(0, 0, 0), False,
                                              [0, 1, 2], uid_to_index)
    assert result.tolist() == [1, 2, 0] and result_v.tolist() == [False, True, False]


def test_verified_save_takes_only_changed_flags():
    latest_v, base, base_v = b(1, 0, 0), a(1, 1, 1), b(0, 0, 0)
    out = merge.merge_verified(latest_v, base, base_v, True, b(0, 0, 1), {1: 0})
    assert out.tolist() == [True, False, True]
