"""Build and run the worker image without a Docker engine: debootstrap base, buildah build and run.

    python -m scripts.image base [--suite S]  make (or reuse) the local debian:S-slim
    python -m scripts.image build [--no-cache] [--suite S]  build the image from the unmodified
                                              Dockerfile (Debian 13, trixie, by default)
    python -m scripts.image size              print the image size in bytes
    python -m scripts.image run [ARGS...]     run the image's own command (ARGS appended)
    python -m scripts.image clean             remove the image storage (the base cache stays)

The recipe (docs/testing.md): with no Docker engine and no registry to pull
from, the base is made by debootstrap and imported with podman under the name a user's Docker
pulls (`debian:trixie-slim`, `debian:bookworm-slim`), and buildah builds the real Dockerfile
with `--pull-never`.
The debootstrap tarball is cached in SPOTDRAIN_BASE_CACHE (default /var/tmp/spotdrain-base),
and images live in a storage of their own (SPOTDRAIN_STORAGE, default
/var/tmp/spotdrain-storage) whose layer cache makes a warm build redo only what changed, and
whose stale layers are pruned after each build without touching anyone else's images.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from scripts.image_base import make_base_tarball
from scripts.image_context import context_digest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# The Debian suites the image builds on: the Dockerfile's default first.
SUITES = ("trixie", "bookworm")
DEFAULT_SUITE = SUITES[0]
IMAGE_NAME = "localhost/spotdrain:dev"
TOOLS = ("buildah", "podman", "debootstrap")


def base_cache() -> Path:
    return Path(os.environ.get("SPOTDRAIN_BASE_CACHE", "/var/tmp/spotdrain-base"))


def storage() -> list[str]:
    """Global options of buildah and podman: our own storage, with the vfs driver.

    vfs works anywhere (no overlay or fuse needed in a sandbox); a storage of our own keeps
    our cache layers apart from other images, so pruning them is safe.
    """
    root = storage_root()
    return ["--storage-driver", "vfs", "--root", str(root), "--runroot", str(root / "run")]


def storage_root() -> Path:
    return Path(os.environ.get("SPOTDRAIN_STORAGE", "/var/tmp/spotdrain-storage"))


def missing_tools() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def buildah(*args: str) -> str:
    """Run `buildah <storage> ARGS` and return its output; raise with its stderr on failure."""
    result = subprocess.run(
        ["buildah", *storage(), *args], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"buildah {args[0]} failed ({result.returncode}): {result.stderr}")
    return result.stdout


def has_image(name: str) -> bool:
    command = ["buildah", *storage(), "inspect", "--type", "image", name]
    return subprocess.run(command, capture_output=True, check=False).returncode == 0


def base_name(suite: str = DEFAULT_SUITE) -> str:
    return f"docker.io/library/debian:{suite}-slim"


def ensure_base(suite: str = DEFAULT_SUITE) -> None:
    """Make the base image available as debian:<suite>-slim, from the cache when possible."""
    if has_image(base_name(suite)):
        return
    tarball = make_base_tarball(base_cache(), suite)
    with tarball.open("rb") as stream:
        subprocess.run(
            ["podman", *storage(), "import", "--quiet", "-", base_name(suite)],
            stdin=stream,
            check=True,
            stdout=subprocess.DEVNULL,
        )


def host_pip_volumes() -> list[str]:
    """Build-time mounts so pip inside the build trusts this machine's CA bundle.

    Nothing is baked in: RUN steps see the files, committed layers do not. A pip.conf of our
    own is mounted rather than the host's, whose local index paths do not exist inside the
    build: the build uses plain PyPI, here as on a user's machine.
    """
    cafile = ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt"
    if not Path(cafile).is_file():
        return []
    pip_conf = base_cache() / "pip.conf"
    pip_conf.parent.mkdir(parents=True, exist_ok=True)
    pip_conf.write_text("[global]\ncert = /run/host-ca.crt\n")
    return ["-v", f"{cafile}:/run/host-ca.crt:ro", "-v", f"{pip_conf}:/etc/pip.conf:ro"]


def build(
    name: str = IMAGE_NAME,
    *,
    context: Path = PROJECT_ROOT,
    cache: bool = True,
    suite: str = DEFAULT_SUITE,
    target: str | None = None,
) -> float:
    """Build `context`/Dockerfile, unmodified, as `name` on Debian `suite` (up to the stage
    `target`, or the whole image); return the seconds it took.

    The default suite is built as a user builds it, with no build argument; another suite is
    chosen as users choose it, with `--build-arg BASE_IMAGE=debian:<suite>-slim`. With
    `cache`, an image already built from the same context, Dockerfile, base and target is
    kept as it is (0 seconds), and a build reuses the layers whose inputs did not change.
    """
    ensure_base(suite)
    started = time.monotonic()
    dockerfile = context / "Dockerfile"

    def digest_now() -> str:
        base = image_id(base_name(suite))
        return context_digest(context, dockerfile=dockerfile, base_id=f"{base}:{target}")

    digest = digest_now()
    records = storage_root() / "built.json"
    built = json.loads(records.read_text()) if records.exists() else {}
    if cache and has_image(name) and built.get(name) == [digest, image_id(name)]:
        return 0.0
    args = ["bud", "--isolation", "chroot", "--pull-never", f"--layers={str(cache).lower()}"]
    if suite != DEFAULT_SUITE:
        args += ["--build-arg", f"BASE_IMAGE=debian:{suite}-slim"]
    if target is not None:
        args += ["--target", target]
    args += host_pip_volumes()
    args += ["-t", name, "-f", str(dockerfile), str(context)]
    result = subprocess.run(
        ["buildah", *storage(), *args], capture_output=True, text=True, check=False
    )
    output = result.stdout + result.stderr
    if result.returncode != 0:
        tail = "\n".join(output.splitlines()[-40:])
        raise RuntimeError(f"image build failed ({result.returncode}):\n{tail}")
    prune(keep=set(re.findall(r"^--> (?:Using cache )?([0-9a-f]{11,64})$", output, re.M)))
    if digest == digest_now():
        built[name] = [digest, image_id(name)]  # not when the tree changed while building
        records.write_text(json.dumps(built, indent=1))
    return time.monotonic() - started


def image_id(name: str) -> str:
    return str(json.loads(buildah("inspect", "--type", "image", name))["FromImageID"])


def prune(*, keep: set[str]) -> None:
    """Remove untagged images (cache layers of earlier builds) that this build did not use.

    With vfs every layer is a full copy of the tree, so stale cache would grow by about a
    gigabyte per code change.
    """
    for image in json.loads(buildah("images", "--all", "--json")):
        if image.get("names") or any(image["id"][:11] == k[:11] for k in keep):
            continue
        subprocess.run(["buildah", *storage(), "rmi", image["id"]], capture_output=True)


def image_config(name: str = IMAGE_NAME) -> dict[str, Any]:
    """The OCI config of an image: Entrypoint, Cmd, Env, User, WorkingDir, Labels."""
    config: dict[str, Any] = json.loads(buildah("inspect", "--type", "image", name))["OCIv1"][
        "config"
    ]
    return config


def image_size(name: str = IMAGE_NAME) -> int:
    """Uncompressed size of the image in bytes (what `docker images` shows)."""
    result = subprocess.run(
        ["podman", *storage(), "image", "inspect", "--format", "{{.Size}}", name],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(result.stdout.strip())


def command_of(name: str = IMAGE_NAME) -> list[str]:
    """The command the image runs: its Entrypoint followed by its Cmd."""
    config = image_config(name)
    return [*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])]


def new_container(name: str = IMAGE_NAME) -> str:
    """A working container from the image; remove it with `remove_container`."""
    return buildah("from", "--pull-never", name).strip()


def remove_container(container: str) -> None:
    root = _read_only_roots.pop(container, None)
    if root is not None:
        subprocess.run(["umount", "--lazy", root], capture_output=True, check=False)
    subprocess.run(["buildah", *storage(), "rm", container], capture_output=True, check=False)


_read_only_roots: dict[str, str] = {}


def make_read_only(container: str) -> None:
    """Mount the container's root filesystem read-only, as ECS's `readonlyRootFilesystem`
    does (buildah run has no such option): a read-only bind mount of the rootfs over itself,
    which `buildah run` then uses as the chroot. Needs root; undone by `remove_container`."""
    root = buildah("mount", container).strip()
    subprocess.run(["mount", "--bind", root, root], check=True)
    _read_only_roots[container] = root
    subprocess.run(["mount", "-o", "remount,bind,ro", root], check=True)


# buildah 1.28 (Debian 12) runs the command on a read-only root, then panics while cleaning up
# after it, and exits 2 whatever the command's status; it still logs a non-zero status first.
_BUILDAH_PANIC = "panic: runtime error"
_EXIT_STATUS = re.compile(r"subprocess exited with status (\d+)")


def command_status(returncode: int, stderr: str) -> int:
    """The command's exit status from a `buildah run` on a read-only root (see above)."""
    if returncode != 2 or _BUILDAH_PANIC not in stderr or "error running subprocess" in stderr:
        return returncode
    found = _EXIT_STATUS.search(stderr)
    return int(found.group(1)) if found else 0


