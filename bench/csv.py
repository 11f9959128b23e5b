"""CSV to NDJSON speed: our core and our worker beside csvkit, the standard library, pandas,
polars and DuckDB, on one deterministic file, in one run (issue 3).

    .venv/bin/python bench/csv.py                      # about 1 GB (generated once, cached)
    .venv/bin/python bench/csv.py --size-mb 256 --slow-sample-mb 32
    .venv/bin/python bench/csv.py --only ours,polars --no-e2e

Every tool runs in its own process on the same file and writes its output to the same
directory (a tmpfs when there is one); each output's row count is checked. Figures: MB/s of
CSV input per wall second, CPU seconds (all threads and processes of the tool), peak RSS
(the tool's process; for ours also its converter processes, summed). The slowest peers
(csvkit, the standard library) can be given only the first --slow-sample-mb of the file;
the table says so. End to end: a moto server, the CSV uploaded, one csv job run by
`python -m worker`; moto's own raw GET and PUT speeds are printed as the ceiling.
Exit status 0 when every target of the issue is met.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# This file is named like the standard library's csv module: keep its folder off the path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402 (after the path fix above)
import importlib.util  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import tomllib  # noqa: E402
from dataclasses import dataclass  # noqa: E402

SEED = 20260101
GENERATOR_VERSION = 1
PEERS = {"csvkit": "csvkit", "pandas": "pandas", "polars": "polars", "duckdb": "duckdb"}

# Each runner is the body of a `python -c` program: it converts IN to OUT and prints
# {"seconds": wall time of the conversion itself}. The harness measures CPU and memory.
RUNNERS: dict[str, str] = {
    "ours": """
from worker.csvconv.options import CsvOptions
from worker.csvconv.pool import FramePool, keep_heap
from worker.csvconv.stream import convert_chunks
keep_heap()
pool = FramePool(PROCESSES)
def chunks():
    with open(IN, "rb") as f:
        while chunk := f.read(1 << 20):
            yield chunk
t = time.perf_counter()
with open(OUT, "wb") as out:
    for piece in convert_chunks(chunks(), CsvOptions(infer_types=TYPED), submit=pool.submit,
                                window=2 * pool.processes + 1):
        out.write(piece)
seconds = time.perf_counter() - t
pool.close()
""",
    "stdlib": """
import csv, json
t = time.perf_counter()
with open(IN, newline="", encoding="utf-8") as f, open(OUT, "w", encoding="utf-8") as out:
    for row in csv.DictReader(f):
        out.write(json.dumps(row, ensure_ascii=False) + "\\n")
seconds = time.perf_counter() - t
""",
    "pandas": """
import pandas as pd
t = time.perf_counter()
options = {} if TYPED else {"dtype": str, "keep_default_na": False}
with open(OUT, "w", encoding="utf-8") as out:
    for chunk in pd.read_csv(IN, chunksize=200_000, **options):
        text = chunk.to_json(orient="records", lines=True, force_ascii=False)
        out.write(text if text.endswith("\\n") else text + "\\n")
seconds = time.perf_counter() - t
""",
    "polars": """
import polars as pl
t = time.perf_counter()
pl.scan_csv(IN, infer_schema=TYPED).sink_ndjson(OUT)
seconds = time.perf_counter() - t
""",
    "duckdb": """
