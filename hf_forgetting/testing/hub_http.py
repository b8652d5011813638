"""The HTTP side of the test Hub (`hub_server.py`): routes and the handler that answers each with `HubState`."""

from __future__ import annotations

import base64
import json
import re
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from .hub_state import (
    LFS_SUFFIXES,
    REGULAR_FILE_LIMIT,
    REPO_TYPES,
    URL_PREFIXES,
    Fault,
    HubError,
    HubState,
    Repo,
    file_entry,
    folder_entry,
    repo_info,
    tree_entries,
)

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
