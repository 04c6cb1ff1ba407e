"""Raw media as users have it: phone rotation, surround audio, clipped speech, broken and misnamed files.

Tiny files are made with the ffmpeg command-line tool (skipped without it, failing under CI=true
as in tests/test_raw_media.py); each test guards one case of docs/extract.md's table of inputs.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import struct
import subprocess
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import emimic as emimic_package
from emimic.data.layout import discover
from emimic.errors import ConfigError, DataError, EmimicWarning
from emimic.features import EXTRACTORS, ClipInput, Extractor, extract, runner
from emimic.features import media as media_module
from emimic.features.ledger import read_ledger
from emimic.features.media import decode
from emimic.features.pipeline import make_spec
from emimic.features.plan import skipped_media
from emimic.features.stated_length import TagSpan, tag_spans
from emimic.infer import check_recipe, collect_videos, run_recipe

MEDIA = Path(__file__).parent / "media"

if shutil.which("ffmpeg") is None:
    if os.environ.get("CI") == "true":
        raise RuntimeError("ffmpeg is required under CI (apt-get install -y ffmpeg)")
    pytest.skip("ffmpeg is not installed", allow_module_level=True)


def ffmpeg(*args: str | Path) -> None:
    subprocess.run(["ffmpeg", "-y", "-loglevel", "error", *map(str, args)], check=True)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The inputs, 1-2 s each: a picture with four distinct quadrants upright and as a phone stores it (sideways,
    with a display matrix that turns it back), a spoken-like tone in mono, stereo and 5.1 (a silent LFE channel),
    and one clipped at full scale."""
    folder = tmp_path_factory.mktemp("made")
    quadrants = ("color=red:s=32x24:d=1[a];color=blue:s=32x24:d=1[b];color=green:s=32x24:d=1[c];"
                 "color=yellow:s=32x24:d=1[d];[a][b]hstack[top];[c][d]hstack[bottom];[top][bottom]vstack,format=yuv444p")
    ffmpeg("-f", "lavfi", "-i", quadrants, "-r", "5", "-c:v", "libx264", "-qp", "0", folder / "upright.mp4")
    ffmpeg("-i", folder / "upright.mp4", "-vf", "transpose=2", "-c:v", "libx264", "-qp", "0", folder / "side.mp4")
    # ffmpeg 5-7 turn this tag into the display matrix a phone writes: rotate the stored picture clockwise.
    ffmpeg("-i", folder / "side.mp4", "-c", "copy", "-metadata:s:v:0", "rotate=270", folder / "phone.mp4")
    tone = ("-f", "lavfi", "-i", "sine=f=300:d=1:r=22050,volume=0.5")
    ffmpeg(*tone, "-c:a", "pcm_s16le", folder / "mono.wav")
    ffmpeg(*tone, "-af", "pan=stereo|c0=c0|c1=c0", "-c:a", "pcm_s16le", folder / "stereo.wav")
    # A silent LFE channel: averaged in, it would lower the level by a sixth.
    ffmpeg(*tone, "-af", "pan=5.1|FL=c0|FR=c0|FC=c0|LFE=0*c0|BL=c0|BR=c0", "-c:a", "pcm_s16le",
           folder / "surround.wav")
    ffmpeg(*tone, "-af", "volume=30dB", "-c:a", "pcm_s16le", folder / "clipped.wav")
    return folder


def test_a_phone_video_is_decoded_upright(made: Path) -> None:
    upright = decode(made / "upright.mp4", audio=False).frames
    phone = decode(made / "phone.mp4", audio=False).frames
    assert phone.shape == upright.shape and upright.shape[1:] == (48, 64, 3)
    assert np.abs(phone.astype(int) - upright).max() < 8  # lossless but for the RGB conversion


def with_display_matrix(source: Path, target: Path, a: int, b: int, c: int, d: int) -> Path:
    """``source`` (one video track) with its track header's display matrix set to (a, b, c, d), as a phone or an
    editor writes it: a player shows the stored pixel (x, y) at (a·x + c·y, b·x + d·y)."""
    data = bytearray(source.read_bytes())
    header = data.index(b"tkhd")
    offset = header + 4 + (52 if data[header + 4] == 1 else 40)  # past version, times, ids, layer and volume
    one = 1 << 16
    data[offset:offset + 36] = struct.pack(">9i", a * one, b * one, 0, c * one, d * one, 0, 0, 0, 1 << 30)
    target.write_bytes(data)
    return target


@pytest.mark.parametrize(
    ("matrix", "shown"),
    [
        ((0, -1, 1, 0), lambda picture: np.rot90(picture, 1)),  # a quarter turn counter-clockwise
        ((-1, 0, 0, -1), lambda picture: np.rot90(picture, 2)),
        ((0, 1, -1, 0), lambda picture: np.rot90(picture, 3)),
        ((-1, 0, 0, 1), lambda picture: picture[:, ::-1]),  # mirrored left to right (frame.rotation says -180)
        ((1, 0, 0, -1), lambda picture: picture[::-1]),  # mirrored top to bottom (frame.rotation says 0)
        ((0, 1, 1, 0), lambda picture: picture.swapaxes(0, 1)),  # mirrored across the main diagonal
        ((0, -1, -1, 0), lambda picture: np.rot90(picture, 2).swapaxes(0, 1)),  # across the other diagonal
    ],
    ids=["90", "180", "270", "hflip", "vflip", "transpose", "antitranspose"],
)
def test_frames_come_out_as_the_display_matrix_shows_them(made: Path, tmp_path: Path, matrix, shown) -> None:
    stored = decode(made / "upright.mp4", audio=False).frames[0]  # the four quadrants tell every turn and mirror
    turned = with_display_matrix(made / "upright.mp4", tmp_path / "turned.mp4", *matrix)
    np.testing.assert_array_equal(decode(turned, audio=False).frames[0], shown(stored))


def test_mono_stereo_and_surround_copies_give_one_signal(made: Path) -> None:
    mono = decode(made / "mono.wav").audio
    for layout in ("stereo", "surround"):
        copy = decode(made / f"{layout}.wav").audio
        assert copy.shape == mono.shape
        np.testing.assert_allclose(copy, mono, atol=1e-3, err_msg=layout)


def test_clipped_audio_stays_within_full_scale(made: Path) -> None:
    audio = decode(made / "clipped.wav").audio
    assert audio.max() == pytest.approx(1.0) and audio.min() == pytest.approx(-1.0)  # resampling would overshoot


