"""Decode a video file once: 16 kHz mono float audio and RGB frames sampled at a fixed rate (PyAV).

Both streams are demuxed in a single pass over the container, so a clip is read once per run
however many extractors consume it. A missing or empty audio track is not an error: it is
recorded in :attr:`Media.audio_problem` and the audio extractors mask the clip. A file that
cannot be opened or decoded, or that holds far less than the duration its header states, is a
:class:`~emimic.errors.DataError` naming the file and saying what to do about it. The audio of an MP3 lost to damage
in its middle is read as silence, with an :class:`~emimic.errors.EmimicWarning`, so that what follows keeps its time.
Not caught: damage over the first frames (all after starts earlier, without a warning).

Frames come out as a player shows them: a phone video stored sideways with a rotation in its
display matrix is turned upright, and a mirrored one is mirrored back. Audio of any channel
layout is the mean of its channels (the low-frequency effects channel left out), so mono, stereo
and 5.1 copies of one recording give the same signal.
"""

from __future__ import annotations

import errno
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emimic.errors import DataError, EmimicWarning
from emimic.features.stated_length import (
    FrameCount,
    TagSpan,
    ending_frame,
    frame_bytes,
    mp3_frame_count,
    tag_spans,
    wav_seconds,
)
from emimic.labels import shortlist

SAMPLE_RATE = 16_000
# Recorded in the recipe of every extractor that reads media, so features decoded differently never
# share a folder or a run.
DECODER_VERSION = 2
# What each version's predecessor did differently (refusal messages name it): frames upright and audio the
# mean of its channels, clipped to [-1, 1], came with 2.
DECODER_CHANGES = {2: "phone videos left sideways, stereo and surround audio summed rather than averaged"}
# The low-frequency effects channel of surround layouts carries rumble, not speech.
_EFFECTS_CHANNELS = frozenset({"LFE", "LFE2"})
# Frame buffers are sized from the container's duration up to this many bytes before decoding;
# past it they grow as frames arrive (a wrong duration must not reserve the machine's memory).
_MAX_RESERVED_BYTES = 2**31
# Containers whose header states the length of the recording as FFmpeg reports it; a WAV's data size and an MP3's
# frame count are read by emimic.features.stated_length (FFmpeg clamps the one and may drop the other). The others
# derive it from what they hold (MPEG-TS), or estimate it from the bit rate (an MP3 without a frame count): only where
# a header states it can a cut be measured.
_HEADER_DURATION_FORMATS = frozenset({"matroska", "webm", "mov", "mp4", "avi", "flac"})
# Streams of independent frames, which players decode past a frame they cannot (the ID3 tag of a second MP3 joined
# with ``cat``, garbage over some frames): a packet FFmpeg cannot decode there is skipped, the audio lost between
# decoded frames is read as silence (_LostAudio), and a cut is judged by the length its header states
# (emimic.features.stated_length), not by a decoding error.
_FRAME_BY_FRAME_FORMATS = frozenset({"mp3"})
# Containers whose header duration counts from time 0 to the last timestamp, as FFmpeg's Matroska muxer writes
# it (a segment cut from the middle of a recording starts at 10 s and states 20 s); in the others it counts from
# the file's start time.
_DURATION_FROM_ZERO_FORMATS = frozenset({"matroska", "webm"})
# A file holding less than this share of the duration its header states is cut short (an interrupted copy),
# not a recording whose streams differ in length: the end of the longest stream is compared.
_MIN_SHARE_OF_DECLARED = 0.8


@dataclass
class Media:
    """What :func:`decode` read from one file."""

    path: Path
    duration: float
    """Seconds: how long the header says the file lasts from its first timestamp (the longest stream)."""
    audio: np.ndarray | None = None
    """float32 ``(samples,)`` at :data:`SAMPLE_RATE`, mono, in [-1, 1]; ``None`` when absent."""
    audio_problem: str | None = None
    """Why :attr:`audio` is ``None`` (for the report), e.g. ``"no audio track"``."""
    frames: np.ndarray | None = None
    """uint8 ``(N, H, W, 3)`` RGB frames sampled at ``fps``, upright; ``None`` when not requested or absent."""
    frame_times: np.ndarray | None = None
    """float64 ``(N,)`` presentation time of each frame in seconds from the stream start."""
    video_problem: str | None = None
    sample_rate: int = SAMPLE_RATE
    audio_error: str | None = None
    """Why the clip's audio could not be read (a broken ``audio/`` file): its audio extractors fail, the rest run."""


