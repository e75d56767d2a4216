"""cirbench.protocol.images on its own: listing image files, bringing high bit depths to 8 bits, and the
per-image operations (crops, pads) that the COCO and GeneCIS queries carry. Every expected value is worked
out by hand on images small enough to read pixel by pixel."""

import numpy as np
import pytest
from PIL import Image

from cirbench.protocol.images import ImageRef, dilated_box, float_scale, list_images, load_rgb, pad_square


def ramp(width, height):
    """An 'L' image whose pixel (x, y) is 10 * y + x: a crop's place can be read from its first pixel."""
    return Image.fromarray((np.arange(height)[:, None] * 10 + np.arange(width)[None, :]).astype(np.uint8), "L")


def test_each_linked_folder_is_listed_once_and_the_walk_goes_on_after_it(tmp_path):
    # two folders each holding a real folder and a link to it: the second of each pair is a folder
    # already walked. Whichever order the walk takes, one pair is met before the other folder is walked,
    # so stopping the walk there (instead of skipping that one folder) loses the other folder's image
    for top in ("one", "two"):
        (tmp_path / top / "real").mkdir(parents=True)
        Image.new("RGB", (2, 2)).save(tmp_path / top / "real" / "a.PNG")  # suffixes in any case
        (tmp_path / top / "real" / "notes.txt").write_text("not an image")
        (tmp_path / top / "link").symlink_to(tmp_path / top / "real", target_is_directory=True)
    found = list_images(tmp_path)
    assert len(found) == 2 and found == sorted(found)
    assert {p.resolve() for p in found} == {tmp_path / "one" / "real" / "a.PNG", tmp_path / "two" / "real" / "a.PNG"}
    # a link to a folder elsewhere (a gallery spread over disks) is walked into
    (tmp_path / "elsewhere").mkdir()
    Image.new("RGB", (2, 2)).save(tmp_path / "elsewhere" / "b.jpg")
    (tmp_path / "one" / "far").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    assert tmp_path / "one" / "far" / "b.jpg" in list_images(tmp_path / "one")


@pytest.mark.parametrize("peak, factor", [(0.5, 255.0), (1.0, 255.0), (1.5, 1.0), (255.0, 1.0),
                                          (255.5, 1 / 257), (65535.0, 1 / 257), (131070.0, 255 / 131070)])
def test_a_float_image_is_scaled_by_the_range_its_peak_implies(peak, factor):
    # each range's bounds belong to it: a peak of exactly 1 is a 0..1 image, of exactly 255 an 8-bit one
    assert float_scale(peak) == pytest.approx(factor, rel=1e-12)


def test_a_float_image_in_the_eight_bit_range_keeps_its_values(tmp_path):
    values = np.array([[0, 7.4, 100, 200.6]], dtype=np.float32)
    Image.fromarray(values, "F").save(tmp_path / "f.tif")
    assert np.asarray(load_rgb(tmp_path / "f.tif"))[0, :, 0].tolist() == [0, 7, 100, 201]


def grey_values(tmp_path, array, mode):
    Image.fromarray(array, mode).save(tmp_path / "x.tif")
    assert Image.open(tmp_path / "x.tif").mode == mode
    return np.asarray(load_rgb(tmp_path / "x.tif"))[0, :, 0].tolist()


def test_a_float_images_nan_and_infinities_are_black_and_negatives_clipped(tmp_path):
    # after NaN and +-inf become 0 the peak is 0.5: a 0..1 image (x 255). An inf read as 1 would both
    # show white and leave the scale; a negative value would wrap to white were the clip's floor below 0
    values = np.array([[np.nan, np.inf, -np.inf, -5, 0.25, 0.5]], dtype=np.float32)
    assert grey_values(tmp_path, values, "F") == [0, 0, 0, 0, 64, 128]


def test_a_float_peak_up_to_65535_is_read_as_16_bit_and_above_it_by_its_own_range(tmp_path):
    # peak 65534.5: the 16-bit range (/ 257). 25828.305 / 257 = 100.4992 -> 100, where the next range's
    # 255 / peak would give 100.500007 -> 101
    assert grey_values(tmp_path, np.array([[25828.305, 65534.5]], dtype=np.float32), "F") == [100, 255]
    # peak 65535.5, just over: 255 / peak. 25828.502 * 255 / 65535.5 = 100.4992 -> 100 (/ 257: 101)
    assert grey_values(tmp_path, np.array([[25828.502, 65535.5]], dtype=np.float32), "F") == [100, 255]


