"""Build launcher.zip: the launcher package alone, as the Lambda function's code.

The Lambda Python runtime provides boto3 (and botocore); the launcher needs nothing else, so
the archive holds only `launcher/*.py`. Entries are sorted and time-stamped 1980-01-01, so the
same sources always give the same bytes (and the same CodeSha256 in Lambda).

    python -m scripts.build_launcher_zip [--output launcher.zip]
"""

from __future__ import annotations

import argparse
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "launcher"
FIXED_TIME = (1980, 1, 1, 0, 0, 0)


def sources() -> list[Path]:
    """The launcher's modules, without caches or anything else that lies in the folder."""
    return sorted(path for path in PACKAGE.glob("*.py") if path.is_file())


def build(output: Path) -> Path:
    """Write the archive to `output` (replacing it) and return its path."""
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sources():
            info = zipfile.ZipInfo(f"launcher/{path.name}", date_time=FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, path.read_bytes())
    partial.replace(output)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--output", type=Path, default=ROOT / "launcher.zip")
    args = parser.parse_args(argv)
    path = build(args.output)
    print(f"{path} ({path.stat().st_size} bytes, {len(sources())} modules)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
