"""LoRA file names: subfolders allowed, nothing escapes the loras folder, nothing is silently overwritten."""

from pathlib import Path

import pytest

from erasure_core.errors import ConfigError
from erasure_core.frontend import lora_files as files


@pytest.mark.parametrize(
    "name, expected",
    [
        ("van_gogh", "van_gogh.safetensors"),
        ("erased/van gogh.safetensors", "erased/van gogh.safetensors"),
        ("erased\\nudity", "erased/nudity.safetensors"),
        ("./a//b", "a/b.safetensors"),
    ],
)
def test_safe_names(name, expected):
    assert files.safe_relative_name(name).as_posix() == expected


@pytest.mark.parametrize(
    "name, message",
    [
        ("", "empty"),
        ("../outside", "leave the loras folder"),
        ("a/../../x", "leave the loras folder"),
        ("/etc/passwd", "absolute"),
        ("C:/x", "absolute"),
        ("bad|name", "character"),
        ("con", "Windows"),
    ],
)
def test_unsafe_names_are_refused(name, message):
    with pytest.raises(ConfigError, match=message):
        files.safe_relative_name(name)


def test_existing_files_are_not_overwritten_unless_asked(tmp_path: Path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.safetensors").write_bytes(b"")
    with pytest.raises(ConfigError, match="already exists"):
        files.resolve_target(tmp_path, "sub/x")
    assert files.resolve_target(tmp_path, "sub/x", overwrite=True) == (tmp_path / "sub" / "x.safetensors").resolve()
    assert files.next_free_name(tmp_path, "sub/x") == "sub/x_2.safetensors"
    assert files.next_free_name(tmp_path, "sub/y") == "sub/y.safetensors"


def test_symlinked_subfolder_cannot_escape(tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "loras"
    root.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ConfigError, match="outside"):
        files.resolve_target(root, "link/x")
