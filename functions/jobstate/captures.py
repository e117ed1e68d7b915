"""The capture formats a job takes (DESIGN.md, "The capture") and how a file is told to be one.

A job's capture is one object, ``jobs/{job_id}/input/capture.<format>``: a zip (lab, posed or photo
capture) or a video (MP4 / MOV). The API signs the upload for the format the caller names, the CLI
and the console name it from the file's first bytes, and the validate stage tells the form apart by
content again. Pure Python: the CLI, the Lambda functions and the engine all import it.
"""

from __future__ import annotations

from pathlib import Path

ZIP = "zip"
MP4 = "mp4"
MOV = "mov"
CAPTURE_FORMATS = (ZIP, MP4, MOV)
DEFAULT_CAPTURE_FORMAT = ZIP
VIDEO_FORMATS = (MP4, MOV)
CAPTURE_STEM = "capture"
CONTENT_TYPES = {ZIP: "application/zip", MP4: "video/mp4", MOV: "video/quicktime"}

ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header, or the end record of an empty zip
# ISO-BMFF (MP4 / MOV) files start with a box whose type sits at byte 4.
ISO_BMFF_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot")
QUICKTIME_BRAND = b"qt  "  # the major brand of a QuickTime (.mov) file's ftyp box
SNIFF_BYTES = 12


def capture_name(capture_format: str) -> str:
    """The object name of a capture in the job's ``input/`` area, e.g. ``capture.mp4``."""
    if capture_format not in CAPTURE_FORMATS:
        raise ValueError(f"capture format must be one of {', '.join(CAPTURE_FORMATS)}")
    return f"{CAPTURE_STEM}.{capture_format}"


def format_of_head(head: bytes) -> str | None:
    """``zip``, ``mp4`` or ``mov`` from a file's first ``SNIFF_BYTES`` bytes; None for anything else."""
    if head[:4] in ZIP_MAGIC:
        return ZIP
    if len(head) >= 8 and head[4:8] in ISO_BMFF_BOXES:
        return MOV if head[4:8] != b"ftyp" or head[8:12] == QUICKTIME_BRAND else MP4
    return None


def format_of_file(path: Path) -> str | None:
    """The capture format of the file at ``path`` by its content (see ``format_of_head``)."""
    with open(path, "rb") as handle:
        return format_of_head(handle.read(SNIFF_BYTES))
