"""Corpus cases: broken FITS files and unusual pixel arrays."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
from astropy.io import fits

from corpus.harness import case, copy_images, default_config
from corpus.inputs import edit_sci, run_args, set_sci_data

NOTHING = "input error naming the file, nothing written"


def _cut(path: Path, keep: int) -> Path:
    path.write_bytes(path.read_bytes()[:keep])
    return path


@case("fits", exit_code=1, message=r"img_001\.fits: truncated", outcome=NOTHING)
def truncated_data(work: Path) -> list[str]:
    """A FITS file cut in the middle of its SCI pixel data."""
    images = copy_images(work, 2)
    _cut(images[1], 2880 * 20)
    return run_args(work, images)


@case("fits", exit_code=1,
      message=r"img_001\.fits: truncated: the file ends inside the header of HDU 1",
      outcome=NOTHING)
def truncated_header(work: Path) -> list[str]:
    """A FITS file cut inside its first extension header (no END card)."""
    images = copy_images(work, 2)
    _cut(images[1], 2880 + 400)
    return run_args(work, images)


@case("fits", exit_code=1, message=r"notes\.fits: not a FITS file$", outcome=NOTHING)
def not_fits(work: Path) -> list[str]:
    """A text file named .fits."""
    images = copy_images(work, 1)
    text = work / "in" / "notes.fits"
    text.write_text("observing notes, not an image\n" * 10)
    return run_args(work, [images[0], text])


@case("fits", exit_code=1, message=r"empty\.fits: empty file", outcome=NOTHING)
def empty_fits(work: Path) -> list[str]:
    """An empty (0-byte) .fits file."""
    images = copy_images(work, 1)
    empty = work / "in" / "empty.fits"
    empty.write_bytes(b"")
    return run_args(work, [images[0], empty])


@case("fits", exit_code=1, message=r"nodata\.fits: no image data", outcome=NOTHING)
def no_data(work: Path) -> list[str]:
    """A FITS file with headers but no pixel data at all (NAXIS = 0 everywhere)."""
    images = copy_images(work, 1)
    header = fits.getheader(images[0], "SCI")
    header["NAXIS"] = 0
    for key in ("NAXIS1", "NAXIS2"):
        del header[key]
    empty = work / "in" / "nodata.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(header=header, name="SCI")]).writeto(empty)
    return run_args(work, [images[0], empty])


@case("fits", exit_code=1, message=r"img_001\.fits: science data must be 2D.*\(3, 256, 256\)",
      outcome=NOTHING)
def cube(work: Path) -> list[str]:
    """A data cube (NAXIS = 3) as science array."""
    images = copy_images(work, 2)
    data = fits.getdata(images[1], "SCI")
    set_sci_data(images[1], np.stack([data] * 3))
    return run_args(work, images)


@case("fits", exit_code=1, message=r"img_001\.fits: .*(2D|celestial)", outcome=NOTHING)
def one_dimensional(work: Path) -> list[str]:
    """A 1D spectrum-like array (NAXIS = 1) as science array."""
    images = copy_images(work, 2)
    set_sci_data(images[1], np.arange(256, dtype=np.float32))
    return run_args(work, images)


@case("pixels", exit_code=0, message=None, outcome="aligned (integer pixels are read as floats)",
      writes=True)
def integer_pixels(work: Path) -> list[str]:
    """Science pixels stored as 32-bit integers (BITPIX = 32)."""
    images = copy_images(work, 2)
    set_sci_data(images[1], np.round(fits.getdata(images[1], "SCI")).astype(np.int32))
    return run_args(work, images)


@case("pixels", exit_code=0, message=None, outcome="aligned", writes=True)
def unsigned_byte_pixels(work: Path) -> list[str]:
    """Science pixels as unsigned bytes (BITPIX = 8), scaled to 0..255."""
    images = copy_images(work, 2)
    data = fits.getdata(images[1], "SCI").astype(float)
    scaled = np.sqrt((data - data.min()) / (data.max() - data.min())) * 255.0
    set_sci_data(images[1], np.round(scaled).astype(np.uint8))
    return run_args(work, images)


@case("fits", exit_code=1, message=r"img_001\.fits: the SCI extension is a BinTableHDU",
      outcome=NOTHING)
def table_as_sci(work: Path) -> list[str]:
    """A binary table named SCI where the image should be."""
    images = copy_images(work, 2)
    table = fits.BinTableHDU.from_columns([fits.Column("flux", "E", array=np.ones(5))],
                                          name="SCI")
    fits.HDUList([fits.PrimaryHDU(), table]).writeto(images[1], overwrite=True)
    return run_args(work, images)


@case("pixels", exit_code=1, message=r"img_001\.fits: .*no finite pixel",
      outcome="that image FAILED with the reason, the other written unchanged", writes=True)
def all_nan_pixels(work: Path) -> list[str]:
    """An image whose pixels are all NaN."""
    images = copy_images(work, 2)
    set_sci_data(images[1], np.full((256, 256), np.nan, dtype=np.float32))
    return run_args(work, images)


@case("pixels", exit_code=1, message=r"img_001\.fits: .*(no sources|0 matched|only 0)",
      outcome="that image FAILED (no sources), the other written unchanged", writes=True)
def all_zero_pixels(work: Path) -> list[str]:
    """An image whose pixels are all zero."""
    images = copy_images(work, 2)
    set_sci_data(images[1], np.zeros((256, 256), dtype=np.float32))
    return run_args(work, images)


@case("pixels", exit_code=1, message=r"img_001\.fits: .*(no sources|0 matched|only 0)",
      outcome="that image FAILED (no sources), the other written unchanged", writes=True)
def constant_pixels(work: Path) -> list[str]:
    """An image whose pixels all have the same value (1000)."""
    images = copy_images(work, 2)
    set_sci_data(images[1], np.full((256, 256), 1000.0, dtype=np.float32))
    return run_args(work, images)


@case("pixels", exit_code=0, message=None, outcome="aligned (NaN pixels are masked)",
      writes=True)
def half_nan_pixels(work: Path) -> list[str]:
    """An image whose left half is NaN."""
    images = copy_images(work, 2)
    data = fits.getdata(images[1], "SCI").copy()
    data[:, :96] = np.nan
    set_sci_data(images[1], data)
    return run_args(work, images)


@case("fits", exit_code=0, message=None, outcome="aligned", writes=True)
def huge_header(work: Path) -> list[str]:
    """A SCI header with 10^4 extra HISTORY/COMMENT cards."""
    images = copy_images(work, 2)

    def pad(header: fits.Header) -> None:
        for index in range(5000):
            header.add_history(f"processing step {index}")
            header.add_comment(f"comment {index}")

    edit_sci(images[1], pad)
    return run_args(work, images)


@case("fits", exit_code=0, message=None, outcome="aligned", writes=True)
def primary_image_only(work: Path) -> list[str]:
    """The image and its WCS in the primary HDU (no SCI extension, no DQ)."""
    images = copy_images(work, 2)
    with fits.open(images[1]) as hdul:
        hdu = fits.PrimaryHDU(hdul["SCI"].data, header=hdul["SCI"].header)
    del hdu.header["EXTNAME"]
    hdu.writeto(images[1], overwrite=True)
    return run_args(work, images)


@case("fits", exit_code=0, message=None, outcome="aligned, the output gzip-compressed too",
      writes=True)
def gzip_compressed(work: Path) -> list[str]:
    """A gzip-compressed FITS file (.fits.gz)."""
    images = copy_images(work, 2)
    packed = images[1].with_name(images[1].name + ".gz")
    with images[1].open("rb") as raw, gzip.open(packed, "wb") as out:
        shutil.copyfileobj(raw, out)
    images[1].unlink()
    return run_args(work, [images[0], packed])


@case("fits", exit_code=1, message=r"img_001\.fits\.gz: .*(truncated|unreadable)",
      outcome=NOTHING)
def gzip_truncated(work: Path) -> list[str]:
    """A gzip-compressed FITS file cut in the middle of the compressed stream."""
    images = copy_images(work, 2)
    packed = images[1].with_name(images[1].name + ".gz")
    packed.write_bytes(gzip.compress(images[1].read_bytes())[:20000])
    images[1].unlink()
    return run_args(work, [images[0], packed])


@case("fits", exit_code=1, message=r"in/sub: is a directory", outcome=NOTHING)
def directory_as_image(work: Path) -> list[str]:
    """An @list naming a directory where an image file is expected.

    A directory given as an argument is an input of its own (see the inputs cases).
    """
    images = copy_images(work, 1)
    (work / "in" / "sub").mkdir()
    listing = work / "in" / "list.txt"
    listing.write_text(f"{images[0].name}\nsub\n")
    return ["run", default_config(work), f"@{listing}", "-o", str(work / "out"), "-q"]


@case("fits", exit_code=1, message=r"img_001\.fits: DQ shape \(128, 128\) differs",
      outcome=NOTHING)
def dq_shape_mismatch(work: Path) -> list[str]:
    """A DQ extension whose shape differs from the SCI array."""
    images = copy_images(work, 2)
    with fits.open(images[1]) as hdul:
        hdus = [hdul[0].copy(), hdul["SCI"].copy(),
                fits.ImageHDU(np.zeros((128, 128), np.int32), name="DQ")]
    fits.HDUList(hdus).writeto(images[1], overwrite=True)
    return run_args(work, images)


@case("fits", exit_code=1, message=r"(?s)empty\.fits: empty file.*notes\.fits: not a FITS file",
      outcome="every problem listed at once, one line each, nothing written")
def several_bad_files(work: Path) -> list[str]:
    """Two broken inputs among good ones: both are reported in one run."""
    images = copy_images(work, 2)
    (work / "in" / "empty.fits").write_bytes(b"")
    (work / "in" / "notes.fits").write_text("not a FITS file\n")
    return ["run", default_config(work), str(images[0]), str(work / "in" / "empty.fits"),
            str(images[1]), str(work / "in" / "notes.fits"), "-o", str(work / "out")]


@case("fits", exit_code=1, message=r"img_001\.fits: not a readable FITS file", outcome=NOTHING)
def bad_bitpix(work: Path) -> list[str]:
    """A SCI header with an invalid BITPIX (12)."""
    images = copy_images(work, 2)
    raw = bytearray(images[1].read_bytes())
    start = raw.index(b"BITPIX  = ", 2880)
    raw[start:start + 80] = f"{'BITPIX':<8}= {12:>20}".ljust(80).encode()
    images[1].write_bytes(bytes(raw))
    return run_args(work, images)


@case("fits", exit_code=1, message=r"img_001\.fits: truncated", outcome=NOTHING)
def detect_truncated(work: Path) -> list[str]:
    """`aligncore detect` with a FITS file cut in its pixel data."""
    images = copy_images(work, 2)
    _cut(images[1], 2880 * 20)
    return ["detect", default_config(work), *map(str, images), "-o", str(work / "cats")]


@case("fits", exit_code=0, message=None, outcome="aligned", writes=True)
def tile_compressed(work: Path) -> list[str]:
    """A tile-compressed (fpack-style, RICE) SCI extension."""
    images = copy_images(work, 2)
    with fits.open(images[1]) as hdul:
        compressed = fits.CompImageHDU(hdul["SCI"].data, hdul["SCI"].header, name="SCI",
                                       compression_type="RICE_1", quantize_level=64)
        fits.HDUList([hdul[0].copy(), compressed]).writeto(images[1], overwrite=True)
    return run_args(work, images)