def test_integer_images_scale_above_255_and_are_kept_up_to_it(tmp_path):
    # 32-bit 'I' with a maximum of 255: 8-bit values as they are (a negative clipped to 0) ...
    assert grey_values(tmp_path, np.array([[-5, 0, 100, 255]], dtype=np.int32), "I") == [0, 0, 100, 255]
    assert grey_values(tmp_path, np.array([[0, 100]], dtype=np.int32), "I") == [0, 100]  # under 255 too
    # ... above 255: / 257 as 16-bit, clipped at 255 (a float image's rule would scale by 255 / 70000)
    # (a negative one clipped to 0: -514 / 257 = -2 would wrap to 254 as 8 bits)
    assert grey_values(tmp_path, np.array([[-514, 0, 25700, 70000]], dtype=np.int32), "I") == [0, 0, 100, 255]
    assert grey_values(tmp_path, np.array([[0, 256]], dtype=np.int32), "I") == [0, 1]  # 256 is above: / 257
    # 16-bit: / 257 whatever the maximum (65535 -> 255; 258 would give 254)
    # (200 / 257 = 0.78 rounds to 1, where a floor would give 0; 32767 / 257 = 127.498, where / 256 is 128)
    Image.fromarray(np.array([[0, 200, 25700, 32767, 65535]], dtype=np.uint16)).save(tmp_path / "x.png")
    assert Image.open(tmp_path / "x.png").mode == "I;16"
    assert np.asarray(load_rgb(tmp_path / "x.png"))[0, :, 0].tolist() == [0, 1, 100, 127, 255]


def test_a_crop_cuts_its_box_and_a_box_off_the_image_is_named(tmp_path):
    ramp(9, 7).save(tmp_path / "r.png")  # 9 wide, 7 high: x and y bounds cannot be swapped unseen
    out = np.asarray(load_rgb(ImageRef(tmp_path / "r.png", (("crop", 2, 3, 5, 7),))))[..., 0]
    assert out.shape == (4, 3) and out[0, 0] == 32 and out[-1, -1] == 64
    # a box along the top row or the left column starts at 0, not 1
    assert np.asarray(load_rgb(ImageRef(tmp_path / "r.png", (("crop", 0, 0, 3, 1),))))[..., 0].tolist() == [[0, 1, 2]]
    assert np.asarray(load_rgb(ImageRef(tmp_path / "r.png", (("crop", 0, 0, 1, 2),))))[..., 0].tolist() == [[0], [10]]
    # one pixel of overlap is a box (PIL's crop fills the rest with black, as the official loaders get);
    # none (or a box of no width or height) is refused
    corner = np.asarray(load_rgb(ImageRef(tmp_path / "r.png", (("crop", 8, 6, 12, 12),))))[..., 0]
    assert corner.shape == (6, 4) and corner[0, 0] == 68 and corner.sum() == 68
    for box in ((9, 0, 12, 3), (0, 7, 3, 12), (-5, 0, 0, 3), (0, -5, 3, 0), (2, 2, 2, 5), (2, 2, 5, 2)):
        with pytest.raises(ValueError, match=rf"the box \[{', '.join(map(str, box))}\] lies outside the 9 x 7 image"):
            load_rgb(ImageRef(tmp_path / "r.png", (("crop", *box),)))


def test_a_dilated_crop_names_the_annotated_box_not_its_dilation(tmp_path):
    ramp(9, 7).save(tmp_path / "r.png")
    # left/top move out by half the size (1, 2); right/bottom are those plus 1.5 times it (3, 6), so the
    # box grows left and up only, as GeneCIS's code; the bottom is clipped to the image's 7
    assert dilated_box((9, 7), 4, 3, 2, 4, 0.5) == (3, 1, 6, 7)
    out = np.asarray(load_rgb(ImageRef(tmp_path / "r.png", (("dilated_crop", 4, 3, 2, 4, 0.5),))))[..., 0]
    assert out.shape == (6, 3) and out[0, 0] == 13 and out[-1, -1] == 65
    # at x = 9 the dilated box keeps one column (8..9): a crop; at y = 8 it keeps no row (7..7): refused
    edge = np.asarray(load_rgb(ImageRef(tmp_path / "r.png", (("dilated_crop", 9, 1, 2, 2, 0.5),))))[..., 0]
    assert edge.shape == (3, 1) and edge[:, 0].tolist() == [8, 18, 28]
    # at y = 7 one row (6..7) is kept: a crop 3 wide and 1 high
    row = np.asarray(load_rgb(ImageRef(tmp_path / "r.png", (("dilated_crop", 4, 7, 2, 2, 0.5),))))[..., 0]
    assert row.shape == (1, 3) and row[0].tolist() == [63, 64, 65]
    for box in ((20, 1, 2, 2), (1, 8, 2, 2), (10, 1, 2, 2)):  # (10: no column, 9..9)
        with pytest.raises(ValueError, match=rf"the box \[{', '.join(map(str, box))}\] lies outside the 9 x 7 image"):
            load_rgb(ImageRef(tmp_path / "r.png", (("dilated_crop", *box, 0.5),)))