import duckdb
t = time.perf_counter()
types = "" if TYPED else ", all_varchar=true"
duckdb.sql(f"COPY (SELECT * FROM read_csv('{IN}', header=true{types})) TO '{OUT}' (FORMAT json)")
seconds = time.perf_counter() - t
""",
}
CSVKIT = ["csvjson", "--stream", "--no-inference", "--snifflimit", "0"]


@dataclass
class Result:
    tool: str
    mode: str  # "exact" (every value a string) or "typed"
    mb: float  # CSV input converted, MB (10^6 bytes)
    seconds: float
    cpu: float
    rss_mb: float
    rows_ok: bool
    note: str = ""

    @property
    def mb_s(self) -> float:
        return self.mb / self.seconds


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--size-mb", type=int, default=1024, help="CSV size in MiB (default 1024)")
    parser.add_argument("--slow-sample-mb", type=int, default=64,
                        help="csvkit and the standard library convert only this prefix (MiB); "
                        "0 = the whole file (default 64)")
    parser.add_argument("--only", default="", help="comma-separated tools to run")
    parser.add_argument("--no-e2e", action="store_true", help="skip the worker through moto")
    parser.add_argument("--no-install", action="store_true", help="do not pip-install peers")
    parser.add_argument("--work-dir", default="", help="where data and outputs go")
    parser.add_argument("--repeat", type=int, default=1,
                        help="run each fast tool this many times, keep its best (default 1)")
    args = parser.parse_args()
    only = {t for t in args.only.split(",") if t}
    wanted = lambda tool: not only or tool in only  # noqa: E731

    if not args.no_install:
        install_peers()
    default_dir = "/dev/shm" if Path("/dev/shm").is_dir() else tempfile.gettempdir()
    work = Path(args.work_dir or default_dir) / "spotdrain-bench-csv"
    work.mkdir(parents=True, exist_ok=True)
    data, rows = generate(work, args.size_mb)
    print(f"input: {data} ({data.stat().st_size / 1e6:.0f} MB, {rows:,} rows, "
          f"{os.cpu_count()} CPUs)\n", flush=True)
    sample = None
    if args.slow_sample_mb and args.slow_sample_mb < args.size_mb:
        sample, sample_rows = cut_sample(data, work, args.slow_sample_mb)

    results: list[Result] = []
    plan: list[tuple[str, str, str, Path, int, int]] = []  # tool, mode, runner, file, rows, procs
    cpus = len(os.sched_getaffinity(0))
    for mode in ("exact", "typed"):
        # as the worker (worker.csvconv.pool.default_processes), and with one converter
        plan.append((f"ours ({cpus} converters)", mode, "ours", data, rows, cpus))
        if mode == "exact" and cpus > 1:
            plan.append(("ours (1 converter)", mode, "ours", data, rows, 1))
        for peer in ("polars", "duckdb", "pandas"):
            plan.append((peer, mode, peer, data, rows, 0))
    best: dict[tuple[str, str], Result] = {}
    for attempt in range(args.repeat):
        for tool, mode, runner, path, expected, procs in plan:
            if not wanted(runner) or (attempt and runner == "pandas"):
                continue  # pandas is slow and far behind: once is enough
            result = run_tool(tool, mode, runner, path, expected, work, procs)
            print_row(result)
            kept = best.get((tool, mode))
            if kept is None or (result.rows_ok and result.seconds < kept.seconds):
                best[(tool, mode)] = result
    if args.repeat > 1:
        print(f"\nbest of {args.repeat}:")
        for result in best.values():
            print_row(result)
    results.extend(best.values())
    slow_path, slow_rows = (sample, sample_rows) if sample else (data, rows)
    note = f"first {args.slow_sample_mb} MiB" if sample else ""
    if wanted("stdlib"):
        results.append(
            run_tool("stdlib csv+json", "exact", "stdlib", slow_path, slow_rows, work, 0)
        )
        results[-1].note = note
        print_row(results[-1])
    if wanted("csvkit"):
        results.append(run_csvkit(slow_path, slow_rows, work))
        results[-1].note = note
        print_row(results[-1])
    e2e = None if args.no_e2e or not wanted("e2e") else end_to_end(data, rows)
    return report(results, e2e)


# -- data ---------------------------------------------------------------------------------------

def generate(work: Path, size_mb: int) -> tuple[Path, int]:
    """A deterministic CSV of mixed columns: integers, decimals, empty fields, short strings,
    unicode, and quoted strings with commas, doubled quotes and line breaks."""
    path = work / f"mixed-{size_mb}mib-v{GENERATOR_VERSION}.csv"
    count_file = path.with_suffix(".rows")
    if path.exists() and count_file.exists():
        return path, int(count_file.read_text())
    print(f"generating {size_mb} MiB of CSV (once; cached in {work}) ...", flush=True)
    rnd = random.Random(SEED)
    words = ["alpha", "beta", "gamma", "delta", "omega", "kappa", "sigma", "theta"]
    cities = ["Zürich", "東京", "São Paulo", "Kraków", "Reykjavík", "Montréal", "Αθήνα", "Paris"]
    notes = ['"fine, thanks"', '"said ""hello"" twice"', '"line one\nline two"', "plain",
             "", '"a, b, c"', "ok", "n/a"]
    target, written, rows = size_mb * 1024 * 1024, 0, 0
    with open(path, "w", encoding="utf-8", newline="") as out:
        out.write("id,amount,qty,name,city,note,active,code,ratio\n")
        while written < target:
            lines = []
            for _ in range(10_000):
                rows += 1
                qty = "" if rnd.random() < 0.1 else str(rnd.randint(0, 500))
                lines.append(
                    f"{rows},{rnd.randint(0, 999_999) / 100:.2f},{qty},"
                    f"{rnd.choice(words)}_{rnd.randint(0, 999)},{rnd.choice(cities)},"
                    f"{rnd.choice(notes)},{rnd.choice(('true', 'false'))},"
                    f"{rnd.randint(0, 999):03d},{rnd.random():.6f}\n"
                )
            text = "".join(lines)
            out.write(text)
            written += len(text.encode("utf-8"))
    count_file.write_text(str(rows))
    return path, rows


def cut_sample(data: Path, work: Path, size_mb: int) -> tuple[Path, int]:
    """The file's first `size_mb` MiB, cut after a whole record (fields hold no CRLF here)."""
    path = work / f"{data.stem}-first{size_mb}.csv"
    with open(data, "rb") as f:
        head = f.read(size_mb * 1024 * 1024)
    starts = list(re.finditer(rb"\n\d+,", head[-(1 << 20) :]))  # records start with their id
    head = head[: len(head) - (1 << 20) + starts[-1].start() + 1]
    path.write_bytes(head)
    import csv  # the standard library's: this folder is off the path

    with open(path, newline="", encoding="utf-8") as f:
        rows = sum(1 for _ in csv.reader(f)) - 1
    return path, rows