def _scaled_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    if not max_side or max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    # Even sizes keep swscale on its fast path for yuv420p input.
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


# Frames decoded on each side of a stretch lost whose sizes and lengths measure it: about a second.
_FRAMES_AROUND = 32


@dataclass
class _Stretch:
    """Packets that decode to nothing between two that decode, and the bytes a decoded one holds before its frame."""

    decoded_before: int  # packets decoded to audio before it
    spans: list[tuple[int, int]]  # (position, size) of its bytes in the file, tags among them


class _LostAudio:
    """Where an MP3's audio was lost to damage (garbage over its frames) and how long each stretch lasted.

    FFmpeg skips bytes it cannot decode and dates the frames after them as if they followed on (a second of garbage
    costs one frame's timestamp), so the time lost is measured in bytes: the packets that decode to nothing between
    two that decode, and the bytes a packet holds before the frame that ends it (zeros, which FFmpeg reads with the
    frame after them), less the tags among them (a joined file's second ID3v2 tag with its cover art, the first one's
    APEv2, Lyrics3 or ID3v1 tag). Where the file's frame count holds (a Xing, Info or VBRI header, no join), the time
    lost in all is what it states less what decoded, split between the stretches in proportion to their estimates
    (exact for one stretch); else each stretch counts as whole frames at the mean size of the frames decoded around
    it, which at a variable bit rate is an estimate (frames are larger where the sound is richer, so a split by bytes
    alone would give a stretch over a silence too little). Packets before the first frame or after the last one
    (junk or a tag at the end) shift nothing, but take their share of what the count says is lost.
    """

    def __init__(self) -> None:
        self._seconds: list[float] = []  # of each packet that decoded to audio
        self._sizes: list[int] = []  # its bytes
        # Whether its bytes are those its header states: damage may decode as a frame of the wrong size.
        self._framed: list[bool] = []
        # (position, bytes, whether FFmpeg failed on it) of the packets since the last one decoded
        self._undecoded: list[tuple[int, bytes, bool]] = []
        self._stretches: list[_Stretch] = []  # between decoded packets
        self._ends: list[_Stretch] = []  # those before the first and after the last
        # Looked for only in the packets not decoded: a tag's signature in the bytes of audio would be chance. All
        # of them: an APEv2 tag's footer may lie stretches after its start (its cover art decoding as frames between).
        self._tags: list[TagSpan] = []
        self._frames = 0  # packets FFmpeg decoded, to audio or to nothing (the first, all encoder delay)
        self._joined = False  # a tag between frames: the first file's frame count does not cover the next

    def add(self, packet: Any, frames: Sequence[Any] | None) -> None:
        """One audio packet, with the frames it decoded to (None: FFmpeg could not decode it)."""
        if packet.pos is None or not packet.size:  # the decoder's flush at the end
            return
        data = bytes(packet)
        if frames is not None:
            self._frames += 1
        if not frames:
            self._undecoded.append((packet.pos, data, frames is None))
            return
        if self._undecoded:
            self._close(between=bool(self._seconds))
        framed = frame_bytes(data[:4]) == packet.size
        # Bytes FFmpeg read with the frame that ends the packet (zeros written over the frames before it) are lost.
        if not framed and (start := ending_frame(data)):
            self._lose([(packet.pos, data[:start])])
        self._seconds.append(sum(frame.samples / frame.sample_rate for frame in frames))
        self._sizes.append(packet.size)
        self._framed.append(framed)

    def _close(self, *, between: bool) -> None:
        """Keep the packets undecoded since the last decoded one: a stretch ``between`` two decoded ones, else the
        file's start or end, where only the packets FFmpeg failed on count (not the frames it trims to nothing)."""
        if between:
            self._lose([(position, data) for position, data, _ in self._undecoded])
        else:
            self._tags += _tags_in([(position, data) for position, data, _ in self._undecoded])
            self._ends.append(_Stretch(len(self._seconds), [(position, len(data))
                                                          for position, data, failed in self._undecoded if failed]))
        self._undecoded = []

    def _lose(self, packets: list[tuple[int, bytes]]) -> None:
        """Count the bytes of ``packets`` ((position, bytes) in the file) lost after the packets decoded so far."""
        tags = _tags_in(packets)
        self._tags += tags
        self._joined = self._joined or bool(tags)
        spans = [(position, len(data)) for position, data in packets]
        if self._stretches and self._stretches[-1].decoded_before == len(self._seconds):
            self._stretches[-1].spans += spans
        else:
            self._stretches.append(_Stretch(len(self._seconds), spans))

    def _lost_bytes(self, spans: list[tuple[int, int]]) -> int:
        return sum(_untagged_bytes(position, size, self._tags) for position, size in spans)

    def finish(self, stated_frames: int | None) -> tuple[list[tuple[float, float]], bool]:
        """Close the packets undecoded at the end (once, after the last packet) and measure what was lost: (seconds
        of audio decoded before, seconds lost) of each stretch of whole frames lost, in order, and whether they are
        counted from ``stated_frames`` (the file's frame count) rather than estimated. Frames, not seconds: FFmpeg no
        longer trims the encoder's padding from the last frame once it has skipped damage."""
        if self._undecoded:
            self._close(between=False)
        if not self._stretches:
            return [], False
        # Ends too: they have their share of what the count says is lost.
        estimates = [self._estimated_frames(stretch) for stretch in self._stretches + self._ends]
        counted = stated_frames is not None and not self._joined and stated_frames >= self._frames
        if counted:
            frames = _apportioned(stated_frames - self._frames, estimates)
        else:
            frames = [round(estimate) for estimate in estimates]
        frames = frames[:len(self._stretches)]
        starts = np.cumsum([0.0, *self._seconds])
        return [(float(starts[stretch.decoded_before]), count * self._frame_seconds(stretch))
                for stretch, count in zip(self._stretches, frames, strict=True) if count], counted

    def _around(self, stretch: _Stretch) -> slice:
        return slice(max(stretch.decoded_before - _FRAMES_AROUND, 0), stretch.decoded_before + _FRAMES_AROUND)

    def _frame_seconds(self, stretch: _Stretch) -> float:
        """Seconds of a frame around ``stretch``: the median, as the first and last frames are trimmed (encoder delay
        and padding), and a joined file's frames may be of another sample rate."""
        return float(np.median(self._seconds[self._around(stretch)]))

    def _estimated_frames(self, stretch: _Stretch) -> float:
        """Frames ``stretch`` held, at the mean size of the frames decoded around it of the size their header states
        (not damage decoded as a frame) and of its frames' length (not the first one, trimmed, nor a joined file's at
        another sample rate)."""
        around, seconds = self._around(stretch), self._frame_seconds(stretch)
        sizes = [size for size, framed, length in zip(self._sizes[around], self._framed[around],
                                                      self._seconds[around], strict=True)
                 if framed and math.isclose(length, seconds)] or self._sizes[around]
        return self._lost_bytes(stretch.spans) * len(sizes) / sum(sizes)