def test_a_rate_change_midway_through_a_file_is_read_whole(made: Path, tmp_path: Path) -> None:
    """Recordings concatenated as one file (MPEG-TS at 44.1 kHz, then at 48 kHz): one resampler per setup."""
    parts = []
    for rate in (44_100, 48_000):
        parts.append(tmp_path / f"{rate}.ts")
        ffmpeg("-f", "lavfi", "-i", f"sine=f=300:d=1:r={rate}", "-c:a", "mp2", parts[-1])
    (tmp_path / "both.ts").write_bytes(b"".join(part.read_bytes() for part in parts))
    audio = decode(tmp_path / "both.ts").audio
    assert len(audio) / 16_000 == pytest.approx(2.0, abs=0.1)


@pytest.mark.parametrize(
    ("name", "fault", "message"),
    [
        ("egemaps", ValueError("Frame does not match AudioResampler setup."),  # what PyAV raised for a rate change
         r"emimic could not decode it \(ValueError: Frame does not match AudioResampler setup\."
         r" \(test_media_robustness\.py:\d+\)\); if it plays elsewhere, report it with the file\."),
        ("egemaps", MemoryError(), r"emimic ran out of memory decoding it; run fewer --workers\."),  # sound alone
        ("face", MemoryError(), r"emimic ran out of memory decoding it; lower --fps or --max-side, or run fewer"
         r" --workers\."),
    ],
    ids=["fault", "memory-audio", "memory-frames"],
)
def test_an_unforeseen_decoding_error_fails_its_clip_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, fault: Exception, message: str
) -> None:
    """Neither blames a file that may play: the fault may be emimic's, or the machine's memory; the frames settings
    are named only where frames were decoded."""
    (tmp_path / "raw").mkdir()
    for clip in ("00001", "00002"):
        shutil.copy(MEDIA / "00001.mp4", tmp_path / "raw" / f"{clip}.mp4")

    def fragile(path: str | Path, **kwargs: object) -> media_module.Media:
        if Path(path).name == "00001.mp4":
            raise fault
        return decode(path, **kwargs)

    monkeypatch.setattr(runner, "decode", fragile)
    summary = extract(tmp_path, [name], fps=1, progress=False)
    assert summary.loc[name, ["done", "failed"]].tolist() == [1, 1]
    [error] = pd.read_csv(tmp_path / "_extract" / "errors.csv")["error"]
    assert re.fullmatch(rf"{tmp_path}/raw/00001\.mp4: {message}", error), error


@pytest.mark.parametrize(("name", "remedy"), [("egemaps", "run fewer --workers"),
                                            ("face", "lower --fps or --max-side, or run fewer --workers")])
def test_an_extractor_out_of_memory_fails_its_clip_alone_and_says_what_to_lower(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, remedy: str
) -> None:
    """It was errors.csv's bare 'MemoryError:  (file.py:12)'; frames matter to the extractors that read them."""
    (tmp_path / "raw").mkdir()
    for clip in ("00001", "00002"):
        shutil.copy(MEDIA / "00001.mp4", tmp_path / "raw" / f"{clip}.mp4")
    extractor = EXTRACTORS[name]
    process = extractor.process

    def greedy(self: Extractor, clip: ClipInput) -> object:
        if clip.clip_id == 1:
            raise MemoryError
        return process(self, clip)

    monkeypatch.setattr(extractor, "process", greedy)
    summary = extract(tmp_path, [name], fps=1, progress=False)
    assert summary.loc[name, ["done", "failed"]].tolist() == [1, 1]
    [error] = pd.read_csv(tmp_path / "_extract" / "errors.csv")["error"]
    assert error == f"{tmp_path}/raw/00001.mp4: emimic ran out of memory extracting {name!r} from it; {remedy}."