# -- running the tools --------------------------------------------------------------------------

def install_peers() -> None:
    missing = [name for name, module in PEERS.items() if importlib.util.find_spec(module) is None]
    if not missing:
        return
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]["bench"]
    print(f"installing the bench extra ({', '.join(extras)}) ...", flush=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", *extras], check=True)


def run_tool(tool: str, mode: str, runner: str, path: Path, rows: int, work: Path,
             processes: int) -> Result:
    out = work / "out.ndjson"
    out.unlink(missing_ok=True)
    program = (
        f"import time, json, resource\nIN, OUT, TYPED, PROCESSES = {str(path)!r}, {str(out)!r}, "
        f"{mode == 'typed'}, {processes}\n" + RUNNERS[runner] +
        "\nchildren = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss\n"
        "print(json.dumps({'seconds': seconds, 'children_rss_kb': children}))\n"
    )
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-c", program], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watch = RssWatch(process.pid)
    stdout, stderr = process.communicate()
    watch.stop()
    if process.returncode != 0:
        print(f"  {tool} ({mode}) failed:\n{stderr[-2000:]}", flush=True)
        return Result(tool, mode, path.stat().st_size / 1e6, time.perf_counter() - started,
                      watch.cpu, watch.total_mb, False, "failed")
    report = json.loads(stdout.strip().splitlines()[-1])
    got = count_lines(out)
    out.unlink(missing_ok=True)
    return Result(tool, mode, path.stat().st_size / 1e6, report["seconds"], watch.cpu,
                  watch.total_mb, got == rows, "" if got == rows else f"{got:,} rows")


def run_csvkit(path: Path, rows: int, work: Path) -> Result:
    out = work / "out.ndjson"
    started = time.perf_counter()
    with open(out, "wb") as sink:
        process = subprocess.Popen([*_csvkit_command(), str(path)], stdout=sink,
                                   stderr=subprocess.PIPE)
        watch = RssWatch(process.pid)
        process.wait()
        watch.stop()
    seconds = time.perf_counter() - started
    got = count_lines(out)
    out.unlink(missing_ok=True)
    return Result("csvkit csvjson", "exact", path.stat().st_size / 1e6, seconds, watch.cpu,
                  watch.total_mb, got == rows, "" if got == rows else f"{got:,} rows")


def _csvkit_command() -> list[str]:
    script = Path(sys.executable).with_name("csvjson")
    return [str(script), *CSVKIT[1:]] if script.exists() else CSVKIT


def count_lines(path: Path) -> int:
    count = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            count += chunk.count(b"\n")
    return count


class RssWatch:
    """Samples a process tree: peak RSS of each process (VmHWM) and CPU time (from /proc)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peaks: dict[int, int] = {}
        self.ticks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            time.sleep(0.05)

    def sample(self) -> None:
        for pid in [self.pid, *_descendants(self.pid)]:
            status = _read(f"/proc/{pid}/status")
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    self.peaks[pid] = max(self.peaks.get(pid, 0), int(line.split()[1]) * 1024)
            stat = _read(f"/proc/{pid}/stat")
            if stat:
                fields = stat.rsplit(")", 1)[1].split()
                self.ticks[pid] = int(fields[11]) + int(fields[12])  # utime + stime

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def total_mb(self) -> float:
        # the resource tracker of multiprocessing is no part of the conversion
        return sum(p for p in self.peaks.values() if p > 20 * 2**20 or len(self.peaks) == 1) / 1e6

    @property
    def main_mb(self) -> float:
        return self.peaks.get(self.pid, 0) / 1e6

    @property
    def cpu(self) -> float:
        return sum(self.ticks.values()) / os.sysconf("SC_CLK_TCK")


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    for path in Path(f"/proc/{pid}/task").glob("*/children"):
        for child in _read(str(path)).split():
            found += [int(child), *_descendants(int(child))]
    return found


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


# -- end to end through moto --------------------------------------------------------------------

@dataclass
class EndToEnd:
    mb: float
    seconds: float
    rows_ok: bool
    rss_mb: float
    worker_rss_mb: float
    output_mb: float
    raw_put_mb_s: float
    raw_get_mb_s: float


def end_to_end(data: Path, rows: int) -> EndToEnd:
    import boto3
    from boto3.s3.transfer import TransferConfig

    from tests.support.moto_server import MotoServer

    print("\nend to end: moto server, python -m worker", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        moto = MotoServer(log_path=Path(scratch) / "moto.log")
        moto.start()
        try:
            env = {**os.environ, **moto.env()}
            s3 = boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
            sqs = boto3.client("sqs", endpoint_url=moto.url, region_name="us-east-1",
                               aws_access_key_id="testing", aws_secret_access_key="testing")
            s3.create_bucket(Bucket="bench-csv")
            transfer = TransferConfig(multipart_chunksize=8 * 1024 * 1024, max_concurrency=2)
            size = data.stat().st_size
            started = time.perf_counter()
            s3.upload_file(str(data), "bench-csv", "raw/copy.bin", Config=transfer)
            raw_put = size / (time.perf_counter() - started) / 1e6
            started = time.perf_counter()
            body = s3.get_object(Bucket="bench-csv", Key="raw/copy.bin")["Body"]
            while body.read(8 * 1024 * 1024):
                pass
            raw_get = size / (time.perf_counter() - started) / 1e6
            s3.delete_object(Bucket="bench-csv", Key="raw/copy.bin")
            print(f"  moto raw: PUT (multipart, 8 MiB parts) {raw_put:.0f} MB/s, "
                  f"GET {raw_get:.0f} MB/s", flush=True)
            s3.upload_file(str(data), "bench-csv", "in/data.csv", Config=transfer)
            queue = sqs.create_queue(QueueName="bench-csv")["QueueUrl"]
            sqs.send_message(QueueUrl=queue, MessageBody=json.dumps(
                {"job": "csv", "bucket": "bench-csv", "key": "in/data.csv"}))
            env.update(QUEUE_URL=queue, SPOT_IMDS="off", WORKER_WAIT_SECONDS="1",
                       WORKER_IDLE_EXIT_SECONDS="1", PYTHONPATH=str(ROOT))
            worker = subprocess.Popen([sys.executable, "-m", "worker"], cwd=ROOT, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            watch = RssWatch(worker.pid)
            stdout, stderr = worker.communicate(timeout=1800)
            watch.stop()
            events = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
            converted = [e for e in events if e.get("event") == "csv.converted"]
            if worker.returncode != 0 or not converted:
                print(f"  the worker failed ({worker.returncode}):\n{stderr[-2000:]}")
                return EndToEnd(size / 1e6, float("inf"), False, 0, 0, 0, raw_put, raw_get)
            event = converted[0]
            started = time.perf_counter()
            s3.upload_fileobj(_Zeros(event["output_bytes"]), "bench-csv", "raw/output-sized",
                              Config=transfer)
            raw_put = event["output_bytes"] / (time.perf_counter() - started) / 1e6
            print(f"  moto raw PUT of an object as large as the JSON output: {raw_put:.0f} MB/s",
                  flush=True)
            stages = ", ".join(
                f"{k[:-2]} {v:.1f}"
                for k, v in event.items()
                if k.endswith("_s") and k != "mb_per_s"
            )
            print(f"  worker: {event['seconds']:.1f} s; time awaiting each stage (s): {stages}",
                  flush=True)
            return EndToEnd(size / 1e6, event["seconds"], event["rows"] == rows,
                            watch.total_mb, watch.main_mb, event["output_bytes"] / 1e6,
                            raw_put, raw_get)
        finally:
            moto.stop()


class _Zeros:
    """A file of `size` bytes (a repeated pattern) that is never held in memory whole."""

    def __init__(self, size: int) -> None:
        self._left = size
        self._block = b"0123456789abcdef" * 65536

    def read(self, size: int = -1) -> bytes:
        size = self._left if size < 0 else min(size, self._left)
        self._left -= size
        whole, rest = divmod(size, len(self._block))
        return self._block * whole + self._block[:rest]


# -- report -------------------------------------------------------------------------------------

def print_row(r: Result) -> None:
    rows = "ok" if r.rows_ok else f"WRONG {r.note}"
    note = f"  ({r.note})" if r.note and r.rows_ok else ""
    print(f"  {r.tool:24s} {r.mode:6s} {r.mb_s:8.1f} MB/s  {r.seconds:7.1f} s  "
          f"cpu {r.cpu:7.1f} s  peak RSS {r.rss_mb:6.0f} MB  rows {rows}{note}", flush=True)


def report(results: list[Result], e2e: EndToEnd | None) -> int:
    met = True
    print()
    for mode in ("exact", "typed"):
        ours = [r for r in results if r.mode == mode and r.tool.startswith("ours (")]
        peers = [r for r in results if r.mode == mode and not r.tool.startswith("ours") and
                 r.rows_ok]
        if not ours or not peers:
            continue
        best = max(peers, key=lambda r: r.mb_s)
        ratio = ours[0].mb_s / best.mb_s
        need = 1.0 if mode == "exact" else 0.5
        ok = ratio >= need and ours[0].rows_ok and (mode == "typed" or ours[0].rss_mb < 256)
        met &= ok
        print(f"{mode}: ours {ours[0].mb_s:.1f} MB/s = {ratio:.2f} x the fastest peer "
              f"({best.tool}, {best.mb_s:.1f} MB/s); target >= {need:g} x"
              + (f", peak RSS {ours[0].rss_mb:.0f} MB (target < 256)" if mode == "exact" else "")
              + f": {'met' if ok else 'NOT met'}")
    if e2e is not None:
        core = next((r for r in results if r.mode == "exact" and r.tool.startswith("ours (")),
                    None)
        speed = e2e.mb / e2e.seconds
        written = e2e.output_mb / e2e.seconds
        print(f"end to end through moto: {speed:.1f} MB/s of CSV ({written:.1f} "
              f"MB/s of JSON written), rows {'ok' if e2e.rows_ok else 'WRONG'}, peak RSS worker "
              f"{e2e.worker_rss_mb:.0f} MB (with converter processes {e2e.rss_mb:.0f} MB)")
        ceiling = e2e.raw_put_mb_s * e2e.mb / e2e.output_mb
        print(f"  moto's ceiling: raw PUT {e2e.raw_put_mb_s:.0f} MB/s (an object as large as the "
              f"output), GET {e2e.raw_get_mb_s:.0f} MB/s; {e2e.output_mb / e2e.mb:.2f} bytes of "
              f"JSON per CSV byte cap the end-to-end speed near {ceiling:.0f} MB/s of CSV "
              f"({speed / ceiling:.2f} x of it reached)")
        if core is not None:
            ok = speed >= core.mb_s / 2 and e2e.rows_ok
            met &= ok
            print(f"  target: >= half the core's {core.mb_s:.1f} MB/s: {'met' if ok else 'NOT met'}"
                  f" ({speed / core.mb_s:.2f} x)")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
