"""``cytoatlas signatures fetch``: secactpy 0.3.1's two data files, once, without installing secactpy.

pip (this interpreter's, with the user's own configuration: index, proxy, certificates) downloads the wheel
(``pip download --no-deps --only-binary :all:``, ~82 MB); only ``secactpy/data/CytoSig.tsv.gz`` and
``SecAct.tsv.gz`` are extracted, checked against the recorded SHA-256 sums and put in place atomically, and the
wheel is deleted. Both files are verified before either is renamed into place, so a failure leaves what was
there before. Nothing is downloaded when the files are already available.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Mapping
from pathlib import Path

from cytoatlas._activity.signature_data import (
    SECACTPY_VERSION,
    SHA256,
    SIGNATURE_DIR_ENV,
    data_cache_dir,
    matches_release,
    signature_data_file,
)
from cytoatlas.errors import CytoatlasError
from cytoatlas.io.durable import replace_durably, temporary_path

log = logging.getLogger("cytoatlas.activity")

WHEEL_MEMBER = "secactpy/data/{}"


def extract_signature_data(wheel: str | Path, dest: str | Path, sums: Mapping[str, str] = SHA256) -> list[Path]:
    """Copy the signature files out of a secactpy wheel into ``dest``, verified.

    Parameters
    ----------
    wheel
        The ``.whl`` (a zip archive) holding ``secactpy/data/<file>`` for every file of ``sums``.
    dest
        Directory to write into (created if missing).
    sums
        Expected SHA-256 per file name (default: secactpy 0.3.1's).

    Returns
    -------
    list of Path
        The files written, in the order of ``sums``.
    """
    wheel, dest = Path(wheel), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    temps: list[tuple[Path, Path]] = []
    try:
        try:
            archive = zipfile.ZipFile(wheel)
        except (zipfile.BadZipFile, OSError) as e:
            raise CytoatlasError(f"{wheel} is not a readable wheel: {e}") from None
        with archive:
            names = set(archive.namelist())
            for filename, expected in sums.items():
                member = WHEEL_MEMBER.format(filename)
                if member not in names:
                    raise CytoatlasError(f"{wheel.name} has no {member}; is it secactpy {SECACTPY_VERSION}'s wheel?")
                tmp = temporary_path(dest / filename)
                temps.append((tmp, dest / filename))
                digest = hashlib.sha256()
                with archive.open(member) as src, open(tmp, "wb") as out:
                    for chunk in iter(lambda src=src: src.read(1 << 20), b""):
                        digest.update(chunk)
                        out.write(chunk)
                if digest.hexdigest() != expected:
                    raise CytoatlasError(f"{member} in {wheel.name} does not match its recorded SHA-256 "
                                         f"({digest.hexdigest()[:16]}... instead of {expected[:16]}...); "
                                         "nothing was written")
        for tmp, path in temps:
            replace_durably(tmp, path)
    finally:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
    return [path for _, path in temps]


def _download_wheel(into: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "--no-input",
           "--disable-pip-version-check", "--quiet", f"secactpy=={SECACTPY_VERSION}", "-d", str(into)]
    log.info("downloading secactpy %s's wheel (~82 MB) with pip, for its two data files", SECACTPY_VERSION)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as e:
        raise CytoatlasError(f"could not run pip ({sys.executable} -m pip): {e}") from None
    wheels = sorted(into.glob("secactpy-*.whl"))
    if done.returncode != 0 or len(wheels) != 1:
        lines = [ln.strip() for ln in (done.stderr or done.stdout).splitlines() if ln.strip()]
        why = lines[-1] if lines else f"exit code {done.returncode}, no wheel"
        raise CytoatlasError(f"pip could not download secactpy=={SECACTPY_VERSION} ({why}); offline, copy "
                             f"{' and '.join(SHA256)} from a machine that has them and use --signature-dir or "
                             f"${SIGNATURE_DIR_ENV}")
    return wheels[0]


def fetch_signature_data(dest: str | Path | None = None, *, force: bool = False) -> list[Path]:
    """Make secactpy 0.3.1's two signature files available, downloading its wheel with pip only if needed.

    Parameters
    ----------
    dest
        Directory for the files. Default: ``$CYTOATLAS_SIGNATURE_DIR`` if set, else the cache
        (``$CYTOATLAS_CACHE/signature_data``); without ``force``, nothing is downloaded when the files are
        already found there (or, with neither set, in an installed secactpy).
    force
        Download even when the files are already there.

    Returns
    -------
    list of Path
        The verified CytoSig and SecAct files (in ``dest`` when they were downloaded).
    """
    named = dest if dest is not None else os.environ.get(SIGNATURE_DIR_ENV) or None
    dest = Path(named) if named is not None else data_cache_dir()
    present = [dest / f for f in SHA256]
    if not force:
        if named is None:  # any source will do: an installed secactpy's files, or the cache's
            with contextlib.suppress(CytoatlasError):  # e.g. a damaged cached file: fetched again below
                found = [signature_data_file(f) for f in SHA256]
                log.info("secactpy %s's signature files are already available: %s", SECACTPY_VERSION,
                         ", ".join(map(str, found)))
                return found
        elif all(p.is_file() and matches_release(p, p.name) for p in present):
            log.info("secactpy %s's signature files are already in %s", SECACTPY_VERSION, dest)
            return present
    dest.mkdir(parents=True, exist_ok=True)
    # the wheel is downloaded beside its destination (same file system, no large /tmp needed) and removed after
    with tempfile.TemporaryDirectory(dir=dest, prefix=".fetch-") as tmp:
        wheel = _download_wheel(Path(tmp))
        written = extract_signature_data(wheel, dest)
        with contextlib.suppress(OSError):
            wheel.unlink()
    return written