def test_a_frame_buffer_sized_too_small_grows(made: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A container that understates its duration (or has none) still yields every sampled frame."""
    expected = decode(made / "upright.mp4", audio=False, fps=5)
    monkeypatch.setattr(media_module, "_MAX_RESERVED_BYTES", 2 * expected.frames[0].nbytes)
    grown = decode(made / "upright.mp4", audio=False, fps=5)
    np.testing.assert_array_equal(grown.frames, expected.frames)
    np.testing.assert_array_equal(grown.frame_times, expected.frame_times)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", r"broken\.mp4: is an empty file \(0 bytes\); copy or export the recording again\."),
        (b"not a video", r"broken\.mp4: is not a video or audio file FFmpeg can read \(Invalid data found when"
                         r" processing input\); it may be cut short .*check that it plays, or copy it again\."),
        ("half", r"broken\.mp4: is not a video or audio file FFmpeg can read"),  # its index is at the end: gone
    ],
)
def test_a_broken_file_is_named_with_what_to_do(tmp_path: Path, content: bytes | str, message: str) -> None:
    data = (MEDIA / "00001.mp4").read_bytes()
    (tmp_path / "broken.mp4").write_bytes(data[: len(data) // 2] if content == "half" else content)
    with pytest.raises(DataError, match=message):
        decode(tmp_path / "broken.mp4")


def test_a_file_cut_after_its_index_says_where(tmp_path: Path) -> None:
    ffmpeg("-i", MEDIA / "00001.mp4", "-c", "copy", "-movflags", "+faststart", tmp_path / "whole.mp4")
    data = (tmp_path / "whole.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"cut\.mp4: is damaged or cut short after \d+\.\d s \(.*\); check that it"
                                        r" plays to the end"):
        decode(tmp_path / "cut.mp4")


def test_a_file_holding_far_less_than_its_header_states_is_cut_short(tmp_path: Path) -> None:
    """A Matroska file cut in half decodes without an error from FFmpeg. Streams of different lengths, a longer
    track that is not played and a segment starting at 10 s (whose header counts from 0) are whole files."""
    clip = ("-f", "lavfi", "-i", "testsrc=s=64x48:d=2:r=10", "-f", "lavfi", "-i", "sine=d=0.5")
    ffmpeg(*clip, "-c:v", "mjpeg", "-c:a", "pcm_s16le", tmp_path / "whole.mkv")
    assert decode(tmp_path / "whole.mkv", video=False).audio is not None  # 0.5 s of audio in a 2 s file
    ffmpeg(*clip, "-f", "lavfi", "-i", "sine=d=10", "-map", "0", "-map", "1", "-map", "2", "-c:v", "mjpeg", "-c:a",
           "pcm_s16le", tmp_path / "second_track.mkv")  # a 10 s second audio track
    assert decode(tmp_path / "second_track.mkv").duration == pytest.approx(10.0, abs=0.1)
    ffmpeg("-i", tmp_path / "whole.mkv", "-c", "copy", "-output_ts_offset", "10", tmp_path / "offset.mkv")
    assert decode(tmp_path / "offset.mkv").duration == pytest.approx(2.0, abs=0.1)
    for whole in ("whole", "offset"):
        data = (tmp_path / f"{whole}.mkv").read_bytes()
        (tmp_path / "cut.mkv").write_bytes(data[: len(data) // 2])
        for audio, video in ((True, True), (True, False), (False, True)):
            with pytest.raises(DataError, match=r"cut\.mkv: is cut short: it holds \d\.\d s of the 2\.0 s its header"
                                                r" states \(an interrupted copy or download\); check that it plays"):
                decode(tmp_path / "cut.mkv", audio=audio, video=video)


def _first_half(path: Path) -> Path:
    """A copy of ``path`` holding its first half, as an interrupted copy leaves it."""
    data = path.read_bytes()
    cut = path.with_name(f"cut{path.suffix}")
    cut.write_bytes(data[: len(data) // 2])
    return cut


CUT_SHORT = (r"cut\.{}: is cut short: it holds 2\.0 s of the 4\.0 s its header states \(an interrupted copy or"
             r" download\)")


@pytest.mark.parametrize(("name", "options"), [("pcm.wav", ()), ("float.wav", ("-c:a", "pcm_f32le", "-ac", "2")),
                                               ("cbr.mp3", ("-b:a", "32k")), ("vbr.mp3", ("-q:a", "4"))])
def test_a_wav_or_an_mp3_stating_its_length_is_refused_when_cut_short(tmp_path: Path, name: str,
                                                                       options: tuple[str, ...]) -> None:
    """A WAV's data chunk states its size and FFmpeg's MP3 writer leaves a Xing/Info frame count: half such a file
    is refused (FFmpeg decodes it without an error), the whole one is read."""
    ffmpeg("-f", "lavfi", "-i", "sine=d=4", "-ar", "16000", *options, tmp_path / name)
    assert decode(tmp_path / name, video=False).audio.size == pytest.approx(64000, abs=1200)
    suffix = name.rpartition(".")[2]
    with pytest.raises(DataError, match=CUT_SHORT.format(suffix) + r"; check that it plays to the end"):
        decode(_first_half(tmp_path / name), video=False)


@pytest.mark.parametrize(("name", "options"), [
    ("streamed.wav", ("-f", "wav", "pipe:1")),  # a writer that cannot seek back leaves 0xFFFFFFFF as the sizes
    ("rf64.wav", ("-rf64", "always")),  # the sizes are in a ds64 chunk
    ("plain.mp3", ("-b:a", "32k", "-write_xing", "0")),  # no frame count
])
def test_a_wav_or_an_mp3_whose_header_states_no_length_is_read_as_it_is(tmp_path: Path, name: str,
                                                                         options: tuple[str, ...]) -> None:
    source = ("-f", "lavfi", "-i", "sine=d=4", "-ar", "16000")
    if options[-1] == "pipe:1":
        written = subprocess.run(["ffmpeg", "-loglevel", "error", *source, *options], capture_output=True, check=True)
        (tmp_path / name).write_bytes(written.stdout)
    else:
        ffmpeg(*source, *options, tmp_path / name)
    assert decode(_first_half(tmp_path / name), video=False).audio.size < 40000  # a shorter recording


def test_a_whole_vbr_mp3_without_a_frame_count_is_read(tmp_path: Path) -> None:
    """FFmpeg estimates its length from the first frame's bit rate (1.5 s of silence then noise: 7 s): neither is it
    refused as cut short, nor is that estimate its duration (which dates the features of a clip)."""
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono:d=1.5", "-f", "lavfi", "-i", "anoisesrc=d=2.5:a=0.5:r=16000",
           "-filter_complex", "[0][1]concat=n=2:v=0:a=1", "-q:a", "4", "-write_xing", "0", tmp_path / "vbr.mp3")
    media = decode(tmp_path / "vbr.mp3", video=False)
    assert media.audio.size == pytest.approx(64000, abs=2000) and media.duration == media.audio.size / 16000


def test_a_whole_wav_with_soxs_placeholder_size_is_read(tmp_path: Path) -> None:
    """sox, not knowing the length, states 0x7FFFF000 bytes rounded down to whole sample frames: 0x7FFFEFFF for
    24-bit mono, a placeholder too."""
    ffmpeg("-f", "lavfi", "-i", "sine=d=3", "-ar", "16000", "-c:a", "pcm_s24le", tmp_path / "sox.wav")
    data = bytearray((tmp_path / "sox.wav").read_bytes())
    size_at = data.index(b"data") + 4
    data[size_at:size_at + 4] = struct.pack("<I", 0x7FFFF000 // 3 * 3)
    (tmp_path / "sox.wav").write_bytes(data)
    assert decode(tmp_path / "sox.wav", video=False).audio.size == pytest.approx(48000, abs=1200)


def test_an_mp3_none_of_whose_packets_decodes_is_damaged(tmp_path: Path) -> None:
    """Packets FFmpeg cannot decode are skipped in an MP3 (a joined file's tag), but one of nothing else is damaged,
    not a clip with an empty audio track."""
    ffmpeg("-f", "lavfi", "-i", "sine=d=2", "-ar", "16000", "-b:a", "32k", "-write_xing", "0", "-id3v2_version", "0",
           tmp_path / "cbr.mp3")
    data = bytearray((tmp_path / "cbr.mp3").read_bytes())
    frame_bytes = 144  # MPEG-2 layer III at 32 kb/s and 16 kHz: each frame's header stays, its content is lost
    for start in range(0, len(data), frame_bytes):
        data[start + 4:start + frame_bytes] = b"\xff" * len(data[start + 4:start + frame_bytes])
    (tmp_path / "bad.mp3").write_bytes(data)
    with pytest.raises(DataError, match=r"bad\.mp3: is damaged: FFmpeg could decode none of its \d+ audio packet"):
        decode(tmp_path / "bad.mp3", video=False)


def _apev2_tag(cover_bytes: int, *, header: bool = True) -> bytes:
    """An APEv2 tag (header, one binary item as cover art is stored, footer), as taggers append it to an MP3; the
    cover's bytes are random, as a compressed image's are (some look like MPEG frame headers to FFmpeg). Its header
    is optional: ``header=False`` leaves it out, as some taggers do."""
    cover = b"\x89PNG\r\n\x1a\n" + np.random.default_rng(0).bytes(cover_bytes - 8)
    item = struct.pack("<II", cover_bytes, 0b10) + b"Cover Art (Front)\0" + cover

    def frame(flags: int) -> bytes:  # version 2000, the tag's size less its header, one item
        return b"APETAGEX" + struct.pack("<IIII", 2000, len(item) + 32, 1, flags) + bytes(8)

    if not header:
        return item + frame(0)
    return frame(0xA0000000) + item + frame(0x80000000)


@pytest.mark.parametrize("name", ["apev2.mp3", "joined.mp3"])
def test_a_whole_mp3_larger_than_its_frame_count_says_is_read(tmp_path: Path, name: str) -> None:
    """FFmpeg drops the Xing frame count of an MP3 more than 1/16 larger than the header's byte count states (a
    trailing APEv2 tag with cover art, two MP3s joined with cat) and estimates the length from the first frame's bit
    rate (95 s, 14 s): the count itself states 4 s, which the file holds. The parts FFmpeg cannot decode (the cover,
    the second file's ID3v2 tag) are skipped, as players do."""
    ffmpeg("-f", "lavfi", "-i", "anullsrc=r=16000:cl=mono:d=1.5", "-f", "lavfi", "-i", "anoisesrc=d=2.5:a=0.5:r=16000",
           "-filter_complex", "[0][1]concat=n=2:v=0:a=1", "-q:a", "4", tmp_path / "one.mp3")
    one = (tmp_path / "one.mp3").read_bytes()
    (tmp_path / name).write_bytes(one + _apev2_tag(150_000) if name == "apev2.mp3" else one + one)
    media = decode(tmp_path / name, video=False)
    assert media.duration == media.audio.size / 16000  # not FFmpeg's estimate, far above what it holds
    assert media.audio.size == pytest.approx(64000 if name == "apev2.mp3" else 130000, abs=3000)


@pytest.fixture(scope="module")
def mp3s(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 s MP3s whose audio dates itself (a quiet tone, loud noise from 3 s on), at a constant bit rate (16 kHz, 32
    kb/s) and a variable one (44.1 kHz); the first with a PNG cover in its ID3v2 tag, with an ID3v1 tag, with an
    APEv2 tag, with one without a header, and joined with cat; each with garbage written over its second second (the
    variable ones, over their silence from 1 s to 3 s); and a variable one (44.1 kHz) of 3 s of the tone then 3 s of
    the noise with garbage over a second of each."""
    folder = tmp_path_factory.mktemp("mp3s")
    dated = ("-f", "lavfi", "-i", "sine=f=300:d=3:r=16000,volume=0.1", "-f", "lavfi", "-i",
             "anoisesrc=d=1:a=0.8:r=16000", "-filter_complex", "[0][1]concat=n=2:v=0:a=1")
    ffmpeg(*dated, "-b:a", "32k", folder / "cbr.mp3")
    # Speech-like: loud noise for 1 s of every 3, silent between, whose frames are 104 to 1044 bytes.
    ffmpeg("-f", "lavfi", "-i", "anoisesrc=r=44100:d=6:a=0.8,volume='if(lt(mod(t,3),1),1,0)':eval=frame", "-ac", "2",
           "-q:a", "0", folder / "vbr.mp3")
    ffmpeg("-i", folder / "vbr.mp3", "-c", "copy", "-write_xing", "0", folder / "vbr-uncounted.mp3")
    ffmpeg("-f", "lavfi", "-i", "testsrc=s=64x64", "-frames:v", "1", folder / "cover.png")
    ffmpeg("-i", folder / "cbr.mp3", "-i", folder / "cover.png", "-map", "0", "-map", "1", "-c", "copy",
           "-id3v2_version", "3", folder / "cover.mp3")
    ffmpeg("-i", folder / "cbr.mp3", "-c", "copy", "-write_id3v1", "1", "-metadata", "title=take 1",
           folder / "id3v1.mp3")
    (folder / "apev2.mp3").write_bytes((folder / "cbr.mp3").read_bytes() + _apev2_tag(20_000))
    (folder / "footer.mp3").write_bytes((folder / "cbr.mp3").read_bytes() + _apev2_tag(20_000, header=False))
    # Tags at each join: ID3v1 then ID3v2, an ID3v2 with a cover, APEv2 (with a header, then without) then ID3v2.
    (folder / "joined.mp3").write_bytes(b"".join((folder / name).read_bytes() for name in
                                                 ("id3v1.mp3", "cover.mp3", "apev2.mp3", "footer.mp3", "cbr.mp3")))
    # A Lyrics3 tag (v2, then v1) before each ID3v1 tag; the lyrics are random bytes, some alike MPEG frame headers.
    audio, id3v1 = (folder / "id3v1.mp3").read_bytes()[:-128], (folder / "id3v1.mp3").read_bytes()[-128:]
    (folder / "lyrics3.mp3").write_bytes(audio + _lyrics3_tag(2) + id3v1 + audio + _lyrics3_tag(1) + id3v1
                                         + (folder / "cbr.mp3").read_bytes())
    ffmpeg(*dated, "-ar", "8000", "-b:a", "16k", folder / "low.mp3")  # frames of 72 ms, 2.8 times longer
    for name, seconds in {"cbr": 1.0, "vbr": 2.0, "vbr-uncounted": 2.0, "low": 1.0}.items():  # VBR: over a silence
        data = bytearray((folder / f"{name}.mp3").read_bytes())
        start, stop = _byte_at(folder / f"{name}.mp3", 1.0), _byte_at(folder / f"{name}.mp3", 1.0 + seconds)
        data[start:stop] = np.random.default_rng(0).bytes(stop - start)
        (folder / f"{name}-damaged.mp3").write_bytes(data)
        if name == "cbr":
            data[start:stop] = bytes(stop - start)
            (folder / "cbr-zeroed.mp3").write_bytes(data)
    (folder / "mixed.mp3").write_bytes((folder / "low-damaged.mp3").read_bytes() + (folder / "vbr.mp3").read_bytes())
    # The tone's frames are under a third the size of the noise's (104 bytes, 365).
    ffmpeg("-f", "lavfi", "-i", "sine=f=300:d=3,volume=0.1", "-f", "lavfi", "-i", "anoisesrc=d=3:a=0.8",
           "-filter_complex", "[0][1]concat=n=2:v=0:a=1", "-ac", "2", "-q:a", "2", folder / "steps.mp3")
    data = bytearray((folder / "steps.mp3").read_bytes())
    for seconds in (1.0, 4.0):
        start, stop = _byte_at(folder / "steps.mp3", seconds), _byte_at(folder / "steps.mp3", seconds + 1)
        data[start:stop] = np.random.default_rng(0).bytes(stop - start)
    (folder / "steps-damaged.mp3").write_bytes(data)
    return folder


def _lyrics3_tag(version: int) -> bytes:
    """A Lyrics3 tag (v1 or v2, with 3 KB of lyrics), as some taggers put before an MP3's ID3v1 tag."""
    lyrics = np.random.default_rng(version).bytes(3000)
    if version == 1:
        return b"LYRICSBEGIN" + lyrics + b"LYRICSEND"
    fields = b"LYRICSBEGIN" + b"IND00002" + b"11" + b"LYR" + b"%05d" % len(lyrics) + lyrics
    return fields + b"%06d" % len(fields) + b"LYRICS200"


def _byte_at(path: Path, seconds: float) -> int:
    """Where in ``path`` the first audio packet at or after ``seconds`` starts."""
    import av

    with av.open(str(path)) as container:
        return next(packet.pos for packet in container.demux(audio=0) if packet.pts * packet.time_base >= seconds)


def _noise_starts(audio: np.ndarray, loud: float = 0.3) -> float:
    """Seconds into ``audio`` (16 kHz) of the first 10 ms louder than the tone (RMS above ``loud``)."""
    windows = audio[: len(audio) // 160 * 160].reshape(-1, 160)
    return float(np.argmax(np.sqrt((windows**2).mean(axis=1)) > loud)) / 100


@pytest.mark.parametrize("name", ["cover.mp3", "id3v1.mp3", "apev2.mp3", "footer.mp3", "joined.mp3", "lyrics3.mp3"])
def test_a_whole_mp3_with_tags_or_joined_is_read_whole_without_a_warning(mp3s: Path, name: str) -> None:
    """Tags, and the frame FFmpeg glues to a joined file's ID3v2 tag, are not audio lost (FFmpeg cannot decode
    the APEv2 tag's cover nor the joins)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", EmimicWarning)
        media = decode(mp3s / name, video=False)
    # Plus what FFmpeg does not trim in a file larger than its Xing header says: the encoder's padding, and each
    # later file's Info frame and encoder delay.
    seconds, files = media.audio.size / 16000, {"joined.mp3": 5, "lyrics3.mp3": 3}.get(name, 1)
    assert 4 * files <= seconds < 4 * files + 0.1 * files


def test_an_id3v1_signature_in_damage_is_a_tag_only_where_a_tag_can_end() -> None:
    """``TAG`` turns up in random bytes about every 16 MB: it is taken for an ID3v1 tag only where the 128 bytes end
    at a frame, a tag, or the end of what was read; a Lyrics3 tag before it is part of it."""
    damage = np.random.default_rng(0).bytes(1000)
    id3v1 = b"TAG" + bytes(125)
    assert list(tag_spans(damage[:100] + b"TAG" + damage[103:], 0)) == []
    for after in (b"\xff\xfb\x90\x00", b"ID3", b"APETAGEX", b"LYRICSBEGIN", b""):  # a frame, tags, the end
        assert list(tag_spans(damage[:100] + id3v1 + after, 5)) == [TagSpan(105, 233, id3v2=False)]
    for version in (1, 2):
        assert list(tag_spans(damage[:100] + _lyrics3_tag(version) + id3v1, 5)) == [
            TagSpan(105, 105 + len(_lyrics3_tag(version)) + 128, id3v2=False)]


def test_only_an_id3v2_tag_takes_the_rest_of_its_packet() -> None:
    """FFmpeg reads the frame after a joined file's ID3v2 tag with the tag; after the others, what follows is
    counted."""
    assert media_module._untagged_bytes(1000, 500, [TagSpan(1100, 1228, id3v2=False)]) == 372
    assert media_module._untagged_bytes(1000, 500, [TagSpan(1100, 1150, id3v2=True)]) == 100
    assert media_module._untagged_bytes(1000, 500, [TagSpan(900, 1100, id3v2=False),
                                                    TagSpan(1050, 1178, id3v2=False)]) == 322


def test_garbage_over_a_second_of_an_mp3_is_read_as_silence_with_a_warning(mp3s: Path) -> None:
    """FFmpeg skips the garbage and reads on as if nothing was lost: the second is put back as silence, so that the
    noise still starts at 3 s, and a warning says so. The garbage starts 0.93 s into the audio (the frame dated 1 s,
    less the encoder delay FFmpeg trims)."""
    path = mp3s / "cbr-damaged.mp3"
    with pytest.warns(EmimicWarning) as caught:
        media = decode(path, video=False)
    assert [str(warning.message) for warning in caught] == [
        f"{path}: is damaged: 1.04 s of its audio cannot be decoded (at 0.9 s) and is read as silence, so that what"
        " follows keeps its time; replace it with an undamaged copy if there is one."]
    assert media.audio.size == 4 * 16000 and media.duration == 4  # as long as the undamaged copy
    assert not media.audio[round(0.95 * 16000):round(1.95 * 16000)].any()
    assert _noise_starts(media.audio) == pytest.approx(3, abs=0.04)


def test_zeros_over_a_second_of_an_mp3_are_read_as_silence_with_a_warning(mp3s: Path) -> None:
    """FFmpeg reads the zeros with the frame after them, which decodes: they are the bytes before its frame."""
    with pytest.warns(EmimicWarning, match=r"cbr-zeroed\.mp3: is damaged: 1\.0\d s of its audio cannot be decoded"):
        media = decode(mp3s / "cbr-zeroed.mp3", video=False)
    assert _noise_starts(media.audio) == pytest.approx(3, abs=0.04)


def test_an_apev2_tag_is_found_by_its_header_too() -> None:
    """Its footer may lie in a later stretch of packets, or be flagged as a header by a faulty tagger."""
    tag = _apev2_tag(1000)
    assert list(tag_spans(tag[:100], 7)) == [TagSpan(7, 7 + len(tag), id3v2=False)]


def test_garbage_over_a_silence_of_a_variable_bit_rate_mp3_is_measured_by_its_frame_count(mp3s: Path) -> None:
    """Silent frames are a fifth the size of loud ones: the loud frames around the garbage would measure the silence
    it covers at 0.4 s; the Xing header's frame count says how much was lost, to the sample."""
    with pytest.warns(EmimicWarning, match=r"vbr-damaged\.mp3: is damaged: 2\.0\d s of its audio cannot"):
        media = decode(mp3s / "vbr-damaged.mp3", video=False)
    # Not the encoder's padding, which FFmpeg no longer trims from the last frame once it has skipped damage.
    assert media.audio.size == 6 * 16000
    assert _noise_starts(media.audio[16000:], loud=0.1) == pytest.approx(2, abs=0.03)  # again at 3 s


def test_garbage_over_a_tone_and_over_noise_of_a_variable_bit_rate_mp3_is_each_as_long_as_it_was(mp3s: Path) -> None:
    """The frame count says how much was lost in all; a second of the tone's small frames held as many frames as a
    second of the noise's large ones (not a third of the bytes' share): each gap lasts a second (and the frames FFmpeg
    reads with the garbage as it finds its way back), the noise between them still starts at 3 s, and the noise
    after them is where it was."""
    with pytest.warns(EmimicWarning, match=r"steps-damaged\.mp3: is damaged: 2\.\d\d s of its audio cannot"):
        media = decode(mp3s / "steps-damaged.mp3", video=False)
    assert _silences(media.audio) == pytest.approx([1.0, 1.0], abs=0.08)
    assert _noise_starts(media.audio, loud=0.1) == pytest.approx(3, abs=0.03)
    whole, at = decode(mp3s / "steps.mp3", video=False).audio, 5.5 * 16000
    assert media.audio.size == whole.size
    assert _lag(media.audio, whole[round(at):round(at) + 4000], round(at)) == pytest.approx(0, abs=2)


def test_the_frames_a_count_says_were_lost_are_split_into_whole_frames_that_add_up() -> None:
    """By largest remainder: a stretch's share rounded alone would lose a frame or add one."""
    assert media_module._apportioned(10, [1.0, 1.0, 1.0]) == [4, 3, 3]
    assert media_module._apportioned(80, [39.0, 41.01]) == [39, 41]
    assert media_module._apportioned(5, [0.0, 0.0]) == [0, 0]


def _silences(audio: np.ndarray) -> list[float]:
    """Seconds of each run of zeros longer than 0.1 s in ``audio`` (16 kHz)."""
    edges = np.flatnonzero(np.diff(np.r_[0, audio == 0, 0]))
    return [(stop - start) / 16000 for start, stop in zip(edges[::2], edges[1::2], strict=True) if stop - start > 1600]


def _lag(audio: np.ndarray, piece: np.ndarray, at: int, within: int = 8000) -> int:
    """Samples after ``at`` where ``piece`` (of noise, which matches itself nowhere else) is in ``audio``."""
    window = audio[at - within:at + len(piece) + within]
    return int(np.argmax(np.correlate(window, piece, "valid"))) - within


def test_garbage_over_an_mp3_without_a_frame_count_is_estimated(mp3s: Path) -> None:
    with pytest.warns(EmimicWarning, match=r"vbr-uncounted-damaged\.mp3: is damaged: about \d\.\d\d s of its audio"):
        decode(mp3s / "vbr-uncounted-damaged.mp3", video=False)


@dataclass
class _Packet:
    pos: int
    data: bytes

    @property
    def size(self) -> int:
        return len(self.data)

    def __bytes__(self) -> bytes:
        return self.data


def test_damage_decoded_as_a_frame_larger_than_its_header_states_does_not_measure_the_damage() -> None:
    """FFmpeg decodes some garbage as a frame: its size is not that of the frames around (144 bytes at 32 kb/s)."""
    frame, frames = b"\xff\xf3\x48\xc4" + bytes(140), [SimpleNamespace(samples=576, sample_rate=16000)]
    lost, position = media_module._LostAudio(), 0
    for data, decoded in [(frame, frames)] * 10 + [(frame[:4] + bytes(2000), frames), (bytes(1440), None)] + [
            (frame, frames)] * 10:
        lost.add(_Packet(position, data), decoded)
        position += len(data)
    (gap,), counted = lost.finish(None)
    assert gap == pytest.approx((11 * 0.036, 10 * 0.036)) and not counted


def test_a_tag_whose_cover_art_decodes_in_places_is_not_audio_lost() -> None:
    """Random bytes of a cover may decode as a frame: the APEv2 tag's footer, after it, still covers what is before."""
    frame, frames = b"\xff\xf3\x48\xc4" + bytes(140), [SimpleNamespace(samples=576, sample_rate=16000)]
    tag = _apev2_tag(2000, header=False)
    lost, position = media_module._LostAudio(), 0
    for data, decoded in [(frame, frames)] * 10 + [(tag[:1000], None), (tag[1000:1144], frames), (tag[1144:], None)] + [
            (frame, frames)] * 10:
        lost.add(_Packet(position, data), decoded)
        position += len(data)
    assert lost.finish(None) == ([], False)


def test_garbage_over_an_mp3_joined_with_one_of_another_sample_rate_is_measured_in_its_own_frames(mp3s: Path) -> None:
    """A second of the 8 kHz file's frames is not a second of the joined file's average frame."""
    with pytest.warns(EmimicWarning, match=r"mixed\.mp3: is damaged: about (0\.9\d|1\.0\d) s of its audio"):
        decode(mp3s / "mixed.mp3", video=False)


def test_extract_shows_the_warning_of_a_damaged_mp3_and_extracts_it(tmp_path: Path, mp3s: Path) -> None:
    """The warning travels from the worker to the command with the clip's report, and into the ledger."""
    (tmp_path / "audio").mkdir()
    shutil.copy(mp3s / "cbr-damaged.mp3", tmp_path / "audio" / "00001.mp3")
    with pytest.warns(EmimicWarning, match=r"audio/00001\.mp3: is damaged: 1\.04 s of its audio cannot be decoded"):
        summary = extract(tmp_path, ["egemaps"], progress=False)
    assert summary.loc["egemaps", "done"] == 1
    # Recorded too: a resumed run skips the clip and shows nothing.
    (outcome,) = read_ledger(tmp_path / "_extract" / "ledger.csv").values()
    assert outcome["status"] == "done" and re.match(r"warning: .*00001\.mp3: is damaged: ", outcome["reason"])


def test_a_whole_wav_whose_header_misstates_its_byte_rate_is_read(tmp_path: Path) -> None:
    """Only bytes missing from the data chunk make a WAV cut short: a wrong byte rate field alone states 8 s."""
    ffmpeg("-f", "lavfi", "-i", "sine=d=4", "-ar", "16000", tmp_path / "whole.wav")
    data = bytearray((tmp_path / "whole.wav").read_bytes())
    assert data[12:16] == b"fmt " and struct.unpack_from("<I", data, 28)[0] == 32000
    struct.pack_into("<I", data, 28, 16000)  # nAvgBytesPerSec, halved
    (tmp_path / "whole.wav").write_bytes(bytes(data))
    assert decode(tmp_path / "whole.wav", video=False).audio.size == 64000


def test_a_dangling_link_and_an_unreadable_file_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "link.mp4").symlink_to(tmp_path / "gone.mp4")
    with pytest.raises(DataError, match=r"link\.mp4 -> .*gone\.mp4: link\(s\) to a missing file, cannot be decoded;"
                                         r" restore the file\(s\) or remove the link\(s\)\."):
        decode(tmp_path / "link.mp4")
    import av

    def denied(path: str, *args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", path)  # what av.open raises without read access

    monkeypatch.setattr(av, "open", denied)
    with pytest.raises(DataError, match=r"00001\.mp4: cannot be read \(permission denied\); give the user running"):
        decode(MEDIA / "00001.mp4")


def test_a_video_without_audio_takes_the_clips_audio_file(tmp_path: Path) -> None:
    """raw/<id>.mp4 without an audio track beside audio/<id>.wav: the speech comes from the file."""
    (tmp_path / "raw").mkdir()
    (tmp_path / "audio").mkdir()
    shutil.copy(MEDIA / "00003.mp4", tmp_path / "raw" / "00001.mp4")  # a face, no audio track
    ffmpeg("-i", MEDIA / "00001.mp4", "-vn", tmp_path / "audio" / "00001.wav")
    shutil.copy(MEDIA / "00001.mp4", tmp_path / "raw" / "my clip.mp4")  # named in a warning, not extracted
    with pytest.warns(EmimicWarning, match=r"raw/: 'my clip\.mp4' not extracted: not named by a clip id"):
        summary = extract(tmp_path, ["egemaps"], progress=False)
    assert summary.loc["egemaps", ["done", "masked"]].tolist() == [1, 0]
    assert (tmp_path / "egemaps_func" / "00001.npy").is_file()


def test_an_audio_file_added_later_reaches_a_clip_masked_for_want_of_audio(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    shutil.copy(MEDIA / "00003.mp4", tmp_path / "raw" / "00001.mp4")  # a face, no audio track
    assert extract(tmp_path, ["egemaps"], progress=False).loc["egemaps", "masked"] == 1
    assert extract(tmp_path, ["egemaps"], progress=False).loc["egemaps", "skipped"] == 1  # the mask is remembered
    (tmp_path / "audio").mkdir()
    ffmpeg("-i", MEDIA / "00001.mp4", "-vn", tmp_path / "audio" / "00001.wav")
    assert extract(tmp_path, ["egemaps"], progress=False).loc["egemaps", "done"] == 1


def test_a_broken_audio_file_fails_only_the_audio_extractors(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    (tmp_path / "audio").mkdir()
    shutil.copy(MEDIA / "00003.mp4", tmp_path / "raw" / "00001.mp4")  # a face, no audio track
    (tmp_path / "audio" / "00001.wav").write_bytes(b"RIFF, then nothing")
    summary = extract(tmp_path, ["egemaps", "face"], fps=1, progress=False)
    assert summary.loc[:, "failed"].tolist() == [1, 0] and summary.loc["face", "done"] == 1
    error = pd.read_csv(tmp_path / "_extract" / "errors.csv")["error"][0]
    assert error.startswith(f"{tmp_path}/audio/00001.wav: is not a video or audio file FFmpeg can read")


def test_media_that_discovery_leaves_out_are_named(tmp_path: Path) -> None:
    raw, audio = tmp_path / "raw", tmp_path / "audio"
    raw.mkdir()
    audio.mkdir()
    for name in ("00001.mp4", "00001.mov", "00005.mp4", "my clip.mp4", "1².mp4", "notes.txt", "00007.3gp"):
        (raw / name).write_bytes(b"x")
    for name in ("00001.m4a", "00002.ogg", ".DS_Store"):
        (audio / name).write_bytes(b"x")
    (raw / "00002.mp4").symlink_to(raw / "gone.mp4")
    outside = tmp_path.parent / f"{tmp_path.name}-outside.mp4"
    outside.write_bytes(b"x")
    (raw / "00003.mp4").symlink_to(outside)
    (raw / "00005.mkv").symlink_to(raw / "00005.mp4")  # a second file of clip 5, through a link inside the root
    (tmp_path / "takes").mkdir()
    (raw / "00006.mp4").symlink_to(tmp_path / "takes")
    layout = discover(tmp_path)
    for left in [*raw.iterdir(), *audio.iterdir()]:  # the sentences name what discovery saw: no second listing
        if not left.is_symlink():
            left.unlink()
    sentences = skipped_media(layout)
    expected = [
        rf"{raw}/: '1²\.mp4', 'my clip\.mp4' not extracted: not named by a clip id; rename each to its zero-padded id,"
        r" e\.g\. 00001\.mp4\.",
        rf"{raw}/: '00001\.mo?[pv]4?', '00005\.m(p4|kv)' not extracted: another file in the folder has the same clip"
        r" id; keep one of them\.",
        rf"{raw}/: '00003\.mp4' not extracted: a link leaving the dataset root, which emimic does not follow; copy the"
        r" file in, or make the whole folder a link\.",
        rf"{raw}/: '00006\.mp4' not extracted: a folder; emimic reads the files directly in raw/, not in folders"
        r" inside it\.",
        rf"{raw}/: '00007\.3gp', 'notes\.txt' not extracted: emimic reads \.mp4, \.avi, \.mkv, \.webm, \.mov, \.m4v"
        r" files in raw/; move each out of raw/, or convert a recording to \.mp4, e\.g\. ffmpeg -i 00001\.3gp"
        r" 00001\.mp4\.",
        rf"{raw}/00002\.mp4 -> {raw}/gone\.mp4: link\(s\) to a missing file, not extracted; restore the file\(s\) or"
        r" remove the link\(s\)\.",
        rf"{audio}/: '00002\.ogg' not extracted: emimic reads \.wav, \.mp3, \.flac, \.m4a files in audio/; move each"
        r" out of audio/, or convert a recording to \.wav, e\.g\. ffmpeg -i 00001\.ogg 00001\.wav\.",
    ]
    assert len(sentences) == len(expected), sentences
    for sentence, pattern in zip(sentences, expected, strict=True):
        assert re.fullmatch(pattern, sentence), sentence


def test_phone_recordings_m4v_and_m4a_are_read(tmp_path: Path) -> None:
    (tmp_path / "raw").mkdir()
    (tmp_path / "audio").mkdir()
    shutil.copy(MEDIA / "00001.mp4", tmp_path / "raw" / "00001.M4V")
    ffmpeg("-i", MEDIA / "00001.mp4", "-vn", "-c:a", "aac", tmp_path / "audio" / "00002.m4a")
    layout = discover(tmp_path)
    assert list(layout.videos) == [1] and list(layout.audio_files) == [2] and not skipped_media(layout)
    assert len(decode(layout.audio_files[2]).audio) / 16_000 == pytest.approx(3.7, abs=0.1)


def test_an_overlong_transcript_fails_its_clip_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A wrong file in text/ (a book, a log) fails its clip at once instead of stalling the lexicon for hours."""
    monkeypatch.setattr(runner, "MAX_TRANSCRIPT_CHARS", 1_000)  # the real limit is 100,000: a slow test
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "00001.txt").write_text("I am so happy to see you.")
    (tmp_path / "text" / "00002.txt").write_text("word " * 300)
    (tmp_path / "text" / "00003.txt").write_text("word " * 801)  # more than 4 bytes a character: not even read
    reads = []
    monkeypatch.setattr(runner, "read_transcript", lambda path: reads.append(path.name) or path.read_text())
    summary = extract(tmp_path, ["lexicon"], progress=False)
    assert summary.loc["lexicon", ["done", "failed"]].tolist() == [1, 2] and reads == ["00001.txt", "00002.txt"]
    errors = pd.read_csv(tmp_path / "_extract" / "errors.csv")
    assert errors["error"].tolist() == [
        f"{tmp_path}/text/00002.txt: holds 1,500 characters, more than the 1,000 characters a clip's transcript may"
        " hold (about two hours of speech); check that it is this clip's transcript, or shorten it.",
        f"{tmp_path}/text/00003.txt: holds 4,005 bytes, more than the 1,000 characters a clip's transcript may hold"
        " (about two hours of speech); check that it is this clip's transcript, or shorten it.",
    ]


@pytest.mark.parametrize(
    ("decoder", "message"),
    [
        (1, r"egemaps/ was extracted by an older emimic \(decoder 1: phone videos left sideways, stereo and surround"
            r" audio summed rather than averaged; this one is decoder 2\); pass --overwrite to re-extract every clip,"
            r" or write to another dataset root\."),
        (3, r"egemaps/ was extracted by a newer emimic \(decoder 3; this one is decoder 2\); upgrade emimic \(pip"
            r" install -U emimic\) to add to it, or write to another dataset root\."),
    ],
)
def test_features_of_another_decoder_are_not_mixed_in(tmp_path: Path, decoder: int, message: str) -> None:
    """The decoder's version is part of an audio or video extractor's recipe: a folder made by another is refused."""
    (tmp_path / "raw").mkdir()
    shutil.copy(MEDIA / "00001.mp4", tmp_path / "raw" / "00001.mp4")
    extract(tmp_path, ["egemaps"], progress=False)
    sidecar = tmp_path / "egemaps" / "_extractor.json"
    assert '"decoder": 2' in sidecar.read_text()
    sidecar.write_text(sidecar.read_text().replace('"decoder": 2', f'"decoder": {decoder}'))
    with pytest.raises(ConfigError, match=message):
        extract(tmp_path, ["egemaps"], progress=False)


@pytest.mark.parametrize(
    ("decoder", "message"),
    [
        (None, r"egemaps/ was extracted by an older emimic \(decoder 1: .*\); re-extract the training features with"
               r" `emimic extract --overwrite` and retrain"),
        (3, r"egemaps/ was extracted by a newer emimic \(decoder 3; this one is decoder 2\); upgrade emimic \(pip"
            r" install -U emimic\) to use this run on new videos\."),
    ],
)
def test_a_run_of_another_decoder_is_refused_by_infer(tmp_path: Path, decoder: int | None, message: str) -> None:
    params = {"feature_set": "eGeMAPSv02"} | ({"decoder": decoder} if decoder else {})  # none: recorded before it
    record = {"extractor": "egemaps", "options": {}, "params": params, "seed": 0, "model_sha256": None,
              "transcript": None, "output": "egemaps"}
    recipe = run_recipe({"egemaps": record}, ["egemaps"], "RUN")
    spec = make_spec(tmp_path, ["egemaps"], recipe.options, model_dir=None, fps=recipe.fps, max_side=recipe.max_side,
                     seed=recipe.seed)
    with pytest.raises(ConfigError, match=message):
        check_recipe(recipe, spec.build(), spec)


def test_infer_names_dangling_links_in_its_input_folders(tmp_path: Path) -> None:
    (tmp_path / "a.MP4").write_bytes(b"")  # collected by its suffix in any case; decoding it is extract's job
    (tmp_path / "b.mp4").symlink_to(tmp_path / "gone.mp4")
    with pytest.warns(EmimicWarning, match=r"b\.mp4 -> .*gone\.mp4: link\(s\) to a missing file, not predicted;"
                                           r" restore the file\(s\) or remove the link\(s\)\."):
        assert list(collect_videos([tmp_path, tmp_path / ".." / tmp_path.name / "a.MP4"])) == ["a"]


def test_docs_messy_folder_session(tmp_path: Path) -> None:
    """docs/extract.md's session on a messy folder prints what the page shows."""
    page = (Path(__file__).parents[1] / "docs" / "extract.md").read_text(encoding="utf-8")
    marked = page.split("<!-- executed by tests/test_media_robustness.py::test_docs_messy_folder_session -->")[1]
    script, shown = marked.split("```bash\n", 1)[1].split("```", 1)[0], marked.split("```text\n", 1)[1].split("```")[0]
    (tmp_path / "tests").symlink_to(Path(__file__).parent)
    emimic = f'emimic() {{ "{sys.executable}" -m emimic "$@"; }}\n'  # the emimic under test, not one on PATH
    source = str(Path(emimic_package.__file__).parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(["bash", "-euc", emimic + script], cwd=tmp_path, env=env, capture_output=True, text=True,
                          check=True)
    for line in shown.splitlines():
        if line != "...":
            assert re.search(re.escape(line).replace(re.escape("..."), ".*"), done.stdout + done.stderr), line