def _apportioned(total: int, weights: list[float]) -> list[int]:
    """``total`` split into whole parts in proportion to ``weights``, by largest remainder: each part is rounded
    down, and what that leaves goes one by one to the parts that lost the most."""
    if not sum(weights):
        return [0] * len(weights)
    quotas = [total * weight / sum(weights) for weight in weights]
    parts = [math.floor(quota) for quota in quotas]
    for index in sorted(range(len(quotas)), key=lambda index: parts[index] - quotas[index])[:total - sum(parts)]:
        parts[index] += 1
    return parts


def _tags_in(packets: Sequence[tuple[int, bytes]]) -> list[TagSpan]:
    """The tags in ``packets`` ((position, bytes) in the file), looked for in each run of them that follow on in the
    file: FFmpeg may cut a tag in several (a Lyrics3 tag's start in one, its end in the next)."""
    runs: list[tuple[int, bytearray]] = []
    for position, data in packets:
        if runs and runs[-1][0] + len(runs[-1][1]) == position:
            runs[-1][1].extend(data)
        else:
            runs.append((position, bytearray(data)))
    return [tag for position, data in runs for tag in tag_spans(bytes(data), position)]


def _untagged_bytes(position: int, size: int, tags: list[TagSpan]) -> int:
    """Bytes of the packet at ``position`` in no tag; an ID3v2 tag takes the rest of the packet from its start, with
    what FFmpeg glued to it (a joined file's first frame after its ID3v2 tag, which it then cannot decode)."""
    end = position + size
    spans = sorted((max(tag.start, position), end if tag.id3v2 else min(tag.end, end))
                   for tag in tags if tag.start < end and tag.end > position)
    covered, reached = 0, position
    for start, stop in spans:  # their union: a span reaching back (an APEv2 or Lyrics3 tag's) may overlap another
        covered += max(stop - max(start, reached), 0)
        reached = max(reached, stop)
    return size - covered


