"""A Hub-compatible HTTP server on 127.0.0.1, for tests and offline walkthroughs.

It speaks the part of the Hugging Face Hub protocol that ``huggingface_hub`` and ``datasets`` use
for model and dataset repos, so that the library code under test is exactly the code that runs
against huggingface.co: repo creation, ``preupload``, the Git LFS batch API with basic transfers,
NDJSON commits (with the ``parentCommit`` check), repo info, ``tree`` and ``paths-info`` listings,
refs, commit history, tags and ``resolve`` downloads with ``Range`` requests. Xet storage is not
spoken: clients must run with ``HF_HUB_DISABLE_XET=1`` (they then fall back to LFS, as they do for
any Hub without Xet).

Everything is held in memory; a commit is applied under one lock by moving a branch pointer, so a
reader sees the repo before or after a commit, never half of one. ``HubServer.faults`` injects
server errors and dropped connections for failure tests.

Run it by hand for the README walkthrough::

    python -m hf_forgetting.testing.hub_server --port 8765 --token hf_alice:alice
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

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
            self._commit(repo, "main", None, "initial commit", "", user, {".gitattributes": self._store(gitattributes, lfs=False)})
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

    def _commit(self, repo, branch, parent_id, title, message, user, files) -> Commit:
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
            return self._commit(repo, branch, head.id, header.get("summary", ""), header.get("description", ""), user, files)

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


# -- HTTP ------------------------------------------------------------------------------------------

REPO = r"(?P<repo>[\w.-]+/[\w.-]+)"
REV = r"(?P<rev>[^/]+)"
TYPES = r"(?P<types>models|datasets|spaces)"
PREFIX = r"(?P<prefix>datasets/|spaces/)?"


class HubRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: HubHTTPServer

    routes = [
        ("GET", r"/api/whoami-v2", "whoami"),
        ("POST", r"/api/repos/create", "create_repo"),
        ("POST", r"/api/repos/delete", "delete_repo"),
        ("POST", r"/api/validate-yaml", "validate_yaml"),
        ("GET", rf"/api/{TYPES}/{REPO}(?:/revision/{REV})?", "info"),
        ("GET", rf"/api/{TYPES}/{REPO}/tree/{REV}(?P<path>/.*)?", "tree"),
        ("POST", rf"/api/{TYPES}/{REPO}/paths-info/{REV}", "paths_info"),
        ("POST", rf"/api/{TYPES}/{REPO}/preupload/{REV}", "preupload"),
        ("POST", rf"/api/{TYPES}/{REPO}/commit/{REV}", "commit"),
        ("GET", rf"/api/{TYPES}/{REPO}/refs", "refs"),
        ("GET", rf"/api/{TYPES}/{REPO}/commits/{REV}", "commits"),
        ("POST", rf"/api/{TYPES}/{REPO}/tag/{REV}", "tag"),
        ("POST", rf"/{PREFIX}{REPO}\.git/info/lfs/objects/batch", "lfs_batch"),
        ("PUT", r"/lfs-objects/(?P<oid>[0-9a-f]{64})", "lfs_upload"),
        ("POST", r"/lfs-verify", "lfs_verify"),
        ("GET", rf"/{PREFIX}{REPO}/resolve/{REV}/(?P<path>.+)", "resolve"),
        ("HEAD", rf"/{PREFIX}{REPO}/resolve/{REV}/(?P<path>.+)", "resolve"),
    ]

    def log_message(self, format, *args):  # noqa: A002 - BaseHTTPRequestHandler's signature
        if self.server.verbose:
            super().log_message(format, *args)

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    # -- plumbing -------------------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        self.method = method
        self.query = parse_qs(url.query)
        self.body = self._read_body()
        self.server.requests.append((method, url.path))
        name, match = self._route(method, url.path)
        if match is None:
            return self._send_error(HubError(404, f"No route for {method} {url.path}"))
        fault = self.server.take_fault(method, url.path)
        if fault is not None and fault.kind == "status":
            return self._send_error(HubError(fault.status, f"Injected fault {fault.status}"))
        if fault is not None and fault.kind == "drop":
            return self._drop()
        params = {key: unquote(value) for key, value in match.groupdict().items() if value is not None}
        if "types" in params:
            params["repo_type"] = REPO_TYPES[params.pop("types")]
        if "prefix" in match.groupdict():
            params["repo_type"] = {"datasets/": "dataset", "spaces/": "space"}.get(params.pop("prefix", ""), "model")
        try:
            status, headers, body = getattr(self, f"handle_{name}")(**params)
        except HubError as error:
            return self._send_error(error)
        if fault is not None and fault.kind == "drop_after":
            return self._drop()
        self._send(status, headers, body)

    def _route(self, method: str, path: str) -> tuple[str | None, re.Match | None]:
        for route_method, pattern, name in self.routes:
            match = re.fullmatch(pattern, path) if route_method == method else None
            if match:
                return name, match
        return None, None

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            return self.rfile.read(length)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().strip(), 16)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
                if size == 0:
                    return b"".join(chunks)
        return b""

    def _drop(self) -> None:
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _send(self, status: int, headers: dict, body: bytes) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.method != "HEAD":
            self.wfile.write(body)

    def _json(self, payload, status: int = 200, headers: dict | None = None):
        return status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(payload).encode()

    def _send_error(self, error: HubError) -> None:
        headers = {"Content-Type": "application/json", "X-Error-Message": error.message}
        if error.code:
            headers["X-Error-Code"] = error.code
        self._send(error.status, headers, json.dumps({"error": error.message}).encode())

    @property
    def state(self) -> HubState:
        return self.server.state

    def _user(self, required: bool = False) -> str | None:
        auth = self.headers.get("Authorization", "")
        token = auth[len("Bearer "):] if auth.startswith("Bearer ") else None
        user = self.state.tokens.get(token) if token else None
        if token and user is None:
            raise HubError(401, "Invalid credentials in Authorization header")
        if required and user is None:
            raise HubError(401, "You must be authenticated to do this")
        return user

    def _body_json(self) -> dict:
        try:
            return json.loads(self.body or b"{}")
        except json.JSONDecodeError as error:
            raise HubError(400, f"Invalid JSON body: {error}") from None

    def _writable_repo(self, repo_type: str, repo: str) -> tuple[Repo, str]:
        user = self._user(required=True)
        return self.state.repo(repo_type, repo, user), user

    # -- handlers -------------------------------------------------------------------------------

    def handle_whoami(self):
        user = self._user(required=True)
        return self._json({"type": "user", "name": user, "fullname": user, "orgs": [], "auth": {"type": "access_token", "accessToken": {"role": "write"}}})

    def handle_create_repo(self):
        user = self._user(required=True)
        body = self._body_json()
        name = body.get("name", "")
        repo_id = f"{body.get('organization') or user}/{name}"
        repo_type = body.get("type") or "model"
        if not re.fullmatch(r"[\w.-]+", name) or repo_type not in URL_PREFIXES:
            raise HubError(400, f"Invalid repo name or type: {name!r}, {repo_type!r}")
        url = f"{self.server.url}/{URL_PREFIXES[repo_type]}{repo_id}"
        try:
            self.state.create_repo(repo_type, repo_id, bool(body.get("private")), user)
        except HubError as error:
            if error.status == 409:
                return self._json({"error": error.message, "url": url}, status=409)
            raise
        return self._json({"url": url, "name": repo_id})

    def handle_delete_repo(self):
        user = self._user(required=True)
        body = self._body_json()
        repo_id = f"{body.get('organization') or user}/{body.get('name')}"
        with self.state.lock:
            if self.state.repos.pop((body.get("type") or "model", repo_id), None) is None:
                raise HubError(404, f"Repository {repo_id} not found", "RepoNotFound")
        return self._json({})

    def handle_validate_yaml(self):
        import yaml

        content = self._body_json().get("content", "")
        match = re.match(r"^---\n(.*?)\n---\n", content, re.DOTALL)
        try:
            metadata = yaml.safe_load(match.group(1)) if match else {}
        except yaml.YAMLError as error:
            return self._json({"errors": [{"message": f"Invalid YAML: {error}"}]}, status=400)
        if not isinstance(metadata, dict):
            return self._json({"errors": [{"message": "The YAML metadata must be a mapping"}]}, status=400)
        warnings = [] if metadata else [{"message": "Empty or missing yaml metadata in repo card"}]
        return self._json({"errors": [], "warnings": warnings})

    def handle_info(self, repo_type, repo, rev="main"):
        found = self.state.repo(repo_type, repo, self._user())
        commit = self.state.resolve(found, rev)
        return self._json(repo_info(found, commit, blobs="blobs" in self.query))

    def handle_tree(self, repo_type, repo, rev, path=""):
        found = self.state.repo(repo_type, repo, self._user())
        commit = self.state.resolve(found, rev)
        folder = path.strip("/")
        if folder and folder in commit.files:
            raise HubError(400, f"{folder} is a file, not a folder")
        entries = tree_entries(commit, folder, recursive=self.query.get("recursive", ["false"])[0].lower() in ("1", "true"))
        if folder and not entries:
            raise HubError(404, f"Folder {folder} not found", "EntryNotFound")
        return self._json(entries)

    def handle_paths_info(self, repo_type, repo, rev):
        found = self.state.repo(repo_type, repo, self._user())
        commit = self.state.resolve(found, rev)
        form = parse_qs(self.body.decode()) if self.body else {}
        if self.headers.get("Content-Type", "").startswith("application/json"):
            form = {"paths": self._body_json().get("paths", [])}
        entries = []
        for path in form.get("paths", []):
            path = path.strip("/")
            if path in commit.files:
                entries.append(file_entry(path, commit.files[path]))
            elif any(name.startswith(path + "/") for name in commit.files):
                entries.append(folder_entry(path, commit))
        return self._json(entries)

    def handle_preupload(self, repo_type, repo, rev):
        found, _ = self._writable_repo(repo_type, repo)
        head = self.state.resolve(found, rev)
        answers = []
        for item in self._body_json().get("files", []):
            path, size = item["path"], int(item["size"])
            sample = base64.b64decode(item.get("sample", ""))
            binary = b"\0" in sample or path.endswith(LFS_SUFFIXES)
            mode = "lfs" if size > 0 and (binary or size > REGULAR_FILE_LIMIT) else "regular"
            existing = head.files.get(path)
            oid = None if existing is None else (existing.sha256 if existing.lfs else existing.oid)
            answers.append({"path": path, "uploadMode": mode, "shouldIgnore": False, "oid": oid})
        return self._json({"files": answers, "commitOid": head.id})

    def handle_commit(self, repo_type, repo, rev):
        found, user = self._writable_repo(repo_type, repo)
        try:
            lines = [json.loads(line) for line in self.body.splitlines() if line.strip()]
        except json.JSONDecodeError as error:
            raise HubError(400, f"Invalid NDJSON commit payload: {error}") from None
        commit = self.state.apply_commit(found, rev, lines, user)
        url = f"{self.server.url}/{URL_PREFIXES[repo_type]}{repo}/commit/{commit.id}"
        return self._json({"commitUrl": url, "commitOid": commit.id, "pullRequestUrl": None, "success": True})

    def handle_refs(self, repo_type, repo):
        found = self.state.repo(repo_type, repo, self._user())
        branches = [{"name": name, "ref": f"refs/heads/{name}", "targetCommit": oid} for name, oid in found.branches.items()]
        tags = [{"name": name, "ref": f"refs/tags/{name}", "targetCommit": oid} for name, oid in found.tags.items()]
        return self._json({"branches": branches, "tags": tags, "converts": []})

    def handle_commits(self, repo_type, repo, rev):
        found = self.state.repo(repo_type, repo, self._user())
        commit, history = self.state.resolve(found, rev), []
        while commit is not None:
            history.append(
                {"id": commit.id, "title": commit.title, "message": commit.message, "authors": [{"user": commit.author}], "date": commit.date}
            )
            commit = found.commits[commit.parents[0]] if commit.parents else None
        return self._json(history)

    def handle_tag(self, repo_type, repo, rev):
        found, _ = self._writable_repo(repo_type, repo)
        tag = self._body_json().get("tag")
        with self.state.lock:
            if not tag or tag in found.tags:
                raise HubError(409, f"Tag {tag!r} is invalid or already exists")
            found.tags[tag] = self.state.resolve(found, rev).id
        return self._json({})

    def handle_lfs_batch(self, repo_type, repo):
        found, _ = self._writable_repo(repo_type, repo)
        objects = []
        for item in self._body_json().get("objects", []):
            oid, size = item["oid"], int(item["size"])
            answer = {"oid": oid, "size": size, "authenticated": True}
            if self.state.blobs.get(oid) is None:
                answer["actions"] = {
                    "upload": {"href": f"{self.server.url}/lfs-objects/{oid}", "header": {}},
                    "verify": {"href": f"{self.server.url}/lfs-verify", "header": {}},
                }
            objects.append(answer)
        return 200, {"Content-Type": "application/vnd.git-lfs+json"}, json.dumps({"transfer": "basic", "objects": objects}).encode()

    def handle_lfs_upload(self, oid):
        self.state.store_lfs_object(oid, self.body)
        return 200, {}, b""

    def handle_lfs_verify(self):
        body = self._body_json()
        stored = self.state.blobs.get(body.get("oid"))
        if stored is None or len(stored) != body.get("size"):
            raise HubError(404, f"LFS object {body.get('oid')} not found")
        return self._json({"success": True})

    def handle_resolve(self, repo_type, repo, rev, path):
        found = self.state.repo(repo_type, repo, self._user())
        commit = self.state.resolve(found, rev)
        stored = commit.files.get(path)
        if stored is None:
            raise HubError(404, f"Entry {path} not found", "EntryNotFound")
        data = self.state.blobs[stored.sha256]
        etag = stored.sha256 if stored.lfs else stored.oid
        headers = {
            "Content-Type": "application/octet-stream",
            "ETag": f'"{etag}"',
            "X-Repo-Commit": commit.id,
            "Accept-Ranges": "bytes",
        }
        if stored.lfs:
            headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(stored.size)})
        start, end, status = _byte_range(self.headers.get("Range"), len(data))
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end - 1}/{len(data)}"
        return status, headers, data[start:end]


def _byte_range(header: str | None, size: int) -> tuple[int, int, int]:
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", header or "")
    if not match:
        return 0, size, 200
    first, last = match.groups()
    if first == "":
        start, end = max(size - int(last), 0), size
    else:
        start, end = int(first), min(int(last) + 1, size) if last else size
    if start >= size and size > 0:
        raise HubError(416, f"Range {header} not satisfiable for {size} bytes")
    return start, end, 206


class HubHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, state: HubState, verbose: bool = False):
        super().__init__(address, HubRequestHandler)
        self.state, self.verbose = state, verbose
        self.faults: list[Fault] = []
        self.requests: list[tuple[str, str]] = []
        self._fault_lock = threading.Lock()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    def take_fault(self, method: str, path: str) -> Fault | None:
        with self._fault_lock:
            for fault in self.faults:
                if fault.method == method and fault.hits < fault.times and re.search(fault.path_regex, path):
                    fault.hits += 1
                    return fault
        return None


class HubServer:
    """A Hub-compatible server in a background thread: ``with HubServer() as hub: ... hub.url``.

    Args:
        tokens (`dict[str, str]`, *optional*):
            Access token -> user name; a write needs one of these tokens.
        port (`int`, *optional*, defaults to `0`):
            0 picks a free port.
        verbose (`bool`, *optional*, defaults to `False`):
            Log every request.
    """

    def __init__(self, tokens: dict[str, str] | None = None, port: int = 0, verbose: bool = False):
        self.state = HubState(tokens or {"hf_local_token": "user"})
        self.httpd = HubHTTPServer(("127.0.0.1", port), self.state, verbose)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return self.httpd.url

    @property
    def requests(self) -> list[tuple[str, str]]:
        """Every (method, path) received, in order; for tests that check what the client sent."""
        return self.httpd.requests

    def inject_fault(self, method: str, path_regex: str, kind: str = "status", status: int = 500, times: int = 1) -> Fault:
        if kind not in ("status", "drop", "drop_after"):
            raise ValueError(f"Unknown fault kind {kind!r}")
        fault = Fault(method, path_regex, kind, status, times)
        self.httpd.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        self.httpd.faults.clear()

    def put_file(self, repo_type: str, repo_id: str, path: str, data: bytes, lfs: bool | None = None, user: str = "user") -> str:
        """Commit one file directly (for tests that need a repo no well-behaved client would write)."""
        with self.state.lock:
            if (repo_type, repo_id) not in self.state.repos:
                self.state.create_repo(repo_type, repo_id, False, user)
            repo = self.state.repos[(repo_type, repo_id)]
            lfs = path.endswith(LFS_SUFFIXES) if lfs is None else lfs
            head = repo.commits[repo.branches["main"]]
            files = {**head.files, path: self.state._store(data, lfs=lfs)}
            return self.state._commit(repo, "main", head.id, f"Upload {path}", "", user, files).id

    def head(self, repo_type: str, repo_id: str, revision: str = "main") -> str:
        repo = self.state.repo(repo_type, repo_id, user="admin")
        return self.state.resolve(repo, revision).id

    def start(self) -> HubServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="hub-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument(
        "--token", action="append", default=[], metavar="TOKEN:USER", help="An access token and its user (repeatable)."
    )
    parser.add_argument("--verbose", action="store_true", help="Log every request.")
    args = parser.parse_args(argv)
    tokens = dict(item.split(":", 1) for item in args.token) or {"hf_local_token": "user"}
    server = HubServer(tokens, port=args.port, verbose=args.verbose)
    print(f"Hub-compatible server on {server.url} (users: {', '.join(sorted(set(tokens.values())))}); Ctrl-C stops it")
    print(f"  export HF_ENDPOINT={server.url} HF_HUB_DISABLE_XET=1 HF_TOKEN={next(iter(tokens))}")
    try:
        server.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.httpd.server_close()


if __name__ == "__main__":
    main()
