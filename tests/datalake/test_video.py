"""Video probing against ffprobe on real videos, rejects for broken files, stream-copy clips."""

from __future__ import annotations

import json
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from datalake.video import VideoError, cut_clip, frames_at, iter_frames, keyframe_times, probe_video
from tests.realdata import video_paths

FFPROBE = shutil.which("ffprobe")


def _ffprobe(path: Path) -> dict:
    assert FFPROBE, "ffprobe is missing: make setup installs Debian's ffmpeg"
    out = subprocess.run([FFPROBE, "-v", "error", "-count_packets", "-show_streams", "-show_format", "-of", "json",
                          str(path)], capture_output=True, text=True, check=True).stdout
    return json.loads(out)


@pytest.mark.parametrize("name", ["bigbuckbunny.mp4", "bikes.mp4", "carphone_pristine.mp4"])
def test_probe_matches_ffprobe_on_real_videos(name: str) -> None:
    path = video_paths()[name]
    info = probe_video(path.read_bytes())
    ref = _ffprobe(path)
    v = next(s for s in ref["streams"] if s["codec_type"] == "video")
    assert info.codec == v["codec_name"] and (info.width, info.height) == (v["width"], v["height"])
    assert info.frames == int(v["nb_read_packets"]) == int(v["nb_frames"])
    assert info.fps == pytest.approx(float(Fraction(v["avg_frame_rate"])), rel=1e-6)
    assert abs(info.duration_s - float(v["duration"])) <= 1 / info.fps
    assert info.has_audio == any(s["codec_type"] == "audio" for s in ref["streams"])
    assert info.container == ref["format"]["format_name"] and info.pix_fmt == v["pix_fmt"]


def test_rotation_is_read_from_the_display_matrix(tmp_path: Path) -> None:
    src = video_paths()["carphone_pristine.mp4"]
    rot = tmp_path / "rot.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(src), "-c", "copy", "-metadata:s:v:0", "rotate=90", str(rot)],
                   check=True)
    ref = next(s for s in _ffprobe(rot)["streams"] if s["codec_type"] == "video")
    want = abs(int(next(d["rotation"] for d in ref["side_data_list"] if "rotation" in d)))
    info = probe_video(rot.read_bytes())
    assert info.rotation == want == 90 and info.display_size == (info.height, info.width) == (144, 176)


def test_broken_videos_are_rejects_with_reasons(tmp_path: Path) -> None:
    data = video_paths()["bikes.mp4"].read_bytes()
    fast = tmp_path / "fast.mp4"  # index first (faststart): a cut file still opens, frames are missing
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(video_paths()["bikes.mp4"]), "-c", "copy", "-movflags",
                    "+faststart", str(fast)], check=True)
    cases = {"empty_file": b"", "undecodable_video": b"not a video at all" * 50,
             "truncated_video": data[: len(data) // 2]}
    for reason, blob in cases.items():
        with pytest.raises(VideoError) as e:
            probe_video(blob)
        assert e.value.reason == reason, e.value
    with pytest.raises(VideoError) as e:
        probe_video(fast.read_bytes()[:250_000])
    assert e.value.reason == "truncated_video" and "of the 250 frames" in e.value.detail
    with pytest.raises(VideoError) as e:
        probe_video(data, time_limit_s=0.0)
    assert e.value.reason == "video_timeout"


def test_stream_copy_clip_starts_on_the_source_frame_at_its_keyframe() -> None:
    data = video_paths()["bikes.mp4"].read_bytes()
    keys = keyframe_times(data)
    assert len(keys) >= 5
    clip, start, end = cut_clip(data, keys[2] + 0.3, keys[3] - 0.1)
    assert (start, end) == (keys[2], keys[3])  # whole GOPs: from the keyframe at or before t0 to the next one
    info = probe_video(clip)
    assert info.frames == round((end - start) * 25) and info.keyframes == 1
    t, first = next(iter_frames(clip))
    ref_t, ref = frames_at(data, [start])[0]
    assert t == 0.0 and ref_t == pytest.approx(start)
    assert np.array_equal(np.asarray(first), np.asarray(ref))  # stream copy: the same decoded pixels
    exact, s2, e2 = cut_clip(data, 2.0, 3.0, reencode=True)
    assert (s2, e2) == (2.0, 3.0) and probe_video(exact).frames == 25