def _with_silence(signal: np.ndarray | None, gaps: list[tuple[float, float]], rate: int) -> np.ndarray | None:
    """``signal`` with each gap's lost seconds of silence put back after the seconds of it decoded before."""
    if signal is None or not gaps:
        return signal
    pieces, start = [], 0
    for before, lost in gaps:
        cut = min(round(before * rate), len(signal))
        pieces += [signal[start:cut], np.zeros(round(lost * rate), dtype=signal.dtype)]
        start = cut
    pieces.append(signal[start:])
    return np.concatenate(pieces)


def _lost_sentence(path: Path, gaps: list[tuple[float, float]], counted: bool) -> str:
    """The warning for an MP3 whose audio was lost in ``gaps``: where, in the recording's time, and how much (about
    that, unless ``counted`` by its frame count)."""
    starts, shift = [], 0.0
    for before, lost in gaps:
        starts.append(f"{before + shift:.1f} s")
        shift += lost
    return (f"{path}: is damaged: {'' if counted else 'about '}{shift:.2f} s of its audio cannot be decoded (at"
            f" {shortlist(starts)}) and is read as silence, so that what follows keeps its time; replace it with an"
            " undamaged copy if there is one.")


def dangling_links(links: Sequence[Path], consequence: str) -> str:
    """The one sentence for links whose target is gone (decoding, extract's warning, infer's warning):
    ``consequence`` says what emimic does without them, e.g. ``"not extracted"``."""
    shown = shortlist(f"{link} -> {os.readlink(link)}" for link in links)
    return f"{shown}: link(s) to a missing file, {consequence}; restore the file(s) or remove the link(s)."


def unread_suffix(folder: Path, names: Sequence[str], suffixes: Sequence[str], consequence: str, *,
                  example: str) -> str:
    """The one sentence for files of a suffix emimic does not read in a folder it reads (extract's ``raw/`` and
    ``audio/``, infer's input folders): ``names`` are relative to ``folder``, ``consequence`` says what becomes of
    them (``"not extracted"``), ``example`` is a recording of another format, for the conversion shown."""
    shown, target = shortlist(sorted(repr(name) for name in names)), suffixes[0]
    return (f"{folder}/: {shown} {consequence}: emimic reads {', '.join(suffixes)} files in {folder.name}/; move each"
            f" out of {folder.name}/, or convert a recording to {target}, e.g. ffmpeg -i {example}"
            f" {Path(example).stem}{target}.")


def open_container(path: Path) -> Any:
    """``av.open(path)``, or a :class:`DataError` that says why the file cannot be read and what to do."""
    import av  # heavy; only extraction needs it

    if path.is_symlink() and not path.exists():
        raise DataError(dangling_links([path], "cannot be decoded"))
    try:
        empty = path.stat().st_size == 0
    except OSError as exc:
        raise DataError(f"{path}: cannot be read ({exc.strerror}).") from None
    if empty:
        raise DataError(f"{path}: is an empty file (0 bytes); copy or export the recording again.")
    try:
        return av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        if exc.errno == errno.EACCES:
            raise DataError(f"{path}: cannot be read (permission denied); give the user running emimic read"
                            " access to it (chmod a+r).") from None
        raise DataError(
            f"{path}: is not a video or audio file FFmpeg can read ({exc.strerror}); it may be cut short (an"
            " interrupted copy or download) or hold something else: check that it plays, or copy it again."
        ) from None


