"""Folders: ComfyUI's per-prefix output counter, subfolders from prefixes, annotated names, combo listings."""

from __future__ import annotations

from pathlib import Path

import pytest

from comfyui_api.simulator.paths import Folders


def make_folders(root: Path) -> Folders:
    folders = Folders.create(root, root / "input", root / "output", root / "temp", root / "user", root / "models")
    folders.make_dirs()
    return folders


@pytest.mark.parametrize(
    ("existing", "prefix", "counter"),
    [
        ([], "cap", 1),
        (["cap_00001_.png", "cap_00003_.webp"], "cap", 4),  # the counter is per prefix, shared by every format
        (["capx_00005_.png", "cap2_00007_.png"], "cap", 1),  # ...and only for exactly this prefix
        (["cap_x_00009_.png"], "cap", 1),  # a matching stem without a number counts as 0
        (["cap_00002_.png", "cap_y.png"], "cap", 3),
        (["CAP_00002_.png"], "cap", 1),  # normcase is a no-op on POSIX
    ],
)
def test_counter_continues_after_the_highest_existing_file(
    tmp_path: Path, existing: list[str], prefix: str, counter: int
) -> None:
    folders = make_folders(tmp_path)
    for name in existing:
        (folders.output_dir / name).write_bytes(b"")
    assert folders.save_path(prefix, folders.output_dir).counter == counter


def test_prefix_directory_becomes_the_subfolder_and_is_created(tmp_path: Path) -> None:
    folders = make_folders(tmp_path)
    where = folders.save_path("viewsub/deeper/cap_view", folders.output_dir)
    assert (where.subfolder, where.filename, where.counter) == ("viewsub/deeper", "cap_view", 1)
    assert where.folder.is_dir() and where.folder == folders.output_dir / "viewsub" / "deeper"


def test_prefix_may_not_leave_the_output_folder(tmp_path: Path) -> None:
    folders = make_folders(tmp_path)
    with pytest.raises(Exception, match="Saving image outside the output folder is not allowed"):
        folders.save_path("../escape", folders.output_dir)


def test_size_variables_expand(tmp_path: Path) -> None:
    folders = make_folders(tmp_path)
    assert folders.save_path("img_%width%x%height%", folders.output_dir, 64, 48).filename == "img_64x48"


@pytest.mark.parametrize(
    ("name", "expected_name", "expected_dir"),
    [
        ("a.png", "a.png", None),
        ("a.png [output]", "a.png", "output"),
        ("a.png [input]", "a.png", "input"),
        ("a.png [temp]", "a.png", "temp"),
        ("a.png [bogus]", "a.png [bogus]", None),
    ],
)
def test_annotated_names(tmp_path: Path, name: str, expected_name: str, expected_dir: str | None) -> None:
    folders = make_folders(tmp_path)
    stripped, directory = folders.annotated(name)
    assert stripped == expected_name
    assert directory == (None if expected_dir is None else folders.directory_by_type(expected_dir))


def test_image_combo_lists_top_level_images_only(tmp_path: Path) -> None:
    folders = make_folders(tmp_path)
    for name in ("b.png", "a.jpg", "c.webp", "tone.wav", "noext", "notes.txt"):
        (folders.input_dir / name).write_bytes(b"x")
    (folders.input_dir / "sub").mkdir()
    (folders.input_dir / "sub" / "d.png").write_bytes(b"x")
    assert folders.input_files(content_types=("image",)) == ["a.jpg", "b.png", "c.webp"]
    assert folders.input_files(content_types=("audio", "video")) == ["tone.wav"]
    assert folders.input_files() == ["a.jpg", "b.png", "c.webp", "noext", "notes.txt", "tone.wav"]


def test_model_files_are_found_recursively_with_known_extensions(tmp_path: Path) -> None:
    folders = make_folders(tmp_path)
    checkpoints = folders.models_dir / "checkpoints"
    (checkpoints / "sd").mkdir()
    for name in ("a.safetensors", "sd/b.ckpt", "readme.txt"):
        (checkpoints / name).write_bytes(b"x")
    (folders.output_dir / "checkpoints").mkdir()
    (folders.output_dir / "checkpoints" / "saved.safetensors").write_bytes(b"x")
    assert folders.model_files("checkpoints") == ["a.safetensors", "saved.safetensors", "sd/b.ckpt"]
    assert folders.model_path("checkpoints", "sd/b.ckpt") == checkpoints / "sd" / "b.ckpt"
    assert folders.model_path("checkpoints", "../../etc/passwd") is None
    assert folders.model_path("no-such-folder", "a.safetensors") is None
