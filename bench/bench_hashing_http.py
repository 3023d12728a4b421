#!/usr/bin/env python
"""
Benchmark photo hashing end to end: python-threatexchange's reference path, omm's service
function, and omm's HTTP API (POST /h/hash) served by the real service (gunicorn matching.wsgi,
the entry the Procfile and the image run, with production settings), on the same JPEGs in the
same run, checking that every path gives the identical PDQ hash.

    python bench/bench_hashing_http.py [--seconds 6] [--rounds 3] [--sizes 1,12] [--threads 8] [--keep DIR]
    python bench/bench_hashing_http.py --vs OTHER_CHECKOUT [--seconds 60] [--sizes 1] [--threads N] [--vs-threads N]

- reference: PdqSignal.hash_from_file(path) (what HMA runs: Pillow decode + pdqhash);
- service:   hashing.services.media_hash(content_type="photo", media=<open file>), in process;
- http:      one client thread POSTing the file as multipart to gunicorn matching.wsgi with one
             sync worker (OMM_ROLES=hasher, OMM_OPEN_ACCESS=true, an empty SQLite file as the
             database: a hasher needs none); --threads 8 serves it as the Procfile does instead
             (gunicorn's gthread worker, 8 threads);
- decode:    Image.open(path).load() alone, in process: Pillow's decode, which the reference and
             omm both do and nothing can remove (no hash). reference rate / decode rate is the
             floor ratio, the most any hasher that decodes with Pillow could reach; the summary
             says how much of it each path reaches.

Each path runs on one core at a time (the HTTP client runs on another core and is cheap: the
multipart body is built once). Two rates are reported: images per wall-clock second, and images
per CPU second of the process doing the work (this process, or the gunicorn worker), which stays
meaningful on a machine shared with other work. Both are per core: one thread does the hashing.
The JPEGs are bench/bench_hashing.py's (deterministic: 1 MP = 1152x864 and 12 MP = 4000x3000,
quality 90).

--vs compares this checkout's HTTP path with another checkout's (say, a worktree of the commit
before a change): both are served at once, one gunicorn worker each pinned to the same CPU and the
client to another, and requests go to them in A B B A order, one at a time, for --seconds. A slow
minute of a shared machine then costs both alike (separate runs of this benchmark differ by 10%
from one minute to the next on a busy VM), and each checkout follows the other as often as itself.
--vs-threads N serves the other checkout with N threads: `--vs . --vs-threads 8` compares the sync
worker with the Procfile's gthread worker on the same code.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from _common import machine  # noqa: E402
from bench_hashing import make_bench_images  # noqa: E402  (the same JPEGs as the core benchmark)

REFERENCE = "reference PdqSignal.hash_from_file"
DECODE = "decode floor: Image.open + load (no hash)"


@dataclass
class Path_:
    """One way of hashing a file: the call, and the CPU seconds used so far by whoever does the work."""

    hash: Callable[[], str]
    cpu_seconds: Callable[[], float]


@dataclass
class Sample:
    wall_rate: float  # images per wall-clock second
    cpu_rate: float  # images per CPU second of the process doing the hashing


def measure(path: Path_, seconds: float, min_runs: int = 3) -> tuple[Sample, str]:
    """Rates of `path` over at least `seconds` and `min_runs` calls, after a warm-up call."""
    result = path.hash()
    runs, started, cpu_started = 0, time.perf_counter(), path.cpu_seconds()
    while True:
        if path.hash() != result:
            raise AssertionError("the same image hashed differently on two calls")
        runs += 1
        elapsed = time.perf_counter() - started
        if runs >= min_runs and elapsed >= seconds:
            cpu = max(path.cpu_seconds() - cpu_started, 1e-9)
            return Sample(runs / elapsed, runs / cpu), result


def measure_interleaved(paths: dict[str, Path_], seconds: float, rounds: int) -> dict[str, tuple[Sample, str]]:
    """
    Each path's median rates over `rounds` rounds that take turns (ref, service, http, ref, ...),
    so that a change in machine load during the run hits every path alike.
    """
    samples: dict[str, list[Sample]] = {name: [] for name in paths}
    hashes: dict[str, str] = {}
    for _ in range(rounds):
        for name, path in paths.items():
            sample, hashes[name] = measure(path, seconds / rounds)
            samples[name].append(sample)
    return {
        name: (
            Sample(
                statistics.median(s.wall_rate for s in samples[name]),
                statistics.median(s.cpu_rate for s in samples[name]),
            ),
            hashes[name],
        )
        for name in paths
    }


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process `pid` (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child_pids(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    children.append(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return children


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def service_env(workdir: Path) -> dict[str, str]:
    return {
        "DJANGO_SETTINGS_MODULE": "omm_project.settings",
        # Production settings: DEBUG off (it adds per-request work), hence a secret key.
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": "omm-bench-" + "x" * 40,
        "OMM_ROLES": "hasher",
        "OMM_OPEN_ACCESS": "true",
        "DATABASE_URL": f"sqlite:///{workdir / 'bench.sqlite3'}",
        "OMM_LOG_LEVEL": "WARNING",
        "OMM_ACCESS_LOG_LEVEL": "WARNING",
    }


class Server:
    """
    gunicorn matching.wsgi (the entry every role runs) with one worker, started and stopped here:
    the sync worker for threads=1, gthread with that many threads otherwise (the Procfile's 8).
    With `cpu`, gunicorn starts under taskset (as bench_lookup.py's does), so the arbiter, the
    worker and every thread they start run on that CPU only.
    """

    def __init__(self, workdir: Path, repo: Path = REPO, cpu: int | None = None, threads: int = 1) -> None:
        self.port = free_port()
        self.log = open(workdir / f"gunicorn-{self.port}.log", "wb")  # noqa: SIM115 (closed in stop())
        env = {**os.environ, **service_env(workdir), "PYTHONPATH": str(repo)}
        self.process = subprocess.Popen(
            [
                *(["taskset", "-c", str(cpu)] if cpu is not None else []),
                sys.executable,
                "-m",
                "gunicorn",
                "matching.wsgi:application",
                "--workers",
                "1",
                "--threads",
                str(threads),
                "--bind",
                f"127.0.0.1:{self.port}",
                "--timeout",
                "120",
            ],
            cwd=repo,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/status/live")
                if conn.getresponse().status == 200:
                    (self.worker_pid,) = child_pids(self.process.pid)
                    return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"gunicorn did not start; see {self.log.name}")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


def http_hasher(port: int, path: Path) -> Callable[[], str]:
    """POST the file to /h/hash as field "photo"; the body is encoded once."""
    boundary = "omm-bench-boundary-7d3f"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="photo"; filename="{path.name}"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + path.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}", "Content-Length": str(len(body))}

    def run() -> str:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        conn.request("POST", "/h/hash", body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        conn.close()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {data[:300]!r}")
        return json.loads(data)["pdq"]

    return run


def compare_checkouts(
    other: Path, files: dict[int, Path], seconds: float, workdir: Path, threads: int = 1, other_threads: int = 1
) -> None:
    """--vs: CPU per request of this checkout's and `other`'s HTTP path, requests in A B B A order."""
    print(f"Machine: {machine()}")  # before this process pins itself to one CPU
    cpus = sorted(os.sched_getaffinity(0))
    worker_cpu, client_cpu = (cpus[0], cpus[1]) if len(cpus) > 1 else (None, None)
    if client_cpu is not None:  # the client on the other CPU (taskset pins each gunicorn)
        os.sched_setaffinity(0, {client_cpu})
    servers: dict[str, Server] = {}
    try:
        servers["this"] = Server(workdir, REPO, worker_cpu, threads)
        servers["vs"] = Server(workdir, other.resolve(), worker_cpu, other_threads)
        for mp, path in files.items():
            post = {name: http_hasher(server.port, path) for name, server in servers.items()}
            answers = {name: run() for name, run in post.items()}
            if len(set(answers.values())) != 1:
                raise AssertionError(f"the two checkouts hash the {mp} MP JPEG differently: {answers}")
            for _ in range(20):  # warm both
                for run in post.values():
                    run()
            cpu_started = {name: process_cpu_seconds(server.worker_pid) for name, server in servers.items()}
            started, cycles = time.perf_counter(), 0
            order = ["this", "vs", "vs", "this"]
            while time.perf_counter() - started < seconds or cycles == 0:
                for name in order:
                    post[name]()
                cycles += 1
            ms = {
                name: (process_cpu_seconds(server.worker_pid) - cpu_started[name]) * 1000 / (2 * cycles)
                for name, server in servers.items()
            }
            print(
                f"{mp} MP: {2 * cycles} requests each in {time.perf_counter() - started:.0f}s, CPU per request "
                f"this checkout ({shape(threads)}) {ms['this']:.3f} ms, {other} ({shape(other_threads)}) "
                f"{ms['vs']:.3f} ms: this / vs = "
                f"{ms['this'] / ms['vs']:.3f} (identical hashes). Load average {os.getloadavg()[0]:.2f}."
            )
    finally:
        for server in servers.values():
            server.stop()


def shape(threads: int) -> str:
    return "sync" if threads == 1 else f"gthread x{threads}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=6.0, help="time per path and image size")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median reported)")
    parser.add_argument("--sizes", default="1,12", help="megapixel sizes among 1,12")
    parser.add_argument("--keep", type=Path, help="write the JPEGs here instead of a temp dir")
    parser.add_argument("--vs", type=Path, help="another omm checkout: compare the two HTTP paths (see above)")
    parser.add_argument("--threads", type=int, default=1, help="gunicorn threads (1: sync worker; 8: the Procfile's)")
    parser.add_argument("--vs-threads", type=int, help="gunicorn threads of the --vs checkout (default: --threads)")
    args = parser.parse_args()
    if args.threads < 1 or (args.vs_threads is not None and args.vs_threads < 1):
        parser.error("--threads and --vs-threads must be at least 1")
    if args.vs_threads is not None and args.vs is None:
        parser.error("--vs-threads needs --vs")
    sizes = [int(s) for s in args.sizes.split(",")]

    with tempfile.TemporaryDirectory(prefix="omm-bench-hash-") as tmp:
        workdir = Path(tmp)
        imagedir = args.keep or workdir
        imagedir.mkdir(parents=True, exist_ok=True)
        files = {int(p.name.split("-")[1].removesuffix("MP")): p for p in make_bench_images(imagedir)}
        files = {mp: path for mp, path in files.items() if mp in sizes}
        if args.vs is not None:
            other_threads = args.threads if args.vs_threads is None else args.vs_threads
            compare_checkouts(args.vs, files, args.seconds, workdir, args.threads, other_threads)
            return

        os.environ.update(service_env(workdir))
        import django

        django.setup()
        from PIL import Image
        from threatexchange.signal_type.pdq.signal import PdqSignal

        from hashing.services import media_hash

        def decode_only(path: Path) -> Callable[[], str]:
            def run() -> str:
                with Image.open(path) as image:
                    image.load()
                return "(decoded)"

            return run

        def service_hasher(path: Path) -> Callable[[], str]:
            def run() -> str:
                with open(path, "rb") as media:
                    return media_hash(content_type="photo", media=media).signals["pdq"]

            return run

        server = Server(workdir, threads=args.threads)
        http_name = f"HTTP POST /h/hash (gunicorn {shape(args.threads)})"
        rows = []
        try:
            for mp in sizes:
                path = files[mp]
                results = measure_interleaved(
                    {
                        REFERENCE: Path_(lambda p=path: PdqSignal.hash_from_file(p), time.process_time),
                        "service hashing.services.media_hash": Path_(service_hasher(path), time.process_time),
                        http_name: Path_(
                            http_hasher(server.port, path), lambda: process_cpu_seconds(server.worker_pid)
                        ),
                        DECODE: Path_(decode_only(path), time.process_time),
                    },
                    args.seconds,
                    args.rounds,
                )
                reference = results[REFERENCE][0]
                decode = results.pop(DECODE)[0]
                same = len({h for _, h in results.values()}) == 1
                if not same:
                    print(f"HASH MISMATCH {mp} MP: " + ", ".join(f"{n}: {h}" for n, (_, h) in results.items()))
                size_kb = path.stat().st_size / 1024
                for name, (sample, _) in results.items():
                    rows.append((f"{mp} MP ({size_kb:,.0f} KB)", name, sample, reference, same))
                rows.append((f"{mp} MP ({size_kb:,.0f} KB)", DECODE, decode, reference, None))
        finally:
            server.stop()

    print(
        f"\nPDQ hashing, one core per path: {args.seconds:g}s per path in {args.rounds} interleaved rounds"
        f" (medians). Load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs at the end."
    )
    print(f"Machine: {machine()}")
    print("wall: images per wall-clock second; cpu: images per CPU second of the hashing process")
    print("(the gunicorn worker for HTTP; the client's CPU is not counted). Ratios are to the reference.")
    header = (
        f"{'image':<18} {'path':<42} {'wall img/s':>10} {'vs ref':>7} {'cpu img/s':>10} {'vs ref':>7} "
        f"{'ms/img cpu':>10} {'same hash':>9}"
    )
    print(header)
    print("-" * len(header))
    for image, name, sample, ref, same in rows:
        print(
            f"{image:<18} {name:<42} {sample.wall_rate:>10.2f} {sample.wall_rate / ref.wall_rate:>6.2f}x "
            f"{sample.cpu_rate:>10.2f} {sample.cpu_rate / ref.cpu_rate:>6.2f}x {1000 / sample.cpu_rate:>10.1f} "
            f"{'-' if same is None else 'yes' if same else 'NO':>9}"
        )
    print("\nThe decode floor (CPU rates): the decode's ratio to the reference is the most a hasher that")
    print("decodes with Pillow could reach; each path's share of it, and its CPU ms beyond the decode:")
    floors = {image: sample for image, name, sample, _, _ in rows if name == DECODE}
    for image, name, sample, ref, _ in rows:
        if name not in (DECODE, REFERENCE):
            floor = floors[image]
            print(
                f"  {image:<18} {name:<42} floor {floor.cpu_rate / ref.cpu_rate:.2f}x, reached "
                f"{sample.cpu_rate / ref.cpu_rate:.2f}x = {sample.cpu_rate / floor.cpu_rate:.0%} of it; "
                f"{1000 / sample.cpu_rate - 1000 / floor.cpu_rate:.1f} ms beyond the decode"
            )
    if not all(row[4] for row in rows if row[4] is not None):
        sys.exit(1)


if __name__ == "__main__":
    main()
