"""Where the endpoint's time goes (``make profile-serve``): py-spy samples the real server under load.

The server runs as ``propensity serve`` does (access log and prediction log on) and the serving
benchmark's load generator drives it with one request shape (``--instances``, ``--explain``) on
one keep-alive connection while py-spy samples every thread of the server process. Output: a flame
stacks file (py-spy's raw format: folded stacks, which speedscope.app and flamegraph.pl open) and,
printed, the frames with the most samples, by self time and inclusive, as shares of all samples
of busy threads (py-spy leaves out threads waiting in the kernel: the event loop's epoll wait, the
prediction log's writer between flushes). Loopback only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SAMPLE_RATE = 250  # per second: more costs the 2-core machine's server time


def top_frames(folded: str, limit: int = 25) -> tuple[list[tuple[float, str]], list[tuple[float, str]]]:
    """(self, inclusive) shares of samples per frame from py-spy's raw (folded) output."""
    total = 0
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    for line in folded.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        total += int(count)
        own[frames[-1]] += int(count)
        for frame in set(frames):
            inclusive[frame] += int(count)
    share = 100.0 / max(total, 1)
    return (
        [(n * share, frame) for frame, n in own.most_common(limit)],
        [(n * share, frame) for frame, n in inclusive.most_common(limit)],
    )


def profile(registry: Path, model_name: str, instances: int, explain: bool, seconds: float, out: Path) -> int:
    from components.registry.local import LocalRegistry
    from components.serving.model import load_model
    from components.serving.settings import ServeSettings
    from pipelines.bench.serving import (
        drive,
        free_port,
        http_request,
        request_bodies,
        start_server,
        stop_server,
        wait_healthy,
    )

    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        print("error: py-spy is not installed (make install puts it in .venv)", file=sys.stderr)
        return 2
    registry = registry.resolve()
    model = load_model(LocalRegistry(registry).resolve(model_name), ServeSettings())
    body, _ = request_bodies(model, instances, explain)
    request = http_request("/predict", body)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="profile-serving-") as tmp:
        port = free_port()
        server = start_server(registry, model_name, Path(tmp), port)
        try:
            wait_healthy(port, server)
            drive(port, request, 1, 500, 3.0)  # warm-up
            command = [spy, "record", "-p", str(server.pid), "-r", str(SAMPLE_RATE)]
            command += ["-d", str(int(seconds) + 1), "-o", str(out), "-f", "raw", "--nonblocking"]
            with open(Path(tmp) / "py-spy.log", "wb") as log:
                sampler = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
                time.sleep(0.5)
                load = drive(port, request, 1, 1_000_000, seconds)
                failed = sampler.wait() != 0
            if failed or not out.exists():
                print((Path(tmp) / "py-spy.log").read_text(errors="replace"), file=sys.stderr)
                print("error: py-spy could not sample the server (its output is above)", file=sys.stderr)
                return 1
        finally:
            stop_server(server)
    own, inclusive = top_frames(out.read_text())
    print(
        f"profile: {model_name} ({model.bundle.family}), {instances} instance(s), explain {explain}: "
        f"{load['requests']} requests, p50 {load['p50_ms']:.3f} ms; stacks in {out}"
    )
    for title, rows in (("self", own), ("inclusive", inclusive)):
        print(f"\n  top frames, {title} (% of samples)")
        print("\n".join(f"  {share:5.1f}%  {frame[:140]}" for share, frame in rows))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--registry", type=Path, default=Path(".propensity") / "registry")
    parser.add_argument("--model-name", default="marketing-propensity")
    parser.add_argument("--instances", type=int, default=1)
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--out", type=Path, default=Path("build") / "profile-serving.folded")
    args = parser.parse_args(argv)
    return profile(args.registry, args.model_name, args.instances, args.explain, args.seconds, args.out)


if __name__ == "__main__":
    sys.exit(main())
