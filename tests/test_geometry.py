import pytest
import torch
import torch.nn.functional as F

from maskclip.geometry import bilinear_matrix, scaled_size, upsample_accumulate, window_starts


@pytest.mark.parametrize("out_size,in_size", [(512, 21), (7, 3), (5, 9), (1, 4), (300, 1)])
def test_bilinear_matrix_matches_interpolate(out_size, in_size):
    v = torch.randn(1, 1, in_size, 2)
    expected = F.interpolate(v, size=(out_size, 2), mode="bilinear", align_corners=False)[0, 0, :, 0]
    torch.testing.assert_close(bilinear_matrix(out_size, in_size) @ v[0, 0, :, 0], expected)


def test_chunked_upsampling_matches_interpolate():
    grid = torch.randn(3, 5, 8)
    acc = torch.zeros(3, 37, 61)
    upsample_accumulate(acc, grid, weight=0.5, max_chunk_elems=3 * 61 * 4)  # 4 rows per chunk
    expected = 0.5 * F.interpolate(grid[None], size=(37, 61), mode="bilinear", align_corners=False)[0]
    torch.testing.assert_close(acc, expected)


def test_scaled_size_and_windows():
    assert scaled_size(360, 480, 336, 16) == (336, 448)
    assert scaled_size(3000, 4000, 336, 16) == (336, 448)
    assert scaled_size(4, 5, 336, 16) == (336, 416)  # tiny images are enlarged
    assert max(scaled_size(2, 4000, 336, 16)) <= 4096  # elongated images are capped
    assert window_starts(100, 100, 50) == [0]
    assert window_starts(1000, 768, 512) == [0, 232]
    starts = window_starts(2000, 768, 512)
    assert starts[0] == 0 and starts[-1] == 2000 - 768 and all(b - a <= 512 for a, b in zip(starts, starts[1:]))
