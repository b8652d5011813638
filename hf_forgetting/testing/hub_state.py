"""The in-memory state of the test Hub (`hub_server.py`): repos, commits, blobs, users and injected faults, and
the listings the API returns. A commit moves a branch pointer under one lock."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field

REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
LFS_SUFFIXES = (".parquet", ".safetensors", ".arrow", ".png", ".jpg", ".gz", ".zip", ".bin", ".pt", ".pkl", ".npy")
REGULAR_FILE_LIMIT = 10 * 1024 * 1024
GITATTRIBUTES = "".join(f"*{suffix} filter=lfs diff=lfs merge=lfs -text\n" for suffix in LFS_SUFFIXES)


def git_blob_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


@dataclass(frozen=True)
class StoredFile:
    sha256: str
    size: int
    lfs: bool
    git_oid: str = ""  # git blob id of the content (regular files)

    @property
    def oid(self) -> str:
        """The git blob id: of the content for regular files, of the LFS pointer for LFS files."""
        return git_blob_oid(lfs_pointer(self.sha256, self.size)) if self.lfs else self.git_oid


@dataclass
class Commit:
    id: str
    parents: list[str]
    title: str
    message: str
    author: str
    date: str
    files: dict[str, StoredFile]


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    author: str
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)


@dataclass
class Fault:
    """Answer the next ``times`` requests matching ``method`` and ``path_regex`` badly.

    ``kind``: ``"status"`` answers ``status`` without doing anything; ``"drop"`` closes the connection
    without answering and without doing anything; ``"drop_after"`` does the work, then closes the
    connection without answering (a lost response)."""

    method: str
    path_regex: str
    kind: str = "status"
    status: int = 500
    times: int = 1
    hits: int = 0


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class HubState:
    """Repos, blobs and users; every method that changes state holds ``lock``."""

    def __init__(self, tokens: dict[str, str]):
        self.tokens = dict(tokens)
        self.repos: dict[tuple[str, str], Repo] = {}
        self.blobs: dict[str, bytes] = {}
        self.lock = threading.RLock()
        self._counter = 0

    # -- repos ----------------------------------------------------------------------------------

    def repo(self, repo_type: str, repo_id: str, user: str | None) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and user is None):
            raise HubError(404, f"Repository {repo_id} not found", "RepoNotFound")
        return repo

    def create_repo(self, repo_type: str, repo_id: str, private: bool, user: str) -> Repo:
        with self.lock:
            if (repo_type, repo_id) in self.repos:
                raise HubError(409, f"You already created this {repo_type} repo")
            repo = Repo(repo_type, repo_id, private, user)
            self.repos[(repo_type, repo_id)] = repo
            gitattributes = GITATTRIBUTES.encode()
            self._commit(repo, "main", None, title="initial commit", message="", user=user,
                         files={".gitattributes": self._store(gitattributes, lfs=False)})
            return repo

    def resolve(self, repo: Repo, revision: str) -> Commit:
        commit_id = repo.branches.get(revision) or repo.tags.get(revision)
        if commit_id is None and revision in repo.commits:
            commit_id = revision
        if commit_id is None:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return repo.commits[commit_id]

    # -- blobs and commits ----------------------------------------------------------------------

    def _store(self, data: bytes, lfs: bool) -> StoredFile:
        sha256 = hashlib.sha256(data).hexdigest()
        self.blobs.setdefault(sha256, data)
        return StoredFile(sha256=sha256, size=len(data), lfs=lfs, git_oid=git_blob_oid(data))

    def store_lfs_object(self, oid: str, data: bytes) -> None:
        if hashlib.sha256(data).hexdigest() != oid:
            raise HubError(400, f"Uploaded content does not match oid {oid}")
        with self.lock:
            self.blobs.setdefault(oid, data)

    def _commit(self, repo, branch, parent_id, *, title, message, user, files) -> Commit:
        self._counter += 1
        digest = hashlib.sha1(json.dumps([repo.repo_id, parent_id, title, self._counter, sorted(files)]).encode())
        commit = Commit(
            id=digest.hexdigest(),
            parents=[parent_id] if parent_id else [],
            title=title,
            message=message,
            author=user,
            date=time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
            files=files,
        )
        repo.commits[commit.id] = commit
        repo.branches[branch] = commit.id
        return commit

    def put_file(self, repo_type: str, repo_id: str, path: str, data: bytes, *, lfs: bool, user: str) -> Commit:
        """Commit one file directly on main, creating the repo if needed."""
        with self.lock:
            if (repo_type, repo_id) not in self.repos:
                self.create_repo(repo_type, repo_id, False, user)
            repo = self.repos[(repo_type, repo_id)]
            head = repo.commits[repo.branches["main"]]
            files = {**head.files, path: self._store(data, lfs=lfs)}
            return self._commit(repo, "main", head.id, title=f"Upload {path}", message="", user=user, files=files)

    def apply_commit(self, repo: Repo, branch: str, lines: list[dict], user: str) -> Commit:
        """Apply an NDJSON commit payload atomically: all of it, or (on any error) none of it."""
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "The commit payload must start with a header line")
        header = lines[0]["value"]
        with self.lock:
            if branch not in repo.branches:
                raise HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
            head = repo.commits[repo.branches[branch]]
            parent = header.get("parentCommit")
            if parent and parent != head.id:
                raise HubError(412, f"A commit has happened since. Please refresh and try again. (parent {parent}, head {head.id})")
            files = dict(head.files)
            for line in lines[1:]:
                self._apply_operation(files, line.get("key"), line.get("value") or {})
            return self._commit(repo, branch, head.id, title=header.get("summary", ""), message=header.get("description", ""),
                                user=user, files=files)

    def _apply_operation(self, files: dict[str, StoredFile], key: str, value: dict) -> None:
        path = value.get("path", "")
        if not path or path.startswith("/") or ".." in path.split("/"):
            raise HubError(400, f"Invalid path {path!r}")
        if key == "file":
            if value.get("encoding") != "base64":
                raise HubError(400, "Only base64 file content is supported")
            files[path] = self._store(base64.b64decode(value["content"]), lfs=False)
        elif key == "lfsFile":
            oid = value.get("oid")
            if oid not in self.blobs or len(self.blobs[oid]) != value.get("size"):
                raise HubError(400, f"LFS object {oid} for {path} was not uploaded")
            files[path] = StoredFile(sha256=oid, size=value["size"], lfs=True)
        elif key == "deletedFile":
            if path not in files:
                raise HubError(404, f"File {path} not found", "EntryNotFound")
            del files[path]
        elif key == "deletedFolder":
            prefix = path.rstrip("/") + "/"
            for name in [name for name in files if name.startswith(prefix)]:
                del files[name]
        else:
            raise HubError(400, f"Unsupported commit operation {key!r}")


# -- listings --------------------------------------------------------------------------------------


def file_entry(path: str, stored: StoredFile) -> dict:
    entry = {"type": "file", "path": path, "size": stored.size, "oid": stored.oid}
    if stored.lfs:
        entry["lfs"] = {"oid": stored.sha256, "size": stored.size, "pointerSize": len(lfs_pointer(stored.sha256, stored.size))}
    return entry


def folder_entry(path: str, commit: Commit) -> dict:
    return {"type": "directory", "path": path, "size": 0, "oid": hashlib.sha1(f"{commit.id}:{path}".encode()).hexdigest()}


def tree_entries(commit: Commit, folder: str, recursive: bool) -> list[dict]:
    prefix = folder.strip("/") + "/" if folder.strip("/") else ""
    entries, folders = [], set()
    for path in sorted(commit.files):
        if not path.startswith(prefix):
            continue
        rest = path[len(prefix):].split("/")
        for depth in range(1, len(rest)):
            if recursive or depth == 1:
                folders.add(prefix + "/".join(rest[:depth]))
        if recursive or len(rest) == 1:
            entries.append(file_entry(path, commit.files[path]))
    return [folder_entry(path, commit) for path in sorted(folders)] + entries


def repo_info(repo: Repo, commit: Commit, blobs: bool) -> dict:
    siblings = []
    for path, stored in sorted(commit.files.items()):
        sibling = {"rfilename": path}
        if blobs:
            sibling.update(size=stored.size, blobId=stored.oid)
            if stored.lfs:
                sibling["lfs"] = file_entry(path, stored)["lfs"] | {"sha256": stored.sha256}
        siblings.append(sibling)
    return {
        "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
        "id": repo.repo_id,
        "author": repo.author,
        "sha": commit.id,
        "lastModified": commit.date,
        "createdAt": next(iter(repo.commits.values())).date,
        "private": repo.private,
        "gated": False,
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "tags": [],
        "siblings": siblings,
    }
