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
import threading

from .hub_http import HubHTTPServer
from .hub_state import LFS_SUFFIXES, Fault, HubState


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

    def put_file(self, repo_type: str, repo_id: str, path: str, data: bytes, *, lfs: bool | None = None,
                 user: str = "user") -> str:
        """Commit one file directly (for tests that need a repo no well-behaved client would write)."""
        lfs = path.endswith(LFS_SUFFIXES) if lfs is None else lfs
        return self.state.put_file(repo_type, repo_id, path, data, lfs=lfs, user=user).id

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
