"""Moving a job's files between its prefix and a local folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpu_container.s3sync import (
    TransferStoppedError,
    UnsafeKeyError,
    content_type,
    download_key,
    download_prefix,
    relative_name,
    upload_folder,
)

from .conftest import keys_under

PREFIX = "jobs/0f8fad5b-d9cb-469f-a165-70867728950e/work/hull/"


def test_download_mirrors_the_prefix_and_nothing_beside_it(s3, bucket: str, tmp_path: Path) -> None:
    for key, body in {
        PREFIX + "hull.npz": b"grid",
        PREFIX + "sub/deep.json": b"{}",
        PREFIX.rstrip("/") + "x/other.npz": b"neighbour",  # shares the prefix without its slash
    }.items():
        s3.put_object(Bucket=bucket, Key=key, Body=body)

    written = download_prefix(s3, bucket, PREFIX, tmp_path / "work" / "hull")

    assert sorted(path.relative_to(tmp_path).as_posix() for path in written) == [
        "work/hull/hull.npz",
        "work/hull/sub/deep.json",
    ]
    assert (tmp_path / "work/hull/sub/deep.json").read_bytes() == b"{}"


def test_a_key_climbing_out_of_the_prefix_is_refused(s3, bucket: str, tmp_path: Path) -> None:
    s3.put_object(Bucket=bucket, Key=PREFIX + "../../../../escape.txt", Body=b"x")

    with pytest.raises(UnsafeKeyError):
        download_prefix(s3, bucket, PREFIX, tmp_path / "job")
    assert not any(tmp_path.rglob("escape.txt"))


@pytest.mark.parametrize("rest", ["", "a//b", "./a", "/abs", "a\\b"])
def test_names_that_are_not_plain_relative_paths_are_refused(rest: str) -> None:
    with pytest.raises(UnsafeKeyError):
        relative_name(PREFIX + rest, PREFIX)


def test_download_key_reports_a_missing_object(s3, bucket: str, tmp_path: Path) -> None:
    s3.put_object(Bucket=bucket, Key=PREFIX + "stage.json.bak", Body=b"x")

    assert download_key(s3, bucket, PREFIX + "stage.json", tmp_path / "stage.json") is False
    assert not (tmp_path / "stage.json").exists()


def test_upload_sends_every_file_with_its_content_type(s3, bucket: str, tmp_path: Path) -> None:
    (tmp_path / "tex").mkdir()
    (tmp_path / "model.glb").write_bytes(b"glTF")
    (tmp_path / "tex" / "model.png").write_bytes(b"png")

    sent = upload_folder(s3, bucket, tmp_path, lambda name: PREFIX + name)

    assert sent == {"model.glb": PREFIX + "model.glb", "tex/model.png": PREFIX + "tex/model.png"}
    head = s3.head_object(Bucket=bucket, Key=PREFIX + "model.glb")
    assert head["ContentType"] == content_type("model.glb") == "model/gltf-binary"


def test_upload_stops_between_files_when_asked(s3, bucket: str, tmp_path: Path) -> None:
    for name in ("a.bin", "b.bin", "c.bin"):
        (tmp_path / name).write_bytes(b"x")
    answers = iter([False, True])

    with pytest.raises(TransferStoppedError):
        upload_folder(s3, bucket, tmp_path, lambda name: PREFIX + name, should_stop=lambda: next(answers))

    assert keys_under(s3, bucket, PREFIX) == [PREFIX + "a.bin"]