class _Downmix:
    """Audio frames of any layout and rate → one float32 mono signal at ``rate``, in [-1, 1].

    The mono signal is the mean of the channels (without the effects channel). Mixing here rather
    than in libswresample keeps a 5.1 track from being summed several times louder than the same
    recording in mono, and a stream whose layout, rate or sample format changes midway (concatenated
    recordings) gets a new resampler, which libswresample requires.
    """

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._resampler: Any = None
        self._setup: tuple[str, int, str] | None = None  # (layout, rate, sample format) the resampler takes
        self._kept: list[int] = []  # indices of the channels that are averaged
        self._chunks: list[np.ndarray] = []

    def add(self, frame: Any) -> None:
        setup = (frame.layout.name, frame.sample_rate, frame.format.name)
        if setup != self._setup:
            import av

            self.flush()
            self._resampler = av.AudioResampler(format="fltp", rate=self.rate)
            self._setup = setup
            channels = [c.name for c in frame.layout.channels]
            kept = [i for i, name in enumerate(channels) if name not in _EFFECTS_CHANNELS]
            self._kept = kept or list(range(len(channels)))
        self._mix(self._resampler.resample(frame))

    def flush(self) -> None:
        if self._resampler is not None:
            self._mix(self._resampler.resample(None))

    def _mix(self, frames: list[Any]) -> None:
        for out in frames:
            self._chunks.append(out.to_ndarray()[self._kept].mean(axis=0, dtype=np.float32))

    def signal(self) -> np.ndarray | None:
        """The mono signal (None when no sample was decoded); resampling overshoot of clipped input is cut at ±1."""
        if not self._chunks or not any(len(c) for c in self._chunks):
            return None
        return np.clip(np.concatenate(self._chunks), -1.0, 1.0)


def display_matrix(frame: Any) -> tuple[int, int, int, int] | None:
    """The linear part ``(a, b, c, d)`` of a frame's display matrix, None when it has none: a player shows the
    stored pixel (x, y) at (a·x + c·y, b·x + d·y) plus a shift, with y pointing down (FFmpeg's display.h)."""
    side = frame.side_data.get("DISPLAYMATRIX")
    if side is None:
        return None
    matrix = np.frombuffer(bytes(side), dtype=np.int32)  # 16.16 fixed point, in the machine's byte order
    return int(matrix[0]), int(matrix[1]), int(matrix[3]), int(matrix[4])


def upright(picture: np.ndarray, matrix: tuple[int, int, int, int] | None) -> np.ndarray:
    """``picture`` (rows, columns, ...) as its display matrix shows it, to the nearest quarter turn: turned, and
    mirrored when the matrix mirrors (negative determinant), as FFmpeg's autorotate shows it.

    ``frame.rotation`` alone cannot tell a mirror from a turn (a horizontal mirror reads as a half turn).
    """
    if matrix is None:
        return picture
    a, b, c, d = matrix
    if abs(c) > abs(a):  # a quarter turn: stored rows become displayed columns, x' = c·y and y' = b·x
        picture, horizontal, vertical = picture.swapaxes(0, 1), c, b
    else:  # x' = a·x and y' = d·y
        horizontal, vertical = a, d
    if horizontal < 0:
        picture = picture[:, ::-1]
    if vertical < 0:
        picture = picture[::-1]
    return picture


