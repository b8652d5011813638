"""The Hub client and safe commits.

huggingface_hub is imported lazily: ``HF_ENDPOINT`` is read when it is first imported.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import HubRepoError
from ..files import sha256_of

if TYPE_CHECKING:
    from huggingface_hub import CommitInfo, HfApi

logger = logging.getLogger(__name__)

PUSH_ATTEMPTS = 4


class HubPushError(HubRepoError):
    """A push could not be made (no write access, or the repo kept changing or failing)."""


def hf_api(token: str | None = None) -> HfApi:
    from huggingface_hub import HfApi

    return HfApi(token=token)


def whoami(api: HfApi) -> str:
    """The name of the account the token belongs to."""
    try:
        return api.whoami()["name"]
    except Exception as error:  # noqa: BLE001 - any failure means: not logged in
        raise HubPushError(f"Pushing needs a Hub token with write access (HF_TOKEN or `hf auth login`): {error}") from None


def transport_errors() -> tuple[type[Exception], ...]:
    """Connection-level errors of the HTTP client huggingface_hub uses (httpx2 from 2.x, httpx in 1.x)."""
    errors: list[type[Exception]] = [ConnectionError, TimeoutError]
    for name in ("httpx2", "httpx"):
        try:
            errors.append(importlib.import_module(name).TransportError)
        except (ImportError, AttributeError):
            pass
    return tuple(errors)


def _status(error: Exception) -> int | None:
    from huggingface_hub.errors import HfHubHTTPError

    response = getattr(error, "response", None) if isinstance(error, HfHubHTTPError) else None
    return None if response is None else response.status_code


def is_transient(error: Exception) -> bool:
    """Errors after which the state of the repo is unknown and the push may be checked and retried."""
    return isinstance(error, transport_errors()) or _status(error) in (408, 429, 500, 502, 503, 504)


def is_conflict(error: Exception) -> bool:
    """The branch moved since we read it (``parent_commit`` no longer its head)."""
    return _status(error) in (409, 412)


# A push attempt: given the branch head, the operations to commit, their title, and the local files
# they upload ({path in repo: local path}); None when there is nothing to push.
Prepared = tuple[list, str, Mapping[str, Path]]


def push_checked(
    api: HfApi, repo_id: str, branch: str | None, prepare: Callable[[], tuple[str, Prepared | None]]
) -> CommitInfo | None:
    """Commit what ``prepare()`` returns against the head it read, retrying safely.

    ``prepare`` reads the repo and returns ``(head, prepared)``. On a conflict (the branch moved) the
    repo is read again; after a transient failure the commit is looked for before retrying, so a lost
    response never lands twice. Returns the commit, or None when there was nothing to push.
    """
    for attempt in range(1, PUSH_ATTEMPTS + 1):
        head, prepared = prepare()
        if prepared is None:
            return None
        operations, message, uploaded = prepared
        outcome = _commit_once(api, repo_id, operations, message, head=head, branch=branch, uploaded=uploaded)
        if outcome is not None:
            return outcome
        logger.warning("Push to %s did not land (attempt %d of %d); checking the repo again", repo_id, attempt, PUSH_ATTEMPTS)
    raise HubPushError(f"{repo_id}: could not push after {PUSH_ATTEMPTS} attempts; the repo keeps changing or failing")


def _commit_once(api, repo_id, operations, message, *, head, branch, uploaded) -> CommitInfo | None:
    """One commit against ``head``: the commit; None if the branch moved (the caller re-reads);
    after a transient failure, the commit if it landed after all."""
    try:
        return api.create_commit(
            repo_id, operations, commit_message=message, repo_type="dataset", revision=branch, parent_commit=head
        )
    except Exception as error:
        if is_conflict(error):
            return None
        if not is_transient(error):
            raise
        logger.warning("Push to %s failed (%s); checking whether it landed", repo_id, error)
    return find_landed_commit(api, repo_id, branch, head, uploaded)


def find_landed_commit(api, repo_id: str, branch: str | None, parent: str, uploaded: Mapping[str, Path]):
    """The commit right after ``parent`` on ``branch``, if it holds exactly the files we uploaded."""
    from huggingface_hub import CommitInfo

    for _ in range(PUSH_ATTEMPTS):
        try:
            commits = api.list_repo_commits(repo_id, repo_type="dataset", revision=branch)
            break
        except Exception as error:
            if not is_transient(error):
                raise
            time.sleep(1)
    else:
        return None
    ids = [commit.commit_id for commit in commits]
    if parent not in ids or ids.index(parent) == 0:
        return None
    child = ids[ids.index(parent) - 1]
    remote = {info.path: info for info in api.get_paths_info(repo_id, list(uploaded), repo_type="dataset", revision=child)}
    if any(path not in remote or not _same_content(remote[path], local) for path, local in uploaded.items()):
        return None
    title = commits[ids.index(child)].title
    url = f"{api.endpoint}/datasets/{repo_id}/commit/{child}"
    return CommitInfo(commit_url=url, commit_message=title, commit_description="", oid=child)


def _same_content(remote, local: Path) -> bool:
    """A listed repo file holds the bytes of ``local`` (LFS sha256, or the git blob id of a regular file)."""
    lfs = getattr(remote, "lfs", None)
    if lfs is not None:
        return lfs.sha256 == sha256_of(local)
    data = local.read_bytes()
    return remote.blob_id == hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
