"""Model folders: registration with ComfyUI's ``folder_paths``, listing for dropdowns, and lookup with clear errors.

Folders live under ``ComfyUI/models/`` (``pixelflow``, ``mar``, ``arpg``, ``vq``, ``rewards``; Flan-T5 uses the
existing ``text_encoders``). Without ComfyUI the roots are the ``os.pathsep``-separated list in
``FLOWAR_MODELS_DIR``, then the ``models/`` folder of a ComfyUI install the pack sits in
(``ComfyUI/custom_nodes/<pack>/``). Models shipped with the pack are listed as ``builtin/<name>`` beside the
user's files and resolve into the pack's ``builtin/<folder>/``.
"""

from __future__ import annotations

import os
from pathlib import Path

from ...models.checkpoint import CHECKPOINT_SUFFIXES
from . import host

PACK_ROOT = Path(__file__).resolve().parents[2]
BUILTIN_ROOT = PACK_ROOT / "builtin"
BUILTIN_PREFIX = "builtin/"
MODEL_FOLDERS = ("pixelflow", "mar", "arpg", "vq", "rewards")
HF_CONFIG = "config.json"  # marks a Hugging Face model folder


class ModelFileNotFound(FileNotFoundError):
    """A model file or folder is missing; the message names it, every folder searched and where to get it."""


def register_model_folders() -> None:
    """Add the pack's folders to ComfyUI's ``folder_paths`` with a model-file extension filter.

    Paths added earlier (``extra_model_paths.yaml``) are kept; ``add_model_folder_path`` alone would leave the
    extension set empty, which lists every file.
    """
    if not host.AVAILABLE:
        return
    fp = host.folder_paths
    for folder in MODEL_FOLDERS:
        default = os.path.join(fp.models_dir, folder)
        paths = list(fp.folder_names_and_paths.get(folder, ([], set()))[0])
        if default not in paths:
            paths.append(default)
        fp.folder_names_and_paths[folder] = (paths, set(fp.supported_pt_extensions))


def search_paths(folder: str) -> list[Path]:
    """Every directory searched for ``folder``'s files, in order (existing or not, so errors can name them)."""
    if host.AVAILABLE:
        return [Path(p) for p in host.folder_paths.get_folder_paths(folder)]
    roots = [Path(p) for p in os.environ.get("FLOWAR_MODELS_DIR", "").split(os.pathsep) if p]
    roots.append(PACK_ROOT.parent.parent / "models")
    return [root / folder for root in roots]


def builtin_dir(folder: str) -> Path:
    """Where the pack's own models for ``folder`` live."""
    return BUILTIN_ROOT / folder


def _walk(root: Path) -> list[Path]:
    """Every file under ``root``, following linked folders as ComfyUI's own listing does (users link model
    folders kept on other drives)."""
    if not root.is_dir():
        return []
    return [Path(folder) / name for folder, _, names in os.walk(root, followlinks=True) for name in names]


def _files_under(root: Path) -> list[str]:
    return sorted(path.relative_to(root).as_posix() for path in _walk(root)
                  if path.suffix.lower() in CHECKPOINT_SUFFIXES)


def _config_dirs_under(root: Path) -> list[str]:
    return sorted(path.parent.relative_to(root).as_posix() for path in _walk(root)
                  if path.name == HF_CONFIG and path.parent != root)


def shipped_t5_tokenizer_dirs() -> list[Path]:
    """The T5 tokenizer ComfyUI ships (``comfy/text_encoders/t5_tokenizer``), when running inside ComfyUI."""
    if not host.AVAILABLE:
        return []
    return [Path(host.utils.__file__).resolve().parent / "text_encoders" / "t5_tokenizer"]


def list_files(folder: str) -> list[str]:
    """Model files for a dropdown: the user's (relative names), then the pack's as ``builtin/<name>``."""
    if host.AVAILABLE:
        user = list(host.folder_paths.get_filename_list(folder))
    else:
        user = sorted({name for root in search_paths(folder) for name in _files_under(root)})
    return user + [BUILTIN_PREFIX + name for name in _files_under(builtin_dir(folder))]


def list_model_dirs(folder: str) -> list[str]:
    """Hugging Face-style model folders (sub-folders holding ``config.json``), user's then built-in."""
    user = sorted({name for root in search_paths(folder) for name in _config_dirs_under(root)})
    return user + [BUILTIN_PREFIX + name for name in _config_dirs_under(builtin_dir(folder))]


def resolve(folder: str, name: str, *, where_to_get: str) -> Path:
    """The full path of the file or sub-folder ``name`` listed for ``folder``, or a :class:`ModelFileNotFound`."""
    if name.startswith(BUILTIN_PREFIX):
        candidates = [builtin_dir(folder) / name[len(BUILTIN_PREFIX):]]
    else:
        candidates = [root / name for root in search_paths(folder)]
    for candidate in candidates:
        if candidate.exists():
            return candidate
    searched = ", ".join(str(c.parent) for c in candidates) or "(no folder registered)"
    raise ModelFileNotFound(
        f"model {name!r} not found in models/{folder}; searched: {searched}; get it from {where_to_get}"
    )