class _FrameSampler:
    """Keeps the first frame at or after each multiple of ``1/fps``, upright, RGB, at one size.

    Frames go straight into one buffer sized from the expected count, so a long clip holds its
    sampled frames once in memory (not once in a list and again in the stacked array).
    """

    def __init__(self, fps: float, max_side: int | None, expected_seconds: float) -> None:
        self.step, self.max_side = 1.0 / fps, max_side
        self._expected = max(1, int(expected_seconds * fps) + 2)
        self._buffer: np.ndarray | None = None
        self._times: list[float] = []
        self._size: tuple[int, int] | None = None  # (width, height) of the stored picture
        self._next_time = 0.0
        self._start: float | None = None

    def add(self, frame: Any) -> None:
        if frame.time is None:
            return
        if self._start is None:
            self._start = frame.time
        t = frame.time - self._start
        if t + 1e-6 < self._next_time:
            return
        if self._size is None:
            # Every frame gets the first one's size: a stream that changes resolution midway still stacks.
            self._size = _scaled_size(frame.width, frame.height, self.max_side)
        width, height = self._size
        picture = upright(frame.to_ndarray(format="rgb24", width=width, height=height), display_matrix(frame))
        self._store(picture)
        self._times.append(t)
        while self._next_time <= t + 1e-6:
            self._next_time += self.step

    def _store(self, picture: np.ndarray) -> None:
        count = len(self._times)
        if self._buffer is None:
            fits = max(1, _MAX_RESERVED_BYTES // picture.nbytes)
            self._buffer = np.empty((min(self._expected, fits), *picture.shape), dtype=np.uint8)
        elif count == len(self._buffer):
            grown = np.empty((2 * count, *picture.shape), dtype=np.uint8)
            grown[:count] = self._buffer
            self._buffer = grown
        self._buffer[count] = picture

    @property
    def times(self) -> np.ndarray:
        return np.asarray(self._times, dtype=np.float64)

    def frames(self) -> np.ndarray | None:
        return None if self._buffer is None else self._buffer[: len(self._times)]


def _start_seconds(container: Any) -> float:
    import av

    return (container.start_time or 0) / av.time_base


def _stated_seconds(container: Any) -> float:
    """How long the header says the file lasts from its first timestamp (0 when it says nothing)."""
    import av

    if not container.duration:
        return 0.0
    stated = float(container.duration) / av.time_base
    if set(container.format.name.split(",")) & _DURATION_FROM_ZERO_FORMATS:
        stated -= _start_seconds(container)
    return max(stated, 0.0)


def _header_seconds(path: Path, container: Any, mp3: FrameCount | None) -> float | None:
    """How long the file's own header says it lasts from its first timestamp; None when it states no length of its
    own, so that a file cut short cannot be told from a shorter recording (``mp3``: an MP3's frame count, read once
    for this and for the audio it lost)."""
    formats = set(container.format.name.split(","))
    if formats & _HEADER_DURATION_FORMATS:
        return _stated_seconds(container)
    if "mp3" in formats:  # not FFmpeg's duration: a bit-rate estimate where the file outgrows the header's byte count
        return None if mp3 is None else mp3.seconds
    if "wav" in formats:
        return wav_seconds(path)
    return None


def _check_complete(path: Path, container: Any, held: float, mp3: FrameCount | None) -> None:
    """Refuse a file whose streams end far short of the duration its header states (``held``: seconds from the
    file's start to the latest packet end of any stream): FFmpeg reads a Matroska file cut in half without an
    error, and half a clip's features would pass for all of them (``mp3``: an MP3's frame count)."""
    stated = _header_seconds(path, container, mp3)
    if stated is not None and held < _MIN_SHARE_OF_DECLARED * stated:
        raise DataError(
            f"{path}: is cut short: it holds {max(held, 0.0):.1f} s of the {stated:.1f} s its header states (an"
            " interrupted copy or download); check that it plays to the end, or copy or export it again."
        )


def decode(
    path: str | Path,
    *,
    audio: bool = True,
    video: bool = True,
    fps: float = 5.0,
    max_side: int | None = 640,
    sample_rate: int = SAMPLE_RATE,
) -> Media:
    """Decode ``path``: audio resampled to ``sample_rate`` mono float32, frames at ``fps`` as upright RGB.

    Frames are picked by timestamp (the first frame at or after each multiple of ``1/fps``), so a
    variable-frame-rate file is sampled evenly; ``max_side`` bounds the larger frame side.
    """
    import av

    path = Path(path)
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    container = open_container(path)
    with container:
        audio_stream = container.streams.audio[0] if audio and container.streams.audio else None
        video_stream = container.streams.video[0] if video and container.streams.video else None
        if video_stream is not None:
            # Decoding B-frames on several threads is the costliest part of the read.
            video_stream.thread_type = "AUTO"
        decoded = {s.index for s in (audio_stream, video_stream) if s is not None}
        frame_by_frame = bool(set(container.format.name.split(",")) & _FRAME_BY_FRAME_FORMATS)
        stated = _stated_seconds(container)
        mix = _Downmix(sample_rate)
        sampler = _FrameSampler(fps, max_side, stated)
        end = 0.0  # seconds: where the file's last packet of any stream ends
        skipped = 0  # packets of a frame-by-frame format that FFmpeg could not decode
        lost = _LostAudio()
        lost_from = audio_stream.index if frame_by_frame and audio_stream is not None else None
        try:
            # Every stream is demuxed (reading the file costs the same) and only the played ones decoded: the header's
            # duration covers all of them (a second audio track, a subtitle), so the end the file holds is measured
            # over all of them.
            for packet in container.demux():
                if packet.pts is not None:
                    end = max(end, float((packet.pts + (packet.duration or 0)) * packet.time_base))
                if packet.stream.index not in decoded:
                    continue
                try:
                    frames = packet.decode()
                except av.error.InvalidDataError:
                    if not frame_by_frame:
                        raise
                    skipped += 1
                    frames = None
                if packet.stream.index == lost_from:
                    lost.add(packet, frames)
                for frame in frames or ():
                    if isinstance(frame, av.AudioFrame):
                        mix.add(frame)
                    else:
                        sampler.add(frame)
            mix.flush()
        except av.error.FFmpegError as exc:
            reached = f" after {sampler.times[-1]:.1f} s" if len(sampler.times) else ""
            raise DataError(
                f"{path}: is damaged or cut short{reached} ({exc.strerror}); check that it plays to the end, or copy"
                " or export it again."
            ) from None
        count = mp3_frame_count(path) if frame_by_frame else None
        gaps, counted = lost.finish(None if count is None else count.frames)
        # The stretches lost count as held: they are read as silence.
        _check_complete(path, container, end - _start_seconds(container) + sum(seconds for _, seconds in gaps), count)

    media = Media(path=path, duration=0.0, sample_rate=sample_rate)
    if audio:
        media.audio = _with_silence(mix.signal(), gaps, sample_rate)
        if gaps and counted and count is not None and media.audio is not None:
            # FFmpeg no longer trims the encoder's padding from the last frame once it has skipped damage: the frame
            # count says where the audio ends, as an undamaged copy's does.
            media.audio = media.audio[:round(count.seconds * sample_rate)]
        if gaps:
            warnings.warn(EmimicWarning(_lost_sentence(path, gaps, counted)), stacklevel=2)
        if media.audio is None and skipped:
            raise DataError(f"{path}: is damaged: FFmpeg could decode none of its {skipped} audio packet(s); check"
                            " that it plays, or copy or export it again.")
        if audio_stream is None:
            media.audio_problem = "no audio track"
        elif media.audio is None:
            media.audio_problem = "audio track is empty"
    if video:
        media.frames = sampler.frames()
        if video_stream is None:
            media.video_problem = "no video track"
        elif media.frames is None:
            media.video_problem = "video track has no decodable frames"
        else:
            media.frame_times = sampler.times
    # The header's duration covers every stream; a file without one (raw streams) falls back
    # to what was decoded.
    audio_seconds = len(media.audio) / sample_rate if media.audio is not None else 0.0
    video_seconds = float(sampler.times[-1]) + sampler.step if len(sampler.times) else 0.0
    # FFmpeg's length of an MP3 is an estimate from the bit rate where no frame count states it or the file outgrows
    # it (a cover, a joined file): what it decodes is its length.
    media.duration = (0.0 if frame_by_frame else stated) or max(audio_seconds, video_seconds)
    return media
