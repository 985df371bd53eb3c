"""ColonyFS benchmark: one big file and many small files through our SDK, against a plain boto3 copy.

Run: .venv/bin/python bench/bench_fs.py [--quick]
A moto S3 server (`moto_server`, objects in its memory) and a colonies server (SQLite) run on loopback.
Each phase runs in a fresh spawned process, so its peak RSS is its own. See bench/README.md (fs section).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import multiprocessing as mp
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx

from tests.conftest import free_port, make_server, setup_colony
from tests.fs_support import S3_KEYS, moto_command

MiB = 1 << 20
WORKERS = 8  # FileSystem's default pool; the plain small-file copy uses as many threads


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def boto_client(env: dict[str, str]) -> Any:
    import boto3

    return boto3.session.Session().client(
        "s3",
        endpoint_url=f"http://{env['AWS_S3_ENDPOINT']}",
        aws_access_key_id=env["AWS_S3_ACCESSKEY"],
        aws_secret_access_key=env["AWS_S3_SECRETKEY"],
        region_name=env["AWS_S3_REGION"],
    )


def phase(kind: str, env: dict[str, str], work: str, server: tuple[int, str, str]) -> dict[str, float]:
    """One timed transfer in this (fresh) process: seconds up, seconds down, RSS before and peak."""
    from colonies.client.sync import Client
    from colonies.fs import FileSystem
    from colonies.fs.store import store_from_env

    w = Path(work)
    big, small, down = w / "big.bin", w / "small", w / f"down-{kind}"
    down.mkdir()
    bucket = env["AWS_S3_BUCKET"]
    port, prvkey, colony = server
    client = Client("127.0.0.1", port, prvkey=prvkey)
    fs = FileSystem(client, colony, store=store_from_env(env))
    boto = boto_client(env)
    names = sorted(p.name for p in small.iterdir()) if small.exists() else []

    def plain_small_up() -> None:
        with cf.ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(lambda n: boto.upload_file(str(small / n), bucket, f"plain/{n}"), names))

    def plain_small_down() -> None:
        with cf.ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(lambda n: boto.download_file(bucket, f"plain/{n}", str(down / n)), names))

    def plain_get() -> None:
        body = boto.get_object(Bucket=bucket, Key="plain-big")["Body"]
        with open(down / "big.bin", "wb") as f:
            f.writelines(body.iter_chunks(MiB))

    steps: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
        "plain-big": (lambda: boto.upload_file(str(big), bucket, "plain-big"),
                      lambda: boto.download_file(bucket, "plain-big", str(down / "big.bin"))),
        "plain-get": (lambda: None, plain_get),
        "sdk-big": (lambda: fs.upload(big, "/bench/big"), lambda: fs.download("/bench/big", "big.bin", down)),
        "plain-small": (plain_small_up, plain_small_down),
        "sdk-small": (lambda: fs.sync(small, "/bench/small"), lambda: fs.sync(down, "/bench/small")),
    }
    up, dn = steps[kind]
    base = rss_mib()
    with client:
        t0 = time.perf_counter()
        up()
        t1 = time.perf_counter()
        dn()
        t2 = time.perf_counter()
    got = sum(1 for p in down.iterdir() if not p.name.startswith("."))
    return {"up": t1 - t0, "down": t2 - t1, "rss0": base, "rss": rss_mib(), "files": got}


def run_phase(kind: str, *args: Any) -> dict[str, float]:
    with cf.ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(phase, kind, *args).result()


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(moto_command(port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(f"http://127.0.0.1:{port}/", timeout=1)
            return proc, f"127.0.0.1:{port}"
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("moto_server did not start") from None
            time.sleep(0.05)


def make_files(work: Path, big_size: int, n_small: int, small_size: int) -> None:
    block = os.urandom(MiB)
    with open(work / "big.bin", "wb") as f:
        f.writelines(i.to_bytes(8, "big") + block[8:] for i in range(big_size // MiB))
    (work / "small").mkdir()
    for i in range(n_small):
        (work / "small" / f"f{i:05d}.dat").write_bytes(os.urandom(small_size))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="128 MiB and 1,000 small files")
    a = ap.parse_args()
    big_size, n_small, small_size = (128 * MiB, 1000, 4096) if a.quick else (1 << 30, 10_000, 4096)
    work = Path(tempfile.mkdtemp(prefix="bench-fs-"))
    moto, endpoint = start_moto()
    srv = make_server(work)
    try:
        srv.start()
        keys = setup_colony(srv, "benchfs")
        env = {"AWS_S3_ENDPOINT": endpoint, "AWS_S3_BUCKET": "bench-fs", "AWS_S3_TLS": "false",
               "AWS_S3_SKIPVERIFY": "false", **S3_KEYS}
        boto_client(env).create_bucket(Bucket="bench-fs")
        make_files(work, big_size, n_small, small_size)
        server = (srv.port, keys.user_prvkey, keys.name)
        print(f"ColonyFS bench: moto S3 server {endpoint} (in memory), colonies server :{srv.port} (SQLite), "
              f"{os.cpu_count()} CPUs, boto3 client")
        print("  each phase: a fresh spawned process; up = all uploads, down = all downloads, wall clock;")
        print("  RSS = ru_maxrss of that process (peak), 'base' = after imports and client set-up")
        print("  plain = boto3 upload_file/download_file with default TransferConfig (small files: "
              f"{WORKERS} threads); plain-get = one boto3 get_object streamed to a file (download only);")
        print("  SDK = colonies.fs.FileSystem (upload/download; small files: sync up, then sync down)")
        res: dict[str, dict[str, float]] = {}
        for kind in ("plain-big", "plain-get", "sdk-big", "plain-small", "sdk-small"):
            res[kind] = r = run_phase(kind, env, str(work), server)
            one = not kind.endswith("small")
            size = big_size if one else n_small * small_size
            what = f"{big_size // MiB} MiB file" if one else f"{n_small} x {small_size} B files"
            rate = (f"{size / max(r['up'], 1e-9) / MiB:7.1f} / {size / r['down'] / MiB:7.1f} MiB/s" if one
                    else f"{n_small / r['up']:7.0f} / {n_small / r['down']:7.0f} files/s")
            print(f"  {kind:12s} {what:22s} up/down {r['up']:6.1f} s / {r['down']:6.1f} s = {rate}  "
                  f"RSS peak {r['rss']:5.0f} MiB (base {r['rss0']:.0f})  got {int(r['files'])} files")
        for which in ("big", "small"):
            p, s = res[f"plain-{which}"], res[f"sdk-{which}"]
            print(f"  SDK / plain ({which}): upload time x{s['up'] / p['up']:.2f}, download time "
                  f"x{s['down'] / p['down']:.2f}, peak RSS x{s['rss'] / p['rss']:.2f} "
                  f"(+{s['rss'] - s['rss0']:.0f} MiB over base vs +{p['rss'] - p['rss0']:.0f} MiB)")
        g, s = res["plain-get"], res["sdk-big"]
        print(f"  SDK / plain get_object stream (big download): time x{s['down'] / g['down']:.2f}")
    finally:
        srv.stop()
        moto.terminate()
        moto.wait(10)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
