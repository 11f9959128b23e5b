"""launcher.zip: only the launcher, importable by a clean interpreter with only boto3 around."""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from scripts.build_launcher_zip import build

ROOT = Path(__file__).resolve().parents[2]
# What the Lambda Python runtime provides besides the standard library: boto3 and its
# dependencies, nothing of ours and nothing else of our dependencies.
LAMBDA_RUNTIME = ("boto3", "botocore", "s3transfer", "jmespath", "dateutil", "urllib3", "six")


@pytest.fixture(scope="module")
def launcher_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("zip") / "launcher.zip")


@pytest.fixture(scope="module")
def lambda_runtime(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding boto3 and its dependencies only, as the Lambda runtime has them."""
    directory = tmp_path_factory.mktemp("runtime")
    for name in LAMBDA_RUNTIME:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin is not None, name
        origin = Path(spec.origin)
        source = origin.parent if spec.submodule_search_locations else origin
        (directory / source.name).symlink_to(source)
    return directory


def test_the_zip_holds_the_launcher_modules_and_nothing_else(launcher_zip: Path) -> None:
    names = zipfile.ZipFile(launcher_zip).namelist()

    expected = sorted(f"launcher/{p.name}" for p in (ROOT / "launcher").glob("*.py"))
    assert names == expected
    assert "launcher/handler.py" in names


def test_the_zip_is_reproducible(launcher_zip: Path, tmp_path: Path) -> None:
    assert build(tmp_path / "again.zip").read_bytes() == launcher_zip.read_bytes()


CLEAN_IMPORT = """
import json, sys
zip_path, runtime = sys.argv[1], sys.argv[2]
sys.path[:0] = [zip_path, runtime]
try:
    import worker
    worker_importable = True
except ModuleNotFoundError:
    worker_importable = False
import launcher.handler
loaded = sorted({name.split(".")[0] for name in sys.modules})
try:
    launcher.handler.lambda_handler({"not": "an event"}, None)
    raised = None
except Exception as exc:
    raised = type(exc).__name__
print(json.dumps({
    "file": launcher.handler.__file__,
    "worker_importable": worker_importable,
    "loaded": loaded,
    "raised": raised,
}))
"""


def test_the_handler_imports_from_the_zip_in_a_clean_interpreter(
    launcher_zip: Path, lambda_runtime: Path
) -> None:
    """`python -I -S`: no site-packages, no editable install, no PYTHON* variables."""
    env = {
        "QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/123456789012/jobs",
        "CLUSTER": "workers",
        "TASK_DEFINITION": "spotdrain-worker",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }

    done = subprocess.run(
        [sys.executable, "-I", "-S", "-c", CLEAN_IMPORT, str(launcher_zip), str(lambda_runtime)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    lines = done.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert result["file"] == f"{launcher_zip}/launcher/handler.py"
    assert result["worker_importable"] is False
    assert not {"worker", "structlog", "aiobotocore", "moto"} & set(result["loaded"])
    assert result["raised"] == "InvalidEvent"  # the handler ran, and rejected the event
    assert json.loads(lines[-2])["event"] == "launcher.summary"


def imported_roots(path: Path, *, for_types: bool = False) -> set[str]:
    """The top-level packages a module imports when it runs (or, with `for_types`, only under
    `if TYPE_CHECKING:`, which never runs: the type checker's stubs)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If)
        and isinstance(node.test, ast.Name)
        and node.test.id == "TYPE_CHECKING"
        for statement in node.body
        for inner in ast.walk(statement)
    }
    roots: set[str] = set()
    for node in ast.walk(tree):
        if (id(node) in typing_only) != for_types:
            continue
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("module", sorted((ROOT / "launcher").glob("*.py")), ids=lambda p: p.name)
def test_the_launcher_imports_only_the_stdlib_boto3_and_itself(module: Path) -> None:
    roots = imported_roots(module)

    assert "worker" not in roots
    assert roots <= set(sys.stdlib_module_names) | {"__future__", "boto3", "botocore", "launcher"}
    assert all(root.startswith("types_boto3") for root in imported_roots(module, for_types=True))