def run_argv(
    container: str,
    command: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    volumes: Sequence[str] = (),
    user: str | None = None,
    cap_drop: Sequence[str] = (),
    tmpfs: Sequence[str] = (),
) -> list[str]:
    """The `buildah run` command line; the container shares the host's loopback.

    The user, working directory and environment of the image config apply, as under Docker.
    `tmpfs` paths get an empty writable filesystem each (a task volume on Fargate).
    """
    argv = ["buildah", *storage(), "run", "--isolation", "chroot"]
    for capability in cap_drop:
        argv += ["--cap-drop", capability]
    for path in tmpfs:
        argv += ["--mount", f"type=tmpfs,destination={path}"]
    for key, value in (env or {}).items():
        argv += ["--env", f"{key}={value}"]
    for volume in volumes:
        argv += ["--volume", volume]
    if user is not None:
        argv += ["--user", user]
    return [*argv, container, "--", *command]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m scripts.image", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("action", choices=("base", "build", "size", "run", "clean"))
    parser.add_argument("--name", default=IMAGE_NAME)
    parser.add_argument("--no-cache", action="store_true", help="build without cached layers")
    parser.add_argument("--suite", choices=SUITES, default=DEFAULT_SUITE, help="Debian base")
    parser.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for the worker")
    args = parser.parse_args(argv)
    if missing := missing_tools():
        print(f"image: {' '.join(missing)} missing: run scripts/bootstrap.sh test", file=sys.stderr)
        return 2
    if args.action == "base":
        ensure_base(args.suite)
    elif args.action == "build":
        seconds = build(args.name, cache=not args.no_cache, suite=args.suite)
        print(f"image: built {args.name} in {seconds:.0f} s, {image_size(args.name) / 1e6:.0f} MB")
    elif args.action == "size":
        print(image_size(args.name))
    elif args.action == "clean":
        subprocess.run(["buildah", *storage(), "rm", "--all"], check=False)
        subprocess.run(["buildah", *storage(), "rmi", "--all", "--force"], check=False)
    else:
        container = new_container(args.name)
        try:
            command = [*command_of(args.name), *(a for a in args.rest if a != "--")]
            return subprocess.run(run_argv(container, command), check=False).returncode
        finally:
            remove_container(container)
    return 0


if __name__ == "__main__":
    sys.exit(main())
