# Copyright (c) rotor.vps contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Package this collection on the controller for the VPSs whose installed copy differs from it.

Usage: python3 package_collection.py ROOT [INSTALLED_MANIFEST ...]

ROOT is the collection: a source checkout (galaxy.yml) is built like any release, an installed copy
(AWX, Galaxy: MANIFEST.json and FILES.json already there) is packed as it is. The checksum of the
package's FILES.json identifies its content; INSTALLED_MANIFEST are the MANIFEST.json files of the
copies the VPSs have, base64-encoded as slurp reads them ("" where there is none). Prints one JSON
object: "sha256" of the package, and "package" (its path in a new temporary directory,
"build_dir", which the caller removes) only when some VPS needs it; when
every VPS has this content already, nothing is left behind.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path


def package(root: Path, build_dir: Path) -> Path:
    if (root / "galaxy.yml").exists():
        subprocess.run([sys.executable, "-m", "ansible", "galaxy", "collection", "build", "--force",
                        "--output-path", str(build_dir), str(root)], check=True, stdout=subprocess.DEVNULL)
        return next(build_dir.glob("*.tar.gz"))
    path = build_dir / "rotor-vps.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for entry in sorted(root.iterdir()):
            tar.add(entry, arcname=entry.name)
    return path


def installed_sha256(manifest_b64: str) -> str:
    """The content checksum of an installed copy, from its MANIFEST.json as slurp read it."""
    try:
        return json.loads(base64.b64decode(manifest_b64))["file_manifest_file"]["chksum_sha256"]
    except (ValueError, KeyError, TypeError):
        return "none"


def main(argv: list[str]) -> int:
    root, installed = Path(argv[0]), {installed_sha256(manifest) for manifest in argv[1:]}
    build_dir = Path(tempfile.mkdtemp(prefix="rotor-vps-build."))
    try:
        path = package(root, build_dir)
        with tarfile.open(path) as tar:
            manifest = json.load(tar.extractfile("MANIFEST.json"))
        sha256 = manifest["file_manifest_file"]["chksum_sha256"]
    except BaseException:
        shutil.rmtree(build_dir, ignore_errors=True)
        raise
    result = {"sha256": sha256}
    if installed == {sha256}:
        shutil.rmtree(build_dir)
    else:
        result.update(package=str(path), build_dir=str(build_dir))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