def test_operations_run_in_order_each_on_the_last_ones_image(tmp_path):
    ramp(9, 7).save(tmp_path / "r.png")
    # the first crop leaves [[11, 12, 13], [21, 22, 23]]; the second is read in that image (22, where the
    # original has 12), and its bounds are checked against 3 x 2, not 9 x 7
    first = ("crop", 1, 1, 4, 3)
    assert np.asarray(load_rgb(ImageRef(tmp_path / "r.png", (first, ("crop", 1, 1, 2, 2)))))[0, 0, 0] == 22
    with pytest.raises(ValueError, match=r"the box \[3, 0, 4, 1\] lies outside the 3 x 2 image"):
        load_rgb(ImageRef(tmp_path / "r.png", (first, ("crop", 3, 0, 4, 1))))


def test_an_unknown_operation_is_refused_naming_the_file(tmp_path):
    ramp(3, 3).save(tmp_path / "r.png")
    with pytest.raises(ValueError, match=r"unknown image operation \('rotate', 90\) for .*r.png"):
        load_rgb(ImageRef(tmp_path / "r.png", (("rotate", 90),)))
    with pytest.raises(ValueError, match="unknown image operation"):  # a known name with a wrong arity
        load_rgb(ImageRef(tmp_path / "r.png", (("crop", 0, 0, 2),)))
    squashed = ImageRef(tmp_path / "r.png", (("crop", 0, 0, 2, 2), ("squash",)))
    assert squashed.squash and not ImageRef(tmp_path / "r.png", (("crop", 0, 0, 2, 2),)).squash
    assert load_rgb(squashed).size == (2, 2)


@pytest.mark.parametrize("size, image_at, pad_at", [((3, 2), (0, 0), (0, 2)),   # wide: one row below
                                                    ((2, 3), (0, 0), (2, 0)),   # tall: one column right
                                                    ((4, 1), (0, 1), (0, 0)),   # a row of 4: centred at y=1
                                                    ((1, 4), (1, 0), (2, 0)),   # a column: at x=1
                                                    ((2, 4), (1, 0), (0, 0)),   # 2 short: 1 before
                                                    ((4, 2), (0, 1), (0, 0))])  # (a third would be 0)
def test_pad_square_centres_the_image_on_its_fill(size, image_at, pad_at):
    # (side - size) // 2 before the image: 0 for an odd remainder of 1, 1 for a remainder of 3
    out = pad_square(Image.new("RGB", size, (200, 100, 50)), (5, 6, 7))
    side = max(size)
    assert out.size == (side, side) and out.mode == "RGB"
    assert out.getpixel(image_at) == (200, 100, 50) and out.getpixel(pad_at) == (5, 6, 7)
    assert np.all(np.asarray(out) != 0)  # no pixel left unpainted
    # an 'L' image is padded with 0 whatever triple is given, as GeneCIS's expand2square
    grey = pad_square(Image.new("L", size, 90), (5, 6, 7))
    assert grey.mode == "L" and grey.getpixel(image_at) == 90 and grey.getpixel(pad_at) == 0


def test_operations_run_in_the_images_own_mode(tmp_path):
    # load_rgb applies the operations before the RGB conversion, as the official loaders do: an 'L'
    # image is padded with 0 (black), where an RGB copy would take the (5, 6, 7) fill
    Image.new("L", (4, 2), 90).save(tmp_path / "g.png")
    out = load_rgb(ImageRef(tmp_path / "g.png", (("pad_square", 5, 6, 7),)))
    assert out.mode == "RGB" and out.size == (4, 4)
    assert out.getpixel((0, 0)) == (0, 0, 0) and out.getpixel((0, 1)) == (90, 90, 90)


def test_load_image_converts_unless_asked_to_keep_the_mode(tmp_path):
    from cirbench.protocol.images import load_image

    Image.new("L", (3, 2), 90).save(tmp_path / "g.png")
    Image.fromarray(np.full((2, 3), 25700, dtype=np.uint16)).save(tmp_path / "g16.png")
    assert load_image(tmp_path / "g.png", keep_mode=True).mode == "L"
    assert load_image(tmp_path / "g.png", keep_mode=False).mode == "RGB"
    for keep in (True, False):  # more than 8 bits is scaled to 8-bit RGB either way
        out = load_image(tmp_path / "g16.png", keep_mode=keep)
        assert out.mode == "RGB" and out.getpixel((0, 0)) == (100, 100, 100), keep
