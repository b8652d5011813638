"""A fitted predictor as a Hub dataset repo: ``predictor.json``, ``model.safetensors`` and a card.

A push replaces those three files in one commit and deletes nothing; a repo that holds a matrix is
refused. A lost response is checked for having landed before any retry, as for matrices.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ..format.predictor import CONFIG_FILE, PREDICTOR_FILES, PREDICTOR_KIND
from .reader import DownloadLimits, RepoReader
from .transport import hf_api, push_checked

if TYPE_CHECKING:
    from huggingface_hub import CommitInfo

CARD_FILE = "README.md"


def push_predictor_folder(
    folder: Path,
    repo_id: str,
    card: str,
    *,
    token: str | None = None,
    private: bool | None = None,
    branch: str | None = None,
    commit_message: str = "Upload predictor",
) -> CommitInfo:
    """Upload the predictor files of ``folder`` and ``card`` to a dataset repo in one commit."""
    from huggingface_hub import CommitOperationAdd

    api = hf_api(token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="hf-forgetting-card-") as tmp:
        card_path = Path(tmp) / CARD_FILE
        card_path.write_text(card)
        uploaded = {name: folder / name for name in PREDICTOR_FILES} | {CARD_FILE: card_path}

        def prepare():
            reader = RepoReader(repo_id, branch, token)
            if reader.kind() is not None:
                reader.require_kind(PREDICTOR_KIND)
            operations = [CommitOperationAdd(path, str(local)) for path, local in uploaded.items()]
            return reader.commit, (operations, commit_message, uploaded)

        return push_checked(api, repo_id, branch, prepare)


def download_predictor(
    repo_id: str, revision: str | None = None, token: str | None = None, limits: DownloadLimits | None = None
) -> Path:
    """A local folder with the predictor files of a repo, each checked before and after download."""
    reader = RepoReader(repo_id, revision, token, limits)
    reader.require_kind(PREDICTOR_KIND)
    folder = None
    for name in PREDICTOR_FILES:
        max_bytes = reader.limits.max_json_bytes * 64 if name == CONFIG_FILE else None
        local = reader.download(name, max_bytes=max_bytes)
        if folder is not None and local.parent != folder:
            raise reader.error(name, "downloaded outside the snapshot folder")
        folder = local.parent
    return folder


def repo_kind(repo_id: str, revision: str | None = None, token: str | None = None) -> str | None:
    """What a repo holds: ``forgetting_matrix``, ``forgetting_predictor``, or None."""
    return RepoReader(repo_id, revision, token).kind()
